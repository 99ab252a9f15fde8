"""A canary that moves through steps (percent of traffic), each judged by a `Judge`: the state
machine policy canaries and backend rollouts share. What a step's traffic is, and how a verdict
reaches the other workers, stays with each user."""

from __future__ import annotations

import time
from collections.abc import Callable

from edgecore.judge.judge import FAIL, INCONCLUSIVE, Arm, Judge, Rules

RUNNING, PROMOTED, ROLLED_BACK, ABORTED = "running", "promoted", "rolled_back", "aborted"
STEP_PASSED = "step_passed"


class Steps:
    """running (step i) -> promoted | rolled_back | aborted. `checkpoint` after each canary outcome
    answers the event it reached: (ROLLED_BACK | PROMOTED | STEP_PASSED, why) or None."""

    def __init__(self, steps: tuple[float, ...], rules: Rules, min_step_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.steps = steps
        self.min_step_s = min_step_s
        self.clock = clock
        self.judge = Judge(rules, clock)
        self.state = RUNNING
        self.step = 0
        self.share = steps[0] / 100.0
        self.step_started = clock()
        self.exposed = 0  # canary outcomes over the whole canary
        self.waiting = ""  # why the current step is extended (an inconclusive look), for the status page

    def label(self) -> str:
        return f"step {self.step + 1} ({self.share:.0%})"

    def arm(self, to_canary: bool) -> Arm | None:
        """Where an outcome goes (None once the canary ended): `Arm.add` it there, then `counted`."""
        if self.state != RUNNING:
            return None
        return self.judge.canary if to_canary else self.judge.stable

    def counted(self, to_canary: bool) -> tuple[str, str] | None:
        """After an outcome was added: the event the canary reached with it, if any (`checkpoint`)."""
        return self.checkpoint() if to_canary else None

    def checkpoint(self) -> tuple[str, str] | None:
        """Look at the step if a look is due; a failed look rolls back, a passed one (once the step
        lasted `min_step_s`) moves on or promotes, an inconclusive one extends the step."""
        self.exposed += 1
        judge = self.judge
        if self.state != RUNNING or not judge.due():
            return None
        look = judge.look()
        if look.verdict == FAIL:
            return ROLLED_BACK, f"{self.label()} failed: {look.why}"
        if not judge.step_judged():
            return None
        if look.verdict == INCONCLUSIVE:
            self.waiting = look.why
            if not judge.extended_enough():
                return None
            why = f"{self.label()} passed at the end of its extension, still inconclusive: {look.why}"
        else:
            self.waiting = ""
            why = f"{self.label()} passed: {look.why}"
        if self.clock() - self.step_started < self.min_step_s:
            return None
        if self.step + 1 >= len(self.steps):
            return PROMOTED, why
        return STEP_PASSED, why

    def advance_to(self, step: int) -> bool:
        """Move to step `step` (0-based): this judge's pass, or one another worker's judge passed."""
        if self.state != RUNNING or step <= self.step or step >= len(self.steps):
            return False
        self.step = step
        self.share = self.steps[step] / 100.0
        self.step_started = self.clock()
        self.waiting = ""
        self.judge.restart()
        return True

    def end(self, state: str) -> bool:
        """The verdict (here or another worker's); False when one came before."""
        if self.state != RUNNING:
            return False
        self.state = state
        return True
