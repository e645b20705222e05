"""Which embedded voice can a caller understand over the phone? Intelligibility and cost.

For each candidate voice, the bot's own phrases (greeting, slot questions, dates, times, cédula
and phone read-backs, confirmation codes, knowledge answers) are synthesized the way a call
does it (the pipeline at 8 kHz), sent through the phone band (300–3400 Hz band-pass, G.711
μ-law round trip) and transcribed by Whisper base with the server's STT settings. Reported:

- WER against what the voice was asked to say, on normalized text (lower case, no accents or
  punctuation, numbers in one form: "veintitrés", "23" and "2 3" are the same words, so only
  real mishearings count);
- CPU seconds per second of speech, median time to first audio, RSS growth of the process.

Run: ``.venv/bin/python bench/tts_voices_bench.py [--voices pico-1.0,espeak-today] [--quick]``.
Timings are noisy on a shared machine: compare voices within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import re
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.brain.spanish_text import normalize, words_to_digits
from pipeline.engines import TextToSpeech
from pipeline.speech_format import spoken_text
from telephony.audio_codec import mulaw_to_pcm16, pcm16_to_mulaw

LINE_RATE = 8000

# The assistant's real sentences (pipeline/brain/phrases.py and the dialogue's templates),
# with dates, times, cédulas, phones, codes and knowledge answers as the brain writes them.
PHRASES: tuple[str, ...] = (
    "Buenos días, gracias por llamar a Punto Ciudadano. Le habla Taína, su asistente virtual. "
    "¿En qué le puedo ayudar?",
    "Con gusto le ayudo con la cita.",
    "¿Para qué trámite es la cita? Por ejemplo: cédula, pasaporte, licencia de conducir o "
    "certificado de no antecedentes penales.",
    "¿A nombre de quién hago la cita? Dígame el nombre completo.",
    "¿Cuál es el número de cédula? Puede decirlo o marcarlo en el teclado.",
    "¿A qué número de teléfono le podemos contactar?",
    "¿Para qué día y a qué hora le gustaría?",
    "¿En qué oficina le queda mejor: Santo Domingo Centro, Santiago o La Romana?",
    "¿En Santo Domingo Centro o en Santo Domingo Este?",
    "Perfecto, el lunes 23 de noviembre a las diez de la mañana.",
    "Para el martes 1 de diciembre tengo a las nueve, a las diez y media o a las dos de la "
    "tarde. ¿Cuál prefiere?",
    "Lo más cercano que tengo es el jueves 17 de diciembre a las 3:30 de la tarde. ¿Le sirve?",
    "Le confirmo: cita de renovación de cédula en Santo Domingo Este, el viernes 4 de "
    "diciembre a las once de la mañana, a nombre de María Fernández. ¿Está correcto?",
    "Tengo su cédula como 001-2345678-9. ¿Es correcto?",
    "Su cédula es 40212345671, ¿correcto?",
    "¿Le podemos contactar al número desde el que llama, que termina en 4 5 6 7?",
    "Anoté el teléfono 809-555-0199.",
    "Listo, su cita quedó reservada. Su código de confirmación es TA-7K3P9.",
    "El código de su cita es TA-H4M2X.",
    "Llegue unos diez minutos antes, con su cédula.",
    "¿Me dice el código de confirmación de la cita? Si no lo tiene, dígame su número de cédula.",
    "Veo una cita de pasaporte para el miércoles 9 de diciembre a las ocho de la mañana.",
    "¿Confirma que desea cancelar su cita?",
    "De acuerdo, su cita sigue en pie.",
    "El pasaporte para adultos cuesta RD$3,500 y vale por 10 años.",
    "El pasaporte para menores de 18 años cuesta RD$2,500 y vale por 5 años.",
    "Las citas son de lunes a viernes de 8:00 de la mañana a 3:30 de la tarde.",
    "Todas las oficinas abren a las 8:00 de la mañana y cierran a las 4:00 de la tarde.",
    "La línea de citas e información es el 809-555-0199.",
    "Para renovar la licencia de conducir necesita la cédula y la licencia vencida.",
    "El certificado de no antecedentes penales está listo en 3 días laborables.",
    "La apostilla de un documento cuesta RD$1,000.",
    "¿Desea saber algo más?",
    "¿Desea que le reserve una cita?",
    "En este momento no tengo cómo transferirle con un agente. Puede llamar a la oficina al "
    "809-555-0150, de lunes a viernes de 8:00 de la mañana a 4:00 de la tarde.",
    "Gracias por llamar a Punto Ciudadano. ¡Que tenga un buen día!",
)


_NAMES = ("María Fernández", "José Antonio Rodríguez", "Ana Pérez", "Luis Manuel Santos")
_SERVICES = ("renovación de cédula", "pasaporte", "licencia de conducir", "apostilla")
_OFFICES = ("Santo Domingo Centro", "Santo Domingo Este", "Santiago", "La Romana")
_WEEKDAYS = ("lunes", "martes", "miércoles", "jueves", "viernes", "sábado")
_MONTHS = ("enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto",
           "septiembre", "octubre", "noviembre", "diciembre")  # fmt: skip
_CODE_CHARS = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"


def generated_phrases(n: int, seed: int = 12) -> list[str]:
    """More read-backs with random values (seeded), so the figures do not rest on a few
    lucky numbers: dates, times, cédulas, phones, codes and amounts in the bot's templates."""
    import random

    rng = random.Random(seed)

    def date() -> str:
        return f"el {rng.choice(_WEEKDAYS)} {rng.randint(1, 28)} de {rng.choice(_MONTHS)}"

    def time_() -> str:
        return f"{rng.randint(8, 11)}:{rng.choice(['00', '30', '15'])} de la mañana"

    def digits(k: int) -> str:
        return "".join(rng.choice("0123456789") for _ in range(k))

    templates = (
        lambda: f"Perfecto, {date()} a las {time_()}.",
        lambda: f"Tengo su cédula como {digits(3)}-{digits(7)}-{digits(1)}. ¿Es correcto?",
        lambda: f"Anoté el teléfono 809-{digits(3)}-{digits(4)}.",
        lambda: (
            "Su código de confirmación es TA-"
            + "".join(rng.choice(_CODE_CHARS) for _ in range(5))
            + "."
        ),
        lambda: (
            f"Le confirmo: cita de {rng.choice(_SERVICES)} en {rng.choice(_OFFICES)}, "
            f"{date()} a las {time_()}, a nombre de {rng.choice(_NAMES)}. ¿Está correcto?"
        ),
        lambda: f"El trámite cuesta RD${rng.randint(2, 9)},{rng.choice(['000', '500'])}.",
        lambda: f"Para {date()} tengo a las {time_()}. ¿Le sirve?",
    )
    return [templates[i % len(templates)]() for i in range(n)]


