"""The audio-flood attack, measured: N clients send audio as fast as the socket takes it.

Each attacker opens a call — ``WS /web/stream`` (``start``, then binary PCM16 frames) or the
Twilio stream with no auth token set (unsigned voice webhook, then ``media`` messages) — and
sends a caller's recorded speech, looped, with no pause between messages: the server receives
audio many times faster than real time. When the server closes the stream the attacker opens
another one (``--no-reconnect`` to stop instead). Meanwhile:

* a prober asks ``GET /healthz`` every 50 ms and records how long each answer took;
* a healthy simulated phone call (``taina call``'s simulator: real-time speech, a phone-like
  earpiece) asks its questions, and the latency of each turn (end of the caller's speech to
  the first bot audio) is recorded.

The healthy call runs first on a quiet server and then under the flood, in the same run and
against the same server, so the ratio compares like with like on a noisy machine.

    .venv/bin/python bench/flood_bench.py --transport web --clients 20
    .venv/bin/python bench/flood_bench.py --transport twilio --clients 20 --json out.json

Without ``--url`` the bench starts its own ``taina serve`` (embedded engines: Silero, Whisper,
the default voice, the offline brain) on a free loopback port. Attackers come from their own
loopback addresses (127.0.1.x), as twenty clients on the internet would, so per-address
limits apply to them as they would in production and not to the healthy caller.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import statistics
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
import numpy as np
import soxr
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from telephony.audio_codec import mulaw_to_pcm16  # noqa: E402
from telephony.simulator import (  # noqa: E402
    CallOptions,
    map_stream_url,
    new_sid,
    parse_stream_twiml,
    render_utterances,
    run_call,
    webhook_params,
)

Transport = Literal["web", "twilio"]
SELF = Path(__file__).resolve()

HEALTHY_SAYS = (
    "¿A qué hora abren las oficinas?",
    "¿Dónde queda la oficina de Santiago?",
    "¿Los sábados atienden?",
)
FLOOD_SPEECH = "Quiero saber qué documentos necesito para sacar el pasaporte, por favor."
WEB_FRAME_BYTES = 8000  # 250 ms of 16 kHz PCM16 per message (the server allows 8192)
TWILIO_FRAME_BYTES = 8000  # 1 s of 8 kHz mu-law per media message
PROBE_EVERY_S = 0.05
# Settings a flood run needs from a server it starts: room for twenty attackers' addresses.
SERVER_ENV = {
    "TAINA_WEB_MAX_CONNECTIONS_PER_IP": "4",
    "TAINA_MAX_CONCURRENT_CALLS": "0",
}


@dataclass
class FloodStats:
    """What the attackers did and what the server did to them."""

    connections: int = 0
    refused: int = 0  # WebSocket upgrade or webhook refused
    closed_1008: int = 0  # closed by the server as a policy violation (the flood limit)
    closed_other: int = 0
    messages: int = 0
    audio_s_sent: float = 0.0
    first_close_s: list[float] = field(default_factory=list)  # connect → close, per stream

    def summary(self) -> dict[str, Any]:
        closes = sorted(self.first_close_s)
        return {
            "connections": self.connections,
            "refused": self.refused,
            "closed_1008": self.closed_1008,
            "closed_other": self.closed_other,
            "messages": self.messages,
            "audio_s_sent": round(self.audio_s_sent, 1),
            "close_after_s_median": round(statistics.median(closes), 3) if closes else None,
            "close_after_s_max": round(closes[-1], 3) if closes else None,
        }


# Each reconnection from an address never used before (a botnet): per-address bans cannot
# help, only pacing and the flood limit do. Set by ``--fresh-addresses``.
FRESH_ADDRESSES = False


def attacker_ip(index: int, transport: Transport = "web", attempt: int = 0) -> str:
    """Web attackers come from 127.0.1.x, Twilio ones from 127.0.2.x (a ban for one attack
    does not pre-empt the other when both run against one server); with FRESH_ADDRESSES
    every attempt has its own address (127.1x.i.a web, 127.2x.i.a Twilio)."""
    if FRESH_ADDRESSES:
        block = (10 if transport == "web" else 20) + attempt // 250
        return f"127.{block}.{index + 1}.{attempt % 250 + 1}"
    return f"127.0.{1 if transport == 'web' else 2}.{index + 1}"


async def speech_wire(text: str = FLOOD_SPEECH) -> tuple[bytes, bytes]:
    """(8 kHz mu-law, 16 kHz PCM16) of a caller saying ``text``, rendered once."""
    ulaw = (await render_utterances([text]))[text]
    pcm8 = np.frombuffer(mulaw_to_pcm16(ulaw), dtype=np.int16).astype(np.float32) / 32768.0
    pcm16k = soxr.resample(pcm8, 8000, 16000)
    return ulaw, (np.clip(pcm16k, -1, 1) * 32767).astype(np.int16).tobytes()


def _frames(audio: bytes, size: int) -> list[bytes]:
    reps = -(-size // len(audio)) + 1
    loop = audio * reps
    return [loop[i : i + size] for i in range(0, len(audio), size)] or [loop[:size]]


def _ws_url(base: str, path: str) -> str:
    return base.replace("http://", "ws://").replace("https://", "wss://") + path


async def _flood_socket(
    ws: Any,
    messages: list[bytes | str],
    stop: asyncio.Event,
    stats: FloodStats,
    audio_s_per_message: float,
) -> None:
    i = 0
    while not stop.is_set():
        await ws.send(messages[i % len(messages)])
        stats.messages += 1
        stats.audio_s_sent += audio_s_per_message
        i += 1
        if i % 16 == 0:
            await asyncio.sleep(0)  # let the prober and the healthy call run in this process


def _closed(stats: FloodStats, exc: ConnectionClosed, t0: float) -> None:
    code = exc.rcvd.code if exc.rcvd is not None else None
    if code == 1008:
        stats.closed_1008 += 1
    else:
        stats.closed_other += 1
    stats.first_close_s.append(time.monotonic() - t0)


async def _flood_answering(
    ws: Any,
    messages: list[bytes | str],
    stop: asyncio.Event,
    stats: FloodStats,
    per_message_s: float,
) -> None:
    """Flood ``ws`` while reading (and dropping) what the server sends back."""
    drain = asyncio.create_task(_discard(ws))
    try:
        await _flood_socket(ws, messages, stop, stats, per_message_s)
    finally:
        drain.cancel()


def _attacker_socket(url: str, ip: str) -> Any:
    """A WebSocket from the attacker's own loopback address: no compression, no pings, no
    size cap, no proxy (what a crude flooding client does)."""
    return connect(
        url,
        local_addr=(ip, 0),
        compression=None,
        ping_interval=None,
        max_size=None,
        open_timeout=10,
        close_timeout=1,
        proxy=None,
    )


@contextlib.asynccontextmanager
async def _one_attempt(stats: FloodStats, t0: float) -> AsyncIterator[None]:
    """One attacking connection: a close is counted by its code, a refusal counted and
    followed by a short pause before the next try (both transports alike)."""
    try:
        yield
    except ConnectionClosed as exc:
        _closed(stats, exc, t0)
    except (InvalidStatus, OSError, TimeoutError, WebSocketException):
        stats.refused += 1
        await asyncio.sleep(0.2)


async def web_attacker(
    base: str,
    index: int,
    stop: asyncio.Event,
    stats: FloodStats,
    pcm16k: bytes,
    reconnect: bool = True,
) -> None:
    frames = _frames(pcm16k, WEB_FRAME_BYTES)
    per_message = WEB_FRAME_BYTES / 2 / 16000
    attempt = 0
    while not stop.is_set():
        t0 = time.monotonic()
        attempt += 1
        async with _one_attempt(stats, t0):
            async with _attacker_socket(
                _ws_url(base, "/web/stream"), attacker_ip(index, "web", attempt)
            ) as ws:
                stats.connections += 1
                await ws.send(json.dumps({"type": "start", "session": f"flood-{index}"}))
                await _flood_answering(ws, list(frames), stop, stats, per_message)
        if not reconnect:
            return


async def twilio_attacker(
    base: str,
    index: int,
    stop: asyncio.Event,
    stats: FloodStats,
    ulaw: bytes,
    reconnect: bool = True,
) -> None:
    attempt = 0
    while not stop.is_set():
        attempt += 1
        ip = attacker_ip(index, "twilio", attempt)
        transport = httpx.AsyncHTTPTransport(local_address=ip)
        async with httpx.AsyncClient(transport=transport, timeout=10, trust_env=False) as http:
            t0 = time.monotonic()
            call_sid = new_sid("CA")
            stream_sid = new_sid("MZ")
            try:
                resp = await http.post(
                    base + "/twilio/voice",
                    data=webhook_params(call_sid, new_sid("AC"), "+18095550666", "+18095550199"),
                )
                twiml = parse_stream_twiml(resp.text)
            except Exception:
                stats.refused += 1
                await asyncio.sleep(0.2)
                continue
            target, _ = map_stream_url(twiml.url, base, base + "/twilio/voice")
            messages = [
                json.dumps(
                    {
                        "event": "media",
                        "streamSid": stream_sid,
                        "media": {"track": "inbound", "payload": base64.b64encode(f).decode()},
                    }
                )
                for f in _frames(ulaw, TWILIO_FRAME_BYTES)
            ]
            async with _one_attempt(stats, t0):
                async with _attacker_socket(target, ip) as ws:
                    stats.connections += 1
                    await ws.send(json.dumps({"event": "connected", "protocol": "Call"}))
                    await ws.send(
                        json.dumps(
                            {
                                "event": "start",
                                "streamSid": stream_sid,
                                "start": {
                                    "accountSid": new_sid("AC"),
                                    "streamSid": stream_sid,
                                    "callSid": call_sid,
                                    "tracks": ["inbound"],
                                    "mediaFormat": {
                                        "encoding": "audio/x-mulaw",
                                        "sampleRate": 8000,
                                        "channels": 1,
                                    },
                                    "customParameters": dict(twiml.parameters),
                                },
                            }
                        )
                    )
                    await _flood_answering(ws, messages, stop, stats, TWILIO_FRAME_BYTES / 8000)
            if not reconnect:
                return


async def _discard(ws: Any) -> None:
    """Read (and drop) what the server sends, so its writer is never blocked by us."""
    with contextlib.suppress(Exception):
        async for _ in ws:
            pass


async def probe_health(base: str, stop: asyncio.Event, out: list[float]) -> None:
    """``GET /healthz`` every PROBE_EVERY_S; each answer's time in ms (a failure: 10 s)."""
    async with httpx.AsyncClient(timeout=10, trust_env=False) as http:
        while not stop.is_set():
            t0 = time.perf_counter()
            try:
                (await http.get(base + "/healthz")).raise_for_status()
                out.append((time.perf_counter() - t0) * 1000)
            except httpx.HTTPError:
                out.append(10_000.0)
            await asyncio.sleep(PROBE_EVERY_S)


