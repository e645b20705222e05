"""Offline speech-to-text: faster-whisper (CTranslate2) running Whisper *base* in int8.

Whisper is trained on subtitled video, so on silence or line noise it tends to "hear" the
credits of a YouTube video. A phone assistant that answers those phantom sentences sounds
broken, so this module drops the well-known hallucinations before anyone sees them.
"""

from __future__ import annotations

import re
import time
import unicodedata
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import soxr

from pipeline.engines import FairGate, Transcript

WHISPER_RATE = 16000
_FRAMES_PER_S = 100  # log-mel frames per second of audio
_FULL_WINDOW_FRAMES = 3000  # Whisper's 30 s window
_TAIL_MARGIN_FRAMES = 100
# faster-whisper caps the prompt at 223 tokens; 448 - 223 - 4 special tokens leaves this much.
_MAX_NEW_TOKENS_CAP = 220
_LOOP = re.compile(r"(.{2,40}?)\1{3,}", re.DOTALL)
_LOOP_COMPRESSION_RATIO = 2.4
NO_SPEECH_PROB = 0.6
# Speech level Whisper hears best at (dBFS RMS of the speech frames), and how far a quiet line
# may be raised towards it; below the floor (about -66 dBFS) there is nothing to level.
LEVEL_TARGET_DBFS = -20.0
LEVEL_MAX_GAIN_DB = 24.0
_LEVEL_FLOOR = 5e-4
_LEVEL_PEAK = 0.97
LOW_LOGPROB = -1.0
MAYBE_NO_SPEECH_PROB = 0.45

# Normalized (lowercase, no accents, no punctuation) transcripts Whisper produces on
# silence/noise and that a caller practically never says on their own.
_HALLUCINATIONS = frozenset(
    {
        "gracias por ver",
        "gracias por ver el video",
        "gracias por ver el video y nos vemos en el proximo",
        "muchas gracias por ver",
        "muchas gracias por ver el video",
        "gracias por su atencion y nos vemos en el proximo video",
        "nos vemos en el proximo video",
        "suscribete",
        "suscribete al canal",
        "no olvides suscribirte",
        "hasta la proxima",
        "musica",
        "musica de fondo",
        "aplausos",
        "risas",
        "silencio",
        "sous titrage st 501",
        "thank you for watching",
        "thanks for watching",
    }
)
# Substrings (normalized) that only ever come from subtitle credits.
_HALLUCINATION_MARKERS = ("amara org", "subtitulos realizados por", "subtitulado por")
_BRACKETED = re.compile(r"^\s*[\[(♪*].*[\])♪*]\s*$")
_NON_WORD = re.compile(r"[^\w\s]|_")
# A transcript that is a run of at least this many words of the initial prompt is the prompt
# leaking out, not something the caller said.
_PROMPT_ECHO_MIN_WORDS = 6
# ... or a shuffle of its words ("Cédula, pasaporte, licencia de conducir, en Santo Domingo").
_PROMPT_ECHO_WORD_SHARE = 0.9


