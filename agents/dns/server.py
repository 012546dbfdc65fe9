"""The cluster DNS server: UDP and TCP on one port, metrics on another.

One asyncio loop in a thread the DnsServer owns answers everything the zone
can answer inline (with a per-zone cache of whole replies keyed by the query
bytes after the ID, so a storm of repeats costs a dict lookup). Only queries
that need the upstream resolver go to a small thread pool, and only a bounded
number of them at a time (REFUSED beyond, like CoreDNS's max_concurrent).
TCP reads are bounded by the 2-byte length and by read and idle timeouts.
"""
from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from dnslib import RCODE

from agents.dns import wire
from agents.dns.answer import answer_packet
from agents.dns.errors import DnsServerError, UpstreamNeeded
from agents.dns.metrics import DnsMetrics
from agents.dns.upstream import UpstreamResolver
from agents.dns.zone import Zone

FORWARD = object()           # marker: this query must be answered off the loop
UDP_RECEIVE_BUFFER = 4 * 1024 * 1024
BIND_ATTEMPTS = 20


def _refuse_in_loop(_question):
    raise UpstreamNeeded("answer needs the upstream resolver")


class _StaticZone:
    def __init__(self, zone: Zone):
        self.zone = zone


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer):
        self.server = server

    def datagram_received(self, data: bytes, addr) -> None:
        self.server._on_datagram(data, addr)

    def error_received(self, exc: OSError) -> None:
        """ICMP errors for replies to clients that left: nothing to answer."""


def _bind_pair(bind_ip: str, port: int) -> tuple[socket.socket, socket.socket]:
    """UDP and TCP sockets on the same port (a free one when port is 0)."""
    family = socket.AF_INET6 if ":" in bind_ip else socket.AF_INET
    last_error = None
    for _ in range(BIND_ATTEMPTS if port == 0 else 1):
        udp = socket.socket(family, socket.SOCK_DGRAM)
        tcp = socket.socket(family, socket.SOCK_STREAM)
        try:
            udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RECEIVE_BUFFER)
            udp.bind((bind_ip, port))
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            tcp.bind((bind_ip, udp.getsockname()[1]))
            tcp.listen(128)
            return udp, tcp
        except OSError as error:
            udp.close()
            tcp.close()
            last_error = error
    raise DnsServerError(f"cannot listen on {bind_ip}:{port} (UDP+TCP): {last_error}")


