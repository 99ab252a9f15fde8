"""`edgegw policy rollout|status|promote|abort`: policy canaries through a running gateway's admin API."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

TOKEN_ENV = "EDGEGW_ADMIN_TOKEN"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("policy", help="policy canaries on a running gateway (admin token required)")
    verbs = p.add_subparsers(dest="verb", required=True)

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument("--gateway", default=os.environ.get("EDGEGW_URL", "http://127.0.0.1:8080"),
                       help="the gateway's base URL (default: $EDGEGW_URL, else http://127.0.0.1:8080)")
        q.add_argument("--token", default=os.environ.get(TOKEN_ENV),
                       help=f"an admin token (default: ${TOKEN_ENV})")

    q = verbs.add_parser("rollout", help="start a canary of NEW.yaml")
    q.add_argument("file", help="the new policy")
    q.add_argument("--steps", default=None, help="caller shares in percent, e.g. 1,10,50,100")
    q.add_argument("--min-requests", type=int, default=None, help="canary requests per step before judging")
    q.add_argument("--min-step-s", type=float, default=None, help="least seconds per step")
    for name in ("max-error-rate-increase", "max-429-rate-increase", "max-4xx-rate-increase",
                 "max-overhead-ratio", "max-latency-ratio", "confidence", "max-extension"):
        q.add_argument(f"--{name}", type=float, default=None)
    q.add_argument("--failed-looks", type=int, default=None, help="failing looks in a row that fail a step")
    q.add_argument("--wait", action="store_true", help="follow the canary until it is promoted or rolled back")
    common(q)
    q.set_defaults(func=_rollout)
    for verb, helptext in (("status", "the canary's state, its metrics side by side, and its history"),
                           ("promote", "promote the running canary now"), ("abort", "roll the running canary back")):
        q = verbs.add_parser(verb, help=helptext)
        common(q)
        q.set_defaults(func=_status if verb == "status" else _decide)


def admin_client(args: argparse.Namespace, command: str = "policy") -> Any:
    """An httpx client for `args.gateway` with `args.token` (an admin command's common options)."""
    import httpx

    if not args.token:
        raise SystemExit(f"edgegw {command}: an admin token is required (--token or ${TOKEN_ENV})")
    return httpx.Client(base_url=args.gateway.rstrip("/"), headers={"authorization": f"Bearer {args.token}"},
                        timeout=30)


def admin_answer(resp: Any, command: str = "policy") -> dict[str, Any]:
    """The JSON of a 200 answer; any other status: its error message on stderr and exit 2."""
    if resp.status_code != 200:
        try:
            message = resp.json()["error"]["message"]
        except Exception:
            message = resp.text[:500]
        print(f"edgegw {command}: {resp.status_code}: {message}", file=sys.stderr)
        raise SystemExit(2)
    body: dict[str, Any] = resp.json()
    return body


def _rollout(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"policy": Path(args.file).read_text()}
    if args.steps:
        body["steps"] = [float(x) for x in args.steps.split(",")]
    for key in ("min_requests", "min_step_s", "max_error_rate_increase", "max_429_rate_increase",
                "max_4xx_rate_increase", "max_overhead_ratio", "max_latency_ratio", "confidence", "max_extension",
                "failed_looks"):
        value = getattr(args, key)
        if value is not None:
            body[key] = value
    with admin_client(args) as client:
        canary = admin_answer(client.post("/admin/policy/canary", json=body))
        print(f"canary {canary['version']} started for {canary['share']:.0%} of callers")
        while args.wait and canary["state"] == "running":
            time.sleep(1)
            current = admin_answer(client.get("/admin/policy/canary"))
            canary = current["current"] or next((h for h in current["history"] if h["id"] == canary["id"]),
                                                canary)
            print(_line(canary))
    return 0 if canary["state"] in ("running", "promoted") else 1


def _line(c: dict[str, Any]) -> str:
    k, s = c["canary"], c["stable"]
    return (f"{c['state']:<12} step {c['step']}/{len(c['settings']['steps'])} share {c['share']:.0%} | "
            f"canary {k['requests']} req {k['error_rate']:.1%} 5xx {k['rate_429']:.1%} 429 p99 ovh "
            f"{k['p99_overhead_ms']} ms | stable {s['requests']} req {s['error_rate']:.1%} 5xx "
            f"{s['rate_429']:.1%} 429 p99 ovh {s['p99_overhead_ms']} ms")


def _status(args: argparse.Namespace) -> int:
    with admin_client(args) as client:
        data = admin_answer(client.get("/admin/policy/canary"))
    print(f"stable version {data['stable']}")
    current = data["current"]
    print(_line(current) if current else "no canary running")
    for past in ([current] if current else []) + data["history"]:
        for event in reversed(past["events"]):
            when = time.strftime("%H:%M:%S", time.localtime(event["at"]))
            print(f"  {when} {past['version']} {event['event']}: {event['detail']}")
    return 0


def _decide(args: argparse.Namespace) -> int:
    with admin_client(args) as client:
        canary = admin_answer(client.post(f"/admin/policy/canary/{args.verb}"))
    print(_line(canary))
    return 0
