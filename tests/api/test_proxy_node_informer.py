"""The proxy agent's node informer works under its own identity: system:kube-proxy
(bound to system:node-proxier) lists and watches its Node by name (a field selector on
metadata.name, as kube-proxy's informer does) and so learns its zone label.  An
in-process API server with the bootstrap RBAC policy."""
from __future__ import annotations

from base.kube.client import KubeClient
from controlplane import identities as ids
from labd.credentials import identity_client

NODE = "ip-172-31-0-11"
ZONE = "topology.kubernetes.io/zone"


def test_kube_proxy_lists_and_watches_its_own_node_by_name(shared_server):
    admin = KubeClient.from_kubeconfig(str(shared_server.kubeconfig_path))
    proxy = identity_client(shared_server, ids.KUBE_PROXY)
    selector = f"metadata.name={NODE}"
    items, rv = proxy.list("nodes", field_selector=selector)
    assert [n["metadata"]["name"] for n in items] == [NODE]
    watch = proxy.watch("nodes", rv, field_selector=selector, timeout_seconds=5)
    try:
        admin.patch("nodes", NODE, {"metadata": {"labels": {ZONE: "us-east-1a"}}})
        kind, obj = next((k, o) for k, o in watch if k != "BOOKMARK")
    finally:
        watch.close()
    assert kind == "MODIFIED"
    assert obj["metadata"]["labels"][ZONE] == "us-east-1a"
