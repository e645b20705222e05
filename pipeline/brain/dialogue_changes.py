"""Existing appointments: finding the caller's, then moving, cancelling or reading it out.

The appointment is found by the number the caller phones from, else by the confirmation code,
else by the cédula; with several, the caller picks one.
"""

from __future__ import annotations

import re
from typing import Any

from pipeline.brain import phrases
from pipeline.brain.catalog import join_es
from pipeline.brain.dialogue_kit import Kit, Turn
from pipeline.brain.intents import choice_index, extract_cedula_digits
from pipeline.brain.spoken import parse_booking_code
from pipeline.brain.tools import CANCEL_APPOINTMENT, FIND_MY_APPOINTMENTS, RESCHEDULE_APPOINTMENT

__all__ = ["CHANGE_STEPS", "ChangesHandler"]

CHANGE_STEPS = frozenset(
    {"confirm_cancel", "confirm_target", "pick_booking", "code_or_cedula", "lookup_cedula"}
)
_NO_CODE = re.compile(
    r"\b(?:no lo tengo|no tengo (?:el|ese|ningun) codigo|no (?:lo )?tengo a mano|lo perdi|"
    r"no me acuerdo|no recuerdo|no se cual es|no lo se|no lo encuentro|no tengo codigo)\b"
)


class ChangesHandler:
    def __init__(self, kit: Kit) -> None:
        self.kit = kit

    # --- what to ask next -------------------------------------------------------------------
    async def advance(self, t: Turn) -> None:
        st, d = t.st, t.st.draft
        if st.target is None:
            await self._identify(t)
            return
        if st.task == "find":
            return
        if st.task == "cancel":
            st.awaiting = "confirm_cancel"
            t.ask(
                f"¿Confirma que desea cancelar su cita de {self.kit.service_name(st.target)} "
                f"{_of(st.target['spoken_datetime'])}?",
            )
            return
        d.service = st.target["service"]
        if not d.office:
            d.office = st.target["office"]
        if d.slot is None:
            await self.kit.slots.ensure_slot(t)
            return
        st.awaiting = "confirm_reschedule"
        office = self.kit.catalog.office(d.slot["office"])
        where = f" en {office.short}" if office else ""
        t.ask(f"¿Cambio su cita para {d.slot['spoken']}{where}?")

    async def _identify(self, t: Turn) -> None:
        st = t.st
        if "phone" not in st.lookup_tried and t.ctx.caller_number:
            st.lookup_tried.add("phone")
            await self.lookup(t, phone=t.ctx.caller_number)
            return
        if "cedula" not in st.lookup_tried and st.draft.cedula:
            await self.lookup(t, cedula=st.draft.cedula)  # said earlier in the call
            return
        st.awaiting = "code_or_cedula" if st.task != "find" else "lookup_cedula"
        if st.task == "find":
            t.ask(phrases.ASK_CEDULA_TO_FIND)
        else:
            t.ask(phrases.ASK_CODE_OR_CEDULA)

    async def lookup(
        self,
        t: Turn,
        *,
        code: str | None = None,
        cedula: str | None = None,
        phone: str | None = None,
    ) -> None:
        st = t.st
        args: dict[str, Any] = {}
        if code:
            args["code"] = code
            st.lookup_tried.add("code")
        elif cedula:
            args["cedula"] = cedula
            st.lookup_tried.add("cedula")
        elif phone:
            args["phone"] = phone
        result = await self.kit.tool(t, FIND_MY_APPOINTMENTS, args)
        if "error" in result:
            t.say(result["error"])
            st.awaiting = "code_or_cedula"
            t.ask(phrases.ASK_CODE_OR_CEDULA_SHORT)
            return
        found: list[dict[str, Any]] = result.get("appointments") or []
        if st.task == "find":
            if found or phone is None:
                st.finish()
                t.say(result.get("spoken") or phrases.NO_APPOINTMENTS)
                t.say(phrases.ANYTHING_ELSE)
                return
            await self._identify(t)
            return
        if not found:
            if phone is not None:
                await self._identify(t)
                return
            what = "con ese código" if code else "con esa cédula"
            t.say(f"No encontré citas activas {what}.")
            if "cedula" in st.lookup_tried and "code" in st.lookup_tried:
                st.finish()
                self.kit.menu.offer_agent(t)
                return
            st.awaiting = "code_or_cedula"
            t.ask(phrases.REPEAT_CODE_OR_CEDULA)
            return
        if st.draft.service:
            same = [a for a in found if a["service"] == st.draft.service]
            found = same or found
        if len(found) == 1:
            await self._found_one(t, found[0], by_phone=not (code or cedula))
            return
        st.candidates = found[:3]
        st.awaiting = "pick_booking"
        items = [
            f"una de {self.kit.service_name(a)} para {a['spoken_datetime']}" for a in st.candidates
        ]
        t.ask(f"Tiene {join_es(items)}. ¿Cuál de ellas?")

    async def _found_one(self, t: Turn, appointment: dict[str, Any], *, by_phone: bool) -> None:
        st = t.st
        st.target = appointment
        if not by_phone:
            await self.kit.advance(t)
            return
        seen = (
            f"Veo una cita de {self.kit.service_name(appointment)} para "
            f"{appointment['spoken_datetime']} en {appointment['office_name']}."
        )
        if st.task == "cancel":
            st.awaiting = "confirm_cancel"
            t.ask(f"{seen} ¿Confirma que desea cancelarla?")
            return
        st.awaiting = "confirm_target"
        verb = {"cancel": "cancelar", "reschedule": "cambiar"}.get(st.task or "", "ver")
        t.ask(f"{seen} ¿Es esa la que desea {verb}?")

    # --- answers to its questions -----------------------------------------------------------
    async def fill(self, t: Turn) -> bool:
        st = t.st
        step = st.awaiting
        yes = t.yes
        if step in ("code_or_cedula", "lookup_cedula"):
            if step == "code_or_cedula":
                dictated = extract_cedula_digits(t.raw, t.dtmf)
                # A long run of digits is a cédula, not a code read out ("cuatro cero dos…").
                code = parse_booking_code(t.raw) if t.raw and len(dictated) < 6 else None
                if code is not None:
                    t.progress = True
                    await self.lookup(t, code=code)
                    return True
                if _NO_CODE.search(t.norm) and not extract_cedula_digits(t.raw, t.dtmf):
                    t.progress = True
                    t.ask(phrases.CEDULA_NO_CODE)
                    return True
            return await self.kit.booking.take_cedula(t, step)
        if step == "confirm_cancel":
            if yes is True:
                t.progress = True
                await self.cancel(t)
                return True
            if yes is False:
                t.progress = True
                st.finish()
                t.say(f"{phrases.STILL_ON} {phrases.ANYTHING_ELSE}")
                return True
            return False
        if step == "confirm_target":
            if yes is True:
                t.progress = True
                st.candidates = []
                await self.kit.advance(t)
                return True
            if yes is False:
                t.progress = True
                st.target = None
                st.lookup_tried.add("phone")
                st.awaiting = "code_or_cedula"
                t.ask(phrases.ASK_CODE_OR_CEDULA_AGAIN)
                return True
            return False
        if step == "pick_booking":
            picked = self._pick_candidate(t)
            if picked is None:
                return False
            t.progress = True
            st.target = picked
            st.candidates = []
            await self.kit.advance(t)
            return True
        return False

    async def on_key(self, t: Turn, digits: str) -> bool:
        """An appointment picked by its position in the list just read out."""
        st = t.st
        if st.awaiting != "pick_booking" or not digits.isdigit():
            return False
        index = int(digits) - 1
        if not 0 <= index < len(st.candidates):
            return False
        t.progress = True
        st.target = st.candidates[index]
        st.candidates = []
        await self.kit.advance(t)
        return True

    def _pick_candidate(self, t: Turn) -> dict[str, Any] | None:
        st = t.st
        services = self.kit.catalog.find_services(t.norm)
        for a in st.candidates:
            if a["service"] in services:
                return a
        when = self.kit.parse_when(t.raw)
        if when is not None and when.date is not None:
            for a in st.candidates:
                if a["starts_at"][:10] == when.date.isoformat():
                    return a
        index = choice_index(t.norm, len(st.candidates))
        if index is not None:
            return st.candidates[index]
        return None

    # --- acting -----------------------------------------------------------------------------
    async def reschedule(self, t: Turn) -> None:
        st, d = t.st, t.st.draft
        assert st.target is not None and d.slot is not None
        args = {"code": st.target["code"], "slot_id": d.slot["slot_id"]}

        def apply(result: dict[str, Any]) -> None:
            if result.get("ok"):
                st.done.append(f"rescheduled {result.get('code')}")
                st.finish()
                st.last_prompt = f"{result.get('confirmation', '')} {phrases.ANYTHING_ELSE}"

        result = await self.kit.commit(t, RESCHEDULE_APPOINTMENT, args, apply)
        if result.get("ok"):
            t.say(result["confirmation"])
            t.say(phrases.ANYTHING_ELSE)
            return
        t.say(result.get("error", "No pude cambiar la cita."))
        if result.get("reason") == "slot_full":
            self.kit.slots.offer(t, result.get("alternatives") or [], None)
            return
        if result.get("reason") in ("cutoff", "not_active", "not_found"):
            st.finish()
            t.say(phrases.ANYTHING_ELSE)
            return
        d.clear_time()
        await self.kit.advance(t)

    async def cancel(self, t: Turn) -> None:
        st = t.st
        assert st.target is not None

        def apply(result: dict[str, Any]) -> None:
            if result.get("ok"):
                st.done.append(f"cancelled {result.get('code')}")
                st.finish()
                st.last_prompt = f"{result.get('confirmation', '')} {phrases.ANYTHING_ELSE}"

        result = await self.kit.commit(t, CANCEL_APPOINTMENT, {"code": st.target["code"]}, apply)
        if result.get("ok"):
            t.say(result["confirmation"])
            t.say(phrases.ANYTHING_ELSE)
            return
        t.say(result.get("error", "No pude cancelar la cita."))
        st.finish()
        t.say(phrases.ANYTHING_ELSE)


def _of(phrase: str) -> str:
    """ "de" + "el lunes 23…" is "del lunes 23…"."""
    return "del " + phrase[3:] if phrase.startswith("el ") else "de " + phrase
