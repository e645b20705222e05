"""Smart Turn v3: has the caller finished what they were saying, judged from the audio?

The silence rule (pipeline/turn_taking.py) ends a turn after ~550 ms of silence. Smart Turn v3
(Daily, BSD-2; a small Whisper-encoder classifier over the last 8 s of speech, ONNX, ~8.7 MB)
looks at the intonation and rhythm of the utterance at a short pause (~200 ms) and says whether
it sounds complete. Combined with the transcript guard (pipeline/turn_end_guard.py) it could end
most turns 350 ms earlier without cutting callers off mid-number.

This session ships it in **shadow mode** only: ``TurnShadow`` runs the model at every pause of
``pause_ms`` and logs its decision (and the guard's) beside the silence rule's actual decision,
as structured log fields, call-record timings and Prometheus metrics. It never changes when a
turn ends. ``TAINA_TURN_MODEL=on`` is accepted but NOT implemented: it behaves as ``shadow``.

The model file is taken out of the pinned ``pipecat-ai`` wheel by ``taina models install``
(pipeline/model_files.py); nothing of the framework is imported. The log-mel front end below
mirrors pipecat's numpy port of transformers' ``WhisperFeatureExtractor`` (Apache-2.0,
HuggingFace; BSD-2, Daily) so the model sees exactly the features it was trained on.

Inference runs in one shared worker thread (never on the event loop); when it is busy beyond
``max_pending`` requests a pause is recorded as ``skipped`` instead of queueing without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from pipeline.turn_end_guard import GuardDecision, judge_transcript
from pipeline.turn_taking import TurnDetector, TurnEvent, UtteranceBuffer

if TYPE_CHECKING:
    from pipeline.metrics import PipelineMetrics

log = logging.getLogger("taina.smart_turn")

MODEL_RATE = 16000
WINDOW_S = 8  # the model's input: the last 8 s of the utterance, zero-padded in front
TurnModelMode = Literal["off", "shadow", "on"]

# --- Whisper log-mel features (80 mels x 800 frames for 8 s at 16 kHz) ---------------------------
_N_FFT = 400
_HOP = 160
_N_MELS = 80


def _hz_to_mel(freq: np.ndarray) -> np.ndarray:
    """Slaney mel scale (linear below 1 kHz, logarithmic above), as librosa/transformers."""
    freq = np.atleast_1d(np.asarray(freq, dtype=np.float64))
    mels = 3.0 * freq / 200.0
    log_region = freq >= 1000.0
    mels[log_region] = 15.0 + np.log(freq[log_region] / 1000.0) * (27.0 / np.log(6.4))
    return mels


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    mels = np.atleast_1d(np.asarray(mels, dtype=np.float64))
    freq = 200.0 * mels / 3.0
    log_region = mels >= 15.0
    freq[log_region] = 1000.0 * np.exp((np.log(6.4) / 27.0) * (mels[log_region] - 15.0))
    return freq


def _mel_filters() -> np.ndarray:
    """Slaney-normalized triangular filterbank, shape (n_fft/2+1, 80)."""
    n_bins = _N_FFT // 2 + 1
    mel_freqs = np.linspace(_hz_to_mel(np.array([0.0]))[0], _hz_to_mel(np.array([8000.0]))[0], 82)
    filter_freqs = _mel_to_hz(mel_freqs)
    fft_freqs = np.linspace(0, MODEL_RATE // 2, n_bins)
    diff = np.diff(filter_freqs)
    slopes = filter_freqs[None, :] - fft_freqs[:, None]
    down = -slopes[:, :-2] / diff[:-1]
    up = slopes[:, 2:] / diff[1:]
    filters = np.maximum(0.0, np.minimum(down, up))
    filters *= (2.0 / (filter_freqs[2 : _N_MELS + 2] - filter_freqs[:_N_MELS]))[None, :]
    return filters


_FILTERS_T = _mel_filters().T  # (80, 201)
_HANN = np.hanning(_N_FFT + 1)[:-1]  # periodic Hann, as torch.hann_window


def log_mel(audio16k: np.ndarray) -> np.ndarray:
    """Whisper-style normalized log-mel features of exactly 8 s of 16 kHz float audio."""
    x = np.asarray(audio16k, dtype=np.float32)
    n = MODEL_RATE * WINDOW_S
    x = np.pad(x, (0, n - x.size)) if x.size < n else x[:n]
    x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
    padded = np.pad(x.astype(np.float64), (_N_FFT // 2, _N_FFT // 2), mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, _N_FFT)[::_HOP]
    power = (np.abs(np.fft.rfft(frames * _HANN, axis=-1)) ** 2).T
    spec = np.log10(np.maximum(1e-10, _FILTERS_T @ power))[:, :-1]
    spec = np.maximum(spec, spec.max() - 8.0)
    return ((spec + 4.0) / 4.0).astype(np.float32)


def prepare_audio(pcm16: bytes, sample_rate: int) -> np.ndarray:
    """PCM16 at ``sample_rate`` → float32 at 16 kHz, the last 8 s, zeros in front if shorter.

    Phone audio (8 kHz) is upsampled with soxr HQ: the band above 4 kHz is empty, which the
    model never saw in training (see docs/PERFORMANCE.md for how it scores such audio).
    """
    samples = np.frombuffer(pcm16, dtype=np.int16).astype(np.float32) * (1.0 / 32768.0)
    if sample_rate != MODEL_RATE and samples.size:
        import soxr

        samples = soxr.resample(samples, sample_rate, MODEL_RATE, quality="HQ").astype(np.float32)
    n = MODEL_RATE * WINDOW_S
    if samples.size >= n:
        return samples[-n:]
    return np.pad(samples, (n - samples.size, 0))


class SmartTurnModel:
    """The ONNX session (one intra-op thread: calls share two cores with Whisper)."""

    def __init__(self, path: Path, threads: int = 1) -> None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.inter_op_num_threads = 1
        so.intra_op_num_threads = threads
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = ort.InferenceSession(
            str(path), sess_options=so, providers=["CPUExecutionProvider"]
        )
        self._input = self._session.get_inputs()[0].name

    def probability(self, pcm16: bytes, sample_rate: int) -> float:
        """Probability that the utterance in ``pcm16`` is complete (blocking: call in a thread)."""
        feats = log_mel(prepare_audio(pcm16, sample_rate))[None, ...]
        out = self._session.run(None, {self._input: feats})
        return float(np.asarray(out[0]).reshape(-1)[0])


@dataclass(frozen=True)
class ShadowResult:
    probability: float | None  # None: skipped (worker busy) or failed
    infer_ms: float  # wall time in the worker (features + ONNX), excluding queueing
    queued_ms: float  # from the pause to the worker picking it up


class SmartTurnRunner:
    """One model and one worker thread shared by every call of the process.

    The model loads lazily in the worker on the first request, so building the runner (at
    session config time) costs nothing and never blocks the event loop.
    """

    def __init__(
        self,
        path: Path,
        *,
        mode: TurnModelMode = "shadow",
        pause_ms: int = 200,
        threshold: float = 0.5,
        max_pending: int = 4,
        nice: int = 10,
    ) -> None:
        self.path = Path(path)
        self.mode = mode
        self.pause_ms = pause_ms
        self.threshold = threshold
        self.max_pending = max_pending
        self.nice = nice
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="smart-turn")
        self._model: SmartTurnModel | None = None
        self._lock = threading.Lock()
        self._pending = 0
        self._executor.submit(self._warm_up)  # load off the event loop, before the first pause

    def _warm_up(self) -> None:
        # Shadow work must not take CPU from live calls: on Linux a thread has its own nice
        # value, so the model's one thread yields to Whisper, the VAD and the event loop.
        with contextlib.suppress(AttributeError, OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self.nice)
        try:
            self._load()
        except Exception:
            log.exception("Smart Turn model failed to load: every pause will be 'skipped'")

    def _load(self) -> SmartTurnModel:
        with self._lock:
            if self._model is None:
                self._model = SmartTurnModel(self.path)
            return self._model

    def _run(self, pcm16: bytes, sample_rate: int, submitted: float) -> ShadowResult:
        start = time.perf_counter()
        try:
            prob = self._load().probability(pcm16, sample_rate)
        except Exception:
            log.exception("Smart Turn inference failed")
            prob = None
        finally:
            with self._lock:
                self._pending -= 1
        end = time.perf_counter()
        return ShadowResult(prob, (end - start) * 1000, (start - submitted) * 1000)

    def submit(self, pcm16: bytes, sample_rate: int) -> Future[ShadowResult] | None:
        """Queue one prediction; None when ``max_pending`` are already waiting (load shedding)."""
        with self._lock:
            if self._pending >= self.max_pending:
                return None
            self._pending += 1
        return self._executor.submit(self._run, pcm16, sample_rate, time.perf_counter())

    def predict(self, pcm16: bytes, sample_rate: int) -> ShadowResult:
        """Blocking prediction in the caller's thread (benches, tests)."""
        with self._lock:
            self._pending += 1
        return self._run(pcm16, sample_rate, time.perf_counter())


