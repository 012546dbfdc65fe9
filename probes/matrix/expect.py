"""The reachability matrix's cells and what each should show: pure semantics.

Given Services (as `SvcInfo`: type, ClusterIP, ports, traffic policies,
ready endpoints with their nodes, the LB's VIP) and the sources (a pod on
each node, each node, the client), `plan_cells` lists every (source,
target) cell with the outcome Kubernetes semantics predict and why
(docs/service-semantics.md):

- ClusterIP: unreachable from the internet (the igw drops it); no endpoints
  -> REJECT; internalTrafficPolicy Local -> only same-node endpoints, else DROP.
- NodePort (node private addresses from nodes and pods, public IPs from the
  client): no endpoints -> REJECT; externalTrafficPolicy Local -> nodes without
  a local endpoint DROP external sources; the node itself and its own pods are
  short-circuited to every endpoint.  Pods on other nodes leave masqueraded
  as their node (Calico natOutgoing), so they count as external there.
- LoadBalancer hostname (from the client): a Classic listener accepts every
  connection; an NLB drops when the Service has no endpoints.
- Pod IPs: routed inside the VPC, dropped by the igw from the internet.
- sessionAffinity changes which endpoint answers, never whether one does;
  ExternalName and headless Services have no VIP cells.
No I/O.
"""
from __future__ import annotations

from dataclasses import dataclass, field

OPEN, REFUSED, REJECTED, DROPPED = "open", "refused", "rejected", "dropped"


@dataclass(frozen=True)
class SvcPort:
    name: str
    port: int
    proto: str                      # tcp | udp
    node_port: int | None = None
    target_port: int | None = None  # as the endpoints serve it


@dataclass(frozen=True)
class SvcEndpoint:
    ip: str
    node: str | None
    pod: str | None = None


@dataclass(frozen=True)
class SvcInfo:
    namespace: str
    name: str
    type: str                       # ClusterIP | NodePort | LoadBalancer | ExternalName
    cluster_ip: str | None          # None: headless or ExternalName
    ports: tuple[SvcPort, ...] = ()
    etp: str = "Cluster"
    itp: str = "Cluster"
    affinity: str = "None"
    endpoints: tuple[SvcEndpoint, ...] = ()     # ready ones
    lb_hostname: str | None = None
    lb_vip: str | None = None
    lb_flavour: str | None = None   # classic | nlb

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Source:
    label: str                      # column title
    host: str                       # what probe_from takes
    namespace: str | None
    kind: str                       # pod | node | client
    node: str | None                # the node it runs on (itself for a node)


@dataclass(frozen=True)
class Node:
    name: str
    private: str
    public: str


@dataclass(frozen=True)
class Target:
    label: str                      # row title
    kind: str                       # cluster-ip | node-port | lb | pod-ip
    dst: str
    port: int
    proto: str
    service: str | None = None      # namespace/name
    node: str | None = None         # node-port: whose port


@dataclass(frozen=True)
class Cell:
    source: str
    target: str
    dst: str
    port: int
    proto: str
    expected: str
    why: str
    observed: str | None = None
    detail: str | None = None       # the probe's own description

    @property
    def ok(self) -> bool:
        return self.observed == self.expected


@dataclass(frozen=True)
class Plan:
    cells: tuple[tuple[Source, Target, str, str], ...]
    notes: tuple[str, ...] = field(default=())


def expect_cluster_ip(svc: SvcInfo, source: Source) -> tuple[str, str]:
    if source.kind == "client":
        return DROPPED, "ClusterIPs are not routed from the internet (the igw drops them)"
    if not svc.endpoints:
        return REJECTED, "no ready endpoints: kube-proxy REJECTs"
    if svc.itp == "Local":
        local = [e for e in svc.endpoints if e.node == source.node]
        if not local:
            return DROPPED, f"internalTrafficPolicy Local: no endpoint on {source.node}: DROP"
        return OPEN, f"internalTrafficPolicy Local: {len(local)} endpoint(s) on {source.node}"
    return OPEN, f"DNAT to one of {len(svc.endpoints)} endpoint(s)"


