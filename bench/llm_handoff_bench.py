"""LLM first-sentence-to-TTS handoff overhead: what our code adds between the network and TTS.

Measured from the moment the bytes of the token that completes the first sentence are read
from the socket (a timing transport under the real ``openai`` SDK) to:

* the LLM brain yielding that token as a TextChunk (SDK SSE parsing + pydantic models + our
  stream handling), bare and wrapped in FallbackBrain as in production;
* the session's SentenceSplitter emitting the first sentence for TTS (the handoff).

The fake OpenAI server runs in its own thread and event loop and streams GPT-like tokens (words
with their leading space, punctuation apart) at ``--token-ms``. Model time and network are not
part of the figure; only our overhead is.

Run: ``.venv/bin/python bench/llm_handoff_bench.py [--replies 300] [--token-ms 15]``.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from openai import AsyncOpenAI  # noqa: E402

from pipeline.brain.base import BrainOutput, CallContext, Message, TextChunk, UserInput  # noqa: E402
from pipeline.brain.fallback import FallbackBrain  # noqa: E402
from pipeline.brain.llm import LLMBrain  # noqa: E402
from pipeline.sentences import SentenceSplitter  # noqa: E402
from tests.fake_openai import FakeOpenAI, Reply  # noqa: E402

ANSWER = (
    "Con gusto le explico lo que necesita para renovar su cédula. Debe llevar la cédula "
    "anterior o su acta de nacimiento, y el trámite no tiene costo. ¿Desea que le busque una "
    "cita?"
)
TOKENS = re.findall(r" ?[^\s.,;:!?¿¡]+|[.,;:!?¿¡]| ", ANSWER)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def completing_token() -> int:
    """Index of the token after which the SentenceSplitter releases the first sentence."""
    splitter = SentenceSplitter()
    for index, token in enumerate(TOKENS):
        if splitter.push(token):
            return index
    raise AssertionError("no complete sentence in the answer")


class _TimedStream(httpx2.AsyncByteStream):
    def __init__(self, inner: httpx2.AsyncByteStream, reads: list[tuple[float, bytes]]):
        self._inner = inner
        self._reads = reads

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for part in self._inner:
            self._reads.append((time.perf_counter(), part))
            yield part

    async def aclose(self) -> None:
        await self._inner.aclose()


class TimingTransport(httpx2.AsyncBaseTransport):
    """Records when each piece of a response body was read from the socket."""

    def __init__(self) -> None:
        self._inner = httpx2.AsyncHTTPTransport()
        self.reads: list[tuple[float, bytes]] = []

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = await self._inner.handle_async_request(request)
        assert isinstance(response.stream, httpx2.AsyncByteStream)
        response.stream = _TimedStream(response.stream, self.reads)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


def arrival_of_content_event(reads: list[tuple[float, bytes]], nth: int) -> float:
    """When the read that completed the ``nth`` content event (0-based) arrived."""
    seen = 0
    buffer = b""
    for at, part in reads:
        buffer += part
        while b"\n\n" in buffer:
            event, buffer = buffer.split(b"\n\n", 1)
            if b'"content":"' in event and b'"content":""' not in event:
                if seen == nth:
                    return at
                seen += 1
    raise AssertionError("content event not found in the recorded reads")


class Offline:
    name = "offline"

    async def greeting(self, ctx: CallContext) -> str:
        return "Hola."

    async def respond(self, ctx: CallContext, user: UserInput) -> AsyncIterator[BrainOutput]:
        yield TextChunk("Respuesta sin conexión.")


def serve_in_thread(token_s: float) -> tuple[FakeOpenAI, threading.Event]:
    """The fake server on its own loop, so its work does not queue behind the client's."""
    ready = threading.Event()
    stop = threading.Event()
    holder: dict[str, FakeOpenAI] = {}

    def run() -> None:
        async def main() -> None:
            fake = FakeOpenAI(responder=lambda body: Reply(pieces=TOKENS, chunk_delay_s=token_s))
            await fake.start()
            holder["fake"] = fake
            ready.set()
            await asyncio.to_thread(stop.wait)
            await fake.close()

        asyncio.run(main())

    threading.Thread(target=run, daemon=True).start()
    ready.wait(10)
    return holder["fake"], stop


async def measure(replies: int, token_s: float) -> dict[str, list[float]]:
    fake, stop = serve_in_thread(token_s)
    transport = TimingTransport()
    client = AsyncOpenAI(
        api_key="sk-bench",
        base_url=fake.base_url,
        max_retries=0,
        http_client=httpx2.AsyncClient(transport=transport),
    )
    llm = LLMBrain(client, prompt_provider="Usted es Taína.", first_token_budget_s=5.0)
    wrapped = FallbackBrain(llm, Offline(), first_token_budget_s=5.0)
    results: dict[str, list[float]] = {}
    try:
        results["brain"], results["brain_sentence"] = await run(llm, transport, replies)
        results["wrapped"], results["handoff"] = await run(wrapped, transport, replies)
    finally:
        await client.close()
        stop.set()
    return results


async def run(
    brain: LLMBrain | FallbackBrain, transport: TimingTransport, replies: int
) -> tuple[list[float], list[float]]:
    """Per reply: ms from socket read to the TextChunk, and to the first sentence."""
    target = completing_token()
    chunks: list[float] = []
    sentences: list[float] = []
    for i in range(replies + 10):  # the first 10 warm up the connection and code paths
        ctx = CallContext(call_id=f"bench-{i}")
        ctx.history.append(Message("user", "¿Qué necesito para renovar la cédula?"))
        user = UserInput(text="¿Qué necesito para renovar la cédula?")
        transport.reads.clear()
        splitter = SentenceSplitter()
        content_seen = 0
        chunk_at = sentence_at = 0.0
        async for out in brain.respond(ctx, user):
            if not isinstance(out, TextChunk):
                continue
            now = time.perf_counter()
            if content_seen == target:
                chunk_at = now
            content_seen += 1
            if splitter.push(out.text) and not sentence_at:
                sentence_at = time.perf_counter()
        if i < 10:
            continue
        arrived = arrival_of_content_event(transport.reads, target)
        chunks.append((chunk_at - arrived) * 1000)
        sentences.append((sentence_at - arrived) * 1000)
    return chunks, sentences


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--replies", type=int, default=300)
    parser.add_argument("--token-ms", type=float, default=15.0, help="fake model token interval")
    args = parser.parse_args()
    results = asyncio.run(measure(args.replies, args.token_ms / 1000))
    print(
        f"LLM handoff overhead over {args.replies} replies, {len(TOKENS)} tokens each, "
        f"first sentence complete at token {completing_token() + 1}:"
    )
    for name, label in (
        ("brain", "socket read → TextChunk yielded by LLMBrain"),
        ("brain_sentence", "socket read → first sentence out of SentenceSplitter (LLMBrain)"),
        ("wrapped", "socket read → TextChunk out of FallbackBrain(LLMBrain)"),
        ("handoff", "socket read → first sentence out of SentenceSplitter (FallbackBrain)"),
    ):
        values = results[name]
        print(
            f"  {label}: p50 {percentile(values, 0.5):.3f} ms, "
            f"p95 {percentile(values, 0.95):.3f} ms, max {max(values):.3f} ms"
        )


if __name__ == "__main__":
    main()
