"""Would Smart Turn v3 + the transcript guard end turns correctly at a 200 ms pause?

Offline, on the spoken evaluation's caller voices (telephony/caller_voices.py):

- synthetic voices (eSpeak NG and SVOX Pico variants) say caller sentences with a natural
  mid-sentence pause: the text is rendered with a comma at the pause ("Quiero sacar una cita
  para, renovar la cédula."), the comma's gap is found and stretched to ``--mid-pause-ms`` of
  silence, and the sentence ends with silence;
- human recordings (Debian's asterisk es-MX and es-CO prompts) dictate cédulas and phone
  numbers in groups, with a pause between groups, after the bot asked for that number.

At every pause a decision is taken on the audio up to ``--pause-ms`` of silence into it: a
pause inside the sentence must *hold* (ending there cuts the caller off), the final one should
*end*. The model decides alone, and with the guard (pipeline/turn_end_guard.py) applied to what
was said so far (the reference text; ``--asr`` uses the embedded Whisper's transcript of the
audio so far instead). Each condition is run on 16 kHz audio and on the phone path (8 kHz mu-law
round trip, upsampled to 16 kHz for the model, as in a phone call).

    .venv/bin/python bench/smart_turn_bench.py [--voices 9] [--json out.json]

The end-of-turn wait is estimated per turn: pause + inference when the combined decision ends
the turn at the final pause, else the silence rule's wait (``--silence-rule-ms``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.settings import Settings
from pipeline.model_files import ensure_smart_turn_model
from pipeline.smart_turn import SmartTurnModel
from pipeline.turn_end_guard import judge_transcript
from telephony.audio_codec import mulaw_to_pcm16, pcm16_to_mulaw
from telephony.caller_voices import available, render

# (before the pause, after it). The first half ends on a connector in some, on a word that
# could end a sentence in others ("Buenos días", "El martes"): the guard only helps the former.
SENTENCES: tuple[tuple[str, str], ...] = (
    ("Quiero sacar una cita para", "renovar la cédula."),
    ("Necesito el certificado de", "nacimiento de mi hijo."),
    ("Mi nombre es", "Juan Pérez Rodríguez."),
    ("Quisiera saber", "a qué hora abren el sábado."),
    ("¿Qué documentos necesito", "para sacar el pasaporte?"),
    ("La oficina de", "Santiago, por favor."),
    ("Es que perdí", "mi licencia de conducir."),
    ("Quiero cambiar la cita", "que tengo para el lunes."),
    ("El martes", "por la mañana, si se puede."),
    ("Buenos días", "quería pedir una cita."),
    ("Sí", "para el jueves a las diez."),
    ("A las diez", "o a las once, lo que tenga."),
)
NUMBERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("¿Me dice su número de cédula, por favor?", ("0 0 1", "4 5 6 7 8 9 0", "3")),
    ("¿Me dice su número de cédula, por favor?", ("4 0 2", "2 3 4 5", "6 7 8 9")),
    ("¿A qué teléfono le podemos llamar?", ("8 0 9", "5 5 5", "1 2 3 4")),
    ("¿A qué teléfono le podemos llamar?", ("8 2 9", "7 0 4", "9 9 1 8")),
)
SYNTH_VOICES = (
    "espeak-419-denis", "espeak-419-f3", "espeak-419-m3-fast", "espeak-es-andrea",
    "espeak-es-m7-slow", "espeak-419-pablo", "pico-es", "pico-es-fast-low", "pico-es-slow-high",
)  # fmt: skip
HUMAN_VOICES = ("human-mx", "human-co")
RATE = 16000


@dataclass
class Point:
    utterance: str  # id
    voice: str
    kind: str  # "sentence" | "number"
    final: bool  # the last pause (should end) or a mid one (must hold)
    text_so_far: str
    prompt: str | None
    audio16: bytes  # speech up to the pause + pause_ms of silence, 16 kHz


def _gaps(pcm: bytes, rate: int) -> list[tuple[int, int]]:
    """(start, length) in samples of internal quiet stretches ≥ 60 ms."""
    x = np.abs(np.frombuffer(pcm, dtype=np.int16).astype(np.int32))
    win = rate // 100
    n = x.size // win
    quiet = x[: n * win].reshape(n, win).max(axis=1) < 400
    out, i = [], 0
    while i < n:
        if quiet[i]:
            j = i
            while j < n and quiet[j]:
                j += 1
            if j - i >= 6 and i > 0 and j < n:
                out.append((i * win, (j - i) * win))
            i = j
        else:
            i += 1
    return out


def _silence(ms: int) -> bytes:
    return bytes(2 * RATE * ms // 1000)


def build_points(voices: list[str], pause_ms: int, mid_pause_ms: int) -> list[Point]:
    points: list[Point] = []
    for voice in voices:
        if not available(voice):
            print(f"  (voice {voice} not installed: skipped)", file=sys.stderr)
            continue
        if voice.startswith("human"):
            for k, (prompt, groups) in enumerate(NUMBERS):
                parts = [render(voice, g, RATE) for g in groups]
                said = ""
                audio = b""
                for i, (g, pcm) in enumerate(zip(groups, parts, strict=True)):
                    audio += pcm
                    said = (said + " " + g).strip()
                    final = i == len(groups) - 1
                    uid = f"num{k}-{voice}"
                    points.append(
                        Point(uid, voice, "number", final, said, prompt, audio + _silence(pause_ms))
                    )
                    audio += _silence(mid_pause_ms)
            continue
        for k, (a, b) in enumerate(SENTENCES):
            pcm = render(voice, f"{a}, {b}", RATE)
            gaps = _gaps(pcm, RATE)
            if not gaps:
                print(f"  ({voice}: no pause found in {a!r}: skipped)", file=sys.stderr)
                continue
            start, length = max(gaps, key=lambda g: g[1])
            head, tail = pcm[: start * 2], pcm[(start + length) * 2 :]
            uid = f"s{k}-{voice}"
            points.append(Point(uid, voice, "sentence", False, a, None, head + _silence(pause_ms)))
            whole = head + _silence(mid_pause_ms) + tail
            points.append(
                Point(uid, voice, "sentence", True, f"{a}, {b}", None, whole + _silence(pause_ms))
            )
    return points


def phone_path(pcm16: bytes) -> tuple[bytes, int]:
    """16 kHz → 8 kHz → mu-law → PCM16 at 8 kHz: what a phone call's session holds."""
    import soxr

    x = np.frombuffer(pcm16, dtype=np.int16).astype(np.float32) / 32768
    y = soxr.resample(x, RATE, 8000, quality="HQ")
    pcm8 = (np.clip(y, -1, 1) * 32767).astype(np.int16).tobytes()
    return mulaw_to_pcm16(pcm16_to_mulaw(pcm8)), 8000


