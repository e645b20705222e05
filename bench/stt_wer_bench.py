"""How well Whisper base hears callers on a phone line, per voice family and per setting.

Caller speech (natural sentences a citizen would say, not the tests' phrases) is rendered by
several voice families (eSpeak variants, SVOX Pico, Kokoro) and, for what people recorded,
by a human (Debian's asterisk es-MX digits and weekdays, spliced with a person's pauses);
every utterance goes through the phone band (300–3400 Hz, level change, light noise, 8 kHz
μ-law) and is transcribed by every STT setting in one run, so the comparison shares the same
audio and the same CPU conditions. Reports word error rate per family, raw and after
:func:`pipeline.brain.heard.repair_transcript`, the decode time per 3 s of speech, and the
phantom transcripts produced on line noise alone.

Usage: ``.venv/bin/python bench/stt_wer_bench.py [--quick] [--json out.json]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import jiwer
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.booking import CATALOG  # noqa: E402
from app.settings import DEFAULT_STT_PROMPT  # noqa: E402
from pipeline.brain.heard import (  # noqa: E402
    DIGITS_PROMPT,
    repair_transcript,
    spoken_digits,
    whisper_prompt,
)
from pipeline.brain.spanish_text import normalize, words_to_digits  # noqa: E402
from pipeline.stt import WhisperSTT  # noqa: E402
from telephony.caller_voices import (  # noqa: E402
    VOICES,
    VoiceUnavailable,
    available,
    render,
    voices_of,
)
from telephony.phone_band import LINE_RATE, apply_phone_band  # noqa: E402

# What citizens say when they call the office: requests, answers, questions. Written for this
# bench only; none of them is a test phrase.
CALLER_SENTENCES = [
    "Buenas tardes, quisiera sacar una cita para renovar la cédula.",
    "Necesito un turno para el pasaporte de mi hija, que es menor de edad.",
    "¿Cuánto cuesta la licencia de conducir por primera vez?",
    "Quiero apostillar mi título universitario para llevarlo a España.",
    "¿Dónde queda la oficina de Santiago?",
    "Me gustaría ir el jueves en la mañana, si se puede.",
    "Mi nombre es Carmen Rosario Peña.",
    "Me llamo José Miguel Ramírez.",
    "Para el martes dieciocho de marzo, por favor.",
    "¿Ustedes abren los sábados?",
    "Se me perdió la cédula y necesito un duplicado.",
    "¿Qué papeles tengo que llevar para el pasaporte?",
    "Prefiero la oficina de Santo Domingo Este.",
    "Mejor en la tarde, como a las dos.",
    "No, el miércoles no puedo, mejor el viernes.",
    "Necesito el certificado de no antecedentes penales para un trabajo.",
    "Quiero una copia del acta de nacimiento.",
    "¿Cuánto tiempo tarda en salir el pasaporte?",
    "Sí, está bien, confirme la cita.",
    "No, gracias, eso era todo.",
    "Quisiera cambiar mi cita para otro día.",
    "Necesito cancelar la cita que tengo el lunes.",
    "¿Me puede decir el horario de la oficina de La Romana?",
    "Es para renovar la licencia, se me venció el mes pasado.",
    "En Santo Domingo Centro, la que está en la veintisiete de febrero.",
    "Mi teléfono termina en cuatro cinco seis siete.",
    "¿Se puede pagar con tarjeta o solo en efectivo?",
    "Quiero hablar con una persona, por favor.",
    "¿Hay que hacer cita para el acta de matrimonio?",
    "Una cita para el quince de abril en la mañana.",
    "Voy a legalizar unos documentos para estudiar afuera.",
    "El primer día que tenga disponible está bien.",
    "¿Qué necesito para sacar la licencia de aprendizaje?",
    "Soy María Altagracia de los Santos.",
    "A nombre de Pedro Antonio Martínez, por favor.",
    "El día veinte de mayo a las diez de la mañana.",
    "¿La cédula la entregan el mismo día?",
    "Buenos días, llamo para averiguar lo del papel de buena conducta.",
    "Tengo una cita y no me acuerdo de la hora.",
    "Para la semana que viene, el lunes temprano.",
    "¿Esa oficina atiende a personas mayores sin cita?",
    "Correcto, todo está bien así.",
    "Perdón, no le escuché bien, ¿me lo repite?",
    "Quiero sacar la cédula por primera vez, tengo dieciocho años.",
    "¿En cuál oficina puedo hacer la apostilla?",
    "Gracias, muy amable, que tenga buen día.",
]

# A person can only say what was recorded (digits, weekdays, "mañana", "hoy"): cédula and
# phone numbers said digit by digit, and day names.
HUMAN_UTTERANCES = [
    "0 0 1 2 3 4 5 6 7 8 9",
    "4 0 2 1 5 8 7 3 3 0 1",
    "2 2 3 0 0 9 1 4 6 5 8",
    "0 3 1 7 7 2 0 5 9 4 2",
    "1 0 9 8 8 6 4 2 0 3 5",
    "8 0 9 5 5 5 1 2 3 4",
    "8 2 9 4 1 0 7 7 6 3",
    "8 4 9 2 0 3 6 1 1 8",
    "lunes",
    "martes",
    "miércoles",
    "jueves",
    "viernes",
    "sábado",
    "mañana",
    "hoy",
]
SPOKEN_DIGITS = {str(i): w for i, w in enumerate("cero uno dos tres cuatro cinco seis siete "
                                                  "ocho nueve".split())}  # fmt: skip


def default_voices() -> list[str]:
    """A few variants of every synthetic family and the human es-MX voice."""
    picks = {"espeak": 3, "pico": 2, "kokoro": 2}
    names = [v.name for f, n in picks.items() for v in voices_of(f)[:n]]
    return [*names, "human-mx"]


@dataclass(frozen=True)
class Setting:
    name: str
    beam: int
    prompt: str
    hotwords: str = ""
    digits_prompt: str = ""  # used instead of ``prompt`` when digits are expected


def settings_to_compare() -> list[Setting]:
    short = whisper_prompt(CATALOG, months=False, full_names=False)
    full = whisper_prompt(CATALOG)
    words = "cédula, pasaporte, licencia, apostilla, antecedentes, Santiago, La Romana"
    return [
        Setting("beam1 + fixed prompt (before)", 1, DEFAULT_STT_PROMPT),
        Setting("beam5 + fixed prompt", 5, DEFAULT_STT_PROMPT),
        Setting("beam1 + catalog prompt (long)", 1, full),
        Setting("beam1 + catalog prompt (short)", 1, short),
        Setting("beam5 + catalog prompt (short)", 5, short),
        Setting("beam1 + fixed prompt + hotwords", 1, DEFAULT_STT_PROMPT, words),
        Setting("beam1 + catalog (short) + digits prompt", 1, short, "", DIGITS_PROMPT),
        Setting("beam3 + catalog prompt (long)", 3, full),
        Setting("beam5 + catalog prompt (long)", 5, full),
    ]


@dataclass
class Utterance:
    voice: str
    family: str
    reference: str
    expect: str | None
    pcm8k: bytes


@dataclass
class Scores:
    texts: list[tuple[str, str, str | None]] = field(default_factory=list)  # ref, heard, expect
    per3s: list[float] = field(default_factory=list)


def wer_text(text: str) -> str:
    """Lower case, no accents or punctuation, numbers as single digits: "a las 10" and "a las
    diez" agree, and "001-2" and "cero cero uno dos" too."""
    s = words_to_digits(normalize(text))
    s = "".join(f" {c} " if c.isdigit() else c for c in s)
    s = "".join(c if c.isalnum() or c == "ñ" else " " for c in s)
    return " ".join(s.split())


