"""`python -m agents.dns.outside`: the lab's stand-in for public DNS.

It answers for the emulated outside world — the VPC resolver at the VPC's
.2 (AmazonProvidedDNS) and the internet's resolver — from a JSON file of A
records: outside services such as db.example.com, EC2 host names, and the
ELB host names the cloud controller adds while the lab runs.  It is
authoritative for the whole tree ("."), so every other name is NXDOMAIN:
nothing is ever forwarded outside the lab.

    python -m agents.dns.outside --listen 172.31.0.2:53 --listen 203.0.113.53:53 \
        --records /run/svclab/NAME/outside-dns.json

The file is {"name": ["address", ...], ...}; it is re-read when it changes.
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
from contextlib import ExitStack

from agents.dns.__main__ import host_port
from agents.dns.server import DnsServer
from agents.dns.zone import Record, Zone, build_static_zone
from base.signals import Signals

POLL_SECONDS = 0.2


class RecordsFile:
    """A zone built from a records file, rebuilt (atomically) when it changes."""

    def __init__(self, path: str):
        self.path = path
        self._mtime: float | None = None
        self._serial = 0
        self.zone: Zone = self._load()

    def _load(self) -> Zone:
        import os
        self._mtime = os.stat(self.path).st_mtime
        with open(self.path, encoding="utf-8") as handle:
            names = json.load(handle)
        self._serial += 1
        return build_static_zone(".", {name: [Record("A", ip) for ip in addresses]
                                       for name, addresses in names.items()},
                                 serial=self._serial)

    def reload_if_changed(self) -> bool:
        import os
        try:
            if os.stat(self.path).st_mtime == self._mtime:
                return False
            self.zone = self._load()
        except (OSError, ValueError) as err:
            print(f"outside-dns: keeping the previous zone: {err}", file=sys.stderr, flush=True)
            return False
        return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agents.dns.outside", description=__doc__)
    parser.add_argument("--listen", type=host_port, action="append", required=True,
                        metavar="IP:PORT")
    parser.add_argument("--records", required=True, help="JSON file: name -> [addresses]")
    args = parser.parse_args(argv)
    try:
        records = RecordsFile(args.records)
    except (OSError, ValueError) as err:
        print(f"error: --records: {err}", file=sys.stderr)
        return 2
    stop = Signals(signal.SIGTERM, signal.SIGINT)
    with ExitStack() as servers:
        for ip, port in args.listen:
            servers.enter_context(DnsServer(ip, port, records))
        print(json.dumps({"event": "listening", "addresses": [f"{i}:{p}" for i, p in args.listen],
                          "names": len(records.zone.records)}), flush=True)
        while not stop.wait(POLL_SECONDS):
            records.reload_if_changed()
    return 0


if __name__ == "__main__":
    sys.exit(main())
