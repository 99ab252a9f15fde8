"""How often the canary judge is wrong, both ways: the confusion table of `make bench-judge`.

    python bench/judge.py [--runs 100] [--aa-runs 400] [--error-runs 400] [--seed 1]

In process and seeded: simulated traffic drives the three users of the one judge (`edgecore.judge`)
through their own adapters, with their own settings: policy canaries (`gateway.policy.canary`), backend
rollouts (`gateway.upstream.rollout`) and plugin canaries (`wasm_plugins.canary`). Time is simulated
(the requests' clock), so a run takes milliseconds and answers the same on any machine.

The traffic model (both arms alike unless the scenario changes the canary):
- upstream latency: log-normal, median 80 ms, sigma 0.35 (an inference backend), plus a pause of
  50-300 ms on 1% of requests (a GC pause or a scheduling hiccup on a busy machine);
- gateway overhead: log-normal, median 1.5 ms, sigma 0.5, plus 5-50 ms on 1% (the same, in the gateway);
- background answers: 0.05% 5xx, 1% 429, 2% other 4xx (plugins: 2% local answers); 1,000 requests
  per second, both arms together.

Scenarios: `A/A` (the canary is stable), `+5 pts 5xx`, `2x latency` (the canary's upstream latency
doubled; plugins have no upstream of their own, so not for them) and `dead` (every canary request fails).
The table counts rolled back / promoted or still running, and the exposure (canary requests) at rollback.
The A/A and +5 pts rows run 400 seeds by default (`--aa-runs`, `--error-runs`): enough to tell a rate of 1 in
100 from 2 in 100; the others 100 (`--runs`). About 40 s on one core.
"""

from __future__ import annotations

import argparse
import logging
import math
import random
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.policy.canary import CanarySettings, PolicyCanary  # noqa: E402
from gateway.upstream.rollout import BackendRollout, RolloutConfig  # noqa: E402
from wasm_plugins.canary import FAILED, LOCAL, CanaryJudge, outcome  # noqa: E402
from wasm_plugins.config import CanaryConfig  # noqa: E402

RATE = 1000.0  # requests per second, both arms together (the trial: 200 callers)
FIVE_XX = 0.0005  # background 5xx rate of a healthy system, both arms
MAX_CANARY = 20_000  # a run that is still undecided after this many canary requests counts as running

POLICY = CanarySettings(steps=(10.0, 50.0, 100.0), min_requests=20, min_step_s=1.0)  # the operator trial
ROLLOUT = RolloutConfig(steps=(10.0, 50.0, 100.0), interval_s=1.0, min_requests=50)
PLUGIN = CanaryConfig(weight=0.1, promote_after=1000)
SCENARIOS = ("A/A", "+5 pts 5xx", "2x latency", "dead")


@dataclass
class Request:
    """One simulated request's outcome on one arm."""

    status: int
    upstream_s: float
    overhead_s: float
    local: bool


class Traffic:
    def __init__(self, rng: random.Random, scenario: str) -> None:
        self.rng = rng
        self.scenario = scenario

    def request(self, canary: bool) -> Request:
        rng = self.rng
        upstream = rng.lognormvariate(-2.526, 0.35)  # median 80 ms
        if rng.random() < 0.01:
            upstream += rng.uniform(0.05, 0.3)
        overhead = rng.lognormvariate(-6.502, 0.5)  # median 1.5 ms
        if rng.random() < 0.01:
            overhead += rng.uniform(0.005, 0.05)
        roll = rng.random()
        status = 500 if roll < FIVE_XX else 429 if roll < FIVE_XX + 0.01 else 400 if roll < FIVE_XX + 0.03 else 200
        local = rng.random() < 0.02
        if canary:
            if self.scenario == "2x latency":
                upstream *= 2
            elif self.scenario == "+5 pts 5xx" and rng.random() < 0.05:
                status = 500
            elif self.scenario == "dead":
                status = 500
        return Request(status, upstream, overhead, local)


@dataclass
class Result:
    state: str  # rolled_back | promoted | running
    exposed: int  # canary requests until the verdict
    why: str


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def run_policy(seed: int, scenario: str, settings: CanarySettings = POLICY) -> Result:
    rng, clock = random.Random(seed), Clock()
    traffic = Traffic(rng, scenario)
    verdict: list[str] = []
    canary = PolicyCanary("bench", "v2", settings, lambda state, why: verdict.append(why), clock=clock)
    while canary.state == "running" and canary.exposed < MAX_CANARY:
        clock.now += 1 / RATE
        to_canary = rng.random() < canary.share
        r = traffic.request(to_canary)
        canary.record(to_canary, r.status, r.overhead_s, r.upstream_s if r.status < 400 else 0.0)
    return Result(canary.state, canary.exposed, verdict[0] if verdict else "")


class _Endpoint:
    def __init__(self, group: str) -> None:
        self.group = group


