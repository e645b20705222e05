"""The LLM brain: OpenAI chat completions (or any compatible server), streamed, with tools.

Latency is the whole game on the phone. Content deltas are yielded the moment they arrive (the
session cuts them into sentences and the first one goes to TTS while the model is still
writing); tool calls are accumulated from their streamed fragments, run with a timeout, fed
back, and the model continues — for a bounded number of rounds. A model that does not start
answering within its budget, or stalls mid-stream, raises :class:`LLMTimeout` so that
:class:`~pipeline.brain.fallback.FallbackBrain` can let the offline brain take over.

The messages sent are rebuilt every turn from ``ctx.history``, which holds only what the caller
actually heard; an interrupted reply is followed by a short system note so the model does not
assume the caller heard the rest. Tool exchanges of earlier turns are kept in the brain's own
scratch space (``ctx.state["llm"]``) and put back at their place, so a slot id or booking code
found three turns ago is still known without calling the tool again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo

from pipeline.brain.base import (
    BrainOutput,
    CallContext,
    EndCall,
    Message,
    TextChunk,
    ToolEvent,
    Transfer,
    UserInput,
)
from pipeline.brain.heard import repair_transcript
from pipeline.brain.spanish_dates import speak_date, speak_time
from pipeline.brain.tools import (
    END_CALL,
    SEARCH_KNOWLEDGE,
    TOOL_SCHEMAS,
    TRANSFER_TO_HUMAN,
    Tools,
)

if TYPE_CHECKING:
    from openai import AsyncOpenAI

    from knowledge import Hit, KnowledgeBase

log = logging.getLogger("taina.brain.llm")

KnowledgeMode = Literal["rag_prompt", "query_engine", "chat_engine"]
PromptSource = str | Callable[[], Awaitable[str]]

INTERRUPTED_NOTE = (
    "(interrumpido por el usuario: la persona solo escuchó la respuesta anterior hasta ahí)"
)
GOODBYE_TEXT = "Gracias por llamar. ¡Que tenga un buen día!"
TRANSFER_TEXT = "Con gusto. Le comunico con un agente, por favor espere un momento."
TOOL_TIMEOUT_ERROR = "La consulta tardó demasiado y no se completó. Puede intentarlo otra vez."
TOOL_FAILED_ERROR = "La consulta falló por un problema técnico."
NOT_RUN_ERROR = "No se ejecutó: la persona interrumpió antes."
BAD_ARGUMENTS_ERROR = "Los argumentos de la herramienta no son JSON válido."

CONDENSE_PROMPT = (
    "Reescriba el último mensaje del ciudadano como una pregunta completa e independiente, "
    "en español, usando la conversación para aclarar a qué se refiere. Responda solo con la "
    "pregunta, sin explicaciones."
)
QUERY_ENGINE_PROMPT = (
    "Responda la pregunta en una o dos frases cortas, para ser dichas por teléfono, usando "
    "solo la información dada. Si la información no alcanza, dígalo. Sin Markdown."
)
# Markup a model sometimes emits despite the prompt; spoken aloud it would be spelled out.
_STRIP_MARKUP = str.maketrans("", "", "*#`")
# Stored tool results are trimmed: passages are long and the model has already used them.
_MAX_STORED_RESULT_CHARS = 1500
_MAX_STORED_EXCHANGES = 12


class LLMError(RuntimeError):
    """The LLM could not produce a usable reply."""


class LLMTimeout(LLMError):
    """The LLM did not start (or stalled) within its time budget."""


@dataclass
class _PendingCall:
    """A tool call being assembled from streamed fragments."""

    id: str = ""
    name: str = ""
    arguments: str = ""


@dataclass
class _Round:
    """What one streamed completion produced besides its text."""

    text: list[str] = field(default_factory=list)
    calls: dict[int, _PendingCall] = field(default_factory=dict)
    finish_reason: str | None = None


@dataclass
class _Exchange:
    """Tool messages of one reply, re-inserted after history entry ``anchor - 1``."""

    anchor: int
    messages: list[dict[str, Any]]


class LLMBrain:
    name = "llm"

    def __init__(
        self,
        client: AsyncOpenAI,
        model: str = "gpt-4o-mini",
        temperature: float = 0.7,
        tools: Tools | None = None,
        knowledge: KnowledgeBase | None = None,
        prompt_provider: PromptSource = "",
        first_token_budget_s: float = 2.5,
        tool_timeout_s: float = 5.0,
        max_tool_rounds: int = 4,
        *,
        knowledge_mode: KnowledgeMode | str = "rag_prompt",
        knowledge_k: int = 3,
        office_name: str = "Punto Ciudadano",
        timezone: str = "America/Santo_Domingo",
        stall_timeout_s: float | None = None,
        max_history_messages: int = 40,
        max_tokens: int | None = None,
        tool_schemas: Sequence[dict[str, Any]] = TOOL_SCHEMAS,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        if knowledge_mode not in ("rag_prompt", "query_engine", "chat_engine"):
            raise ValueError(f"unknown knowledge mode {knowledge_mode!r}")
        self._client = client
        self._model = model
        self._temperature = temperature
        self._tools = tools
        self._knowledge = knowledge
        self._prompt = prompt_provider
        self._budget_s = first_token_budget_s
        self._stall_s = stall_timeout_s or max(2 * first_token_budget_s, 5.0)
        self._tool_timeout_s = tool_timeout_s
        self._max_rounds = max(0, max_tool_rounds)
        self._mode: str = knowledge_mode
        self._k = knowledge_k
        self._office = office_name
        self._tz = ZoneInfo(timezone)
        self._max_history = max_history_messages
        self._max_tokens = max_tokens
        self._now = now or (lambda: datetime.now(self._tz))
        # Without a Tools implementation the brain can still search the knowledge base itself,
        # transfer and hang up; booking tools are then not offered to the model.
        local = {END_CALL, TRANSFER_TO_HUMAN} | ({SEARCH_KNOWLEDGE} if knowledge else set())
        self._schemas = [
            s for s in tool_schemas if tools is not None or s["function"]["name"] in local
        ]
        self._last_prompt = prompt_provider if isinstance(prompt_provider, str) else ""

    # --- Brain interface ----------------------------------------------------------------------
    async def greeting(self, ctx: CallContext) -> str:
        """Fixed, not generated: the greeting must be instant and always the same."""
        hour = self._now().hour
        salute = "Buenos días" if hour < 12 else "Buenas tardes" if hour < 19 else "Buenas noches"
        return (
            f"{salute}, gracias por llamar a {self._office}. Le habla Taína, su asistente "
            "virtual. ¿En qué le puedo ayudar?"
        )

    async def respond(self, ctx: CallContext, user: UserInput) -> AsyncIterator[BrainOutput]:
        state = ctx.state.setdefault("llm", {"exchanges": []})
        exchanges: list[_Exchange] = state["exchanges"]
        in_history = _user_in_history(ctx.history, user)
        anchor = len(ctx.history) if in_history else len(ctx.history) + 1
        system = await self._system_message(ctx, user)
        messages = self._messages(ctx, user, system, exchanges, in_history)
        self._repair_heard(messages, user)
        current = _Exchange(anchor=anchor, messages=[])
        spoken = False
        try:
            for round_no in range(self._max_rounds + 1):
                result = _Round()
                pieces = self._stream(messages, result, round_no < self._max_rounds)
                async with aclosing(pieces):  # on barge-in, close the HTTP stream right away
                    async for piece in pieces:
                        spoken = spoken or bool(piece.strip())
                        yield TextChunk(piece)
                if not result.calls:
                    return
                calls = [result.calls[i] for i in sorted(result.calls)]
                for i, call in enumerate(calls):
                    call.id = call.id or f"call_{round_no}_{i}"
                assistant = {
                    "role": "assistant",
                    "content": "".join(result.text) or None,
                    "tool_calls": [
                        {
                            "id": c.id,
                            "type": "function",
                            "function": {"name": c.name, "arguments": c.arguments or "{}"},
                        }
                        for c in calls
                    ],
                }
                messages.append(assistant)
                current.messages.append({**assistant, "content": None})
                action: EndCall | Transfer | None = None
                for call in calls:
                    arguments, error = _parse_arguments(call.arguments)
                    if call.name in (END_CALL, TRANSFER_TO_HUMAN):
                        action = _action(call.name)
                        outcome: dict[str, Any] = {"ok": True}
                    elif error:
                        outcome = {"error": error}
                    else:
                        outcome = await self._run_tool(call.name, arguments, ctx)
                    tool_msg = {
                        "role": "tool",
                        "tool_call_id": call.id,
                        "content": json.dumps(outcome, ensure_ascii=False, default=str),
                    }
                    messages.append(tool_msg)
                    current.messages.append(
                        {**tool_msg, "content": tool_msg["content"][:_MAX_STORED_RESULT_CHARS]}
                    )
                    # Recorded before the yield: a barge-in there must not lose a real effect.
                    yield ToolEvent(name=call.name, arguments=arguments, result=outcome)
                if action is not None:
                    # The caller must hear a goodbye (or a "please hold") before the line
                    # changes; the model usually says it with the call, else we do.
                    if not spoken:
                        yield TextChunk(
                            TRANSFER_TEXT if isinstance(action, Transfer) else GOODBYE_TEXT
                        )
                    yield action
                    return
            # The last round is sent with tool_choice "none"; a server that ignores it and
            # keeps calling tools must not leave the caller in silence.
            if not spoken:
                raise LLMError(f"no answer after {self._max_rounds} tool rounds")
        finally:
            if current.messages:
                _complete_round(current.messages)
                exchanges.append(current)
                del exchanges[:-_MAX_STORED_EXCHANGES]

    # --- the model ----------------------------------------------------------------------------
    async def _stream(
        self, messages: list[dict[str, Any]], result: _Round, allow_tools: bool
    ) -> AsyncIterator[str]:
        """One streamed completion: yields content as it arrives, collects tool calls."""
        kwargs: dict[str, Any] = {
            "model": self._model,
            "messages": messages,
            "temperature": self._temperature,
            "stream": True,
        }
        if self._max_tokens:
            kwargs["max_tokens"] = self._max_tokens
        if self._schemas:
            kwargs["tools"] = self._schemas
            kwargs["tool_choice"] = "auto" if allow_tools else "none"
        started = time.monotonic()
        try:
            async with asyncio.timeout(self._budget_s):
                stream = await self._client.chat.completions.create(**kwargs)
        except TimeoutError:
            raise LLMTimeout(f"no response within {self._budget_s:.1f} s") from None
        try:
            timeout_s = self._budget_s - (time.monotonic() - started)
            while True:
                # A timeout per await, never around a yield: while this generator is
                # suspended the consumer's own awaits must not be cancelled by our deadline.
                try:
                    async with asyncio.timeout(max(timeout_s, 0.001)):
                        chunk = await stream.__anext__()
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    raise LLMTimeout(f"the stream stalled for {timeout_s:.1f} s") from None
                timeout_s = self._stall_s
                if not chunk.choices:  # the usage chunk of stream_options.include_usage
                    continue
                choice = chunk.choices[0]
                delta = choice.delta
                if delta.content:
                    text = delta.content.translate(_STRIP_MARKUP)
                    result.text.append(text)
                    if text:
                        yield text
                if delta.tool_calls:
                    _accumulate(result.calls, delta.tool_calls)
                if choice.finish_reason:
                    result.finish_reason = choice.finish_reason
        finally:
            await stream.close()

    async def _complete(self, messages: list[dict[str, Any]], timeout_s: float) -> str:
        """A short non-streamed completion (condensing, query-engine answers)."""
        async with asyncio.timeout(timeout_s):
            response = await self._client.chat.completions.create(
                model=self._model, messages=messages, temperature=0.0, stream=False
            )
        if not response.choices:
            raise LLMError("completion without choices")
        return (response.choices[0].message.content or "").strip()

    # --- tools --------------------------------------------------------------------------------
    async def _run_tool(
        self, name: str, arguments: dict[str, Any], ctx: CallContext
    ) -> dict[str, Any]:
        try:
            async with asyncio.timeout(self._tool_timeout_s):
                if name == SEARCH_KNOWLEDGE and self._knowledge is not None:
                    if self._mode == "query_engine":
                        return await self._query_engine(str(arguments.get("query", "")))
                    if self._tools is None:
                        return await self._local_search(str(arguments.get("query", "")))
                if self._tools is None:
                    return {"error": f"La herramienta {name} no está disponible."}
                return await self._tools.call(name, arguments, ctx)
        except TimeoutError:
            log.warning("call %s: tool %s timed out after %.1f s", ctx.call_id, name,
                        self._tool_timeout_s)  # fmt: skip
            return {"error": TOOL_TIMEOUT_ERROR}
        except Exception:
            log.exception("call %s: tool %s failed", ctx.call_id, name)
            return {"error": TOOL_FAILED_ERROR}

    async def _local_search(self, query: str) -> dict[str, Any]:
        hits = await self._search(query)
        return {"results": [_hit_json(h) for h in hits]}

    async def _query_engine(self, query: str) -> dict[str, Any]:
        """Retrieve, then let the model write the short factual answer (LlamaIndex's query
        engine, in two calls of our own): the conversation model only has to relay it."""
        hits = await self._search(query)
        from knowledge import citation, context_block

        if not hits:
            return {"answer": "", "sources": [], "note": context_block([])}
        try:
            answer = await self._complete(
                [
                    {"role": "system", "content": QUERY_ENGINE_PROMPT},
                    {"role": "user", "content": f"{context_block(hits)}\n\nPregunta: {query}"},
                ],
                self._tool_timeout_s,
            )
        except Exception as exc:  # the passages still answer the question
            log.warning("query engine synthesis failed (%s); returning passages", exc)
            return {"results": [_hit_json(h) for h in hits]}
        return {"answer": answer, "sources": [citation(h) for h in hits]}

    async def _search(self, query: str) -> list[Hit]:
        if self._knowledge is None or not query.strip():
            return []
        return await self._knowledge.asearch(query, self._k)

    # --- prompt and messages ------------------------------------------------------------------
    async def _system_message(self, ctx: CallContext, user: UserInput) -> str:
        base = self._last_prompt
        if not isinstance(self._prompt, str):
            try:
                base = self._last_prompt = await self._prompt()
            except Exception as exc:  # a prompt store outage must not cost the caller a turn
                log.warning("call %s: system prompt unavailable: %s", ctx.call_id, exc)
        parts = [base.strip(), self._call_facts(ctx)]
        query = user.text.strip()
        if self._knowledge is not None and self._mode != "query_engine" and query:
            query = await self._retrieval_query(ctx, user)
            try:
                hits = await self._search(query)
            except Exception as exc:  # retrieval is an aid; the model can still use the tool
                log.warning("call %s: retrieval failed: %s", ctx.call_id, exc)
                hits = None
            if hits is not None:
                from knowledge import context_block

                parts.append(context_block(hits))
        return "\n\n".join(p for p in parts if p)

    def _call_facts(self, ctx: CallContext) -> str:
        now = self._now()
        number = ctx.caller_number or "desconocido"
        return (
            "Datos de esta llamada (úselos, pero no los lea si no hacen falta): "
            f"hoy es {speak_date(now.date())} de {now.year} ({now.date().isoformat()}), "
            f"son las {now:%H:%M} ({speak_time(now.time())[2:]}) en Santo Domingo. "
            f"Oficina: {self._office}. Número de quien llama: {number}."
        )

    async def _retrieval_query(self, ctx: CallContext, user: UserInput) -> str:
        text = user.text.strip()
        earlier = [m.content for m in ctx.history if m.role == "user"]
        if earlier and earlier[-1].startswith(text):
            earlier = earlier[:-1]  # the session already appended this turn
        if self._mode == "chat_engine" and earlier:
            return await self._condense(ctx, text)
        if len(text.split()) < 4 and earlier:
            # "¿Y cuánto cuesta?" retrieves nothing on its own; the previous question helps.
            return f"{earlier[-1]} {text}"
        return text

    async def _condense(self, ctx: CallContext, text: str) -> str:
        """The chat engine's question condensing: the follow-up as a standalone question."""
        lines = [
            f"{'Ciudadano' if m.role == 'user' else 'Asistente'}: {m.content}"
            for m in ctx.history[-8:]
            if m.role in ("user", "assistant")
        ]
        if not lines or not lines[-1].endswith(text):
            lines.append(f"Ciudadano: {text}")
        try:
            condensed = await self._complete(
                [
                    {"role": "system", "content": CONDENSE_PROMPT},
                    {"role": "user", "content": "\n".join(lines)},
                ],
                self._budget_s / 2,
            )
        except Exception as exc:  # a slow condense must not cost the caller the turn
            log.warning("call %s: question condensing failed: %s", ctx.call_id, exc)
            return text
        return condensed or text

    def _repair_heard(self, messages: list[dict[str, Any]], user: UserInput) -> None:
        """Show the model the caller's words with misheard office words repaired ("renovar mi
        fe en la oficia principal" → "… cédula en la oficina principal"), as the offline brain
        sees them; the history keeps what Whisper wrote."""
        catalog = getattr(self._tools, "catalog", None)
        if catalog is None or not user.text or not messages or messages[-1]["role"] != "user":
            return
        if messages[-1]["content"] != _user_content(user):
            return
        repaired = repair_transcript(user.text, catalog)
        if repaired != user.text:
            messages[-1] = {
                "role": "user",
                "content": _user_content(UserInput(repaired, user.dtmf)),
            }

    def _messages(
        self,
        ctx: CallContext,
        user: UserInput,
        system: str,
        exchanges: list[_Exchange],
        in_history: bool,
    ) -> list[dict[str, Any]]:
        history = ctx.history
        start = max(0, len(history) - self._max_history)
        by_anchor: dict[int, list[dict[str, Any]]] = {}
        for exchange in exchanges:
            by_anchor.setdefault(exchange.anchor, []).extend(exchange.messages)
        messages: list[dict[str, Any]] = [{"role": "system", "content": system}]
        for index in range(start, len(history)):
            message = history[index]
            if message.role == "assistant":
                messages.append({"role": "assistant", "content": message.content})
                if message.interrupted:
                    messages.append({"role": "system", "content": INTERRUPTED_NOTE})
            elif message.role == "user":
                messages.append({"role": "user", "content": message.content})
            elif message.role == "system":
                messages.append({"role": "system", "content": message.content})
            # "tool" entries are not heard; the brain keeps its own tool memory.
            messages.extend(by_anchor.get(index + 1, ()))
        if not in_history:
            messages.append({"role": "user", "content": _user_content(user)})
        return messages


