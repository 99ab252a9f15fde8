"""RESP (the Redis protocol) encoding of script calls; the only place that builds Redis bytes.

hiredis packs a command argument by argument, formatting each with sprintf: for the limit check (20
arguments, most of them the same for every request of a caller) that costs more than the rest of the
check's client-side work. Here a call is joined from encoded pieces, and what repeats (small integers,
the keys and quota specs of a limiter's callers, the operation names of SETTLE) is encoded once and kept.
"""

from __future__ import annotations

PING = b"*1\r\n$4\r\nPING\r\n"


def bulk(value: str | bytes) -> bytes:
    """One argument as a RESP bulk string."""
    data = value.encode() if isinstance(value, str) else value
    return b"$%d\r\n%b\r\n" % (len(data), data)


SMALL = 4096
INTS = [bulk(b"%d" % i) for i in range(SMALL)]  # 0 <= i < SMALL, encoded

_LARGER: dict[int, bytes] = {}  # other integers seen lately (config values, the current bucket)


def bulk_int(value: int) -> bytes:
    """An integer argument (kept: integers repeat, a bucket index for a whole bucket width)."""
    if 0 <= value < SMALL:
        return INTS[value]
    found = _LARGER.get(value)
    if found is None:
        if len(_LARGER) >= 4096:
            _LARGER.clear()  # a bucket index changes once per bucket width: keep the recent ones
        data = b"%d" % value
        found = _LARGER[value] = b"$%d\r\n%b\r\n" % (len(data), data)
    return found


def arguments(values: list[str | bytes | int]) -> list[bytes]:
    """Plain values (keys, arguments) encoded, one bulk string each."""
    out = []
    for value in values:
        if isinstance(value, int):
            out.append(bulk_int(value))
        else:
            out.append(bulk(value))
    return out


def script_head(verb: str, what: str) -> bytes:
    """A script call's first two arguments: `EVALSHA <sha>`, or `EVAL <source>`."""
    return bulk(verb) + bulk(what)


def script_call(head: bytes, nkeys: int, parts: list[bytes]) -> bytes:
    """A script call from encoded pieces: `head` (`script_head`), the number of keys, then `parts`,
    the keys and the arguments, each encoded (`bulk`, `bulk_int`)."""
    return b"*%d\r\n%b%b%b" % (3 + len(parts), head, INTS[nkeys] if nkeys < SMALL else bulk_int(nkeys),
                                b"".join(parts))


def decode(parts: list[bytes]) -> list[bytes]:
    """Encoded arguments back to their values (for redis-py, which encodes them itself: Redis Cluster)."""
    return [part[part.index(b"\r\n") + 2:-2] for part in parts]
