"""The three workloads of `make bench-routing` (bench/routing.py), as open-loop request plans.

(a) agent: phone-agent sessions arriving over time (Poisson), 6 sequential steps each: a ~2,000-token
    system prompt, the session's growing history (earlier screenshots dropped, as Open-AutoGLM does)
    and one fresh screenshot per step.
(b) groups: 24 groups x 5 users; a 1,500-token group prefix and a 100-token question per request.
(c) unique: prompts that share nothing (1,600 tokens).
Token counts are the simulator's (4 characters a token; an image is `image_tokens` tokens).
"""

from __future__ import annotations

import base64
import random
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

AGENT_STEPS = 6
GROUPS, USERS = 24, 5
WORDS = ("tap", "screen", "open", "message", "settings", "contact", "search", "scroll", "button", "list",
         "photo", "wifi", "battery", "app", "home", "back", "type", "send", "menu", "share")


def _text(rnd: random.Random, tokens: int) -> str:
    """About `tokens` simulator tokens of varied text."""
    out: list[str] = []
    size = 0
    while size < tokens * 4:
        w = rnd.choice(WORDS) + str(rnd.randrange(100))
        out.append(w)
        size += len(w) + 1
    return " ".join(out)


def _png(width: int, height: int, pixels: bytes) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + pixels[y * width * 3:(y + 1) * width * 3] for y in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def _screenshot(rnd: random.Random) -> dict[str, Any]:
    """A fresh screenshot part: a small random PNG as a base64 data URL (the simulator charges
    `image_tokens` for it whatever its size)."""
    data = base64.b64encode(_png(48, 48, rnd.randbytes(48 * 48 * 3))).decode()
    return {"type": "image_url", "image_url": {"url": "data:image/png;base64," + data}}


@dataclass
class Session:
    """A request plan: sent `at` seconds (simulated) into the level; its bodies go one after another."""

    at: float
    bodies: list[dict[str, Any]] = field(default_factory=list)
    max_tokens: int = 64


def agent(rate: float, duration: float, seed: int) -> list[Session]:
    """`rate` sessions a second."""
    rnd = random.Random(seed)
    system = "You are a phone agent. " + _text(random.Random(1), 2000)
    sessions = []
    for t in _arrivals(rate, duration, rnd):
        task = f"Task {rnd.randrange(10**9)}: " + _text(rnd, 50)
        s = Session(t, max_tokens=64)
        done: list[dict[str, Any]] = []
        for step in range(AGENT_STEPS):
            screen = [{"type": "text", "text": f"step {step}: current screen"}, _screenshot(rnd)]
            first = [{"type": "text", "text": task}, *screen] if step == 0 else None
            msgs = [{"role": "system", "content": system}, {"role": "user", "content": task}, *done]
            if first is not None:
                msgs = [msgs[0], {"role": "user", "content": first}]
            else:
                msgs.append({"role": "user", "content": screen})
            s.bodies.append({"messages": msgs})
            # What the next step keeps: this step's screen as text (the screenshot dropped) and the action.
            done += [{"role": "user", "content": f"step {step}: screen described " + _text(rnd, 60)},
                     {"role": "assistant", "content": "<think>" + _text(rnd, 250) + "</think> "
                                                      f"do(action=tap, element=[{step}, {rnd.randrange(999)}])"}]
        sessions.append(s)
    return sessions


def _arrivals(rate: float, duration: float, rnd: random.Random) -> Iterator[float]:
    """Poisson arrival times within `duration`."""
    t = rnd.expovariate(rate)
    while t < duration:
        yield t
        t += rnd.expovariate(rate)


def groups(rate: float, duration: float, seed: int) -> list[Session]:
    """`rate` requests a second, each from a random user of a random group."""
    prefixes = [f"Document {g}. " + _text(random.Random(100 + g), 1500) for g in range(GROUPS)]
    rnd = random.Random(seed)
    out = []
    for t in _arrivals(rate, duration, rnd):
        g, u = rnd.randrange(GROUPS), rnd.randrange(USERS)
        question = f"User {g}-{u} asks {rnd.randrange(10**9)}: " + _text(rnd, 100)
        out.append(Session(t, [{"messages": [{"role": "system", "content": prefixes[g]},
                                             {"role": "user", "content": question}]}], max_tokens=32))
    return out


def unique(rate: float, duration: float, seed: int) -> list[Session]:
    """`rate` requests a second, no two sharing a prefix."""
    rnd = random.Random(seed)
    return [Session(t, [{"messages": [{"role": "user", "content": f"{rnd.randrange(10**12)} " + _text(rnd, 1600)}]}],
                    max_tokens=32) for t in _arrivals(rate, duration, rnd)]


WORKLOADS = {"agent": agent, "groups": groups, "unique": unique}
