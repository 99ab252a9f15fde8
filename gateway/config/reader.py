"""A small typed reader over parsed YAML that names the file and key in every error."""

from __future__ import annotations

import builtins
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple, TypeVar, overload
from urllib.parse import urlsplit

from gateway.config.bounds import unbounded

_MISSING = object()
D = TypeVar("D")  # a getter's default: the getter returns its type or the default's


class Read(NamedTuple):
    """One typed read seen while recording: the raw material of the generated configuration reference."""

    path: str  # generic key path: list indices are `[]`, keys of free-form maps are `*`
    kind: str  # the getter: str, url, int, float, bool, str_list, raw, section, sections
    default: object  # None when the default is None; REQUIRED when the key has no default
    choices: tuple[str, ...] | None
    min: float | None
    max: float | None
    required: bool
    present: bool  # whether the file set the key (lets a test prove an example sets every key)
    module: str  # the module of the code that called the getter (which parser owns the key)


REQUIRED: object = _MISSING  # the `default` of a required key in a `Read`
_INDEX = re.compile(r"\[\d+\]")


class _Recorder:
    def __init__(self, maps: tuple[str, ...]) -> None:
        self.maps = maps
        self.reads: list[Read] = []

    def generic(self, path: str) -> str:
        path = _INDEX.sub("[]", path)
        for prefix in self.maps:
            # A free-form map's keys are data (tier names, upstream names), not schema: fold them.
            if path.startswith(prefix + "."):
                rest = path[len(prefix) + 1:]
                tail = rest.partition(".")[2]
                path = f"{prefix}.*" + (f".{tail}" if tail else "")
        return path


# Set only inside `recording()`; every getter tests it once, so capture costs nothing when off.
_recorder: _Recorder | None = None


@contextmanager
def recording(maps: tuple[str, ...] = ()) -> Iterator[list[Read]]:
    """Record every typed read of the `Section`s parsed inside the block (not thread-safe: one at a time).

    `maps` names free-form mappings by generic path (e.g. `routes[].rate_limits[].tiers`); their
    keys are recorded as `*`.
    """
    global _recorder
    previous, _recorder = _recorder, _Recorder(maps)
    try:
        yield _recorder.reads
    finally:
        _recorder = previous


class ConfigError(Exception):
    """Invalid configuration; the message names the file, the key path and the problem."""

    def __init__(self, file: str, key: str, problem: str) -> None:
        super().__init__(f"{file}: {key}: {problem}")
        self.file = file
        self.key = key
        self.problem = problem


