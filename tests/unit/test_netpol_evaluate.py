"""The NetworkPolicy truth table: evaluate() against the reference semantics."""

from __future__ import annotations

import pytest

from agents.policy.evaluate import evaluate, expected_matrix
from agents.policy.model import Cluster, Namespace, Pod, policy_from_k8s

NODES = (("n1", "172.31.0.11"), ("n2", "172.31.0.12"))
A1 = Pod("a", "a1", "192.168.1.2", "n1", (("app", "web"),), (("http", 8080, "TCP"),))
A2 = Pod("a", "a2", "192.168.2.2", "n2", (("app", "db"),))
B1 = Pod("b", "b1", "192.168.1.3", "n1", (("app", "web"),), (("http", 80, "TCP"),))
B2 = Pod("b", "b2", "192.168.2.3", "n2", (("app", "cli"),))
DNS = Pod("kube-system", "dns", "192.168.1.53", "n1", (("k8s-app", "kube-dns"),),
          (("dns", 53, "UDP"), ("dns-tcp", 53, "TCP")))
PODS = (A1, A2, B1, B2, DNS)
NAMESPACES = (Namespace("a", (("team", "x"),)), Namespace("b", (("team", "y"),)),
              Namespace("kube-system", ()))


def pol(name, spec, ns="a"):
    return policy_from_k8s({"metadata": {"namespace": ns, "name": name}, "spec": spec})


