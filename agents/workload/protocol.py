"""What the workload server says, as pure functions of what it was sent.

The server decides per TCP connection whether the client speaks HTTP (first
bytes are an HTTP method) or is a plain TCP client (gets a banner, then an
echo). Keeping the decisions and the reply texts here, free of sockets, lets
tests check every answer without a network and keeps server.py about I/O only.

Bodies follow Kubernetes' agnhost `netexec` where it has the same endpoint:
`/hostname`, `/clientip` and `/echo?msg=` answer the bare value, no newline.
"""
from __future__ import annotations

import enum
import json
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


@dataclass(frozen=True)
class HttpRequest:
    method: str
    target: str
    version: str


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
    """The request line of an HTTP request head, or None when it is not one."""
    line = data.split(b"\n", 1)[0].rstrip(b"\r")
    parts = line.split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
        return None
    try:
        method, target, version = (p.decode("ascii") for p in parts)
    except UnicodeDecodeError:
        return None
    return HttpRequest(method, target, version)


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
    if path in ("/", "/json"):
        document = {"pod": view.pod_name, "podIP": view.pod_ip, "client": host_port(view.client),
                    "port": view.local_port, "proto": "tcp"}
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