class Section:
    """One mapping in the config file. Reads typed values and rejects keys nobody read."""

    def __init__(self, data: Any, file: str, path: str) -> None:
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(file, path or "(top level)", f"expected a mapping, got {_kind(data)}")
        self.data = data
        self.file = file
        self.path = path
        self._read: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def error(self, name: str, problem: str) -> ConfigError:
        return ConfigError(self.file, self.key(name), problem)

    def has(self, name: str) -> bool:
        return name in self.data

    def _record(self, name: str, kind: str, default: object, choices: tuple[str, ...] | None = None,
                lo: float | None = None, hi: float | None = None, required: bool | None = None) -> None:
        assert _recorder is not None
        # Frame 0 is this method, 1 the getter, 2 the parser that asked for the key.
        module = sys._getframe(2).f_globals.get("__name__", "?")
        _recorder.reads.append(Read(
            _recorder.generic(self.key(name)), kind, default, choices, lo, hi,
            default is _MISSING if required is None else required, name in self.data, module))

    def raw(self, name: str, default: Any = _MISSING) -> Any:
        """A free-form value, bounded in depth and alias expansion (`gateway.config.bounds`)."""
        if _recorder is not None:
            self._record(name, "raw", default)
        value = self._get(name, default)
        problem = unbounded(value)
        if problem is not None:
            raise self.error(name, problem)
        return value

    def _get(self, name: str, default: object) -> Any:
        self._read.add(name)
        if name not in self.data or self.data[name] is None:
            if default is _MISSING:
                raise self.error(name, "is required")
            return default
        return self.data[name]

    @overload
    def str(self, name: builtins.str, *, choices: tuple[builtins.str, ...] | None = None) -> builtins.str: ...

    @overload
    def str(self, name: builtins.str, default: D, choices: tuple[builtins.str, ...] | None = None) -> builtins.str | D: ...

    def str(self, name: builtins.str, default: object = _MISSING, choices: tuple[builtins.str, ...] | None = None) -> object:
        if _recorder is not None:
            self._record(name, "str", default, choices)
        value = self._get(name, default)
        if value is default and default is not _MISSING:
            return value
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise self.error(name, f"expected a string, got {_kind(value)}")
        value = str(value)
        if choices and value not in choices:
            raise self.error(name, f"must be one of {', '.join(choices)}, got {value!r}")
        return value

    @overload
    def url(self, name: builtins.str) -> builtins.str: ...

    @overload
    def url(self, name: builtins.str, default: D) -> builtins.str | D: ...

    def url(self, name: builtins.str, default: object = _MISSING) -> object:
        """An absolute http:// or https:// URL with a host (upstreams, pools, JWKS), returned as written."""
        if _recorder is not None:
            self._record(name, "url", default)
        value = self._get(name, default)
        if default is not _MISSING and (value is default or value == ""):
            return default  # an optional URL left empty (`${VAR:-}`) is not set
        if not isinstance(value, str):
            raise self.error(name, f"expected an http(s) URL, got {_kind(value)}")
        if not _is_http_url(value):
            raise self.error(name, f"expected an http(s)://host[:port] URL, got {value!r}")
        return value

    @overload
    def int(self, name: builtins.str, *, min: builtins.int | None = None,
            max: builtins.int | None = None) -> builtins.int: ...

    @overload
    def int(self, name: builtins.str, default: D, min: builtins.int | None = None,
            max: builtins.int | None = None) -> builtins.int | D: ...

    def int(self, name: builtins.str, default: object = _MISSING, min: builtins.int | None = None,
            max: builtins.int | None = None) -> object:
        if _recorder is not None:
            self._record(name, "int", default, None, min, max)
        value = self._get(name, default)
        if value is default and default is not _MISSING:
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(name, f"expected an integer, got {_kind(value)}")
        _check_range(self, name, value, min, max)
        return value

    @overload
    def float(self, name: builtins.str, *, min: builtins.float | None = None,
              max: builtins.float | None = None) -> builtins.float: ...

    @overload
    def float(self, name: builtins.str, default: D, min: builtins.float | None = None,
              max: builtins.float | None = None) -> builtins.float | D: ...

    def float(self, name: builtins.str, default: object = _MISSING, min: builtins.float | None = None,
              max: builtins.float | None = None) -> object:
        if _recorder is not None:
            self._record(name, "float", default, None, min, max)
        value = self._get(name, default)
        if value is default and default is not _MISSING:
            return value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(name, f"expected a number, got {_kind(value)}")
        _check_range(self, name, value, min, max)
        return float(value)

    @overload
    def bool(self, name: builtins.str) -> builtins.bool: ...

    @overload
    def bool(self, name: builtins.str, default: D) -> builtins.bool | D: ...

    def bool(self, name: builtins.str, default: object = _MISSING) -> object:
        if _recorder is not None:
            self._record(name, "bool", default)
        value = self._get(name, default)
        if not isinstance(value, bool):
            raise self.error(name, f"expected true or false, got {_kind(value)}")
        return value

    @overload
    def str_list(self, name: builtins.str) -> list[builtins.str]: ...

    @overload
    def str_list(self, name: builtins.str, default: D) -> list[builtins.str] | D: ...

    def str_list(self, name: builtins.str, default: object = _MISSING) -> object:
        if _recorder is not None:
            self._record(name, "str_list", default)
        value = self._get(name, default)
        if value is default and default is not _MISSING:
            return value
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error(name, "expected a list of strings")
        return list(value)

    def section(self, name: builtins.str, required: builtins.bool = False) -> Section:
        if _recorder is not None:
            self._record(name, "section", None, required=required)
        value = self._get(name, _MISSING if required else {})
        return Section(value, self.file, self.key(name))

    def sections(self, name: builtins.str, required: builtins.bool = False) -> list[Section]:
        if _recorder is not None:
            self._record(name, "sections", None, required=required)
        value = self._get(name, _MISSING if required else [])
        if not isinstance(value, list):
            raise self.error(name, f"expected a list, got {_kind(value)}")
        return [Section(item, self.file, f"{self.key(name)}[{i}]") for i, item in enumerate(value)]

    def done(self) -> None:
        """Reject unknown keys so a typo never silently disables a policy."""
        unknown = sorted(set(self.data) - self._read)
        if unknown:
            raise self.error(unknown[0], "unknown key")


def _check_range(sec: Section, name: str, value: float, lo: float | None, hi: float | None) -> None:
    if lo is not None and value < lo:
        raise sec.error(name, f"must be at least {lo}, got {value}")
    if hi is not None and value > hi:
        raise sec.error(name, f"must be at most {hi}, got {value}")


def _is_http_url(value: str) -> bool:
    try:
        parts = urlsplit(value)
        # `.port` is parsed lazily; reading it here rejects `host:abc` or `host:99999` at load time.
        port = parts.port
    except ValueError:  # an unclosed IPv6 bracket, a port that is not a number or out of range
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and (port is None or port > 0)


def _kind(value: object) -> str:
    if value is None:
        return "nothing"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__)
