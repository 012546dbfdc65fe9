"""A Classic ELB listener: a TCP proxy on VIP:port that picks a healthy target
per new connection and splices bytes both ways.

Like a Classic ELB it terminates the client's connection and opens its own to
`<node>:<nodePort>` from the ELB's VPC address, so the node (and under a
Cluster policy the pod, after kube-proxy's masquerade) never sees the client.
Clients outside `loadBalancerSourceRanges` are closed at once (the ELB host's
netfilter drops them earlier still; this is the second line).
"""
from __future__ import annotations

import asyncio
import collections
import logging
import random
from collections.abc import Callable

log = logging.getLogger("elb.classic")
CONNECT_TIMEOUT = 3.0
CHUNK = 65536

Chooser = Callable[[], "list[str]"]     # -> addresses of the targets in service


class ClassicListener:
    """One listener; start() binds, close() stops accepting and cuts connections."""

    def __init__(self, vip: str, port: int, node_port: int, in_service: Chooser,
                 allows: Callable[[str], bool], source: str | None = None,
                 rng: random.Random | None = None):
        self.vip, self.port, self.node_port = vip, port, node_port
        self.in_service = in_service
        self.allows = allows
        self.source = source
        self.rng = rng or random.Random()
        self.sent = collections.Counter()       # target address -> connections
        self.failed = collections.Counter()     # target address ("-" none) -> failures
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.vip, self.port,
                                                  reuse_address=True, backlog=1024)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2)

    def choose(self) -> str | None:
        targets = self.in_service()
        return self.rng.choice(targets) if targets else None

    async def _accept(self, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._tasks.add(task)
        try:
            await self._proxy(reader, writer)
        except asyncio.CancelledError:
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _proxy(self, reader, writer) -> None:
        client = writer.get_extra_info("peername")[0]
        if not self.allows(client):
            return
        target = self.choose()
        if target is None:
            self.failed["-"] += 1
            return
        try:
            up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(
                target, self.node_port,
                local_addr=(self.source, 0) if self.source else None), CONNECT_TIMEOUT)
        except (OSError, asyncio.TimeoutError) as err:
            self.failed[target] += 1
            log.info("listener %s:%d: target %s:%d failed: %s", self.vip, self.port,
                     target, self.node_port, err or type(err).__name__)
            return
        self.sent[target] += 1
        try:
            await asyncio.gather(_pump(reader, up_writer), _pump(up_reader, writer))
        finally:
            up_writer.close()


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until EOF, then half-close the other side."""
    try:
        while True:
            data = await reader.read(CHUNK)
            if not data:
                break
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.close()
