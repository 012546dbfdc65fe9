"""The failover experiment's client: new connections at a fixed rate, inside a pod.

`python -m experiments.load.worker IP PORT RATE TIMEOUT` runs inside a lab
host (started by experiments/load/steady.py).  Every 1/RATE seconds it opens a
fresh TCP connection to IP:PORT in a thread of its own, asks the workload
server `GET /hostname`, and prints one JSON line per connection:
{"t": start (epoch s), "ms": duration, "pod": who answered or null,
"err": failure kind or null, "port": the source port}.  It stops when its stdin closes (its owner
ends it that way) or after MAX_SECONDS.  Standard library only.
"""
from __future__ import annotations

import errno
import json
import socket
import sys
import threading
import time

MAX_SECONDS = 600.0
ERRNO_KIND = {errno.ECONNREFUSED: "refused", errno.ECONNRESET: "reset",
              errno.EHOSTUNREACH: "unreachable", errno.ENETUNREACH: "unreachable",
              errno.ETIMEDOUT: "timeout", errno.EPIPE: "reset"}
_print_lock = threading.Lock()


def one(ip: str, port: int, timeout: float) -> None:
    started = time.time()
    pod, err, local_port = None, None, None
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        try:
            sock.connect((ip, port))
            sock.sendall(b"GET /hostname HTTP/1.0\r\n\r\n")
            data = b""
            while chunk := sock.recv(4096):
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            status = head.split(b"\r\n", 1)[0].split(b" ")
            if head.startswith(b"HTTP/") and len(status) > 1 and status[1] == b"200":
                pod = body.decode(errors="replace").strip()
            else:
                err = "bad-reply"
        except TimeoutError:
            err = "timeout"
        except OSError as exc:
            err = ERRNO_KIND.get(exc.errno, f"error-{exc.errno}")
        local_port = sock.getsockname()[1] or None     # the source port the SYN left from
    finally:
        sock.close()
    line = json.dumps({"t": round(started, 4), "ms": round((time.time() - started) * 1e3, 2),
                       "pod": pod, "err": err, "port": local_port})
    with _print_lock:
        print(line, flush=True)


def main() -> int:
    ip, port, rate, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), \
        float(sys.argv[4])
    stop = threading.Event()

    def watch_stdin() -> None:
        sys.stdin.read()
        stop.set()
    threading.Thread(target=watch_stdin, daemon=True).start()
    begin = time.monotonic()
    tick = 0
    while not stop.is_set() and time.monotonic() - begin < MAX_SECONDS:
        threading.Thread(target=one, args=(ip, port, timeout), daemon=True).start()
        tick += 1
        stop.wait(max(0.0, begin + tick / rate - time.monotonic()))
    time.sleep(timeout + 0.5)          # let the last connections finish and report
    return 0


if __name__ == "__main__":
    sys.exit(main())
