"""The ALB controller against an in-process API server: what `kubectl get ing` shows, what
the ELB agent is told, the public DNS records, the Events on the Ingresses (a missing
Service is an Event, not a crash), group.name, internal ALBs, the address pool it shares
with the Classic/NLB load balancers, target health reported from the agent's status."""
from __future__ import annotations

import copy
import json
import socket
import time

import pytest

from base.alb_api import read_alb_config
from base.elb_api import ElbConfig, HealthCheck, LoadBalancer, write_config
from base.kube.client import KubeClient
from controlplane.api import ApiServer
from controlplane.cloud import alb_placement
from controlplane.cloud.alb_controller import AlbController, ensure_alb_ingress_class
from support import controller_harness as harness

POOL = [f"203.0.113.{i}" for i in range(11, 16)]
ALB_CLASS = {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
             "metadata": {"name": "alb"}, "spec": {"controller": "ingress.k8s.aws/alb"}}
PUBLIC = {"alb.ingress.kubernetes.io/scheme": "internet-facing"}


@pytest.fixture
def alb(tmp_path):
    server = ApiServer(tmp_path / "api", copy.deepcopy(harness.cluster_info()),
                       node_grace_period=None, seed=1)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    url = server.add_listener(sock)
    server.start()
    client = KubeClient.from_kubeconfig(str(server.write_kubeconfig(
        tmp_path / "kubeconfig", f"https://{url}")))
    elb = tmp_path / "elb"
    assert ensure_alb_ingress_class(client) and not ensure_alb_ingress_class(client)
    assert client.get("ingressclasses", "alb")["spec"] == ALB_CLASS["spec"]
    try:
        with AlbController(client, elb / "alb.json", POOL, 0.1,
                           vpc_subnets={None: "172.31.0.0/20"}) as ctl:
            assert ctl.wait_synced(5)
            yield client, elb, ctl
    finally:
        server.stop()


def eventually(fn, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        assert time.monotonic() < deadline, "not reached in time"
        time.sleep(0.05)


def web_service(client, name="web", kind="NodePort"):
    return client.create("services", {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
        "spec": {"type": kind, "selector": {"app": name},
                 "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}, "default")


def ingress(client, name, annotations=None, host=None, svc="web"):
    rule = {"http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {
        "service": {"name": svc, "port": {"name": "http"}}}}]}}
    if host:
        rule["host"] = host
    return client.create("ingresses", {
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": name, "annotations": annotations or {}},
        "spec": {"ingressClassName": "alb", "rules": [rule]}}, "default")


