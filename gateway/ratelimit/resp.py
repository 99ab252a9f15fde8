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


def bulk_int(value: int) -> bytes:
    return INTS[value] if 0 <= value < SMALL else bulk(b"%d" % value)
