"""The cloud controller against an in-process API server: what `kubectl get svc`
would show, what the ELB agent is told, and what public DNS answers."""
from __future__ import annotations

import copy
import json
import socket
import time

import pytest

from base.elb_api import read_config
from base.kube.client import KubeClient
from controlplane.api import ApiServer
from controlplane.cloud.controller import CloudController
from support import controller_harness as harness

CLUSTER_INFO = harness.cluster_info()    # the seed's 3-node cluster
STATIC = {"db.example.com": ["203.0.113.50"]}
POOL = ["203.0.113.11", "203.0.113.12"]


@pytest.fixture
def cloud(tmp_path):
    server = ApiServer(tmp_path / "api", copy.deepcopy(CLUSTER_INFO), node_grace_period=None,
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
        with CloudController(client, paths["config"], paths["dns"], STATIC, POOL, 0.1) as ctl:
            assert ctl.wait_synced(5)
            yield client, paths, ctl
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


def lb_service(name, annotations=None, **spec):
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "annotations": annotations or {}},
            "spec": {"type": "LoadBalancer", "selector": {"app": name},
                     "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}], **spec}}


def ingress(client, name):
    svc = client.get("services", name, "default")
    return ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress")


def test_lifecycle_of_a_classic_load_balancer(cloud):
    client, paths, _ = cloud
    created = client.create("services", lb_service("web"), namespace="default")
    node_port = created["spec"]["ports"][0]["nodePort"]
    hostname = eventually(lambda: ingress(client, "web"))[0]["hostname"]
    assert hostname.startswith("a" + created["metadata"]["uid"].replace("-", "")[:31])
    assert hostname.endswith(".us-east-1.elb.amazonaws.com")
    config = eventually(lambda: read_config(paths["config"]).load_balancers)
    (lb,) = config
    assert (lb.key, lb.flavour, lb.vip, lb.hostname) == ("default/web", "classic",
                                                         "203.0.113.11", hostname)
    assert [(l.port, l.node_port) for l in lb.listeners] == [(80, node_port)]
    assert [t.node for t in lb.targets] == ["ip-172-31-0-11", "ip-172-31-0-12"]
    assert json.loads(paths["dns"].read_text()) == {**STATIC, hostname: ["203.0.113.11"]}
    # Events are written by the recorder's worker: wait for it, as `kubectl get events` would.
    ensured = eventually(lambda: [e for e in client.list("events", "default")[0]
                                  if e["reason"] == "EnsuredLoadBalancer"])
    assert ensured[0]["message"] == "Ensured load balancer"
    assert ensured[0]["involvedObject"]["name"] == "web"

    # a node excluded from load balancers leaves the targets
    client.patch("nodes", "ip-172-31-0-12", {"metadata": {"labels": {
        "node.kubernetes.io/exclude-from-external-load-balancers": ""}}})
    eventually(lambda: [t.node for t in read_config(paths["config"]).load_balancers[0].targets]
               == ["ip-172-31-0-11"])

    # LoadBalancer -> ClusterIP: listeners, name and status go
    svc = client.get("services", "web", "default")
    svc["spec"]["type"] = "ClusterIP"
    for port in svc["spec"]["ports"]:
        port.pop("nodePort", None)
    svc["spec"].pop("externalTrafficPolicy", None)
    client.update("services", svc)
    eventually(lambda: not read_config(paths["config"]).load_balancers)
    eventually(lambda: not ingress(client, "web"))
    assert json.loads(paths["dns"].read_text()) == STATIC


def test_nlb_deletion_and_a_foreign_class_left_pending(cloud):
    client, paths, _ = cloud
    client.create("services", lb_service(
        "udp", {"service.beta.kubernetes.io/aws-load-balancer-type": "nlb"},
        externalTrafficPolicy="Local",
        ports=[{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53}]),
        namespace="default")
    client.create("services", lb_service("other", loadBalancerClass="example.com/lb"),
                  namespace="default")
    hostname = eventually(lambda: ingress(client, "udp"))[0]["hostname"]
    assert hostname.endswith(".elb.us-east-1.amazonaws.com")
    (lb,) = eventually(lambda: read_config(paths["config"]).load_balancers)
    assert lb.flavour == "nlb" and lb.listeners[0].protocol == "UDP"
    assert (lb.health_check.protocol, lb.health_check.path) == ("HTTP", "/healthz")
    svc = client.get("services", "udp", "default")
    assert lb.health_check.port == svc["spec"]["healthCheckNodePort"]
    time.sleep(0.3)
    assert ingress(client, "other") is None                # pending for its own controller
    client.delete("services", "udp", "default")
    eventually(lambda: not read_config(paths["config"]).load_balancers)
    eventually(lambda: json.loads(paths["dns"].read_text()) == STATIC)


def test_a_problem_is_reported_as_a_warning_event_and_the_vip_pool_runs_out(cloud):
    client, paths, _ = cloud
    client.create("services", lb_service(
        "bad", {"service.beta.kubernetes.io/aws-load-balancer-healthcheck-interval": "1"}),
        namespace="default")
    for name in ("one", "two"):
        client.create("services", lb_service(name), namespace="default")
    eventually(lambda: ingress(client, "one") and ingress(client, "two"))
    client.create("services", lb_service("three"), namespace="default")
    events = eventually(lambda: [e for e in client.list("events", "default")[0]
                                 if e["type"] == "Warning"] if len(
        [e for e in client.list("events", "default")[0] if e["type"] == "Warning"]) >= 2
        else None)
    messages = {e["involvedObject"]["name"]: e["message"] for e in events}
    assert "healthcheck-interval" in messages["bad"]
    assert "no free ELB address" in messages["three"]
    vips = {lb.key: lb.vip for lb in read_config(paths["config"]).load_balancers}
    assert sorted(vips) == ["default/one", "default/two"]
    assert sorted(vips.values()) == POOL
    assert ingress(client, "bad") is None and ingress(client, "three") is None