def _pct(n: int, d: int) -> str:
    return f"{100 * n / d:5.1f}% ({n}/{d})" if d else "   n/a"


def evaluate(args: argparse.Namespace) -> dict[str, object]:
    settings = Settings()
    model = SmartTurnModel(ensure_smart_turn_model(settings.models_dir))
    voices = [v for v in (*SYNTH_VOICES[: args.voices], *HUMAN_VOICES) if v]
    points = build_points(voices, args.pause_ms, args.mid_pause_ms)
    stt = None
    if args.asr:
        import asyncio

        from app.services import whisper_settings
        from pipeline.model_files import ensure_whisper_model
        from pipeline.stt import WhisperSTT

        stt = WhisperSTT(ensure_whisper_model(settings.whisper_dir), **whisper_settings(settings))

        def heard(audio: bytes, rate: int) -> str:
            return asyncio.run(stt.transcribe(audio, rate)).text

    results: dict[str, object] = {"points": len(points), "conditions": {}}
    for cond in ("16k", "8k-mulaw"):
        rows = []
        infer = []
        for p in points:
            audio, rate = (p.audio16, RATE) if cond == "16k" else phone_path(p.audio16)
            t = time.perf_counter()
            prob = model.probability(audio, rate)
            infer.append((time.perf_counter() - t) * 1000)
            text = heard(audio, rate) if stt is not None else p.text_so_far
            guard = judge_transcript(text, prompt=p.prompt)
            rows.append((p, prob, guard.hold, text))
        results["conditions"][cond] = summarize(cond, rows, infer, args)  # type: ignore[index]
    return results


