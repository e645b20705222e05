"""The batch STT chain: the same turn goes to the next provider; a failed one cools down."""

from __future__ import annotations

import asyncio

import pytest

from pipeline.engines import Transcript
from pipeline.instant_engines import FixedSTT
from pipeline.metrics import PipelineMetrics
from pipeline.providers.failover_stt import AllProvidersFailed, FailoverSTT, failure_reason

AUDIO = bytes(range(256)) * 10
RATE = 16000


class HttpError(Exception):
    def __init__(self, status_code: int) -> None:
        super().__init__(f"HTTP {status_code}")
        self.status_code = status_code


class Broken:
    """Fails every request the way it is told; remembers what it was given."""

    def __init__(self, name: str, exc: Exception) -> None:
        self.name = name
        self.exc = exc
        self.calls: list[bytes] = []

    async def transcribe(self, pcm16: bytes, sample_rate: int) -> Transcript:
        self.calls.append(pcm16)
        raise self.exc


class Stalled:
    """Accepts the request and never answers."""

    def __init__(self, name: str = "stalled") -> None:
        self.name = name
        self.calls = 0
        self.cancelled = 0

    async def transcribe(self, pcm16: bytes, sample_rate: int) -> Transcript:
        self.calls += 1
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        raise AssertionError("unreachable")


class Recording(FixedSTT):
    def __init__(self, name: str, text: str, delay_s: float = 0.0) -> None:
        super().__init__(text=text, delay_s=delay_s)
        self.name = name
        self.audio: list[bytes] = []

    async def transcribe(self, pcm16: bytes, sample_rate: int) -> Transcript:
        self.audio.append(pcm16)
        return await super().transcribe(pcm16, sample_rate)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def sample(metrics: PipelineMetrics, name: str, labels: dict[str, str]) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def failures(metrics: PipelineMetrics, provider: str, reason: str) -> float:
    return sample(
        metrics,
        "taina_provider_failures_total",
        {"kind": "stt", "provider": provider, "reason": reason},
    )


def failovers(metrics: PipelineMetrics, src: str, dst: str) -> float:
    return sample(
        metrics,
        "taina_provider_failovers_total",
        {"kind": "stt", "from_provider": src, "to_provider": dst},
    )


async def test_the_first_healthy_provider_serves() -> None:
    metrics = PipelineMetrics.create()
    cloud = Recording("openai", "Hola.")
    local = Recording("whisper", "hola")
    chain = FailoverSTT([cloud, local], 1.0, 30.0, metrics)
    transcript = await chain.transcribe(AUDIO, RATE)
    assert (transcript.text, transcript.provider) == ("Hola.", "openai")
    assert local.audio == []
    assert "failed" not in transcript.extra
    assert (
        sample(
            metrics,
            "taina_provider_ttfb_seconds_count",
            {"kind": "stt", "provider": "openai"},
        )
        == 1
    )


async def test_an_error_sends_the_same_audio_to_the_next_and_cools_the_provider_down() -> None:
    metrics = PipelineMetrics.create()
    clock = Clock()
    cloud = Broken("openai", ConnectionError("connection reset"))
    local = Recording("whisper", "¿A qué hora abren?")
    chain = FailoverSTT([cloud, local], 1.0, 30.0, metrics, clock=clock)

    transcript = await chain.transcribe(AUDIO, RATE)
    assert (transcript.text, transcript.provider) == ("¿A qué hora abren?", "whisper")
    assert cloud.calls == [AUDIO] and local.audio == [AUDIO]
    assert transcript.extra["failed"][0]["provider"] == "openai"
    assert transcript.extra["failed"][0]["reason"] == "error"
    assert failures(metrics, "openai", "error") == 1
    assert failovers(metrics, "openai", "whisper") == 1

    clock.now += 29.0  # still cooling down: not even tried
    await chain.transcribe(AUDIO, RATE)
    assert len(cloud.calls) == 1 and len(local.audio) == 2
    assert failovers(metrics, "openai", "whisper") == 1  # a skip is not a failover

    clock.now += 2.0  # cool-down over: tried again
    await chain.transcribe(AUDIO, RATE)
    assert len(cloud.calls) == 2


