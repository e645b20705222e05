"""Cloud TTS provider figures, against the local protocol servers (tests/fake_*.py).

1. **ElevenLabs first audio, HTTP vs WebSocket.** One sentence at a time, as the session asks:
   ``http`` (one streaming POST per sentence over a kept-alive connection), ``ws-fresh`` (a
   new input-streaming socket per sentence) and ``ws-prewarmed`` (the socket for the next
   sentence opened while the current one plays; what ``mode="websocket"`` does). The fake
   waits ``--delay-ms`` before the first audio (generation time, identical for both
   endpoints), and a TCP proxy adds ``--rtt-ms`` of round trip per exchange plus two round
   trips to set up each connection (TCP + TLS 1.3), so the protocols' real costs show.
2. **Added latency of the provider layer over the raw stream** (target ≤ 5 ms): a timing
   transport under the real SDKs records when each piece of the response body was read from
   the socket; the figure is the time until the same audio comes out of
   ``synthesize_as(FailoverTTS([...]), …, "mulaw")``, what the session consumes.
   For ElevenLabs that is SDK + passthrough; for OpenAI, SDK + resampling 24→8 kHz +
   mu-law encoding in the chain.
3. **Failover time** (target ≤ budget + 100 ms): ElevenLabs stalls after its headers; the
   time from asking the chain to the first audio from OpenAI, minus the budget.

The fake servers (and proxies) run in their own thread and event loop so their work does not
queue behind the client's. Run:
``.venv/bin/python bench/tts_provider_bench.py [--sentences 40] [--delay-ms 150]
[--rtt-ms 0,60] [--budget-ms 500]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import httpx2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from elevenlabs import AsyncElevenLabs  # noqa: E402
from openai import AsyncOpenAI  # noqa: E402

from pipeline.engines import synthesize_as  # noqa: E402
from pipeline.providers.elevenlabs_tts import ElevenLabsTTS  # noqa: E402
from pipeline.providers.failover_tts import FailoverTTS  # noqa: E402
from pipeline.providers.openai_tts import OpenAITTS  # noqa: E402
from pipeline.tts import EspeakTTS  # noqa: E402
from tests.fake_elevenlabs import API_KEY as EL_KEY  # noqa: E402
from tests.fake_elevenlabs import Behaviour, FakeElevenLabs  # noqa: E402
from tests.fake_openai_audio import API_KEY as OA_KEY  # noqa: E402
from tests.fake_openai_audio import AudioBehaviour, FakeOpenAIAudio  # noqa: E402

SENTENCES = [
    "Con gusto le ayudo con su cita.",
    "La oficina abre de lunes a viernes de ocho a cuatro.",
    "Para renovar la cédula debe llevar la cédula anterior.",
    "¿Desea que le busque un turno para esta semana?",
    "Su cita quedó confirmada para el martes a las diez.",
    "¿Le puedo ayudar en algo más?",
]
VOICE = "bench-voice"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(values: list[float]) -> str:
    return (
        f"p50 {percentile(values, 0.5):7.2f} ms  p95 {percentile(values, 0.95):7.2f} ms  "
        f"max {max(values):7.2f} ms"
    )


# --- network emulation ---------------------------------------------------------------------------
class LatencyProxy:
    """TCP relay adding ``rtt/2`` each way, and ``setup_rtts`` round trips before a new
    connection carries data (TCP + TLS handshakes of a real HTTPS/WSS connection)."""

    def __init__(self, target_port: int, rtt_s: float, setup_rtts: float = 2.0) -> None:
        self.target_port = target_port
        self.rtt_s = rtt_s
        self.setup_rtts = setup_rtts
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> LatencyProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _handle(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await asyncio.sleep(self.setup_rtts * self.rtt_s)
            sr, sw = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            cw.close()
            return
        await asyncio.gather(self._pipe(cr, sw), self._pipe(sr, cw), return_exceptions=True)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()

        async def pump() -> None:
            try:
                while data := await reader.read(65536):
                    queue.put_nowait((loop.time() + self.rtt_s / 2, data))
            finally:
                queue.put_nowait(None)

        pumper = asyncio.create_task(pump())
        try:
            while (item := await queue.get()) is not None:
                due, data = item
                if (wait := due - loop.time()) > 0:
                    await asyncio.sleep(wait)
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            pumper.cancel()
            writer.close()


class ServerThread:
    """The fakes and one proxy per RTT, on their own loop."""

    def __init__(self, rtts_s: list[float]) -> None:
        self.rtts_s = rtts_s
        self.el: FakeElevenLabs
        self.oa: FakeOpenAIAudio
        self.proxies: dict[float, LatencyProxy] = {}
        self.loop: asyncio.AbstractEventLoop
        self._ready = threading.Event()
        self._stop: asyncio.Event

    def __enter__(self) -> ServerThread:
        threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True).start()
        if not self._ready.wait(10):
            raise RuntimeError("fake servers did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self._stop.set)

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self.el = await FakeElevenLabs(api_key=EL_KEY).start()
        self.oa = await FakeOpenAIAudio(api_key=OA_KEY).start()
        for rtt in self.rtts_s:
            self.proxies[rtt] = await LatencyProxy(self.el.port, rtt).start()
        self._ready.set()
        await self._stop.wait()
        for proxy in self.proxies.values():
            await proxy.close()
        await self.el.close()
        await self.oa.close()

    def el_url(self, rtt_s: float) -> str:
        return f"http://127.0.0.1:{self.proxies[rtt_s].port}"


# --- 1. HTTP vs WebSocket first audio ------------------------------------------------------------
async def first_audio_ms(tts: ElevenLabsTTS, text: str) -> float:
    t0 = time.perf_counter()
    stream = tts.synthesize(text, 8000, encoding="mulaw")
    async with contextlib.aclosing(stream):
        async for _ in stream:
            first = (time.perf_counter() - t0) * 1000
            async for _ in stream:  # drain: the whole sentence, like the session
                pass
            return first
    raise RuntimeError("no audio")


async def http_vs_ws(
    servers: ServerThread, rtt_s: float, sentences: int, gap_s: float
) -> dict[str, Any]:
    url = servers.el_url(rtt_s)
    proxy = servers.proxies[rtt_s]
    out: dict[str, Any] = {}
    for mode, prewarm in (("http", False), ("ws-fresh", False), ("ws-prewarmed", True)):
        tts = ElevenLabsTTS(
            EL_KEY,
            VOICE,
            base_url=url,
            mode="http" if mode == "http" else "websocket",
            ws_prewarm=prewarm,
        )
        before = proxy.connections
        try:
            await tts.warm_up()  # http: opens the connection; websocket: the spare socket
            cold = await first_audio_ms(tts, SENTENCES[0])  # the process's first sentence
            warm: list[float] = []
            for i in range(sentences):
                await asyncio.sleep(gap_s)  # the sentence plays; the caller answers
                warm.append(await first_audio_ms(tts, SENTENCES[i % len(SENTENCES)]))
        finally:
            await tts.aclose()
        out[mode] = {"cold": cold, "warm": warm, "connections": proxy.connections - before}
    return out


# --- 2. provider-layer overhead over the raw stream ----------------------------------------------
def timing_transport(module: Any) -> Any:
    """A transport for ``httpx`` or ``httpx2`` (the openai SDK's fork) recording when, and how
    many bytes, each piece of a response body was read from the socket."""

    class Timed(module.AsyncByteStream):  # type: ignore[misc, name-defined]
        def __init__(self, inner: Any, reads: list[tuple[float, int]]) -> None:
            self._inner = inner
            self._reads = reads

        async def __aiter__(self) -> AsyncIterator[bytes]:
            async for part in self._inner:
                self._reads.append((time.perf_counter(), len(part)))
                yield part

        async def aclose(self) -> None:
            await self._inner.aclose()

    class Transport(module.AsyncBaseTransport):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            self._inner = module.AsyncHTTPTransport()
            self.reads: list[tuple[float, int]] = []

        async def handle_async_request(self, request: Any) -> Any:
            response = await self._inner.handle_async_request(request)
            response.stream = Timed(response.stream, self.reads)
            return response

        async def aclose(self) -> None:
            await self._inner.aclose()

    return Transport()


async def layer_overhead(
    servers: ServerThread, sentences: int, provider: str
) -> tuple[list[float], list[float]]:
    """(first audio overhead, every chunk's overhead) in ms, through the whole chain."""
    if provider == "elevenlabs":
        transport = timing_transport(httpx)
        client = AsyncElevenLabs(
            api_key=EL_KEY,
            base_url=servers.el.base_url,
            httpx_client=httpx.AsyncClient(transport=transport),
        )
        engine: Any = ElevenLabsTTS(EL_KEY, VOICE, client=client)

        # The source bytes of output byte n: mu-law passthrough, 1:1.
        def source_bytes(n: int) -> float:
            return n
    else:
        transport = timing_transport(httpx2)
        oa_client = AsyncOpenAI(
            api_key=OA_KEY,
            base_url=servers.oa.base_url,
            max_retries=0,
            http_client=httpx2.AsyncClient(transport=transport),
        )
        engine = OpenAITTS(oa_client)

        # 24 kHz PCM16 (2 bytes, 3 samples) per 8 kHz mu-law byte.
        def source_bytes(n: int) -> float:
            return n * 6

    chain = FailoverTTS([engine, EspeakTTS()], first_byte_budget_s=5.0)
    firsts: list[float] = []
    chunks: list[float] = []
    servers.el.default = Behaviour(chunk_ms=100, chunk_delay_s=0.01)
    servers.oa.default = AudioBehaviour(chunk_ms=100, chunk_delay_s=0.01)
    try:
        for i in range(sentences + 5):  # the first 5 warm up connections and code paths
            transport.reads.clear()
            outs: list[tuple[float, int]] = []
            async for piece in synthesize_as(chain, SENTENCES[i % len(SENTENCES)], 8000, "mulaw"):
                outs.append((time.perf_counter(), len(piece)))
            if i < 5:
                continue
            delays = _delays(transport.reads, outs, source_bytes)
            firsts.append(delays[0])
            chunks.extend(delays)
    finally:
        servers.el.default = Behaviour()
        servers.oa.default = AudioBehaviour()
        await engine.aclose()
    return firsts, chunks


def _delays(
    reads: list[tuple[float, int]],
    outs: list[tuple[float, int]],
    source_bytes: Callable[[int], float],
) -> list[float]:
    """For each output chunk: ms from the socket read that completed its source audio (as
    far as it could be known: the resampler needs a little lookahead) to its yield."""
    delays = []
    produced = 0
    for at, size in outs:
        produced += size
        need = min(source_bytes(produced), sum(n for _, n in reads))
        got = 0
        arrived = reads[-1][0]
        for read_at, n in reads:
            got += n
            if got >= need:
                arrived = read_at
                break
        # A chunk can be produced from audio that arrived before the previous yield;
        # its latency is from when it could first have been produced.
        delays.append(max(0.0, (at - arrived) * 1000))
    return delays


# --- 3. failover time ----------------------------------------------------------------------------
async def failover_time(servers: ServerThread, trials: int, budget_s: float) -> list[float]:
    el = ElevenLabsTTS(EL_KEY, VOICE, base_url=servers.el.base_url)
    oa = OpenAITTS(api_key=OA_KEY, base_url=servers.oa.base_url)
    chain = FailoverTTS([el, oa, EspeakTTS()], first_byte_budget_s=budget_s, cooldown_s=0.0)
    servers.el.default = Behaviour(stall=True)
    extra: list[float] = []
    try:
        for i in range(trials + 2):
            served: list[str] = []
            t0 = time.perf_counter()
            stream = chain.synthesize(
                SENTENCES[i % len(SENTENCES)],
                8000,
                encoding="mulaw",
                on_first_audio=lambda p, _t, served=served: served.append(p),
            )
            async with contextlib.aclosing(stream):
                async for _ in stream:
                    first = time.perf_counter() - t0
                    break
            assert served == ["openai"], served
            if i >= 2:
                extra.append((first - budget_s) * 1000)
    finally:
        servers.el.default = Behaviour()
        await el.aclose()
        await oa.aclose()
    return extra


async def run(args: argparse.Namespace) -> None:
    rtts = [float(x) / 1000 for x in args.rtt_ms.split(",")]
    with ServerThread(rtts) as servers:
        servers.el.default = Behaviour(first_audio_delay_s=args.delay_ms / 1000)
        print(
            f"1. ElevenLabs first audio (ulaw_8000), {args.sentences} sentences, server "
            f"generation delay {args.delay_ms:.0f} ms, {args.gap_ms:.0f} ms between sentences"
        )
        for rtt in rtts:
            res = await http_vs_ws(servers, rtt, args.sentences, args.gap_ms / 1000)
            print(f"   RTT {rtt * 1000:.0f} ms (+2 RTT to set up a connection):")
            for mode, r in res.items():
                print(
                    f"     {mode:13s} first sentence {r['cold']:7.2f} ms | then "
                    f"{summary(r['warm'])} | connections {r['connections']}"
                )
            p50 = {m: percentile(r["warm"], 0.5) for m, r in res.items()}
            best = min(p50, key=p50.__getitem__)
            runner_up = min(v for m, v in p50.items() if m != best)
            verdict = "a tie (< 2 ms apart)" if runner_up - p50[best] < 2 else best
            print(f"     lowest steady-state first audio: {verdict}")
        servers.el.default = Behaviour()

        title = "2. Provider layer over the raw stream (socket read → audio out of the chain)"
        print(f"{title}, {args.sentences} sentences:")
        for provider, label in (
            ("elevenlabs", "ElevenLabs ulaw_8000 passthrough"),
            ("openai", "OpenAI pcm 24 kHz → 8 kHz → mu-law"),
        ):
            firsts, chunks = await layer_overhead(servers, args.sentences, provider)
            print(f"   {label}: first audio {summary(firsts)}")
            print(f"   {' ' * len(label)}  every chunk {summary(chunks)}")

        budget_s = args.budget_ms / 1000
        extra = await failover_time(servers, args.trials, budget_s)
        print(
            f"3. Failover, ElevenLabs stalled → first OpenAI audio, budget "
            f"{args.budget_ms:.0f} ms, {args.trials} trials: beyond the budget {summary(extra)}"
        )


def main() -> None:
    logging.getLogger("taina.tts.failover").setLevel(logging.ERROR)  # one warning per trial
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sentences", type=int, default=40)
    parser.add_argument("--delay-ms", type=float, default=150.0, help="fake generation delay")
    parser.add_argument("--rtt-ms", default="0,60", help="comma-separated network round trips")
    parser.add_argument("--gap-ms", type=float, default=300.0, help="pause between sentences")
    parser.add_argument("--budget-ms", type=float, default=500.0)
    parser.add_argument("--trials", type=int, default=20)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
