"""The cloud controller's pure half: Service + Nodes -> the ELB's config."""
from __future__ import annotations

import re

import pytest

from base.elb_api import ElbConfig, config_to_json, parse_config
from controlplane.cloud.hostnames import (
    classic_hostname,
    is_elb_hostname,
    load_balancer_name,
    nlb_hostname,
)
from controlplane.cloud.lbconfig import (
    CHECK_ANNOTATIONS,
    TYPE_ANNOTATION,
    LoadBalancerProblem,
    allocate_vips,
    compute_load_balancer,
    is_ours,
)

UID = "5f0c9d2e-1b7a-4c3e-9a8d-2e4f6a8b0c1d"


def node(name, ip, control_plane=False, deleting=False):
    labels = {"node.kubernetes.io/exclude-from-external-load-balancers": ""} \
        if control_plane else {}
    meta = {"name": name, "labels": labels}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta, "status": {"addresses": [
        {"type": "InternalIP", "address": ip}, {"type": "ExternalIP", "address": "198.51.100.9"}],
        "conditions": [{"type": "Ready", "status": "Unknown"}]}}


NODES = [node("ip-172-31-0-10", "172.31.0.10", control_plane=True),
         node("ip-172-31-0-12", "172.31.0.12"), node("ip-172-31-0-11", "172.31.0.11")]


def service(annotations=None, ports=None, **spec):
    return {"metadata": {"name": "web", "namespace": "default", "uid": UID,
                         "annotations": annotations or {}},
            "spec": {"type": "LoadBalancer",
                     "ports": ports or [{"port": 80, "protocol": "TCP", "nodePort": 31000}],
                     **spec}}


def test_classic_by_default_with_aws_defaults_scaled_by_the_time_factor():
    lb = compute_load_balancer(service(), NODES, "203.0.113.11", 0.1)
    assert lb.flavour == "classic"
    assert lb.key == "default/web" and lb.vip == "203.0.113.11"
    assert [(l.port, l.protocol, l.node_port) for l in lb.listeners] == [(80, "TCP", 31000)]
    # the control plane carries the exclude label; NotReady nodes stay (health checks decide)
    assert [(t.node, t.address) for t in lb.targets] == [
        ("ip-172-31-0-11", "172.31.0.11"), ("ip-172-31-0-12", "172.31.0.12")]
    hc = lb.health_check
    assert (hc.protocol, hc.port) == ("TCP", 31000)
    assert (hc.interval, hc.timeout, hc.healthy_threshold, hc.unhealthy_threshold) == \
        pytest.approx((1.0, 0.5, 2, 6))
    assert lb.source_ranges == ("0.0.0.0/0",)


def test_nlb_with_local_policy_checks_healthz_on_the_health_check_node_port():
    svc = service({TYPE_ANNOTATION: "nlb"}, externalTrafficPolicy="Local",
                  healthCheckNodePort=32100)
    lb = compute_load_balancer(svc, NODES, "203.0.113.12", 1.0)
    hc = lb.health_check
    assert lb.flavour == "nlb"
    assert (hc.protocol, hc.port, hc.path) == ("HTTP", 32100, "/healthz")
    assert (hc.interval, hc.timeout, hc.healthy_threshold, hc.unhealthy_threshold) == \
        (10.0, 10.0, 3, 3)
    assert hc.detection_time == 30.0


def test_annotations_override_the_defaults_and_bad_values_are_reported():
    svc = service({CHECK_ANNOTATIONS["interval"]: "5",
                   CHECK_ANNOTATIONS["unhealthy_threshold"]: "2",
                   CHECK_ANNOTATIONS["healthy_threshold"]: "3",
                   CHECK_ANNOTATIONS["timeout"]: "3"})
    hc = compute_load_balancer(svc, NODES, "203.0.113.11", 0.1).health_check
    assert (hc.interval, hc.timeout, hc.healthy_threshold, hc.unhealthy_threshold) == \
        pytest.approx((0.5, 0.3, 3, 2))
    with pytest.raises(LoadBalancerProblem, match="healthcheck-interval.*allowed: 5-300"):
        compute_load_balancer(service({CHECK_ANNOTATIONS["interval"]: "1"}), NODES, "x", 1)
    with pytest.raises(LoadBalancerProblem, match="invalid value 'soon'"):
        compute_load_balancer(service({CHECK_ANNOTATIONS["timeout"]: "soon"}), NODES, "x", 1)