def build_utterances(voices: list[str], sentences: list[str], cache: Path) -> list[Utterance]:
    out: list[Utterance] = []
    pad = bytes(int(0.25 * LINE_RATE) * 2)
    for name in voices:
        voice = VOICES.get(name)
        if voice is None:
            print(f"  (skipping {name}: unknown voice)", flush=True)
            continue
        if not available(voice):
            print(f"  (skipping {name}: not installed here)", flush=True)
            continue
        texts = HUMAN_UTTERANCES if voice.family == "human" else sentences
        for i, text in enumerate(texts):
            try:
                pcm = render(voice, text, LINE_RATE, seed=i, cache_dir=cache)
            except VoiceUnavailable as exc:
                print(f"  (skipping {name}: {exc})", flush=True)
                break
            digits = text.replace(" ", "").isdigit()
            reference = " ".join(SPOKEN_DIGITS[c] for c in text.split()) if digits else text
            line = apply_phone_band(pad + pcm + pad, LINE_RATE, seed=f"{name}|{i}")
            # What the bot just asked for: a number, a day, or anything (a free sentence).
            expect = "cedula" if digits else ("date" if voice.family == "human" else None)
            out.append(Utterance(name, voice.family, reference, expect, line))
    return out


def noise_clips(n: int) -> list[bytes]:
    """Line noise, hum and clicks with nobody speaking: any text here is a phantom."""
    rng = np.random.default_rng(11)
    clips = []
    for i in range(n):
        seconds = 1.0 + i % 3
        t = np.arange(int(seconds * LINE_RATE)) / LINE_RATE
        x = rng.normal(0, 60 + 80 * (i % 4), t.size)
        if i % 2:
            x += 400 * np.sin(2 * np.pi * 50 * t) * (i % 3)
        if i % 3 == 0:
            x[rng.integers(0, t.size, 5)] += 8000
        pcm = np.clip(x, -32768, 32767).astype("<i2").tobytes()
        clips.append(apply_phone_band(pcm, LINE_RATE, seed=f"noise|{i}"))
    return clips


