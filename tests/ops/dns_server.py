"""A DNS server for tests: answers A queries on loopback from a table the test changes at will."""

from __future__ import annotations

import socket
import struct
import threading

from gateway.upstream.dns import CLASS_IN, TYPE_A, skip_name


class FakeDns:
    """UDP on 127.0.0.1, a free port. `records[name] = [ip, ...]`; unknown names get NXDOMAIN.

    `silent = True` makes it drop queries (a resolver outage).
    """

    def __init__(self) -> None:
        self.records: dict[str, list[str]] = {}
        self.silent = False
        self.queries = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True, name="fake-dns")

    def start(self) -> FakeDns:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()

    def set(self, name: str, addresses: list[str]) -> None:
        self.records[name.rstrip(".").lower()] = list(addresses)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                query, client = self.sock.recvfrom(512)
            except TimeoutError:
                continue
            except OSError:
                return
            self.queries += 1
            if not self.silent:
                self.sock.sendto(self.answer(query), client)

    def answer(self, query: bytes) -> bytes:
        qid = struct.unpack("!H", query[:2])[0]
        end = skip_name(query, 12)
        question = query[12:end + 4]
        labels, pos = [], 12
        while query[pos]:
            labels.append(query[pos + 1:pos + 1 + query[pos]].decode())
            pos += 1 + query[pos]
        addresses = self.records.get(".".join(labels).lower())
        if addresses is None:
            return struct.pack("!HHHHHH", qid, 0x8183, 1, 0, 0, 0) + question  # NXDOMAIN
        answers = b"".join(struct.pack("!HHHIH", 0xC00C, TYPE_A, CLASS_IN, 1, 4) + socket.inet_aton(a)
                           for a in addresses)  # 0xC00C: compressed pointer to the question's name
        return struct.pack("!HHHHHH", qid, 0x8180, 1, len(addresses), 0, 0) + question + answers