def run_rollout(seed: int, scenario: str, config: RolloutConfig = ROLLOUT) -> Result:
    rng, clock = random.Random(seed), Clock()
    random.seed(seed)  # BackendRollout.narrow draws from the module's generator
    traffic = Traffic(rng, scenario)
    rollout = BackendRollout(f"bench-{seed}", config, clock=clock)
    canary, stable = _Endpoint(config.canary_group), _Endpoint("stable")
    while rollout.state == "running" and rollout.run.exposed < MAX_CANARY:
        clock.now += 1 / RATE
        [endpoint] = rollout.narrow([canary, stable])
        r = traffic.request(endpoint is canary)
        ok = r.status < 500
        rollout.record(endpoint, ok, r.upstream_s if ok else None)
    why = next((e["detail"] for e in reversed(rollout.events) if e["event"] in ("rolled_back", "promoted")), "")
    return Result(rollout.state, rollout.run.exposed, why)


def run_plugin(seed: int, scenario: str, config: CanaryConfig = PLUGIN) -> Result:
    rng, clock = random.Random(seed), Clock()
    traffic = Traffic(rng, scenario)
    judge = CanaryJudge(config, clock)
    while judge.canary_requests < MAX_CANARY:
        clock.now += 1 / RATE
        to_canary = rng.random() < config.weight
        r = traffic.request(to_canary)
        bits = FAILED if to_canary and scenario == "dead" else outcome(r.status, False) | (LOCAL if r.local else 0)
        decided = judge.observe(to_canary, "inference", bits)
        if decided is not None:
            kind, why = decided
            return Result("rolled_back" if kind == "rollback" else "promoted", judge.canary_requests, why)
    return Result("running", judge.canary_requests, "")


KINDS: dict[str, tuple[Callable[[int, str], Result], int]] = {  # kind -> (one run, its min_requests)
    "policy canary": (run_policy, POLICY.min_requests),
    "backend rollout": (run_rollout, ROLLOUT.min_requests),
    "plugin canary": (run_plugin, PLUGIN.min_requests),
}


def table(runs: dict[str, int], seed: int) -> list[tuple[str, str, list[Result]]]:
    """Each kind's runs of each scenario (`runs`: how many per scenario)."""
    out = []
    for kind, (run, _) in KINDS.items():
        for scenario in SCENARIOS:
            if kind == "plugin canary" and scenario == "2x latency":
                continue
            out.append((kind, scenario, [run(seed * 100_003 + i, scenario) for i in range(runs[scenario])]))
    return out


def interval(k: int, n: int) -> str:
    """k of n as a percentage with its 95% (Wilson) interval: what a row can tell apart."""
    z = 1.96
    centre, spread = (k + z * z / 2) / (n + z * z), z * math.sqrt(k * (n - k) / n + z * z / 4) / (n + z * z)
    return f"{k / n:.2%} [{max(0.0, centre - spread):.2%}, {centre + spread:.2%}]"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=100, help="runs of the 2x latency and dead rows")
    parser.add_argument("--aa-runs", type=int, default=400, help="runs of the A/A rows")
    parser.add_argument("--error-runs", type=int, default=400, help="runs of the +5 pts 5xx rows")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--why", action="store_true", help="print the reason of each A/A rollback")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    runs = {"A/A": args.aa_runs, "+5 pts 5xx": args.error_runs, "2x latency": args.runs, "dead": args.runs}
    print(f"seeded runs (seed {args.seed}): {args.aa_runs} A/A, {args.error_runs} +5 pts 5xx, {args.runs} others "
          "per kind; exposure = canary requests until the verdict\n")
    print(f"{'kind':<16} {'scenario':<11} {'runs':>5} {'rolled back':>11} {'promoted':>9} {'running':>8} "
          f"{'exposure p50':>12} {'max':>6}  target")
    failed = False
    for kind, scenario, results in table(runs, args.seed):
        n = len(results)
        back = [r for r in results if r.state == "rolled_back"]
        promoted = sum(r.state == "promoted" for r in results)
        exposure = [r.exposed for r in back]
        min_requests = KINDS[kind][1]
        if scenario == "A/A":
            target, ok = f"<= 1% rolled back: {interval(len(back), n)}", len(back) <= n / 100
        elif scenario == "+5 pts 5xx":
            within = sum(e <= 200 for e in exposure)
            target, ok = f">= 99% within 200: {interval(within, n)}", within >= 0.99 * n
        elif scenario == "dead":
            within = sum(e <= min_requests for e in exposure)
            target, ok = f"{within} within min_requests {min_requests} (all)", within == n
        else:
            target, ok = "all rolled back", len(back) == n
        failed |= not ok
        print(f"{kind:<16} {scenario:<11} {n:>5} {len(back):>11} {promoted:>9} {n - len(back) - promoted:>8} "
              f"{statistics.median(exposure) if exposure else '-':>12} {max(exposure) if exposure else '-':>6}  "
              f"{'ok' if ok else 'MISSED'}: {target}")
        if args.why and scenario == "A/A":
            for r in back:
                print(f"    {r.why}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