def summarize(cond: str, rows: list, infer: list[float], args: argparse.Namespace) -> dict:
    thr = args.threshold
    out: dict[str, object] = {}
    print(f"\n== {cond}: {len(rows)} decision points, threshold {thr}")
    infer_p50 = statistics.median(infer)
    for kind in ("sentence", "number", "all"):
        sel = [r for r in rows if kind == "all" or r[0].kind == kind]
        ends = [r for r in sel if r[0].final]
        mids = [r for r in sel if not r[0].final]
        m_end_ok = sum(r[1] >= thr for r in ends)
        c_end_ok = sum(r[1] >= thr and not r[2] for r in ends)
        m_cut = sum(r[1] >= thr for r in mids)
        c_cut = sum(r[1] >= thr and not r[2] for r in mids)
        turns: dict[str, bool] = {}
        for r in mids:
            turns[r[0].utterance] = turns.get(r[0].utterance, False) or (r[1] >= thr and not r[2])
        for r in ends:
            turns.setdefault(r[0].utterance, False)
        cut_turns = sum(turns.values())
        # End-of-turn wait: early end at the final pause, else the silence rule.
        waits = [
            args.pause_ms + infer_p50 if (r[1] >= thr and not r[2]) else args.silence_rule_ms
            for r in ends
        ]
        mean_wait = statistics.fmean(waits) if waits else float("nan")
        print(
            f"  {kind:8s} ends at 200 ms: model {_pct(m_end_ok, len(ends))}, "
            f"+guard {_pct(c_end_ok, len(ends))} | mid-pause cuts: model {_pct(m_cut, len(mids))}, "
            f"+guard {_pct(c_cut, len(mids))} | turns cut (+guard) {_pct(cut_turns, len(turns))} "
            f"| mean end-of-turn wait {mean_wait:.0f} ms"
        )
        out[kind] = {
            "final_pauses": len(ends),
            "mid_pauses": len(mids),
            "turns": len(turns),
            "model_end_ok": m_end_ok,
            "combined_end_ok": c_end_ok,
            "model_mid_cut": m_cut,
            "combined_mid_cut": c_cut,
            "combined_turns_cut": cut_turns,
            "mean_wait_ms": round(mean_wait, 1),
        }
    probs_mid = [r[1] for r in rows if not r[0].final]
    probs_end = [r[1] for r in rows if r[0].final]
    print(
        f"  prob median: final pauses {statistics.median(probs_end):.2f}, "
        f"mid pauses {statistics.median(probs_mid):.2f}; inference p50 {infer_p50:.0f} ms, "
        f"p95 {np.percentile(infer, 95):.0f} ms (1 thread)"
    )
    if args.verbose:
        for p, prob, hold, text in rows:
            print(f"    {p.utterance:24s} {'END' if p.final else 'mid'} {prob:.2f} "
                  f"{'hold' if hold else '    '} {text!r}")  # fmt: skip
    # Threshold sweep, every decision point: a stricter model ends fewer turns early but cuts
    # fewer callers off.
    ends = [r for r in rows if r[0].final]
    mids = [r for r in rows if not r[0].final]
    sweep = {}
    for t in (0.5, 0.7, 0.8, 0.9, 0.95):
        ok = sum(r[1] >= t and not r[2] for r in ends)
        cut = sum(r[1] >= t and not r[2] for r in mids)
        wait = statistics.fmean(
            args.pause_ms + infer_p50 if (r[1] >= t and not r[2]) else args.silence_rule_ms
            for r in ends
        )
        sweep[str(t)] = {"end_ok": ok, "mid_cut": cut, "mean_wait_ms": round(wait, 1)}
        print(
            f"  threshold {t:.2f}: ends early {_pct(ok, len(ends))}, "
            f"mid-pause cuts {_pct(cut, len(mids))}, mean end-of-turn wait {wait:.0f} ms"
        )
    out["sweep"] = sweep
    out["rows"] = [
        [p.utterance, p.final, round(prob, 4), hold, text] for p, prob, hold, text in rows
    ]
    out["infer_ms"] = {"p50": round(infer_p50, 1), "p95": round(float(np.percentile(infer, 95)), 1)}
    out["prob_median"] = {
        "final": statistics.median(probs_end),
        "mid": statistics.median(probs_mid),
    }
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--voices", type=int, default=len(SYNTH_VOICES), help="synthetic voices used")
    ap.add_argument("--pause-ms", type=int, default=200, help="silence before deciding")
    ap.add_argument(
        "--mid-pause-ms", type=int, default=400, help="mid-sentence pause (under the rule)"
    )
    ap.add_argument("--silence-rule-ms", type=float, default=576.0, help="the rule's actual wait")
    ap.add_argument("--threshold", type=float, default=0.5)
    ap.add_argument("--asr", action="store_true", help="guard on Whisper's transcript")
    ap.add_argument("--verbose", "-v", action="store_true")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    t0 = time.perf_counter()
    results = evaluate(args)
    results["elapsed_s"] = round(time.perf_counter() - t0, 1)
    results["args"] = {k: str(v) for k, v in vars(args).items()}
    print(f"\n{results['elapsed_s']} s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
