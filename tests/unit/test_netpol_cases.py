"""The netpol experiment's catalogue and pure steps: every case is a valid policy set
whose truth table (from the evaluator, over the x/y/z x a/b/c model) says what the
case claims; the NodePort interplay's source addresses; the Markdown tables."""
from __future__ import annotations

import pytest

from agents.policy.evaluate import evaluate
from agents.policy.model import Cluster, namespace_from_k8s, pod_from_k8s, policy_from_k8s
from experiments.netpol_cases import CASES, NAMESPACES, PODS, cases, namespace, pod
from experiments.netpol_lab import matrices_markdown, policy_source
from probes.matrix.policy_table import PolicyCell, PolicyMatrix

BLOCK = {"ip-172-31-0-10": 0, "ip-172-31-0-11": 1, "ip-172-31-0-12": 2}


def model(policies=()) -> Cluster:
    pods = []
    for i, ns in enumerate(NAMESPACES):
        for name, node in PODS.items():
            obj = pod(ns, name, node)
            obj["status"] = {"phase": "Running", "podIP": f"192.168.{BLOCK[node]}.{10 + i}"}
            pods.append(pod_from_k8s(obj))
    return Cluster(tuple(pods), tuple(namespace_from_k8s(namespace(n)) for n in NAMESPACES),
                   tuple(policy_from_k8s(p) for p in policies))


def table(case_name: str, port: int = 80, protocol: str = "TCP") -> dict[tuple[str, str], bool]:
    case = next(c for c in CASES if c.name == case_name)
    cluster = model(case.policies)
    return {(s.key, d.key): evaluate(cluster, s, d, port, protocol).allowed
            for s in cluster.pods for d in cluster.pods}


def denied(case_name: str, **kwargs) -> set[tuple[str, str]]:
    return {pair for pair, allowed in table(case_name, **kwargs).items() if not allowed}


def test_the_catalogue_is_well_formed():
    names = [c.name for c in CASES]
    assert len(names) == len(set(names))
    assert 0 < len(cases(quick=True)) < len(cases(quick=False)) == len(CASES)
    for case in CASES:
        model(case.policies)            # every manifest parses
        assert case.ports and case.about


def test_the_cases_say_what_they_claim():
    everyone = {f"{ns}/{p}" for ns in NAMESPACES for p in PODS}
    assert denied("no-policy") == set()
    assert denied("deny-ingress-x") == {(s, d) for s in everyone for d in everyone
                                        if d.startswith("x/") and s != d}
    assert {s for s, d in denied("pod-and-namespace-one-peer")} == everyone - {
        "x/a", "y/b", "z/b"}
    assert {s for s, d in denied("pod-or-namespace-two-peers")} == {"x/c"}
    assert {s for s, d in denied("ip-block-except")} == {"x/c", "y/c", "z/c"}
    assert denied("named-port", port=81) == set()
    assert len(denied("named-port", port=80)) == 8
    assert denied("end-port", port=8081) == set() and len(denied("end-port", port=8082)) == 8
    assert denied("tcp-not-udp") == set() and denied("tcp-not-udp", protocol="UDP")
    both = denied("both-directions")
    assert ("z/a", "x/a") in both and ("y/a", "z/a") in both and ("y/a", "x/a") not in both


def test_the_policy_judges_a_nodeport_packet_by_what_survives_snat():
    endpoint, other, client = "ip-172-31-0-11", "ip-172-31-0-12", "203.0.113.100"
    assert policy_source("Cluster", endpoint, endpoint, client) == client
    assert policy_source("Cluster", other, endpoint, client) == "172.31.0.12"
    assert policy_source("Local", endpoint, endpoint, client) == client
    assert policy_source("Local", other, endpoint, client) is None


@pytest.mark.parametrize("observed", [True, False])
def test_matrices_markdown_shows_expected_and_observed(observed):
    cell = PolicyCell("x/a", "x/b", "192.168.1.10", 80, "TCP", True, "not isolated",
                      "not isolated", "open" if observed else "dropped", observed)
    text = matrices_markdown([{"case": "demo", "mode": "iptables", "about": "a demo",
                               "matrix": PolicyMatrix("lab", ("x",), ("x/a", "x/b"), (cell,)),
                               "attempts": 1, "seconds": 1.0}])
    assert "## demo (iptables)" in text
    lines = [line.split() for line in text.splitlines()]
    expected = lines.index(["expected", "80/TCP", "x/a", "x/b"])
    assert lines[expected + 1] == ["x/a", "-", "."]
    observed_at = lines.index(["observed", "80/TCP", "x/a", "x/b"])
    assert lines[observed_at + 1] == ["x/a", "-", "." if observed else "X!"]
