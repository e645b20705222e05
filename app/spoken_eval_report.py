"""Judging spoken-evaluation calls and summing them up.

Each call is judged where it matters: a booking by what the server's database holds (the
right service, office, date and name, confirmed, made by this call); a question by whether
what the citizen *heard* contains the facts asked for; a goodbye by the call ending politely;
a request for a human by the bot not promising a transfer it cannot make. Across calls:
bot-speech WER (the bot's own text against what the citizen transcribed from its audio),
turns per booking, questions asked a third time, and caller-side turn latency.
"""

from __future__ import annotations

import datetime as dt
import re
import statistics
from dataclasses import dataclass, field
from typing import Any

import jiwer
from rapidfuzz import fuzz

from app.spoken_eval_caller import COUNTED_ASKS, classify, fact_heard
from app.spoken_eval_scenarios import Scenario, fold, resolve_date

TARGETS = {
    "booking_success": 0.95,
    "question_success": 0.95,
    "bot_wer_max": 0.10,
    "third_asks_max": 0,
    "latency_p50_ms_max": 1000.0,
}
_PROMISE = re.compile(r"le (comunico|transfiero|paso|voy a (comunicar|transferir|pasar))")
_FAREWELL = re.compile(
    r"adios|hasta luego|hasta pronto|que tenga (un )?buen|gracias por (su )?llamad|"
    r"feliz (dia|tarde)"
)
_DIGIT_NAMES = ("cero", "uno", "dos", "tres", "cuatro", "cinco", "seis", "siete", "ocho", "nueve")


@dataclass
class StoredBooking:
    status: str
    service: str
    office: str
    starts_at: dt.datetime  # local time of the office
    name: str
    cedula: str


@dataclass
class Verdict:
    ok: bool
    reasons: list[str] = field(default_factory=list)


def judge_booking(s: Scenario, bookings: list[StoredBooking], date_phrase: str | None,
                  today: dt.date) -> Verdict:  # fmt: skip
    confirmed = [b for b in bookings if b.status == "confirmed"]
    if not confirmed:
        return Verdict(False, ["no confirmed booking in the database"])
    b = confirmed[-1]
    reasons: list[str] = []
    if b.service != s.service:
        reasons.append(f"service {b.service} instead of {s.service}")
    if b.office != s.office:
        reasons.append(f"office {b.office} instead of {s.office}")
    days = resolve_date(date_phrase or s.date or "", today)
    if days and b.starts_at.date() not in days:
        want = ", ".join(sorted(d.isoformat() for d in days))
        reasons.append(f"date {b.starts_at.date()} instead of {want}")
    if fuzz.token_set_ratio(fold(b.name), fold(s.name)) < 80:
        reasons.append(f"name {b.name!r} instead of {s.name!r}")
    if b.cedula != s.cedula:
        reasons.append(f"cédula {b.cedula} instead of {s.cedula}")
    return Verdict(not reasons, reasons)


def time_matches(s: Scenario, b: StoredBooking) -> bool:
    """Secondary figure: the booked time agrees with the citizen's preference."""
    want = fold(s.time or "")
    h = b.starts_at.hour
    if "tarde" in want:
        return h >= 12
    m = re.search(r"a las (\w+)", want)
    if m:
        hours = {"ocho": 8, "nueve": 9, "diez": 10, "once": 11, "doce": 12, "dos": 14, "tres": 15}
        return hours.get(m.group(1)) == h
    if "manana" in want:
        return h < 12
    return True


def judge_question(s: Scenario, answers: list[str]) -> Verdict:
    text = " ".join(answers)
    missing = [f[0] for f in s.facts if not fact_heard(text, f)]
    return Verdict(not missing, [f"not heard: {m}" for m in missing])


def judge_goodbye(bot_texts: list[str], hung_up_by_server: bool, booked: bool) -> Verdict:
    reasons = []
    if booked:
        reasons.append("a booking was made")
    last = fold(bot_texts[-1]) if bot_texts else ""
    if not (hung_up_by_server or _FAREWELL.search(last)):
        reasons.append("the call did not end with a goodbye")
    return Verdict(not reasons, reasons)


