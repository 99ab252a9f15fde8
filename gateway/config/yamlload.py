"""Parse policy YAML, and bound the free-form values in it, so that a hostile text cannot stall or
crash a worker.

Two shapes of YAML cost far more than their size. Deep nesting: PyYAML's pure-Python composer follows
it by recursion (libyaml stops at 1,000 levels with an error of its own); both become a ConfigError
naming the line. An alias bomb (`&a [x, x, ...]`, `&b [*a, *a, ...]`, ...): PyYAML shares the aliased
objects, so parsing stays small, but anything that walks the value (encoding a plugin's `config`)
expands it to billions of items. Only free-form values (`Section.raw`: plugin configs) are walked
that way, so those are measured before anything uses them (`gateway.config.bounds`). Values read by
the typed getters are refused by type long before any expansion could matter, so the policy as a
whole is not walked (a 10,000-route policy would pay for it).
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.events import CollectionEndEvent, CollectionStartEvent

from gateway.config.bounds import MAX_DEPTH
from gateway.config.reader import ConfigError

_FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(text: str, file: str) -> Any:
    """The data in `text` (one YAML document), or ConfigError naming the line and the problem."""
    try:
        # libyaml when present (parsing dominates a large policy's hot reload: docs/benchmarks.md)
        return yaml.load(text, Loader=_FAST_LOADER)  # noqa: S506 - a safe loader
    except yaml.MarkedYAMLError as exc:
        if "nesting depth" in (exc.problem or ""):  # libyaml's own limit (1,000 levels)
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
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "(file)"
        raise ConfigError(file, where, f"invalid YAML: {getattr(exc, 'problem', exc)}") from None


def _too_deep(file: str, mark: Any) -> ConfigError:
    return ConfigError(file, f"line {mark.line + 1}" if mark else "(file)",
                       f"nesting deeper than {MAX_DEPTH} levels (a policy needs far fewer)")
