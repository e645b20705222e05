"""Per-call memory of the offline dialogue engine, kept in ``CallContext.state``.

The engine is frame-based: a task (book, reschedule, cancel, find) has fields to fill; each
turn fills or corrects some of them and the engine asks for the next missing one. ``awaiting``
records which question the caller is answering, so a bare "sí", "el martes" or a string of
digits is read in the right sense.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipeline.brain.base import CallContext
from pipeline.brain.spanish_dates import When

__all__ = ["STATE_KEY", "DialogueState", "Draft"]

STATE_KEY = "offline_dialogue"


@dataclass
class Draft:
    """What the caller has told us about the appointment being booked or moved."""

    service: str | None = None
    office: str | None = None
    any_office: bool = False
    office_choices: list[str] = field(default_factory=list)  # office codes in the order read
    when: When | None = None
    soonest: bool = False  # "lo más pronto posible"
    offered: list[dict[str, Any]] = field(default_factory=list)  # slot rows on offer
    slot: dict[str, Any] | None = None  # the chosen slot row
    name: str | None = None
    cedula: str | None = None
    cedula_partial: str = ""
    phone: str | None = None
    phone_done: bool = False

    def clear_time(self) -> None:
        self.when = None
        self.soonest = False
        self.offered = []
        self.slot = None


@dataclass
class DialogueState:
    task: str | None = None  # book | reschedule | cancel | find
    awaiting: str | None = None  # the question the caller is answering
    draft: Draft = field(default_factory=Draft)
    target: dict[str, Any] | None = None  # the existing appointment being changed
    candidates: list[dict[str, Any]] = field(default_factory=list)  # appointments found
    lookup_tried: set[str] = field(default_factory=set)  # "phone", "cedula", "code"
    offer_service: str | None = None  # a booking offered after answering a question
    topic_service: str | None = None  # the service the last question answered was about
    name_tries: list[str] = field(default_factory=list)  # answers to the name not understood
    misses: int = 0  # consecutive turns not understood, outside a task's question
    step_misses: dict[str, int] = field(default_factory=dict)  # per pending question
    choices: list[str] = field(default_factory=list)  # options of the menu just read out
    clarify: dict[str, Any] | None = None  # a knowledge question waiting for its variant
    told_no_agent: bool = False  # "no agent available" is said once per call
    handovers: int = 0  # dead ends in the task under way, without an agent to take over
    asked: dict[str, int] = field(default_factory=dict)  # questions said, for the short form
    turns: int = 0
    said_count: dict[str, int] = field(default_factory=dict)  # each sentence said, whole call
    last_prompt: str = ""  # what to repeat on "¿cómo?"
    resume_prompt: str = ""  # the pending question, to come back to after a digression
    last_booking: dict[str, Any] | None = None
    done: list[str] = field(default_factory=list)  # completed actions, for the call record
    sources: list[str] = field(default_factory=list)  # citations of the passages read out

    @classmethod
    def of(cls, ctx: CallContext) -> DialogueState:
        state = ctx.state.get(STATE_KEY)
        if not isinstance(state, cls):
            state = cls()
            ctx.state[STATE_KEY] = state
        return state

    def start(self, task: str) -> None:
        """Begin a task (a caller may book twice in one call), keeping what the caller has
        already said about themselves, and, for a booking named only now, the details given
        before ("el jueves en Santiago… es para una cita")."""
        old = self.draft
        self.draft = Draft(name=old.name, cedula=old.cedula, phone=old.phone)
        self.draft.phone_done = old.phone_done
        if self.task is None and task == "book":
            self.draft.service, self.draft.office = old.service, old.office
            self.draft.any_office, self.draft.when = old.any_office, old.when
            self.draft.soonest = old.soonest
        self.task = task
        self.awaiting = None
        self.step_misses = {}
        self.choices = []
        self.asked = {}
        self.handovers = 0
        self.target = None
        self.candidates = []
        self.lookup_tried = set()
        self.offer_service = None
        self.name_tries = []

    def finish(self) -> None:
        self.task = None
        self.awaiting = "anything_else"
        self.draft = Draft()
        self.step_misses = {}
        self.choices = []
        self.asked = {}
        self.handovers = 0
        self.target = None
        self.candidates = []
        self.lookup_tried = set()
