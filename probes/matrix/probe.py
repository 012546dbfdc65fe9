"""`svclab probe matrix`: every source against every Service entry, expected vs seen.

    run_matrix(lab, namespace="default") -> Matrix

Sources: a pod on each node (pods of `namespace` first, else any running
pod there, e.g. CoreDNS), each node, the client.  Targets, per Service of
the namespace and per port: its ClusterIP, its NodePort on every node (the
private address from nodes and pods, the public IP from the client), its LB
hostname from the client (resolved through the lab's public DNS records),
and the IPs of its ready endpoints.  Expected outcomes come from the Service
objects alone (probes/matrix/expect.py); observed ones from one
probe_from batch per source, the batches run side by side.
"""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

from base.errors import LabError
from base.kube.client import KubeClient
from probes.matrix.expect import Cell, Node, Source, SvcEndpoint, SvcInfo, SvcPort, plan_cells
from probes.reach import Probe
from probes.runner import probe_from
from topo.spec import load_spec
from topo.state import LabPaths, LabState, read_state

PROBE_TIMEOUT = 1.0
NLB_ANNOTATION = "service.beta.kubernetes.io/aws-load-balancer-type"


@dataclass(frozen=True)
class Matrix:
    lab: str
    namespace: str
    sources: tuple[str, ...]
    cells: tuple[Cell, ...]
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return all(cell.ok for cell in self.cells)

    @property
    def unexpected(self) -> tuple[Cell, ...]:
        return tuple(cell for cell in self.cells if not cell.ok)

    def to_json(self) -> dict:
        return {"lab": self.lab, "namespace": self.namespace, "ok": self.ok,
                "sources": list(self.sources), "notes": list(self.notes),
                "cells": [{**asdict(c), "ok": c.ok} for c in self.cells],
                "unexpected": len(self.unexpected)}

    def render(self) -> str:
        """A table: one row per target, one column per source; 'seen (want X)' when off."""
        targets = list(dict.fromkeys(c.target for c in self.cells))
        grid = {(c.target, c.source): c for c in self.cells}

        def text(cell: Cell | None) -> str:
            if cell is None:
                return "-"
            return cell.observed if cell.ok else f"{cell.observed} (want {cell.expected})*"
        rows = [["target", *self.sources]]
        rows += [[t, *(text(grid.get((t, s))) for s in self.sources)] for t in targets]
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        bad = self.unexpected
        lines.append("")
        lines.append(f"{len(self.cells)} cells, {len(bad)} unexpected"
                     + ("" if bad else ": every cell as expected"))
        for cell in bad:
            lines.append(f"* {cell.source} -> {cell.target}: saw {cell.observed}, expected "
                         f"{cell.expected} because {cell.why}"
                         + (f" [{cell.detail}]" if cell.detail else ""))
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines) + "\n"


def run_matrix(lab: str, namespace: str = "default", timeout: float = PROBE_TIMEOUT) -> Matrix:
    state = read_state(LabPaths(lab))
    services = load_services(lab, namespace)
    sources = pick_sources(state, namespace)
    plan = plan_cells(services, sources, lab_nodes(lab))
    by_source: dict[str, list[int]] = {}
    for index, (source, _, _, _) in enumerate(plan.cells):
        by_source.setdefault(source.label, []).append(index)
    observed: dict[int, tuple[str, str]] = {}

    def run(label: str) -> None:
        indexes = by_source[label]
        source = plan.cells[indexes[0]][0]
        probes = [Probe(plan.cells[i][1].dst, plan.cells[i][1].port, plan.cells[i][1].proto)
                  for i in indexes]
        results = probe_from(lab, source.host, probes, namespace=source.namespace,
                             timeout=timeout)
        for index, result in zip(indexes, results):
            observed[index] = (result.outcome, result.describe())

    with ThreadPoolExecutor(max_workers=max(1, len(by_source))) as pool:
        list(pool.map(run, list(by_source)))
    cells = []
    for index, (source, target, expected, why) in enumerate(plan.cells):
        outcome, detail = observed[index]
        cells.append(Cell(source.label, target.label, target.dst, target.port, target.proto,
                          expected, why, outcome, detail))
    notes = list(plan.notes)
    covered = {s.node for s in sources if s.kind == "pod"}
    notes += [f"no running pod on {n.name}: no pod source there"
              for n in lab_nodes(lab) if n.name not in covered]
    return Matrix(lab, namespace, tuple(s.label for s in sources), tuple(cells), tuple(notes))


