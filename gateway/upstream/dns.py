"""A tiny async DNS client: A records over UDP, for asking one named DNS server directly.

Discovery needs only "which IPv4 addresses does this name have now", so a full resolver library
would be dead weight. Without an explicit server the system resolver (getaddrinfo) is used instead.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import socket
import struct

TYPE_A = 1
CLASS_IN = 1


class DnsError(Exception):
    """The name could not be resolved (timeout, server failure, malformed answer)."""


def encode_name(name: str) -> bytes:
    """A domain name in DNS wire format (length-prefixed labels, ending with the root)."""
    out = b""
    for label in name.rstrip(".").split("."):
        raw = label.encode("idna")
        if not 0 < len(raw) < 64:
            raise DnsError(f"invalid name {name!r}")
        out += bytes([len(raw)]) + raw
    return out + b"\x00"


def build_query(name: str, qid: int) -> bytes:
    """A standard query with recursion desired, one question: `name` IN A."""
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + encode_name(name) + struct.pack("!HH", TYPE_A,
                                                                                               CLASS_IN)


def skip_name(msg: bytes, pos: int) -> int:
    """The offset just past the (possibly compressed) name at `pos`."""
    while True:
        if pos >= len(msg):
            raise DnsError("truncated name")
        length = msg[pos]
        if length & 0xC0 == 0xC0:  # a compression pointer ends the name
            return pos + 2
        if length == 0:
            return pos + 1
        pos += 1 + length


def parse_a_answers(msg: bytes, qid: int) -> list[str]:
    """The IPv4 addresses in a response; NXDOMAIN is an empty list, any other failure raises."""
    if len(msg) < 12:
        raise DnsError("short response")
    rid, flags, qdcount, ancount, _, _ = struct.unpack("!HHHHHH", msg[:12])
    if rid != qid or not flags & 0x8000:
        raise DnsError("response does not match the query")
    rcode = flags & 0x000F
    if rcode == 3:  # NXDOMAIN: a headless service with no ready pods has no records at all
        return []
    if rcode != 0:
        raise DnsError(f"server answered rcode {rcode}")
    pos = 12
    for _ in range(qdcount):
        pos = skip_name(msg, pos) + 4
    addresses = []
    for _ in range(ancount):
        pos = skip_name(msg, pos)
        if pos + 10 > len(msg):
            raise DnsError("truncated answer")
        rtype, rclass, _ttl, rdlength = struct.unpack("!HHIH", msg[pos:pos + 10])
        pos += 10
        if rtype == TYPE_A and rclass == CLASS_IN and rdlength == 4:
            addresses.append(str(ipaddress.IPv4Address(msg[pos:pos + 4])))
        pos += rdlength  # CNAMEs and others are skipped; the server includes the final A records
    return addresses


class _Exchange(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: object) -> None:
        if not self.answer.done():
            self.answer.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.answer.done():
            self.answer.set_exception(exc)


async def query_a(name: str, server: tuple[str, int], timeout_s: float = 2.0) -> list[str]:
    """Ask `server` for the A records of `name`; sorted, de-duplicated addresses."""
    loop = asyncio.get_running_loop()
    qid = random.randrange(1 << 16)  # random ids: a spoofed answer must guess it
    transport, proto = await loop.create_datagram_endpoint(_Exchange, remote_addr=server)
    try:
        transport.sendto(build_query(name, qid))
        try:
            data = await asyncio.wait_for(proto.answer, timeout_s)
        except TimeoutError:
            raise DnsError(f"no answer from {server[0]}:{server[1]} within {timeout_s}s") from None
        except OSError as exc:
            raise DnsError(f"{server[0]}:{server[1]}: {exc}") from None
    finally:
        transport.close()
    return sorted(set(parse_a_answers(data, qid)))


async def system_a(name: str, timeout_s: float = 2.0) -> list[str]:
    """The IPv4 addresses of `name` from the system resolver (kube-dns in a pod)."""
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(loop.getaddrinfo(name, None, family=socket.AF_INET,
                                                        type=socket.SOCK_STREAM), timeout_s)
    except socket.gaierror as exc:
        if exc.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", -5)):
            return []
        raise DnsError(f"{name}: {exc.strerror}") from None
    except TimeoutError:
        raise DnsError(f"{name}: system resolver timed out") from None
    return sorted({str(info[4][0]) for info in infos})
