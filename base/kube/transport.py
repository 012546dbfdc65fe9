"""HTTP/1.1 for the kube client: keep-alive connections shared through a pool.

A client-go process talks to the API server over one HTTP/2 connection (or
a few pooled HTTP/1.1 ones), whatever its number of goroutines.  This module
gives `KubeClient` the HTTP/1.1 form of that: a connection is taken from the
client's pool for one request and given back after it, so a kubelet with a
hundred pod workers keeps a few connections, not a hundred TLS sessions and
as many server threads.  Idle connections close after `IDLE_SECONDS`, as an
HTTP client's idle connections do (Go's transport: `IdleConnTimeout`), and at
most `MAX_IDLE` wait per pool.

Requests and responses are read and written here, not by `http.client`,
whose header parsing (the `email` package) cost more of a busy lab's
interpreter than the JSON it carried.  Only what the API server speaks is
understood: a status line, headers, and a body sized by Content-Length,
chunked, or ended by the connection's close.  A malformed answer raises
`ProtocolError`, a `ConnectionError`, so callers that retry on socket errors
retry on it too.
"""
from __future__ import annotations

import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass

IDLE_SECONDS = 15.0
MAX_IDLE = 16
REAP_EVERY = 1.0
MAX_LINE = 64 * 1024
MAX_HEADERS = 200


class ProtocolError(ConnectionError):
    """The server's answer was not HTTP/1.1 as expected (or ended early)."""


@dataclass(frozen=True)
class Response:
    status: int
    reason: str
    headers: dict[str, str]      # lower-case names
    body: bytes


class Connection:
    """One HTTP/1.1 connection over a connected (TLS) socket."""

    def __init__(self, sock: socket.socket, host: str):
        self.sock = sock
        self.host = host
        self._reader = sock.makefile("rb")
        self.reusable = True
        self.idle_since = 0.0

    def send(self, method: str, target: str, headers: dict[str, str],
             body: bytes | None = None) -> None:
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self.host}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        if body is not None or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body or b'')}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.sock.sendall(head + body if body else head)

    def request(self, method: str, target: str, headers: dict[str, str],
                body: bytes | None = None) -> Response:
        self.send(method, target, headers, body)
        status, reason, answer = self.read_head()
        return Response(status, reason, answer, self.read_body(method, status, answer))

    def read_head(self) -> tuple[int, str, dict[str, str]]:
        """The status line and headers of the next response."""
        line = self._line()
        version, _, rest = line.partition(" ")
        code, _, reason = rest.partition(" ")
        if not version.startswith("HTTP/1.") or not code.isdigit():
            raise ProtocolError(f"not an HTTP/1.1 status line: {line[:80]!r}")
        headers: dict[str, str] = {}
        for _ in range(MAX_HEADERS):
            line = self._line()
            if not line:
                if headers.get("connection", "").lower() == "close" or version == "HTTP/1.0":
                    self.reusable = False
                return int(code), reason, headers
            name, sep, value = line.partition(":")
            if not sep:
                raise ProtocolError(f"not a header line: {line[:80]!r}")
            name, value = name.strip().lower(), value.strip()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        raise ProtocolError(f"more than {MAX_HEADERS} header lines")

    def chunks(self) -> Iterator[bytes]:
        """The data of a chunked body, chunk by chunk, as it arrives."""
        while True:
            size_text = self._line().split(";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise ProtocolError(f"bad chunk size {size_text[:20]!r}") from None
            if size == 0:
                while self._line():      # trailers, up to the blank line
                    pass
                return
            data = self._exactly(size)
            if self._line():
                raise ProtocolError("chunk not followed by CRLF")
            yield data

    def close(self) -> None:
        self.reusable = False
        try:
            self._reader.close()
        finally:
            self.sock.close()

    def shutdown(self) -> None:
        """Wake a reader blocked on this connection (another thread's watch)."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def read_body(self, method: str, status: int, headers: dict[str, str]) -> bytes:
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            return b""
        if headers.get("transfer-encoding", "").lower() == "chunked":
            return b"".join(self.chunks())
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                raise ProtocolError(f"bad Content-Length {length[:20]!r}")
            return self._exactly(int(length))
        self.reusable = False            # the body ends where the connection does
        return self._reader.read()

    def _line(self) -> str:
        line = self._reader.readline(MAX_LINE + 1)
        if not line:
            raise ProtocolError("the server closed the connection")
        if len(line) > MAX_LINE:
            raise ProtocolError(f"a line longer than {MAX_LINE} bytes")
        return line.rstrip(b"\r\n").decode("latin-1")

    def _exactly(self, size: int) -> bytes:
        data = self._reader.read(size)
        if len(data) != size:
            raise ProtocolError(f"the body ended after {len(data)} of {size} bytes")
        return data


class Pool:
    """Idle keep-alive connections to one server, newest first.

    `take()` hands out an idle connection (and whether it was one) or a new
    one from `connect`; `give()` takes it back when the exchange ended
    cleanly.  Idle ones beyond MAX_IDLE, or idle longer than IDLE_SECONDS,
    are closed (the latter by one reaper thread per process)."""

    def __init__(self, connect: Callable[[], Connection], *, max_idle: int | None = None,
                 idle_seconds: float | None = None):
        self._connect = connect
        self.max_idle = MAX_IDLE if max_idle is None else max_idle
        self.idle_seconds = IDLE_SECONDS if idle_seconds is None else idle_seconds
        self._idle: list[Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        self._reaped = False          # in the reaper's set (once: its lock is the process's)

    def take(self) -> tuple[Connection, bool]:
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is not None:
            return conn, True
        return self._connect(), False

    def give(self, conn: Connection) -> None:
        if not conn.reusable:
            conn.close()
            return
        conn.idle_since = time.monotonic()
        with self._lock:
            if self._closed:
                extra = [conn]
            else:
                self._idle.append(conn)
                extra = self._idle[:-self.max_idle] if len(self._idle) > self.max_idle else []
                del self._idle[:len(extra)]
        for old in extra:
            old.close()
        if not self._reaped:
            # Once per pool: every request of every client ends here, and a lock
            # shared by all of them, taken each time, queued a thousand pod
            # workers behind one another (each hand-off waits for the GIL).
            self._reaped = True
            _Reaper.watch(self)

    def idle_count(self) -> int:
        with self._lock:
            return len(self._idle)

    def reap(self, now: float | None = None) -> None:
        """Close the connections idle for longer than idle_seconds."""
        limit = (time.monotonic() if now is None else now) - self.idle_seconds
        with self._lock:
            stale = [c for c in self._idle if c.idle_since <= limit]
            self._idle = [c for c in self._idle if c.idle_since > limit]
        for conn in stale:
            conn.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


class _Reaper:
    """One daemon thread per process that closes pools' stale idle connections."""

    _pools: weakref.WeakSet = weakref.WeakSet()
    _lock = threading.Lock()
    _thread: threading.Thread | None = None

    @classmethod
    def watch(cls, pool: Pool) -> None:
        with cls._lock:
            cls._pools.add(pool)
            if cls._thread is None or not cls._thread.is_alive():
                cls._thread = threading.Thread(target=cls._run, name="kube-idle-reaper",
                                               daemon=True)
                cls._thread.start()

    @classmethod
    def _run(cls) -> None:
        while True:
            time.sleep(REAP_EVERY)
            with cls._lock:
                pools = list(cls._pools)
            for pool in pools:
                pool.reap()
