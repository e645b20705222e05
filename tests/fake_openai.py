"""A local OpenAI-compatible server for tests: the real ``openai`` SDK is pointed at it.

It speaks the documented wire format of ``POST /v1/chat/completions``: with ``stream: true``
a ``text/event-stream`` of ``data: {chat.completion.chunk}\\n\\n`` events ending with
``data: [DONE]\\n\\n`` — a first chunk with the role, content deltas of a few characters,
tool calls whose first delta carries ``index``, ``id``, ``type`` and the function name with
empty arguments and whose arguments then arrive in fragments, a last chunk with an empty
delta and the ``finish_reason`` (``stop`` or ``tool_calls``), and the usage chunk (empty
``choices``) when ``stream_options.include_usage`` is set. Without ``stream`` it answers a
``chat.completion`` object. ``POST /v1/embeddings`` returns deterministic vectors (floats or
base64, as asked).

Each request consumes the next scripted :class:`Reply` (or asks ``responder``); a reply can
delay its first token, fail with an HTTP error, drop the connection mid-stream or hang. Every
request body is recorded in :attr:`FakeOpenAI.requests` for assertions.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import re
import struct
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.loopback_http import LoopbackFake

EMBEDDING_DIM = 64


@dataclass
class ToolCall:
    name: str
    arguments: dict[str, Any] | str = field(default_factory=dict)
    id: str | None = None

    def arguments_json(self) -> str:
        if isinstance(self.arguments, str):
            return self.arguments
        return json.dumps(self.arguments, ensure_ascii=False)


@dataclass
class Reply:
    """What the fake model does for one request."""

    text: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    status: int = 200  # 429 / 500 / …: an error body instead of a completion
    headers_delay_s: float = 0.0  # before the response starts (create() waits)
    first_token_delay_s: float = 0.0  # after the headers, before the first chunk
    chunk_delay_s: float = 0.0  # between chunks
    chunk_chars: int = 4  # content characters per delta
    pieces: list[str] | None = None  # explicit content deltas (e.g. GPT-like tokens) instead
    args_chars: int = 7  # tool-argument characters per delta
    drop_after_chunks: int | None = None  # abort the TCP connection after N chunks
    hang_after_chunks: int | None = None  # stop sending (without closing) after N chunks
    finish_reason: str | None = None  # default: "tool_calls" if tool calls else "stop"


@dataclass
class Recorded:
    path: str
    body: dict[str, Any]
    headers: dict[str, str]
    at: float


class FakeOpenAI(LoopbackFake):
    """``async with FakeOpenAI() as fake:`` then ``AsyncOpenAI(base_url=fake.base_url, …)``."""

    def __init__(
        self, *, model: str = "gpt-4o-mini", responder: Callable[[dict], Reply] | None = None
    ):
        super().__init__()
        self.model = model
        self.responder = responder
        self.default = Reply(text="De acuerdo.")
        self.requests: list[Recorded] = []
        self.chunk_sent_at: list[float] = []  # monotonic time each content chunk was flushed
        self.disconnects = 0  # streams the client abandoned before [DONE]
        self.disconnected = asyncio.Event()
        self._script: deque[Reply] = deque()
        self._ids = itertools.count(1)

    # --- scripting ----------------------------------------------------------------------------
    def script(self, *replies: Reply) -> None:
        self._script.extend(replies)

    @property
    def chat_requests(self) -> list[dict[str, Any]]:
        return [r.body for r in self.requests if r.path.endswith("/chat/completions")]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # --- lifecycle ----------------------------------------------------------------------------
    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/embeddings", self._embeddings)
        return app

    # --- handlers -----------------------------------------------------------------------------
    def _record(self, request: web.Request, body: dict[str, Any]) -> None:
        self.requests.append(Recorded(request.path, body, dict(request.headers), time.monotonic()))

    def _next_reply(self, body: dict[str, Any]) -> Reply:
        if self._script:
            return self._script.popleft()
        if self.responder is not None:
            return self.responder(body)
        return self.default

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self._record(request, body)
        reply = self._next_reply(body)
        if reply.headers_delay_s:
            await self._sleep(reply.headers_delay_s)
        if reply.status != 200:
            return _error(reply.status)
        if body.get("stream"):
            return await self._stream(request, body, reply)
        return web.json_response(self._completion(body, reply))

    async def _stream(
        self, request: web.Request, body: dict[str, Any], reply: Reply
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
            }
        )
        await response.prepare(request)
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        chunks = self._chunks(body, reply, include_usage)
        try:
            if reply.first_token_delay_s:
                if not await self._sleep_while_connected(request, reply.first_token_delay_s):
                    raise ConnectionResetError("the client left before the first token")
            for n, chunk in enumerate(chunks):
                if reply.drop_after_chunks is not None and n >= reply.drop_after_chunks:
                    assert request.transport is not None
                    request.transport.abort()  # no terminating chunk: a broken stream
                    return response
                if reply.hang_after_chunks is not None and n >= reply.hang_after_chunks:
                    await self._sleep(3600)
                    return response
                if n and reply.chunk_delay_s:
                    await asyncio.sleep(reply.chunk_delay_s)
                await response.write(b"data: " + _dumps(chunk) + b"\n\n")
                if chunk.get("choices") and chunk["choices"][0]["delta"].get("content"):
                    self.chunk_sent_at.append(time.monotonic())
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
        except (ConnectionError, asyncio.CancelledError):
            # The client went away (barge-in, timeout): nothing to finish.
            self.disconnects += 1
            self.disconnected.set()
        return response

    def _chunks(
        self, body: dict[str, Any], reply: Reply, include_usage: bool
    ) -> list[dict[str, Any]]:
        cid = f"chatcmpl-fake{next(self._ids)}"
        created = int(time.time())
        model = body.get("model", self.model)

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            out: dict[str, Any] = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_fake",
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                ],
            }
            if include_usage:
                out["usage"] = None
            return out

        out = [chunk({"role": "assistant", "content": "", "refusal": None})]
        pieces = (
            reply.pieces if reply.pieces is not None else _pieces(reply.text, reply.chunk_chars)
        )
        for piece in pieces:
            out.append(chunk({"content": piece}))
        for index, call in enumerate(reply.tool_calls):
            call_id = call.id or f"call_fake{next(self._ids)}"
            out.append(
                chunk(
                    {
                        "tool_calls": [
                            {
                                "index": index,
                                "id": call_id,
                                "type": "function",
                                "function": {"name": call.name, "arguments": ""},
                            }
                        ]
                    }
                )
            )
            for piece in _pieces(call.arguments_json(), reply.args_chars):
                out.append(
                    chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
                )
        finish = reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")
        out.append(chunk({}, finish))
        if include_usage:
            out.append(
                {
                    "id": cid,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "system_fingerprint": "fp_fake",
                    "choices": [],
                    "usage": _usage(body, reply),
                }
            )
        return out

    def _completion(self, body: dict[str, Any], reply: Reply) -> dict[str, Any]:
        text = "".join(reply.pieces) if reply.pieces is not None else reply.text
        tool_calls = [
            {
                "id": call.id or f"call_fake{next(self._ids)}",
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments_json()},
            }
            for call in reply.tool_calls
        ]
        return {
            "id": f"chatcmpl-fake{next(self._ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", self.model),
            "system_fingerprint": "fp_fake",
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": text or None,
                        "refusal": None,
                        "tool_calls": tool_calls or None,
                    },
                    "logprobs": None,
                    "finish_reason": reply.finish_reason
                    or ("tool_calls" if tool_calls else "stop"),
                }
            ],
            "usage": _usage(body, reply),
        }

    async def _embeddings(self, request: web.Request) -> web.Response:
        body = await request.json()
        self._record(request, body)
        inputs = body.get("input")
        texts = [inputs] if isinstance(inputs, str) else list(inputs or [])
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for index, text in enumerate(texts):
            vector = embedding(str(text))
            value: Any = (
                base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
                if as_base64
                else vector
            )
            data.append({"object": "embedding", "index": index, "embedding": value})
        tokens = sum(len(str(t).split()) for t in texts)
        return web.json_response(
            {
                "object": "list",
                "data": data,
                "model": body.get("model", "text-embedding-3-small"),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    async def _sleep_while_connected(self, request: web.Request, seconds: float) -> bool:
        """Sleep like ``_sleep``, but return False as soon as the client has gone (a real
        server notices the closed connection; the abandoned request is counted at once)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while (left := end - loop.time()) > 0:
            if self._client_left(request):
                return False
            await self._sleep(min(left, 0.05))
            if self._closing.is_set():
                return True
        return True


