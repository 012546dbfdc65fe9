"""`svclab trace`: one connection, captured on every host it can cross, explained.

    trace(lab, "client", None, "198.51.100.11:31326") -> Trace

Steps: resolve the target (probes/targets.py); capture (probes/capture/probe.py)
on the source, the igw, the elb, every node and the pods behind the target
(the Service's endpoints, or the pod with that address), filtered to the
trace's ports; send ONE connection from the source (probes/trace/send.py:
a real TCP connect + `GET /` to the workload server, or one UDP datagram);
read every node's conntrack while the entries are fresh; then follow the
flow through the pcaps (probes/trace/flow.py) and explain each host's
decision: kube-proxy's live rules, with the NetworkPolicy rules of the same
node, walked by the proxy tracers with the chain path and the policy rule
that allowed or the pod chain that dropped the packet
(probes/trace/rules.py), the topology rule that chose the endpoints the
packet was spread over (probes/trace/topology.py, from the same Services,
EndpointSlices and the node's zone label), the conntrack entry, the igw's
IGW-* rule, the ELB listener.  Pcaps go to a temporary folder unless
keep_pcaps_dir.

An HTTP target (`http=`, probes/targets.py's HttpTarget: an Ingress's host
and path) sends its path and Host header.  When the address is an ALB's,
the trace first says what the ALB decides (probes/trace/l7.py: listener,
rule, target group, targets), captures also on the pods behind that target
group, and follows the ALB's own connection to the target (the ALB proxies:
a second leg from its ENI to the NodePort or pod) with the same L3/L4
tracer; the target the ALB chose is the one that leg shows.
"""
from __future__ import annotations

import json
import shutil
import sys
import tempfile
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from agents.proxy.model import node_zone
from agents.proxy.ruleset import RuleSet
from base.elb_api import read_config
from base.errors import CommandError, LabError, UsageError
from base.kube.client import KubeClient
from probes.capture.probe import Capture
from probes.reach import Probe
from probes.targets import HttpTarget, resolve_http_target, resolve_target
from probes.trace.alb import alb_chosen, alb_decision, read_l7_hop
from probes.trace.flow import AddrPort, FlowOrigin, Leg, follow
from probes.trace.l7 import L7Hop
from probes.trace.pcap import read_capture
from probes.trace.report import Decision, Trace
from probes.trace.rules import (
    POLICY_TABLE,
    find_conntrack,
    igw_rule_for,
    nat_rule_to,
    parse_conntrack,
    pick_branch,
    pod_interfaces,
    walk_iptables,
    walk_nftables,
)
from probes.trace.topology import node_ruleset, topology_note
from topo.netns import run_in
from topo.spec import load_spec
from topo.state import HostRecord, LabPaths, LabState, read_state

SEND_TIMEOUT = 2.0


class TraceError(LabError):
    """A trace that could not be run or explained (carries the failing step)."""


def trace(lab: str, source: str, namespace: str | None, target_text: str, proto: str = "tcp",
          keep_pcaps_dir: str | Path | None = None, http: HttpTarget | None = None) -> Trace:
    if proto not in ("tcp", "udp"):
        raise UsageError(f"--proto: trace follows tcp or udp, not {proto!r}")
    if http is not None and proto != "tcp":
        raise UsageError(f"--proto: an HTTP target ({http.url}) is tcp, not {proto}")
    state = read_state(LabPaths(lab))
    origin_record = state.find_host(source, namespace)
    probe = (resolve_target(lab, target_text, proto, namespace) if http is None
             else Probe(http.address, http.port, "tcp"))
    client = KubeClient.from_kubeconfig(str(LabPaths(lab).kubeconfig))
    l7 = read_l7_hop(lab, probe.dst, probe.port, http) if proto == "tcp" else None
    if l7 is not None and http is None:     # an ALB by NAME:PORT: ask as curl would
        http = resolve_http_target(lab, target_text, None, namespace)
        l7 = read_l7_hop(lab, probe.dst, probe.port, http)
    entries = [(probe.dst, probe.port)]
    if l7 is not None:
        entries += [tuple(t.endpoint.rsplit(":", 1)) for t in l7.targets]
    behind = _behind(lab, client, state, [(a, int(p)) for a, p in entries], proto)
    pods, ports = behind.pods, behind.ports
    hosts = _capture_hosts(state, origin_record, pods)
    packet_filter = f"({proto} and ({' or '.join(f'port {p}' for p in sorted(ports))})) or icmp"
    folder = Path(keep_pcaps_dir) if keep_pcaps_dir else Path(tempfile.mkdtemp(prefix="svtrace-"))
    token = f"svclab-trace-{uuid.uuid4().hex[:12]}"
    try:
        with Capture(lab, [(h.name, h.namespace) for h in hosts], folder,
                     packet_filter) as capture:
            sent = _send(origin_record, probe.dst, probe.port, proto, token, http)
            conntrack = _conntrack(state, proto)
        packets = read_capture(folder, capture.hosts)
    finally:
        if not keep_pcaps_dir:
            shutil.rmtree(folder, ignore_errors=True)
    label = {h.host: h.label for h in capture.hosts}
    origin = FlowOrigin(proto, label[origin_record.host], AddrPort(sent["local"], sent["lport"]),
                        AddrPort(probe.dst, probe.port), token.encode(),
                        sent["started"], sent["finished"])
    peers = {(h.label, i.name): (i.peer.host, i.peer.interface)
             for h in capture.hosts for i in h.interfaces if i.peer is not None}
    legs = follow(packets, origin, peers)
    if l7 is not None:
        l7 = l7.with_chosen(alb_chosen(legs, state, label))
    decisions = _decisions(lab, state, legs, origin, conntrack, label,
                           _Topology(client, behind.services, behind.slices), l7)
    return Trace(lab=lab, source=origin.source_host, target=target_text, proto=proto,
                 dst=str(origin.target), local=str(origin.local), outcome=sent["outcome"],
                 answer=_answer(sent.get("reply"), proto), legs=tuple(legs),
                 decisions=tuple(decisions), captured_on=tuple(h.label for h in capture.hosts),
                 pcaps=str(folder) if keep_pcaps_dir else None, l7=l7,
                 url=http.url if http else None, host_header=http.host if http else None)


