"""What a brain is: given the conversation so far and what the caller just said, stream what
to say and what to do.

Both the LLM brain and the offline dialogue engine implement ``Brain``; the CallSession knows
nothing else about them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

Role = Literal["system", "user", "assistant", "tool"]


@dataclass
class Message:
    role: Role
    content: str
    interrupted: bool = False  # assistant only: the caller cut it off; content is what was heard


@dataclass
class CallContext:
    """Everything a brain may know about the call. ``history`` holds only what was heard."""

    call_id: str
    ingress: str = "twilio"  # twilio | web | livekit | livekit-sip | simulator
    caller_number: str | None = None
    started_at: datetime | None = None
    history: list[Message] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)  # the brain's own scratch space


@dataclass(frozen=True)
class UserInput:
    text: str = ""
    dtmf: str = ""  # digits pressed since the last turn


@dataclass(frozen=True)
class TextChunk:
    """A piece of the reply; the session cuts the stream into sentences for TTS."""

    text: str


@dataclass(frozen=True)
class ToolEvent:
    """A tool the brain ran, recorded with the turn so staff can audit it."""

    name: str
    arguments: dict[str, Any]
    result: Any


@dataclass(frozen=True)
class EndCall:
    """Hang up after everything said so far has been heard."""

    reason: str = "completed"


@dataclass(frozen=True)
class Transfer:
    """Hand the caller to a human after everything said so far has been heard."""

    reason: str = "requested"
    target: str | None = None


BrainOutput = TextChunk | ToolEvent | EndCall | Transfer


class Brain(Protocol):
    name: str

    async def greeting(self, ctx: CallContext) -> str:
        """The first thing the caller hears."""
        ...

    def respond(self, ctx: CallContext, user: UserInput) -> AsyncIterator[BrainOutput]:
        """Stream the reply to one caller turn. Cancelled on barge-in."""
        ...
