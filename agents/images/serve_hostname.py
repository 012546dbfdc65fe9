"""`registry.k8s.io/serve_hostname` (and agnhost's `serve-hostname`): the
hostname, on one port.

As the Go program in kubernetes' test/images behaves: HTTP by default (the
hostname as the body of every path, no newline), `--tcp` writes the hostname
to each connection and closes it, `--udp` answers every datagram with it;
HTTP together with TCP or UDP is refused.  The hostname is the kernel's (the
pod's UTS name: its name, or spec.hostname).  Each request is logged as
`HTTP request from 10.0.0.7:41234` (Go's log format, stderr).

On SIGTERM the two flavours differ, as the real ones do: the standalone
image logs and panics (exit 2); agnhost's logs "Awaiting pod deletion." and
keeps serving for 60 s (so a pod takes its whole grace period to go).
"""
from __future__ import annotations

import signal
import socket
import sys

from agents.images.flags import FlagError, parse_flags, split_launch
from agents.images.http import Request, Response, go_log, host_port
from agents.images.netloop import Loop
from agents.proctitle import set_process_title

FLAGS = {"tcp": False, "udp": False, "http": True, "close": False, "port": 9376}
AGNHOST_LINGER = 60.0
SIGNAL_NAMES = {signal.SIGTERM: "terminated", signal.SIGINT: "interrupt"}


def http_answer(hostname: str, close: bool):
    def answer(request: Request) -> Response:
        go_log(f"HTTP request from {host_port(request.client)}")
        headers = (("Connection", "close"),) if close else ()
        return Response(200, hostname.encode(), headers=headers, close=close)
    return answer


def serve(args: list[str], agnhost: bool) -> int:
    """Run until the image's own end; the exit code."""
    try:
        values, _ = parse_flags(args, FLAGS)
    except FlagError as err:
        print(err, file=sys.stderr)
        return 2
    if values["http"] and (values["tcp"] or values["udp"]):
        go_log("Can't server TCP/UDP mode and HTTP mode at the same time")
        return 1
    hostname, port = socket.gethostname(), int(values["port"])
    loop = Loop()
    code = [0]

    def terminate(signum: int) -> None:
        name = SIGNAL_NAMES.get(signum, str(signum))
        if agnhost:
            go_log(f"Shutting down after receiving signal: {name}.")
            go_log("Awaiting pod deletion.")
            loop.call_later(AGNHOST_LINGER, loop.stop)
            return
        go_log(f"Terminating after receiving signal: {name}.")
        print(f"panic: Terminating after receiving signal: {name}.\n", file=sys.stderr,
              flush=True)
        code[0] = 2
        loop.stop()

    loop.on_signal(signal.SIGTERM, lambda: terminate(signal.SIGTERM))
    if not agnhost:
        loop.on_signal(signal.SIGINT, lambda: terminate(signal.SIGINT))
    try:
        if values["tcp"]:
            loop.listen_tcp(port, lambda client: (
                go_log(f"TCP request from {host_port(client)}"), hostname.encode())[1])
        if values["udp"]:
            loop.listen_udp(port, lambda data, client: (
                go_log(f"UDP request from {host_port(client)}"), hostname.encode())[1])
        if values["http"]:
            loop.listen_http(port, http_answer(hostname, bool(values["close"])))
    except OSError as err:
        go_log(f"listen tcp :{port}: {err.strerror}")
        return 1
    if agnhost:
        go_log(f"Serving on port {port}.")
    loop.run()
    return code[0]


def main(argv: list[str] | None = None) -> int:
    launch = split_launch(sys.argv[1:] if argv is None else argv)
    image_argv = list(launch.argv) or ["/serve_hostname"]
    set_process_title(image_argv)
    return serve(image_argv[1:], agnhost=False)


if __name__ == "__main__":
    sys.exit(main())
