"""Events of the cloud controller (Kubernetes' service controller) on LoadBalancer
Services, and of the node lifecycle check inside the API server."""
from __future__ import annotations

import copy
import datetime as dt
import socket

import pytest

from base.kube.client import KubeClient
from base.waiting import wait_until
from controlplane.api import ApiServer
from controlplane.api.bootstrap import mark_stale_nodes
from controlplane.api.resources import BY_PLURAL
from controlplane.cloud.controller import CloudController
from support import controller_harness as harness

POOL = ["203.0.113.11", "203.0.113.12"]


@pytest.fixture
def api(tmp_path):
    server = ApiServer(tmp_path / "api", copy.deepcopy(harness.cluster_info()),
                       node_grace_period=None, seed=1)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    url = server.add_listener(sock)
    server.start()
    try:
        kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig", f"https://{url}")
        yield server, KubeClient.from_kubeconfig(str(kubeconfig))
    finally:
        server.stop()


def story(client: KubeClient, name: str) -> list[tuple[str, str, str, int]]:
    items, _ = client.list("events", "default", field_selector=f"involvedObject.name={name}")
    return sorted((e["reason"], e["type"], e["message"], e["count"]) for e in items)


def test_a_load_balancer_services_life_in_events(api, tmp_path):
    _, client = api
    paths = (tmp_path / "elb" / "config.json", tmp_path / "dns.json")
    with CloudController(client, *paths, {}, POOL, 0.1) as cloud:
        assert cloud.wait_synced(5)
        client.create("services", {
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
            "spec": {"type": "LoadBalancer", "selector": {"app": "web"},
                     "ports": [{"port": 80, "protocol": "TCP"}]}}, "default")
        wait_until("EnsuredLoadBalancer", lambda: story(client, "web") == [
            ("EnsuredLoadBalancer", "Normal", "Ensured load balancer", 1),
            ("EnsuringLoadBalancer", "Normal", "Ensuring load balancer", 1)])
        [event] = client.list("events", "default", field_selector="reason=EnsuredLoadBalancer")[0]
        assert event["source"] == {"component": "service-controller"}
        # a node leaving the load balancers changes only the targets
        client.patch("nodes", "ip-172-31-0-12", {"metadata": {"labels": {
            "node.kubernetes.io/exclude-from-external-load-balancers": ""}}})
        wait_until("UpdatedLoadBalancer", lambda: ("UpdatedLoadBalancer", "Normal",
                                                   "Updated load balancer with new hosts", 1)
                   in story(client, "web"))
        # a broken annotation is a warning, repeated as a count rather than new events
        client.create("services", {
            "apiVersion": "v1", "kind": "Service", "metadata": {
                "name": "bad", "annotations": {
                    "service.beta.kubernetes.io/aws-load-balancer-healthcheck-interval": "1"}},
            "spec": {"type": "LoadBalancer", "selector": {"app": "bad"},
                     "ports": [{"port": 80, "protocol": "TCP"}]}}, "default")
        [(reason, kind, message, _)] = wait_until("SyncLoadBalancerFailed",
                                                  lambda: story(client, "bad"))
        assert (reason, kind) == ("SyncLoadBalancerFailed", "Warning")
        assert message.startswith("Error syncing load balancer: failed to ensure load "
                                  "balancer: ") and "healthcheck-interval" in message
        client.patch("services", "bad", {"metadata": {"labels": {"touch": "1"}}}, "default")
        wait_until("a repeated SyncLoadBalancerFailed", lambda: story(client, "bad")[0][3] >= 2)
        # LoadBalancer -> ClusterIP: the load balancer goes
        svc = client.get("services", "web", "default")
        svc["spec"]["type"] = "ClusterIP"
        for port in svc["spec"]["ports"]:
            port.pop("nodePort", None)
        svc["spec"].pop("externalTrafficPolicy", None)
        client.update("services", svc)
        wait_until("DeletedLoadBalancer", lambda: {"DeletingLoadBalancer", "DeletedLoadBalancer"}
                   <= {e[0] for e in story(client, "web")})
        assert ("DeletedLoadBalancer", "Normal", "Deleted load balancer", 1) in story(
            client, "web")


def test_a_silent_node_and_its_pods_get_node_not_ready(api):
    server, client = api
    registry = server.registry
    pod = registry.create(BY_PLURAL["pods"], "default", {
        "metadata": {"name": "p1"},
        "spec": {"nodeName": "ip-172-31-0-11", "containers": [{"name": "c", "image": "nginx"}]}})
    pod["status"] = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
    registry.update(BY_PLURAL["pods"], "default", "p1", pod, "status")
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=5)
    assert "ip-172-31-0-11" in mark_stale_nodes(registry, 40, later)
    node = registry.get(BY_PLURAL["nodes"], "", "ip-172-31-0-11")
    [on_node] = client.list("events", None, field_selector=(
        "involvedObject.kind=Node,involvedObject.name=ip-172-31-0-11,"
        f"involvedObject.uid={node['metadata']['uid']}"))[0]
    assert (on_node["reason"], on_node["message"], on_node["source"]) == (
        "NodeNotReady", "Node ip-172-31-0-11 status is now: NodeNotReady",
        {"component": "node-controller"})
    assert on_node["metadata"]["namespace"] == "default"
    [on_pod] = client.list("events", "default", field_selector="involvedObject.name=p1")[0]
    assert (on_pod["type"], on_pod["reason"], on_pod["message"]) == (
        "Warning", "NodeNotReady", "Node is not ready")
    said = client.list("events", None, field_selector="reason=NodeNotReady")[0]
    assert len(said) == 4                                     # 3 silent nodes, 1 pod
    mark_stale_nodes(registry, 40, later)                    # already NotReady: said once
    assert client.list("events", None, field_selector="reason=NodeNotReady")[0] == said
