"""Bounds on a free-form value parsed from YAML (a plugin's `config`): how deep it nests and how far its
aliases expand. PyYAML shares aliased objects, so a 1 KB alias bomb parses small and only explodes
when something walks it; `unbounded` measures it without recursion, each shared object once."""

from __future__ import annotations

from typing import Any

MAX_DEPTH = 64  # a real policy nests 6 or 7 levels; plugin configs a few more
MAX_ALIAS_VALUES = 10_000  # values that aliases may add by expansion (shared defaults need a few dozen)


def unbounded(value: Any) -> str | None:
    """Why a parsed free-form value is refused (too deep, or aliases that expand too far); None if fine.

    Post-order over the containers, each shared (aliased) one measured once: `size` counts values
    as if every alias were written out, `unique` as parsed; their difference is what aliases add."""
    if not isinstance(value, dict | list):
        return None
    done: dict[int, tuple[int, int]] = {}  # id(container) -> (values once expanded, levels below it)
    open_: set[int] = set()
    unique = 0
    stack: list[tuple[Any, bool]] = [(value, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        children = list(node.values()) if isinstance(node, dict) else node
        if children_done:
            size = height = 0
            for child in children:
                child_size, child_height = done.get(id(child), (1, 0))
                size += child_size
                height = max(height, child_height)
                unique += 0 if id(child) in done else 1
            done[key] = (size + 1, height + 1)
            open_.discard(key)
            unique += 1
            if height + 1 > MAX_DEPTH:
                return f"nesting deeper than {MAX_DEPTH} levels (a policy needs far fewer)"
            if size + 1 - unique > MAX_ALIAS_VALUES:
                return (f"aliases expand to more than {MAX_ALIAS_VALUES} values (an alias bomb?); write the "
                        "values out or use fewer aliases")
            continue
        if key in done:
            continue  # an alias of a container already measured
        if key in open_:
            return "an alias refers to a value that contains it"
        if len(open_) >= MAX_DEPTH:
            return f"nesting deeper than {MAX_DEPTH} levels (a policy needs far fewer)"
        open_.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in children
                     if isinstance(child, dict | list) and id(child) not in done)
    return None
