"""The canary judge every canary in the project uses (plugin versions, policy versions, backend
rollouts): statistics in `stats`, the judge's vocabulary in `judge`, steps in `steps`.
docs/policy-reload.md ("How a canary is judged") says what it does in plain words."""

from edgecore.judge.judge import FAIL, INCONCLUSIVE, PASS, Arm, Judge, LatencyCheck, Look, RateCheck, Rules
from edgecore.judge.steps import ABORTED, PROMOTED, ROLLED_BACK, RUNNING, STEP_PASSED, Steps

__all__ = ["ABORTED", "FAIL", "INCONCLUSIVE", "PASS", "PROMOTED", "ROLLED_BACK", "RUNNING", "STEP_PASSED", "Arm",
           "Judge", "LatencyCheck", "Look", "RateCheck", "Rules", "Steps"]