# --- helpers ------------------------------------------------------------------------------------


def _user_content(user: UserInput) -> str:
    """What the session writes into history for a caller turn."""
    return f"{user.text} [DTMF: {user.dtmf}]" if user.dtmf else user.text


def _user_in_history(history: list[Message], user: UserInput) -> bool:
    """True when the session already appended this turn to the history (it normally has)."""
    return (
        bool(history)
        and history[-1].role == "user"
        and history[-1].content.strip() == _user_content(user).strip()
    )


def _accumulate(calls: dict[int, _PendingCall], deltas: Sequence[Any]) -> None:
    """Merge streamed tool-call fragments: id and name come first, arguments in pieces."""
    for delta in deltas:
        call = calls.setdefault(delta.index, _PendingCall())
        if delta.id:
            call.id = delta.id
        function = delta.function
        if function is None:
            continue
        if function.name:
            # OpenAI sends the name once; tolerate servers that repeat or fragment it.
            if not call.name:
                call.name = function.name
            elif function.name != call.name:
                call.name += function.name
        if function.arguments:
            call.arguments += function.arguments


def _complete_round(messages: list[dict[str, Any]]) -> None:
    """Answer the tool calls a barge-in left without a result: the API refuses a history
    with an assistant tool call that has no tool message after it."""
    answered = {m["tool_call_id"] for m in messages if m["role"] == "tool"}
    for message in messages:
        for call in message.get("tool_calls") or ():
            if call["id"] not in answered:
                messages.append(
                    {
                        "role": "tool",
                        "tool_call_id": call["id"],
                        "content": json.dumps({"error": NOT_RUN_ERROR}, ensure_ascii=False),
                    }
                )


def _parse_arguments(raw: str) -> tuple[dict[str, Any], str | None]:
    if not raw.strip():
        return {}, None
    try:
        value = json.loads(raw)
    except ValueError:
        return {"_raw": raw}, BAD_ARGUMENTS_ERROR
    if not isinstance(value, dict):
        return {"_raw": raw}, BAD_ARGUMENTS_ERROR
    return value, None


def _action(name: str) -> EndCall | Transfer:
    """Fixed reason codes: they become the call's outcome; the model's own wording of the
    reason stays in the ToolEvent for staff to read."""
    return Transfer(reason="requested") if name == TRANSFER_TO_HUMAN else EndCall("completed")


def _hit_json(hit: Hit) -> dict[str, Any]:
    from knowledge import citation

    return {"text": hit.text, "source": citation(hit)}
