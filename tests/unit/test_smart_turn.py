"""Smart Turn v3 front end, mode resolution, and the shadow log beside the silence rule."""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import pytest

from pipeline.metrics import PipelineMetrics
from pipeline.model_files import smart_turn_path, smart_turn_ready
from pipeline.smart_turn import (
    MODEL_RATE,
    WINDOW_S,
    ShadowResult,
    SmartTurnRunner,
    log_mel,
    prepare_audio,
    resolve_mode,
)
from pipeline.turn_taking import TurnConfig
from tests.unit.test_session import RATE, feed, make_session, silence, speech, turns, until

MODELS = Path("data/models")


def test_features_have_the_models_shape_and_range() -> None:
    rng = np.random.default_rng(1)
    feats = log_mel(rng.standard_normal(MODEL_RATE * 3).astype(np.float32) * 0.1)
    assert feats.shape == (80, 800) and feats.dtype == np.float32
    assert -1.5 < float(feats.min()) and float(feats.max()) <= 1.6


def test_phone_audio_is_upsampled_and_the_end_kept() -> None:
    one_s_8k = (np.ones(8000, dtype=np.int16) * 1000).tobytes()
    x = prepare_audio(one_s_8k, 8000)
    assert x.size == MODEL_RATE * WINDOW_S
    assert not x[: -MODEL_RATE - 100].any()  # zeros in front
    assert abs(float(x[-MODEL_RATE // 2]) - 1000 / 32768) < 1e-3
    ten_s = np.arange(MODEL_RATE * 10, dtype=np.int16).tobytes()
    assert prepare_audio(ten_s, MODEL_RATE)[0] == MODEL_RATE * 2 / 32768  # last 8 s


def test_modes() -> None:
    assert resolve_mode("auto", True) == "shadow"
    assert resolve_mode("auto", False) == "off"
    assert resolve_mode("shadow", False) == "off"
    assert resolve_mode("OFF", True) == "off"
    assert resolve_mode("on", True) == "on"  # accepted; runs as shadow (not implemented)
    with pytest.raises(ValueError):
        resolve_mode("maybe", True)


@pytest.mark.skipif(not smart_turn_ready(MODELS), reason="run `taina models install`")
def test_real_model_scores_in_a_worker_thread() -> None:
    runner = SmartTurnRunner(smart_turn_path(MODELS))
    rng = np.random.default_rng(2)
    pcm = (rng.standard_normal(8000 * 2) * 3000).astype(np.int16).tobytes()
    fut = runner.submit(pcm, 8000)
    assert fut is not None
    result = fut.result(timeout=30)
    assert result.probability is not None and 0.0 <= result.probability <= 1.0
    assert result.infer_ms > 0


class StubRunner:
    """A runner whose model answers ``prob`` at once (the shadow logic, not the model)."""

    mode = "shadow"
    threshold = 0.5

    def __init__(self, prob: float, pause_ms: int = 120, delay_s: float = 0.0) -> None:
        self.prob = prob
        self.pause_ms = pause_ms
        self.delay_s = delay_s
        self.calls: list[int] = []

    def submit(self, pcm16: bytes, sample_rate: int) -> Future[ShadowResult]:
        self.calls.append(len(pcm16))
        fut: Future[ShadowResult] = Future()
        result = ShadowResult(self.prob, 12.0, 0.5)
        if self.delay_s:
            threading.Timer(self.delay_s, fut.set_result, (result,)).start()
        else:
            fut.set_result(result)
        return fut


async def _talk_with_a_pause(runner: StubRunner, caplog: pytest.LogCaptureFixture):
    session, _, recent, _, _ = make_session()
    object.__setattr__(session._cfg, "turn_model", runner)  # frozen config: test-only
    from pipeline.smart_turn import TurnShadow

    session._shadow = TurnShadow(runner, session._metrics, RATE, session._log)  # type: ignore[arg-type]
    await session.start()
    await until(lambda: len(turns(recent)) == 1)
    with caplog.at_level(logging.INFO, logger="taina.session"):
        # 300 ms mid-sentence pause (under the 400 ms silence rule), then the real end.
        await feed(session, silence(200) + speech(700) + silence(300) + speech(600) + silence(600))
        await until(lambda: len(turns(recent)) >= 3)
        await asyncio.sleep(0.05)
    caller = turns(recent)[1]
    await session.close("caller-hangup")
    return session, caller


def _count(metrics: PipelineMetrics, at: str, model: str, guard: str) -> float:
    value = metrics.registry.get_sample_value(
        "taina_turn_model_decisions_total", {"at": at, "model": model, "guard": guard}
    )
    return value or 0.0


async def test_shadow_logs_beside_the_silence_rule_and_never_decides(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runner = StubRunner(prob=0.9)
    session, caller = await _talk_with_a_pause(runner, caplog)
    # The silence rule still decided: one turn with the whole utterance.
    assert caller.speaker == "caller"
    assert caller.timings["audio_ms"] > 1300
    assert len(runner.calls) == 2  # one prediction per pause of >= pause_ms
    assert runner.calls[1] > runner.calls[0]  # each on the utterance so far
    assert caller.timings["turn_model_mid_pauses"] == 1.0
    assert caller.timings["turn_model_mid_end"] == 1.0  # the model alone would have cut here
    assert caller.timings["turn_model_prob"] == 0.9
    assert caller.timings["turn_model_end"] == 1.0  # "¿A qué hora abren…?" passes the guard
    m = session._metrics
    assert _count(m, "mid_pause", "end", "none") == 1.0
    assert _count(m, "turn_end", "end", "end") == 1.0
    line = next(r for r in caplog.records if "turn model (shadow)" in r.getMessage())
    fields = line.fields  # type: ignore[attr-defined]
    assert fields["turn_model_decision"] == "end" and fields["turn_guard_decision"] == "end"
    assert fields["silence_rule_endpoint_ms"] >= 380
    assert fields["turn_model_infer_ms"] == 12.0


async def test_shadow_hold_is_counted_as_hold(caplog: pytest.LogCaptureFixture) -> None:
    session, caller = await _talk_with_a_pause(StubRunner(prob=0.1), caplog)
    assert caller.timings["turn_model_mid_end"] == 0.0
    assert caller.timings["turn_model_end"] == 0.0
    assert _count(session._metrics, "mid_pause", "hold", "none") == 1.0
    assert _count(session._metrics, "turn_end", "hold", "end") == 1.0


async def test_a_late_prediction_is_logged_when_it_lands_without_delaying_the_reply(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The model answers 1.5 s after each pause: the reply goes out at the silence rule's time.
    session, caller = await _talk_with_a_pause(StubRunner(prob=0.9, delay_s=1.5), caplog)
    assert "turn_model_prob" not in caller.timings
    with caplog.at_level(logging.INFO, logger="taina.session"):
        await until(lambda: any("turn model (shadow)" in r.getMessage() for r in caplog.records))
    line = next(r for r in caplog.records if "turn model (shadow)" in r.getMessage())
    assert line.fields["turn_model_decision"] == "end"  # type: ignore[attr-defined]
    assert line.fields["turn_mid_pauses_model_end"] == 1  # type: ignore[attr-defined]
    assert _count(session._metrics, "turn_end", "end", "end") == 1.0


async def test_without_a_turn_model_nothing_is_added() -> None:
    session, _, recent, _, _ = make_session()
    assert session._shadow is None
    await session.start()
    await until(lambda: len(turns(recent)) == 1)
    await feed(session, silence(200) + speech(800) + silence(600))
    await until(lambda: len(turns(recent)) == 3)
    assert not any(k.startswith("turn_model") for k in turns(recent)[1].timings)
    await session.close("caller-hangup")


def test_turn_config_unchanged() -> None:
    assert TurnConfig().end_of_turn_silence_ms == 550  # shadow mode changes no default