def resolve_mode(setting: str, model_ready: bool) -> TurnModelMode:
    """``auto`` → shadow when the model is installed, else off; ``on`` is not implemented yet and
    runs as shadow (the silence rule still decides); a mode asking for a missing model is off."""
    mode = setting.strip().lower()
    if mode not in ("auto", "off", "shadow", "on"):
        raise ValueError(f"TAINA_TURN_MODEL must be auto, off, shadow or on, not {setting!r}")
    if mode == "off" or not model_ready:
        if mode in ("shadow", "on"):
            log.warning("TAINA_TURN_MODEL=%s but the Smart Turn model is not installed: off", mode)
        return "off"
    if mode == "on":
        log.warning("TAINA_TURN_MODEL=on is not implemented yet: running in shadow mode")
    return "shadow" if mode == "auto" else mode  # type: ignore[return-value]


@lru_cache(maxsize=4)
def runner_for(
    setting: str, models_dir: str, pause_ms: int, threshold: float
) -> SmartTurnRunner | None:
    """The process's shared runner for these settings (None when off). Cached: one model and
    one thread per process however many sessions are configured."""
    from pipeline.model_files import smart_turn_path, smart_turn_ready

    mode = resolve_mode(setting, smart_turn_ready(Path(models_dir)))
    if mode == "off":
        return None
    return SmartTurnRunner(
        smart_turn_path(Path(models_dir)), mode=mode, pause_ms=pause_ms, threshold=threshold
    )