# --- planning ------------------------------------------------------------------

@dataclass(frozen=True)
class _Behind:
    pods: list[HostRecord]          # the pods that may answer
    ports: set[int]                 # every port the flow may use on its way
    services: list[dict]            # the Services the target belongs to
    slices: list[dict]              # their EndpointSlices


def _behind(lab: str, client: KubeClient, state: LabState, entries: list[tuple[str, int]],
            proto: str) -> _Behind:
    """Pods that may answer a connection to any of entries (address, port): the
    address connected to, and an ALB's targets; and every port the flow may use."""
    services, _ = client.list("services")
    node_addresses = {a for r in state.hosts.values() if r.kind == "node" for a in r.addresses}
    public = _public_addresses(lab)
    vips = {vip: lb.key for lb in read_config(LabPaths(lab).root / "elb" / "config.json")
            .load_balancers for vip in lb.vips}
    ports, chosen = {port for _, port in entries}, []
    for svc in services:
        key = f"{svc['metadata']['namespace']}/{svc['metadata']['name']}"
        for sp in svc["spec"].get("ports", []):
            if sp.get("protocol", "TCP").lower() != proto:
                continue
            hit = any((svc["spec"].get("clusterIP") == dst and sp["port"] == port) or (
                sp.get("nodePort") == port and (dst in node_addresses or dst in public)) or (
                vips.get(dst) == key and sp["port"] == port) for dst, port in entries)
            if hit and svc not in chosen:
                chosen.append(svc)
                ports |= {sp["port"], sp.get("nodePort") or sp["port"]}
    pod_ips, all_slices = set(), []
    for svc in chosen:
        slices, _ = client.list("endpointslices", svc["metadata"]["namespace"],
                                label_selector=f"kubernetes.io/service-name="
                                               f"{svc['metadata']['name']}")
        all_slices += slices
        for item in slices:
            ports |= {p["port"] for p in item.get("ports") or [] if p.get("port")}
            pod_ips |= {a for e in item.get("endpoints") or [] for a in e.get("addresses", [])}
    pod_ips |= {dst for dst, _ in entries}      # a pod's own address (also an ip target)
    pods = [r for r in state.hosts.values() if r.kind == "pod" and set(r.addresses) & pod_ips]
    return _Behind(pods, ports, chosen, all_slices)


class _Topology:
    """Per node, the rule set its agent computes for the traced services
    (read once: the Node object for its zone label)."""

    def __init__(self, client: KubeClient, services: list[dict], slices: list[dict]):
        self.client, self.services, self.slices = client, services, slices
        self._rulesets: dict[str, RuleSet] = {}
        self._zoned: dict[str, bool] = {}

    def note(self, record: HostRecord, chains) -> str | None:
        if not self.services:
            return None
        if record.name not in self._rulesets:
            node = self.client.find("nodes", record.name)
            self._rulesets[record.name] = node_ruleset(record.name, record.addresses, node,
                                                       self.services, self.slices)
            self._zoned[record.name] = bool(node and node_zone(node))
        return topology_note(self._rulesets[record.name], chains,
                             zoned=self._zoned[record.name])


