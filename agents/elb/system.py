"""The only part of the ELB agent that touches the kernel (of the ELB host's
own namespace): iptables-restore of the ELB-* chains, and the VIP addresses.

VIPs are /32 addresses on the internet-side interface, labelled `<if>:vip` so
the agent recognises (and removes) only addresses it added.
"""
from __future__ import annotations

import json
import logging
import re
import subprocess
from collections.abc import Sequence

from agents.elb.errors import ElbCommandError
from agents.elb.rules import Present, parse_dnat_counts, parse_present

TIMEOUT = 10.0
log = logging.getLogger("elb.system")
_LINE = re.compile(r"line:? (\d+)")


def run(argv: Sequence[str], input_text: str | None = None) -> str:
    try:
        done = subprocess.run(list(argv), input=input_text, text=True, capture_output=True,
                              timeout=TIMEOUT, check=False)
    except subprocess.TimeoutExpired as err:
        raise ElbCommandError(argv, -1, f"timed out after {TIMEOUT} s") from err
    if done.returncode != 0:
        found = _LINE.search(done.stderr)
        raise ElbCommandError(argv, done.returncode, done.stderr, input_text or "",
                              int(found.group(1)) if found and input_text else None)
    return done.stdout


class Netfilter:
    """Reads what ELB-* state exists and applies a whole rendered rule set."""

    def present(self) -> Present:
        return parse_present(run(["iptables-save", "-t", "nat"]),
                             run(["iptables-save", "-t", "mangle"]))

    def apply(self, text: str) -> None:
        run(["iptables-restore", "--noflush"], text)

    def dnat_counts(self) -> dict[str, dict[str, int]]:
        """ELB-L-* chain -> target address -> flows DNATed since the chain was written."""
        return parse_dnat_counts(run(["iptables-save", "-c", "-t", "nat"]))


class VipAddresses:
    """The VIPs on the internet-side interface, added and removed as a set."""

    def __init__(self, interface: str):
        self.interface = interface
        self.label = f"{interface}:vip"[:15]

    def current(self) -> set[str]:
        out = run(["ip", "-j", "-4", "addr", "show", "dev", self.interface])
        found = set()
        for link in json.loads(out or "[]"):
            for info in link.get("addr_info", []):
                if info.get("label") == self.label and info.get("prefixlen") == 32:
                    found.add(info["local"])
        return found

    def reconcile(self, wanted: set[str]) -> tuple[set[str], set[str]]:
        have = self.current()
        added, removed = wanted - have, have - wanted
        lines = [f"addr del {ip}/32 dev {self.interface}" for ip in sorted(removed)]
        lines += [f"addr add {ip}/32 dev {self.interface} label {self.label}"
                  for ip in sorted(added)]
        if lines:
            run(["ip", "-batch", "-"], "\n".join(lines) + "\n")
        return added, removed


class InternalVips:
    """Internal ALBs' addresses, each on the VPC interface that holds the ENI
    address it sends from (so the subnet reaches it by ARP); labelled
    `<if>:vip` as VipAddresses labels its own.  An address whose ENI the host
    does not have is left out (logged): the ALB's status shows its listeners
    failing to bind."""

    def __init__(self, internet_side: str):
        self.internet_side = internet_side      # VipAddresses' interface: not ours
        self.placed: set[str] | None = None     # None: not looked yet (a previous run's?)

    def reconcile(self, wanted: dict[str, str]) -> None:
        """wanted: VIP -> the ENI (or VPC) address whose interface carries it."""
        if not wanted and self.placed == set():
            return                              # nothing to do: no command at all
        links = json.loads(run(["ip", "-j", "-4", "addr", "show"]) or "[]")
        owner = {info["local"]: link["ifname"] for link in links
                 for info in link.get("addr_info", [])}
        per_interface: dict[str, set[str]] = {}
        for vip, eni in wanted.items():
            if eni not in owner:
                log.error("internal ALB address %s: no interface has %s", vip, eni)
                continue
            per_interface.setdefault(owner[eni], set()).add(vip)
        labelled = {link["ifname"] for link in links for info in link.get("addr_info", [])
                    if info.get("label") == f"{link['ifname']}:vip"[:15]}
        for interface in sorted(set(per_interface) | labelled):
            if interface != self.internet_side:
                VipAddresses(interface).reconcile(per_interface.get(interface, set()))
        self.placed = {vip for vips in per_interface.values() for vip in vips}


def forget_udp_flows(vip: str, port: int, target: str) -> None:
    """Forget UDP flows pinned to a target that left service (as kube-proxy does
    for endpoints); conntrack exits 1 when there was nothing to delete."""
    argv = ["conntrack", "-D", "-p", "udp", "--orig-dst", vip, "--orig-port-dst", str(port),
            "--reply-src", target]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT,
                              check=False)
    except subprocess.TimeoutExpired as err:
        raise ElbCommandError(argv, -1, f"timed out after {TIMEOUT} s") from err
    if done.returncode not in (0, 1):
        raise ElbCommandError(argv, done.returncode, done.stderr)
