"""The HTTP side of the pods' streaming answers: chunked log text and upgrades.

A mixin for the API server's request handler (``http.server``): a
`ByteStream` goes out chunked, its empty chunks used to notice a client
that hung up; an `Upgrade` answers ``101 Switching Protocols`` and runs its
session on the raw connection (bytes the client sent early included) in
the connection's own thread, closing the connection when it ends.
"""

from __future__ import annotations

import ssl

from base.fdwait import readable
from controlplane.api.streams.routes import ByteStream, Upgrade
from controlplane.api.streams.transport import Duplex


class StreamedResponses:
    """Mixed into a BaseHTTPRequestHandler (uses wfile, rfile, connection)."""

    def _start_chunked(self, content_type: str) -> None:
        """200 with a chunked body of content_type; the connection ends with it."""
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True

    def _byte_stream(self, stream: ByteStream) -> None:
        self._start_chunked(stream.content_type)
        try:
            for chunk in stream.chunks:
                if not chunk:       # a heartbeat: is the client still there?
                    if self._peer_gone():
                        return
                    continue
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (TimeoutError, BrokenPipeError, ConnectionResetError, ssl.SSLError):
            return  # the client went away: the stream simply ends
        finally:
            close = getattr(stream.chunks, "close", None)
            if close:
                close()

    def _peer_gone(self) -> bool:
        """After the request, a client of a streamed response sends nothing: a
        readable socket means it hung up."""
        try:
            return readable(self.connection, 0)
        except (ValueError, OSError):
            return True

    def _upgrade(self, upgrade: Upgrade) -> None:
        """101, then the session on the raw connection; the connection ends with it,
        and whatever was started for it is released (even if the 101 failed)."""
        self.close_connection = True
        try:
            self.send_response(101)
            for name, value in upgrade.headers:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.flush()
        except (TimeoutError, ConnectionError, ssl.SSLError):
            upgrade.release()
            return
        duplex = Duplex(self.connection, self._unread())
        try:
            upgrade.run(duplex)
        finally:
            duplex.close()
            upgrade.release()

    def _unread(self) -> bytes:
        """Bytes the client sent after its request that rfile already buffered."""
        self.connection.setblocking(False)
        try:
            buffered = self.rfile.peek(1)
        except (ssl.SSLWantReadError, BlockingIOError, OSError):
            return b""
        return self.rfile.read(len(buffered)) if buffered else b""
