"""`python -m agents.dns`: serve cluster DNS from a JSON file of API objects.

    python -m agents.dns --listen 127.0.0.1:5353 --metrics 127.0.0.1:9153 \
        --zone-file objects.json [--upstream IP:PORT]

The file holds {"services": [...], "endpointslices": [...], "endpoints": [...],
"pods": [...]} (API JSON). It is re-read when its modification time changes
and on SIGHUP; a file that does not parse keeps the previous zone and is
reported on stderr. (The API list+watch glue replaces the file later.)
Prints one JSON line once listening. Exit: 0 on SIGTERM/SIGINT, 1 when a
port cannot be bound, 2 for bad usage or an unreadable zone file at start.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys

from agents.dns.errors import DnsAgentError, ZoneFileError
from agents.dns.holder import ZoneHolder
from agents.dns.server import DnsServer
from agents.dns.zone import DEFAULT_DOMAIN, DEFAULT_SERVICE_CIDR, DEFAULT_TTL, POD_MODES
from base.signals import Signals

ZONE_FILE_POLL_SECONDS = 1.0


def host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise argparse.ArgumentTypeError(f"expected IP:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m agents.dns", description="svclab cluster DNS")
    parser.add_argument("--listen", type=host_port, default=("0.0.0.0", 53), metavar="IP:PORT")
    parser.add_argument("--metrics", type=host_port, default=None, metavar="IP:PORT")
    parser.add_argument("--zone-file", required=True)
    parser.add_argument("--upstream", type=host_port, default=None, metavar="IP:PORT")
    parser.add_argument("--upstream-timeout", type=float, default=2.0, metavar="SECONDS")
    parser.add_argument("--domain", default=DEFAULT_DOMAIN)
    parser.add_argument("--service-cidr", default=DEFAULT_SERVICE_CIDR)
    parser.add_argument("--ttl", type=int, default=DEFAULT_TTL)
    parser.add_argument("--pods", choices=POD_MODES, default="insecure")
    return parser


def read_zone_file(path: str) -> dict:
    """The object lists in a zone file; ZoneFileError when it is unreadable."""
    try:
        with open(path, encoding="utf-8") as handle:
            document = json.load(handle)
    except (OSError, ValueError) as error:
        raise ZoneFileError(f"{path}: {error}") from error
    if not isinstance(document, dict):
        raise ZoneFileError(f"{path}: expected a JSON object with services/endpointslices/pods")
    lists = {}
    for key in ("services", "endpointslices", "endpoints", "pods"):
        value = document.get(key) or []
        if not isinstance(value, list):
            raise ZoneFileError(f"{path}: {key} must be a list")
        lists[key] = value
    return {"services": lists["services"], "slices": lists["endpointslices"] + lists["endpoints"],
            "pods": lists["pods"]}


def _mtime(path: str) -> float | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        holder = ZoneHolder(args.domain, service_cidr=args.service_cidr, ttl=args.ttl,
                            pod_mode=args.pods, **read_zone_file(args.zone_file))
    except DnsAgentError as error:
        print(f"error: {error}", file=sys.stderr)
        return getattr(error, "exit_code", 2)
    server = DnsServer(args.listen[0], args.listen[1], holder, args.upstream,
                       metrics_address=args.metrics, upstream_timeout=args.upstream_timeout)
    try:
        server.start()
    except DnsAgentError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    stop = Signals(signal.SIGTERM, signal.SIGINT)
    reload_now = Signals(signal.SIGHUP)
    metrics = "%s:%d" % server.metrics_address if server.metrics_address else None
    print(json.dumps({"event": "listening", "dns": "%s:%d" % server.address,
                      "metrics": metrics, "serial": holder.zone.serial}), flush=True)
    seen = _mtime(args.zone_file)
    try:
        while not stop.wait(ZONE_FILE_POLL_SECONDS if not reload_now.is_set() else 0):
            current = _mtime(args.zone_file)
            if reload_now.take() is not None or current != seen:
                seen = current
                _reload(holder, args.zone_file)
    finally:
        server.stop()
    return 0


def _reload(holder: ZoneHolder, path: str) -> None:
    try:
        zone = holder.update(**read_zone_file(path))
    except DnsAgentError as error:
        print(f"zone file not applied, keeping serial {holder.zone.serial}: {error}",
              file=sys.stderr, flush=True)
        return
    print(json.dumps({"event": "zone-updated", "serial": zone.serial}), flush=True)


if __name__ == "__main__":
    sys.exit(main())