@dataclass
class _Pause:
    at_ms: float  # utterance time of the pause's start
    future: asyncio.Future[ShadowResult] | None
    outcome: str = ""  # "continued" (the caller spoke again) | "ended" (silence rule ended it)


@dataclass
class TurnShadow:
    """Per-call shadow of the turn model: which pauses it would have ended the turn at.

    Fed every VAD window by the session (``on_window``, cheap: a few comparisons, a snapshot of
    the utterance once per pause). ``turn_text`` is called with the final transcript and returns
    the numbers that also go into the caller turn's record.
    """

    runner: SmartTurnRunner
    metrics: PipelineMetrics | None
    sample_rate: int
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger] = log
    _pauses: list[_Pause] = field(default_factory=list)
    _fired: bool = False
    # The turn that ended last: (its mid-sentence pauses, its final pause). Kept apart from the
    # utterance in progress because the caller may start again before the transcript is ready.
    _ended: tuple[list[_Pause], _Pause | None] = ([], None)

    def on_window(
        self, detector: TurnDetector, event: TurnEvent | None, utt: UtteranceBuffer
    ) -> None:
        """Call before the session handles ``event`` (the utterance buffer is still whole)."""
        if event is TurnEvent.SPEECH_STARTED:
            self._pauses = []
            self._fired = False
            return
        if event is TurnEvent.TURN_ENDED:
            final = self._pauses[-1] if self._fired and self._pauses else None
            mids = [p for p in self._pauses if p is not final]
            if final is not None:
                final.outcome = "ended"
            self._ended = (mids, final)
            self._pauses = []
            self._fired = False
            return
        if not detector.speaking:
            return
        if self._fired and detector.silence_ms == 0.0:
            self._fired = False  # the caller went on: that pause was mid-sentence
            self._settle_mid(self._pauses[-1])
        elif not self._fired and detector.silence_ms >= self.runner.pause_ms:
            self._fired = True
            at_ms = detector.utterance_ms - detector.silence_ms
            fut = self.runner.submit(utt.snapshot(), self.sample_rate)
            wrapped = asyncio.wrap_future(fut) if fut is not None else None
            self._pauses.append(_Pause(at_ms, wrapped))

    def _says_end(self, result: ShadowResult | None) -> str:
        if result is None or result.probability is None:
            return "skipped"
        return "end" if result.probability >= self.runner.threshold else "hold"

    def _settle_mid(self, pause: _Pause) -> None:
        pause.outcome = "continued"
        if self.metrics is None:
            return

        def done(fut: asyncio.Future[ShadowResult] | None) -> None:
            result = _result(fut)
            self._observe(result, "mid_pause", self._says_end(result), "none")

        if pause.future is None or pause.future.done():
            done(pause.future)
        else:
            pause.future.add_done_callback(done)

    def _observe(self, result: ShadowResult | None, at: str, model: str, guard: str) -> None:
        if self.metrics is None:
            return
        self.metrics.turn_model_decisions_total.labels(at, model, guard).inc()
        if result is not None and result.probability is not None:
            self.metrics.turn_model_seconds.observe(result.infer_ms / 1000)

    def turn_text(
        self, text: str, endpoint_ms: float | None = None, history: Sequence[Any] = ()
    ) -> dict[str, float]:
        """Log the shadow's decision for the turn that just ended with ``text``.

        Mid-sentence pauses (the caller went on) at which the model said "end" are the turns the
        model alone would have cut; the guard is applied to the final transcript only (no
        transcript exists at a mid-sentence pause in shadow mode).
        """
        pauses, final = self._ended
        self._ended = ([], None)
        prompt = next(
            (m.content for m in reversed(history) if getattr(m, "role", "") == "assistant"), None
        )
        verdict = judge_transcript(text, prompt=prompt)
        # A prediction still running (a fast transcript, a busy worker) is waited for off the
        # reply path: the log line and metrics follow when it lands; the record goes without.
        pending = [
            p.future
            for p in (*pauses, final)
            if p is not None and p.future is not None and not p.future.done()
        ]
        if pending:
            left = [len(pending)]

            def one_done(_fut: object) -> None:
                left[0] -= 1
                if left[0] == 0:
                    self._report(pauses, final, verdict, endpoint_ms)

            for fut in pending:
                fut.add_done_callback(one_done)
            return {}
        return self._report(pauses, final, verdict, endpoint_ms)

    def _report(
        self,
        pauses: list[_Pause],
        final: _Pause | None,
        verdict: GuardDecision,
        endpoint_ms: float | None,
    ) -> dict[str, float]:
        result = _result(final.future) if final is not None else None
        model = self._says_end(result) if final is not None else "none"
        guard = "hold" if verdict.hold else "end"
        if final is not None:
            self._observe(result, "turn_end", model, guard)
        mids = [self._says_end(_result(p.future)) for p in pauses]
        would_cut = sum(1 for m in mids if m == "end")
        fields: dict[str, Any] = {
            "turn_model_mode": self.runner.mode,
            "turn_model_prob": None if result is None else result.probability,
            "turn_model_decision": model,
            "turn_model_infer_ms": None if result is None else round(result.infer_ms, 1),
            "turn_model_queued_ms": None if result is None else round(result.queued_ms, 1),
            "turn_guard_decision": guard,
            "turn_guard_reason": verdict.reason,
            "turn_mid_pauses": len(mids),
            "turn_mid_pauses_model_end": would_cut,
            "silence_rule_endpoint_ms": None if endpoint_ms is None else round(endpoint_ms, 1),
            "turn_model_would_end": model == "end" and not verdict.hold,
        }
        # A LoggerAdapter (the call's, carrying call_id) replaces ``extra``: merge by hand.
        base = self.logger.logger if isinstance(self.logger, logging.LoggerAdapter) else self.logger
        extra = dict(getattr(self.logger, "extra", None) or {})
        base.info(
            "turn model (shadow): %s",
            " ".join(f"{k}={v}" for k, v in fields.items()),
            extra={**extra, "fields": fields},
        )
        out: dict[str, float] = {
            "turn_model_mid_pauses": float(len(mids)),
            "turn_model_mid_end": float(would_cut),
        }
        if result is not None and result.probability is not None:
            out["turn_model_prob"] = round(result.probability, 4)
            out["turn_model_infer_ms"] = round(result.infer_ms, 1)
            out["turn_model_end"] = 1.0 if fields["turn_model_would_end"] else 0.0
        return out


def _result(fut: asyncio.Future[ShadowResult] | None) -> ShadowResult | None:
    """The finished prediction, or None when skipped, failed or still running (too late)."""
    if fut is None or not fut.done() or fut.cancelled() or fut.exception() is not None:
        return None
    return fut.result()


__all__ = [
    "GuardDecision",
    "ShadowResult",
    "SmartTurnModel",
    "SmartTurnRunner",
    "TurnShadow",
    "log_mel",
    "prepare_audio",
    "resolve_mode",
    "runner_for",
]
