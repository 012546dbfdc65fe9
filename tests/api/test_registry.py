"""Registry behaviour without HTTP: service type transitions, allocation bookkeeping, pod IPs,
nodes."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from controlplane.api.bootstrap import bootstrap, mark_stale_nodes, post_heartbeat
from controlplane.api.errors import StatusError
from controlplane.api.registry import ClusterConfig, Registry
from controlplane.api.resources import BY_PLURAL
from controlplane.api.store import Store

SVC = BY_PLURAL["services"]


@pytest.fixture
def registry(cluster_info) -> Registry:
    reg = Registry(Store(), ClusterConfig.from_info(cluster_info), random.Random(7))
    bootstrap(reg, cluster_info)
    return reg


def service(name="web", **spec) -> dict:
    spec.setdefault("ports", [{"port": 80, "targetPort": 8080}])
    spec.setdefault("selector", {"app": name})
    return {"metadata": {"name": name}, "spec": spec}


def update(reg, name, **changes) -> dict:
    obj = reg.get(SVC, "default", name)
    obj["spec"].update(changes)
    return reg.update(SVC, "default", name, obj)


def test_bootstrap_reserves_first_address_for_kubernetes_and_never_hands_out_dns_ip(registry):
    assert registry.get(SVC, "default", "kubernetes")["spec"]["clusterIP"] == "10.96.0.1"
    ips = {registry.create(SVC, "default", service(f"s{i}"))["spec"]["clusterIP"]
           for i in range(200)}
    assert "10.96.0.10" not in ips and "10.96.0.1" not in ips
    dns = registry.create(SVC, "kube-system", service("kube-dns", clusterIP="10.96.0.10"))
    assert dns["spec"]["clusterIPs"] == ["10.96.0.10"]


def test_clusterip_nodeport_loadbalancer_externalname_round_trip(registry):
    created = registry.create(SVC, "default", service())
    ip = created["spec"]["clusterIP"]
    node_port_svc = update(registry, "web", type="NodePort")
    node_port = node_port_svc["spec"]["ports"][0]["nodePort"]
    assert (node_port_svc["spec"]["clusterIP"] == ip
            and node_port in registry.service_allocations.node_ports)
    lb = update(registry, "web", type="LoadBalancer", externalTrafficPolicy="Local")
    assert lb["spec"]["ports"][0]["nodePort"] == node_port
    health = lb["spec"]["healthCheckNodePort"]
    assert health in registry.service_allocations.node_ports
    back = update(registry, "web", type="ClusterIP", externalTrafficPolicy=None)
    back = registry.get(SVC, "default", "web")
    assert "nodePort" not in back["spec"]["ports"][0] and "healthCheckNodePort" not in back["spec"]
    assert {node_port, health}.isdisjoint(registry.service_allocations.node_ports)
    ext = update(registry, "web", type="ExternalName", externalName="example.com")
    assert "clusterIP" not in ext["spec"] and ip not in registry.service_allocations.cluster_ips
    again = update(registry, "web", type="ClusterIP")
    assert (again["spec"]["clusterIP"]
            and again["spec"]["clusterIP"] in registry.service_allocations.cluster_ips)


def test_rejected_update_keeps_old_allocations(registry):
    registry.create(SVC, "default",
                    service("a", type="NodePort", ports=[{"port": 80, "nodePort": 30001}]))
    registry.create(SVC, "default",
                    service("b", type="NodePort", ports=[{"port": 80, "nodePort": 30002}]))
    before = registry.service_allocations
    obj = registry.get(SVC, "default", "b")
    obj["spec"]["ports"][0]["nodePort"] = 30001
    with pytest.raises(StatusError) as err:
        registry.update(SVC, "default", "b", obj)
    assert err.value.code == 422 and "provided port is already allocated" in err.value.message
    assert registry.service_allocations == before
    assert registry.get(SVC, "default", "b")["spec"]["ports"][0]["nodePort"] == 30002


def test_stale_resource_version_conflicts(registry):
    created = registry.create(SVC, "default", service())
    update(registry, "web", sessionAffinity="ClientIP")
    created["spec"]["sessionAffinity"] = "None"
    with pytest.raises(StatusError) as err:
        registry.update(SVC, "default", "web", created)
    assert (err.value.code, err.value.reason) == (409, "Conflict")


def test_dry_run_stores_and_allocates_nothing(registry):
    before = (registry.store.resource_version, registry.service_allocations)
    obj = registry.create(SVC, "default", service(type="NodePort"), dry_run=True)
    assert obj["spec"]["ports"][0]["nodePort"]
    assert (registry.store.resource_version, registry.service_allocations) == before


def test_pod_ips_come_from_the_node_block_and_are_freed_with_the_pod(registry):
    first = registry.allocate_pod_ip("ip-172-31-0-11")
    second = registry.allocate_pod_ip("ip-172-31-0-11")
    assert (first, second) == ("192.168.1.1", "192.168.1.2")
    pods = BY_PLURAL["pods"]
    registry.create(pods, "default", {"metadata": {"name": "p"},
                                      "spec": {"containers": [{"name": "c", "image": "busybox"}],
                                               "nodeName": "ip-172-31-0-11"}})
    pod = registry.get(pods, "default", "p")
    pod["status"]["podIP"] = first
    registry.update(pods, "default", "p", pod, "status")
    registry.delete(pods, "default", "p", grace_period=0)
    assert registry.allocate_pod_ip("ip-172-31-0-11") == first


def test_node_goes_not_ready_without_heartbeats_and_back_with_one(registry):
    nodes = BY_PLURAL["nodes"]
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=60)
    assert set(mark_stale_nodes(registry, 40, later)) == {"ip-172-31-0-10", "ip-172-31-0-11",
                                                          "ip-172-31-0-12"}
    node = registry.get(nodes, "", "ip-172-31-0-11")
    ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "Unknown"
    assert any(t["key"] == "node.kubernetes.io/unreachable" for t in node["spec"]["taints"])
    stamp = later.strftime("%Y-%m-%dT%H:%M:%SZ")
    patch = ('{"status":{"conditions":[{"type":"Ready","status":"True","reason":"KubeletReady",'
             f'"lastHeartbeatTime":"{stamp}"}}]}}}}').encode()
    registry.patch(nodes, "", "ip-172-31-0-11", "application/strategic-merge-patch+json", patch,
                   "status")
    mark_stale_nodes(registry, 40, later)
    node = registry.get(nodes, "", "ip-172-31-0-11")
    assert next(c for c in node["status"]["conditions"] if c["type"] == "Ready")["status"] == "True"
    assert not any(t["key"] == "node.kubernetes.io/unreachable"
                   for t in node["spec"].get("taints", []))


def test_in_process_heartbeat_makes_a_stale_node_ready_again(registry):
    nodes = BY_PLURAL["nodes"]
    mark_stale_nodes(registry, 40, dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=60))
    post_heartbeat(registry, "ip-172-31-0-12")
    ready = next(c for c in registry.get(nodes, "", "ip-172-31-0-12")["status"]["conditions"]
                 if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "KubeletReady")


def test_create_in_missing_namespace_is_not_found(registry):
    with pytest.raises(StatusError) as err:
        registry.create(SVC, "nowhere", service())
    assert err.value.message == 'namespaces "nowhere" not found'
