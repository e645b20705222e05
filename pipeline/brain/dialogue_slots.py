"""Finding a free slot for a booking or a move: asking availability, offering a few times,
and understanding which one the caller picks ("la primera", "a las diez", "otro día")."""

from __future__ import annotations

import re
from datetime import date, datetime, time
from typing import Any

from pipeline.brain import phrases
from pipeline.brain.catalog import join_es
from pipeline.brain.dialogue_kit import Kit, Turn
from pipeline.brain.intents import choice_index, wants_other_day
from pipeline.brain.spanish_dates import When, speak_date, speak_datetime, speak_time
from pipeline.brain.tools import CHECK_AVAILABILITY

__all__ = ["SLOT_STEPS", "SlotsHandler"]

SLOT_STEPS = frozenset({"slot_choice", "slot_single"})
_NAMES_A_DAY = re.compile(
    r"\b(?:lunes|martes|miercoles|jueves|viernes|sabado|domingo|manana|enero|febrero|marzo|"
    r"abril|mayo|junio|julio|agosto|septiembre|setiembre|octubre|noviembre|diciembre|\d+)\b"
)
_PERIOD = re.compile(r" (de la mañana|de la tarde|de la noche|de la madrugada|del mediodía)$")


class SlotsHandler:
    def __init__(self, kit: Kit) -> None:
        self.kit = kit

    async def ensure_slot(self, t: Turn) -> None:
        """Ask for the day, or look up availability and offer or take a slot."""
        st, d = t.st, t.st.draft
        when = d.when
        if (when is None or when.date is None) and not d.soonest:
            st.awaiting = "when"
            if when is not None and (when.time is not None or when.part_of_day):
                t.ask(phrases.ASK_DAY)
            elif st.task == "reschedule":
                t.ask(phrases.ASK_WHEN_MOVE)
            else:
                t.ask(phrases.ASK_WHEN)
            return
        args: dict[str, Any] = {"service": d.service}
        if d.office and not d.any_office:
            args["office"] = d.office
        if when is not None and when.date is not None:
            args["date"] = when.date.isoformat()
            args["limit"] = 50
        else:
            args["limit"] = 3
        result = await self.kit.tool(t, CHECK_AVAILABILITY, args)
        if "error" in result:
            if result.get("reason") == "not_offered" and d.office:
                t.say(result["error"])
                d.office = None
                await self.kit.advance(t)
                return
            st.awaiting = "when"
            t.say(result["error"])
            t.ask(phrases.ASK_OTHER_DAY)
            return
        rows: list[dict[str, Any]] = result.get("slots") or []
        if not rows:
            self.offer(t, result.get("alternatives") or [], result.get("notice"))
            return
        if when is None or when.date is None:
            self.offer(t, rows[:3], None)
            return
        if when.date_end is not None and when.time is None and not when.part_of_day:
            self.offer(t, rows[:3], None)
            return
        await self._pick_from_day(t, rows, when)

    async def _pick_from_day(self, t: Turn, rows: list[dict[str, Any]], when: When) -> None:
        in_part = rows
        if when.part_of_day:
            in_part = [r for r in rows if _part_of(r["time"]) == when.part_of_day]
            if when.part_of_day == "tarde":  # "en la tarde" is after lunch when possible
                in_part = [r for r in in_part if r["time"] >= "13:00"] or in_part
        if when.time is None:
            if in_part:
                self.offer(t, in_part[:3], None)
            else:
                part = when.part_of_day or ""
                self.offer(
                    t,
                    _nearest(rows, _part_anchor(part), 2),
                    f"En la {part} ya no me queda espacio ese día.",
                )
            return
        wanted = when.time.strftime("%H:%M")
        if when.relation in ("after", "before"):
            picked = [
                r
                for r in rows
                if (r["time"] >= wanted if when.relation == "after" else r["time"] <= wanted)
            ]
            if picked:
                chosen = picked[:3] if when.relation == "after" else picked[-3:]
                self.offer(t, chosen, None)
                return
        exact = [r for r in rows if r["time"] == wanted]
        if exact:
            await self.choose(t, exact[0])
            return
        last = rows[-1]["time"]
        spoken = speak_time(when.time)
        if wanted < "08:00":
            notice = phrases.FROM_EIGHT
        elif wanted > "15:30" and last <= "15:30":
            notice = phrases.UNTIL_HALF_PAST_THREE
        elif wanted > last and last <= "11:30" and _date(rows[0]).weekday() == 5:
            notice = phrases.SATURDAY_UNTIL
        else:
            notice = f"{spoken[:1].upper()}{spoken[1:]} no me queda espacio."
        self.offer(t, _nearest(rows, wanted, 2), notice)

    def offer(self, t: Turn, rows: list[dict[str, Any]], notice: str | None) -> None:
        """Read out one to three slots and wait for the caller's pick."""
        st, d = t.st, t.st.draft
        if notice:
            t.say(notice)
        if not rows:
            d.clear_time()
            st.awaiting = "when"
            t.ask(phrases.NO_SLOTS)
            return
        rows = sorted(rows, key=lambda r: r["starts_at"])
        d.offered = rows
        d.slot = None
        with_office = d.any_office or len({r["office"] for r in rows}) > 1
        today = self.kit.today()
        lead = "Lo más cercano que tengo es" if notice else "Tengo"
        if len(rows) == 1:
            st.awaiting = "slot_single"
            lead = "Lo más cercano que tengo es" if notice else "Tengo disponible"
            phrase = self._slot_phrase(rows[0], today, with_office)
            t.ask(f"{lead} {phrase}. {phrases.DOES_IT_SUIT}", whole=True)
            return
        st.awaiting = "slot_choice"
        dates = {r["date"] for r in rows}
        if len(dates) == 1 and not with_office:
            day = speak_date(date.fromisoformat(rows[0]["date"]), today)
            times = _times_phrase([_time(r) for r in rows])
            if notice:
                t.ask(f"{lead} {day} {times}. {phrases.WHICH_ONE}", whole=True)
            else:
                t.ask(f"Para {day} tengo {times}. {phrases.WHICH_ONE}", whole=True)
            return
        if len({r["starts_at"] for r in rows}) == 1:
            # The same hour in several offices: the hour once, then the offices.
            when = self._slot_phrase(rows[0], today, False)
            offices = [f"en {self._office_short(r)}" for r in rows]
            t.ask(f"{lead} {when} {join_es(offices, 'o')}. {phrases.WHICH_ONE}", whole=True)
            return
        spoken = [self._slot_phrase(r, today, with_office) for r in rows]
        t.ask(f"{lead} {join_es(spoken, 'o')}. {phrases.WHICH_ONE}", whole=True)

    def _office_short(self, row: dict[str, Any]) -> str:
        office = self.kit.catalog.office(row["office"])
        return office.short if office else row["office_name"]

    def _slot_phrase(self, row: dict[str, Any], today: date, with_office: bool) -> str:
        text = speak_datetime(datetime.fromisoformat(row["starts_at"]), today)
        if with_office:
            text += f" en {self._office_short(row)}"
        return text

    async def choose(self, t: Turn, row: dict[str, Any]) -> None:
        d = t.st.draft
        d.slot = row
        d.offered = []
        d.office = row["office"]
        t.st.awaiting = None
        if t.st.task == "book" and not (d.name and d.cedula and d.phone_done):
            office = self.kit.catalog.office(row["office"])
            where = f" en {office.short}" if office else ""
            t.say(f"Perfecto, {row['spoken']}{where}.")
        await self.kit.advance(t)

    async def fill(self, t: Turn) -> bool:
        """The caller's pick among the slots on offer (or another day, time or office)."""
        if t.names_other_task():
            return False
        st, d = t.st, t.st.draft
        offered = d.offered
        index = choice_index(t.norm, len(offered))
        if index is not None and not _NAMES_A_DAY.search(t.norm):
            # "El primero está bien" is the first time offered, not the first of the month.
            t.progress = True
            await self.choose(t, offered[index])
            return True
        when = self.kit.parse_when(t.raw, expect="time")
        offices = self.kit.catalog.find_offices(t.norm)
        if len(offices) == 1 and offices[0] != d.office:
            d.office, d.any_office = offices[0], False
            d.offered, d.slot = [], None
            if when is not None:
                d.when = d.when.merge(when) if d.when else when
            t.progress = True
            await self.kit.advance(t)
            return True
        if when is not None and (
            when.date is not None or when.time is not None or when.part_of_day
        ):
            if when.time is not None and when.date is None:
                match = [r for r in offered if r["time"] == when.time.strftime("%H:%M")]
                if match:
                    t.progress = True
                    await self.choose(t, match[0])
                    return True
            offered_days = {r["date"] for r in offered}
            if when.date is None and len(offered_days) == 1:
                # A time for the day on offer (which may not be the day first asked for).
                d.when = When(date=date.fromisoformat(offered_days.pop())).merge(when)
            else:
                d.when = d.when.merge(when) if d.when else when
            d.offered, d.slot = [], None
            d.soonest = False
            t.progress = True
            await self.kit.advance(t)
            return True
        if index is not None:
            t.progress = True
            await self.choose(t, offered[index])
            return True
        yes = t.yes
        if yes is True and offered:
            t.progress = True
            await self.choose(t, offered[0])
            return True
        if yes is False or wants_other_day(t.norm):
            t.progress = True
            d.clear_time()
            st.awaiting = "when"
            t.ask(f"{phrases.OK} {phrases.ASK_OTHER_DAY}")
            return True
        return False

    async def on_key(self, t: Turn, digits: str) -> bool:
        """A slot picked by its position in the list just read out."""
        offered = t.st.draft.offered
        if t.st.awaiting == "slot_choice" and digits.isdigit() and 1 <= int(digits) <= 3:
            index = int(digits) - 1
            if index < len(offered):
                t.progress = True
                await self.choose(t, offered[index])
                return True
        return False


