"""What the workload server says, as pure functions of what it was sent.

The server decides per TCP connection whether the client speaks HTTP (first
bytes are an HTTP method) or is a plain TCP client (gets a banner, then an
echo). Keeping the decisions and the reply texts here, free of sockets, lets
tests check every answer without a network and keeps server.py about I/O only.

Bodies follow Kubernetes' agnhost `netexec` where it has the same endpoint:
`/hostname`, `/clientip` and `/echo?msg=` answer the bare value, no newline.

Behind a proxy (the lab's ALB) the request carries `X-Forwarded-For`,
`-Proto` and `-Port`: the JSON identity (`/`, `/json`) repeats them as
`forwardedFor`, `forwardedProto` and `forwardedPort` when present, so a
client behind the proxy is visible next to the TCP source the pod saw.  A
svclab probe (User-Agent `svclab-...`, or trace's `?svclab-trace=` query)
gets the identity on any other path too, as from the nginx emulation: an
ALB path rule forwards `/api/...` unchanged.

Access-log lines are nginx's: the `combined` format for HTTP, the stream
module's `basic` format for plain TCP sessions and UDP datagrams, with the
client address the server saw (so `kubectl logs` tells who connected and
whether the source was translated).
"""
from __future__ import annotations

import enum
import json
import re
import time
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

HTTP_METHODS = (b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH", b"TRACE")
_METHOD_PREFIXES = tuple(m + b" " for m in HTTP_METHODS)
MAX_HEADER_BYTES = 16 * 1024


class Sniff(enum.Enum):
    """What the first bytes of a TCP connection say about its protocol."""

    HTTP = "http"
    PLAIN = "plain"
    UNDECIDED = "undecided"


def sniff_protocol(first_bytes: bytes) -> Sniff:
    """HTTP when the bytes start with `METHOD `, UNDECIDED while they could still."""
    if first_bytes.startswith(_METHOD_PREFIXES):
        return Sniff.HTTP
    if any(prefix.startswith(first_bytes) for prefix in _METHOD_PREFIXES):
        return Sniff.UNDECIDED   # includes b"": nothing received yet
    return Sniff.PLAIN


def host_port(address: tuple) -> str:
    """`ip:port`, with IPv6 addresses in brackets."""
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def banner_line(pod_name: str, pod_ip: str, client: tuple) -> bytes:
    """The line a plain TCP client receives before its bytes are echoed."""
    return f"svclab {pod_name} {pod_ip} {host_port(client)}\n".encode()


def udp_reply(pod_name: str, pod_ip: str, client: tuple, payload: bytes) -> bytes:
    """The datagram sent back for every datagram received."""
    return f"svclab {pod_name} {pod_ip} {host_port(client)} ".encode() + payload


# Request headers a proxy adds, and the JSON keys the identity document shows them as.
FORWARDED_HEADERS = (("x-forwarded-for", "forwardedFor"), ("x-forwarded-proto", "forwardedProto"),
                     ("x-forwarded-port", "forwardedPort"))
# How svclab's probes ask for the identity on any path (as the nginx emulation's
# default site answers them): behind an ALB path rule the pod gets /api/..., not /.
SVCLAB_AGENT = "svclab-"
SVCLAB_TRACE_QUERY = re.compile(r"(^|&)svclab-trace=")
_WANTED = frozenset([name for name, _ in FORWARDED_HEADERS] + ["user-agent"])


@dataclass(frozen=True)
class HttpRequest:
    method: str
    target: str
    version: str
    forwarded: tuple[tuple[str, str], ...] = ()     # (JSON key, value) of X-Forwarded-* sent
    svclab_asks: bool = False       # a svclab probe asks (User-Agent svclab-*, ?svclab-trace=)


@dataclass(frozen=True)
class HttpResponse:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"


REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
           431: "Request Header Fields Too Large", 503: "Service Unavailable"}


def header_complete(data: bytes) -> bool:
    return b"\r\n\r\n" in data or b"\n\n" in data


def parse_request_line(data: bytes) -> HttpRequest | None:
    """The request line of an HTTP request head, or None when it is not one;
    with the head's X-Forwarded-* headers and whether svclab's probes ask."""
    line = data.split(b"\n", 1)[0].rstrip(b"\r")
    parts = line.split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
        return None
    try:
        method, target, version = (p.decode("ascii") for p in parts)
    except UnicodeDecodeError:
        return None
    headers = _wanted_headers(data)
    forwarded = tuple((key, ", ".join(headers[name])) for name, key in FORWARDED_HEADERS
                      if name in headers)
    asks = any(agent.startswith(SVCLAB_AGENT) for agent in headers.get("user-agent", ())) \
        or SVCLAB_TRACE_QUERY.search(urlsplit(target).query) is not None
    return HttpRequest(method, target, version, forwarded, asks)


