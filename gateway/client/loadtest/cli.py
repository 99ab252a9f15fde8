"""`edgegw loadtest URL ...`: the subcommand's flags, and one run or a sweep from start to reports."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.client.loadtest.options import (
    OptionError,
    Sweep,
    check_caps,
    endpoint_url,
    parse_duration,
    parse_headers,
    parse_sweep,
    require_loopback,
)

if TYPE_CHECKING:
    from gateway.client.loadtest.runner import Plan

TOKEN_ENV = "EDGEGW_LOADTEST_TOKEN"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("loadtest", help="LLM-aware load test of an edgegw or OpenAI-compatible URL",
                       description="Closed loop (--users) or open loop (--rate) load with a ramp-up; reports TTFT, "
                                   "inter-token latency, tokens/s, percentiles and errors. Loopback targets only "
                                   "unless --allow-remote. See docs/capacity.md.")
    p.add_argument("url", help="gateway URL, e.g. http://127.0.0.1:8080 (the /v1/... path is added)")
    p.add_argument("--token", default=None, help=f"bearer token (or set {TOKEN_ENV}, which stays out of `ps`)")
    p.add_argument("--users", type=int, default=None,
                   help="closed loop: concurrent users (default 10); open loop: cap on requests in flight "
                        "(default 1000)")
    p.add_argument("--ramp-up", default="0s", help="time to start all users, or to reach --rate (e.g. 10s)")
    p.add_argument("--duration", default="30s", help="whole run, ramp-up included (e.g. 60s, 2m)")
    p.add_argument("--rate", type=float, default=None, help="open loop: Poisson arrivals per second")
    p.add_argument("--stream", action="store_true", help="stream responses (SSE): measures TTFT and ITL")
    p.add_argument("--prompts", type=Path, default=None, help="JSONL: {\"prompt\"|\"messages\", \"max_tokens\"?}")
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--model", default=None, help="model name (default: the first of GET /v1/models)")
    p.add_argument("--endpoint", choices=("chat", "completions"), default="chat")
    p.add_argument("--header", action="append", default=[], help="extra request header 'Name: value' (repeatable)")
    p.add_argument("--temperature", type=float, default=None,
                   help="sent when given; note temperature 0 may be answered from the gateway's cache")
    p.add_argument("--think", default="0s", help="closed loop: pause between a user's requests")
    p.add_argument("--timeout", default="120s", help="per request")
    p.add_argument("--grace", default="10s", help="how long requests in flight at the end may finish")
    p.add_argument("--max-requests", type=int, default=10_000, help="cap on requests per run")
    p.add_argument("--sweep", default=None, help="users=1,4,16,64 or rate=1,2,4: one run of --duration each")
    p.add_argument("--report", type=Path, default=Path("loadtest-report"),
                   help="directory for result.json and report.html")
    p.add_argument("--allow-remote", action="store_true", help="allow a target that is not a loopback address")
    p.add_argument("--quiet", action="store_true", help="no live progress line")
    p.add_argument("--progress-every", default="5s", help="when not on a terminal: a progress line this often")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from gateway.client.loadtest.runner import Plan
    from gateway.client.loadtest.workload import WorkloadError

    try:
        url = endpoint_url(args.url, args.endpoint == "chat")
        if not args.allow_remote:
            require_loopback(url)
        sweep = parse_sweep(args.sweep) if args.sweep else None
        if args.users is None:
            args.users = 1000 if args.rate or (sweep and sweep.axis == "rate") else 10
        duration = parse_duration(args.duration, "--duration")
        check_caps(args.users, duration, args.max_requests, args.rate, len(sweep.values) if sweep else 1)
        plan = Plan(users=args.users, ramp_up_s=parse_duration(args.ramp_up, "--ramp-up"), duration_s=duration,
                    rate=args.rate, max_requests=args.max_requests, grace_s=parse_duration(args.grace, "--grace"),
                    think_s=parse_duration(args.think, "--think"), seed=args.seed)
        if plan.ramp_up_s > duration:
            raise OptionError("--ramp-up: longer than --duration")
        if args.max_tokens < 1:
            raise OptionError("--max-tokens: at least 1")
        settings = {"timeout_s": parse_duration(args.timeout, "--timeout"), "headers": parse_headers(args.header),
                    "progress_s": parse_duration(args.progress_every, "--progress-every")}
        return asyncio.run(_main(args, url, sweep, plan, settings))
    except (OptionError, WorkloadError) as exc:
        print(f"edgegw loadtest: {exc}", file=sys.stderr)
        return 2


async def _main(args: argparse.Namespace, url: str, sweep: Sweep | None, base: Plan,
                settings: dict[str, Any]) -> int:
    from rich.console import Console

    from gateway.client.loadtest import html, report
    from gateway.client.loadtest.client import Target
    from gateway.client.loadtest.live import Progress
    from gateway.client.loadtest.runner import Run, execute
    from gateway.client.loadtest.sweep import print_sweep, sweep_result
    from gateway.client.loadtest.workload import Workload, load_prompts

    token = args.token or os.environ.get(TOKEN_ENV)
    target = Target(url, token, settings["timeout_s"], settings["headers"])
    prompts = load_prompts(args.prompts)
    model = args.model or await _first_model(url, token)
    workload = Workload(prompts, model, args.max_tokens, args.stream, args.endpoint == "chat", args.temperature,
                        args.seed)
    console = Console(width=None if sys.stdout.isatty() else 120)
    loads = sweep.values if sweep else [base.rate or base.users]
    runs: list[tuple[float, dict[str, Any]]] = []
    current: list[Run] = []
    loop = asyncio.get_running_loop()

    def interrupt() -> None:
        if current:
            current[-1].interrupt()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, interrupt)
    for load in loads:
        plan = _plan_for(base, sweep, load)
        run = Run(plan)
        current.append(run)
        progress = None if args.quiet else Progress(every_s=settings["progress_s"])
        if sweep:
            console.print(f"[bold]{sweep.axis} = {load:g}[/]")
        await execute(plan, target, workload, run, tick=progress)
        if progress:
            progress.done()
        options = {"users": plan.users, "rate": plan.rate, "ramp_up_s": plan.ramp_up_s, "duration_s": plan.duration_s,
                   "stream": args.stream, "model": model, "max_tokens": args.max_tokens,
                   "max_requests": plan.max_requests, "endpoint": args.endpoint, "prompts": str(args.prompts or "")}
        data = report.result(run, url, options)
        runs.append((load, data))
        report.print_summary(data, console)
        if run.interrupted:
            break
    if sweep:
        result = sweep_result(sweep.axis, url, runs)
        print_sweep(result, console)
        json_path = report.write_json({**result, "runs": [d for _, d in runs]}, args.report)
        html_path = html.sweep_report(result, [d for _, d in runs], args.report)
    else:
        json_path = report.write_json(runs[0][1], args.report)
        html_path = html.run_report(runs[0][1], args.report)
    console.print(f"wrote {json_path} and {html_path}", highlight=False)
    return 130 if current[-1].interrupted else 0


def _plan_for(base: Plan, sweep: Sweep | None, load: float) -> Plan:
    from dataclasses import replace

    if sweep is None:
        return base
    if sweep.axis == "users":
        return replace(base, users=int(load))
    return replace(base, rate=load)


async def _first_model(url: str, token: str | None) -> str:
    """The first model the target lists at /v1/models, for when --model is not given."""
    import aiohttp

    models_url = url.split("/v1/", 1)[0] + "/v1/models"
    headers = {"authorization": f"Bearer {token}"} if token else {}
    try:
        # Never a redirect: it could lead off this machine (the loopback rule checks only the target).
        async with aiohttp.ClientSession() as session, \
                session.get(models_url, headers=headers, timeout=aiohttp.ClientTimeout(total=10),
                            allow_redirects=False) as resp:
            status = resp.status
            data = await resp.json(content_type=None) if status == 200 else {}
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise OptionError(f"--model not given and {models_url} failed ({exc}); pass --model") from None
    if status != 200:
        why = " (redirects are not followed)" if 300 <= status < 400 else ""
        raise OptionError(f"--model not given and {models_url} answered {status}{why}; pass --model")
    models = [m.get("id") for m in (data or {}).get("data", []) if isinstance(m, dict)]
    if not models:
        raise OptionError(f"--model not given and {models_url} listed no model; pass --model")
    return str(models[0])
