"""What the netpol experiment does to a lab: pods, policies, probed truth tables.

The steps behind experiments/netpol.py: create the x/y/z pods, create and
delete NetworkPolicies through the API, probe a case's truth table until it
agrees with the evaluator (or CONVERGE_S passes), hold a connection open
through a policy update, and reach a NodePort through an ipBlock policy
under both externalTrafficPolicy values.  Every wait has a timeout.
"""
from __future__ import annotations

import socket
import time
from concurrent.futures import ThreadPoolExecutor

from agents.policy.evaluate import evaluate
from agents.policy.model import Cluster, Pod
from experiments import cluster_ops as kube
from experiments.framework import table
from experiments.netpol_cases import NAMESPACES, PODS, Case, UpdateCase, namespace, pod, policy
from probes.dnsprobe import query
from probes.matrix.policy import load_cluster, policy_cell, probe_planned
from probes.matrix.policy_table import (
    PolicyCell,
    PolicyMatrix,
    plan_policy_cells,
    pod_label,
    render_table,
    select_pods,
)
from probes.reach import Probe
from probes.runner import probe_from
from topo.netns import socket_in_netns

CONVERGE_S = 15.0
PROBE_TIMEOUT = 1.0
API = "/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies"
LOOKUP = "kubernetes.default.svc.cluster.local"
ENDPOINT_POD = ("x", "b")               # the Service interplay's endpoint (ip-172-31-0-11)
ETPS = ("Cluster", "Local")


# --- the lab ------------------------------------------------------------------------

def setup(lab) -> None:
    for ns in NAMESPACES:
        lab.api.create("namespaces", namespace(ns))
    for ns in NAMESPACES:
        for name, node in PODS.items():
            lab.api.create("pods", pod(ns, name, node), namespace=ns)
    for ns in NAMESPACES:
        for name in PODS:
            kube.running_pod(lab, name, ns)


def create_policy(lab, manifest: dict) -> dict:
    ns = manifest["metadata"]["namespace"]
    return lab.api.request("POST", API.format(ns=ns), body=manifest)


def replace_policy(lab, manifest: dict) -> dict:
    ns, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
    current = lab.api.request("GET", f"{API.format(ns=ns)}/{name}")
    body = {**manifest, "metadata": {**manifest["metadata"],
                                     "resourceVersion": current["metadata"]["resourceVersion"]}}
    return lab.api.request("PUT", f"{API.format(ns=ns)}/{name}", body=body)


def delete_policies(lab) -> None:
    for ns in NAMESPACES:
        for item in lab.api.request("GET", API.format(ns=ns)).get("items", []):
            lab.api.request("DELETE", f"{API.format(ns=ns)}/{item['metadata']['name']}")


def dns_pods(cluster: Cluster) -> list[Pod]:
    return sorted((p for p in cluster.pods if p.namespace == "kube-system" and p.active
                   and p.label_map.get("k8s-app") == "kube-dns"), key=lambda p: p.name)


# --- one truth table ------------------------------------------------------------------

def probe_case(lab, case: Case) -> tuple[PolicyMatrix, list[dict]]:
    """One probe of every cell of the case (and its DNS lookups), now."""
    cluster = load_cluster(lab.api)
    pods = select_pods(cluster.pods, NAMESPACES)
    planned = plan_policy_cells(cluster, pods, pods, case.ports)
    targets = [pod_label(p) for p in pods]
    if case.dns:
        servers = dns_pods(cluster)
        planned += plan_policy_cells(cluster, pods, servers, [(53, "TCP")])
        targets += [pod_label(p) for p in servers]
    results = probe_planned(lab.name, planned, PROBE_TIMEOUT)
    cells = tuple(policy_cell(p, r) for p, r in zip(planned, results))
    matrix = PolicyMatrix(lab.name, NAMESPACES, tuple(pod_label(p) for p in pods), cells,
                          targets=tuple(targets))
    askers = [p for p in pods if p.namespace == "x" or p.name == "a"]
    lookups = dns_lookups(lab, cluster, askers) if case.dns else []
    return matrix, lookups


def dns_lookups(lab, cluster: Cluster, pods: list[Pod]) -> list[dict]:
    """A real name lookup (UDP and TCP, via kube-dns's ClusterIP) from each pod."""
    server = dns_pods(cluster)[0]
    asks = [(source, proto) for source in pods for proto in ("UDP", "TCP")]

    def ask(item: tuple[Pod, str]):
        source, proto = item
        return query(lab.name, source.name, source.namespace, LOOKUP, "A",
                     tcp=proto == "TCP", timeout=1.0)
    with ThreadPoolExecutor(max_workers=len(asks)) as pool:
        answers = list(pool.map(ask, asks))
    found = []
    for (source, proto), result in zip(asks, answers):
        verdict = evaluate(cluster, source, server, 53, proto)
        observed = result.rcode is not None
        found.append({"source": pod_label(source), "target": f"lookup {LOOKUP}",
                      "port": 53, "protocol": proto,
                      "expected": "allowed" if verdict.allowed else "denied",
                      "observed": "allowed" if observed else "denied",
                      "outcome": result.rcode or "no answer",
                      "agree": verdict.allowed == observed,
                      "egress": verdict.egress, "ingress": verdict.ingress})
    return found