async def healthy_call(
    base: str, rendered: dict[str, bytes], says: tuple[str, ...] = HEALTHY_SAYS
) -> list[float]:
    """One caller's turn latencies (ms, speech end → first bot audio) over a whole call."""
    result = await run_call(
        CallOptions(
            server=base,
            says=list(says),
            transcribe=False,
            rendered=rendered,
            timeout_s=30.0,
            greeting_timeout_s=20.0,
        )
    )
    if result.error:
        raise RuntimeError(f"healthy call failed: {result.error}")
    return result.latencies_ms


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


async def run_flood(
    base: str,
    transport: Transport,
    clients: int = 20,
    warmup_s: float = 2.0,
    reconnect: bool = True,
    says: tuple[str, ...] = HEALTHY_SAYS,
    fresh_addresses: bool = False,
) -> dict[str, Any]:
    """Quiet healthy call, then the same call under a flood of ``clients`` attackers."""
    rendered = await render_utterances(list(says))
    await healthy_call(base, rendered, says[:1])  # warm-up (first-use costs, caches)

    quiet_probe: list[float] = []
    stop_quiet = asyncio.Event()
    prober = asyncio.create_task(probe_health(base, stop_quiet, quiet_probe))
    quiet = await healthy_call(base, rendered, says)
    stop_quiet.set()
    await prober

    # The attackers run at the lowest CPU priority: on the internet their CPU is not the
    # server's, here they share its two cores (see docs/PERFORMANCE.md).
    child = await asyncio.create_subprocess_exec(
        "nice",
        "-n",
        "19",
        sys.executable,
        str(SELF),
        "--attack-only",
        "--url",
        base,
        "--transport",
        transport,
        "--clients",
        str(clients),
        *([] if reconnect else ["--no-reconnect"]),
        *(["--fresh-addresses"] if fresh_addresses else []),
        stdout=asyncio.subprocess.PIPE,
    )
    stop = asyncio.Event()
    flood_probe: list[float] = []
    prober = asyncio.create_task(probe_health(base, stop, flood_probe))
    t0 = time.monotonic()
    try:
        await asyncio.sleep(warmup_s)
        flooded = await healthy_call(base, rendered, says)
    finally:
        stop.set()
        flood_s = time.monotonic() - t0
        if child.returncode is None:
            child.terminate()
        out, _ = await child.communicate()
        await prober
    attack_summary = json.loads(out.decode().strip().splitlines()[-1]) if out.strip() else {}
    async with httpx.AsyncClient(timeout=10, trust_env=False) as http:
        metrics = (await http.get(base + "/metrics")).text
    dropped = _metric_sum(metrics, "taina_inbound_dropped_seconds_total", transport)
    disconnects = _metric_sum(metrics, "taina_flood_disconnects_total", transport)
    q_med = statistics.median(quiet)
    f_med = statistics.median(flooded)
    return {
        "transport": transport,
        "clients": clients,
        "reconnect": reconnect,
        "fresh_addresses": fresh_addresses,
        "flood_s": round(flood_s, 1),
        "attack": attack_summary,
        "server_dropped_audio_s": round(dropped, 1),
        "server_flood_disconnects": int(disconnects),
        "healthz_quiet_ms": {
            "p50": _pct(quiet_probe, 0.5),
            "p95": _pct(quiet_probe, 0.95),
            "max": _pct(quiet_probe, 1.0),
            "n": len(quiet_probe),
        },
        "healthz_flood_ms": {
            "p50": _pct(flood_probe, 0.5),
            "p95": _pct(flood_probe, 0.95),
            "max": _pct(flood_probe, 1.0),
            "n": len(flood_probe),
        },
        "turn_quiet_ms": [round(x) for x in quiet],
        "turn_flood_ms": [round(x) for x in flooded],
        "turn_quiet_median_ms": round(q_med),
        "turn_flood_median_ms": round(f_med),
        "turn_ratio": round(f_med / q_med, 2) if q_med else None,
    }