def _public_addresses(lab: str) -> set[str]:
    return {str(n.public_ip) for n in load_spec(LabPaths(lab).spec).nodes}


def _capture_hosts(state: LabState, origin: HostRecord, pods) -> list[HostRecord]:
    wanted = [origin] + [r for r in state.hosts.values()
                         if r.kind in ("router", "loadbalancer", "node")] + list(pods)
    seen, out = set(), []
    for record in wanted:
        if record.host not in seen and record.proc.alive():
            seen.add(record.host)
            out.append(record)
    return out


# --- doing ---------------------------------------------------------------------

def _send(record: HostRecord, dst: str, port: int, proto: str, token: str,
          http: HttpTarget | None = None) -> dict:
    request = json.dumps({"dst": dst, "port": port, "proto": proto, "token": token,
                          "timeout": SEND_TIMEOUT,
                          **({"path": http.path, "host": http.host} if http else {})})
    out = run_in(record.pid, [sys.executable, "-m", "probes.trace.send"], input=request,
                 timeout=SEND_TIMEOUT + 20, where=record.name)
    return json.loads(out)


def _conntrack(state: LabState, proto: str) -> dict[str, str]:
    """conntrack -L of every node, the igw and the elb, read at once."""
    records = [r for r in state.hosts.values() if r.kind in ("node", "router", "loadbalancer")]

    def read(record: HostRecord) -> str:
        return run_in(record.pid, ["conntrack", "-L", "-p", proto], timeout=10,
                      where=record.name)
    with ThreadPoolExecutor(max_workers=len(records) or 1) as pool:
        texts = list(pool.map(read, records))
    return {r.host: text for r, text in zip(records, texts)}


def _rules_of(record: HostRecord, mode: str) -> str:
    if mode == "nftables":
        return run_in(record.pid, ["nft", "list", "table", "ip", "kube-proxy"], timeout=10,
                      where=record.name)
    return run_in(record.pid, ["iptables-save"], timeout=10, where=record.name)


def _policy_listing(record: HostRecord) -> str | None:
    """`nft list table ip svclab-netpol` when the node has that table."""
    tables = run_in(record.pid, ["nft", "list", "tables", "ip"], timeout=10, where=record.name)
    if f"table {POLICY_TABLE}" not in tables.splitlines():
        return None
    return run_in(record.pid, ["nft", "list", "table", *POLICY_TABLE.split()], timeout=10,
                  where=record.name)


def _interfaces_of(record: HostRecord) -> dict[str, str]:
    return pod_interfaces(run_in(record.pid, ["ip", "-4", "route", "show"], timeout=10,
                                 where=record.name))


# --- explaining ----------------------------------------------------------------

def _decisions(lab, state: LabState, legs: list[Leg], origin: FlowOrigin,
               conntrack: dict[str, str], label: dict[str, str],
               topology: _Topology, l7: L7Hop | None = None) -> list[Decision]:
    by_label = {label.get(r.host, r.name): r for r in state.hosts.values()}
    out = []
    for leg in legs:
        for host in dict.fromkeys(s.host for s in leg.request):
            record = by_label.get(host)
            seen = [s for s in leg.request if s.host == host]
            if record is None:
                continue
            if record.kind == "node":
                out.append(_node_decision(state, record, host, leg, seen, origin,
                                          conntrack.get(record.host, ""), topology))
            elif record.kind == "router" and any(s.changes for s in seen):
                out.append(_igw_decision(record, host, leg.index, seen,
                                         conntrack.get(record.host, ""), origin.proto))
            elif record.kind == "loadbalancer" and l7 is not None:
                out.append(alb_decision(l7, host, leg.index, seen))
            elif record.kind == "loadbalancer":
                out.append(_elb_decision(lab, record, host, leg.index, seen,
                                         conntrack.get(record.host, ""), origin.proto))
    return [d for d in out if d is not None]


def _arrival(seen, origin: FlowOrigin, host: str, leg: Leg):
    """The packet as the host's rules first saw it, and whether it was sent locally."""
    if host == origin.source_host and leg.index == 0:
        return origin.local, origin.target, True
    first = seen[0]
    return first.src, first.dst, False