_CALENDAR = frozenset(
    "lunes martes miercoles jueves viernes sabado domingo enero febrero marzo abril mayo junio "
    "julio agosto septiembre setiembre octubre noviembre diciembre".split()
)


def office_facts(text: str, expect: str | None) -> set[str]:
    """What the dialogue takes from an utterance: services, offices, weekdays and months,
    and for a dictated number the whole digit string (exact matching only, as before
    repair)."""
    norm = normalize(text)
    facts = {f"service:{c}" for c in CATALOG.find_services(norm, exact=True)}
    facts |= {f"office:{c}" for c in CATALOG.find_offices(norm, exact=True)}
    facts |= {f"day:{w}" for w in norm.split() if w in _CALENDAR}
    if expect == "cedula":
        facts.add(f"digits:{spoken_digits(text)}")
    return facts


def fact_recall(texts: list[tuple[str, str, str | None]], repaired: bool) -> tuple[int, int]:
    """(facts of the reference found in what was heard, facts in the reference)."""
    found = total = 0
    for reference, heard, expect in texts:
        want = office_facts(reference, expect)
        if repaired:
            heard = repair_transcript(heard, CATALOG, expect)
        found += len(want & office_facts(heard, expect))
        total += len(want)
    return found, total


def wer(refs: list[str], hyps: list[str]) -> float:
    pairs = [(r, h) for r, h in zip(refs, hyps, strict=True) if r]
    if not pairs:
        return float("nan")
    return jiwer.wer([r for r, _ in pairs], [h or "<vacío>" for _, h in pairs])


def run(args: argparse.Namespace) -> dict:
    model_dir = ROOT / "data" / "models" / "whisper-base"
    sentences = CALLER_SENTENCES[:12] if args.quick else CALLER_SENTENCES
    voices = [v for v in args.voices.split(",") if v]
    print(f"rendering {len(sentences)} sentences x {len(voices)} voices ...", flush=True)
    utterances = build_utterances(voices, sentences, args.cache)
    clips = noise_clips(4 if args.quick else 12)
    families = sorted({u.family for u in utterances})
    print(f"{len(utterances)} utterances; families: {', '.join(families)}", flush=True)
    settings = settings_to_compare()
    if args.settings:
        wanted = {int(i) for i in args.settings.split(",")}
        settings = [s for i, s in enumerate(settings) if i in wanted]
    stt = WhisperSTT(model_dir, temperatures=(0.0,))
    report: dict = {"utterances": len(utterances), "settings": {}}
    try:
        for setting in settings:
            stt.beam_size, stt.prompt, stt.hotwords = setting.beam, setting.prompt, setting.hotwords
            stt._transcribe_sync(bytes(LINE_RATE), LINE_RATE)  # warm-up
            by_family: dict[str, Scores] = {f: Scores() for f in families}
            dropped = 0
            started = time.perf_counter()
            for u in utterances:
                digits = u.expect == "cedula" and setting.digits_prompt
                stt.prompt = setting.digits_prompt if digits else setting.prompt
                result = stt._transcribe_sync(u.pcm8k, LINE_RATE)
                dropped += bool(result.extra.get("dropped")) and not result.text
                scores = by_family[u.family]
                scores.texts.append((u.reference, result.text, u.expect))
                scores.per3s.append(result.elapsed_s / max(result.audio_s, 0.5) * 3.0)
            stt.prompt = setting.prompt
            phantoms = [stt._transcribe_sync(c, LINE_RATE).text for c in clips]
            entry = {
                "wall_s": round(time.perf_counter() - started, 1),
                "dropped_as_hallucination": int(dropped),
                "phantoms_on_noise": sum(bool(p) for p in phantoms),
                "phantom_texts": [p for p in phantoms if p],
                "ms_per_3s_p50": round(
                    1000 * statistics.median([x for sc in by_family.values() for x in sc.per3s])
                ),
                "families": {
                    f: {"ms_per_3s_p50": round(1000 * statistics.median(sc.per3s))}
                    for f, sc in by_family.items()
                },
                "heard": {f: sc.texts for f, sc in by_family.items()},
            }
            score(entry)
            report["settings"][setting.name] = entry
            brief = {k: v for k, v in entry.items() if k != "heard"}
            print(f"{setting.name}: {json.dumps(brief, ensure_ascii=False)}", flush=True)
            if args.show_errors:
                for family, texts in entry["heard"].items():
                    for r, h, e in texts:
                        if wer_text(r) != wer_text(repair_transcript(h, CATALOG, e)):
                            print(f"   [{family}] {r!r} -> {h!r}")
    finally:
        stt.close()
    print()
    print(markdown(report, families))
    return report


