"""The cloud controller in a cluster spread over zones, against an in-process
API server: a node (and a VIP) per zone in the ELB's config, one A record
per zone in public DNS, a zone taken out of DNS when the agent reports it
has no healthy target (and all answered when none has), the cross-zone
annotation, and the pool running out of zone VIPs."""
from __future__ import annotations

import json
import socket
import time

import pytest

from agents.elb.health import TargetHealth
from agents.elb.status import STATUS_VERSION, lb_status
from base.elb_api import ZoneNode, read_config, write_json_atomically
from base.kube.client import KubeClient
from controlplane.api import ApiServer
from controlplane.cloud.controller import CloudController, status_path_for
from controlplane.cloud.lbconfig import CROSS_ZONE_ANNOTATION
from support import controller_harness as harness

A, B, C = "us-east-1a", "us-east-1b", "us-east-1c"
ENIS = {A: "172.31.0.5", B: "172.31.16.5", C: "172.31.32.5"}
NODES = tuple({**node, "zone": zone, "region": "us-east-1"}
              for node, zone in zip(harness.NODES, (A, A, B)))     # nothing in us-east-1c
POOL = ["203.0.113.11", "203.0.113.12", "203.0.113.13"]
NLB = {"service.beta.kubernetes.io/aws-load-balancer-type": "nlb"}