def _metric_sum(text: str, name: str, transport: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and f'transport="{transport}"' in line:
            with contextlib.suppress(ValueError):
                total += float(line.rsplit(" ", 1)[1])
    return total


def format_report(r: dict[str, Any]) -> str:
    a = r["attack"]
    fresh = " (fresh address per reconnection)" if r.get("fresh_addresses") else ""
    return (
        f"{r['transport']} flood{fresh}, {r['clients']} clients for {r['flood_s']} s: "
        f"{a['connections']} streams, {a['audio_s_sent']} s of audio sent, "
        f"server dropped {r['server_dropped_audio_s']} s, "
        f"{r['server_flood_disconnects']} flood disconnects "
        f"(closed after {a['close_after_s_median']} s median)\n"
        f"  /healthz quiet p50/p95/max {r['healthz_quiet_ms']['p50']}/"
        f"{r['healthz_quiet_ms']['p95']}/{r['healthz_quiet_ms']['max']} ms; "
        f"flood p50/p95/max {r['healthz_flood_ms']['p50']}/{r['healthz_flood_ms']['p95']}/"
        f"{r['healthz_flood_ms']['max']} ms ({r['healthz_flood_ms']['n']} probes)\n"
        f"  healthy turn latency quiet {r['turn_quiet_ms']} ms, flood {r['turn_flood_ms']} ms, "
        f"median ratio {r['turn_ratio']}"
    )


async def attack_only(
    base: str, transport: Transport, clients: int, reconnect: bool, duration_s: float
) -> dict[str, Any]:
    """The attackers alone, until ``duration_s`` passes or SIGTERM/SIGINT: the bench runs them
    in a process of their own, so their CPU never delays the healthy call's own clock."""
    import signal

    ulaw, pcm16k = await speech_wire()
    stats = FloodStats()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    make = twilio_attacker if transport == "twilio" else web_attacker
    attack = ulaw if transport == "twilio" else pcm16k
    tasks = [
        asyncio.create_task(make(base, i, stop, stats, attack, reconnect)) for i in range(clients)
    ]
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), duration_s)
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    return stats.summary()


