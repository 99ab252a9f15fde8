"""The canary judge through real gateways: A/A policy canaries on a 2-worker gateway under load, on
whatever machine this runs (a busy shared one is the point), plus one broken canary.

    python bench/judge_gateway.py [--runs 10] [--callers 40]

Each run starts a policy canary of a harmless change (one more route, as in the issue's trial) with
steps 10/50/100, `min_requests` 20, `min_step_s` 1, while `--callers` real partners (signed tokens,
10 requests per second each) call the gateway, and counts promotions and rollbacks with the reason.
Then one canary whose issuer refuses every real token must be rolled back.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from testkit.gateways import gateway_config, issuer_config, start_fake_backend, start_gateway  # noqa: E402
from testkit.harness import EDGEGW  # noqa: E402
from testkit.policy_load import Load, wait_until, worker_versions  # noqa: E402


def canary(gw: Any, admin_token: str, text: str, tmp: Path) -> tuple[str, str]:
    new = tmp / f"new-{time.monotonic_ns()}.yaml"
    new.write_text(text)
    out = subprocess.run([*EDGEGW, "policy", "rollout", str(new), "--gateway", gw.url, "--token", admin_token,
                          "--steps", "10,50,100", "--min-requests", "20", "--min-step-s", "1", "--wait"],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    state = "promoted" if "promoted" in out.stdout else "rolled_back" if "rolled_back" in out.stdout else "?"
    status = subprocess.run([*EDGEGW, "policy", "status", "--gateway", gw.url, "--token", admin_token],
                            capture_output=True, text=True, cwd=ROOT, timeout=60).stdout
    why = next((line.strip() for line in status.splitlines() if "rolled_back" in line or "promoted" in line), "")
    return state, why


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--callers", type=int, default=40)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="edgegw-bench-judge-"))
    backend = start_fake_backend()
    config = gateway_config([backend])
    gw = start_gateway(tmp, config, workers=2)
    admin_token = gw.token("ops", scopes=["admin"])
    results: list[tuple[str, str]] = []
    try:
        wait_until(lambda: len(worker_versions(gw.url)) == 2, 30)
        tokens = [gw.token(f"partner-{i}") for i in range(args.callers)]
        with Load(gw.url, tokens, rate=10) as load:
            wait_until(lambda: load.total > 200, 30)
            started = time.monotonic()
            for i in range(args.runs):
                harmless = yaml.safe_load(gw.config_path.read_text())
                harmless["routes"] = [*harmless.get("routes", []),
                                      {"name": f"extra-{i}", "paths": ["/v1/completions"]}]
                results.append(canary(gw, admin_token, yaml.safe_dump(harmless), tmp))
                print(f"A/A run {i + 1}: {results[-1][0]}", flush=True)
            broken = yaml.safe_load(gw.config_path.read_text())
            broken["issuers"] = [issuer_config(audience="someone-else")]
            dead = canary(gw, admin_token, yaml.safe_dump(broken), tmp)
            seconds = time.monotonic() - started
        print(f"\n2 workers, {args.callers} callers at 10 req/s each, {load.total} requests in {seconds:.0f} s "
              f"({load.total / seconds:.0f} req/s, {len(load.failures)} non-200 answers)")
        promoted = sum(state == "promoted" for state, _ in results)
        print(f"A/A policy canaries: {promoted} of {len(results)} promoted, "
              f"{sum(state == 'rolled_back' for state, _ in results)} rolled back")
        for state, why in results:
            if state != "promoted":
                print(f"    {state}: {why}")
        print(f"canary refusing every partner: {dead[0]} ({dead[1][:200]})")
        return 0 if promoted == len(results) and dead[0] == "rolled_back" else 1
    finally:
        gw.proc.stop()
        backend.proc.stop()


if __name__ == "__main__":
    raise SystemExit(main())
