"""The spread probe's engine: many new connections at once, inside a lab host.

`python -m probes.spread.worker` runs this inside the source host (started by
probes/spread/probe.py).  Counting thousands of connections per second is a job for
plain non-blocking sockets and a selector, not scapy: each connection is a
fresh socket, `count` of them with at most `concurrency` in flight.

TCP asks the workload server `GET / HTTP/1.0` and reads its JSON until the
server closes (the server closes first, so this host keeps no TIME_WAIT
sockets and its ephemeral ports last for long runs).  With an `http` part in
the request ({"host", "path"}: an Ingress's host and path behind an ALB) it
asks `GET PATH HTTP/1.1` with that Host and `Connection: close`; the pod's
JSON then also says which X-Forwarded-For it got.  An answer that is not 2xx
is an outcome of its own, `http-404`, `http-502`, ..., with the status line
and the answering server (`awselb/2.0` is the ALB itself) as its error.  UDP sends one datagram
from a fresh connected socket and reads the `svclab <pod> <podIP> <client>`
reply; a connected socket also surfaces ICMP errors (refused, unreachable).

Per connection one record: target, outcome, the pod that answered, the client
address the pod saw (and the X-Forwarded-For it got), the local address it
was sent from, the HTTP status, latency.
"""
from __future__ import annotations

import collections
import errno
import json
import selectors
import socket
import sys
import time

OK, REFUSED, TIMEOUT, RESET, UNREACHABLE, BAD_REPLY, ERROR = (
    "ok", "refused", "timeout", "reset", "unreachable", "bad-reply", "error")
OUTCOMES = (OK, REFUSED, TIMEOUT, RESET, UNREACHABLE, BAD_REPLY, ERROR)
HTTP_STATUS_PREFIX = "http-"        # outcome of an answer that is not 2xx: http-404, http-503
HTTP_REQUEST = b"GET / HTTP/1.0\r\nUser-Agent: svclab-spread\r\n\r\n"
MAX_REPLY = 64 * 1024
_ERRNO_OUTCOME = {errno.ECONNREFUSED: REFUSED, errno.ECONNRESET: RESET, errno.EPIPE: RESET,
                  errno.ETIMEDOUT: TIMEOUT, errno.EHOSTUNREACH: UNREACHABLE,
                  errno.ENETUNREACH: UNREACHABLE, errno.EACCES: UNREACHABLE,
                  errno.EPERM: UNREACHABLE}


class HttpStatusError(ValueError):
    """An HTTP answer that is not 2xx (a 404 from the ALB's default rule, a 503 ...)."""

    def __init__(self, status: int, reason: str, server: str | None):
        super().__init__(f"HTTP status {status} {reason}".rstrip()
                         + (f" from {server}" if server else ""))
        self.status = status


def http_request(http: dict | None) -> bytes:
    """The request each connection sends: `GET /` as always, or the path and Host asked."""
    if not http:
        return HTTP_REQUEST
    return (f"GET {http['path']} HTTP/1.1\r\nHost: {http['host']}\r\n"
            "User-Agent: svclab-spread\r\nConnection: close\r\n\r\n").encode("latin-1")


def parse_http_reply(data: bytes) -> dict:
    """The workload server's JSON answer -> {pod, pod_ip, client, forwarded_for, status};
    HttpStatusError for a status that is not 2xx, ValueError if not such an answer."""
    head, sep, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = lines[0].split(b" ", 2)
    if not sep or len(status) < 2 or not status[0].startswith(b"HTTP/"):
        raise ValueError(f"not an HTTP response: {data[:60]!r}")
    if not status[1].isdigit() or not 200 <= int(status[1]) < 300:
        server = next((line.split(b":", 1)[1].strip().decode(errors="replace")
                       for line in lines[1:] if line.lower().startswith((b"server:",
                                                                         b"x-svclab-pod:"))),
                      None)
        code = int(status[1]) if status[1].isdigit() else 0
        raise HttpStatusError(code, status[2].decode(errors="replace") if len(status) > 2
                              else "", server)
    try:
        document = json.loads(body)
        return {"pod": document["pod"], "pod_ip": document["podIP"],
                "client": document["client"],
                "forwarded_for": document.get("forwardedFor") or None,
                "status": int(status[1])}
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"not a workload server reply: {body[:60]!r}") from err


