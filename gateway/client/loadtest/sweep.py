"""A sweep: one run per load level, their figures side by side, and the knee."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from gateway.client.loadtest.knee import Point, find_knee


def point_of(load: float, data: dict[str, Any]) -> dict[str, Any]:
    """The figures of one sweep point, from its run's result."""
    s = data["summary"]
    return {"load": load, "throughput": s["ok_per_s"], "tokens_per_s": s["output_tokens_per_s"],
            "latency_p50": s["latency_s"]["p50"], "latency_p90": s["latency_s"]["p90"],
            "latency_p99": s["latency_s"]["p99"], "ttft_p50": s["ttft_s"]["p50"], "itl_p50": s["itl_s"]["p50"],
            "error_rate": s["error_rate"], "rate_limited_rate": s["rate_limited_rate"],
            "requests": s["requests"], "interrupted": data["interrupted"]}


def sweep_result(axis: str, target: str, runs: list[tuple[float, dict[str, Any]]]) -> dict[str, Any]:
    points = [point_of(load, data) for load, data in runs]
    # An interrupted point is partial: it must not decide where the knee is.
    knee = find_knee([Point(p["load"], p["throughput"], p["latency_p90"], p["error_rate"], p["rate_limited_rate"])
                      for p in points if not p["interrupted"]])
    return {"axis": axis, "target": target, "points": points, "knee": knee.to_dict()}


def print_sweep(sweep: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    table = Table(title=f"sweep of {sweep['axis']} against {sweep['target']}", title_justify="left")
    for column in (sweep["axis"], "ok req/s", "tokens/s", "p50 ms", "p99 ms", "TTFT p50 ms", "errors %", "429s %"):
        table.add_column(column, justify="right")
    knee = sweep["knee"]
    for p in sweep["points"]:
        label = f"{p['load']:g}" + (" (knee)" if p["load"] == knee["knee"] else "") + \
            (" (partial)" if p["interrupted"] else "")
        table.add_row(label, f"{p['throughput']:.1f}", f"{p['tokens_per_s']:.1f}", _ms(p["latency_p50"]),
                      _ms(p["latency_p99"]), _ms(p["ttft_p50"]), f"{p['error_rate'] * 100:.1f}",
                      f"{p['rate_limited_rate'] * 100:.1f}")
    console.print(table)
    line = f"knee: {sweep['axis']} = {knee['knee']:g}" if knee["knee"] is not None else "knee: none"
    line += f" - {knee['reason']}"
    if knee["errors_start"] is not None:
        line += f"; errors start at {knee['errors_start']:g}"
    if knee["rate_limited_start"] is not None:
        line += f"; 429s start at {knee['rate_limited_start']:g}"
    console.print(line, highlight=False)


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f}"
