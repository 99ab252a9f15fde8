"""In process: `balancer: inference` (gateway/upstream/inference.py, prompt_key.py, prefix_index.py,
signals.py): prefix affinity, session spreading, the load guard, bounded hashing, dead replicas."""

from __future__ import annotations

import random
import time
from collections import Counter
from typing import Any

import pytest

from gateway.config.schema import EndpointConfig, PoolConfig
from gateway.upstream.config import NAME, InferenceConfig, PoolOptions
from gateway.upstream.pool import Endpoint, Pool
from gateway.upstream.prompt_key import BLOCK_BYTES, MAX_BYTES, media_digest, prompt_key
from gateway.upstream.signals import EndpointSignals, parse
from tests.upstream.conftest import seeded_random

SYSTEM = "You are a phone agent. " * 400  # ~9 KB, every session shares it


_seeded = seeded_random(7)  # the balancers draw from `random`: repeatable distributions


def _pool(n: int = 4, **inference: Any) -> Pool:
    eps = tuple(EndpointConfig(url=f"http://r{i}:8000") for i in range(n))
    return Pool(PoolConfig(name="p", endpoints=eps, models=("m",), balancer="inference",
                           sections={NAME: PoolOptions(inference=InferenceConfig(**inference))}))


def _chat(*messages: tuple[str, Any], user: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "m", "messages": [{"role": r, "content": c} for r, c in messages]}
    if user:
        body["user"] = user
    return body


def _key(body: dict[str, Any]) -> Any:
    return prompt_key("m", body)


