"""Asking the upstream (VPC) resolver: one question, one answer, bounded in time.

Used for names outside the cluster zone and to chase ExternalName targets.
A fresh connected UDP socket per question (replies from anyone else are
ignored by the kernel), a random ID checked on the way back, and TCP when the
UDP answer comes back truncated. Blocking by design: the server calls it from
a small thread pool, never from its event loop.
"""
from __future__ import annotations

import secrets
import socket
import time

from dnslib import EDNS0, DNSHeader, DNSRecord

from agents.dns import wire
from agents.dns.errors import UpstreamError, UpstreamTimeout

UPSTREAM_EDNS_PAYLOAD = 1232


class UpstreamResolver:
    """`resolver(question_record) -> reply_record`; raises UpstreamError / UpstreamTimeout."""

    def __init__(self, address: tuple[str, int], timeout: float = 2.0, *, tcp: bool = False):
        self.address = (address[0], int(address[1]))
        self.timeout = timeout
        self.tcp = tcp                  # forward's force_tcp

    def __repr__(self) -> str:
        return f"UpstreamResolver({self.address[0]}:{self.address[1]}, timeout={self.timeout})"

    def __call__(self, question: DNSRecord) -> DNSRecord:
        query = DNSRecord(DNSHeader(id=secrets.randbits(16), rd=1), q=question.q)
        query.add_ar(EDNS0(udp_len=UPSTREAM_EDNS_PAYLOAD))
        deadline = time.monotonic() + self.timeout
        if self.tcp:
            return self._over_tcp(query, deadline)
        reply = self._over_udp(query, deadline)
        if reply.header.tc:
            reply = self._over_tcp(query, deadline)
        return reply

    def _remaining(self, deadline: float) -> float:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise UpstreamTimeout(self.address, f"no answer within {self.timeout}s")
        return remaining

    def _matches(self, query: DNSRecord, data: bytes) -> DNSRecord | None:
        try:
            reply = DNSRecord.parse(data)
        except wire.PARSE_ERRORS as error:
            raise UpstreamError(self.address, f"undecodable reply: {error}") from error
        if reply.header.id != query.header.id or not reply.header.qr:
            return None
        if reply.questions and str(reply.q.qname).lower() != str(query.q.qname).lower():
            return None
        return reply

    def _over_udp(self, query: DNSRecord, deadline: float) -> DNSRecord:
        with socket.socket(socket.AF_INET6 if ":" in self.address[0] else socket.AF_INET,
                           socket.SOCK_DGRAM) as sock:
            try:
                sock.connect(self.address)
                sock.send(query.pack())
                while True:
                    sock.settimeout(self._remaining(deadline))
                    reply = self._matches(query, sock.recv(65535))
                    if reply is not None:
                        return reply
            except TimeoutError as error:
                raise UpstreamTimeout(self.address, f"no answer within {self.timeout}s") from error
            except OSError as error:
                raise UpstreamError(self.address, f"UDP: {error}") from error

    def _over_tcp(self, query: DNSRecord, deadline: float) -> DNSRecord:
        data = query.pack()
        try:
            with socket.create_connection(self.address, timeout=self._remaining(deadline)) as sock:
                sock.sendall(len(data).to_bytes(2, "big") + data)
                length = int.from_bytes(self._read_exactly(sock, 2, deadline), "big")
                reply = self._matches(query, self._read_exactly(sock, length, deadline))
        except TimeoutError as error:
            raise UpstreamTimeout(self.address, f"no answer within {self.timeout}s") from error
        except OSError as error:
            raise UpstreamError(self.address, f"TCP: {error}") from error
        if reply is None:
            raise UpstreamError(self.address, "TCP reply does not match the query")
        return reply

    def _read_exactly(self, sock: socket.socket, count: int, deadline: float) -> bytes:
        chunks, received = [], 0
        while received < count:
            sock.settimeout(self._remaining(deadline))
            chunk = sock.recv(count - received)
            if not chunk:
                raise UpstreamError(self.address, "TCP connection closed mid-reply")
            chunks.append(chunk)
            received += len(chunk)
        return b"".join(chunks)
