"""Server-side HTML of the status page: the shell, the login form, and the panel the page refreshes.

The panel is rendered here only (the page's script swaps in a fresh copy), so there is one renderer.
Every value is escaped; no inline styles or scripts, so a strict Content-Security-Policy holds.
"""

from __future__ import annotations

import time
from html import escape
from typing import Any

from gateway.status.policy import policy_section, rollouts_section

REFRESH_S = 2


def _shell(title: str, body: str, script: bool = False, csrf: str = "") -> str:
    js = '<script src="/admin/static/status.js" defer></script>' if script else ""
    meta = f'<meta name="csrf-token" content="{escape(csrf)}">' if csrf else ""
    return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">{meta}"
            f"<title>{escape(title)}</title><link rel=\"stylesheet\" href=\"/admin/static/status.css\">{js}"
            f"</head><body>{body}</body></html>")


def login_page(message: str | None = None) -> str:
    """The form an operator pastes the admin JWT into, once: it becomes an HttpOnly cookie."""
    note = f'<p class="alert" role="alert">{escape(message)}</p>' if message else ""
    return _shell("edgegw admin: sign in", f"""
<main class="login"><h1>edgegw <span>admin</span></h1>{note}
<form method="post" action="/admin/login" autocomplete="off">
<label for="token">Admin token (a JWT with the admin scope)</label>
<textarea id="token" name="token" rows="5" required spellcheck="false"
 placeholder="edgegw token --issuer demo --sub ops --scope admin"></textarea>
<button type="submit">Sign in</button></form>
<p class="hint">The token is kept in an HttpOnly cookie for this site until it expires.</p></main>""")


def status_page(snap: dict[str, Any], operator: str, csrf: str = "") -> str:
    """The signed-in page; `csrf` (the CSRF cookie's value) goes where its script and forms find it."""
    header = f"""<header><h1>edgegw <span>status</span></h1>
<p class="meta">signed in as <b>{escape(operator)}</b> · refreshes every {REFRESH_S} s ·
updated <time id="updated">{_clock(snap["time"])}</time>
<span id="stale" hidden>· connection lost, retrying</span></p>
<form method="post" action="/admin/logout"><input type="hidden" name="csrf_token" value="{escape(csrf)}">
<button type="submit" class="link">Sign out</button></form>
</header>"""
    main = f'<main id="panel" data-refresh-s="{REFRESH_S}">{panel(snap)}</main>'
    return _shell("edgegw status", header + main, script=True, csrf=csrf)


def panel(snap: dict[str, Any]) -> str:
    return "".join((_overview(snap), _pools(snap["pools"]), _plugins(snap["plugins"]),
                    policy_section(snap.get("policy")),
                    rollouts_section(snap.get("rollouts")), _errors(snap["errors"])))


def _clock(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts))


