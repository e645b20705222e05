"""What the speech-recognition provider layer adds on top of the raw WebSocket stream, and how
long a failover takes.

Runs against ``tests/fake_deepgram.py`` on its own event loop in a thread (a stand-in for the
network peer; loopback, so the figures are the layer's own cost, not Deepgram's). Reports:

* ``send`` — from a frame handed to ``DeepgramTranscriber.send`` to its arrival at the
  server, against the same frame sent by a bare ``websockets`` client (the raw stream);
* ``final`` — from the server sending the ``from_finalize`` result to ``final_text``
  returning, against a bare client receiving the same message;
* ``failover (batch)`` — ``FailoverSTT([stalled, fixed])``: from the request to the result of
  the next provider, against the configured budget (target ≤ budget + 100 ms);
* ``failover (live)`` — a stalled Deepgram: from ``final_text`` to the batch STT's result, as
  the CallSession does it (target ≤ live_final_timeout_s + 100 ms).

Usage: ``.venv/bin/python bench/stt_provider_bench.py [--frames 500] [--turns 50]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import websockets

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.engines import Transcript  # noqa: E402
from pipeline.instant_engines import FixedSTT  # noqa: E402
from pipeline.providers.deepgram_stt import DeepgramLiveSTT, DeepgramTranscriber  # noqa: E402
from pipeline.providers.failover_stt import FailoverSTT  # noqa: E402
from telephony.audio_codec import pcm16_to_mulaw  # noqa: E402
from tests.fake_deepgram import FakeDeepgram, running_in_thread  # noqa: E402

KEY = "bench-key"
QUERY = (
    "/v1/listen?model=nova-2&language=es&encoding=mulaw&sample_rate=8000&channels=1"
    "&interim_results=true&endpointing=300&utterance_end_ms=1000&vad_events=true"
)
_rng = np.random.default_rng(3)


def frames(loud: bool, ms: int) -> list[bytes]:
    out = []
    for _ in range(ms // 20):
        pcm = (_rng.standard_normal(160) * (6000 if loud else 0)).astype(np.int16)
        out.append(pcm16_to_mulaw(pcm.tobytes()))
    return out


def conversation(n: int) -> list[bytes]:
    """Speech and pauses, so results flow back while frames go out."""
    out: list[bytes] = []
    while len(out) < n:
        out += frames(True, 600) + frames(False, 800)
    return out[:n]


def arrival_times(fake: FakeDeepgram, conn_index: int, sizes: list[int]) -> list[float]:
    """When the last byte of each frame reached the server (messages may join frames)."""
    times = []
    arrivals = fake.connections[conn_index].frame_times
    received = 0
    j = 0
    target = 0
    for size in sizes:
        target += size
        while received < target:
            t, n = arrivals[j]
            received += n
            j += 1
        times.append(t)
    return times


def ms(values: list[float]) -> dict[str, float]:
    values = sorted(v * 1000 for v in values)
    return {
        "p50": round(statistics.median(values), 3),
        "p95": round(values[int(len(values) * 0.95) - 1], 3),
        "max": round(values[-1], 3),
    }


async def wait_for(pred, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise TimeoutError("bench condition not met")
        await asyncio.sleep(0.002)


# --- send path ---------------------------------------------------------------------------------
async def raw_send(fake: FakeDeepgram, audio: list[bytes]) -> list[float]:
    headers = {"Authorization": f"Token {KEY}"}
    before = len(fake.connections)
    async with websockets.connect(
        f"ws://127.0.0.1:{fake.port}{QUERY}", additional_headers=headers
    ) as ws:
        await wait_for(lambda: len(fake.connections) == before + 1)
        index = before
        drain = asyncio.create_task(_drain(ws))
        sent_at = []
        for frame in audio:
            sent_at.append(time.monotonic())
            await ws.send(frame)
            await asyncio.sleep(0.02)
        await wait_for(lambda: fake.connections[index].audio_bytes == sum(map(len, audio)))
        drain.cancel()
    arrived = arrival_times(fake, index, [len(f) for f in audio])
    return [a - s for a, s in zip(arrived, sent_at, strict=True)]


async def _drain(ws) -> None:
    async for _ in ws:
        pass


async def layer_send(fake: FakeDeepgram, audio: list[bytes]) -> list[float]:
    stt = DeepgramLiveSTT(KEY, base_url=fake.url)
    before = len(fake.connections)
    t = await stt.open(call_id="bench", encoding="mulaw", sample_rate=8000)
    assert await t.wait_connected(5)
    await wait_for(lambda: len(fake.connections) == before + 1)  # the server's side is up too
    index = before
    sent_at = []
    for frame in audio:
        sent_at.append(time.monotonic())
        t.send(frame)
        await asyncio.sleep(0.02)
    await wait_for(lambda: fake.connections[index].audio_bytes == sum(map(len, audio)))
    await t.aclose()
    arrived = arrival_times(fake, index, [len(f) for f in audio])
    return [a - s for a, s in zip(arrived, sent_at, strict=True)]


# --- result path -------------------------------------------------------------------------------
def last_finalize_sent_at(fake: FakeDeepgram, index: int) -> float:
    conn = fake.connections[index]
    for msg, at in zip(reversed(conn.sent), reversed(conn.sent_at), strict=True):
        if msg.get("from_finalize"):
            return at
    raise RuntimeError("no from_finalize result")


async def raw_final(fake: FakeDeepgram, turns: int) -> list[float]:
    headers = {"Authorization": f"Token {KEY}"}
    out = []
    speech = frames(True, 400)
    before = len(fake.connections)
    async with websockets.connect(
        f"ws://127.0.0.1:{fake.port}{QUERY}", additional_headers=headers
    ) as ws:
        await wait_for(lambda: len(fake.connections) == before + 1)
        index = before
        for _ in range(turns):
            for frame in speech:
                await ws.send(frame)
            await ws.send(json.dumps({"type": "Finalize"}))
            while True:
                msg = json.loads(await ws.recv())
                if msg.get("from_finalize"):
                    got = time.monotonic()
                    break
            out.append(got - last_finalize_sent_at(fake, index))
            await asyncio.sleep(0.05)
    return out


async def layer_final(fake: FakeDeepgram, turns: int) -> list[float]:
    stt = DeepgramLiveSTT(KEY, base_url=fake.url)
    before = len(fake.connections)
    t = await stt.open(call_id="bench", encoding="mulaw", sample_rate=8000)
    assert await t.wait_connected(5)
    await wait_for(lambda: len(fake.connections) == before + 1)  # the server's side is up too
    index = before
    speech = frames(True, 400)
    out = []
    for _ in range(turns):
        for frame in speech:
            t.send(frame)
        await asyncio.sleep(0.02)  # the frames are on the wire, interim results flowing
        transcript = await t.final_text(2.0)
        got = time.monotonic()
        assert transcript.text, "the fake recognised nothing"
        out.append(got - last_finalize_sent_at(fake, index))
        await asyncio.sleep(0.05)
    await t.aclose()
    return out


# --- failover ----------------------------------------------------------------------------------
class Stalled:
    name = "stalled"

    async def transcribe(self, pcm16: bytes, sample_rate: int) -> Transcript:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def batch_failover(budget: float, runs: int) -> list[float]:
    chain = FailoverSTT([Stalled(), FixedSTT(text="Sí.")], budget, cooldown_s=0)
    out = []
    for _ in range(runs):
        t0 = time.monotonic()
        transcript = await chain.transcribe(bytes(32000), 16000)
        out.append(time.monotonic() - t0)
        assert transcript.provider == "fixed"
    return out


async def live_failover(budget: float, runs: int) -> list[float]:
    out = []
    with running_in_thread(api_key=KEY, fault="stall") as fake:
        stt = DeepgramLiveSTT(KEY, base_url=fake.url)
        t: DeepgramTranscriber = await stt.open(call_id="bench", encoding="mulaw", sample_rate=8000)
        assert await t.wait_connected(5)
        batch = FixedSTT(text="Sí.")
        for _ in range(runs):
            for frame in frames(True, 400):
                t.send(frame)
            t0 = time.monotonic()
            try:
                await t.final_text(budget)
                raise AssertionError("a stalled Deepgram answered")
            except TimeoutError:
                pass
            await batch.transcribe(bytes(12800), 16000)
            out.append(time.monotonic() - t0)
        await t.aclose()
    return out


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=500)
    parser.add_argument("--turns", type=int, default=50)
    parser.add_argument("--budget", type=float, default=0.5)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()

    audio = conversation(args.frames)
    with running_in_thread(api_key=KEY, texts=["¿A qué hora abren?"], record_timing=True) as fake:
        raw_tx = await raw_send(fake, audio)
        dg_tx = await layer_send(fake, audio)
        raw_rx = await raw_final(fake, args.turns)
        dg_rx = await layer_final(fake, args.turns)
    batch = await batch_failover(args.budget, args.runs)
    live = await live_failover(args.budget, args.runs)

    report = {
        "send_raw_ms": ms(raw_tx),
        "send_layer_ms": ms(dg_tx),
        "send_added_ms_p50": round(
            (statistics.median(dg_tx) - statistics.median(raw_tx)) * 1000, 3
        ),
        "final_raw_ms": ms(raw_rx),
        "final_layer_ms": ms(dg_rx),
        "final_added_ms_p50": round(
            (statistics.median(dg_rx) - statistics.median(raw_rx)) * 1000, 3
        ),
        "budget_s": args.budget,
        "failover_batch_ms": ms(batch),
        "failover_batch_over_budget_ms_max": round((max(batch) - args.budget) * 1000, 3),
        "failover_live_ms": ms(live),
        "failover_live_over_budget_ms_max": round((max(live) - args.budget) * 1000, 3),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