DENY_IN = pol("deny-in", {"podSelector": {}, "policyTypes": ["Ingress"]})
DENY_OUT = pol("deny-out", {"podSelector": {}, "policyTypes": ["Egress"]})
ALLOW_DNS = pol("allow-dns", {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{
    "to": [{"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": "kube-system"}}}],
    "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}]})
SAME_NS = pol("same-ns", {"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]})
FROM_TEAM_Y = pol("from-y", {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{
    "from": [{"namespaceSelector": {"matchLabels": {"team": "y"}}}]}]})
AND_PEER = pol("and", {"podSelector": {}, "ingress": [{"from": [{
    "namespaceSelector": {"matchLabels": {"team": "y"}},
    "podSelector": {"matchLabels": {"app": "web"}}}]}]})
OR_PEERS = pol("or", {"podSelector": {}, "ingress": [{"from": [
    {"namespaceSelector": {"matchLabels": {"team": "y"}}},
    {"podSelector": {"matchLabels": {"app": "web"}}}]}]})
CIDR = pol("cidr", {"podSelector": {}, "ingress": [{"from": [{"ipBlock": {
    "cidr": "192.168.0.0/16", "except": ["192.168.2.0/24"]}}]}]})
NAMED_IN = pol("named-in", {"podSelector": {"matchLabels": {"app": "web"}},
                            "ingress": [{"ports": [{"port": "http"}]}]})
NAMED_OUT = pol("named-out", {"podSelector": {}, "policyTypes": ["Egress"], "egress": [
    {"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"port": "http"}]}]})
RANGE = pol("range", {"podSelector": {}, "ingress": [{"ports": [
    {"port": 1000, "endPort": 2000}, {"port": 53, "protocol": "UDP"}]}]})
TO_B_ONLY = pol("to-b", {"podSelector": {"matchLabels": {"app": "web"}}, "egress": [
    {"to": [{"namespaceSelector": {"matchLabels": {"team": "y"}}}], "ports": [{"port": 80}]}],
    "policyTypes": ["Egress"]})
B_FROM_A_WEB = pol("from-a-web", {"podSelector": {}, "ingress": [{"from": [{
    "namespaceSelector": {"matchLabels": {"team": "x"}},
    "podSelector": {"matchLabels": {"app": "web"}}}], "ports": [{"port": 80}]}]}, ns="b")
SECOND = pol("second", {"podSelector": {"matchLabels": {"app": "db"}}, "ingress": [
    {"ports": [{"port": 9999}]}]})

# (policies, src, dst, port, protocol, allowed)
CASES = [
    ("no policy = allow", (), B1, A1, 80, "TCP", True),
    ("default deny ingress", (DENY_IN,), B1, A1, 80, "TCP", False),
    ("default deny ingress: egress still open", (DENY_IN,), A1, B1, 80, "TCP", True),
    ("default deny ingress: same namespace too", (DENY_IN,), A2, A1, 80, "TCP", False),
    ("default deny egress", (DENY_OUT,), A1, B1, 80, "TCP", False),
    ("default deny egress: ingress still open", (DENY_OUT,), B1, A1, 80, "TCP", True),
    ("egress deny, DNS UDP allowed", (DENY_OUT, ALLOW_DNS), A1, DNS, 53, "UDP", True),
    ("egress deny, DNS TCP allowed", (DENY_OUT, ALLOW_DNS), A1, DNS, 53, "TCP", True),
    ("egress deny, DNS port 80 not", (DENY_OUT, ALLOW_DNS), A1, DNS, 80, "TCP", False),
    ("egress deny, DNS port only to kube-system", (DENY_OUT, ALLOW_DNS), A1, B1, 53, "UDP",
     False),
    ("allow same namespace", (SAME_NS,), A2, A1, 80, "TCP", True),
    ("allow same namespace: other namespace denied", (SAME_NS,), B1, A1, 80, "TCP", False),
    ("namespaceSelector matches", (FROM_TEAM_Y,), B2, A1, 80, "TCP", True),
    ("namespaceSelector does not", (FROM_TEAM_Y,), A2, A1, 80, "TCP", False),
    ("namespaceSelector: unselected pod not isolated", (FROM_TEAM_Y,), A1, A2, 80, "TCP",
     True),
    ("AND peer: both match", (AND_PEER,), B1, A2, 80, "TCP", True),
    ("AND peer: namespace only", (AND_PEER,), B2, A2, 80, "TCP", False),
    ("AND peer: pod labels only", (AND_PEER,), A1, A2, 80, "TCP", False),
    ("two peers: namespace alone", (OR_PEERS,), B2, A2, 80, "TCP", True),
    ("two peers: pod alone (own namespace)", (OR_PEERS,), A1, A2, 80, "TCP", True),
    ("two peers: neither", (OR_PEERS,), DNS, A2, 80, "TCP", False),
    ("ipBlock matches a pod IP", (CIDR,), B1, A1, 80, "TCP", True),
    ("ipBlock except", (CIDR,), B2, A1, 80, "TCP", False),
    ("ipBlock outside host", (CIDR,), "203.0.113.5", A1, 80, "TCP", False),
    ("named port resolves on the destination", (NAMED_IN,), B2, A1, 8080, "TCP", True),
    ("named port: other number", (NAMED_IN,), B2, A1, 80, "TCP", False),
    ("named port: wrong protocol", (NAMED_IN,), B2, A1, 8080, "UDP", False),
    ("named egress port resolves on the peer pod", (NAMED_OUT,), A1, B1, 80, "TCP", True),
    ("named egress port: the peer has no such name", (NAMED_OUT,), A1, B2, 80, "TCP", False),
    ("named egress port never matches a bare IP", (NAMED_OUT,), A1, "203.0.113.9", 80,
     "TCP", False),
    ("named egress port on a pod inside an ipBlock", (NAMED_OUT,), A2, B1, 80, "TCP", True),
    ("endPort range low", (RANGE,), B1, A1, 1000, "TCP", True),
    ("endPort range high", (RANGE,), B1, A1, 2000, "TCP", True),
    ("endPort range above", (RANGE,), B1, A1, 2001, "TCP", False),
    ("endPort range is TCP only", (RANGE,), B1, A1, 1500, "UDP", False),
    ("UDP port in the same rule", (RANGE,), B1, A1, 53, "UDP", True),
    ("both directions: egress and ingress allow", (TO_B_ONLY, B_FROM_A_WEB), A1, B1, 80,
     "TCP", True),
    ("both directions: egress allows, ingress not", (TO_B_ONLY, B_FROM_A_WEB), A2, B1, 80,
     "TCP", False),
    ("both directions: ingress allows, egress port not", (TO_B_ONLY, B_FROM_A_WEB), A1, B1,
     81, "TCP", False),
    ("multiple policies: union (first)", (SAME_NS, SECOND), A1, A2, 80, "TCP", True),
    ("multiple policies: union (second)", (SAME_NS, SECOND), B1, A2, 9999, "TCP", True),
    ("multiple policies: neither", (SAME_NS, SECOND), B1, A2, 80, "TCP", False),
    ("traffic from its own node is allowed", (DENY_IN,), "172.31.0.11", A1, 80, "TCP", True),
    ("traffic from another node is not", (DENY_IN,), "172.31.0.12", A1, 80, "TCP", False),
    ("traffic to its own node is allowed", (DENY_OUT,), A1, "172.31.0.11", 80, "TCP", True),
    ("a pod to itself is allowed", (DENY_IN, DENY_OUT), A1, A1, 80, "TCP", True),
    ("a bare IP destination is not isolated", (DENY_IN,), A1, "203.0.113.9", 80, "TCP", True),
]


@pytest.mark.parametrize("policies,src,dst,port,proto,allowed",
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_truth_table(policies, src, dst, port, proto, allowed):
    cluster = Cluster(PODS, NAMESPACES, policies, NODES)
    assert evaluate(cluster, src, dst, port, proto).allowed is allowed


def test_reasons_name_the_policy_and_rule_index():
    cluster = Cluster(PODS, NAMESPACES, (DENY_OUT, ALLOW_DNS), NODES)
    verdict = evaluate(cluster, A1, DNS, 53, "UDP")
    assert verdict.egress == "allowed by a/allow-dns egress rule 0"
    assert verdict.ingress == "not isolated"
    denied = evaluate(cluster, A1, B1, 80)
    assert denied.egress == "denied: isolated by a/allow-dns, a/deny-out, no rule allows"


def test_a_bare_ip_that_is_a_pod_ip_is_that_pod():
    cluster = Cluster(PODS, NAMESPACES, (SAME_NS,), NODES)
    assert evaluate(cluster, "192.168.2.2", "192.168.1.2", 80).allowed
    assert not evaluate(cluster, "192.168.1.3", "192.168.1.2", 80).allowed


def test_pods_without_ip_or_finished_are_never_selected_or_matched():
    pending = Pod("a", "p", None, None, (("app", "web"),), phase="Pending")
    done = Pod("a", "d", "192.168.1.9", "n1", (("app", "web"),), phase="Succeeded")
    cluster = Cluster((*PODS, pending, done), NAMESPACES, (SAME_NS,), NODES)
    assert not evaluate(cluster, "192.168.1.9", A1, 80).allowed     # IP reused by nobody
    assert evaluate(cluster, B1, done, 80).ingress == "not isolated"


def test_expected_matrix_covers_every_pair():
    cluster = Cluster(PODS, NAMESPACES, (DENY_IN,), NODES)
    matrix = expected_matrix(cluster, [A1, B1], [A1, A2, B2], 80)
    assert len(matrix) == 6
    assert [k for k, v in matrix.items() if v.allowed] == [(A1, A1), (A1, B2), (B1, B2)]
