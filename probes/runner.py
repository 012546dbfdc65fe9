"""Run probes from a lab host: start probes.reach inside its namespaces.

Scapy reads routes and interfaces when it starts, so the probe program must
start inside the source host; this module does that with the lab's
`run_in`, batching every probe from one host into one process.
"""
from __future__ import annotations

import ipaddress
import json
import sys

from base.errors import LabError, UsageError
from probes.reach import Probe, ProbeResult
from topo.netns import run_in
from topo.state import LabPaths, read_state


def parse_target(text: str, proto: str = "tcp") -> Probe:
    """ADDRESS[:PORT] -> Probe; a port is required for tcp and udp."""
    address, _, port = text.rpartition(":") if ":" in text else (text, "", "")
    try:
        ipaddress.IPv4Address(address)
    except ValueError as err:
        raise UsageError(f"--to: {text!r} is not ADDRESS[:PORT] with an IPv4 address") from err
    if proto == "icmp":
        if port:
            raise UsageError("--to: icmp probes take no port")
        return Probe(address, 0, "icmp")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise UsageError(f"--to: {proto} probes need a port 1-65535, e.g. {address}:80")
    return Probe(address, int(port), proto)


def probe_from(lab: str, source: str, probes: list[Probe], *,
               namespace: str | None = None, timeout: float = 1.0) -> list[ProbeResult]:
    """Send probes from `source` (a node, pod, client ... of lab `lab`)."""
    state = read_state(LabPaths(lab))
    record = state.find_host(source, namespace)
    if not record.proc.alive():
        raise LabError(f"host {source!r} of lab {lab!r} is not running")
    request = json.dumps({"probes": [p.__dict__ for p in probes], "timeout": timeout})
    out = run_in(record.pid, [sys.executable, "-m", "probes.reach"], input=request,
                 timeout=30 + timeout, where=source)
    return [ProbeResult.from_json(item) for item in json.loads(out)]
