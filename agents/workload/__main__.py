"""`python -m agents.workload`: run the pod workload server until SIGTERM.

Prints one JSON line on stdout once every port listens, e.g.
{"event": "listening", "pod": "web-1", "ports": ["80/TCP", "53/UDP"]}, so the
pod runtime (and tests using port 0) learn when it serves and on which ports;
then one access-log line per request, as nginx does (server.AccessLog).
Exit codes: 0 after SIGTERM/SIGINT, 1 when a port cannot be bound, 2 bad usage.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys

from agents.workload.config import (
    WorkloadConfig,
    WorkloadConfigError,
    WorkloadError,
    parse_port_spec,
)
from agents.workload.server import AccessLog, WorkloadServer


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m agents.workload",
                                     description="svclab pod workload server")
    parser.add_argument("--pod-name", required=True)
    parser.add_argument("--pod-ip", required=True)
    parser.add_argument("--port", action="append", default=[], metavar="PORT[/TCP|/UDP]",
                        help="a declared container port; repeatable (default 80/TCP)")
    parser.add_argument("--bind", default="0.0.0.0", help="listen address (default 0.0.0.0)")
    parser.add_argument("--ready-file", default=None,
                        help="/ready answers 200 only while this file exists")
    parser.add_argument("--grace", type=float, default=0.0, metavar="SECONDS",
                        help="after SIGTERM keep serving this long (Terminating), then exit")
    return parser


def config_from_args(argv: list[str]) -> WorkloadConfig:
    args = build_parser().parse_args(argv)
    ports = tuple(parse_port_spec(text) for text in args.port)
    return WorkloadConfig(pod_name=args.pod_name, pod_ip=args.pod_ip, ports=ports,
                          bind_ip=args.bind, ready_file=args.ready_file,
                          grace_seconds=args.grace)


async def run(config: WorkloadConfig) -> None:
    log = AccessLog(sys.stdout.fileno())
    server = WorkloadServer(config, log=log)
    await server.start()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, server.terminate)
    log.open(json.dumps({"event": "listening", "pod": config.pod_name,
                         "ports": [f"{port}/{proto}" for proto, port in server.bound_ports]})
             + "\n")
    await server.serve_until_terminated()


def main(argv: list[str] | None = None) -> int:
    try:
        config = config_from_args(sys.argv[1:] if argv is None else argv)
    except WorkloadConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        asyncio.run(run(config))
    except WorkloadError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
