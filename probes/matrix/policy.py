"""`svclab probe matrix --policy`: every pod against every pod, policies vs packets.

    run_policy_matrix(lab, namespaces=None, all_namespaces=False, ports=None)
        -> PolicyMatrix

Reads the cluster as the policy agents see it (pods, namespaces,
NetworkPolicies and nodes from the lab's API), plans every (source pod,
destination pod, port) cell with the verdict agents.policy.evaluate gives
(probes/matrix/policy_table.py), then makes each connection for real from
inside the source pod: one probes.reach batch per source pod, all batches
side by side, so the cells a policy DROPs cost one timeout in all rather
than one each.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from agents.policy.model import (
    Cluster,
    Pod,
    namespace_from_k8s,
    pod_from_k8s,
    policy_from_k8s,
)
from base.errors import LabError, UsageError
from base.kube.client import KubeClient
from probes.matrix.policy_table import (
    PlannedCell,
    PolicyCell,
    PolicyMatrix,
    observed_allowed,
    plan_policy_cells,
    pod_label,
    select_pods,
)
from probes.reach import Probe, ProbeResult
from probes.runner import probe_from
from topo.state import LabPaths

PROBE_TIMEOUT = 1.0
POLICIES_PATH = "/apis/networking.k8s.io/v1/networkpolicies"


def load_cluster(client: KubeClient) -> Cluster:
    """The policy model of a running lab, from its API."""
    pods, _ = client.list("pods")
    namespaces, _ = client.list("namespaces")
    nodes, _ = client.list("nodes")
    policies = client.request("GET", POLICIES_PATH).get("items", [])
    return Cluster(pods=tuple(pod_from_k8s(p) for p in pods),
                   namespaces=tuple(namespace_from_k8s(n) for n in namespaces),
                   policies=tuple(policy_from_k8s(p) for p in policies),
                   nodes=tuple(node_address(n) for n in nodes))


def node_address(node: dict) -> tuple[str, str]:
    addresses = (node.get("status") or {}).get("addresses") or []
    internal = next((a["address"] for a in addresses if a.get("type") == "InternalIP"), "")
    return node["metadata"]["name"], internal


def run_policy_matrix(lab: str, namespaces: list[str] | None = None,
                      all_namespaces: bool = False,
                      ports: list[tuple[int, str]] | None = None,
                      timeout: float = PROBE_TIMEOUT) -> PolicyMatrix:
    started = time.monotonic()
    client = KubeClient.from_kubeconfig(str(LabPaths(lab).kubeconfig))
    cluster = load_cluster(client)
    pods = select_pods(cluster.pods, namespaces, all_namespaces)
    if not pods:
        where = "any namespace" if all_namespaces else \
            ", ".join(namespaces) if namespaces else "the non-system namespaces"
        raise LabError(f"lab {lab!r}: no running pod in {where}")
    planned = plan_policy_cells(cluster, pods, pods, ports)
    if not planned:
        raise UsageError("--port: nothing to probe: the pods declare no containerPorts "
                         "(kubectl create deployment without --port); name the ports, "
                         "e.g. --port 80/TCP --port 53/UDP")
    results = probe_planned(lab, planned, timeout)
    cells = tuple(policy_cell(plan, result) for plan, result in zip(planned, results))
    chosen = tuple(sorted({p.namespace for p in pods}))
    return PolicyMatrix(lab, chosen, tuple(pod_label(p) for p in pods), cells,
                        time.monotonic() - started)


def probe_planned(lab: str, planned: list[PlannedCell],
                  timeout: float = PROBE_TIMEOUT) -> list[ProbeResult]:
    """Probe every planned cell from its source pod; results in the same order."""
    by_source: dict[str, list[int]] = {}
    for index, cell in enumerate(planned):
        by_source.setdefault(cell.source.key, []).append(index)
    results: list[ProbeResult | None] = [None] * len(planned)

    def run(key: str) -> None:
        indexes = by_source[key]
        source: Pod = planned[indexes[0]].source
        probes = [probe_of(planned[i]) for i in indexes]
        found = probe_from(lab, source.name, probes, namespace=source.namespace,
                           timeout=timeout)
        for index, result in zip(indexes, found):
            results[index] = result

    if by_source:
        with ThreadPoolExecutor(max_workers=len(by_source)) as pool:
            list(pool.map(run, list(by_source)))
    return [r for r in results if r is not None]


def probe_of(cell: PlannedCell) -> Probe:
    if not cell.target.ip:
        raise LabError(f"pod {cell.target.key} has no IP to probe")
    return Probe(cell.target.ip, cell.port, cell.protocol.lower())


def policy_cell(plan: PlannedCell, result: ProbeResult) -> PolicyCell:
    dst = plan.target.ip or ""
    return PolicyCell(
        source=pod_label(plan.source), target=pod_label(plan.target), dst=dst,
        port=plan.port, protocol=plan.protocol, expected=plan.allowed,
        egress=plan.egress, ingress=plan.ingress, outcome=result.outcome,
        observed=observed_allowed(result.outcome, result.responder, dst, result.icmp_code),
        detail=result.describe())


__all__ = ["run_policy_matrix", "load_cluster", "probe_planned", "policy_cell", "node_address"]
