"""The HTML report: one self-contained file (inline CSS and SVG, no scripts, nothing fetched)."""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

from gateway.client.loadtest.report import totals_line
from gateway.client.loadtest.svg import Series, bar_chart, line_chart

REPORT_FILE = "report.html"

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#111;max-width:1340px}
h1{font-size:20px;margin:0 0 4px} h2{font-size:16px;margin:24px 0 8px}
.meta{color:#555} .warn{color:#b45309;font-weight:600}
table{border-collapse:collapse;margin:8px 0} td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
td:first-child,th:first-child{text-align:left} th{background:#f4f4f5}
.charts{display:flex;flex-wrap:wrap;gap:12px}
svg.chart{border:1px solid #e4e4e7;background:#fff}
svg .title{font-weight:600;font-size:13px} svg .tick,svg .legend,svg .axis,svg .mark-label{font-size:11px;fill:#444}
svg .grid{stroke:#eee} svg .series{stroke-width:1.8} svg .mark{stroke:#b45309;stroke-dasharray:4 3}
svg .mark-label{fill:#b45309}
"""

_ROWS = [("end-to-end latency (ms)", "latency_s", 1000), ("time to first token (ms)", "ttft_s", 1000),
         ("inter-token latency (ms)", "itl_s", 1000), ("output tokens/s per request", "tokens_per_s_per_request", 1),
         ("gateway overhead (ms, header)", "overhead_ms", 1)]


def ms(value: float | None) -> float | None:
    return None if value is None else value * 1000


def _num(value: float | None, scale: float = 1) -> str:
    return "-" if value is None else f"{value * scale:.1f}"


def _distribution_table(summary: dict[str, Any]) -> str:
    head = "".join(f"<th>{h}</th>" for h in ("metric", "p50", "p90", "p99", "mean", "max", "n"))
    rows = []
    for label, key, scale in _ROWS:
        d = summary[key]
        cells = "".join(f"<td>{_num(d[k], scale)}</td>" for k in ("p50", "p90", "p99", "mean", "max"))
        rows.append(f"<tr><td>{escape(label)}</td>{cells}<td>{d['count']}</td></tr>")
    return f'<table id="summary"><tr>{head}</tr>{"".join(rows)}</table>'


def _errors_table(errors: dict[str, int]) -> str:
    if not errors:
        return "<p>No errors.</p>"
    rows = "".join(f"<tr><td>{escape(k)}</td><td>{v}</td></tr>" for k, v in errors.items())
    return f'<table id="errors"><tr><th>status code</th><th>count</th></tr>{rows}</table>'


def run_charts(data: dict[str, Any]) -> str:
    ts = data["timeseries"]
    t = ts["t"]
    charts = [
        line_chart("Latency over time", [Series("e2e p50", t, [ms(v) for v in ts["latency_p50"]]),
                                         Series("e2e p90", t, [ms(v) for v in ts["latency_p90"]]),
                                         Series("TTFT p50", t, [ms(v) for v in ts["ttft_p50"]])],
                   "seconds into the run", "ms", css="latency-time"),
        line_chart("Throughput over time", [Series("requests/s", t, ts["requests_per_s"]),
                                            Series("errors/s", t, ts["errors_per_s"]),
                                            Series("429s/s", t, ts["rate_limited_per_s"])],
                   "seconds into the run", "per second", css="throughput-time"),
        line_chart("Output tokens/s over time", [Series("tokens/s", t, ts["tokens_per_s"])],
                   "seconds into the run", "tokens/s", css="tokens-time"),
        line_chart("Requests in flight", [Series("in flight", ts["t_mid"], ts["in_flight"])],
                   "seconds into the run", "requests", css="in-flight"),
    ]
    hist = data["latency_histogram"]
    if hist["counts"]:
        charts.append(bar_chart("End-to-end latency histogram", [e * 1000 for e in hist["edges_s"]],
                                hist["counts"], "ms", "requests", css="latency-histogram"))
    return f'<div class="charts">{"".join(charts)}</div>'


def run_section(data: dict[str, Any]) -> str:
    s = data["summary"]
    warn = '<p class="warn">Interrupted: partial report.</p>' if data["interrupted"] else ""
    return (f"{warn}<p id=\"totals\">{escape(totals_line(data))}</p>{_distribution_table(s)}"
            f"<h2>Errors by status and code</h2>{_errors_table(s['errors_by_status_code'])}"
            f"<h2>Charts</h2>{run_charts(data)}")


def sweep_section(sweep: dict[str, Any]) -> str:
    points = sweep["points"]
    loads = [p["load"] for p in points]
    knee = sweep["knee"]
    marks = [(knee["knee"], f"knee {knee['knee']:g}")] if knee["knee"] is not None and len(points) > 1 else []
    p50 = [ms(p["latency_p50"]) for p in points]
    p99 = [ms(p["latency_p99"]) for p in points]
    ttft = [ms(p["ttft_p50"]) for p in points]
    axis = sweep["axis"]
    charts = [line_chart("Latency by load", [Series("e2e p50", loads, p50), Series("e2e p99", loads, p99),
                                             Series("TTFT p50", loads, ttft)], axis, "ms", marks, css="sweep-latency"),
              line_chart("Throughput by load", [Series("ok requests/s", loads, [p["throughput"] for p in points]),
                                                Series("error %", loads, [p["error_rate"] * 100 for p in points]),
                                                Series("429 %", loads, [p["rate_limited_rate"] * 100 for p in points])],
                         axis, "per second / %", marks, css="sweep-throughput"),
              line_chart("Output tokens/s by load", [Series("tokens/s", loads, [p["tokens_per_s"] for p in points])],
                         axis, "tokens/s", marks, css="sweep-tokens")]
    head = "".join(f"<th>{h}</th>" for h in (axis, "ok req/s", "tokens/s", "p50 ms", "p99 ms", "TTFT p50 ms",
                                                "errors %", "429s %"))
    rows = "".join(
        f"<tr><td>{p['load']:g}</td><td>{p['throughput']:.1f}</td><td>{p['tokens_per_s']:.1f}</td>"
        f"<td>{_num(p['latency_p50'], 1000)}</td><td>{_num(p['latency_p99'], 1000)}</td>"
        f"<td>{_num(p['ttft_p50'], 1000)}</td><td>{p['error_rate'] * 100:.1f}</td>"
        f"<td>{p['rate_limited_rate'] * 100:.1f}</td></tr>" for p in points)
    verdict = (f"Knee at {axis} = {knee['knee']:g}" if knee["knee"] is not None else "No knee") + \
        f" ({escape(knee['reason'])})"
    if knee["errors_start"] is not None:
        verdict += f"; errors start at {knee['errors_start']:g}"
    if knee["rate_limited_start"] is not None:
        verdict += f"; 429s start at {knee['rate_limited_start']:g}"
    return (f'<p id="knee">{verdict}.</p><table id="sweep"><tr>{head}</tr>{rows}</table>'
            f'<div class="charts">{"".join(charts)}</div>')


def write_html(directory: Path, title: str, body: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / REPORT_FILE
    path.write_text(f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
                    f'<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; style-src \'unsafe-inline\'">'
                    f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>"
                    f"<h1>{escape(title)}</h1>{body}</body></html>")
    return path


def run_report(data: dict[str, Any], directory: Path) -> Path:
    opts = data["options"]
    meta = (f'<p class="meta">{escape(data["target"])} · {data["mode"]} loop · finished {data["finished_at"]} · '
            f'{escape(", ".join(f"{k}={v}" for k, v in opts.items() if v not in (None, "")))}</p>')
    return write_html(directory, "edgegw loadtest", meta + run_section(data))


def sweep_report(sweep: dict[str, Any], runs: list[dict[str, Any]], directory: Path) -> Path:
    parts = [f'<p class="meta">{escape(sweep["target"])} · sweep of {escape(sweep["axis"])}</p>', sweep_section(sweep)]
    for point, data in zip(sweep["points"], runs, strict=False):
        parts.append(f'<details><summary>{escape(sweep["axis"])} = {point["load"]:g}</summary>'
                     f"{run_section(data)}</details>")
    return write_html(directory, "edgegw loadtest sweep", "".join(parts))