def converge(lab, case: Case) -> dict:
    started, attempts = time.monotonic(), 0
    while True:
        attempts += 1
        matrix, lookups = probe_case(lab, case)
        agreed = matrix.ok and all(x["agree"] for x in lookups)
        if agreed or time.monotonic() - started > CONVERGE_S:
            return {"case": case.name, "about": case.about, "matrix": matrix,
                    "lookups": lookups, "attempts": attempts,
                    "seconds": time.monotonic() - started}


def run_case(lab, mode: str, case: Case) -> dict:
    delete_policies(lab)
    for manifest in case.policies:
        create_policy(lab, manifest)
    result = converge(lab, case)
    result.update(mode=mode, policies=[m["metadata"]["name"] for m in case.policies])
    return result


# --- a policy replaced under traffic -----------------------------------------------------

def run_update(lab, mode: str, case: UpdateCase) -> dict:
    delete_policies(lab)
    create_policy(lab, case.before)
    probe = Case(case.name, case.about, (case.before,))
    before = converge(lab, probe)
    before.update(mode=mode, case=f"{case.name} (before)", policies=["moving"])
    cluster = load_cluster(lab.api)
    target = next(p for p in cluster.pods if p.key == "x/a")
    holder_ns, holder = case.holder
    sock = socket_in_netns(kube.host_pid(lab, holder, holder_ns))
    try:
        sock.settimeout(3.0)
        sock.connect((target.ip, 80))
        opened = exchange(sock, b"before-update\n")
        replace_policy(lab, case.after)
        after = converge(lab, Case(case.name, case.about, (case.after,)))
        after.update(mode=mode, case=f"{case.name} (after)", policies=["moving"])
        survived = exchange(sock, b"after-update\n") if opened else False
    finally:
        sock.close()
    new = [c for c in after["matrix"].cells if c.source == f"{holder_ns}/{holder}"
           and c.target == "x/a"]
    delete_policies(lab)
    return {"mode": mode, "case": case.name, "about": case.about, "before": before,
            "after": after, "opened": opened, "survived": survived,
            "held_detail": f"{holder_ns}/{holder} -> x/a:80, echo "
                           f"{'answered' if survived else 'not answered'} after the update",
            "new_from_holder": new[0].outcome if new else "not probed"}


def exchange(sock: socket.socket, message: bytes) -> bool:
    """Send a line on a plain TCP connection to the workload server; echoed back?"""
    sock.sendall(message)
    seen = b""
    deadline = time.monotonic() + 3.0
    while message not in seen and time.monotonic() < deadline:
        try:
            chunk = sock.recv(4096)
        except (TimeoutError, OSError):
            return False
        if not chunk:
            return False
        seen += chunk
    return message in seen


# --- Service interplay: NodePort x ipBlock ------------------------------------------------

def policy_source(etp: str, via: str, endpoint_node: str, client_ip: str) -> str | None:
    """The source address the endpoint's node judges a NodePort packet by.

    DNAT happens in PREROUTING of the node the packet entered; a masquerade
    (eTP Cluster) only in POSTROUTING, after the filter hook.  So on the
    endpoint's own node the policy sees the client; a packet that entered
    another node arrives there with that node's IP (Cluster), or is dropped
    by kube-proxy first (Local: no local endpoint) -> None."""
    if via == endpoint_node:
        return client_ip
    if etp == "Local":
        return None
    return kube.NODE_IPS[via]


def interplay_service(name: str, etp: str) -> dict:
    return kube.service(name, {"pod": ENDPOINT_POD[1]}, type="NodePort",
                        externalTrafficPolicy=etp)


def client_policy() -> dict:
    return policy(ENDPOINT_POD[0], "allow-client", {"pod": ENDPOINT_POD[1]}, ingress=[
        {"from": [{"ipBlock": {"cidr": f"{kube.CLIENT_IP}/32"}}],
         "ports": [{"protocol": "TCP", "port": 80}]}])


def run_interplay(lab, mode: str) -> list[dict]:
    ns, name = ENDPOINT_POD
    delete_policies(lab)
    ports = {}
    for etp in ETPS:
        lab.api.create("services", interplay_service(f"etp-{etp.lower()}", etp), namespace=ns)
    for etp in ETPS:
        ports[etp] = int(lab.api.get("services", f"etp-{etp.lower()}", ns)
                         ["spec"]["ports"][0]["nodePort"])
    endpoint_node = PODS[name]
    rows = []
    for phase in ("no policy", "ipBlock client/32"):
        if phase != "no policy":
            create_policy(lab, client_policy())
        rows += probe_interplay(lab, mode, phase, ports, endpoint_node)
    delete_policies(lab)
    return rows