def normalize_text(text: str) -> str:
    """Lowercase, strip accents and punctuation, collapse spaces (for comparisons only)."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    no_accents = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(_NON_WORD.sub(" ", no_accents).split())


def is_hallucination(text: str, prompt: str = "") -> bool:
    """True for transcripts that Whisper invents on silence or noise."""
    if not text.strip() or _BRACKETED.match(text):
        return True
    norm = normalize_text(text)
    if not norm:  # only punctuation / symbols
        return True
    if norm in _HALLUCINATIONS or any(m in norm for m in _HALLUCINATION_MARKERS):
        return True
    words = norm.split()
    if prompt and len(words) >= _PROMPT_ECHO_MIN_WORDS:
        prompt_norm = normalize_text(prompt)
        if f" {norm} " in f" {prompt_norm} ":
            return True
        vocabulary = set(prompt_norm.split())
        return sum(w in vocabulary for w in words) >= _PROMPT_ECHO_WORD_SHARE * len(words)
    return False


def level_speech(
    samples: np.ndarray,
    target_dbfs: float = LEVEL_TARGET_DBFS,
    max_gain_db: float = LEVEL_MAX_GAIN_DB,
) -> np.ndarray:
    """Bring an utterance to a standard speech level before Whisper.

    Phone lines arrive 6-10 dB too quiet or too loud, and Whisper base on a quiet short answer
    ("Sí, correcto", "La primera") returns one syllable or nothing: measured, a -10 dB line
    doubled the WER of short answers while the same audio at normal level was heard right.
    The reference is the RMS of the louder half of 20 ms frames (the speech, not the pauses);
    the gain is capped so a noise-only clip is not blown up into words, and the peak is kept
    under full scale.
    """
    frame = WHISPER_RATE // 50
    if samples.size < frame:
        return samples
    frames = samples[: samples.size // frame * frame].reshape(-1, frame)
    rms = np.sort(np.sqrt(np.mean(frames * frames, axis=1)))
    ref = float(np.sqrt(np.mean(rms[rms.size // 2 :] ** 2)))
    if ref < _LEVEL_FLOOR:
        return samples
    gain = min(10 ** ((target_dbfs - 20 * np.log10(ref)) / 20), 10 ** (max_gain_db / 20))
    peak = float(np.max(np.abs(samples))) * gain
    if peak > _LEVEL_PEAK:
        gain *= _LEVEL_PEAK / peak
    return samples * np.float32(gain)


def pcm16_to_whisper_input(pcm16: bytes, sample_rate: int, level: bool = True) -> np.ndarray:
    """PCM16 mono bytes at any rate -> float32 in [-1, 1] at 16 kHz, speech level evened out."""
    samples = np.frombuffer(pcm16, dtype="<i2").astype(np.float32) / 32768.0
    if sample_rate != WHISPER_RATE and samples.size:
        samples = soxr.resample(samples, sample_rate, WHISPER_RATE, quality="HQ")
    if level:
        samples = level_speech(samples)
    return np.ascontiguousarray(samples, dtype=np.float32)


def _is_noise_segment(no_speech_prob: float, avg_logprob: float, looped: bool) -> bool:
    """Whisper's own rule (likely silence and unsure), plus a softer one for phone noise.

    On synthetic and real speech no_speech_prob stays well below 0.3; on hiss it sits around
    0.5-0.8 while the decoder either mumbles (low log-probability) or loops.
    """
    if no_speech_prob > NO_SPEECH_PROB and avg_logprob < LOW_LOGPROB:
        return True
    return no_speech_prob > MAYBE_NO_SPEECH_PROB and (avg_logprob < LOW_LOGPROB or looped)


def collapse_loops(text: str) -> str:
    """Keep one copy of a phrase Whisper repeated four or more times in a row (decoder loop)."""
    return " ".join(_LOOP.sub(r"\1", text).split())


def _make_model_class() -> type:
    from faster_whisper import WhisperModel

    class ShortWindowWhisperModel(WhisperModel):  # type: ignore[misc]
        """WhisperModel that encodes only the audio that exists, not a padded 30 s window.

        faster-whisper always pads features to 30 s, and on 2 cores the encoder over those
        30 s costs ~0.5 s even for a 2 s utterance; CTranslate2 accepts shorter inputs, so we
        cut the zero padding back off. Below ~10 s of context Whisper starts looping, so we keep
        at least ``min_frames``. Anything that does not look like a padded window is untouched.
        """

        min_frames: int = 0

        def encode(self, features: np.ndarray):  # type: ignore[no-untyped-def]
            if self.min_frames and features.shape[-1] == _FULL_WINDOW_FRAMES:
                frames = features if features.ndim == 2 else features[0]
                used = np.flatnonzero(frames.any(axis=0))
                content = int(used[-1]) + 1 if used.size else 0
                keep = max(self.min_frames, content + _TAIL_MARGIN_FRAMES)
                keep += keep % 2  # the encoder's stride-2 convolution halves the frames
                if keep < _FULL_WINDOW_FRAMES:
                    features = np.ascontiguousarray(features[..., :keep])
            return super().encode(features)

    return ShortWindowWhisperModel


class WhisperSTT:
    """SpeechToText over faster-whisper. Construction loads the model (about a second)."""

    name = "whisper"

    def __init__(
        self,
        model_dir: Path,
        language: str = "es",
        prompt: str = "",
        beam_size: int = 1,
        cpu_threads: int = 2,
        temperatures: Sequence[float] = (0.0, 0.4),
        min_encoder_s: float | None = 10.0,
        hotwords: str = "",
        max_queued_per_call: int = 2,
    ) -> None:
        self.model_dir = Path(model_dir)
        self.language = language
        self.prompt = prompt
        self.beam_size = beam_size
        # faster-whisper puts hotwords before the prompt in the "previous text" slot: another
        # way to bias the decoder toward the office's words (off unless measured to help).
        self.hotwords = hotwords
        # faster-whisper's default retries with six temperatures when decoding looks poor;
        # on noisy phone audio that can multiply latency, so we allow a single retry.
        self.temperatures = list(temperatures)
        self.model = _make_model_class()(
            str(self.model_dir), device="cpu", compute_type="int8", cpu_threads=cpu_threads
        )
        # ``min_encoder_s=None`` restores stock behaviour (always encode 30 s).
        self.model.min_frames = int((min_encoder_s or 0) * _FRAMES_PER_S)
        # One thread: CTranslate2 already uses ``cpu_threads`` per call, and queueing
        # utterances keeps concurrent calls from thrashing the cores.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="whisper")
        # Calls take turns fairly for that one thread: a call's backlog (a client feeding
        # utterance after utterance) never queues ahead of another caller's turn.
        self.gate = FairGate("stt", 1, max_waiting_per_call=max_queued_per_call)

    metrics = None  # set by the app (attach_metrics): the fair queue's wait and shed figures

    def attach_metrics(self, metrics: object) -> None:
        self.metrics = metrics  # type: ignore[assignment]
        self.gate.metrics = metrics

    @property
    def _bias_text(self) -> str:
        """All text the decoder was primed with: an echo of any of it is not the caller."""
        return f"{self.hotwords} {self.prompt}".strip()

    async def transcribe(self, pcm16: bytes, sample_rate: int) -> Transcript:
        return await self.gate.run(self._executor, self._transcribe_sync, pcm16, sample_rate)

    async def warm_up(self) -> None:
        """Run half a second of silence through the model so the first caller does not pay for
        lazy initialisation (memory allocation, int8 weight packing)."""
        await self.transcribe(bytes(WHISPER_RATE), WHISPER_RATE)

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)

    def _transcribe_sync(self, pcm16: bytes, sample_rate: int) -> Transcript:
        started = time.perf_counter()
        audio = pcm16_to_whisper_input(pcm16, sample_rate)
        audio_s = audio.size / WHISPER_RATE
        if audio.size == 0:
            return Transcript(text="", audio_s=0.0, elapsed_s=time.perf_counter() - started)
        segments, info = self.model.transcribe(
            audio,
            language=self.language,
            beam_size=self.beam_size,
            initial_prompt=self.prompt or None,
            hotwords=self.hotwords or None,
            condition_on_previous_text=False,
            without_timestamps=True,
            vad_filter=False,
            temperature=self.temperatures,
            # Bounds the cost of a decoder loop: nobody says more than ~10 tokens a second.
            max_new_tokens=min(_MAX_NEW_TOKENS_CAP, 16 + int(audio_s * 10)),
        )
        kept: list[str] = []
        dropped: list[str] = []
        for seg in segments:  # the generator does the decoding work
            text = seg.text.strip()
            looped = seg.compression_ratio > _LOOP_COMPRESSION_RATIO
            if looped:
                text = collapse_loops(text)
            if _is_noise_segment(seg.no_speech_prob, seg.avg_logprob, looped) or is_hallucination(
                text, self._bias_text
            ):
                if text:
                    dropped.append(text)
                continue
            kept.append(text)
        text = " ".join(kept).strip()
        if is_hallucination(text, self._bias_text):
            if text:
                dropped.append(text)
            text = ""
        extra: dict[str, object] = {"language_probability": round(info.language_probability, 3)}
        if dropped:
            extra["dropped"] = dropped
        return Transcript(
            text=text,
            audio_s=audio_s,
            elapsed_s=time.perf_counter() - started,
            provider=self.name,
            extra=extra,
        )
