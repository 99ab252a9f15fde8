"""RESP (the Redis protocol) encoding for the hot path's script calls.

hiredis packs a command argument by argument, formatting each with sprintf: for the limit check
(20 arguments, most of them the same for every request of a caller) that costs more than the rest
of the check's work in the gateway. Here the arguments that never change (a rule's key and quota
spec, small integers) are encoded once and kept, and a call is joined from encoded pieces.
"""

from __future__ import annotations


def bulk(value: str | bytes) -> bytes:
    """One argument as a RESP bulk string."""
    data = value.encode() if type(value) is str else value
    return b"$%d\r\n%b\r\n" % (len(data), data)


SMALL = 4096
INTS = [bulk(b"%d" % i) for i in range(SMALL)]  # 0 <= i < SMALL, encoded (`INTS[i] if i < SMALL`)


_LARGER: dict[int, bytes] = {}  # other integers seen lately (config values, the current bucket)


def bulk_int(value: int) -> bytes:
    if 0 <= value < SMALL:
        return INTS[value]
    found = _LARGER.get(value)
    if found is None:
        if len(_LARGER) >= 4096:
            _LARGER.clear()  # (a bucket index changes once per bucket width: keep the recent ones)
        data = b"%d" % value
        found = _LARGER[value] = b"$%d\r\n%b\r\n" % (len(data), data)
    return found
