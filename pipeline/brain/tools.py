"""The tools a brain can use, described once for both brains.

``TOOL_SCHEMAS`` is what the LLM sees (OpenAI function calling); the offline dialogue engine
calls the same ``Tools`` implementation directly, so an answer or a booking is the same
whichever brain is driving the call.
"""

from __future__ import annotations

from typing import Any, Protocol

from pipeline.brain.base import CallContext

SEARCH_KNOWLEDGE = "search_knowledge"
CHECK_AVAILABILITY = "check_availability"
BOOK_APPOINTMENT = "book_appointment"
CANCEL_APPOINTMENT = "cancel_appointment"
RESCHEDULE_APPOINTMENT = "reschedule_appointment"
FIND_MY_APPOINTMENTS = "find_my_appointments"
TRANSFER_TO_HUMAN = "transfer_to_human"
END_CALL = "end_call"


class Tools(Protocol):
    async def call(self, name: str, arguments: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        """Run one tool; the result is JSON-serialisable and in Spanish where a caller may
        hear it. Errors come back as ``{"error": "..."}``, never as exceptions."""
        ...


def _fn(name: str, description: str, properties: dict[str, Any], required: list[str]) -> dict:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {
                "type": "object",
                "properties": properties,
                "required": required,
                "additionalProperties": False,
            },
        },
    }


_SERVICE = {
    "type": "string",
    "description": "Service code: cedula, pasaporte, licencia, actas, no_antecedentes, apostilla",
}
_OFFICE = {"type": "string", "description": "Office code, e.g. SDC, SDE, STI, LRO"}

TOOL_SCHEMAS: list[dict[str, Any]] = [
    _fn(
        SEARCH_KNOWLEDGE,
        "Search the office's knowledge base (requirements, fees, hours, addresses, rules). "
        "Always use it before answering a factual question.",
        {"query": {"type": "string", "description": "The question, in Spanish"}},
        ["query"],
    ),
    _fn(
        CHECK_AVAILABILITY,
        "List free appointment slots for a service, optionally at one office and on one day.",
        {
            "service": _SERVICE,
            "office": _OFFICE,
            "date": {"type": "string", "description": "YYYY-MM-DD"},
            "after_time": {"type": "string", "description": "HH:MM, earliest time wanted"},
        },
        ["service"],
    ),
    _fn(
        BOOK_APPOINTMENT,
        "Book a slot. Only after the caller confirmed service, office, date, time, name and "
        "cédula read back to them.",
        {
            "slot_id": {"type": "integer"},
            "service": _SERVICE,
            "citizen_name": {"type": "string"},
            "cedula": {"type": "string", "description": "11 digits"},
            "phone": {"type": "string"},
        },
        ["slot_id", "service", "citizen_name", "cedula"],
    ),
    _fn(
        CANCEL_APPOINTMENT,
        "Cancel an appointment by its confirmation code.",
        {"code": {"type": "string"}},
        ["code"],
    ),
    _fn(
        RESCHEDULE_APPOINTMENT,
        "Move an appointment (by confirmation code) to another free slot, after the caller "
        "confirmed the new date and time.",
        {"code": {"type": "string"}, "slot_id": {"type": "integer"}},
        ["code", "slot_id"],
    ),
    _fn(
        FIND_MY_APPOINTMENTS,
        "Find the caller's active appointments by phone number or cédula.",
        {"phone": {"type": "string"}, "cedula": {"type": "string"}},
        [],
    ),
    _fn(
        TRANSFER_TO_HUMAN,
        "Transfer the caller to a human agent (on request, or when you cannot help).",
        {"reason": {"type": "string"}},
        [],
    ),
    _fn(
        END_CALL,
        "End the call after saying goodbye, when the caller has nothing else.",
        {"reason": {"type": "string"}},
        [],
    ),
]
