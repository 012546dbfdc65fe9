"""The one connection a trace follows, sent from inside the source host.

`python -m probes.trace.send` reads {"dst", "port", "proto", "token",
"timeout", and for HTTP optionally "path" and "host"} on stdin, and prints
what happened as JSON: the socket's own address (bound before connecting,
so it is known even when nothing answers), wall-clock times around the
exchange (pcap timestamps use the same clock), the outcome (open /
refused / rejected / dropped) and the workload server's answer.

TCP sends `GET /?svclab-trace=TOKEN` (the token is what the trace finds in
the captures, also behind a proxy: an ALB forwards path and query as they
are), or PATH with the token added to its query and the Host header asked;
UDP sends the token itself.
"""
from __future__ import annotations

import errno
import json
import socket
import sys
import time

from probes.reach import kernel_source_address
from probes.sockprobe import IP_RECVERR, read_icmp_error


def request_bytes(dst: str, token: str, path: str = "/", host: str | None = None) -> bytes:
    """The traced HTTP request: PATH with the token in its query, Host as asked."""
    joiner = "&" if "?" in path else "?"
    return (f"GET {path}{joiner}svclab-trace={token} HTTP/1.0\r\n"
            f"Host: {host or dst}\r\n\r\n").encode("latin-1")


def send(dst: str, port: int, proto: str, token: str, timeout: float, path: str = "/",
         host: str | None = None) -> dict:
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    result: dict = {"outcome": "dropped"}
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
        sock.bind((kernel_source_address(dst), 0))
        result["local"], result["lport"] = sock.getsockname()
        sock.settimeout(timeout)
        result["started"] = time.time()
        try:
            if proto == "tcp":
                sock.connect((dst, port))
                sock.sendall(request_bytes(dst, token, path, host))
                result["reply"] = _read_all(sock).decode(errors="replace")
            else:
                sock.connect((dst, port))
                sock.send(token.encode())
                result["reply"] = sock.recv(65535).decode(errors="replace")
            result["outcome"] = "open"
        except TimeoutError:
            result["outcome"] = "dropped"
        except OSError as err:
            icmp = read_icmp_error(sock)
            if icmp is not None:
                result.update(outcome="rejected", **icmp)
            elif err.errno == errno.ECONNREFUSED:
                result["outcome"] = "refused"
            else:
                result.update(outcome="error", error=str(err))
        result["finished"] = time.time()
    return result


def _read_all(sock: socket.socket) -> bytes:
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


def main() -> int:
    request = json.load(sys.stdin)
    json.dump(send(request["dst"], int(request["port"]), request["proto"], request["token"],
                   float(request.get("timeout", 2.0)), request.get("path") or "/",
                   request.get("host")), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
