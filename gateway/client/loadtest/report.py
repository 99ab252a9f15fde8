"""A run's result as data (the JSON file) and as the summary table printed at the end."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

from gateway.client.loadtest.metrics import SAMPLE_COLUMNS, histogram, summarise, timeseries
from gateway.client.loadtest.runner import Run

RESULT_FILE = "result.json"


def result(run: Run, target: str, options: dict[str, Any]) -> dict[str, Any]:
    """Everything a run measured: options, summary, per-second series, latency histogram, samples."""
    ok_latencies = [s.latency for s in run.samples if s.ok]
    edges, counts = histogram(ok_latencies)
    return {
        "tool": "edgegw loadtest",
        "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "target": target,
        "mode": run.plan.mode,
        "options": options,
        "interrupted": run.interrupted,
        "issued": run.issued,
        "cancelled": run.cancelled,
        "dropped": run.dropped,
        "summary": summarise(run.samples, run.wall_s),
        "timeseries": timeseries(run.samples, run.wall_s),
        "latency_histogram": {"edges_s": edges, "counts": counts},
        "sample_columns": SAMPLE_COLUMNS,
        "samples": [s.to_row() for s in sorted(run.samples, key=lambda s: s.start)],
    }


def write_json(data: dict[str, Any], directory: Path, name: str = RESULT_FILE) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2))
    return path


def summary_table(data: dict[str, Any]) -> Table:
    """Latency-type figures as rows with p50/p90/p99/mean/max columns."""
    s = data["summary"]
    table = Table(title=_title(data), title_justify="left")
    for column in ("metric", "p50", "p90", "p99", "mean", "max", "n"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    rows = [("end-to-end latency", s["latency_s"], 1000, "ms"), ("time to first token", s["ttft_s"], 1000, "ms"),
            ("inter-token latency", s["itl_s"], 1000, "ms"),
            ("output tokens/s per request", s["tokens_per_s_per_request"], 1, ""),
            ("gateway overhead (header)", s["overhead_ms"], 1, "ms")]
    for name, dist, scale, unit in rows:
        table.add_row(f"{name}{f' ({unit})' if unit else ''}",
                      *(_num(dist[k], scale) for k in ("p50", "p90", "p99", "mean", "max")), str(dist["count"]))
    return table


def totals_line(data: dict[str, Any]) -> str:
    s = data["summary"]
    parts = [f"{s['requests']} requests in {s['wall_s']:.1f}s ({s['requests_per_s']:.1f}/s)",
             f"ok {s['ok']}", f"errors {s['errors']} ({s['error_rate'] * 100:.1f}%)",
             f"429s {s['rate_limited']} ({s['rate_limited_rate'] * 100:.1f}%)",
             f"output {s['output_tokens']} tokens ({s['output_tokens_per_s']:.1f} tokens/s)"]
    if data["cancelled"]:
        parts.append(f"cancelled in flight {data['cancelled']}")
    if data["dropped"]:
        parts.append(f"dropped (in-flight cap) {data['dropped']}")
    return ", ".join(parts)


def print_summary(data: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    console.print(summary_table(data))
    console.print(totals_line(data), highlight=False)
    errors = data["summary"]["errors_by_status_code"]
    if errors:
        table = Table(title="errors by status and code", title_justify="left")
        table.add_column("status code")
        table.add_column("count", justify="right")
        for key, count in errors.items():
            table.add_row(key, str(count))
        console.print(table)
    if data["interrupted"]:
        console.print("[yellow]interrupted: this is a partial report[/]")


def _title(data: dict[str, Any]) -> str:
    opts = data["options"]
    load = f"rate {opts.get('rate')}/s" if data["mode"] == "open" else f"{opts.get('users')} users"
    return (f"{data['target']}: {load}, ramp-up {opts.get('ramp_up_s')}s, duration {opts.get('duration_s')}s, "
            f"{'streaming' if opts.get('stream') else 'not streaming'}")


def _num(value: float | None, scale: float) -> str:
    if value is None:
        return "-"
    v = value * scale
    return f"{v:.1f}" if abs(v) < 1000 else f"{v:.0f}"
