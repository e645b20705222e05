"""Silero VAD on onnxruntime, without torch.

One ``SileroVadModel`` (one InferenceSession, ~2 MB) serves every call; each call gets its own
``SileroVadStream`` holding the recurrent state and the audio context, mirroring
``silero_vad.utils_vad.OnnxWrapper`` (which we cannot import: it pulls in torch).

Silero is a streaming model: every window is fed together with the last 64 samples (32 at
8 kHz) of the previous window, and the LSTM state is carried from window to window. Getting
either wrong silently degrades accuracy, so the tests compare against the reference behaviour.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from pipeline.model_files import silero_onnx_path

# sample rate -> (window samples, context samples), as in OnnxWrapper.__call__
_GEOMETRY: dict[int, tuple[int, int]] = {16000: (512, 64), 8000: (256, 32)}
_STATE_SHAPE = (2, 1, 128)
_OUTPUTS = ["output", "stateN"]


class SileroVadModel:
    """The loaded model; thread-safe (onnxruntime sessions allow concurrent ``run``)."""

    def __init__(self, model_path: Path | None = None) -> None:
        opts = ort.SessionOptions()
        # Windows are tiny (32 ms): thread hand-offs cost more than they save, and with many
        # concurrent calls parallelism comes from calls, not from within one inference.
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3
        path = model_path or silero_onnx_path()
        self.session = ort.InferenceSession(
            str(path), sess_options=opts, providers=["CPUExecutionProvider"]
        )
        self._sr_values = {sr: np.array(sr, dtype=np.int64) for sr in _GEOMETRY}

    def stream(self, sample_rate: int) -> SileroVadStream:
        return SileroVadStream(self, sample_rate)

    def probabilities_batch(
        self, streams: Sequence[SileroVadStream], windows: Sequence[np.ndarray]
    ) -> list[float]:
        """Advance several streams by one window each with a single ONNX call.

        Batching amortizes the per-call overhead of onnxruntime when many calls are live.
        All streams must use this model and the same sample rate.
        """
        if len(streams) != len(windows):
            raise ValueError("streams and windows must have the same length")
        if not streams:
            return []
        if len(streams) == 1:
            return [streams[0].probability(windows[0])]
        rate = streams[0].sample_rate
        for s in streams:
            if s.sample_rate != rate:
                raise ValueError("all streams in a batch must share one sample rate")
            if s.model is not self:
                raise ValueError("stream belongs to another model")
        batch = len(streams)
        inputs = np.empty((batch, streams[0].input.shape[1]), dtype=np.float32)
        states = np.empty((2, batch, 128), dtype=np.float32)
        for i, (s, w) in enumerate(zip(streams, windows, strict=True)):
            s.load_window(w)
            inputs[i] = s.input[0]
            states[:, i, :] = s.state[:, 0, :]
        out, new_states = self.session.run(
            _OUTPUTS, {"input": inputs, "state": states, "sr": self._sr_values[rate]}
        )
        for i, s in enumerate(streams):
            s.state[:, 0, :] = new_states[:, i, :]
            s.advance_context()
        return [float(p) for p in out[:, 0]]


class SileroVadStream:
    """Per-call VAD state. Not thread-safe: one call drives it from one task."""

    def __init__(self, model: SileroVadModel, sample_rate: int) -> None:
        if sample_rate not in _GEOMETRY:
            raise ValueError(f"Silero VAD supports 8000 or 16000 Hz, not {sample_rate}")
        self.model = model
        self.sample_rate = sample_rate
        self.window_samples, self.context_samples = _GEOMETRY[sample_rate]
        # Preallocated [context | window] row fed to the model; the context part is refilled
        # in place from the tail of the previous window.
        self.input = np.zeros((1, self.context_samples + self.window_samples), dtype=np.float32)
        self.state = np.zeros(_STATE_SHAPE, dtype=np.float32)
        self._feeds: dict[str, np.ndarray] = {
            "input": self.input,
            "state": self.state,
            "sr": model._sr_values[sample_rate],
        }

    def probability(self, window: np.ndarray) -> float:
        self.load_window(window)
        out, new_state = self.model.session.run(_OUTPUTS, self._feeds)
        self.state[...] = new_state
        self.advance_context()
        return float(out[0, 0])

    def reset(self) -> None:
        self.input.fill(0.0)
        self.state.fill(0.0)

    # -- helpers shared with SileroVadModel.probabilities_batch ----------------------------
    def load_window(self, window: np.ndarray) -> None:
        if window.shape != (self.window_samples,):
            raise ValueError(
                f"expected {self.window_samples} samples at {self.sample_rate} Hz, "
                f"got shape {window.shape}"
            )
        self.input[0, self.context_samples :] = window

    def advance_context(self) -> None:
        # OnnxWrapper keeps x[..., -context:] of [context | window], i.e. the window's tail.
        self.input[0, : self.context_samples] = self.input[0, -self.context_samples :]
