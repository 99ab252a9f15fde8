"""Progress for long command-line steps: a spinner on a terminal, plain lines elsewhere, a result line always.

A spinner draws nothing when stderr is not a terminal (CI logs, `make demo > log`, a container), so
there a step prints a start line and then a "still ..." line every `PLAIN_EVERY_S` seconds: a
minutes-long first run is never silent.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

from rich.console import Console

_console = Console(stderr=True)
PLAIN_EVERY_S = 10.0


@contextlib.contextmanager
def step(message: str, console: Console | None = None) -> Iterator[None]:
    """Show `message` while the block runs, then `✓ message (Ns)` (or `✗` on failure)."""
    out = console or _console
    started = time.monotonic()
    ok = False
    try:
        if out.is_terminal:
            with out.status(message):
                yield
        else:
            with _plain_lines(out, message, started):
                yield
        ok = True
    finally:
        mark = "[green]✓[/]" if ok else "[red]✗[/]"
        out.print(f"{mark} {message} ({time.monotonic() - started:.1f}s)", highlight=False, soft_wrap=True)


@contextlib.contextmanager
def _plain_lines(out: Console, message: str, started: float) -> Iterator[None]:
    out.print(f"… {message}", highlight=False, soft_wrap=True)
    done = threading.Event()

    def tick() -> None:
        while not done.wait(PLAIN_EVERY_S):
            out.print(f"… still {message} ({time.monotonic() - started:.0f}s)", highlight=False, soft_wrap=True)

    ticker = threading.Thread(target=tick, name="progress", daemon=True)
    ticker.start()
    try:
        yield
    finally:
        done.set()
        ticker.join()