def judge_human(bot_texts: list[str], transfer_configured: bool = False) -> Verdict:
    """No transfer number is configured: the bot must not promise one, and must offer
    something (the office's phone or hours, or to keep helping)."""
    after = [fold(t) for t in bot_texts[1:]]  # skip the greeting
    reasons = []
    if not transfer_configured:
        for t in after:
            if _PROMISE.search(t) and not re.search(r"\bno (le )?(puedo|podemos|es posible)", t):
                reasons.append(f"promised a transfer: {t[:80]!r}")
                break
    offered = any(
        re.search(r"809|555|telefono|horario|agente|persona|ayudar|algo mas", t) for t in after
    )
    if not offered:
        reasons.append("offered nothing instead")
    return Verdict(not reasons, reasons)


# --- bot speech WER and repeats --------------------------------------------------------------


def wer_words(text: str) -> str:
    """Folded words, numbers as single digits ("3.500" / "tres mil quinientos" -> "3 5 0 0";
    "cero cero uno" -> "0 0 1"), so that writing conventions are not counted as errors."""
    from pipeline.brain.spanish_text import normalize, words_to_digits

    t = re.sub(r"(?<=\d)[.,](?=\d{3}\b)", "", text or "")
    t = re.sub(r"RD\$\s*", "", t)
    t = re.sub(r"(\d{1,2}):(\d{2})", lambda m: f"{m.group(1)} y {m.group(2)}", t)
    t = words_to_digits(normalize(t))
    t = re.sub(r"\d+", lambda m: " ".join(m.group(0)), t)
    t = re.sub(r"[^\w\s]", " ", fold(t))
    return " ".join(t.split())


def bot_wer(reference: list[str], heard: list[str]) -> tuple[float, int, int]:
    """(WER, word errors, reference words) of the whole call's bot speech."""
    ref = wer_words(" ".join(reference))
    hyp = wer_words(" ".join(heard))
    n = len(ref.split())
    if n == 0:
        return 0.0, 0, 0
    out = jiwer.process_words(ref, hyp or "")
    errors = out.substitutions + out.deletions + out.insertions
    return errors / n, errors, n


def slot_asks(bot_texts: list[str]) -> dict[str, int]:
    """How often the bot asked for each fact, judged on its own text."""
    counts: dict[str, int] = {}
    for t in bot_texts:
        kind = classify(t)
        if kind == "datetime":
            kind = "date"
        if kind in COUNTED_ASKS:
            counts[kind] = counts.get(kind, 0) + 1
    return counts


# --- summary --------------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    k = (len(v) - 1) * p
    lo = int(k)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def summarize(calls: list[dict[str, Any]]) -> dict[str, Any]:
    def rate(kind: str) -> tuple[int, int]:
        rows = [c for c in calls if c["kind"] == kind]
        return sum(1 for c in rows if c["ok"]), len(rows)

    book_ok, book_n = rate("booking")
    q_ok, q_n = rate("question")
    g_ok, g_n = rate("goodbye")
    h_ok, h_n = rate("human")
    errors = sum(c["wer_errors"] for c in calls)
    words = sum(c["wer_words"] for c in calls)
    latencies = [x for c in calls for x in c["latencies_ms"]]
    booked_turns = [c["turns"] for c in calls if c["kind"] == "booking" and c["ok"]]
    asks = [sum(c["slot_asks"].values()) for c in calls]
    repeats = [sum(max(0, n - 1) for n in c["slot_asks"].values()) for c in calls]
    third = sum(sum(max(0, n - 2) for n in c["slot_asks"].values()) for c in calls)
    by_family: dict[str, list[int]] = {}
    for c in calls:
        f = by_family.setdefault(c["voice_family"], [0, 0])
        f[0] += int(c["ok"])
        f[1] += 1
    return {
        "calls": len(calls),
        "booking_success": book_ok / book_n if book_n else None,
        "bookings": f"{book_ok}/{book_n}",
        "question_success": q_ok / q_n if q_n else None,
        "questions": f"{q_ok}/{q_n}",
        "goodbyes": f"{g_ok}/{g_n}",
        "human_requests": f"{h_ok}/{h_n}",
        "bot_wer": errors / words if words else None,
        "turns_per_booking": statistics.mean(booked_turns) if booked_turns else None,
        "slot_questions": sum(asks),
        "repeated_questions": sum(repeats),
        "repeat_share": sum(repeats) / sum(asks) if sum(asks) else 0.0,
        "third_asks": third,
        "latency_p50_ms": percentile(latencies, 0.5),
        "latency_p95_ms": percentile(latencies, 0.95),
        "success_by_voice_family": {k: f"{v[0]}/{v[1]}" for k, v in sorted(by_family.items())},
    }