def eventually(fn, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        assert time.monotonic() < deadline, "not reached in time"
        time.sleep(0.05)


def lb_service(name, annotations=None):
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "annotations": annotations or {}},
            "spec": {"type": "LoadBalancer", "selector": {"app": name},
                     "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}]}}


def ingress(client, name):
    svc = client.get("services", name, "default")
    return ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress")


@pytest.fixture
def cloud(tmp_path, request):
    pool = getattr(request, "param", POOL)
    server = ApiServer(tmp_path / "api", harness.cluster_info(NODES), node_grace_period=None,
                       seed=1)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    url = server.add_listener(sock)
    server.start()
    kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig", f"https://{url}")
    client = KubeClient.from_kubeconfig(str(kubeconfig))
    paths = {"config": tmp_path / "elb" / "config.json", "dns": tmp_path / "dns.json"}
    try:
        with CloudController(client, paths["config"], paths["dns"], {}, pool, 0.1,
                             zone_enis=ENIS) as ctl:
            assert ctl.wait_synced(5)
            yield client, paths, ctl
    finally:
        server.stop()


def dns(paths):
    try:
        return json.loads(paths["dns"].read_text())
    except FileNotFoundError:
        return {}


def report(paths, lb, unhealthy):
    """Write what the ELB agent would report: every target checked, some failing."""
    check = lb.health_check
    health = {}
    for target in lb.targets:
        h = TargetHealth(target.node, target.address)
        ok = target.address not in unhealthy
        for i in range(max(check.healthy_threshold, check.unhealthy_threshold)):
            h = h.observe(ok, "ok" if ok else "timeout", 1_700_000_000.0 + i, check)
        health[target.address] = h
    write_json_atomically(status_path_for(paths["config"]), {
        "version": STATUS_VERSION, "updated": 0, "configError": "",
        "loadBalancers": [lb_status(lb, health, (), {}, {})]})


def warnings(client, name):
    return [e["message"] for e in client.list("events", "default")[0]
            if e["type"] == "Warning" and e["involvedObject"]["name"] == name]


def test_a_node_per_zone_one_a_record_each_and_dns_failover(cloud):
    client, paths, _ = cloud
    client.create("services", lb_service("web", NLB), namespace="default")
    hostname = eventually(lambda: ingress(client, "web"))[0]["hostname"]
    (lb,) = eventually(lambda: read_config(paths["config"]).load_balancers)
    # zones with nodes only (the control plane counts: us-east-1a), in the ELB's order
    assert lb.zone_nodes == (ZoneNode(A, "203.0.113.11", ENIS[A]),
                             ZoneNode(B, "203.0.113.12", ENIS[B]))
    assert lb.vip == "203.0.113.11" and lb.cross_zone is False
    assert [(t.node, t.zone) for t in lb.targets] == [("ip-172-31-0-11", A),
                                                      ("ip-172-31-0-12", B)]
    # before the agent has checked anything, every zone is answered
    assert eventually(lambda: dns(paths).get(hostname)) == ["203.0.113.11", "203.0.113.12"]

    report(paths, lb, unhealthy={"172.31.0.12"})             # us-east-1b's only target
    eventually(lambda: dns(paths)[hostname] == ["203.0.113.11"])
    report(paths, lb, unhealthy=set())                        # it comes back
    eventually(lambda: dns(paths)[hostname] == ["203.0.113.11", "203.0.113.12"])
    report(paths, lb, unhealthy={"172.31.0.11", "172.31.0.12"})
    eventually(lambda: dns(paths)[hostname] == ["203.0.113.11", "203.0.113.12"])  # fail open
    report(paths, lb, unhealthy={"172.31.0.11"})
    eventually(lambda: dns(paths)[hostname] == ["203.0.113.12"])

    # cross-zone on: us-east-1a's node sends to us-east-1b's healthy target, stays in DNS
    svc = client.get("services", "web", "default")
    svc["metadata"]["annotations"][CROSS_ZONE_ANNOTATION] = "true"
    client.update("services", svc)
    (lb,) = eventually(lambda: [x for x in read_config(paths["config"]).load_balancers
                                if x.cross_zone])
    report(paths, lb, unhealthy={"172.31.0.11"})
    eventually(lambda: dns(paths)[hostname] == ["203.0.113.11", "203.0.113.12"])

    # a node joins us-east-1c: the load balancer gets a node (and a VIP) there
    client.patch("nodes", "ip-172-31-0-11", {"metadata": {"labels": {
        "topology.kubernetes.io/zone": C}}})
    (lb,) = eventually(lambda: [x for x in read_config(paths["config"]).load_balancers
                                if len(x.zone_nodes) == 3])
    assert lb.zone_nodes[2] == ZoneNode(C, "203.0.113.13", ENIS[C])
    assert [n.vip for n in lb.zone_nodes[:2]] == ["203.0.113.11", "203.0.113.12"]  # kept


def test_a_bad_cross_zone_value_is_a_warning_event_and_takes_no_vip(cloud):
    client, paths, _ = cloud
    client.create("services", lb_service("bad", {CROSS_ZONE_ANNOTATION: "maybe"}),
                  namespace="default")
    client.create("services", lb_service("good"), namespace="default")
    eventually(lambda: ingress(client, "good"))
    (message,) = eventually(lambda: warnings(client, "bad"))
    assert message.startswith("Error syncing load balancer: failed to ensure load balancer: ")
    assert f"annotation {CROSS_ZONE_ANNOTATION}: invalid value 'maybe'; allowed: true or false" \
        in message
    (lb,) = read_config(paths["config"]).load_balancers
    assert lb.key == "default/good" and lb.vips == ("203.0.113.11", "203.0.113.12")
    assert ingress(client, "bad") is None


def test_a_load_balancer_needs_a_vip_per_zone_and_waits_for_them(cloud):
    client, paths, _ = cloud
    client.create("services", lb_service("one"), namespace="default")
    eventually(lambda: ingress(client, "one"))
    client.create("services", lb_service("two"), namespace="default")
    (message,) = eventually(lambda: warnings(client, "two"))
    assert "no free ELB address: a load balancer in 2 zones needs 2 VIPs, 1 of the lab's " \
        "3 are free" in message
    assert [lb.key for lb in read_config(paths["config"]).load_balancers] == ["default/one"]
    client.delete("services", "one", "default")
    eventually(lambda: ingress(client, "two"))
    (lb,) = eventually(lambda: [x for x in read_config(paths["config"]).load_balancers
                                if x.key == "default/two"])
    assert lb.vips == ("203.0.113.11", "203.0.113.12")


@pytest.mark.parametrize("cloud", [POOL[:2]], indirect=True)
def test_a_new_zone_without_a_free_vip_is_left_out_with_a_warning(cloud):
    client, paths, _ = cloud
    client.create("services", lb_service("web"), namespace="default")
    eventually(lambda: ingress(client, "web"))
    client.patch("nodes", "ip-172-31-0-11", {"metadata": {"labels": {
        "topology.kubernetes.io/zone": C}}})
    (message,) = eventually(lambda: warnings(client, "web"))
    assert message.endswith("no free ELB address for its node in us-east-1c: all 2 VIPs of "
                            "the lab's pool are in use")
    (lb,) = read_config(paths["config"]).load_balancers
    assert [(n.zone, n.vip) for n in lb.zone_nodes] == [(A, "203.0.113.11"),
                                                        (B, "203.0.113.12")]