async def _main(args: argparse.Namespace) -> list[dict[str, Any]]:
    server = None
    base = args.url
    if base is None:
        from app.load_bench import ServerProcess

        server = ServerProcess(args.engines, None, "", dict(SERVER_ENV))
        await server.wait_ready()
        base = server.url
    try:
        reports = []
        for transport in args.transport:
            report = await run_flood(
                base,
                transport,
                args.clients,
                reconnect=args.reconnect,
                fresh_addresses=args.fresh_addresses,
            )
            print(format_report(report), flush=True)
            reports.append(report)
    finally:
        if server is not None:
            server.stop()
    return reports


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--transport",
        choices=["web", "twilio"],
        action="append",
        help="attack this transport (repeatable; default both)",
    )
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--engines", choices=["embedded", "instant"], default="embedded")
    parser.add_argument("--url", help="an already running server (no auth token set)")
    parser.add_argument(
        "--no-reconnect",
        dest="reconnect",
        action="store_false",
        help="an attacker the server closed stays away",
    )
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument(
        "--fresh-addresses",
        action="store_true",
        help="every reconnection from a new address (a botnet: per-address bans cannot help)",
    )
    parser.add_argument("--attack-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--duration", type=float, default=600.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.transport = args.transport or ["web", "twilio"]
    global FRESH_ADDRESSES
    FRESH_ADDRESSES = args.fresh_addresses
    if args.attack_only:
        summary = asyncio.run(
            attack_only(args.url, args.transport[0], args.clients, args.reconnect, args.duration)
        )
        print(json.dumps(summary), flush=True)
        return 0
    reports = asyncio.run(_main(args))
    if args.json:
        Path(args.json).write_text(json.dumps(reports, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
