"""The status page's policy section: the version this worker serves, the last refusal, the history."""

from __future__ import annotations

import time
from html import escape
from typing import Any


def _when(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts))


def policy_section(policy: dict[str, Any] | None) -> str:
    if not policy:
        return ""
    parts = [f'<h2>Policy</h2><section class="policy"><p>version <code>{escape(policy["version"])}</code> '
             f'loaded {_when(policy["loaded_at"])} ({escape(policy["origin"])}) from '
             f'<code>{escape(policy["file"])}</code> · worker {policy["pid"]}</p>']
    refused = policy.get("refused")
    if refused:
        parts.append(f'<p class="alert">refused at {_when(refused["at"])} ({escape(refused["origin"])}): '
                     f'version <code>{escape(refused["version"])}</code>: {escape(refused["message"])}</p>')
    parts.append(_canary(policy.get("canary") or {}))
    rows = "".join(f'<tr><td><code>{escape(v["version"])}</code></td><td>{_when(v["loaded_at"])}</td>'
                   f'<td>{escape(v["origin"])}</td><td class="n">{v["routes"]}</td><td class="n">{v["pools"]}</td></tr>'
                   for v in policy["history"])
    parts.append('<table><thead><tr><th>version</th><th>loaded</th><th>origin</th><th class="n">routes</th>'
                 f'<th class="n">pools</th></tr></thead><tbody>{rows}</tbody></table></section>')
    return "".join(parts)


def rollouts_section(rollouts: list[dict[str, Any]] | None) -> str:
    """Each pool's backend rollout: state, share, canary and stable side by side, the events."""
    if not rollouts:
        return ""
    parts = ["<h2>Backend rollouts</h2>"]
    for r in rollouts:
        c, s = r["canary"], r["stable"]
        alert = ' class="alert"' if r["state"] == "rolled_back" else ""
        parts.append(
            f'<section class="rollout"><h3>{escape(r["pool"])} <small{alert}>{escape(r["state"])} · step '
            f'{r["step"]}/{len(r["steps"])} · canary share {r["share"] * 100:g}% · {r["exposed"]} canary '
            f'requests</small></h3><table><thead><tr><th>group</th><th class="n">requests</th>'
            '<th class="n">errors</th><th class="n">error rate</th><th class="n">p99 ms</th>'
            '<th class="n">p99 first byte ms</th></tr></thead><tbody>'
            + "".join(f'<tr><td>{name}</td><td class="n">{g["requests"]}</td><td class="n">{g["errors"]}</td>'
                      f'<td class="n">{g["error_rate"] * 100:.1f}%</td><td class="n">{g["p99_ms"]}</td>'
                      f'<td class="n">{g["ttft_p99_ms"]}</td></tr>'
                      for name, g in (("canary", c), ("stable", s)))
            + "</tbody></table><ul>"
            + "".join(f'<li>{_when(e["at"])} {escape(e["event"])}: {escape(e["detail"])}</li>'
                      for e in r["events"][:10])
            + "</ul></section>")
    return "".join(parts)


def _canary(canary: dict[str, Any]) -> str:
    """The running policy canary (its arms side by side) and the last ones' outcomes."""
    out = []
    current = canary.get("current")
    if current:
        k, s = current["canary"], current["stable"]
        rows = "".join(
            f'<tr><td>{name}</td><td class="n">{g["requests"]}</td><td class="n">{g["error_rate"] * 100:.1f}%</td>'
            f'<td class="n">{g["rate_429"] * 100:.1f}%</td><td class="n">{g["rate_4xx"] * 100:.1f}%</td>'
            f'<td class="n">{g["p99_overhead_ms"]}</td><td class="n">{g["p99_upstream_ms"]}</td></tr>'
            for name, g in (("canary", k), ("stable", s)))
        out.append(f'<p>canary <code>{escape(current["version"])}</code> {escape(current["state"])}: step '
                   f'{current["step"]}/{len(current["settings"]["steps"])}, {current["share"] * 100:g}% of callers</p>'
                   '<table><thead><tr><th>arm</th><th class="n">requests</th><th class="n">5xx</th>'
                   '<th class="n">429</th><th class="n">4xx</th><th class="n">p99 overhead ms</th>'
                   f'<th class="n">p99 upstream ms</th></tr></thead><tbody>{rows}</tbody></table>')
    for past in canary.get("history", [])[:5]:
        last = past["events"][0] if past["events"] else {"detail": ""}
        out.append(f'<p>canary <code>{escape(past["version"])}</code> {escape(past["state"])}: '
                   f'{escape(last["detail"])}</p>')
    return "".join(out)