def expect_node_port(svc: SvcInfo, source: Source, node: str) -> tuple[str, str]:
    if not svc.endpoints:
        return REJECTED, "no ready endpoints: kube-proxy REJECTs the NodePort"
    if svc.etp != "Local":
        return OPEN, "externalTrafficPolicy Cluster: any endpoint, masqueraded to the node"
    if source.node == node:
        return OPEN, ("externalTrafficPolicy Local: traffic from the node itself or its pods "
                      "is short-circuited to every endpoint")
    local = [e for e in svc.endpoints if e.node == node]
    if not local:
        return DROPPED, f"externalTrafficPolicy Local: no endpoint on {node}: DROP"
    return OPEN, f"externalTrafficPolicy Local: {len(local)} endpoint(s) on {node}, source kept"


def expect_lb(svc: SvcInfo) -> tuple[str, str]:
    if svc.lb_flavour == "nlb":
        if not svc.endpoints:
            return DROPPED, "NLB with no endpoints behind it: no target in service: DROP"
        return OPEN, "NLB forwards to a node's NodePort, client IP kept"
    return OPEN, "Classic ELB listener accepts and proxies to a healthy node's NodePort"


def expect_pod_ip(source: Source) -> tuple[str, str]:
    if source.kind == "client":
        return DROPPED, "pod IPs are not routed from the internet (the igw drops them)"
    return OPEN, "pod network: routed straight to the pod (no Service rules)"


def _short(node: str) -> str:
    return node.removeprefix("ip-")


def plan_cells(services: list[SvcInfo], sources: list[Source], nodes: list[Node]) -> Plan:
    """Every (source, target, expected, why) of the matrix, in a stable order."""
    cells, notes, pod_targets = [], [], {}
    inside = [s for s in sources if s.kind != "client"]
    clients = [s for s in sources if s.kind == "client"]
    for svc in sorted(services, key=lambda s: s.key):
        if svc.type == "ExternalName":
            notes.append(f"{svc.key}: ExternalName: no VIP and no proxy rules (DNS CNAME only)")
            continue
        if svc.cluster_ip is None:
            notes.append(f"{svc.key}: headless: no VIP cells (DNS returns the pod IPs)")
        for port in svc.ports:
            suffix = f"{port.port}/{port.proto}"
            if svc.cluster_ip is not None:
                target = Target(f"svc/{svc.name} {svc.cluster_ip}:{suffix}", "cluster-ip",
                                svc.cluster_ip, port.port, port.proto, svc.key)
                cells += [(s, target, *expect_cluster_ip(svc, s)) for s in sources]
            if port.node_port and svc.cluster_ip is not None:
                for node in nodes:
                    for group, address in ((inside, node.private), (clients, node.public)):
                        target = Target(f"svc/{svc.name} {_short(node.name)}:{port.node_port}/"
                                        f"{port.proto} ({address})", "node-port", address,
                                        port.node_port, port.proto, svc.key, node.name)
                        cells += [(s, target, *expect_node_port(svc, s, node.name))
                                  for s in group]
            if svc.type == "LoadBalancer":
                if svc.lb_vip is None:
                    notes.append(f"{svc.key}: LoadBalancer without a hostname yet: no LB cell")
                else:
                    target = Target(f"svc/{svc.name} {svc.lb_hostname}:{suffix}", "lb",
                                    svc.lb_vip, port.port, port.proto, svc.key)
                    cells += [(s, target, *expect_lb(svc)) for s in clients]
            for endpoint in svc.endpoints:
                if port.target_port:
                    key = (endpoint.ip, port.target_port, port.proto)
                    pod_targets.setdefault(key, Target(
                        f"{'pod ' + endpoint.pod if endpoint.pod else 'endpoint'} {endpoint.ip}:"
                        f"{port.target_port}/{port.proto}", "pod-ip", endpoint.ip,
                        port.target_port, port.proto, svc.key))
    for key in sorted(pod_targets):
        target = pod_targets[key]
        cells += [(s, target, *expect_pod_ip(s)) for s in sources]
    return Plan(tuple(cells), tuple(notes))


__all__ = ["OPEN", "REFUSED", "REJECTED", "DROPPED", "SvcPort", "SvcEndpoint", "SvcInfo",
           "Source", "Node", "Target", "Cell", "Plan", "plan_cells", "expect_cluster_ip",
           "expect_node_port", "expect_lb", "expect_pod_ip"]
