"""The PNG that goes with a ``taina bench`` report.

Several concurrency levels: each figure against the number of concurrent calls. One level:
how the run went over time (server CPU, memory and calls in progress) and the latency
distribution.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any


def draw_chart(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = report["levels"]
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    title = (
        f"TAINA load bench — {report['engines']} engines, server cores "
        f"{report['server_cpus']}, {report['turns_per_call']} turns per call"
    )
    fig.suptitle(title)
    if len(levels) > 1:
        _sweep(axes, levels, report)
    else:
        _single(axes, levels[0])
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _sweep(axes: Any, levels: list[dict[str, Any]], report: dict[str, Any]) -> None:
    n = [lv["calls"] for lv in levels]

    def series(get: Any) -> list[float | None]:
        out = []
        for lv in levels:
            try:
                out.append(get(lv))
            except (KeyError, TypeError):
                out.append(None)
        return out

    ax = axes[0][0]
    for q in ("p50", "p95", "p99"):
        ax.plot(n, series(lambda lv, q=q: lv["client"]["turn_latency_ms"][q]), "o-", label=q)
    ax.axhline(report["p95_limit_ms"], color="red", linestyle=":", label="p95 limit")
    ax.set(title="Turn latency as the caller hears it", xlabel="concurrent calls", ylabel="ms")
    ax.legend()

    ax = axes[0][1]
    ax.plot(n, series(lambda lv: lv["server"]["cpu_percent_steady"]), "o-", label="server")
    ax.plot(n, series(lambda lv: lv["bench_process_cpu_percent"]), "s--", label="callers")
    ax.set(title="CPU (% of one core)", xlabel="concurrent calls", ylabel="%")
    ax.legend()

    ax = axes[1][0]
    ax.plot(n, series(lambda lv: lv["server"]["rss_peak_mb"]), "o-", label="peak RSS")
    ax.plot(n, series(lambda lv: lv["server"]["rss_baseline_mb"]), "s--", label="before calls")
    ax.set(title="Server memory", xlabel="concurrent calls", ylabel="MB")
    ax.legend()

    ax = axes[1][1]
    ax.plot(n, series(lambda lv: lv["client"]["outbound"]["late_frames"]), "o-", label="late")
    ax.plot(n, series(lambda lv: lv["client"]["failed_calls"]), "s--", label="failed calls")
    ax2 = ax.twinx()
    ax2.plot(
        n,
        series(lambda lv: lv["server"]["stages_ms"]["overhead_ms"]["p50"]),
        "^:",
        color="gray",
        label="overhead p50 (ms)",
    )
    ax2.set_ylabel("pipeline overhead p50, ms")
    ax.set(title="Late 20 ms bot frames, failed calls", xlabel="concurrent calls", ylabel="count")
    ax.set_ylim(bottom=0, top=max(1, *(v or 0 for v in ax.get_ylim())))
    ax.legend(loc="upper left")
    ax2.legend(loc="upper right")


def _single(axes: Any, level: dict[str, Any]) -> None:
    samples = level.get("samples") or []
    t = [s["t"] for s in samples]
    ax = axes[0][0]
    if len(samples) > 1:
        cpu = [0.0] + [
            (b["cpu_s"] - a["cpu_s"]) / max(b["t"] - a["t"], 1e-6) * 100
            for a, b in itertools.pairwise(samples)
        ]
        ax.plot(t, cpu, label="server CPU %")
        ax.plot(t, [s["active_calls"] for s in samples], label="calls in progress")
        ax.legend()
    ax.set(title="Server CPU (% of one core) and calls over time", xlabel="s")

    ax = axes[0][1]
    ax.plot(t, [s["rss_bytes"] / 2**20 for s in samples])
    ax.set(title="Server RSS", xlabel="s", ylabel="MB")

    ax = axes[1][0]
    lat = level["client"]["turn_latency_ms"]
    labels = ["p50", "p95", "p99", "max"]
    ax.bar(labels, [lat[k] or 0 for k in labels])
    ax.set(title=f"Turn latency, {lat['n']} turns", ylabel="ms")

    ax = axes[1][1]
    stages = (level.get("server") or {}).get("stages_ms") or {}
    names = [k for k in stages if k != "first_byte_ms"]
    ax.barh(names, [stages[k]["p50"] or 0 for k in names])
    ax.set(title="Server stages, median", xlabel="ms")
