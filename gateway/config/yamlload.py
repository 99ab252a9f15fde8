"""Parse policy YAML with bounds a hostile text cannot get past.

Two shapes of YAML cost far more than their size: an alias bomb (`&a [x, x, ...]`, `&b [*a, *a, ...]`,
...) that a 1 KB text expands to billions of values once something walks it (encoding a plugin's
`config`), and deep nesting, which PyYAML's composer and constructor follow by recursion. A policy
needs neither, so the composed node graph is walked once, without recursion, before anything is built:
aliases may add at most `MAX_ALIAS_VALUES` values in all, and nothing nests deeper than `MAX_DEPTH`,
aliases expanded. Each refusal is a `ConfigError` naming the line.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.events import CollectionEndEvent, CollectionStartEvent
from yaml.nodes import MappingNode, Node, SequenceNode

from gateway.config.reader import ConfigError

MAX_DEPTH = 64  # a real policy nests 6 or 7 levels; plugin configs a few more
MAX_ALIAS_VALUES = 10_000  # values that aliases may add by expansion (shared defaults need a few dozen)
_FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(text: str, file: str) -> Any:
    """The data in `text` (one YAML document), or ConfigError naming the line and the problem."""
    try:
        # libyaml when present (parsing dominates a large policy's hot reload: docs/benchmarks.md)
        return _load(_FAST_LOADER, text, file)
    except yaml.MarkedYAMLError as exc:
        if "nesting depth" in (exc.problem or ""):  # libyaml's own limit (1,000 levels) said so already
            raise _too_deep(file, exc.problem_mark) from None
    except yaml.YAMLError:
        pass
    # An error is reported by the pure-Python parser, whose messages are the documented ones. Its
    # events are read first, without recursion, so deep nesting is refused before its composer recurses.
    try:
        depth = 0
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    raise _too_deep(file, event.start_mark)
            elif isinstance(event, CollectionEndEvent):
                depth -= 1
        return _load(yaml.SafeLoader, text, file)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "(file)"
        raise ConfigError(file, where, f"invalid YAML: {getattr(exc, 'problem', exc)}") from None


def _load(loader_class: Any, text: str, file: str) -> Any:
    loader = loader_class(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check(node, file)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _check(root: Node, file: str) -> None:
    """Refuse a graph that nests too deep or whose aliases expand too far (post-order, no recursion)."""
    done: dict[int, tuple[int, int]] = {}  # id(node) -> (values once expanded, levels below it)
    open_: set[int] = set()
    unique = 0
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if not isinstance(node, SequenceNode | MappingNode):
            if key not in done:
                done[key] = (1, 0)
                unique += 1
            continue
        if children_done:
            children = _children(node)
            size = 1 + sum(done[id(c)][0] for c in children)
            height = 1 + max((done[id(c)][1] for c in children), default=0)
            done[key] = (size, height)
            open_.discard(key)
            unique += 1
            if height > MAX_DEPTH:
                raise _too_deep(file, node.start_mark)
            if size - unique > MAX_ALIAS_VALUES:
                raise ConfigError(file, f"line {node.start_mark.line + 1}",
                                  f"aliases expand to more than {MAX_ALIAS_VALUES} values (an alias bomb?); "
                                  "write the values out or use fewer aliases")
            continue
        if key in done:
            continue  # an alias of a node already measured
        if key in open_:
            raise ConfigError(file, f"line {node.start_mark.line + 1}", "an alias refers to a node that contains it")
        if len(open_) >= MAX_DEPTH:
            raise _too_deep(file, node.start_mark)
        open_.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in done)


def _children(node: SequenceNode | MappingNode) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    return [part for pair in node.value for part in pair]


def _too_deep(file: str, mark: Any) -> ConfigError:
    return ConfigError(file, f"line {mark.line + 1}" if mark else "(file)",
                       f"nesting deeper than {MAX_DEPTH} levels (a policy needs far fewer)")