def parse_udp_reply(data: bytes) -> dict:
    """`svclab <pod> <podIP> <client> <payload>` -> {pod, pod_ip, client}."""
    parts = data.split(b" ", 4)
    if len(parts) < 4 or parts[0] != b"svclab":
        raise ValueError(f"not a workload server reply: {data[:60]!r}")
    pod, pod_ip, client = (p.decode(errors="replace") for p in parts[1:4])
    return {"pod": pod, "pod_ip": pod_ip, "client": client,
            "payload": parts[4] if len(parts) > 4 else b""}


def udp_payload(seq: int) -> bytes:
    """What datagram `seq` carries; the reply must echo it back."""
    return b"svclab-spread %d\n" % seq


def _outcome_of(code: int) -> str:
    """ECONNREFUSED -> refused, ... ; an errno nobody expects -> error (kept by name)."""
    return _ERRNO_OUTCOME.get(code, ERROR)


def _errno_name(code: int) -> str:
    return errno.errorcode.get(code, str(code))


class _Conn:
    __slots__ = ("seq", "target", "sock", "started", "deadline", "buffer", "local", "done",
                 "last_data")

    def __init__(self, seq, target, sock, started, deadline):
        self.seq, self.target, self.sock = seq, target, sock
        self.started, self.deadline = started, deadline
        self.buffer = bytearray()
        self.local = None
        self.done = False
        self.last_data = None


