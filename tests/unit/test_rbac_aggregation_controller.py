"""The clusterrole-aggregation controller keeps an aggregated ClusterRole's rules equal to
those of the ClusterRoles its selectors match, running as kube-controller-manager's own
identity (so its RBAC rights are tested too); and the pure aggregation it uses."""
from __future__ import annotations

import socket
import time

import pytest

from base.kube.client import KubeClient, credentials_from_kubeconfig
from base.kube.informer import Informer
from controlplane.api import ApiServer
from controlplane.api.rbac.aggregation import aggregated_rules
from controlplane.controllers.clusterrole_aggregation import ClusterRoleAggregationController
from support import controller_harness as harness

LABEL = "example.com/aggregate-to-monitoring"
PODS = {"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}
NODES = {"verbs": ["list"], "apiGroups": [""], "resources": ["nodes"]}


def role(name, rules=(), labels=None, selector=None):
    obj = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
           "metadata": {"name": name, "labels": labels or {}}, "rules": list(rules)}
    if selector is not None:
        obj["aggregationRule"] = {"clusterRoleSelectors": [selector]}
    return obj


def test_aggregated_rules_follow_the_selectors_in_name_order_once_each():
    agg = role("monitoring", selector={"matchLabels": {LABEL: "true"}})
    roles = [agg, role("b-nodes", [NODES, PODS], {LABEL: "true"}),
             role("a-pods", [PODS], {LABEL: "true"}), role("other", [NODES]),
             role("off", [NODES], {LABEL: "false"})]
    assert aggregated_rules(agg, roles) == [PODS, NODES]
    assert aggregated_rules(role("plain", [PODS]), roles) is None
    everything = role("all", selector={})
    assert PODS in aggregated_rules(everything, roles + [everything])


def wait_for_rules(client, name, wanted, timeout=30.0):
    """The role's rules once they equal `wanted`, or as they are after `timeout`
    (generous: on a loaded 2-core CI machine a first list and write once took
    longer than 10 s)."""
    deadline = time.monotonic() + timeout
    while True:
        rules = client.get("clusterroles", name).get("rules") or []
        if rules == wanted or time.monotonic() > deadline:
            return rules
        time.sleep(0.05)


def seen(informer, controller) -> str:
    """What the controller had to go on, for a failure's message."""
    cached = informer.get("monitoring") or {}
    return (f"informer synced: {informer.wait_synced(0)}, roles cached: {len(informer.items())}, "
            f"cached monitoring rules: {cached.get('rules')}, keys queued: {len(controller.queue)}")


@pytest.fixture
def server(tmp_path):
    api = ApiServer(tmp_path / "api", harness.cluster_info(), node_grace_period=None, seed=1)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    api.add_listener(sock)
    with api.start():
        yield api


def test_the_controller_fills_and_follows_an_aggregated_role(server, tmp_path):
    admin = KubeClient.from_kubeconfig(str(server.kubeconfig_path))
    path = server.write_kubeconfig(tmp_path / "kcm", f"https://{server.addresses[0]}",
                                   token=server.mint_token("system:kube-controller-manager"))
    kcm = KubeClient(credentials_from_kubeconfig(str(path)))
    informer = Informer(kcm, "clusterroles")
    controller = ClusterRoleAggregationController(kcm, {"clusterroles": informer})
    admin.create("clusterroles", role("monitoring", selector={"matchLabels": {LABEL: "true"}}))
    admin.create("clusterroles", role("mon-pods", [PODS], {LABEL: "true"}))
    informer.start()
    controller.start()
    try:
        assert wait_for_rules(admin, "monitoring", [PODS]) == [PODS], seen(informer, controller)
        admin.create("clusterroles", role("mon-nodes", [NODES], {LABEL: "true"}))
        assert wait_for_rules(admin, "monitoring", [NODES, PODS]) == [NODES, PODS], \
            seen(informer, controller)
        admin.delete("clusterroles", "mon-pods")
        assert wait_for_rules(admin, "monitoring", [NODES]) == [NODES], seen(informer, controller)
        # the bootstrap roles were created aggregated: nothing for the controller to change
        view = admin.get("clusterroles", "view")
        assert {"verbs": ["get", "list", "watch"], "apiGroups": ["apps"],
                "resources": ["deployments", "deployments/scale", "deployments/status",
                              "replicasets", "replicasets/scale", "replicasets/status"]} \
            in view["rules"]
    finally:
        controller.stop()
        informer.stop()