class DnsServer:
    """`with DnsServer("127.0.0.1", 0, holder) as server:` -- server.port is the bound port.

    zone_source: a ZoneHolder (anything with a `.zone` attribute) or a Zone.
    upstream: (ip, port) of the resolver for outside names, a callable, or None.
    chain_source: anything with a `.chain` attribute (agents/dns/chain.py: a Corefile's
    plugins for this port); when given, the chain answers and zone_source/upstream
    are not used.
    """

    def __init__(self, bind_ip: str, port: int, zone_source, upstream=None, *,
                 metrics_address: tuple[str, int] | None = None, upstream_timeout: float = 2.0,
                 tcp_idle_timeout: float = 10.0, tcp_read_timeout: float = 5.0,
                 max_tcp_connections: int = 256, max_pending_forwards: int = 256,
                 forward_threads: int = 8, cache_size: int = 10000, chain_source=None):
        self.bind_ip, self.requested_port = bind_ip, port
        self.chain_source = chain_source
        if isinstance(zone_source, Zone):
            zone_source = _StaticZone(zone_source)
        self.zone_source = zone_source
        if isinstance(upstream, tuple):
            upstream = UpstreamResolver(upstream, timeout=upstream_timeout)
        self.upstream = upstream
        self.requested_metrics_address = metrics_address
        self.tcp_idle_timeout, self.tcp_read_timeout = tcp_idle_timeout, tcp_read_timeout
        self.max_tcp_connections = max_tcp_connections
        self.max_pending_forwards = max_pending_forwards
        self.forward_threads, self.cache_size = forward_threads, cache_size
        self.metrics = DnsMetrics()
        self.port: int | None = None
        self.metrics_address: tuple[str, int] | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = threading.Event()
        self._startup_error: BaseException | None = None
        self._stop_event: asyncio.Event | None = None
        self._cache: dict[tuple[bool, bytes], bytes] = {}
        self._cache_zone: Zone | None = None
        self._tasks: set[asyncio.Task] = set()
        self._tcp_connections = 0
        self._pending_forwards = 0
        self._udp: asyncio.DatagramTransport | None = None
        self._executor: ThreadPoolExecutor | None = None

    @property
    def address(self) -> tuple[str, int]:
        return self.bind_ip, self.port

    # -- lifecycle ---------------------------------------------------------

    def __enter__(self) -> DnsServer:
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def start(self, timeout: float = 5.0) -> None:
        if self._thread is not None:
            raise DnsServerError(f"DNS server on port {self.port} is already running")
        udp, tcp = _bind_pair(self.bind_ip, self.requested_port)
        metrics_sock = None
        if self.requested_metrics_address is not None:
            metrics_sock = self._bind_metrics(udp, tcp)
        self.port = udp.getsockname()[1]
        self._thread = threading.Thread(target=self._run, args=(udp, tcp, metrics_sock),
                                        name=f"svclab-dns-{self.port}", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout):
            raise DnsServerError(f"DNS server on port {self.port} did not start within {timeout}s")
        if self._startup_error is not None:
            self._thread.join(timeout)
            self._thread = None
            raise DnsServerError(f"DNS server failed to start: {self._startup_error}")

    def _bind_metrics(self, udp: socket.socket, tcp: socket.socket) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(self.requested_metrics_address)
            sock.listen(16)
        except OSError as error:
            for opened in (sock, udp, tcp):
                opened.close()
            raise DnsServerError(f"cannot listen for metrics on {self.requested_metrics_address}: "
                                 f"{error}") from error
        self.metrics_address = sock.getsockname()[:2]
        return sock

    def stop(self, timeout: float = 5.0) -> None:
        if self._thread is None:
            return
        if self._loop is not None and self._stop_event is not None:
            self._loop.call_soon_threadsafe(self._stop_event.set)
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise DnsServerError(f"DNS server on port {self.port} did not stop within {timeout}s")
        self._thread = None

    def _run(self, udp, tcp, metrics_sock) -> None:
        asyncio.run(self._main(udp, tcp, metrics_sock))

    async def _main(self, udp, tcp, metrics_sock) -> None:
        loop = self._loop = asyncio.get_running_loop()
        loop.set_exception_handler(self._on_loop_error)
        self._stop_event = asyncio.Event()
        executor = ThreadPoolExecutor(self.forward_threads,
                                      thread_name_prefix="svclab-dns-upstream")
        servers = []
        try:
            self._udp, _ = await loop.create_datagram_endpoint(lambda: _UdpProtocol(self), sock=udp)
            servers.append(await asyncio.start_server(self._on_tcp, sock=tcp))
            if metrics_sock is not None:
                servers.append(await asyncio.start_server(self._on_metrics, sock=metrics_sock))
        except OSError as error:
            self._startup_error = error
            for opened in (udp, tcp, metrics_sock):
                if opened is not None:
                    opened.close()
            executor.shutdown(wait=False)
            self._started.set()
            return
        self._executor = executor
        self._started.set()
        try:
            await self._stop_event.wait()
        finally:
            for server in servers:
                server.close()
            self._udp.close()
            for task in list(self._tasks):
                task.cancel()
            if self._tasks:
                await asyncio.wait(list(self._tasks), timeout=1.0)
            executor.shutdown(wait=False, cancel_futures=True)

    def _on_loop_error(self, loop, context) -> None:
        self.metrics.internal_errors += 1
        loop.default_exception_handler(context)

    def _spawn(self, coroutine) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- answering ---------------------------------------------------------

    def _answer_in_loop(self, data: bytes, udp: bool):
        """The reply bytes, None to drop, or FORWARD when the upstream is needed."""
        if self.chain_source is not None:
            return self.chain_source.chain.in_loop(data, udp)
        zone = self.zone_source.zone
        if zone is not self._cache_zone:
            self._cache.clear()
            self._cache_zone = zone
            self.metrics.zone_serial = zone.serial
        key = (udp, data[2:])
        cached = self._cache.get(key)
        if cached is not None:
            return data[:2] + cached
        guard = _refuse_in_loop if self.upstream is not None else None
        try:
            response = answer_packet(zone, data, udp=udp, upstream=guard)
        except UpstreamNeeded:
            return FORWARD
        if response is not None and len(data) >= wire.HEADER_SIZE:
            if len(self._cache) >= self.cache_size:
                self._cache.clear()
            self._cache[key] = response[2:]
        return response

    async def _answer_off_loop(self, data: bytes, udp: bool) -> bytes | None:
        chain = self.chain_source.chain if self.chain_source is not None else None
        limit = (chain.max_concurrent if chain is not None else 0) or self.max_pending_forwards
        if self._pending_forwards >= limit:
            self.metrics.count_drop("forward_limit")
            return wire.error_reply(data[:wire.HEADER_SIZE], RCODE.REFUSED)
        self._pending_forwards += 1
        self.metrics.forwarded += 1
        try:
            if chain is not None:
                call = functools.partial(chain.off_loop, data, udp)
            else:
                call = functools.partial(answer_packet, self.zone_source.zone, data, udp=udp,
                                         upstream=self.upstream)
            return await asyncio.get_running_loop().run_in_executor(self._executor, call)
        finally:
            self._pending_forwards -= 1

    def _observe(self, proto: str, response: bytes | None, started: float, data: bytes,
                 addr) -> None:
        seconds = time.perf_counter() - started
        rcode = wire.rcode_of(response) if response is not None else None
        self.metrics.observe(proto, rcode, seconds)
        if self.chain_source is not None:
            self.chain_source.chain.answered(data, response, proto == "udp", addr, seconds)

    def _on_datagram(self, data: bytes, addr) -> None:
        started = time.perf_counter()
        response = self._answer_in_loop(data, udp=True)
        if response is FORWARD:
            self._spawn(self._forward_datagram(data, addr, started))
            return
        if response is not None:
            self._udp.sendto(response, addr)
        self._observe("udp", response, started, data, addr)

    async def _forward_datagram(self, data: bytes, addr, started: float) -> None:
        response = await self._answer_off_loop(data, udp=True)
        if response is not None and not self._udp.is_closing():
            self._udp.sendto(response, addr)
        self._observe("udp", response, started, data, addr)

    async def _on_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._tcp_connections >= self.max_tcp_connections:
            self.metrics.count_drop("tcp_limit")
            writer.close()
            return
        self._tcp_connections += 1
        task = asyncio.current_task()
        self._tasks.add(task)
        try:
            await self._serve_tcp(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.TimeoutError):
            pass        # client left, sent a short message or went idle: close its connection
        finally:
            self._tcp_connections -= 1
            self._tasks.discard(task)
            writer.close()

    async def _serve_tcp(self, reader, writer) -> None:
        peer = writer.get_extra_info("peername") or ("", 0)
        while True:
            prefix = await asyncio.wait_for(reader.readexactly(2), self.tcp_idle_timeout)
            length = int.from_bytes(prefix, "big")
            data = await asyncio.wait_for(reader.readexactly(length), self.tcp_read_timeout)
            started = time.perf_counter()
            response = self._answer_in_loop(data, udp=False)
            if response is FORWARD:
                response = await self._answer_off_loop(data, udp=False)
            self._observe("tcp", response, started, data, peer)
            if response is None:
                return
            writer.write(len(response).to_bytes(2, "big") + response)
            await asyncio.wait_for(writer.drain(), self.tcp_read_timeout)

    async def _on_metrics(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
            parts = head.split(b"\r\n", 1)[0].split(b" ")
            path = parts[1].decode("ascii", "replace") if len(parts) >= 2 else ""
            if path == "/metrics":
                self.metrics.zone_serial = self.zone_source.zone.serial
                status, body = "200 OK", self.metrics.render().encode()
            elif path in ("/health", "/ready"):
                status, body = "200 OK", b"OK"
            else:
                status, body = "404 Not Found", b"not found\n"
            head = (f"HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
            writer.write(head.encode() + body)
            await asyncio.wait_for(writer.drain(), 5.0)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                asyncio.TimeoutError):
            pass        # a broken scrape: nothing to answer
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
