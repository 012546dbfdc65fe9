"""HTTP/1.1 as the emulated images speak it: pure parsing and rendering.

The images svclab stands in for are Go programs (net/http) or nginx; what a
client sees of them is this: keep-alive unless asked otherwise, a `Date`
header, `Content-Length`, `Content-Type: text/plain; charset=utf-8` for text
bodies, and `400 Bad Request` (plain text, then close) for a request that does
not parse.  Go's `log` package line format is here too: `2006/01/02 15:04:05
message` on stderr.
"""
from __future__ import annotations

import sys
import time

REASONS = {200: "OK", 201: "Created", 301: "Moved Permanently", 302: "Found",
           307: "Temporary Redirect", 308: "Permanent Redirect", 400: "Bad Request",
           404: "Not Found", 405: "Method Not Allowed", 411: "Length Required",
           412: "Precondition Failed", 413: "Request Entity Too Large",
           417: "Expectation Failed", 431: "Request Header Fields Too Large",
           500: "Internal Server Error", 503: "Service Unavailable"}
TEXT = "text/plain; charset=utf-8"
MAX_BODY = 10 * 1024 * 1024


class HeadError(ValueError):
    """A request head that cannot be served (status: what to answer)."""

    def __init__(self, status: int, text: str):
        super().__init__(text)
        self.status = status


# Plain classes, not dataclasses: importing dataclasses (and inspect with it)
# costs each pod's process about a megabyte.

class Head:
    __slots__ = ("method", "target", "version", "headers")

    def __init__(self, method: str, target: str, version: str,
                 headers: tuple[tuple[str, str], ...]):
        self.method, self.target, self.version, self.headers = method, target, version, headers

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        return next((v for k, v in self.headers if k.lower() == wanted), None)


class Request:
    __slots__ = ("method", "target", "version", "headers", "body", "client", "local")

    def __init__(self, method: str, target: str, version: str,
                 headers: tuple[tuple[str, str], ...], body: bytes, client: tuple,
                 local: tuple):
        self.method, self.target, self.version = method, target, version   # "HTTP/1.1"
        self.headers = headers               # as sent, in order
        self.body = body
        self.client = client                 # (host, port) the server saw
        self.local = local                   # (host, port) it was received on

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        return next((v for k, v in self.headers if k.lower() == wanted), None)

    @property
    def path(self) -> str:
        target = self.target.split("?", 1)[0]
        if "://" in target:                  # an absolute-form target (a proxy's)
            target = "/" + target.split("://", 1)[1].partition("/")[2]
        return unquote(target) or "/"

    @property
    def query(self) -> str:
        return self.target.split("?", 1)[1].split("#", 1)[0] if "?" in self.target else ""

    def form(self, name: str) -> str:
        """The first value of a query parameter (Go's r.FormValue), "" if absent."""
        for pair in self.query.split("&"):
            key, _, value = pair.partition("=")
            if unquote(key, plus=True) == name:
                return unquote(value, plus=True)
        return ""


def unquote(text: str, plus: bool = False) -> str:
    """%XX-decoding as Go's url.QueryUnescape (plus=True: `+` is a space) or
    PathUnescape; a malformed escape is kept as written.  (urllib.parse would
    cost each pod's process about a megabyte of imports.)"""
    if plus:
        text = text.replace("+", " ")
    if "%" not in text:
        return text
    out, i, raw = bytearray(), 0, text.encode("utf-8")
    while i < len(raw):
        if raw[i] == 0x25 and _hex(raw[i + 1:i + 3]):
            out.append(int(raw[i + 1:i + 3], 16))
            i += 3
        else:
            out.append(raw[i])
            i += 1
    return out.decode("utf-8", "replace")


def _hex(pair: bytes) -> bool:
    return len(pair) == 2 and all(c in b"0123456789abcdefABCDEF" for c in pair)


class Response:
    __slots__ = ("status", "body", "headers", "content_type", "close")

    def __init__(self, status: int = 200, body: bytes = b"",
                 headers: tuple[tuple[str, str], ...] = (), content_type: str | None = TEXT,
                 close: bool = False):
        self.status, self.body, self.headers = status, body, headers
        self.content_type = content_type      # None: no Content-Type header
        self.close = close


