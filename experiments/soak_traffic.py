"""The soak's churn traffic, inside a lab pod: one request per line of stdin.

`python -m experiments.soak_traffic` reads lines `tcp|udp IP PORT` and for
each sends one request: over TCP `GET /hostname` to the workload server,
over UDP one datagram (the workload server echoes it).  It prints one JSON
line per request: {"proto", "ip", "port", "ok", "err"}.  The answers do not
matter (churn Services come and go, policies deny); the flows leave
conntrack entries that the proxy agent must clean up when a UDP Service or
its endpoints go.  It ends when stdin closes.  Standard library only.
"""
from __future__ import annotations

import json
import socket
import sys

TIMEOUT = 0.5


def request(proto: str, ip: str, port: int) -> dict:
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    sock = socket.socket(socket.AF_INET, kind)
    sock.settimeout(TIMEOUT)
    try:
        if proto == "tcp":
            sock.connect((ip, port))
            sock.sendall(b"GET /hostname HTTP/1.0\r\n\r\n")
            ok = sock.recv(64).startswith(b"HTTP/")
        else:
            sock.sendto(b"soak", (ip, port))
            ok = bool(sock.recvfrom(4096)[0])
        return {"ok": ok, "err": None}
    except OSError as exc:
        return {"ok": False, "err": type(exc).__name__}
    finally:
        sock.close()


def main() -> int:
    for line in sys.stdin:
        parts = line.split()
        if len(parts) != 3 or parts[0] not in ("tcp", "udp"):
            continue
        proto, ip, port = parts[0], parts[1], int(parts[2])
        print(json.dumps({"proto": proto, "ip": ip, "port": port,
                          **request(proto, ip, port)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
