"""Keep-alive connections from the ALB to its targets, reused across requests.

An ALB keeps connections to its targets open and sends the next request on
one that is idle.  A pooled connection the target has closed meanwhile is
noticed when taken (EOF already read) and dropped; the race where the
target closes it just as a request goes out is the proxy's to handle (it
retries a bodiless request once on a fresh connection).

Connections are keyed by (address, port, source address, TLS) since an
ALB node connects from its own ENI.
"""
from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field

from agents.elb.alb.checks import TARGET_TLS

CONNECT_TIMEOUT = 10.0          # AWS's, fixed: then 504
MAX_IDLE_PER_TARGET = 64
IDLE_SECONDS = 60.0             # an idle pooled connection is closed after this
# asyncio reads up to 256 KiB per recv, an allocation glibc serves with mmap,
# mremap and munmap for every small read; 64 KiB comes from the heap (a read
# still takes all that is there, up to that size).
READ_SIZE = 64 * 1024

Key = tuple[str, int, "str | None", bool]


@dataclass
class Conn:
    key: Key
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    loop: asyncio.AbstractEventLoop
    reused: bool = False
    idle_since: float = field(default_factory=time.monotonic)

    def usable(self, now: float) -> bool:
        return (not self.writer.is_closing() and not self.reader.at_eof()
                and now - self.idle_since < IDLE_SECONDS)


class TargetPool:
    def __init__(self, connect_timeout: float = CONNECT_TIMEOUT):
        self.connect_timeout = connect_timeout
        self.idle: dict[Key, deque[Conn]] = {}
        self.opened = 0

    async def acquire(self, address: str, port: int, source: str | None = None,
                      tls: bool = False, fresh: bool = False) -> Conn:
        """An idle connection to the target, or a new one.  Raises OSError when
        the target refuses and asyncio.TimeoutError after connect_timeout."""
        key = (address, port, source, tls)
        idle = self.idle.get(key)
        now = time.monotonic()
        while idle and not fresh:
            conn = idle.pop()
            if conn.usable(now):
                conn.reused = True
                return conn
            conn.writer.close()
        reader, writer = await asyncio.wait_for(asyncio.open_connection(
            address, port, ssl=TARGET_TLS if tls else None,
            local_addr=(source, 0) if source else None), self.connect_timeout)
        self.opened += 1
        small_reads(writer)
        return Conn(key, reader, writer, asyncio.get_running_loop())

    def release(self, conn: Conn) -> None:
        """Put a connection whose exchange completed back for the next request."""
        idle = self.idle.setdefault(conn.key, deque())
        if conn.writer.is_closing() or len(idle) >= MAX_IDLE_PER_TARGET:
            conn.writer.close()
            return
        conn.idle_since = time.monotonic()
        idle.append(conn)

    @staticmethod
    def discard(conn: Conn) -> None:
        conn.writer.close()

    def prune(self, wanted: set[tuple[str, int]] | None = None) -> None:
        """Close idle connections that timed out or (wanted given) go to
        targets no longer registered."""
        now = time.monotonic()
        for key in list(self.idle):
            keep = wanted is None or (key[0], key[1]) in wanted
            fresh = deque()
            for conn in self.idle[key]:
                if keep and conn.usable(now):
                    fresh.append(conn)
                else:
                    conn.writer.close()
            if fresh:
                self.idle[key] = fresh
            else:
                del self.idle[key]

    def close(self) -> None:
        self.prune(set())


def small_reads(writer: asyncio.StreamWriter) -> None:
    """Make a plain TCP transport read READ_SIZE at most per recv (TLS ones
    have no such setting and keep theirs)."""
    if hasattr(writer.transport, "max_size"):
        writer.transport.max_size = READ_SIZE