class SpreadEngine:
    """Runs one spread request (plain data in, records out)."""

    def __init__(self, request: dict, progress=None):
        self.targets = [(t["ip"], int(t["port"])) for t in request["targets"]]
        self.proto = request.get("proto", "tcp")
        self.count = int(request["count"])
        self.timeout = float(request.get("timeout", 2.0))
        self.concurrency = max(1, int(request.get("concurrency", 200)))
        self.progress_every = float(request.get("progress_every", 1.0))
        self.progress = progress
        if self.proto not in ("tcp", "udp"):
            raise ValueError(f"proto: unsupported {self.proto!r}; allowed: tcp, udp")
        self.http_request = http_request(request.get("http"))
        self.selector = selectors.DefaultSelector()
        self.records: list[dict | None] = [None] * self.count
        self.in_flight: collections.deque[_Conn] = collections.deque()
        self.finished = self.launched = self.ok = self.active = 0

    def run(self) -> dict:
        start = time.monotonic()
        next_progress = start + self.progress_every
        try:
            while self.finished < self.count:
                now = time.monotonic()
                while self.active < self.concurrency and self.launched < self.count:
                    self._launch(now)
                    now = time.monotonic()
                self._expire(now)
                if self.finished >= self.count:
                    break
                wait = min(self.in_flight[0].deadline - now, 0.2) if self.in_flight else 0
                for key, _ in self.selector.select(max(wait, 0)):
                    self._on_ready(key.data, time.monotonic())
                while self.in_flight and self.in_flight[0].done:
                    self.in_flight.popleft()
                if self.progress and time.monotonic() >= next_progress:
                    next_progress += self.progress_every
                    self._report(start)
        finally:
            for conn in self.in_flight:
                if not conn.done:
                    self._close(conn)
            self.selector.close()
        elapsed = time.monotonic() - start
        return {"elapsed_s": elapsed, "records": self.records}

    def _report(self, start: float) -> None:
        elapsed = max(time.monotonic() - start, 1e-9)
        self.progress(f"progress {self.finished}/{self.count} done, {self.ok} ok, "
                      f"{self.finished / elapsed:.0f} conn/s")

    def _launch(self, now: float) -> None:
        seq = self.launched
        self.launched += 1
        target = self.targets[seq % len(self.targets)]
        kind = socket.SOCK_STREAM if self.proto == "tcp" else socket.SOCK_DGRAM
        sock = socket.socket(socket.AF_INET, kind)
        sock.setblocking(False)
        conn = _Conn(seq, target, sock, now, now + self.timeout)
        self.in_flight.append(conn)
        self.active += 1
        if self.proto == "tcp":
            code = sock.connect_ex(target)
            if code not in (0, errno.EINPROGRESS):
                self._finish(conn, _outcome_of(code), now, error=_errno_name(code))
                return
            self.selector.register(sock, selectors.EVENT_WRITE, conn)
            return
        try:
            sock.connect(target)
            conn.local = sock.getsockname()
            sock.send(udp_payload(seq))
        except OSError as err:
            self._finish(conn, _outcome_of(err.errno), now, error=_errno_name(err.errno))
            return
        self.selector.register(sock, selectors.EVENT_READ, conn)

    def _on_ready(self, conn: _Conn, now: float) -> None:
        if conn.done:
            return
        sock = conn.sock
        if self.proto == "udp":
            try:
                data = sock.recv(MAX_REPLY)
            except OSError as err:
                self._finish(conn, _outcome_of(err.errno), now, error=_errno_name(err.errno))
                return
            self._finish_with_reply(conn, data, parse_udp_reply, now)
            return
        self._on_tcp_ready(conn, sock, now)

    def _on_tcp_ready(self, conn: _Conn, sock: socket.socket, now: float) -> None:
        if conn.local is None:      # connect() completed, or failed
            code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code:
                self._finish(conn, _outcome_of(code), now, error=_errno_name(code))
                return
            conn.local = sock.getsockname()
            try:
                sock.send(self.http_request)
            except OSError as err:
                self._finish(conn, _outcome_of(err.errno), now, error=_errno_name(err.errno))
                return
            self.selector.modify(sock, selectors.EVENT_READ, conn)
            return
        try:
            chunk = sock.recv(MAX_REPLY)
        except OSError as err:
            self._finish(conn, _outcome_of(err.errno), now, error=_errno_name(err.errno))
            return
        if chunk and len(conn.buffer) + len(chunk) <= MAX_REPLY:
            conn.buffer += chunk
            conn.last_data = now
            return
        self._finish_with_reply(conn, bytes(conn.buffer), parse_http_reply, now)

    def _finish_with_reply(self, conn: _Conn, data: bytes, parse, now: float) -> None:
        try:
            seen = parse(data)
            if seen.pop("payload", udp_payload(conn.seq)) != udp_payload(conn.seq):
                raise ValueError(f"reply echoes another datagram: {data[:60]!r}")
        except HttpStatusError as err:
            self._finish(conn, f"{HTTP_STATUS_PREFIX}{err.status}", now, error=str(err),
                         status=err.status)
            return
        except ValueError as err:
            self._finish(conn, BAD_REPLY, now, error=str(err))
            return
        self._finish(conn, OK, now, **seen)

    def _expire(self, now: float) -> None:
        while self.in_flight and (self.in_flight[0].done or self.in_flight[0].deadline <= now):
            conn = self.in_flight.popleft()
            if conn.done:
                continue
            # A server that answered but keeps the connection open (keep-alive)
            # still answered: a complete reply counts, timed at its last byte.
            if conn.buffer and self._complete_http(conn):
                self._finish_with_reply(conn, bytes(conn.buffer), parse_http_reply,
                                        conn.last_data)
            else:
                self._finish(conn, TIMEOUT, now)

    @staticmethod
    def _complete_http(conn: _Conn) -> bool:
        """Is there an answer in the buffer (a workload reply or an HTTP status)?"""
        try:
            parse_http_reply(bytes(conn.buffer))
        except HttpStatusError:
            return True
        except ValueError:
            return False
        return True

    def _finish(self, conn: _Conn, outcome: str, now: float, **info) -> None:
        conn.done = True
        self.active -= 1
        self._close(conn)
        if outcome == OK:
            self.ok += 1
        self.finished += 1
        local = f"{conn.local[0]}:{conn.local[1]}" if conn.local else None
        self.records[conn.seq] = {
            "target": f"{conn.target[0]}:{conn.target[1]}", "outcome": outcome,
            "latency_ms": round((now - conn.started) * 1000, 3), "local": local,
            "pod": info.get("pod"), "pod_ip": info.get("pod_ip"),
            "client": info.get("client"), "error": info.get("error"),
            "forwarded_for": info.get("forwarded_for"),
            "status": info.get("status")}

    def _close(self, conn: _Conn) -> None:
        try:
            self.selector.unregister(conn.sock)
        except (KeyError, ValueError):
            pass    # never registered (failed at connect) -- nothing to undo
        conn.sock.close()


def raise_fd_limit(wanted: int) -> None:
    """Room for `wanted` sockets at once (soft limit up to the hard limit)."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = wanted + 64
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))


def main() -> int:
    request = json.load(sys.stdin)
    raise_fd_limit(int(request.get("concurrency", 200)))

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    result = SpreadEngine(request, progress if request.get("progress_every") else None).run()
    json.dump(result, sys.stdout, separators=(",", ":"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