def _image(seed: int, size: int = 200_000) -> dict[str, Any]:
    rnd = random.Random(seed)
    data = "".join(rnd.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/") for _ in range(size))
    return {"type": "image_url", "image_url": {"url": "data:image/png;base64," + data}}


def test_chained_blocks_share_exactly_the_common_prefix() -> None:
    a = _key(_chat(("system", SYSTEM), ("user", "open the settings")))
    b = _key(_chat(("system", SYSTEM), ("user", "call mum")))
    shared = len(SYSTEM) // BLOCK_BYTES
    assert a.blocks[:shared] == b.blocks[:shared] and a.blocks[-1] != b.blocks[-1]
    assert a.session != b.session  # system prompt + first user message, never the system prompt alone
    # the model is part of the key
    other = prompt_key("other", _chat(("system", SYSTEM)))
    assert other is not None and other.blocks[0] != a.blocks[0]
    # a later step of the same session keeps its session key and extends its blocks
    later = _key(_chat(("system", SYSTEM), ("user", "open the settings"), ("assistant", "ok"), ("user", "next")))
    assert later.session == a.session and later.blocks[:len(a.blocks) - 1] == a.blocks[:-1]
    # a client's hint wins
    assert _key(_chat(("system", SYSTEM), ("user", "x"), user="u1")).session == _key(
        _chat(("system", SYSTEM), ("user", "y"), user="u1")).session


def test_images_are_keyed_by_their_content_and_cost_a_constant_sample() -> None:
    one, two = _image(1), _image(2)
    k1 = _key(_chat(("user", [{"type": "text", "text": "step"}, one])))
    k1b = _key(_chat(("user", [{"type": "text", "text": "step"}, one])))
    k2 = _key(_chat(("user", [{"type": "text", "text": "step"}, two])))
    assert k1 == k1b and k1.blocks[-1] != k2.blocks[-1]
    big = "A" * (4 * 1024 * 1024)
    started = time.perf_counter()
    media_digest(big)
    assert time.perf_counter() - started < 0.05
    assert media_digest(big) != media_digest(big[:-1] + "B")  # the tail is sampled


def test_hashing_is_bounded_for_huge_prompts_and_thousands_of_messages() -> None:
    huge = _key(_chat(("user", "x" * (1024 * 1024))))
    assert len(huge.blocks) == MAX_BYTES // BLOCK_BYTES
    many = _key(_chat(*[("user", f"message {i}") for i in range(20_000)]))
    assert len(many.blocks) <= MAX_BYTES // BLOCK_BYTES
    assert prompt_key("m", {"messages": "nope"}) is None and prompt_key("m", {"input": "embed me"}) is None
    assert _key({"messages": [None, 3, {"role": 5, "content": {"x": 1}}]}) is not None  # garbage: no crash


def test_a_session_sticks_to_one_replica_and_sessions_spread() -> None:
    pool = _pool()
    hosts: dict[int, list[str]] = {}
    for wave in range(5):  # 8 sessions at a time, their steps interleaved (as concurrent agents' are)
        histories = {s: [("system", SYSTEM), ("user", f"task {s}")] for s in range(wave * 8, wave * 8 + 8)}
        for step in range(4):
            for s, history in histories.items():
                hosts.setdefault(s, []).append(pool.pick(None, _key(_chat(*history))).host)
                history += [("assistant", f"action {step} " + "because " * 100), ("user", f"screen {step}")]
    # Once a session has a history of its own (from its second step), it stays where that history is.
    # (Its first step shares only the system prompt and the task with the rest: moving then costs nothing.)
    moved = {s: h for s, h in hosts.items() if len(set(h[1:])) > 1}
    assert not moved, moved
    spread = Counter(h[-1] for h in hosts.values())
    assert len(spread) == 4 and max(spread.values()) <= 1.5 * min(spread.values()), spread


def _groups(pool: Pool, groups: int, users: int) -> dict[int, Counter[str]]:
    """Shared-prefix groups (a document each) asked by several users, interleaved."""
    seen: dict[int, Counter[str]] = {g: Counter() for g in range(groups)}
    for u in range(users):
        for g in range(groups):
            body = _chat(("system", f"document {g} " * 600), ("user", f"question {u}"))
            seen[g][pool.pick(None, _key(body)).host] += 1
    return seen


def test_a_shared_prefix_group_meets_on_one_replica_and_groups_spread() -> None:
    seen = _groups(_pool(), 12, 6)
    # Most of each group's users reach one replica (the guard may move a few requests to keep the counts
    # even: 12 groups do not split evenly over 4 replicas by hash) ...
    assert sum(hosts.most_common(1)[0][1] for hosts in seen.values()) >= 0.85 * 12 * 6, seen
    # ... and the groups spread: no replica runs more than 1.5x the requests of another.
    per_host = sum(seen.values(), Counter())
    assert len(per_host) == 4 and max(per_host.values()) <= 1.5 * min(per_host.values()), per_host


def test_load_guard_gives_way_before_a_hot_spot() -> None:
    pool = _pool()
    _groups(pool, 12, 2)
    group = _chat(("system", "document 3 " * 600), ("user", "q"))
    home = pool.pick(None, _key(group))
    home.in_flight = 8  # the others are idle: affinity would pile onto it
    assert pool.pick(None, _key(group)) is not home
    # the server's own queue counts too (another gateway's traffic), while fresh
    home.in_flight = 0
    home.signals = EndpointSignals(waiting=6, running=16, kv=0.9, at=time.monotonic())
    assert pool.pick(None, _key(group)) is not home
    home.signals = EndpointSignals(waiting=6, running=16, kv=0.9, at=time.monotonic() - 5)  # stale: unknown
    assert pool.inference is not None and pool.inference.load(home, time.monotonic()) == 0


def test_at_light_load_a_session_keeps_its_replica_with_a_few_requests_in_flight() -> None:
    # A batching server takes a few more requests at almost no cost; the step's cached history elsewhere
    # would be a prefill of the whole prompt. Only past the guard's slack (4 ahead of the least loaded)
    # does the step move.
    pool = _pool(3)
    history = [("system", SYSTEM), ("user", "task 1"), ("assistant", "action " + "because " * 100),
               ("user", "screen 1")]
    home = pool.pick(None, _key(_chat(*history)))
    history += [("assistant", "action 2"), ("user", "screen 2")]
    for in_flight in (1, 2, 3):
        home.in_flight = in_flight
        assert pool.pick(None, _key(_chat(*history))) is home, in_flight
    home.in_flight = 4
    assert pool.pick(None, _key(_chat(*history))) is not home


def test_a_failed_or_ejected_replica_loses_its_affinity_at_once() -> None:
    pool = _pool(2)
    assert pool.inference is not None
    _groups(pool, 12, 2)
    group = _key(_chat(("system", "document 3 " * 600), ("user", "q")))
    home = pool.pick(None, group)
    other = next(e for e in pool.endpoints if e is not home)
    pool.on_failure(home)  # one failure: still in rotation, but its prefixes are forgotten
    assert home not in pool.inference.index.match(group.blocks, 0).depth
    pool.eject(home)
    assert {pool.pick(None, group) for _ in range(5)} == {other}


def test_affinity_never_blocks_a_request() -> None:
    pool = _pool(2, load_factor=1.0)
    limit = pool.config.max_inflight_per_endpoint
    prefix = "shared document " * 500
    home = pool.pick(None, _key(_chat(("system", prefix), ("user", "q"))))
    home.in_flight = limit  # full: not a candidate
    assert pool.pick(None, _key(_chat(("system", prefix), ("user", "q2")))) is not home
    home.in_flight = 0
    assert pool.pick({home}, _key(_chat(("system", prefix), ("user", "q3")))) is not home  # a retry
    assert isinstance(pool.pick(None, None), Endpoint)  # nothing to hash: least loaded


def test_index_is_bounded() -> None:
    pool = _pool(2, index_blocks=64)
    assert pool.inference is not None
    for i in range(200):
        pool.pick(None, _key(_chat(("user", f"{i} " + "words " * 300))))
    assert len(pool.inference.index) <= 64


@pytest.mark.parametrize("text", [
    b"", b"\xff\xfe garbage \x00", b"vllm:num_requests_waiting{a} lots\n", b"vllm:num_requests_waiting NaN\n",
    b"# only comments\nhttp_requests_total 5\n"])
def test_garbage_metrics_are_no_reading(text: bytes) -> None:
    assert parse(text) is None


def test_vllm_and_sglang_metrics_are_read() -> None:
    vllm = parse(b'# HELP x\nvllm:num_requests_waiting{model_name="a"} 3.0\n'
                 b'vllm:num_requests_waiting{model_name="b"} 1.0\nvllm:num_requests_running{model_name="a"} 7\n'
                 b'vllm:kv_cache_usage_perc{model_name="a"} 0.42\nvllm:prefix_cache_queries_total 200\n'
                 b'vllm:prefix_cache_hits_total 150\n')
    assert vllm is not None and (vllm.waiting, vllm.running, vllm.kv, vllm.hit_share) == (4.0, 7.0, 0.42, 0.75)
    sglang = parse(b'sglang:num_queue_reqs{model_name="x"} 2\nsglang:num_running_reqs{model_name="x"} 5\n'
                   b'sglang:token_usage{model_name="x"} 0.8\n')
    assert sglang is not None and (sglang.waiting, sglang.running, sglang.kv) == (2.0, 5.0, 0.8)