# --- small pure helpers -----------------------------------------------------------------------


def _time(row: dict[str, Any]) -> time:
    hours, minutes = row["time"].split(":")
    return time(int(hours), int(minutes))


def _date(row: dict[str, Any]) -> date:
    return date.fromisoformat(row["date"])


def _part_of(hhmm: str) -> str:
    hour = int(hhmm[:2])
    return "mañana" if hour < 12 else "tarde" if hour < 19 else "noche"


def _part_anchor(part: str) -> str:
    return {"mañana": "10:00", "tarde": "14:00", "noche": "19:00"}.get(part, "10:00")


def _minutes(hhmm: str) -> int:
    return int(hhmm[:2]) * 60 + int(hhmm[3:5])


def _nearest(rows: list[dict[str, Any]], hhmm: str, n: int) -> list[dict[str, Any]]:
    target = _minutes(hhmm)
    unique: dict[str, dict[str, Any]] = {}
    for r in sorted(rows, key=lambda r: (abs(_minutes(r["time"]) - target), r["time"])):
        unique.setdefault(r["time"], r)
        if len(unique) == n:
            break
    return sorted(unique.values(), key=lambda r: r["time"])


def _times_phrase(times: list[time]) -> str:
    """ "a las ocho, a las ocho y media o a las nueve de la mañana": the period said once per
    run of times that share it."""
    spoken = [speak_time(x) for x in times]
    parts: list[str] = []
    for i, text in enumerate(spoken):
        m = _PERIOD.search(text)
        nxt = _PERIOD.search(spoken[i + 1]) if i + 1 < len(spoken) else None
        if m and nxt and m.group(1) == nxt.group(1):
            text = text[: m.start()]
        parts.append(text)
    return join_es(parts, "o")
