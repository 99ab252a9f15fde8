"""`${VAR}` / `${VAR:-default}` in policy text, and keeping the values that came from the environment
out of every message about the policy (a 400, a log line, the status page): they are often secrets.
A message names the variable instead of showing its value."""

from __future__ import annotations

import os
import re

from gateway.config.reader import ConfigError

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
# Shorter values are hidden only where quoted: unquoted, "80" or "on" cannot be told from other text.
_MIN_UNQUOTED = 4


def substitute(text: str, file: str) -> tuple[str, dict[str, str]]:
    """`text` with each `${VAR}` replaced, and the values taken from the environment (name -> value).

    Defaults written in the text are not secret and not returned. A variable that is unset and has
    no default is a ConfigError naming it."""
    used: dict[str, str] = {}

    def repl(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        value = os.environ.get(name)
        if value is None:
            if default is None:
                line = text.count("\n", 0, match.start()) + 1
                raise ConfigError(file, f"line {line}", f"environment variable {name} is not set")
            return default
        used[name] = value
        return value

    # Comments may mention ${VAR} syntax; substitute only outside them.
    out = "\n".join(_VAR.sub(repl, line) if not line.lstrip().startswith("#") else line
                    for line in text.split("\n"))
    return out, used


def environment_values(text: str) -> dict[str, str]:
    """The environment values `text` uses (name -> value); empty when it cannot be substituted."""
    try:
        return substitute(text, "")[1]
    except ConfigError:
        return {}


def hide_values(message: str, used: dict[str, str]) -> str:
    """`message` with each value in `used` replaced by `${NAME}` (longest first, quoted forms included)."""
    for name, value in sorted(used.items(), key=lambda item: -len(item[1])):
        if not value:
            continue
        placeholder = "${" + name + "}"
        for quoted in (repr(value), f"'{value}'", f'"{value}"'):
            message = message.replace(quoted, placeholder)
        if len(value) >= _MIN_UNQUOTED:
            message = message.replace(value, placeholder)
    return message


def hide_in_error(exc: ConfigError, used: dict[str, str]) -> ConfigError:
    """The same error, with environment values hidden in its key and problem."""
    if not used:
        return exc
    return ConfigError(exc.file, hide_values(exc.key, used), hide_values(exc.problem, used))
