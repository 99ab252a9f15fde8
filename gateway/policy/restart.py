"""Which policy changes a reload applies live, at the next client connection, or only at a restart.

Each feature says how a reload treats its keys (`ConfigPart.reload`); `APPLIES` gathers them and
classifies every key by its longest prefix; `changes(old, new)` lists what differs between
two validated configs; `check-config --against URL` asks a running gateway (`POST /admin/policy/check`)
and prints the list. `python -m gateway.policy.restart` prints the table docs/policy-reload.md carries.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from typing import Any

from gateway.config.part import LIVE, NEXT_CONNECTION, RESTART, Reload
from gateway.config.schema import GatewayConfig
from gateway.features import PARTS

__all__ = ["APPLIES", "LIVE", "NEXT_CONNECTION", "RESTART", "changes", "classify", "docs_table", "report"]

# key prefix -> how a reload applies it, from every part of the policy file (the longest prefix wins).
APPLIES: dict[str, Reload] = {prefix: how for part in PARTS for prefix, how in part.reload.items()}


def classify(key: str) -> tuple[str, str]:
    """(mode, why) for a dotted key such as `server.port` or `pools[gpu].endpoints`."""
    plain = key.split("[", 1)[0] if "[" in key.split(".", 1)[0] else key
    best = ""
    for prefix in APPLIES:
        if (plain == prefix or plain.startswith(prefix + ".")) and len(prefix) > len(best):
            best = prefix
    how = APPLIES[best]
    return how.applies, how.why


def changes(old: GatewayConfig, new: GatewayConfig) -> list[str]:
    """Keys that differ, as dotted paths; pools, routes and issuers by name (`pools[gpu].endpoints`)."""
    out: list[str] = []
    for f in dataclasses.fields(GatewayConfig):
        if f.name not in ("source", "sections"):
            _diff(f.name, getattr(old, f.name), getattr(new, f.name), out)
    for part in PARTS:
        if part.top_keys:
            _keyed_diff("", part.top_keys, part.keyed, old.sections.get(part.name), new.sections.get(part.name), out)
    return out


def _keyed_diff(path: str, keys: tuple[str, ...], keyed: Callable[[object, tuple[str, ...]], list[tuple[str, object]]],
                a: object, b: object, out: list[str]) -> None:
    """One part's section, key by key (`path` is where the section hangs: "" at the top level)."""
    for (key, x), (_, y) in zip(keyed(a, keys), keyed(b, keys), strict=True):
        _diff(f"{path}.{key}" if path else key, x, y, out)


def _diff(path: str, a: Any, b: Any, out: list[str]) -> None:
    if a == b:
        return
    if dataclasses.is_dataclass(a) and type(a) is type(b):
        for f in dataclasses.fields(a):  # names only, never values: secrets are among them
            if f.name == "sections":  # a route's or pool's feature sections, under their own keys
                _part_sections(path, getattr(a, f.name), getattr(b, f.name), out)
            else:
                _diff(f"{path}.{f.name}", getattr(a, f.name), getattr(b, f.name), out)
        return
    if _named(a) and _named(b):
        left, right = {x.name: x for x in a}, {x.name: x for x in b}
        for name in dict.fromkeys([*left, *right]):
            if name not in left or name not in right:
                out.append(f"{path}[{name}]")
            else:
                _diff(f"{path}[{name}]", left[name], right[name], out)
        if [x.name for x in a if x.name in right] != [x.name for x in b if x.name in left]:
            out.append(f"{path} (order)")
        return
    out.append(path)


def _part_sections(path: str, a: dict[str, object], b: dict[str, object], out: list[str]) -> None:
    for part in PARTS:
        keys = part.route_keys if path.startswith("routes") else part.pool_keys
        if keys:
            _keyed_diff(path, keys, part.keyed, a.get(part.name), b.get(part.name), out)


def _named(value: Any) -> bool:
    return isinstance(value, tuple) and all(dataclasses.is_dataclass(x) and hasattr(x, "name") for x in value)


def report(old: GatewayConfig, new: GatewayConfig) -> list[dict[str, str]]:
    return [{"key": key, "applies": classify(key)[0], "why": classify(key)[1]} for key in changes(old, new)]


def docs_table() -> str:
    rows = ["| keys | a reload applies them | notes |", "| --- | --- | --- |"]
    for prefix, how in APPLIES.items():
        rows.append(f"| `{prefix or '(everything else)'}` | {how.applies} | {how.why} |")
    return "\n".join(rows)


if __name__ == "__main__":
    sys.stdout.write(docs_table() + "\n")