def http_date(now: float | None = None) -> str:
    """RFC 7231's IMF-fixdate: `Sat, 05 Dec 2026 20:16:17 GMT`."""
    return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now))


def host_port(address: tuple) -> str:
    """Go's net.JoinHostPort: `10.0.0.1:80`, `[::1]:80`."""
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_head(data: bytes, limit: int) -> tuple[Head, bytes] | None:
    """(head, the bytes after it) once a whole head is in data; None until then."""
    end = data.find(b"\r\n\r\n")
    size = 4
    bare = data.find(b"\n\n")
    if bare >= 0 and (end < 0 or bare < end):
        end, size = bare, 2
    if end < 0:
        if len(data) > limit:
            raise HeadError(431, "request header too large")
        return None
    lines = data[:end].decode("latin-1").replace("\r\n", "\n").split("\n")
    while lines and not lines[0]:         # stray CRLFs before a request are allowed
        lines.pop(0)
    parts = lines[0].split(" ") if lines else []
    if len(parts) != 3 or not parts[2].startswith("HTTP/1.") or not parts[0].isalpha():
        raise HeadError(400, "malformed request line")
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise HeadError(400, "malformed header line")
        headers.append((name, value.strip()))
    return Head(parts[0], parts[1], parts[2], tuple(headers)), data[end + size:]


def read_body(head: Head, data: bytes) -> tuple[bytes, bytes] | None:
    """(body, what follows it) once the whole body is in data; None until then."""
    if (head.header("Transfer-Encoding") or "").lower() == "chunked":
        return _chunked(data)
    length = head.header("Content-Length")
    if length is None:
        return b"", data
    if not length.isdigit():
        raise HeadError(400, "bad Content-Length")
    if int(length) > MAX_BODY:
        raise HeadError(413, "request body too large")
    if len(data) < int(length):
        return None
    return data[:int(length)], data[int(length):]


def _chunked(data: bytes) -> tuple[bytes, bytes] | None:
    body, at = b"", 0
    while True:
        line_end = data.find(b"\r\n", at)
        if line_end < 0:
            return None
        try:
            size = int(data[at:line_end].split(b";")[0], 16)
        except ValueError as err:
            raise HeadError(400, "bad chunk size") from err
        start = line_end + 2
        if size == 0:
            trailer_end = data.find(b"\r\n\r\n", line_end)
            if data[start:start + 2] == b"\r\n":
                return body, data[start + 2:]
            if trailer_end < 0:
                return None
            return body, data[trailer_end + 4:]
        if len(data) < start + size + 2:
            return None
        body += data[start:start + size]
        at = start + size + 2


def keep_alive(request: Request | None) -> bool:
    if request is None:
        return False
    connection = (request.header("Connection") or "").lower()
    if request.version == "HTTP/1.0":
        return connection == "keep-alive"
    return connection != "close"


def render_response(response: Response, request: Request | None,
                    now: float | None = None) -> tuple[bytes, bool]:
    """(bytes on the wire, close the connection after them)."""
    close = response.close or not keep_alive(request)
    lines = [f"HTTP/1.1 {response.status} {REASONS.get(response.status, 'Unknown')}"]
    lines += [f"{k}: {v}" for k, v in response.headers]
    if response.content_type and response.body:
        lines.append(f"Content-Type: {response.content_type}")
    lines.append(f"Date: {http_date(now)}")
    lines.append(f"Content-Length: {len(response.body)}")
    if close and (request is None or request.version != "HTTP/1.0"):
        lines.append("Connection: close")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    body = b"" if request is not None and request.method == "HEAD" else response.body
    return head + body, close


def bad_request(status: int = 400) -> Response:
    """Go's answer to a request it cannot parse."""
    return Response(status, f"{status} {REASONS.get(status, 'Bad Request')}".encode(),
                    close=True)


def go_log(message: str, now: float | None = None, stream=None) -> None:
    """One line as Go's log package writes it (stderr, local time)."""
    stamp = time.strftime("%Y/%m/%d %H:%M:%S", time.localtime(now))
    out = stream or sys.stderr
    out.write(f"{stamp} {message.rstrip(chr(10))}\n")
    out.flush()