async def test_a_provider_over_its_budget_is_abandoned_for_the_next() -> None:
    metrics = PipelineMetrics.create()
    stalled = Stalled("deepgram-batch")
    local = Recording("whisper", "Sí.")
    chain = FailoverSTT([stalled, local], 0.05, 30.0, metrics)
    transcript = await chain.transcribe(AUDIO, RATE)
    assert transcript.text == "Sí." and transcript.provider == "whisper"
    assert stalled.cancelled == 1  # the abandoned request does not linger
    assert failures(metrics, "deepgram-batch", "timeout") == 1
    assert transcript.elapsed_s >= transcript.extra["provider_elapsed_s"]


async def test_refusals_are_told_apart_from_errors() -> None:
    metrics = PipelineMetrics.create()
    chain = FailoverSTT(
        [
            Broken("a", HttpError(401)),
            Broken("b", HttpError(429)),
            Broken("c", HttpError(500)),
            Recording("whisper", "ok"),
        ],
        1.0,
        30.0,
        metrics,
    )
    transcript = await chain.transcribe(AUDIO, RATE)
    assert [f["reason"] for f in transcript.extra["failed"]] == ["refused", "refused", "error"]
    assert failures(metrics, "a", "refused") == 1
    assert failures(metrics, "c", "error") == 1
    assert failovers(metrics, "a", "whisper") == 1


async def test_the_last_provider_has_no_budget() -> None:
    local = Recording("whisper", "Tardé, pero llegué.", delay_s=0.2)
    chain = FailoverSTT([local], 0.01, 30.0)
    transcript = await chain.transcribe(AUDIO, RATE)
    assert transcript.text == "Tardé, pero llegué."


async def test_the_last_provider_is_never_skipped() -> None:
    clock = Clock()
    floor = Broken("whisper", RuntimeError("model file missing"))
    chain = FailoverSTT([Broken("openai", HttpError(503)), floor], 1.0, 30.0, clock=clock)
    with pytest.raises(AllProvidersFailed, match=r"openai .*whisper"):
        await chain.transcribe(AUDIO, RATE)
    with pytest.raises(AllProvidersFailed):
        await chain.transcribe(AUDIO, RATE)
    assert len(floor.calls) == 2


async def test_per_provider_budgets_override_the_default() -> None:
    slow_cloud = Recording("openai", "Buenas.", delay_s=0.1)
    chain = FailoverSTT([slow_cloud, Recording("whisper", "x")], 0.01, 30.0, budgets={"openai": 5})
    assert (await chain.transcribe(AUDIO, RATE)).provider == "openai"


async def test_cancellation_is_not_a_provider_failure() -> None:
    metrics = PipelineMetrics.create()
    stalled = Stalled("openai")
    local = Recording("whisper", "x")
    chain = FailoverSTT([stalled, local], 10.0, 30.0, metrics)
    task = asyncio.create_task(chain.transcribe(AUDIO, RATE))
    await asyncio.sleep(0.02)
    task.cancel()  # barge-in while the cloud is working
    with pytest.raises(asyncio.CancelledError):
        await task
    assert failures(metrics, "openai", "timeout") == 0
    assert not chain.in_cooldown(stalled)
    assert local.audio == []


def test_failure_reasons() -> None:
    assert failure_reason(TimeoutError()) == "timeout"
    assert failure_reason(HttpError(403)) == "refused"
    assert failure_reason(HttpError(502)) == "error"
    assert failure_reason(ValueError("bad")) == "error"


def test_an_empty_chain_is_a_configuration_error() -> None:
    with pytest.raises(ValueError):
        FailoverSTT([], 1.0, 30.0)
