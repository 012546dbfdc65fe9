"""Pure: HTTP/1.1 message heads as the ALB reads, rewrites and writes them.

- parse a request head from a client and a response head from a target
  (HttpParseError: the ALB answers 400, or 502 for a target);
- how a message's body is framed (Content-Length, chunked, until close);
- the head sent to a target: hop-by-hop headers dropped, `X-Forwarded-For`
  appended to (the ALB's default "append" mode), `X-Forwarded-Proto` and
  `X-Forwarded-Port` set to the listener's, `X-Amzn-Trace-Id` added when the
  client sent none; Host and everything else passed as they came;
- the responses the ALB makes itself (fixed responses, redirects, its own
  4XX/5XX pages, `Server: awselb/2.0`).
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass
from email.utils import formatdate

# Hop-by-hop headers (RFC 9110 7.6.1): meant for one connection, not forwarded.
HOP_BY_HOP = frozenset(("connection", "keep-alive", "proxy-connection", "te", "trailer",
                        "upgrade", "proxy-authorization", "proxy-authenticate"))
FORWARDED = frozenset(("x-forwarded-proto", "x-forwarded-port", "expect"))  # set by the ALB
REASONS = {200: "OK", 301: "Moved Permanently", 302: "Found", 400: "Bad Request",
           403: "Forbidden", 404: "Not Found", 408: "Request Timeout",
           413: "Payload Too Large", 431: "Request Header Fields Too Large",
           500: "Internal Server Error", 501: "Not Implemented", 502: "Bad Gateway",
           503: "Service Temporarily Unavailable", 504: "Gateway Time-out"}
NO_BODY, LENGTH, CHUNKED, UNTIL_CLOSE = "none", "length", "chunked", "until-close"


class HttpParseError(ValueError):
    """A message head that is not HTTP/1.x."""


@dataclass
class Head:
    """A request or response head; headers keep their order and spelling."""

    start: tuple[str, str, str]             # method, target, version | version, code, reason
    headers: list[tuple[str, str]]

    def __post_init__(self) -> None:
        self.lowered = [(name.lower(), value) for name, value in self.headers]
        self.first: dict[str, str] = {}
        for name, value in reversed(self.lowered):
            self.first[name] = value

    def get(self, name: str) -> str | None:
        """The first header of this name (any case)."""
        return self.first.get(name.lower())

    def tokens(self, name: str) -> set[str]:
        """The comma-separated tokens of every header of this name, lower case."""
        name = name.lower()
        if name not in self.first:
            return set()
        return {t.strip().lower() for key, value in self.lowered if key == name
                for t in value.split(",") if t.strip()}

    # request side
    @property
    def method(self) -> str:
        return self.start[0]

    @property
    def version(self) -> str:
        return self.start[2] if self.start[2].startswith("HTTP/") else self.start[0]

    @property
    def path(self) -> str:
        """The request's path, without the query string."""
        target = self.start[1]
        if "://" in target:                         # absolute form
            target = "/" + target.split("://", 1)[1].partition("/")[2]
        return target.split("?", 1)[0]

    @property
    def query(self) -> str:
        return self.start[1].partition("?")[2]

    @property
    def host(self) -> str:
        target = self.start[1]
        if "://" in target:
            return target.split("://", 1)[1].partition("/")[0]
        return self.get("host") or ""

    # response side
    @property
    def status(self) -> int:
        return int(self.start[1])


def _split_head(data: bytes) -> tuple[str, list[tuple[str, str]]]:
    try:
        text = data.decode("latin-1")
    except UnicodeDecodeError as err:             # pragma: no cover - latin-1 decodes all
        raise HttpParseError(str(err)) from err
    lines = text.split("\r\n")
    while lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise HttpParseError("empty message head")
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip() or " " in name:
            raise HttpParseError(f"malformed header line {line[:80]!r}")
        headers.append((name, value.strip()))
    return lines[0], headers


def parse_request(data: bytes) -> Head:
    first, headers = _split_head(data)
    parts = first.split(" ")
    if len(parts) != 3 or not parts[0].isalpha() or parts[2] not in ("HTTP/1.1", "HTTP/1.0"):
        raise HttpParseError(f"malformed request line {first[:80]!r}")
    head = Head((parts[0], parts[1], parts[2]), headers)
    if head.version == "HTTP/1.1" and head.get("host") is None:
        raise HttpParseError("HTTP/1.1 request without Host")
    if head.get("transfer-encoding") and head.get("content-length"):
        raise HttpParseError("both Transfer-Encoding and Content-Length")
    return head


def parse_response(data: bytes) -> Head:
    first, headers = _split_head(data)
    version, _, rest = first.partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/1.") or len(code) != 3 or not code.isdigit():
        raise HttpParseError(f"malformed status line {first[:80]!r}")
    return Head((version, code, reason), headers)


