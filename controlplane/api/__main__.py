"""``python -m controlplane.api``: run the API server stand-alone until SIGTERM/SIGINT.

Prints ``listening on https://HOST:PORT`` and the kubeconfig path, one per
line, so scripts and tests can pick them up.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import socket
import sys
from pathlib import Path

from base.signals import Signals
from controlplane.api.server import ApiServer


def _listen(spec: str) -> socket.socket:
    host, _, port = spec.rpartition(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host or "127.0.0.1", int(port)))
    sock.listen(128)
    return sock


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m controlplane.api", description=__doc__)
    parser.add_argument("--state-dir", required=True, type=Path)
    parser.add_argument("--cluster-info", required=True, type=Path,
                        help="cluster info JSON written by the lab")
    parser.add_argument("--listen", action="append", default=[],
                        help="HOST:PORT (repeatable; port 0 = any)")
    parser.add_argument("--node-grace-period", type=float, default=40.0)
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, stream=sys.stderr)
    try:
        info = json.loads(args.cluster_info.read_text())
    except (OSError, ValueError) as exc:
        print(f"error: cannot read cluster info {args.cluster_info}: {exc}", file=sys.stderr)
        return 2
    stop = Signals(signal.SIGTERM, signal.SIGINT)
    with ApiServer(args.state_dir, info, node_grace_period=args.node_grace_period) as server:
        for spec in args.listen or ["127.0.0.1:0"]:
            print(f"listening on https://{server.add_listener(_listen(spec))}", flush=True)
        print(f"kubeconfig {server.kubeconfig_path}", flush=True)
        server.start()
        while not stop.wait(1.0):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
