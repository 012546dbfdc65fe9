"""Parsing Pods, Namespaces and NetworkPolicies as the API serves them."""

from __future__ import annotations

import pytest

from agents.policy.model import (
    IPBlock,
    Peer,
    PolicyModelError,
    PortSpec,
    Requirement,
    Rule,
    Selector,
    namespace_from_k8s,
    pod_from_k8s,
    policy_from_k8s,
    selector_from_k8s,
    workload_iface,
)
from topo.plan import cali_name

POD = {
    "metadata": {"name": "web-1", "namespace": "shop", "labels": {"app": "web"}},
    "spec": {"nodeName": "n1", "containers": [
        {"name": "c", "ports": [{"name": "http", "containerPort": 8080},
                                {"containerPort": 53, "protocol": "UDP"}]}]},
    "status": {"phase": "Running", "podIP": "192.168.1.5"},
}


def test_pod_is_parsed_with_its_ports_and_iface():
    pod = pod_from_k8s(POD)
    assert (pod.namespace, pod.name, pod.ip, pod.node) == ("shop", "web-1", "192.168.1.5", "n1")
    assert pod.label_map == {"app": "web"}
    assert pod.ports == (("http", 8080, "TCP"), ("", 53, "UDP"))
    assert pod.named_port("http", "TCP") == 8080
    assert pod.named_port("http", "UDP") is None
    assert pod.iface == cali_name("shop", "web-1")
    assert pod.active


@pytest.mark.parametrize("ns,name", [("default", "a"), ("kube-system", "coredns-abc-123"),
                                     ("x" * 63, "y" * 63)])
def test_workload_iface_is_topo_cali_name(ns, name):
    assert workload_iface(ns, name) == cali_name(ns, name)
    assert len(workload_iface(ns, name)) <= 15              # IFNAMSIZ - 1


def test_pending_and_host_network_pods_are_not_active():
    pending = pod_from_k8s({**POD, "status": {"phase": "Pending"}})
    host = pod_from_k8s({**POD, "spec": {**POD["spec"], "hostNetwork": True}})
    assert not pending.active and pending.ip is None
    assert not host.active


def test_namespace_always_carries_its_name_label():
    ns = namespace_from_k8s({"metadata": {"name": "shop", "labels": {"team": "x"}}})
    assert ns.label_map == {"team": "x", "kubernetes.io/metadata.name": "shop"}


@pytest.mark.parametrize("selector,labels,matches", [
    ({}, {}, True),
    ({}, {"a": "1"}, True),
    ({"matchLabels": {"a": "1"}}, {"a": "1", "b": "2"}, True),
    ({"matchLabels": {"a": "1"}}, {"a": "2"}, False),
    ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1", "2"]}]},
     {"a": "2"}, True),
    ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1"]}]}, {}, False),
    ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {}, True),
    ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]},
     {"a": "1"}, False),
    ({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {"a": ""}, True),
    ({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {"a": "x"}, False),
    ({"matchLabels": {"a": "1"},
      "matchExpressions": [{"key": "b", "operator": "Exists"}]}, {"a": "1"}, False),
])
def test_label_selectors(selector, labels, matches):
    assert selector_from_k8s(selector, "s").matches(labels) is matches


def test_policy_is_parsed_into_rules_peers_and_ports():
    policy = policy_from_k8s({"metadata": {"namespace": "shop", "name": "p"}, "spec": {
        "podSelector": {"matchLabels": {"app": "web"}},
        "ingress": [{"from": [
            {"podSelector": {"matchLabels": {"role": "fe"}},
             "namespaceSelector": {"matchExpressions": [
                 {"key": "team", "operator": "In", "values": ["b", "a"]}]}},
            {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}],
            "ports": [{"port": "http"}, {"port": 1000, "endPort": 2000, "protocol": "UDP"},
                      {"protocol": "SCTP"}]}],
        "egress": [{}]}})
    assert policy.key == "shop/p"
    assert policy.policy_types == ("Egress", "Ingress")     # egress rules present
    assert policy.ingress == (Rule(
        (Peer(Selector((("role", "fe"),)),
              Selector((), (Requirement("team", "In", ("a", "b")),))),
         Peer(ip_block=IPBlock("10.0.0.0/8", ("10.1.0.0/16",)))),
        (PortSpec("TCP", "http"), PortSpec("UDP", 1000, 2000), PortSpec("SCTP"))),)
    assert policy.egress == (Rule(),)


def test_policy_types_default_to_ingress_only_without_egress_rules():
    policy = policy_from_k8s({"metadata": {"name": "p"}, "spec": {"podSelector": {}}})
    assert policy.namespace == "default"
    assert policy.policy_types == ("Ingress",)
    assert policy.applies_ingress and not policy.applies_egress


def test_ip_block_contains_cidr_minus_except():
    block = IPBlock("10.0.0.0/8", ("10.1.0.0/16",))
    assert block.contains("10.2.3.4")
    assert not block.contains("10.1.3.4")
    assert not block.contains("11.0.0.1")


@pytest.mark.parametrize("spec,why", [
    ({"podSelector": {}, "policyTypes": ["Sideways"]}, "unknown"),
    ({"podSelector": {}, "ingress": [{"from": [{}]}]}, "needs"),
    ({"podSelector": {}, "ingress": [{"from": [
        {"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}]}]}, "cannot be combined"),
    ({"podSelector": {}, "ingress": [{"from": [
        {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["11.0.0.0/8"]}}]}]}, "not inside"),
    ({"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "nope"}}]}]}, "ipBlock"),
    ({"podSelector": {}, "ingress": [{"ports": [{"port": 80, "protocol": "ICMP"}]}]},
     "protocol"),
    ({"podSelector": {}, "ingress": [{"ports": [{"port": 90, "endPort": 80}]}]}, "endPort"),
    ({"podSelector": {}, "ingress": [{"ports": [{"port": "http", "endPort": 80}]}]}, "endPort"),
    ({"podSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}}, "needs values"),
    ({"podSelector": {"matchExpressions": [{"key": "a", "operator": "Near"}]}}, "operator"),
])
def test_malformed_policies_are_refused(spec, why):
    with pytest.raises(PolicyModelError, match=why):
        policy_from_k8s({"metadata": {"namespace": "a", "name": "bad"}, "spec": spec})