def expected_interplay(cluster: Cluster, etp: str, via: str, endpoint_node: str) -> tuple:
    target = next(p for p in cluster.pods if p.key == "/".join(ENDPOINT_POD))
    seen = policy_source(etp, via, endpoint_node, kube.CLIENT_IP)
    if seen is None:
        return "dropped", "-", "eTP Local: no endpoint on this node, kube-proxy drops"
    verdict = evaluate(cluster, seen, target, 80, "TCP")
    return ("open" if verdict.allowed else "dropped", seen, verdict.ingress)


def probe_interplay(lab, mode: str, phase: str, ports: dict, endpoint_node: str) -> list[dict]:
    paths = [(etp, via) for etp in ETPS for via in kube.WORKERS]
    started = time.monotonic()
    while True:
        cluster = load_cluster(lab.api)
        wanted = {p: expected_interplay(cluster, *p, endpoint_node) for p in paths}
        probes = [Probe(kube.PUBLIC_IPS[via], ports[etp]) for etp, via in paths]
        seen = probe_from(lab.name, "client", probes, timeout=PROBE_TIMEOUT)
        if all(r.outcome == wanted[p][0] for p, r in zip(paths, seen)) \
                or time.monotonic() - started > CONVERGE_S:
            break
    rows = []
    for (etp, via), result in zip(paths, seen):
        outcome, policy_saw, why = wanted[(etp, via)]
        url = f"http://{kube.PUBLIC_IPS[via]}:{ports[etp]}/clientip"
        pod_saw = lab.exec("client", "curl", "-s", "-m", "2", url).strip().rpartition(":")[0] \
            if result.outcome == "open" else "-"
        rows.append({"mode": mode, "policy": phase, "etp": etp, "via": via,
                     "endpoint_node": endpoint_node, "policy_sees": policy_saw,
                     "pod_saw": pod_saw, "expected": outcome, "observed": result.outcome,
                     "agree": outcome == result.outcome, "why": why})
    return rows


def interplay_table(rows: list[dict]) -> str:
    return table(["mode", "policy", "eTP", "client via", "policy judges source",
                  "pod saw", "expected", "observed"],
                 [[r["mode"], r["policy"], r["etp"], r["via"], r["policy_sees"], r["pod_saw"],
                   r["expected"], r["observed"] + ("" if r["agree"] else " (!)")]
                  for r in rows])


def interplay_findings(rows: list[dict]) -> list[str]:
    if not rows:
        return []
    guarded = [r for r in rows if r["policy"] != "no policy"]
    agree = sum(1 for r in rows if r["agree"])
    out = [f"Service interplay: {agree} of {len(rows)} NodePort paths as expected."]
    cut = [r for r in guarded if r["etp"] == "Cluster" and r["via"] != r["endpoint_node"]]
    kept = [r for r in guarded if r["via"] == r["endpoint_node"]]
    if cut:
        out.append(f"With an ipBlock policy admitting only the client ({kube.CLIENT_IP}/32), "
                   f"a NodePort under eTP Cluster reached via {cut[0]['via']} (the endpoint "
                   f"is on {cut[0]['endpoint_node']}) is {cut[0]['observed']}: the packet "
                   f"arrives SNATed to {cut[0]['policy_sees']} and the ipBlock does not match.")
    if kept:
        out.append("Via the endpoint's own node the policy admits the client under both "
                   "eTP values: DNAT happens before the filter, the masquerade (eTP Cluster) "
                   f"after it (the pod saw {kept[0]['pod_saw']} under {kept[0]['etp']}); "
                   "under eTP Local the pod sees the client's own address.")
    return out


# --- the matrices as Markdown --------------------------------------------------------------

def expected_only(cell: PolicyCell) -> PolicyCell:
    return PolicyCell(cell.source, cell.target, cell.dst, cell.port, cell.protocol,
                      cell.expected, cell.egress, cell.ingress, cell.outcome, cell.expected)


def matrices_markdown(results: list[dict]) -> str:
    lines = ["# NetworkPolicy truth tables", "",
             "`.` allowed, `X` denied, `!` observed differs from expected.", ""]
    for result in results:
        matrix: PolicyMatrix = result["matrix"]
        lines += [f"## {result['case']} ({result['mode']})", "", result["about"], "",
                  f"{matrix.summary_line()}, {result['attempts']} attempt(s), "
                  f"{result['seconds']:.1f} s", "", "```"]
        for port, protocol in sorted({(c.port, c.protocol) for c in matrix.cells}):
            group = [c for c in matrix.cells if (c.port, c.protocol) == (port, protocol)]
            lines += render_table(f"expected {port}/{protocol}", matrix.pods,
                                  [expected_only(c) for c in group], matrix.columns)
            lines += render_table(f"observed {port}/{protocol}", matrix.pods, group,
                                  matrix.columns)
            lines.append("")
        lines.append("```")
        for lookup in result.get("lookups", []):
            lines.append(f"- {lookup['source']} {lookup['target']} over {lookup['protocol']}: "
                         f"expected {lookup['expected']}, observed {lookup['outcome']}")
        lines.append("")
    return "\n".join(lines) + "\n"


__all__ = ["setup", "run_case", "run_update", "run_interplay", "policy_source",
           "matrices_markdown", "interplay_table", "interplay_findings", "CONVERGE_S"]