def meets_targets(summary: dict[str, Any]) -> list[str]:
    """The targets missed (empty: all met)."""
    missed = []
    for key in ("booking_success", "question_success"):
        value = summary.get(key)
        if value is not None and value < TARGETS[key]:
            missed.append(f"{key} {value:.0%} < {TARGETS[key]:.0%}")
    wer = summary.get("bot_wer")
    if wer is not None and wer > TARGETS["bot_wer_max"]:
        missed.append(f"bot WER {wer:.2f} > {TARGETS['bot_wer_max']:.2f}")
    if summary.get("third_asks", 0) > TARGETS["third_asks_max"]:
        missed.append(f"{summary['third_asks']} question(s) asked a third time")
    p50 = summary.get("latency_p50_ms")
    if p50 is not None and p50 > TARGETS["latency_p50_ms_max"]:
        missed.append(f"latency p50 {p50:.0f} ms > {TARGETS['latency_p50_ms_max']:.0f} ms")
    return missed


def _fmt(v: Any, spec: str = "") -> str:
    if v is None:
        return "–"
    return format(v, spec) if spec else str(v)


def format_table(calls: list[dict[str, Any]], summary: dict[str, Any]) -> str:
    lines = [
        f"{'scenario':<28} {'kind':<9} {'voice':<20} {'ok':<3} {'turns':>5} {'wer':>5} "
        f"{'asks3':>5}  why",
    ]
    for c in calls:
        third = sum(max(0, n - 2) for n in c["slot_asks"].values())
        lines.append(
            f"{c['id']:<28} {c['kind']:<9} {c['voice']:<20} {'yes' if c['ok'] else 'NO':<3} "
            f"{c['turns']:>5} {c['wer']:>5.2f} {third:>5}  {'; '.join(c['reasons'])[:90]}"
        )
    s = summary
    lines += [
        "",
        f"Bookings made right      {s['bookings']:>7}  ({_fmt(s['booking_success'], '.0%')})"
        "   target >= 95 %",
        f"Questions answered       {s['questions']:>7}  ({_fmt(s['question_success'], '.0%')})"
        "   target >= 95 %",
        f"Goodbyes / human asks    {s['goodbyes']:>7}  / {s['human_requests']}",
        f"Bot-speech WER           {_fmt(s['bot_wer'], '.3f'):>7}            target <= 0.10",
        f"Turns per booking        {_fmt(s['turns_per_booking'], '.1f'):>7}",
        f"Repeated questions       {s['repeated_questions']:>7}  of {s['slot_questions']} asks "
        f"({s['repeat_share']:.0%}); asked a 3rd time: {s['third_asks']} (target 0)",
        f"Turn latency p50 / p95   {_fmt(s['latency_p50_ms'], '.0f'):>7}  / "
        f"{_fmt(s['latency_p95_ms'], '.0f')} ms   target p50 <= 1000 ms",
        f"Success by voice family  {s['success_by_voice_family']}",
    ]
    return "\n".join(lines)


def digit_words(digits: str) -> str:
    return " ".join(_DIGIT_NAMES[int(c)] for c in digits if c.isdigit())