def score(entry: dict) -> None:
    """WER and office-fact recall per family, raw and after ``repair_transcript``, from the
    saved transcripts of one setting (so a saved run can be scored again after a change
    to the repairs, without transcribing again: ``--rescore``)."""
    every: tuple[list[str], list[str], list[str]] = ([], [], [])
    facts = [0, 0, 0]
    for family, texts in entry["heard"].items():
        refs = [wer_text(r) for r, _, _ in texts]
        raw = [wer_text(h) for _, h, _ in texts]
        fixed = [wer_text(repair_transcript(h, CATALOG, e)) for _, h, e in texts]
        found_raw, total = fact_recall(texts, repaired=False)
        found_fixed, _ = fact_recall(texts, repaired=True)
        entry["families"].setdefault(family, {}).update(
            n=len(texts),
            wer_raw=round(wer(refs, raw), 3),
            wer_repaired=round(wer(refs, fixed), 3),
            facts_raw=round(found_raw / max(total, 1), 3),
            facts_repaired=round(found_fixed / max(total, 1), 3),
            facts=total,
        )
        for bucket, values in zip(every, (refs, raw, fixed), strict=True):
            bucket.extend(values)
        facts = [facts[0] + found_raw, facts[1] + found_fixed, facts[2] + total]
    entry["wer_raw_all"] = round(wer(every[0], every[1]), 3)
    entry["wer_repaired_all"] = round(wer(every[0], every[2]), 3)
    entry["facts_raw_all"] = round(facts[0] / max(facts[2], 1), 3)
    entry["facts_repaired_all"] = round(facts[1] / max(facts[2], 1), 3)


def rescore(report: dict) -> dict:
    for entry in report["settings"].values():
        score(entry)
    return report


def markdown(report: dict, families: list[str]) -> str:
    """Two tables: WER per family (raw / repaired), and office facts recovered per family."""
    out = []
    tables = (
        ("WER", "wer_raw", "wer_repaired", ("wer_raw_all", "wer_repaired_all")),
        ("facts", "facts_raw", "facts_repaired", ("facts_raw_all", "facts_repaired_all")),
    )
    for title, raw, fixed, everyone in tables:
        head = f"| {title}: setting | " + " | ".join(f"{f} raw / repaired" for f in families)
        head += " | all raw / repaired | ms per 3 s (p50) | phantoms on noise |"
        rows = [head, "|" + "---|" * (len(families) + 4)]
        for name, e in report["settings"].items():
            cells = [
                f"{e['families'][f][raw]:.3f} / {e['families'][f][fixed]:.3f}" for f in families
            ]
            rows.append(
                f"| {name} | "
                + " | ".join(cells)
                + f" | {e[everyone[0]]:.3f} / {e[everyone[1]]:.3f} | {e['ms_per_3s_p50']}"
                + f" | {e['phantoms_on_noise']} |"
            )
        out.append("\n".join(rows))
    return "\n\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="12 sentences, 4 noise clips")
    parser.add_argument("--voices", default=",".join(default_voices()))
    parser.add_argument("--settings", default="", help="indexes of settings to run, e.g. 0,2")
    parser.add_argument("--cache", type=Path, default=ROOT / "data" / "cache" / "caller_voices")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--show-errors", action="store_true")
    parser.add_argument("--rescore", type=Path, default=None, help="a saved --json run")
    args = parser.parse_args()
    if args.rescore:
        report = rescore(json.loads(args.rescore.read_text()))
        first = next(iter(report["settings"].values()))
        print(markdown(report, sorted(first["families"])))
        return
    report = run(args)
    if args.json:
        args.json.write_text(json.dumps(report, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