# --- the phone line ---------------------------------------------------------------------------


def band_limit(
    samples: np.ndarray, rate: int, low: float = 300.0, high: float = 3400.0
) -> np.ndarray:
    """Telephone channel: FFT band-pass with 80 Hz raised-cosine edges."""
    if samples.size == 0:
        return samples.astype(np.float64)
    n = samples.size
    size = 1 << int(np.ceil(np.log2(n + rate // 10)))
    spec = np.fft.rfft(samples.astype(np.float64), size)
    freqs = np.fft.rfftfreq(size, 1.0 / rate)
    rise = np.clip((freqs - (low - 80)) / 160, 0, 1)
    fall = 1 - np.clip((freqs - (high - 80)) / 160, 0, 1)
    mask = (0.5 - 0.5 * np.cos(np.pi * rise)) * (0.5 - 0.5 * np.cos(np.pi * fall))
    return np.fft.irfft(spec * mask, size)[:n]


def phone_path(pcm16_8k: bytes) -> bytes:
    """What the caller's handset gets: band-limited, μ-law encoded and decoded (8 kHz)."""
    samples = np.frombuffer(pcm16_8k, dtype="<i2")
    limited = np.clip(np.round(band_limit(samples, LINE_RATE)), -32768, 32767).astype("<i2")
    return mulaw_to_pcm16(pcm16_to_mulaw(limited.tobytes()))


# --- scoring ----------------------------------------------------------------------------------

_LETTERS = {
    "be": "b",
    "ve": "v",
    "uve": "v",
    "ce": "c",
    "se": "c",
    "de": "d",
    "efe": "f",
    "ge": "g",
    "hache": "h",
    "jota": "j",
    "ka": "k",
    "ca": "k",
    "ele": "l",
    "eme": "m",
    "ene": "n",
    "pe": "p",
    "cu": "q",
    "erre": "r",
    "ere": "r",
    "ese": "s",
    "te": "t",
    "equis": "x",
    "ye": "y",
    "zeta": "z",
    "seta": "z",
}
_DROP = {"grande", "chiquita"}  # "be grande", "ve chiquita": the qualifier is not a word
_CLOCK = re.compile(r"\b(\d{1,2}):(\d{2})\b")
_THOUSANDS = re.compile(r"\b(\d{1,3})[.,](\d{3})\b")


def _clock(m: re.Match[str]) -> str:
    hour, minute = m.group(1), int(m.group(2))
    tail = {0: "", 30: " y media", 15: " y cuarto"}.get(minute, f" y {minute}")
    return hour + tail


def normalize_for_wer(text: str) -> str:
    """One written form for what was said: numbers as single digits, letters as letters,
    no case, accents or punctuation; "a. m." is "de la mañana"."""
    s = _THOUSANDS.sub(r"\1\2", text.lower())
    s = re.sub(r"\b(?:rd|us)?\$\s?(\d+)", r"\1 pesos", s)
    s = re.sub(r"\b(?:rd|us)\b", " ", s)
    s = _CLOCK.sub(_clock, s)
    s = normalize(s)
    s = re.sub(r"\bam\b", "de la manana", s)
    s = re.sub(r"\bpm\b", "de la tarde", s)
    s = re.sub(r"(?<=\d)[:/.,\-](?=\d)", " ", s)
    s = words_to_digits(s)
    s = re.sub(r"\bprimero\b", "1", s)
    tokens: list[str] = []
    for token in s.split():
        if token in _DROP:
            continue
        if token.isdigit():
            tokens.extend(token)  # "23", "2 3", "veintitres" → "2 3"
        elif re.fullmatch(r"[a-z]\d|\d[a-z]|[a-z0-9]{2,6}", token) and re.search(r"\d", token):
            tokens.extend(token)  # "7k3p9" → 7 k 3 p 9
        else:
            tokens.append(_LETTERS.get(token, token))
    return " ".join(tokens)


def wer(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus word error rate (all errors / all reference words) on normalized text."""
    import jiwer

    refs = [normalize_for_wer(r) or "<empty>" for r in references]
    hyps = [normalize_for_wer(h) for h in hypotheses]
    return float(jiwer.wer(refs, hyps))


# --- voices -----------------------------------------------------------------------------------


@dataclass
class Candidate:
    name: str
    make: Callable[[], TextToSpeech]
    note: str = ""


def _espeak(spoken: bool, **kw: object) -> Callable[[], TextToSpeech]:
    def make() -> TextToSpeech:
        from app.settings import Settings
        from pipeline.tts import EspeakTTS

        s = Settings()
        return EspeakTTS(
            voice=s.tts_voice, rate_wpm=s.tts_rate_wpm, pitch=s.tts_pitch, spoken=spoken
        )

    return make


def _pico(
    speed: float, slow: float = 0.85, volume: float = 1.0, pause_ms: int = 150
) -> Callable[[], TextToSpeech]:
    def make() -> TextToSpeech:
        from pipeline.tts_pico import PicoTTS

        return PicoTTS(speed=speed, slow_speed=slow, volume=volume, group_pause_ms=pause_ms)

    return make


def _kokoro(voice: str, lang: str = "es") -> Callable[[], TextToSpeech]:
    def make() -> TextToSpeech:
        from app.settings import Settings
        from pipeline.tts_kokoro import KokoroTTS

        return KokoroTTS(voice=voice, lang=lang, models_dir=Settings().models_dir)

    return make


def _pico_default() -> TextToSpeech:
    from app.settings import Settings
    from pipeline.tts_pico import PicoTTS

    return PicoTTS(speed=Settings().tts_pico_speed)


def _pico_unshaped() -> TextToSpeech:
    from app.settings import Settings
    from pipeline.tts_pico import PicoTTS

    return PicoTTS(speed=Settings().tts_pico_speed, phone_shaping=False)


CANDIDATES = {
    "espeak-today": Candidate(
        "espeak-today", _espeak(False), "es-419+miguel 160 wpm, text as given"
    ),
    "espeak-formatted": Candidate("espeak-formatted", _espeak(True), "same + speech_format"),
    "pico": Candidate(
        "pico", _pico_default, "es-ES, TAINA defaults (0.9, vol 0.6, slow 0.85, shaped)"
    ),
    "pico-unshaped": Candidate(
        "pico-unshaped", _pico_unshaped, "same without presence boost + compression"
    ),
    "pico-raw": Candidate("pico-raw", _pico(1.0, 1.0, 1.0, 0), "es-ES, Pico's own speed/volume"),
    "kokoro-jf_alpha": Candidate("kokoro-jf_alpha", _kokoro("jf_alpha"), "eSpeak es phonemes"),
    "kokoro-jm_kumo": Candidate("kokoro-jm_kumo", _kokoro("jm_kumo"), "eSpeak es phonemes"),
}


def candidate(name: str) -> Candidate:
    """A named candidate, or an ad-hoc Pico setting: "pico:SPEED:SLOW:VOLUME:PAUSE_MS"."""
    if name in CANDIDATES:
        return CANDIDATES[name]
    if name.startswith("pico:"):
        speed, slow, volume, pause = (float(x) for x in [*name.split(":")[1:5], 150][:4])
        return Candidate(name, _pico(speed, slow, volume, int(pause)), "es-ES")
    raise SystemExit(f"unknown voice {name!r}; known: {', '.join(CANDIDATES)} or pico:S:SLOW:VOL")


def _cpu_s() -> float:
    """CPU seconds of this process and its children (Pico synthesizes in a worker process)."""
    import psutil

    me = psutil.Process()
    total = time.process_time()
    for child in me.children(recursive=True):
        try:
            times = child.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 1e6


@dataclass
class Result:
    name: str
    wer: float
    cpu_per_audio_s: float
    first_audio_ms: float
    rss_mb: float
    audio_s: float
    note: str
    hypotheses: list[str]


async def render(tts: TextToSpeech, text: str) -> tuple[bytes, float]:
    """PCM16 at 8 kHz and seconds to the first chunk."""
    t0 = time.perf_counter()
    first = None
    chunks: list[bytes] = []
    async for chunk in tts.synthesize(text, LINE_RATE):
        if first is None:
            first = time.perf_counter() - t0
        chunks.append(chunk)
    return b"".join(chunks), first or 0.0


def noisy_line(pcm16_8k: bytes, seed: str) -> bytes:
    """The spoken evaluation's line (telephony/phone_band.py): band, a level 6-10 dB off,
    noise at 25-30 dB SNR, μ-law: what a simulated caller's ear gets of the bot."""
    from telephony.audio_codec import pcm16_to_mulaw
    from telephony.phone_band import heard_from_ulaw

    return heard_from_ulaw(pcm16_to_mulaw(pcm16_8k), seed)


async def measure(
    candidate: Candidate,
    phrases: Sequence[str],
    stt: object,
    warm: bool = True,
    line: str = "clean",
) -> Result:
    gc.collect()
    rss0 = _rss_mb()
    tts = candidate.make()
    if warm:  # load models outside the timed part, as the server does at start-up
        await render(tts, "Listo.")
    cpu0 = _cpu_s()
    audios, firsts = [], []
    for text in phrases:
        audio, first = await render(tts, text)
        audios.append(audio)
        firsts.append(first)
    cpu = _cpu_s() - cpu0
    rss = _rss_mb() - rss0
    audio_s = sum(len(a) for a in audios) / 2 / LINE_RATE
    hyps = []
    for audio in audios:
        heard = phone_path(audio) if line == "clean" else noisy_line(audio, str(len(hyps)))
        transcript = await stt.transcribe(heard, LINE_RATE)  # type: ignore[attr-defined]
        hyps.append(transcript if isinstance(transcript, str) else transcript.text)
    return Result(
        candidate.name,
        wer([spoken_text(p) for p in phrases], hyps),
        cpu / max(audio_s, 1e-9),
        statistics.median(firsts) * 1000,
        rss,
        audio_s,
        candidate.note,
        hyps,
    )


def make_stt(ear: str = "product") -> object:
    """Whisper base with the server's STT settings ("product": catalog prompt, tuned), or a
    caller's plain ear ("plain": no prompt, as the spoken evaluation's citizens hear)."""
    if ear == "plain":
        from app.spoken_eval import Ears

        return Ears()
    from app.services import whisper_settings
    from app.settings import Settings
    from pipeline.model_files import ensure_whisper_model
    from pipeline.stt import WhisperSTT

    s = Settings()
    return WhisperSTT(ensure_whisper_model(s.whisper_dir), **whisper_settings(s))


def table(results: Sequence[Result]) -> str:
    lines = [
        "| voice | WER after 8 kHz μ-law | CPU s per s of speech | first audio (median) "
        "| RSS growth | notes |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.name} | {r.wer:.3f} | {r.cpu_per_audio_s:.4f} | {r.first_audio_ms:.0f} ms "
            f"| {r.rss_mb:.0f} MB | {r.note} |"
        )
    return "\n".join(lines)


async def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--voices", default=",".join(CANDIDATES), help=f"among {', '.join(CANDIDATES)}"
    )
    parser.add_argument("--quick", action="store_true", help="first 12 phrases only")
    parser.add_argument("--show", action="store_true", help="print every transcript")
    parser.add_argument("--extra", type=int, default=0, help="add N generated read-backs")
    parser.add_argument(
        "--line",
        choices=("clean", "noisy"),
        default="clean",
        help="clean: band + μ-law; noisy: the spoken evaluation's line (level, noise)",
    )
    parser.add_argument(
        "--ear",
        choices=("product", "plain"),
        default="product",
        help="the server's tuned Whisper, or a caller's plain one (no prompt)",
    )
    args = parser.parse_args(argv)
    phrases = list(PHRASES[:12] if args.quick else PHRASES) + generated_phrases(args.extra)
    stt = make_stt(args.ear)
    if hasattr(stt, "warm_up"):
        await stt.warm_up()
    results = []
    for name in args.voices.split(","):
        result = await measure(candidate(name), phrases, stt, line=args.line)
        results.append(result)
        print(f"{name}: WER {result.wer:.3f}", file=sys.stderr, flush=True)
        if args.show:
            for ref, hyp in zip(phrases, result.hypotheses, strict=True):
                r, h = normalize_for_wer(spoken_text(ref)), normalize_for_wer(hyp)
                if r != h:
                    print(f"  ref: {r}\n  hyp: {h}", file=sys.stderr)
    print(
        f"{len(phrases)} phrases, {sum(len(p.split()) for p in phrases)} words, "
        f"line {args.line}, ear {args.ear}\n"
    )
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
