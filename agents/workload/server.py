"""The workload server's event loop: listeners, connections and termination.

One asyncio loop serves every declared port, so thousands of short
connections per second cost no threads. Termination follows a pod's life:
on SIGTERM the pod is Terminating -- readiness turns 503 while it keeps
serving for the grace period -- then listeners close, in-flight connections
get a short drain, and the server returns.

Every request (HTTP), plain TCP session and UDP datagram gives one access-log
line (nginx's formats, protocol.py) to `log`; `AccessLog` writes them to
stdout -- the container's log -- without ever waiting: a line that does not
fit in the pipe is dropped and counted, so a slow log reader never slows the
data plane a lab measures.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import socket
import stat
import time
from collections.abc import Callable, Sequence

from agents.workload import protocol
from agents.workload.config import WorkloadConfig, WorkloadError

HTTP_HEAD_TIMEOUT = 5.0


LogLine = Callable[[str], None]


class AccessLog:
    """Access-log lines to a descriptor (stdout) that never block the server.

    Lines wait (up to HELD_MAX) until `open` has written the first line, the
    listening announcement, so it stays first."""

    HELD_MAX = 1000

    def __init__(self, fd: int = 1):
        self.fd = fd
        self.dropped = 0
        self._held: list[str] | None = []

    def open(self, first_line: str) -> None:
        mode = os.fstat(self.fd).st_mode
        if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):   # never a terminal others share
            os.set_blocking(self.fd, False)
        held, self._held = self._held or [], None
        for line in (first_line, *held):
            self(line)

    def __call__(self, line: str) -> None:
        if self._held is not None:
            if len(self._held) < self.HELD_MAX:
                self._held.append(line)
            else:
                self.dropped += 1
            return
        try:
            os.write(self.fd, line.encode("utf-8", "replace"))
        except (BlockingIOError, BrokenPipeError):
            self.dropped += 1


def _no_log(line: str) -> None:
    """Access logging off (the server embedded in a test)."""


class _UdpEcho(asyncio.DatagramProtocol):
    """Replies to every datagram with the pod identity and the source it saw."""

    def __init__(self, config: WorkloadConfig, log: LogLine):
        self.config = config
        self.log = log
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        reply = protocol.udp_reply(self.config.pod_name, self.config.pod_ip, addr, data)
        self.transport.sendto(reply[:65507], addr)
        self.log(protocol.stream_log_line(addr, "UDP", min(len(reply), 65507), len(data), 0.0))

    def error_received(self, exc: OSError) -> None:
        """ICMP errors for earlier replies (client gone): nothing to do for an echo."""


class WorkloadServer:
    """Serves a WorkloadConfig until terminate() is called (SIGTERM in the CLI).

    Use `await server.start()`, then `await server.serve_until_terminated()`.
    `bound_ports` holds (protocol, port) for every listener once started.
    listeners: sockets already bound (and listening, for TCP), one per port of
    the config in its order -- made elsewhere, e.g. in a pod's network
    namespace by the node's server (agents/workload/node.py).
    """

    def __init__(self, config: WorkloadConfig, log: LogLine | None = None,
                 listeners: Sequence[socket.socket] | None = None):
        self.config = config
        self.log = log or _no_log
        self._listeners = list(listeners) if listeners is not None else None
        self.bound_ports: list[tuple[str, int]] = []
        self._tcp_servers: list[asyncio.base_events.Server] = []
        self._udp_transports: list[asyncio.DatagramTransport] = []
        self._connections: set[asyncio.Task] = set()
        self._terminating = False
        self._term_requested: asyncio.Event | None = None
        self._stop_now: asyncio.Event | None = None

    # -- lifecycle -------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._term_requested = asyncio.Event()
        self._stop_now = asyncio.Event()
        try:
            for index, spec in enumerate(self.config.ports):
                where = ({"sock": self._listeners[index]} if self._listeners is not None
                         else None)
                if spec.protocol == "TCP":
                    server = await asyncio.start_server(
                        self._on_connection, **(where or {
                            "host": self.config.bind_ip, "port": spec.port,
                            "reuse_address": True}), backlog=self.config.backlog)
                    self._tcp_servers.append(server)
                    self.bound_ports.append(("TCP", server.sockets[0].getsockname()[1]))
                else:
                    transport, _ = await loop.create_datagram_endpoint(
                        lambda: _UdpEcho(self.config, self.log),
                        **(where or {"local_addr": (self.config.bind_ip, spec.port)}))
                    self._udp_transports.append(transport)
                    self.bound_ports.append(("UDP", transport.get_extra_info("sockname")[1]))
        except OSError as error:
            self._close_listeners()
            raise WorkloadError(
                f"cannot listen on {self.config.bind_ip} {spec}: {error}") from error

    def kill(self) -> None:
        """Stop at once, as SIGKILL would: no grace, no drain."""
        self._terminating = True
        self.config = dataclasses.replace(self.config, grace_seconds=0.0, drain_timeout=0.0)
        self._term_requested.set()
        self._stop_now.set()

    def terminate(self) -> None:
        """First call: become Terminating (grace starts). Second call: stop now."""
        if self._terminating:
            self._stop_now.set()
            return
        self._terminating = True
        self._term_requested.set()

    async def serve_until_terminated(self) -> None:
        await self._term_requested.wait()
        if self.config.grace_seconds > 0:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop_now.wait(), self.config.grace_seconds)
        self._close_listeners()
        pending = set(self._connections)
        if pending:
            _, still_running = await asyncio.wait(pending, timeout=self.config.drain_timeout)
            for task in still_running:
                task.cancel()
            if still_running:
                await asyncio.wait(still_running, timeout=self.config.drain_timeout)

    def _close_listeners(self) -> None:
        for server in self._tcp_servers:
            server.close()
        for transport in self._udp_transports:
            transport.close()
        self._tcp_servers.clear()
        self._udp_transports.clear()

    @property
    def ready(self) -> bool:
        """Ready unless Terminating, and (with --ready-file) only while the file exists."""
        if self._terminating:
            return False
        return self.config.ready_file is None or os.path.exists(self.config.ready_file)

    # -- connections -----------------------------------------------------

    async def _on_connection(self, reader: asyncio.StreamReader,
                             writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._connections.add(task)
        try:
            await self._serve_connection(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.TimeoutError):
            pass   # the client went away or went silent: its connection simply ends
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _serve_connection(self, reader, writer) -> None:
        peer = writer.get_extra_info("peername")
        local_port = writer.get_extra_info("sockname")[1]
        first = await self._read_first_bytes(reader)
        if protocol.sniff_protocol(first) is protocol.Sniff.HTTP:
            await self._serve_http(first, reader, writer, peer, local_port)
        else:
            await self._serve_echo(first, reader, writer, peer)

    async def _read_first_bytes(self, reader: asyncio.StreamReader) -> bytes:
        data = b""
        deadline = time.monotonic() + self.config.sniff_timeout
        while protocol.sniff_protocol(data) is protocol.Sniff.UNDECIDED:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                chunk = await asyncio.wait_for(reader.read(4096), remaining)
            except asyncio.TimeoutError:
                break
            if not chunk:
                break
            data += chunk
        return data

    async def _serve_http(self, head, reader, writer, peer, local_port) -> None:
        deadline = time.monotonic() + HTTP_HEAD_TIMEOUT
        while not protocol.header_complete(head) and len(head) <= protocol.MAX_HEADER_BYTES:
            chunk = await asyncio.wait_for(reader.read(4096), max(0.0, deadline - time.monotonic()))
            if not chunk:
                return
            head += chunk
        if not protocol.header_complete(head):
            response = protocol.HttpResponse(431, b"request header too large\n")
            request = None
        else:
            request = protocol.parse_request_line(head)
            view = protocol.ServerView(self.config.pod_name, self.config.pod_ip, peer,
                                       local_port, self.ready)
            response = protocol.route(request, view)
        head_only = request is not None and request.method == "HEAD"
        writer.write(protocol.render_response(response, self.config.pod_name, head_only))
        self.log(protocol.http_log_line(peer, head, response.status,
                                        0 if head_only else len(response.body)))
        await asyncio.wait_for(writer.drain(), HTTP_HEAD_TIMEOUT)

    async def _serve_echo(self, first, reader, writer, peer) -> None:
        began = time.monotonic()
        banner = protocol.banner_line(self.config.pod_name, self.config.pod_ip, peer)
        sent, received = len(banner) + len(first), len(first)
        try:
            writer.write(banner + first)
            await asyncio.wait_for(writer.drain(), self.config.idle_timeout)
            while True:
                chunk = await asyncio.wait_for(reader.read(65536), self.config.idle_timeout)
                if not chunk:
                    return
                received += len(chunk)
                writer.write(chunk)
                sent += len(chunk)
                await asyncio.wait_for(writer.drain(), self.config.idle_timeout)
        finally:
            self.log(protocol.stream_log_line(peer, "TCP", sent, received,
                                              time.monotonic() - began))
