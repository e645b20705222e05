"""Bounded telemetry (issue 13): ``/metrics`` stays small whatever peers send.

Before the fix every unknown Twilio event name became a Prometheus label value: a client
inventing names grew ``/metrics`` to 19.7 MB, rendered on the event loop. Here many sockets
send thousands of distinct invented event names (and other malformed messages) to a real
server on loopback; the page stays under 200 KB, none of the names appears in it, and they
are all counted as ``other``.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from tests.integration.conftest import instant_engines
from tests.integration.test_faults import sample, start_server

pytestmark = pytest.mark.timeout(180)

SOCKETS = 60
PER_SOCKET = 50  # the server closes a stream after max_bad_messages (40 here)
MAX_PAGE = 200 * 1024


def invented_name(i: int) -> str:
    # Quotes, backslashes, newlines, non-ASCII and long names: all must stay out of the page.
    tricky = ['x"y', "a\\b", "l\nm", "ñandú", "é" * 60, "{}", "media ", "MEDIA"]
    return f"{tricky[i % len(tricky)]}-{secrets.token_hex(6)}"


async def one_socket(port: int, names: list[str]) -> int:
    sent = 0
    async with websockets.connect(f"ws://127.0.0.1:{port}/twilio/stream") as ws:
        try:
            for name in names:
                await ws.send(json.dumps({"event": name, "streamSid": "MZ1"}))
                sent += 1
            await asyncio.wait_for(ws.recv(), 5)  # the server closes the socket
        except (ConnectionClosed, TimeoutError):
            pass
    return sent


async def test_invented_twilio_event_names_cannot_grow_metrics(live_server_factory) -> None:
    server = await start_server(live_server_factory, engines=instant_engines(), max_bad_messages=40)
    names = [invented_name(i) for i in range(SOCKETS * PER_SOCKET)]
    sent = 0
    for start in range(0, SOCKETS, 5):  # five sockets at a time (pending-per-IP limit)
        batch = [
            one_socket(server.port, names[i * PER_SOCKET : (i + 1) * PER_SOCKET])
            for i in range(start, min(start + 5, SOCKETS))
        ]
        sent += sum(await asyncio.gather(*batch))
    async with httpx.AsyncClient() as client:
        t0 = time.monotonic()
        r = await client.get(f"{server.url}/metrics")
        took_ms = (time.monotonic() - t0) * 1000
    assert r.status_code == 200
    page = r.text
    assert len(r.content) < MAX_PAGE, len(r.content)
    assert not any(n.split("-")[-1] in page for n in names)
    counted = sample(server, "taina_bad_messages_total", transport="twilio", reason="other")
    # Every name the server read before closing each socket counted as "other".
    assert counted >= SOCKETS * 40
    series = [line for line in page.splitlines() if line.startswith("taina_bad_messages_total{")]
    assert len(series) <= 3, series
    print(
        f"\nFIGURE metrics: {sent} messages with {len(set(names))} invented event names on "
        f"{SOCKETS} sockets -> /metrics {len(r.content) / 1024:.1f} KB "
        f"({len(series)} bad-message series), served in {took_ms:.0f} ms"
    )


async def test_metrics_are_rendered_off_the_event_loop(live_server_factory) -> None:
    """A scrape is built in the metrics thread, not on the loop serving the calls."""
    import threading

    import prometheus_client

    server = await start_server(live_server_factory, engines=instant_engines())
    threads: list[str] = []
    original = prometheus_client.exposition.generate_latest

    def spy(registry):  # type: ignore[no-untyped-def]
        threads.append(threading.current_thread().name)
        return original(registry)

    import pipeline.metrics as pm

    pm.generate_latest = spy  # type: ignore[assignment]
    try:
        async with httpx.AsyncClient() as client:
            r = await client.get(f"{server.url}/metrics")
    finally:
        pm.generate_latest = original  # type: ignore[assignment]
    assert r.status_code == 200 and "taina_calls_total" in r.text
    assert "taina_records_pending 0.0" in r.text and "taina_records_spilling 0.0" in r.text
    assert threads and all(t.startswith("metrics") for t in threads), threads


def test_every_label_is_bounded_even_where_no_set_is_declared() -> None:
    """Labels filled by code (engines, providers, end reasons) keep at most
    MAX_LABEL_VALUES distinct values; declared sets map anything else to ``other``."""
    from prometheus_client import generate_latest

    from pipeline.metrics import MAX_LABEL_VALUES, PipelineMetrics

    m = PipelineMetrics.create()
    for i in range(10 * MAX_LABEL_VALUES):
        m.engine_errors_total.labels(f"engine-{i}").inc()
        m.call_end_total.labels(reason=f"reason-{i}").inc()
        m.turns_refused_total.labels(f"limit-{i}").inc()
        m.provider_failures_total.labels("stt", f"p{i}", "error").inc()
    m.turns_refused_total.labels("rate").inc()
    page = generate_latest(m.registry).decode()
    for name in ("taina_engine_errors_total{", "taina_call_end_total{"):
        assert sum(line.startswith(name) for line in page.splitlines()) == MAX_LABEL_VALUES + 1
    refused = [line for line in page.splitlines() if line.startswith("taina_turns_refused_total{")]
    assert sorted(refused) == [
        'taina_turns_refused_total{reason="other"} 320.0',
        'taina_turns_refused_total{reason="rate"} 1.0',
    ]
    assert len(page) < 50 * 1024
