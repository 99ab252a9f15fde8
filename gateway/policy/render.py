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
    rows = "".join(f'<tr><td><code>{escape(v["version"])}</code></td><td>{_when(v["loaded_at"])}</td>'
                   f'<td>{escape(v["origin"])}</td><td class="n">{v["routes"]}</td><td class="n">{v["pools"]}</td></tr>'
                   for v in policy["history"])
    parts.append('<table><thead><tr><th>version</th><th>loaded</th><th>origin</th><th class="n">routes</th>'
                 f'<th class="n">pools</th></tr></thead><tbody>{rows}</tbody></table></section>')
    return "".join(parts)