def _node_decision(state, record, host, leg, seen, origin, conntrack_text,
                   topology: _Topology) -> Decision | None:
    src, dst, local = _arrival(seen, origin, host, leg)
    outs = [s for s in seen if s.direction == "out"]
    last = outs[-1] if outs else None
    dnat = f"{last.dst.addr}:{last.dst.port}" if last and last.dst != dst else None
    masquerade = bool(last and last.src != src)
    try:
        text = _rules_of(record, state.proxy_mode)
        interfaces = _interfaces_of(record)
        if state.proxy_mode == "nftables":
            branches = walk_nftables(text, record.addresses, src.addr, dst.addr, dst.port,
                                     origin.proto, locally_originated=local,
                                     interfaces=interfaces,
                                     policy_listing=_policy_listing(record))
        else:
            branches = walk_iptables(text, record.addresses, src.addr, dst.addr, dst.port,
                                     origin.proto, locally_originated=local,
                                     interfaces=interfaces)
    except CommandError as err:
        raise TraceError(f"trace: reading {record.name}'s rules failed: {err}") from err
    branch, exact = pick_branch(branches, dnat, masquerade, forwarded=bool(outs) or local)
    if branch is None or (branch.verdict == "NO-MATCH" and not dnat and not masquerade
                          and not branch.policy):
        return None
    entry = find_conntrack(parse_conntrack(conntrack_text), origin.proto, src.addr, src.port,
                           dst.addr, dst.port)
    return Decision(
        host=host, leg=leg.index, what=f"kube-proxy ({state.proxy_mode})",
        summary=_branch_summary(branch), chains=branch.chains(), verdict=branch.verdict,
        dnat=branch.dnat, masquerade=branch.masquerade,
        probability=round(branch.probability, 6), matches_capture=exact,
        conntrack=entry.line if entry else None, policy=branch.policy,
        topology=topology.note(record, branch.chains("nat")))


def _branch_summary(branch) -> str:
    summary = _nat_summary(branch)
    if branch.policy:
        notes = "; ".join(branch.policy)
        summary = f"{summary} | netpol: {notes}" if summary else f"netpol: {notes}"
    return summary


def _nat_summary(branch) -> str:
    text = " -> ".join(branch.chains("nat"))
    if branch.verdict in ("DROP", "REJECT"):
        chains = " -> ".join(dict.fromkeys(c for t, c in branch.path if t == "filter"))
        return f"{text + ' | ' if text else ''}filter {chains}: {branch.verdict}"
    effects = []
    if branch.dnat:
        effects.append(f"DNAT to {branch.dnat}")
    if branch.masquerade:
        effects.append(f"masquerade ({' -> '.join(branch.chains('nat-post'))})")
    return f"{text}: {', '.join(effects)}" if effects else text


def _igw_decision(record, host, leg, seen, conntrack_text, proto) -> Decision:
    before = next(s for s in seen)
    after = next(s for s in seen if s.changes)
    rules = run_in(record.pid, ["iptables-save", "-t", "nat"], timeout=10, where=record.name)
    rule = igw_rule_for(rules, before, after)
    entry = find_conntrack(parse_conntrack(conntrack_text), proto, before.src.addr,
                           before.src.port, before.dst.addr, before.dst.port)
    return Decision(host=host, leg=leg, what="igw 1:1 NAT", summary=rule or "no IGW rule found",
                    rule=rule, matches_capture=rule is not None,
                    conntrack=entry.line if entry else None)


def _elb_decision(lab, record, host, leg, seen, conntrack_text, proto) -> Decision | None:
    arrived = seen[0]
    for lb in read_config(LabPaths(lab).root / "elb" / "config.json").load_balancers:
        node = next((n for n in lb.nodes if n.vip == arrived.dst.addr), None)
        if node is None:
            continue
        listener = next((li for li in lb.listeners if li.port == arrived.dst.port), None)
        if listener is None:
            continue
        targets = ", ".join(f"{t.address}:{listener.node_port}" for t in lb.targets_for(node))
        where = (f", ELB node in {node.zone}, cross-zone {'on' if lb.cross_zone else 'off'}"
                 if node.zone else "")
        summary = (f"{lb.flavour} listener {node.vip}:{listener.port}/{listener.protocol} of "
                   f"{lb.key}{where} -> targets {targets}")
        rule = None
        changed = [s for s in seen if s.changes]
        if changed:
            rule = nat_rule_to(run_in(record.pid, ["iptables-save", "-t", "nat"], timeout=10,
                                      where=record.name), str(changed[-1].dst))
        elif lb.flavour == "classic":
            summary += " (proxy: a new connection from the ELB to the target follows)"
        entry = find_conntrack(parse_conntrack(conntrack_text), proto, arrived.src.addr,
                               arrived.src.port, arrived.dst.addr, arrived.dst.port)
        return Decision(host=host, leg=leg, what="elb", summary=summary, rule=rule,
                        conntrack=entry.line if entry else None)
    return None


def _answer(reply: str | None, proto: str):
    if not reply:
        return None
    if proto == "udp":
        return reply
    body = reply.split("\r\n\r\n", 1)[-1]
    try:
        return json.loads(body)
    except ValueError:
        return {"raw": reply[:200]}


__all__ = ["trace", "Trace", "TraceError"]
