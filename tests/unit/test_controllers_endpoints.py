"""Endpoints and EndpointSlices follow pods: named ports, readiness, terminating."""
from __future__ import annotations

import pytest

from base.waiting import wait_until
from controlplane.controllers import endpoints as ep
from support.controller_harness import InProcessCluster, deployment, ready_pods, service

SVC = {"metadata": {"name": "web", "namespace": "default", "uid": "svc-uid",
                    "labels": {"app": "web"}},
       "spec": {"selector": {"app": "web"},
                "ports": [{"name": "http", "port": 80, "targetPort": "http",
                           "protocol": "TCP"}]}}


def pod(name: str, ip: str, port: int, ready: bool = True, terminating: bool = False,
        node: str = "n1") -> dict:
    meta = {"name": name, "namespace": "default", "uid": f"uid-{name}",
            "labels": {"app": "web"}}
    if terminating:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta,
            "spec": {"nodeName": node, "containers": [{"name": "c", "ports": [
                {"name": "http", "containerPort": port, "protocol": "TCP"}]}]},
            "status": {"phase": "Running", "podIP": ip, "conditions": [
                {"type": "Ready", "status": "True" if ready else "False"}]}}


def test_named_target_ports_resolve_per_pod_into_separate_subsets_and_slices():
    pods = [pod("a", "192.168.1.1", 8080), pod("b", "192.168.2.1", 9090)]
    subsets = ep.compute_subsets(SVC, pods)
    assert [(s["addresses"][0]["ip"], s["ports"]) for s in subsets] == [
        ("192.168.1.1", [{"name": "http", "port": 8080, "protocol": "TCP"}]),
        ("192.168.2.1", [{"name": "http", "port": 9090, "protocol": "TCP"}])]
    assert subsets[0]["addresses"][0]["targetRef"] == {"kind": "Pod", "namespace": "default",
                                                       "name": "a", "uid": "uid-a"}
    chunks = ep.slice_chunks(ep.desired_slice_groups(SVC, pods))
    assert [(ports, [e["addresses"] for e in eps]) for ports, eps in chunks] == [
        ((("http", 8080, "TCP", ""),), [["192.168.1.1"]]),
        ((("http", 9090, "TCP", ""),), [["192.168.2.1"]])]


def test_pods_without_the_named_port_are_left_out():
    stranger = pod("c", "192.168.1.9", 1)
    stranger["spec"]["containers"][0]["ports"][0]["name"] = "other"
    assert ep.compute_subsets(SVC, [stranger]) == []
    assert ep.slice_chunks(ep.desired_slice_groups(SVC, [stranger])) == [((), [])]


def test_not_ready_and_terminating_pods():
    pods = [pod("ready", "192.168.1.1", 80), pod("unready", "192.168.1.2", 80, ready=False),
            pod("leaving", "192.168.1.3", 80, terminating=True)]
    [subset] = ep.compute_subsets(SVC, pods)
    assert [a["ip"] for a in subset["addresses"]] == ["192.168.1.1"]
    assert [a["ip"] for a in subset["notReadyAddresses"]] == ["192.168.1.2"]
    [(_, endpoints)] = ep.slice_chunks(ep.desired_slice_groups(SVC, pods))
    conditions = {e["targetRef"]["name"]: e["conditions"] for e in endpoints}
    assert conditions == {
        "ready": {"ready": True, "serving": True, "terminating": False},
        "unready": {"ready": False, "serving": False, "terminating": False},
        "leaving": {"ready": False, "serving": True, "terminating": True}}


def test_publish_not_ready_addresses_makes_every_endpoint_ready():
    svc = {**SVC, "spec": {**SVC["spec"], "publishNotReadyAddresses": True}}
    pods = [pod("unready", "192.168.1.2", 80, ready=False),
            pod("leaving", "192.168.1.3", 80, terminating=True)]
    [subset] = ep.compute_subsets(svc, pods)
    assert sorted(a["ip"] for a in subset["addresses"]) == ["192.168.1.2", "192.168.1.3"]
    assert "notReadyAddresses" not in subset
    [(_, endpoints)] = ep.slice_chunks(ep.desired_slice_groups(svc, pods))
    assert {e["targetRef"]["name"]: e["conditions"]["ready"] for e in endpoints} == {
        "unready": True, "leaving": True}


def test_slices_hold_at_most_100_endpoints():
    pods = [pod(f"p{i}", f"192.168.{i // 200}.{i % 200 + 1}", 80) for i in range(250)]
    chunks = ep.slice_chunks(ep.desired_slice_groups(SVC, pods))
    assert [len(eps) for _, eps in chunks] == [100, 100, 50]


@pytest.fixture
def cluster(tmp_path):
    with InProcessCluster(tmp_path / "api") as running:
        yield running