def embedding(text: str, dim: int = EMBEDDING_DIM) -> list[float]:
    """A deterministic unit vector: hashed bag of words, so similar texts are close."""
    vector = [0.0] * dim
    for word in re.findall(r"\w+", text.lower()):
        digest = hashlib.sha256(word.encode()).digest()
        vector[digest[0] % dim] += 1.0 if digest[1] & 1 else -1.0
    norm = sum(v * v for v in vector) ** 0.5 or 1.0
    return [v / norm for v in vector]


def _dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON, as the API sends it."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def _pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), max(1, size))]


def _usage(body: dict[str, Any], reply: Reply) -> dict[str, int]:
    prompt = sum(len(str(m.get("content") or "").split()) for m in body.get("messages", []))
    completion = len(reply.text.split()) + len(reply.tool_calls) * 10
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _error(status: int) -> web.Response:
    kinds = {
        429: ("rate_limit_exceeded", "Rate limit reached for requests", "requests"),
        500: ("server_error", "The server had an error while processing your request.", None),
        503: ("server_error", "The engine is currently overloaded.", None),
        401: ("invalid_request_error", "Incorrect API key provided.", None),
    }
    kind, message, param = kinds.get(status, ("server_error", f"HTTP {status}", None))
    code = "rate_limit_exceeded" if status == 429 else None
    return web.json_response(
        {"error": {"message": message, "type": kind, "param": param, "code": code}},
        status=status,
    )
