"""Progress for long command-line steps: a spinner on a terminal, one line per finished step always."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from rich.console import Console

_console = Console(stderr=True)


@contextlib.contextmanager
def step(message: str) -> Iterator[None]:
    """Show `message` with a spinner while the block runs, then `✓ message (Ns)` (or `✗` on failure)."""
    started = time.monotonic()
    ok = False
    try:
        with _console.status(message):
            yield
        ok = True
    finally:
        mark = "[green]✓[/]" if ok else "[red]✗[/]"
        _console.print(f"{mark} {message} ({time.monotonic() - started:.1f}s)", highlight=False)