def hostname_of(client, name):
    ing = client.get("ingresses", name, "default")
    points = ((ing.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    return points[0]["hostname"] if points else None


def events(client, name, reason=None):
    found = client.list("events", "default")[0]
    return [e for e in found if e["involvedObject"].get("name") == name
            and e["involvedObject"].get("kind") == "Ingress"
            and (reason is None or e["reason"] == reason)]


def test_lifecycle_of_an_internet_facing_alb(alb):
    client, elb, _ = alb
    svc = web_service(client)
    ingress(client, "shop", PUBLIC, host="shop.example.com")
    host = eventually(lambda: hostname_of(client, "shop"))
    assert host.startswith("k8s-default-shop-") and host.endswith(".us-east-1.elb.amazonaws.com")
    (lb,) = read_alb_config(elb / "alb.json").load_balancers
    assert (lb.hostname, lb.scheme, lb.vip, lb.owner) == (host, "internet-facing", POOL[-1],
                                                         "ingress default/shop")
    (listener,) = lb.listeners
    assert [(r.hosts, r.paths) for r in listener.rules] == [(("shop.example.com",), ("/*",))]
    (tg,) = lb.target_groups
    assert {(t.address, t.port) for t in tg.targets} == {
        ("172.31.0.11", svc["spec"]["ports"][0]["nodePort"]),
        ("172.31.0.12", svc["spec"]["ports"][0]["nodePort"])}
    assert json.loads((elb / "alb-dns.json").read_text()) == {host: [POOL[-1]]}
    ok = eventually(lambda: events(client, "shop", "SuccessfullyReconciled"))
    assert ok[0]["message"] == "Successfully reconciled" and ok[0]["type"] == "Normal"
    assert ok[0]["source"]["component"] == "ingress"
    client.delete("ingresses", "shop", "default")
    eventually(lambda: not read_alb_config(elb / "alb.json").load_balancers
               and json.loads((elb / "alb-dns.json").read_text()) == {})


def test_a_missing_service_is_an_event_then_the_alb_comes(alb):
    client, elb, ctl = alb
    ingress(client, "early", PUBLIC)
    failed = eventually(lambda: events(client, "early", "FailedBuildModel"))
    assert failed[0]["type"] == "Warning"
    assert failed[0]["message"] == ('Failed build model due to ingress: default/early: '
                                    'services "web" not found')
    assert not read_alb_config(elb / "alb.json").load_balancers
    assert ctl.last_error == ""                               # not a crash
    for _ in range(2):                                        # resyncs repeat no Warning
        syncs = ctl.syncs
        ctl._changed()
        eventually(lambda seen=syncs: ctl.syncs > seen)
    assert [e.get("count", 1) for e in events(client, "early", "FailedBuildModel")] == [1]
    web_service(client)
    eventually(lambda: hostname_of(client, "early"))
    eventually(lambda: events(client, "early", "SuccessfullyReconciled"))


def test_group_name_merges_two_ingresses_into_one_alb(alb):
    client, elb, _ = alb
    web_service(client)
    web_service(client, "api")
    group = {**PUBLIC, "alb.ingress.kubernetes.io/group.name": "shop"}
    ingress(client, "front", group, host="shop.example.com")
    ingress(client, "back", {**group, "alb.ingress.kubernetes.io/group.order": "-1"},
            host="api.example.com", svc="api")
    host = eventually(lambda: hostname_of(client, "front") == hostname_of(client, "back")
                      and hostname_of(client, "back"))
    assert host.startswith("k8s-shop-")
    (lb,) = eventually(lambda: [a for a in read_alb_config(elb / "alb.json").load_balancers
                                if len(a.target_groups) == 2])
    assert lb.owner == "group shop"
    assert [r.hosts for r in lb.listeners[0].rules] == [("api.example.com",),
                                                        ("shop.example.com",)]


def test_internal_alb_takes_a_vpc_address_and_the_pool_is_shared(alb, tmp_path):
    client, elb, _ = alb
    web_service(client)
    ingress(client, "inside", host="inside.example.com")        # scheme internal by default
    host = eventually(lambda: hostname_of(client, "inside"))
    assert host.startswith("internal-k8s-default-inside-")
    (lb,) = read_alb_config(elb / "alb.json").load_balancers
    assert lb.scheme == "internal" and lb.vip == "172.31.15.254"
    # A Classic ELB already has the top public address: the ALB takes the next one.
    classic = LoadBalancer(key="default/lb", uid="u", hostname="a.example", flavour="classic",
                           vip=POOL[-1], listeners=(), targets=(),
                           health_check=HealthCheck("TCP", 30080))
    write_config(elb / "config.json", ElbConfig((classic,)))
    ingress(client, "outside", PUBLIC, host="out.example.com")
    eventually(lambda: hostname_of(client, "outside"))
    vips = {a.name: a.vip for a in read_alb_config(elb / "alb.json").load_balancers}
    assert sorted(vips.values()) == ["172.31.15.254", POOL[-2]]


def test_other_classes_are_left_alone(alb):
    client, elb, ctl = alb
    web_service(client)
    client.create("ingresses", {
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "nginx", "annotations": {"kubernetes.io/ingress.class": "nginx"}},
        "spec": {"defaultBackend": {"service": {"name": "web", "port": {"number": 80}}}}},
        "default")
    eventually(lambda: ctl.informers["ingresses"].get("default/nginx"))
    syncs = ctl.syncs
    ctl._changed()                       # one more sync that certainly saw it
    eventually(lambda: ctl.syncs > syncs)
    assert hostname_of(client, "nginx") is None and not events(client, "nginx")


def test_target_health_transitions_become_events(alb):
    client, elb, _ = alb
    web_service(client)
    ingress(client, "shop", PUBLIC)
    eventually(lambda: hostname_of(client, "shop"))
    (lb,) = read_alb_config(elb / "alb.json").load_balancers
    (tg,) = lb.target_groups
    target = tg.targets[0]
    status = {"applicationLoadBalancers": [{"name": lb.name, "targetGroups": [{
        "name": tg.name, "targets": [{"endpoint": target.endpoint, "name": target.name,
                                      "transitions": [{"at": time.time() + 1,
                                                       "state": "unhealthy",
                                                       "reason": "Target.Timeout"}]}]}]}]}
    (elb / "status.json").write_text(json.dumps(status))
    (event,) = eventually(lambda: events(client, "shop", "TargetUnhealthy"))
    assert event["type"] == "Warning"
    assert event["message"] == (f"ALB {lb.name} target {target.endpoint} ({target.name}) in "
                                f"target group {tg.name} is unhealthy: Target.Timeout")


def test_internal_pools_are_the_top_of_each_subnet():
    pools = alb_placement.internal_pools({None: "172.31.0.0/20", "us-east-1b": "172.31.16.0/24"},
                                         size=3)
    assert pools == {None: ("172.31.15.254", "172.31.15.253", "172.31.15.252"),
                     "us-east-1b": ("172.31.16.254", "172.31.16.253", "172.31.16.252")}


def test_target_type_ip_warns_once_per_service_that_pod_ips_are_not_routable(alb):
    client, elb, ctl = alb
    for name, ip in (("web", "192.168.1.5"), ("api", "192.168.2.7")):
        web_service(client, name)
        client.create("endpointslices", {
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{name}-1", "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": [ip], "conditions": {"ready": True}}]}, "default")
    both = client.create("ingresses", {
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "pods", "annotations": {
            **PUBLIC, "alb.ingress.kubernetes.io/target-type": "ip"}},
        "spec": {"ingressClassName": "alb", "rules": [{"http": {"paths": [
            {"path": "/api", "pathType": "Prefix",
             "backend": {"service": {"name": "api", "port": {"number": 80}}}},
            {"path": "/", "pathType": "Prefix",
             "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}},
        "default")
    assert both["spec"]["ingressClassName"] == "alb"
    eventually(lambda: len(events(client, "pods", "PodIPsNotRoutable")) == 2)
    (lb,) = read_alb_config(elb / "alb.json").load_balancers
    assert sorted(t.endpoint for tg in lb.target_groups for t in tg.targets) == [
        "192.168.1.5:8080", "192.168.2.7:8080"]
    for _ in range(2):
        syncs = ctl.syncs
        ctl._changed()
        eventually(lambda seen=syncs: ctl.syncs > seen)
    warned = events(client, "pods", "PodIPsNotRoutable")
    assert sorted(e.get("count", 1) for e in warned) == [1, 1]
    assert any("pod IPs 192.168.2.7 of service default/api are outside the VPC "
               "(172.31.0.0/20)" in e["message"] for e in warned)


def test_an_ingress_that_leaves_the_class_loses_its_address(alb):
    client, elb, _ = alb
    web_service(client)
    ingress(client, "shop", PUBLIC)
    eventually(lambda: hostname_of(client, "shop"))
    client.patch("ingresses", "shop", {"metadata": {"annotations": {
        "kubernetes.io/ingress.class": "nginx"}}}, "default")
    eventually(lambda: hostname_of(client, "shop") is None)
    eventually(lambda: not read_alb_config(elb / "alb.json").load_balancers)