# --- reading the lab -------------------------------------------------------------

def lab_nodes(lab: str) -> list[Node]:
    spec = load_spec(LabPaths(lab).spec)
    return [Node(n.name, str(n.address), str(n.public_ip)) for n in spec.nodes]


def pick_sources(state: LabState, namespace: str) -> list[Source]:
    nodes = sorted((r for r in state.hosts.values() if r.kind == "node"), key=lambda r: r.name)
    pods = sorted((r for r in state.hosts.values() if r.kind == "pod" and r.proc.alive()),
                  key=lambda r: (r.namespace != namespace, r.namespace or "", r.name))
    sources = []
    for node in nodes:
        here = [p for p in pods if p.node == node.name]
        if here:
            sources.append(Source(f"pod {node.name.removeprefix('ip-')}", here[0].name,
                                  here[0].namespace, "pod", node.name))
    sources += [Source(f"node {n.name.removeprefix('ip-')}", n.name, None, "node", n.name)
                for n in nodes]
    clients = sorted(r.name for r in state.hosts.values() if r.kind == "client")
    if not clients:
        raise LabError(f"lab {state.name!r} has no client host")
    sources.append(Source(clients[0], clients[0], None, "client", None))
    return sources


def load_services(lab: str, namespace: str) -> list[SvcInfo]:
    paths = LabPaths(lab)
    client = KubeClient.from_kubeconfig(str(paths.kubeconfig))
    try:
        records = json.loads(paths.outside_dns.read_text())
    except (OSError, ValueError):
        records = {}
    services, _ = client.list("services", namespace)
    slices, _ = client.list("endpointslices", namespace)
    out = []
    for svc in services:
        name = svc["metadata"]["name"]
        mine = [s for s in slices
                if (s["metadata"].get("labels") or {}).get("kubernetes.io/service-name") == name]
        out.append(service_info(svc, mine, records))
    return out


def service_info(svc: dict, slices: list[dict], dns: dict[str, list[str]]) -> SvcInfo:
    """A Service and its EndpointSlices (API JSON) -> SvcInfo.  Pure."""
    spec, meta = svc["spec"], svc["metadata"]
    cluster_ip = spec.get("clusterIP")
    if cluster_ip in (None, "", "None") or spec.get("type") == "ExternalName":
        cluster_ip = None
    slice_ports: dict[tuple[str, str], int] = {}
    endpoints: dict[str, SvcEndpoint] = {}
    for item in slices:
        for port in item.get("ports") or []:
            if port.get("port"):
                slice_ports[(port.get("name") or "", (port.get("protocol") or "TCP").lower())] = \
                    int(port["port"])
        for ep in item.get("endpoints") or []:
            if (ep.get("conditions") or {}).get("ready") is False:
                continue
            for address in ep.get("addresses") or []:
                endpoints[address] = SvcEndpoint(address, ep.get("nodeName"),
                                              (ep.get("targetRef") or {}).get("name"))
    ports = []
    for port in spec.get("ports") or []:
        proto = (port.get("protocol") or "TCP").lower()
        target = slice_ports.get((port.get("name") or "", proto))
        if target is None and isinstance(port.get("targetPort"), int):
            target = port["targetPort"]
        ports.append(SvcPort(port.get("name") or "", int(port["port"]), proto,
                             port.get("nodePort"), target))
    ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    hostname = ingress[0].get("hostname") if ingress else None
    vip = (dns.get(hostname) or [None])[0] if hostname else None
    flavour = "nlb" if (meta.get("annotations") or {}).get(NLB_ANNOTATION) == "nlb" else "classic"
    return SvcInfo(
        namespace=meta.get("namespace", "default"), name=meta["name"],
        type=spec.get("type", "ClusterIP"), cluster_ip=cluster_ip, ports=tuple(ports),
        etp=spec.get("externalTrafficPolicy") or "Cluster",
        itp=spec.get("internalTrafficPolicy") or "Cluster",
        affinity=spec.get("sessionAffinity") or "None",
        endpoints=tuple(sorted(endpoints.values(), key=lambda e: e.ip)),
        lb_hostname=hostname, lb_vip=vip,
        lb_flavour=flavour if spec.get("type") == "LoadBalancer" else None)


__all__ = ["Matrix", "run_matrix", "service_info", "pick_sources", "load_services"]