def test_udp_needs_an_nlb_and_every_port_needs_a_node_port():
    udp = [{"port": 53, "protocol": "UDP", "nodePort": 31053}]
    with pytest.raises(LoadBalancerProblem, match="Classic ELB listens on TCP only"):
        compute_load_balancer(service(ports=udp), NODES, "203.0.113.11", 1)
    lb = compute_load_balancer(service({TYPE_ANNOTATION: "nlb"}, ports=udp), NODES,
                               "203.0.113.11", 1)
    assert lb.listeners[0].protocol == "UDP"
    assert (lb.health_check.protocol, lb.health_check.port) == ("HTTP", 10256)
    with pytest.raises(LoadBalancerProblem, match="no nodePort"):
        compute_load_balancer(service(ports=[{"port": 80, "protocol": "TCP"}]), NODES, "x", 1)


def test_source_ranges_from_the_spec_or_the_annotation():
    lb = compute_load_balancer(service(loadBalancerSourceRanges=["203.0.113.100/32"]),
                               NODES, "203.0.113.11", 1)
    assert lb.source_ranges == ("203.0.113.100/32",)
    annotated = service({"service.beta.kubernetes.io/load-balancer-source-ranges":
                         "10.0.0.0/8, 203.0.113.0/25"})
    assert compute_load_balancer(annotated, NODES, "v", 1).source_ranges == \
        ("10.0.0.0/8", "203.0.113.0/25")
    with pytest.raises(LoadBalancerProblem, match="invalid CIDR"):
        compute_load_balancer(service(loadBalancerSourceRanges=["nope"]), NODES, "v", 1)


def test_foreign_classes_and_other_types_are_not_ours():
    assert is_ours(service())
    assert not is_ours(service(loadBalancerClass="service.k8s.aws/nlb"))
    assert not is_ours(service({TYPE_ANNOTATION: "external"}))
    assert not is_ours({"metadata": {}, "spec": {"type": "NodePort"}})


def test_hostnames_look_like_aws_and_are_deterministic():
    name = load_balancer_name(UID)
    assert len(name) == 32 and name == "a" + UID.replace("-", "")[:31]
    classic = classic_hostname(UID)
    assert re.fullmatch(r"a[0-9a-f]{31}-\d{10}\.us-east-1\.elb\.amazonaws\.com", classic)
    nlb = nlb_hostname(UID)
    assert re.fullmatch(r"a[0-9a-f]{31}-[0-9a-f]{16}\.elb\.us-east-1\.amazonaws\.com", nlb)
    assert classic == classic_hostname(UID) and nlb == nlb_hostname(UID)
    assert classic_hostname(UID.replace("5", "6")) != classic
    assert is_elb_hostname(classic) and is_elb_hostname(nlb)
    assert not is_elb_hostname("db.example.com")


def test_vip_allocation_keeps_addresses_and_reuses_freed_ones():
    pool = ["203.0.113.11", "203.0.113.12", "203.0.113.13"]
    first = allocate_vips(["a", "b"], {}, pool)
    assert first == {"a": "203.0.113.11", "b": "203.0.113.12"}
    second = allocate_vips(["b", "c", "d", "e"], first, pool)
    assert second == {"b": "203.0.113.12", "c": "203.0.113.11", "d": "203.0.113.13"}


def test_config_survives_its_json_round_trip():
    lbs = (compute_load_balancer(service(), NODES, "203.0.113.11", 0.1),)
    assert parse_config(config_to_json(ElbConfig(lbs))) == ElbConfig(lbs)
