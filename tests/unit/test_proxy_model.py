"""Parsing Services and EndpointSlices as the API server returns them."""

from __future__ import annotations

import pytest

from agents.proxy import ModelError, NodeInfo, endpoint_slice_from_k8s, service_from_k8s
from agents.proxy.fixtures import endpoint, service_dict, slice_dict
from agents.proxy.model import is_ipv4


def test_full_load_balancer_service():
    svc = service_from_k8s(service_dict(
        "web", "shop", cluster_ip="10.96.5.5", type="LoadBalancer",
        ports=[{"name": "http", "port": 80, "targetPort": "web",
                "nodePort": 31111},
               {"name": "dns", "port": 53, "protocol": "UDP",
                "targetPort": 5353, "nodePort": 31112}],
        external_ips=["203.0.113.9", "2001:db8::1"], etp="Local",
        health_check_node_port=32100, affinity_timeout=60,
        source_ranges=["203.0.113.0/24"], ingress=[{"ip": "203.0.113.100"}]))
    assert (svc.namespace, svc.name, svc.type) == ("shop", "web", "LoadBalancer")
    assert svc.cluster_ip == "10.96.5.5"
    assert [(p.name, p.protocol, p.port, p.target_port, p.node_port)
            for p in svc.ports] == [("http", "TCP", 80, "web", 31111),
                                    ("dns", "UDP", 53, 5353, 31112)]
    assert svc.external_ips == ("203.0.113.9",)      # IPv4 only
    assert svc.external_policy_local and not svc.internal_policy_local
    assert svc.health_check_node_port == 32100
    assert (svc.session_affinity, svc.affinity_timeout_s) == ("ClientIP", 60)
    assert svc.load_balancer_source_ranges == ("203.0.113.0/24",)
    assert svc.load_balancer_vips == ("203.0.113.100",)


def test_defaults_of_a_minimal_service():
    svc = service_from_k8s({"metadata": {"name": "a"},
                            "spec": {"clusterIP": "10.96.0.7",
                                     "ports": [{"port": 80}]}})
    assert svc.namespace == "default" and svc.type == "ClusterIP"
    assert svc.ports[0].name == "" and svc.ports[0].protocol == "TCP"
    assert svc.session_affinity == "None" and svc.affinity_timeout_s == 10800
    assert not svc.externally_accessible
    assert svc.external_traffic_policy == "Cluster"


@pytest.mark.parametrize("ingress,vips", [
    ([{"ip": "203.0.113.1"}], ("203.0.113.1",)),
    ([{"ip": "203.0.113.1", "ipMode": "VIP"}], ("203.0.113.1",)),
    ([{"ip": "203.0.113.1", "ipMode": "Proxy"}], ()),
    ([{"hostname": "a1b2-123.us-east-1.elb.amazonaws.com"}], ()),
    ([{"hostname": "lb.example", "ip": "203.0.113.2"}], ("203.0.113.2",)),
])
def test_only_vip_ingress_ips_count(ingress, vips):
    svc = service_from_k8s(service_dict("lb", type="LoadBalancer",
                                        ingress=ingress))
    assert svc.load_balancer_vips == vips


def test_ingress_of_a_non_load_balancer_is_ignored():
    svc = service_from_k8s(service_dict("np", type="NodePort",
                                        ingress=[{"ip": "203.0.113.1"}]))
    assert svc.load_balancer_vips == ()


def test_headless_and_external_name():
    headless = service_from_k8s(service_dict("h", cluster_ip="None"))
    assert headless.headless
    ext = service_from_k8s(service_dict("e", cluster_ip=None,
                                        type="ExternalName",
                                        external_name="example.com", ports=[]))
    assert ext.headless and ext.external_name == "example.com"


def test_source_ranges_annotation_is_used_when_field_empty():
    d = service_dict("lb", type="LoadBalancer")
    d["metadata"]["annotations"] = {
        "service.beta.kubernetes.io/load-balancer-source-ranges":
            "203.0.113.0/25, 198.51.100.7/32"}
    assert service_from_k8s(d).load_balancer_source_ranges == (
        "203.0.113.0/25", "198.51.100.7/32")


@pytest.mark.parametrize("mutate,message", [
    (lambda d: d["metadata"].pop("name"), "metadata.name"),
    (lambda d: d["spec"]["ports"][0].update(port=70000), "out of range"),
    (lambda d: d["spec"]["ports"][0].update(port="80"), "integer"),
    (lambda d: d["spec"]["ports"][0].update(protocol="ICMP"), "protocol"),
    (lambda d: d["spec"].update(loadBalancerSourceRanges=["nope"]), "CIDR"),
    (lambda d: d["spec"].update(sessionAffinityConfig={
        "clientIP": {"timeoutSeconds": 90000}}), "timeoutSeconds"),
])
def test_bad_services_raise_model_error(mutate, message):
    d = service_dict("bad")
    mutate(d)
    with pytest.raises(ModelError, match=message):
        service_from_k8s(d)


def test_endpoint_slice_conditions_and_defaults():
    d = slice_dict("web", "shop", ports=[{"name": "http", "port": 8080}],
                   endpoints=[endpoint("192.168.1.10", "n1"),
                              endpoint("192.168.1.11", "n1", ready=False,
                                       serving=True, terminating=True),
                              {"addresses": ["192.168.2.5"]}])
    es = endpoint_slice_from_k8s(d)
    assert es.service_name == "web" and es.address_type == "IPv4"
    assert [(p.name, p.port, p.protocol) for p in es.ports] == [
        ("http", 8080, "TCP")]
    first, term, bare = es.endpoints
    assert (first.ready, first.serving, first.terminating, first.node_name) \
        == (True, True, False, "n1")
    assert (term.ready, term.serving, term.terminating) == (False, True, True)
    # conditions absent: ready (and so serving), not terminating, no node
    assert (bare.ready, bare.serving, bare.terminating, bare.node_name) \
        == (True, True, False, None)


def test_not_ready_without_serving_condition_is_not_serving():
    d = slice_dict("web", endpoints=[{"addresses": ["192.168.1.1"],
                                      "conditions": {"ready": False}}])
    ep = endpoint_slice_from_k8s(d).endpoints[0]
    assert not ep.ready and not ep.serving


def test_node_info_validates_addresses():
    with pytest.raises(ModelError):
        NodeInfo("n", ("not-an-ip",))
    with pytest.raises(ModelError):
        NodeInfo("n", ("172.31.0.11",), cluster_cidr="192.168.0.0/99")


def test_is_ipv4_reads_addresses_as_ipaddress_does():
    import ipaddress
    import random


    def reference(text):
        try:
            return isinstance(ipaddress.ip_address(text), ipaddress.IPv4Address)
        except ValueError:
            return False

    rng = random.Random(0)
    parts = ["0", "00", "1", "01", "9", "99", "100", "199", "200", "249",
             "250", "255", "256", "300", "a", "", "١"]
    cases = ["1.2.3.4\n", " 1.2.3.4", "::1", "10.0.0.0/8", "1.2.3.-4"] + [
        ".".join(rng.choice(parts) for _ in range(rng.choice([3, 4, 4, 5])))
        for _ in range(20000)]
    assert sum(map(reference, cases)) > 1000          # both kinds covered
    assert [c for c in cases if is_ipv4(c) != reference(c)] == []
