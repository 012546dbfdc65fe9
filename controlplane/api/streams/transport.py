"""The upgraded connection as a thread-safe duplex byte pipe.

After ``101 Switching Protocols`` a streaming session reads the client's
frames in one thread while others write output frames.  An ``ssl.SSLSocket``
must not run ``SSL_read`` and ``SSL_write`` at the same time, so `Duplex`
puts the socket in non-blocking mode and serialises every TLS call under one
lock, waiting for readiness with ``select`` outside it.  Every wait has a
timeout: a reader polls so that ``close()`` ends it, and a writer whose peer
stops reading for ``stall`` seconds gets ``TimeoutError`` (the session ends).
"""

from __future__ import annotations

import socket
import ssl
import threading
import time

from base.fdwait import readable, writable

READ_SIZE = 256 * 1024
WRITE_CHUNK = 256 * 1024
POLL = 0.2


class Duplex:
    """recv/send on one connected (TLS) socket from several threads."""

    def __init__(self, sock: socket.socket, buffered: bytes = b"", *,
                 stall: float = 120.0) -> None:
        self._sock = sock
        self._lock = threading.Lock()
        self._buffered = bytes(buffered)
        self._closed = threading.Event()
        self._stall = stall
        sock.setblocking(False)

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def recv(self, timeout: float) -> bytes | None:
        """The next bytes; b"" once the peer closed (or close() was called);
        None when nothing arrived within ``timeout``."""
        if self._buffered:
            data, self._buffered = self._buffered, b""
            return data
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if self._closed.is_set():
                    return b""
                try:
                    return self._sock.recv(READ_SIZE)
                except (ssl.SSLWantReadError, BlockingIOError):
                    want = "r"
                except ssl.SSLWantWriteError:
                    want = "w"
                except (ConnectionError, ssl.SSLError, OSError):
                    return b""    # reset, or closed under us: the end of the stream
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self._wait(want, min(remaining, POLL))

    def send(self, data: bytes) -> None:
        """Write all of data; raises ConnectionError if the connection is gone and
        TimeoutError if the peer accepts nothing for ``stall`` seconds."""
        view = memoryview(data)
        last_progress = time.monotonic()
        while view:
            with self._lock:
                if self._closed.is_set():
                    raise ConnectionError("connection closed")
                try:
                    sent = self._sock.send(view[:WRITE_CHUNK])
                    want = ""
                except (ssl.SSLWantWriteError, BlockingIOError):
                    sent, want = 0, "w"
                except ssl.SSLWantReadError:
                    sent, want = 0, "r"
                except (ssl.SSLError, OSError) as exc:
                    raise ConnectionError(f"connection lost: {exc}") from exc
            if sent:
                view = view[sent:]
                last_progress = time.monotonic()
                continue
            if time.monotonic() - last_progress > self._stall:
                raise TimeoutError(f"peer read nothing for {self._stall:g} s")
            self._wait(want, POLL)

    def _wait(self, want: str, timeout: float) -> None:
        try:
            if want == "r":
                readable(self._sock, timeout)
            else:
                writable(self._sock, timeout)
        except (ValueError, OSError):   # the socket was closed under us
            self._closed.set()

    def close(self) -> None:
        """Stop every reader and writer; the socket itself belongs to the HTTP server."""
        with self._lock:    # SSLSocket.shutdown drops its TLS state: never mid-call
            self._closed.set()
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass   # already shut down or reset by the peer