def _num(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "–"
    if abs(value - round(value)) < 1e-9:
        return f"{int(round(value)):,}"
    return f"{value:,.{digits}f}"


def sparkline(values: list[float], kind: str, label: str) -> str:
    """A small inline SVG chart of `values` (oldest first), scaled to its own maximum."""
    w, h, pad = 240, 44, 2
    top = max(values, default=0.0) or 1.0
    step = (w - 2 * pad) / max(1, len(values) - 1)
    pts = " ".join(f"{pad + i * step:.1f},{h - pad - (v / top) * (h - 2 * pad):.1f}"
                   for i, v in enumerate(values))
    area = f"{pad},{h - pad} {pts} {pad + (len(values) - 1) * step:.1f},{h - pad}"
    return (f'<svg class="spark {kind}" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" '
            f'aria-label="{escape(label)}"><polygon points="{area}"/><polyline points="{pts}"/></svg>')


def _card(title: str, value: str, sub: str = "", chart: str = "", alert: bool = False) -> str:
    cls = "card alert" if alert else "card"
    return (f'<section class="{cls}"><h3>{escape(title)}</h3><p class="big">{value}</p>'
            f'<p class="sub">{sub}</p>{chart}</section>')


def _overview(snap: dict[str, Any]) -> str:
    t, rl, cache, series = snap["totals"], snap["ratelimit"], snap["cache"], snap["series"]
    minutes = len(series["requests_per_s"]) * series["bucket_s"] // 60
    window = f"last {minutes} min, peak {{}}/s:"
    req_peak = _num(max(series["requests_per_s"], default=0))
    err_peak = _num(max(series["server_errors_per_s"], default=0))
    ratio = cache["hit_ratio"]
    cards = [
        _card("Ready", "yes" if snap["ready"] else "NO", "every pool has a usable endpoint"
              if snap["ready"] else "a pool has no usable endpoint", alert=not snap["ready"]),
        _card("Requests", f"{_num(t['requests_per_s'])}/s",
              f"{_num(t['requests'])} total · " + window.format(req_peak),
              sparkline(series["requests_per_s"], "req", "request rate")),
        _card("Server errors", f"{_num(t['server_errors_per_s'])}/s",
              f"{_num(t['server_errors'])} total 5xx · " + window.format(err_peak),
              sparkline(series["server_errors_per_s"], "err", "5xx rate"),
              alert=t["server_errors_per_s"] > 0),
        _card("Rate-limit rejections", f"{_num(rl['rejections_per_s'])}/s",
              f"{_num(rl['rejections'])} total"
              + (" · <b>Redis down: fallbacks apply</b>" if rl["redis_degraded"] else ""),
              alert=rl["redis_degraded"]),
        _card("Cache hit ratio", "–" if ratio is None else f"{ratio * 100:.1f}%",
              f"{_num(cache['hits'])} hits · {_num(cache['misses'])} misses · "
              f"{_num(cache['bypass'])} bypass"),
    ]
    return f'<section class="cards" aria-label="overview">{"".join(cards)}</section>'


def _pools(pools: list[dict[str, Any]]) -> str:
    parts = ["<h2>Pools</h2>"]
    for p in pools:
        dns = p["dns"]
        source = (f'DNS <code>{escape(dns["name"])}:{dns["port"]}</code> every {_num(dns["interval_s"])} s'
                  if dns else "static endpoints")
        inference = p["balancer"] == "inference"
        rows = "".join(
            f'<tr><td><code>{escape(e["url"])}</code></td><td><span class="state {escape(e["state"])}">'
            f'{escape(e["state"])}</span></td><td class="n">{e["in_flight"]}</td>'
            f'<td class="n">{_num(e["latency_ms"])} ms</td><td>{escape(e["group"])}</td>'
            f'<td class="n">{e["weight"]}</td>{_signals(e.get("inference")) if inference else ""}</tr>'
            for e in p["endpoints"]) or '<tr><td colspan="6" class="empty">no endpoints</td></tr>'
        models = escape(", ".join(p["models"]) or "any")
        extra = ('<th class="n">queue</th><th class="n">running</th><th class="n">KV use</th>'
                 '<th class="n">prefix hits</th><th class="n">signal age</th>') if inference else ""
        parts.append(f'<section class="pool"><h3>{escape(p["name"])} <small>{escape(p["balancer"])} · '
                     f'{source} · models: {models}</small></h3>'
                     '<table><thead><tr><th>endpoint</th><th>health</th><th class="n">in flight</th>'
                     '<th class="n">latency (EWMA)</th><th>group</th><th class="n">weight</th>'
                     f"{extra}</tr></thead><tbody>{rows}</tbody></table></section>")
    return "".join(parts)


def _signals(info: dict[str, Any] | None) -> str:
    """`balancer: inference`: the server's own queue, KV use and prefix-cache hit share (or, when it does
    not export them, the share the gateway's prefix index predicted), and how old the reading is."""
    info = info or {}

    def pct(v: Any) -> str:
        return "–" if v is None else f"{v * 100:.0f}%"

    hits = info.get("prefix_hit_share")
    hit_cell = pct(hits) if hits is not None else (
        f'{pct(info.get("predicted_hit_share"))} (predicted)' if info.get("predicted_hit_share") is not None else "–")
    age = info.get("signal_age_s")
    return (f'<td class="n">{_num(info.get("queue")) if info.get("queue") is not None else "–"}</td>'
            f'<td class="n">{_num(info.get("running")) if info.get("running") is not None else "–"}</td>'
            f'<td class="n">{pct(info.get("kv_use"))}</td><td class="n">{hit_cell}</td>'
            f'<td class="n">{"unknown" if age is None else f"{age * 1000:.0f} ms"}</td>')


def _plugins(plugins: list[dict[str, Any]]) -> str:
    if not plugins:
        return '<h2>Plugins</h2><p class="empty">no wasm plugins loaded</p>'
    rows = []
    for p in plugins:
        c = p.get("canary")
        canary = (f'v{escape(str(c["version"]))} at {_num((c.get("weight") or 0) * 100)}%' if c else "none")
        fail = p.get("failures_per_s") or 0
        rows.append(f'<tr><td><b>{escape(p["name"])}</b></td><td>v{escape(str(p.get("version") or "–"))}</td>'
                    f'<td>{canary}</td><td class="n">{_num(p.get("calls_per_s"))}/s</td>'
                    f'<td class="n{" bad" if fail else ""}">{_num(fail)}/s</td>'
                    f'<td class="n">{_num(p.get("calls"))} / {_num(p.get("failures"))}</td>'
                    f'<td>{escape(str(p.get("instance") or p.get("error") or ""))}</td></tr>')
    return ('<h2>Plugins</h2><table><thead><tr><th>plugin</th><th>stable</th><th>canary</th>'
            '<th class="n">calls</th><th class="n">failures</th><th class="n">total calls / failures</th>'
            f'<th>instance</th></tr></thead><tbody>{"".join(rows)}</tbody></table>')


def _errors(errors: list[dict[str, Any]]) -> str:
    if not errors:
        return '<h2>Recent errors</h2><p class="empty">none since start-up</p>'
    rows = "".join(
        f'<tr><td>{_clock(e["ts"])}</td><td class="n bad">{e["status"]}</td>'
        f'<td>{escape(str(e["code"] or ""))}</td><td>{escape(e["route"])}</td><td>{escape(e["pool"])}</td>'
        f'<td><code>{escape(str(e["endpoint"] or "–"))}</code></td>'
        f'<td>{escape(e["path"])}</td><td><code>{escape(e["request_id"])}</code></td></tr>' for e in errors)
    return ('<h2>Recent errors</h2><table class="errors"><thead><tr><th>time</th><th class="n">status</th>'
            '<th>code</th><th>route</th><th>pool</th><th>endpoint</th><th>path</th><th>request id</th></tr>'
            f"</thead><tbody>{rows}</tbody></table>")