def forwarded_headers(head: bytes) -> tuple[tuple[str, str], ...]:
    """(JSON key, value) of each X-Forwarded-For/-Proto/-Port header of a request
    head, in FORWARDED_HEADERS order; a repeated header's values joined with
    ", " (one list, RFC 9110)."""
    request = parse_request_line(head)
    return request.forwarded if request else ()


def _wanted_headers(head: bytes) -> dict[str, list[str]]:
    """The headers route() looks at (lower-case name -> values); cheap when absent."""
    lowered = head.lower()
    if b"x-forwarded-" not in lowered and b"svclab-" not in lowered:
        return {}
    found: dict[str, list[str]] = {}
    for raw in head.split(b"\n")[1:]:
        line = raw.rstrip(b"\r")
        if not line.strip():
            break
        name, sep, value = line.partition(b":")
        name = name.strip().lower().decode("latin-1")
        if sep and name in _WANTED:
            found.setdefault(name, []).append(value.strip().decode("latin-1"))
    return found


@dataclass(frozen=True)
class ServerView:
    """What a route needs to know about the server and this connection."""

    pod_name: str
    pod_ip: str
    client: tuple
    local_port: int
    ready: bool


def route(request: HttpRequest | None, view: ServerView) -> HttpResponse:
    """The response for one request (None = unparseable head)."""
    if request is None:
        return HttpResponse(400, b"bad request\n")
    if request.method not in ("GET", "HEAD"):
        return HttpResponse(405, b"method not allowed\n")
    url = urlsplit(request.target)
    path = url.path or "/"
    if path == "/hostname":
        return HttpResponse(200, view.pod_name.encode())
    if path == "/clientip":
        return HttpResponse(200, host_port(view.client).encode())
    if path == "/echo":
        message = parse_qs(url.query, keep_blank_values=True).get("msg", [""])[0]
        return HttpResponse(200, message.encode())
    if path in ("/", "/json") or request.svclab_asks:
        document = {"pod": view.pod_name, "podIP": view.pod_ip, "client": host_port(view.client),
                    "port": view.local_port, "proto": "tcp", **dict(request.forwarded)}
        return HttpResponse(200, (json.dumps(document) + "\n").encode(), "application/json")
    if path == "/healthz":
        return HttpResponse(200, b"ok")
    if path == "/ready":
        return HttpResponse(200, b"ready") if view.ready else HttpResponse(503, b"not ready")
    return HttpResponse(404, b"not found\n")


def render_response(response: HttpResponse, pod_name: str, head_only: bool = False) -> bytes:
    """HTTP/1.1 bytes with Connection: close (one request per connection)."""
    reason = REASONS.get(response.status, "Unknown")
    head = (f"HTTP/1.1 {response.status} {reason}\r\n"
            f"Content-Type: {response.content_type}\r\n"
            f"Content-Length: {len(response.body)}\r\n"
            f"X-Svclab-Pod: {pod_name}\r\n"
            "Connection: close\r\n\r\n").encode()
    return head if head_only else head + response.body


# --- access log, as nginx writes it ------------------------------------------------

MAX_LOG_LINE = 4000      # below PIPE_BUF: a line is written whole or not at all


def log_time(now: float | None = None) -> str:
    """nginx's $time_local: 05/Dec/2026:13:00:00 +0000."""
    return time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(now))


def log_escape(raw: bytes) -> str:
    """Bytes as nginx escapes them in a log: `"`, `\\` and non-printables as \\xHH."""
    return "".join(chr(b) if 0x20 <= b < 0x7F and b not in (0x22, 0x5C) else f"\\x{b:02X}"
                   for b in raw)


def header_value(head: bytes, name: bytes) -> bytes | None:
    """The first header `name` (case-insensitive) of a request head, or None."""
    wanted = name.lower() + b":"
    for line in head.split(b"\n")[1:]:
        if line.lower().startswith(wanted):
            return line[len(wanted):].strip()
        if not line.strip():
            break
    return None


def http_log_line(client: tuple, head: bytes, status: int, body_bytes: int,
                  now: float | None = None) -> str:
    """nginx `combined`: client - - [time] "request" status bytes "referer" "user-agent"."""
    request = head.split(b"\n", 1)[0].rstrip(b"\r")
    referer = header_value(head, b"Referer")
    agent = header_value(head, b"User-Agent")
    line = (f'{client[0]} - - [{log_time(now)}] "{log_escape(request)}" {status} {body_bytes} '
            f'"{log_escape(referer) if referer else "-"}" '
            f'"{log_escape(agent) if agent else "-"}"')
    return line[:MAX_LOG_LINE] + "\n"


def stream_log_line(client: tuple, protocol: str, sent: int, received: int, seconds: float,
                    now: float | None = None) -> str:
    """nginx stream `basic`: client [time] TCP|UDP status bytes_sent bytes_received time."""
    return (f"{client[0]} [{log_time(now)}] {protocol} 200 {sent} {received} "
            f"{seconds:.3f}\n")
