"""One small event loop for the emulated images' servers (HTTP, raw TCP, UDP).

A pod's emulated server should cost little: asyncio alone adds ~8 MB to a
Python process, a selector over non-blocking sockets adds almost nothing.
The loop serves HTTP/1.1 as Go's net/http does on the wire (keep-alive,
`Date`, `Content-Length`, `text/plain; charset=utf-8`, `400 Bad Request` for
garbage), raw TCP accepts and UDP datagrams; timers and signals wake it
through a socket pair.  A handler that must wait (a dial, a shell command)
returns a `Deferred`: its function runs in a thread and the loop sends the
answer when it is done.  What requests mean is the images' business
(http.py parses and renders, pure); this module only moves bytes.
"""
from __future__ import annotations

import heapq
import itertools
import selectors
import signal
import socket
import threading
import time
from collections.abc import Callable

from agents.images.http import (
    HeadError,
    Request,
    Response,
    bad_request,
    parse_head,
    read_body,
    render_response,
)

IDLE_TIMEOUT = 60.0          # an idle keep-alive connection is closed after this
MAX_HEAD = 64 * 1024
RECV = 65536


class Deferred:
    """A response computed in a thread (fn() -> Response)."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[], Response]):
        self.fn = fn


Handler = Callable[[Request], "Response | Deferred"]


class _Conn:
    __slots__ = ("sock", "client", "local", "inbox", "outbox", "close_after", "busy", "seen")

    def __init__(self, sock: socket.socket, client: tuple, local: tuple):
        self.sock, self.client, self.local = sock, client, local
        self.inbox = b""
        self.outbox = b""
        self.close_after = False
        self.busy = False          # a Deferred is running for it
        self.seen = time.monotonic()


class Loop:
    """Listeners, connections, timers and signals on one selector."""

    def __init__(self):
        self.selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self.selector.register(self._wake_r, selectors.EVENT_READ, ("wake", None))
        self._timers: list = []
        self._order = itertools.count()
        self._done: list = []               # (conn, response) from Deferred threads
        self._done_lock = threading.Lock()
        self._signals: dict[int, Callable[[], None]] = {}
        self._stopping = False
        self.conns: dict[int, _Conn] = {}

    # --- listeners --------------------------------------------------------------

    def _listener(self, kind: int, host: str, port: int) -> socket.socket:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, kind)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.setblocking(False)
        return sock

    def listen_http(self, port: int, handler: Handler, host: str = "0.0.0.0") -> int:
        sock = self._listener(socket.SOCK_STREAM, host, port)
        sock.listen(1024)
        self.selector.register(sock, selectors.EVENT_READ, ("accept", handler))
        return sock.getsockname()[1]

    def listen_tcp(self, port: int, on_accept: Callable[[tuple], bytes],
                   host: str = "0.0.0.0") -> int:
        """Raw TCP: each connection gets on_accept(client) and is closed."""
        sock = self._listener(socket.SOCK_STREAM, host, port)
        sock.listen(1024)
        self.selector.register(sock, selectors.EVENT_READ, ("raw", on_accept))
        return sock.getsockname()[1]

    def listen_udp(self, port: int, on_datagram: Callable[[bytes, tuple], bytes | None],
                   host: str = "0.0.0.0") -> int:
        sock = self._listener(socket.SOCK_DGRAM, host, port)
        self.selector.register(sock, selectors.EVENT_READ, ("udp", on_datagram))
        return sock.getsockname()[1]

    # --- timers, signals, stopping ------------------------------------------------

    def call_later(self, delay: float, fn: Callable[[], None]) -> None:
        heapq.heappush(self._timers, (time.monotonic() + delay, next(self._order), fn))
        self._wake()

    def on_signal(self, signum: int, fn: Callable[[], None]) -> None:
        """fn runs in the loop (not in the signal handler) after signum."""
        self._signals[signum] = fn
        signal.signal(signum, self._signalled)

    def _signalled(self, signum, frame) -> None:
        self.call_later(0, self._signals[signum])

    def stop(self) -> None:
        self._stopping = True
        self._wake()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, OSError):
            pass

    # --- the loop ----------------------------------------------------------------

    def run(self) -> None:
        while not self._stopping:
            timeout = 1.0
            if self._timers:
                timeout = max(0.0, min(timeout, self._timers[0][0] - time.monotonic()))
            for key, events in self.selector.select(timeout):
                what, data = key.data
                if what == "wake":
                    self._drain_wake()
                elif what == "accept":
                    self._accept(key.fileobj, data)
                elif what == "raw":
                    self._raw(key.fileobj, data)
                elif what == "udp":
                    self._datagram(key.fileobj, data)
                elif events & selectors.EVENT_READ:
                    self._read(data)
                elif events & selectors.EVENT_WRITE:
                    self._flush(data)
            self._run_timers()
            self._finish_deferred()
            self._close_idle()
        for conn in list(self.conns.values()):
            self._close(conn)

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except BlockingIOError:
            pass

    def _run_timers(self) -> None:
        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now:
            _, _, fn = heapq.heappop(self._timers)
            fn()

    def _close_idle(self) -> None:
        limit = time.monotonic() - IDLE_TIMEOUT
        for conn in [c for c in self.conns.values() if c.seen < limit and not c.busy]:
            self._close(conn)

    # --- raw TCP and UDP -----------------------------------------------------------

    def _raw(self, listener: socket.socket, on_accept) -> None:
        try:
            sock, client = listener.accept()
        except (BlockingIOError, ConnectionAbortedError):
            return
        try:
            sock.sendall(on_accept(client))
        except OSError:
            pass
        sock.close()

    def _datagram(self, sock: socket.socket, on_datagram) -> None:
        try:
            data, client = sock.recvfrom(RECV)
        except (BlockingIOError, ConnectionRefusedError):
            return
        reply = on_datagram(data, client)
        if reply is not None:
            try:
                sock.sendto(reply, client)
            except OSError:
                pass

    # --- HTTP ------------------------------------------------------------------------

    def _accept(self, listener: socket.socket, handler: Handler) -> None:
        try:
            sock, client = listener.accept()
        except (BlockingIOError, ConnectionAbortedError):
            return
        sock.setblocking(False)
        conn = _Conn(sock, client, sock.getsockname())
        self.conns[sock.fileno()] = conn
        self.selector.register(sock, selectors.EVENT_READ, ("conn", (conn, handler)))

    def _read(self, data) -> None:
        conn, handler = data
        try:
            chunk = conn.sock.recv(RECV)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._close(conn)
            return
        conn.seen = time.monotonic()
        conn.inbox += chunk
        self._serve(conn, handler)

    def _serve(self, conn: _Conn, handler: Handler) -> None:
        """Answer the next complete request in conn's inbox, if there is one."""
        if conn.busy or conn.outbox or conn.close_after:
            return
        try:
            parsed = parse_head(conn.inbox, MAX_HEAD)
            if parsed is None:
                return
            head, rest = parsed
            body = read_body(head, rest)
            if body is None:
                return
            payload, conn.inbox = body
        except HeadError as err:
            self._send(conn, handler, bad_request(err.status), None)
            return
        request = Request(head.method, head.target, head.version, head.headers, payload,
                          conn.client, conn.local)
        result = handler(request)
        if isinstance(result, Deferred):
            conn.busy = True
            threading.Thread(target=self._deferred, args=(conn, handler, request, result),
                             daemon=True).start()
            return
        self._send(conn, handler, result, request)

    def _deferred(self, conn: _Conn, handler: Handler, request: Request,
                  deferred: Deferred) -> None:
        response = deferred.fn()
        with self._done_lock:
            self._done.append((conn, handler, response, request))
        self._wake()

    def _finish_deferred(self) -> None:
        with self._done_lock:
            done, self._done = self._done, []
        for conn, handler, response, request in done:
            conn.busy = False
            if conn.sock.fileno() in self.conns:
                self._send(conn, handler, response, request)

    def _send(self, conn: _Conn, handler: Handler, response: Response,
              request: Request | None) -> None:
        data, close = render_response(response, request)
        conn.outbox += data
        conn.close_after = close
        self._flush((conn, handler))

    def _flush(self, data) -> None:
        conn, handler = data
        try:
            sent = conn.sock.send(conn.outbox) if conn.outbox else 0
        except BlockingIOError:
            sent = 0
        except OSError:
            self._close(conn)
            return
        conn.outbox = conn.outbox[sent:]
        if conn.outbox:
            self.selector.modify(conn.sock, selectors.EVENT_WRITE, ("conn", data))
            return
        if conn.close_after:
            self._close(conn)
            return
        self.selector.modify(conn.sock, selectors.EVENT_READ, ("conn", data))
        if conn.inbox:
            self._serve(conn, handler)       # a pipelined request

    def _close(self, conn: _Conn) -> None:
        fd = conn.sock.fileno()
        if fd < 0 or self.conns.pop(fd, None) is None:
            return
        try:
            self.selector.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        conn.sock.close()
