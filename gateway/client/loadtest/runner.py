"""Drive the load: closed loop (N users, each sending its next request when the last one ends) or open
loop (Poisson arrivals at a rate, whether or not earlier requests have finished), both with a linear
ramp-up, a duration, a cap on requests and a clean stop."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from gateway.client.loadtest.client import Target, send
from gateway.client.loadtest.metrics import Sample
from gateway.client.loadtest.workload import Workload


@dataclass(frozen=True)
class Plan:
    """How much load, for how long. `rate` set means open loop, and `users` caps requests in flight."""

    users: int
    ramp_up_s: float
    duration_s: float  # includes the ramp-up, as a JMeter thread group's duration does
    rate: float | None = None
    max_requests: int = 10_000
    grace_s: float = 10.0  # how long requests in flight at the end may take to finish
    think_s: float = 0.0  # closed loop: pause between a user's requests
    seed: int = 0

    @property
    def mode(self) -> str:
        return "open" if self.rate else "closed"


@dataclass
class Run:
    """A run's live state, read by the progress line and the reports."""

    plan: Plan
    samples: list[Sample] = field(default_factory=list)
    epoch: float = field(default_factory=time.perf_counter)
    active_users: int = 0
    in_flight: int = 0
    issued: int = 0
    dropped: int = 0  # open loop: arrivals not sent because `users` requests were already in flight
    cancelled: int = 0  # in flight when the run ended (Ctrl-C or the grace period ran out): not samples
    interrupted: bool = False
    wall_s: float = 0.0
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    def now(self) -> float:
        return time.perf_counter() - self.epoch

    def interrupt(self) -> None:
        """Ctrl-C: stop sending, abandon what is in flight, report what finished."""
        self.interrupted = True
        self.stopping.set()

    def may_send(self) -> bool:
        if self.stopping.is_set() or self.now() >= self.plan.duration_s:
            return False
        return self.issued < self.plan.max_requests


async def execute(plan: Plan, target: Target, workload: Workload, run: Run | None = None,
                  tick: Callable[[Run], None] | None = None, tick_s: float = 1.0) -> Run:
    """Run `plan` to the end (or until `run.interrupt()`); the samples are in the returned Run."""
    run = run or Run(plan)
    run.epoch = time.perf_counter()
    tasks: set[asyncio.Task[None]] = set()
    connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300)
    async with aiohttp.ClientSession(connector=connector) as session:
        ticker = asyncio.create_task(_tick(run, tick, tick_s)) if tick else None

        async def one(user: int = -1) -> None:
            run.issued += 1
            run.in_flight += 1
            try:
                sample = await send(session, target, workload.next_body(), workload.stream, run.epoch)
                sample.user = user
                run.samples.append(sample)
            finally:
                run.in_flight -= 1

        if plan.rate:
            await _open_loop(run, one, tasks)
        else:
            await _closed_loop(run, one, tasks)
        await _drain(run, tasks)
        run.wall_s = run.now()
        if ticker:
            ticker.cancel()
    return run


async def _closed_loop(run: Run, one: Callable[[int], Coroutine[Any, Any, None]], tasks: set[asyncio.Task[None]]) -> None:
    plan = run.plan

    async def user(index: int) -> None:
        # User i starts at i/N of the ramp-up, so all N are running when the ramp-up ends.
        if await _sleep_until(run, plan.ramp_up_s * index / plan.users):
            return
        run.active_users += 1
        try:
            while run.may_send():
                await one(index)
                if plan.think_s and await _sleep_until(run, run.now() + plan.think_s):
                    return
        finally:
            run.active_users -= 1

    users = [asyncio.create_task(user(i)) for i in range(plan.users)]
    tasks.update(users)
    for task in users:
        task.add_done_callback(tasks.discard)
    # Until the duration ends, or sooner if every user stopped (the request cap was reached).
    stop = asyncio.ensure_future(run.stopping.wait())
    while not stop.done() and run.now() < plan.duration_s and any(not t.done() for t in users):
        await asyncio.wait([*(t for t in users if not t.done()), stop],
                           timeout=max(0.0, plan.duration_s - run.now()), return_when=asyncio.FIRST_COMPLETED)
    stop.cancel()


async def _open_loop(run: Run, one: Callable[[int], Coroutine[Any, Any, None]], tasks: set[asyncio.Task[None]]) -> None:
    plan = run.plan
    assert plan.rate
    rng = random.Random(plan.seed)
    at = 0.0
    while True:
        # Arrivals at the full rate, each kept with probability rate(t)/rate (thinning): a Poisson process
        # whose rate climbs linearly to `rate` over the ramp-up.
        at += rng.expovariate(plan.rate)
        if plan.ramp_up_s > 0 and at < plan.ramp_up_s and rng.random() >= at / plan.ramp_up_s:
            continue
        if await _sleep_until(run, at) or not run.may_send():
            return
        run.active_users = run.in_flight
        if run.in_flight >= plan.users:
            run.dropped += 1
            continue
        task = asyncio.create_task(one(-1))
        tasks.add(task)
        task.add_done_callback(tasks.discard)


async def _drain(run: Run, tasks: set[asyncio.Task[None]]) -> None:
    """Let requests in flight finish within the grace period (not on interrupt), then cancel them."""
    deadline = run.now() + run.plan.grace_s
    stop = asyncio.ensure_future(run.stopping.wait())
    try:
        while not run.interrupted:
            pending = [t for t in tasks if not t.done()]
            left = deadline - run.now()
            if not pending or left <= 0:
                break
            await asyncio.wait([*pending, stop], timeout=left, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.cancel()
    pending = [t for t in tasks if not t.done()]
    run.cancelled += run.in_flight
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
    run.active_users = 0


async def _sleep_until(run: Run, at: float) -> bool:
    """Sleep until `at` seconds into the run; True when the run was stopped meanwhile."""
    delay = at - run.now()
    if delay <= 0:
        return run.stopping.is_set()
    try:
        await asyncio.wait_for(run.stopping.wait(), delay)
        return True
    except TimeoutError:
        return False


async def _tick(run: Run, tick: Callable[[Run], None], every: float) -> None:
    while True:
        await asyncio.sleep(every)
        tick(run)