def test_endpoints_and_slices_follow_a_deployment(cluster):
    body = deployment("web", 2, container={"ports": [{"name": "http", "containerPort": 8080}]})
    cluster.client.create("deployments", body)
    cluster.client.create("services", service("web", {"app": "web"}, [
        {"name": "web", "port": 80, "targetPort": "http"}]))
    pods = wait_until("2 ready pods", lambda: ready_pods(cluster, "app=web", 2))
    ips = sorted(p["status"]["podIP"] for p in pods)

    def endpoint_ips():
        endpoints = cluster.get("endpoints", "web") or {}
        return sorted(a["ip"] for s in endpoints.get("subsets") or []
                      for a in s.get("addresses") or [])
    wait_until("2 addresses", lambda: endpoint_ips() == ips)
    [subset] = cluster.get("endpoints", "web")["subsets"]
    assert subset["ports"] == [{"name": "web", "port": 8080, "protocol": "TCP"}]
    [slice_obj] = wait_until("one slice with 2 endpoints", lambda: [
        s for s in cluster.slices("web") if len(s.get("endpoints") or []) == 2])
    labels = slice_obj["metadata"]["labels"]
    assert labels["kubernetes.io/service-name"] == "web"
    assert labels["endpointslice.kubernetes.io/managed-by"] == "endpointslice-controller.k8s.io"
    assert slice_obj["metadata"]["name"].startswith("web-")
    assert len(slice_obj["metadata"]["name"]) == len("web-") + 5
    assert slice_obj["ports"] == [{"name": "web", "port": 8080, "protocol": "TCP"}]
    assert {e["nodeName"] for e in slice_obj["endpoints"]} <= {"ip-172-31-0-11",
                                                               "ip-172-31-0-12"}
    cluster.client.patch("deployments", "web", {"spec": {"replicas": 0}}, "default")
    wait_until("no addresses", lambda: endpoint_ips() == [] and all(
        not s.get("endpoints") for s in cluster.slices("web")))
    cluster.client.delete("services", "web", "default")
    wait_until("endpoints and slices gone", lambda: cluster.get("endpoints", "web") is None
               and not cluster.slices("web"))


def test_a_terminating_pod_is_serving_but_not_ready_until_it_exits(cluster):
    cluster.runtime.exit_on_term = False     # the container keeps serving after SIGTERM
    cluster.client.create("pods", {"apiVersion": "v1", "kind": "Pod", "metadata": {
        "name": "slow", "namespace": "default", "labels": {"app": "slow"}},
        "spec": {"terminationGracePeriodSeconds": 2,
                 "containers": [{"name": "c", "image": "nginx"}]}})
    cluster.client.create("services", service("slow", {"app": "slow"}, [{"port": 80}]))
    wait_until("slow ready", lambda: ready_pods(cluster, "app=slow", 1))
    cluster.client.delete("pods", "slow", "default")

    def conditions():
        return [e["conditions"] for s in cluster.slices("slow") for e in s.get("endpoints") or []]
    assert wait_until("terminating endpoint", lambda: [
        c for c in conditions() if c["terminating"]]) == [
        {"ready": False, "serving": True, "terminating": True}]
    endpoints = cluster.get("endpoints", "slow")
    assert not any(s.get("addresses") for s in endpoints.get("subsets") or [])
    wait_until("the pod gone after its grace period", lambda: cluster.get("pods", "slow") is None)
    wait_until("no endpoints left", lambda: conditions() == [])
    assert ("default", "slow") in cluster.runtime.removed


def test_a_service_without_selector_keeps_the_users_endpoints_and_mirrors_them(cluster):
    cluster.client.create("services", service("ext", None, [{"name": "db", "port": 5432}]))
    cluster.client.create("endpoints", {"apiVersion": "v1", "kind": "Endpoints", "metadata": {
        "name": "ext", "namespace": "default"}, "subsets": [{
            "addresses": [{"ip": "203.0.113.50"}],
            "ports": [{"name": "db", "port": 5432, "protocol": "TCP"}]}]})
    [mirror] = wait_until("a mirrored slice", lambda: cluster.slices("ext"))
    assert mirror["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] == \
        "endpointslicemirroring-controller.k8s.io"
    assert [e["addresses"] for e in mirror["endpoints"]] == [["203.0.113.50"]]
    assert cluster.get("endpoints", "ext")["subsets"][0]["addresses"] == [{"ip": "203.0.113.50"}]
    kubernetes = cluster.get("endpoints", "kubernetes")
    assert kubernetes["subsets"][0]["addresses"] == [{"ip": "172.31.0.10"}]
    assert [s["metadata"]["name"] for s in cluster.slices("kubernetes")] == ["kubernetes"]
