"""A small typed reader over parsed YAML that names the file and key in every error."""

from __future__ import annotations

from typing import Any

_MISSING: Any = object()


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

    def raw(self, name: str, default: Any = _MISSING) -> Any:
        self._read.add(name)
        if name not in self.data or self.data[name] is None:
            if default is _MISSING:
                raise self.error(name, "is required")
            return default
        return self.data[name]

    def str(self, name: str, default: Any = _MISSING, choices: tuple[str, ...] | None = None) -> Any:
        value = self.raw(name, default)
        if value is default and default is not _MISSING:
            return value
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise self.error(name, f"expected a string, got {_kind(value)}")
        value = str(value)
        if choices and value not in choices:
            raise self.error(name, f"must be one of {', '.join(choices)}, got {value!r}")
        return value

    def int(self, name: str, default: Any = _MISSING, min: int | None = None, max: int | None = None) -> Any:
        value = self.raw(name, default)
        if value is default and default is not _MISSING:
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(name, f"expected an integer, got {_kind(value)}")
        _check_range(self, name, value, min, max)
        return value

    def float(self, name: str, default: Any = _MISSING, min: float | None = None,
              max: float | None = None) -> Any:
        value = self.raw(name, default)
        if value is default and default is not _MISSING:
            return value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(name, f"expected a number, got {_kind(value)}")
        _check_range(self, name, value, min, max)
        return float(value)

    def bool(self, name: str, default: Any = _MISSING) -> Any:
        value = self.raw(name, default)
        if not isinstance(value, bool):
            raise self.error(name, f"expected true or false, got {_kind(value)}")
        return value

    def str_list(self, name: str, default: Any = _MISSING) -> Any:
        value = self.raw(name, default)
        if value is default and default is not _MISSING:
            return value
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error(name, "expected a list of strings")
        return list(value)

    def section(self, name: str, required: bool = False) -> Section:
        value = self.raw(name, _MISSING if required else {})
        return Section(value, self.file, self.key(name))

    def sections(self, name: str, required: bool = False) -> list[Section]:
        value = self.raw(name, _MISSING if required else [])
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


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__)
