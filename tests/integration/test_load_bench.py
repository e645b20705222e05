"""``taina bench`` end to end: a real server process, real simulated calls, a real report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.cli import main as taina
from app.load_bench import BenchConfig, run_bench, write_report

pytestmark = pytest.mark.timeout(240)


async def test_concurrent_calls_against_a_spawned_server(tmp_path: Path) -> None:
    cfg = BenchConfig(levels=[3], turns=2, ramp_s=1.0, out=tmp_path, name="t")
    lines: list[str] = []
    report = await run_bench(cfg, progress=lines.append)

    assert [lv["calls"] for lv in report["levels"]] == [3]
    assert len(lines) == 1 and "calls: turn latency" in lines[0]
    level = report["levels"][0]
    client = level["client"]
    assert client["failed_calls"] == 0 and client["turns"] == 6 and client["turns_unanswered"] == 0
    # Instant engines answer after the end-of-turn silence (550 ms) plus very little.
    assert 500 < client["turn_latency_ms"]["p50"] < 1500
    assert client["dial_to_greeting_ms"]["n"] == 3
    assert client["outbound"]["bot_frames_played"] > 100
    assert client["outbound"]["late_frames"] == 0

    server = level["server"]
    assert server["turns_recorded"] == 3 * 3  # a greeting and two replies per call
    assert server["caller_turns_recorded"] == 6 and server["caller_turns_missing"] == 0
    stages = server["stages_ms"]
    assert stages["overhead_ms"]["n"] == 6
    assert stages["endpoint_ms"]["p50"] >= 500
    assert server["rss_peak_mb"] > server["rss_baseline_mb"] > 50
    assert server["cpu_percent_steady"] is None or server["cpu_percent_steady"] > 0
    assert report["capacity_calls_p95_within_limit"] == 3

    json_path, png_path = write_report(report, cfg)
    assert json.loads(json_path.read_text())["levels"][0]["calls"] == 3
    assert png_path is not None and png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_arguments_are_checked(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        taina(["bench", "--calls", "0"])
    with pytest.raises(SystemExit):
        taina(["bench", "--engines", "gpu"])