def body_framing(head: Head, response_to: str | None = None) -> tuple[str, int]:
    """(framing, length) of the body after this head.  response_to: the
    request method when head is a response (None: head is a request)."""
    if response_to is not None:
        status = head.status
        if response_to == "HEAD" or 100 <= status < 200 or status in (204, 304):
            return NO_BODY, 0
    if "chunked" in head.tokens("transfer-encoding"):
        return CHUNKED, 0
    length = head.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise HttpParseError(f"invalid Content-Length {length!r}")
        return (LENGTH, int(length)) if int(length) else (NO_BODY, 0)
    return (UNTIL_CLOSE, 0) if response_to is not None else (NO_BODY, 0)


def wants_keep_alive(head: Head) -> bool:
    """Does the sender keep the connection open after this message?"""
    tokens = head.tokens("connection")
    if head.version == "HTTP/1.0":
        return "keep-alive" in tokens
    return "close" not in tokens


def new_trace_id(now: float | None = None) -> str:
    """X-Amzn-Trace-Id's Root: version 1, the epoch in hex, 96 random bits."""
    stamp = int(now if now is not None else time.time())
    return f"Root=1-{stamp:08x}-{random.getrandbits(96):024x}"


def forward_head(head: Head, client_ip: str, proto: str, port: int,
                 trace_id: str) -> tuple[bytes, str]:
    """The request head to send a target, and the trace id it carries."""
    dropped = HOP_BY_HOP | FORWARDED | head.tokens("connection")
    upgrade = head.get("upgrade")
    lines = [f"{head.method} {head.start[1]} HTTP/1.1"]
    forwarded_for = None
    trace = None
    for (name, value), (lower, _) in zip(head.headers, head.lowered):
        if lower == "x-forwarded-for":
            forwarded_for = value if forwarded_for is None else f"{forwarded_for}, {value}"
            continue
        if lower == "x-amzn-trace-id":
            trace = value
        if lower in dropped:
            continue
        lines.append(f"{name}: {value}")
    lines.append("X-Forwarded-For: " + (f"{forwarded_for}, {client_ip}" if forwarded_for
                                        else client_ip))
    lines.append(f"X-Forwarded-Proto: {proto}")
    lines.append(f"X-Forwarded-Port: {port}")
    if trace is None:
        trace = trace_id
        lines.append(f"X-Amzn-Trace-Id: {trace}")
    if upgrade:
        lines += [f"Upgrade: {upgrade}", "Connection: upgrade"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"), trace


def client_response_head(head: Head, keep_alive: bool,
                         request_version: str = "HTTP/1.1") -> bytes:
    """The target's response head as the client gets it: its own connection
    headers replaced by the ALB's (the client connection is the ALB's)."""
    dropped = (HOP_BY_HOP - {"upgrade"}) | head.tokens("connection")
    lines = [f"HTTP/1.1 {head.start[1]} {head.start[2]}".rstrip()]
    lines += [f"{n}: {v}" for (n, v), (lower, _) in zip(head.headers, head.lowered)
              if lower not in dropped]
    if head.status == 101:
        lines.append("Connection: upgrade")
    elif not keep_alive:
        lines.append("Connection: close")
    elif request_version == "HTTP/1.0":
        lines.append("Connection: keep-alive")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def response(status: int, body: bytes = b"", content_type: str = "text/html",
             keep_alive: bool = True, extra: tuple[tuple[str, str], ...] = ()) -> bytes:
    """A whole response the ALB writes itself."""
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}",
             "Server: awselb/2.0", f"Date: {formatdate(usegmt=True)}",
             f"Content-Type: {content_type}", f"Content-Length: {len(body)}"]
    lines += [f"{n}: {v}" for n, v in extra]
    lines.append("Connection: keep-alive" if keep_alive else "Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def error_page(status: int) -> bytes:
    """The HTML an ALB answers its own errors with."""
    title = f"{status} {REASONS.get(status, 'Error')}"
    return (f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
            f"<center><h1>{title}</h1></center>\r\n</body>\r\n</html>\r\n").encode()


def redirect_location(head: Head, protocol: str, port: int | None, listener_port: int) -> str:
    """Where a redirect action sends: same host, path and query; the action's
    protocol and port (the listener's when it has none; a default port omitted)."""
    host = head.host.rsplit(":", 1)[0] if head.host.count(":") == 1 else head.host
    port = port or listener_port
    scheme = protocol.lower()
    shown = "" if (scheme, port) in (("http", 80), ("https", 443)) else f":{port}"
    query = f"?{head.query}" if head.query else ""
    return f"{scheme}://{host}{shown}{head.path}{query}"
