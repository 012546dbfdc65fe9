"""`kubectl delete --cascade=orphan`: the owner goes, its dependents stay and no
longer name it (DeleteOptions.propagationPolicy: Orphan); without the option
they keep the reference, for the garbage collector to follow."""
from __future__ import annotations

REPLICASET = {
    "apiVersion": "apps/v1", "kind": "ReplicaSet",
    "metadata": {"name": "web-rs", "namespace": "default", "labels": {"app": "web"}},
    "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "web"}},
             "template": {"metadata": {"labels": {"app": "web"}},
                          "spec": {"containers": [{"name": "web", "image": "nginx"}]}}}}


def owned_pod(name: str, owner: dict) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "labels": {"app": "web"},
                         "ownerReferences": [{
                             "apiVersion": "apps/v1", "kind": "ReplicaSet",
                             "name": owner["metadata"]["name"],
                             "uid": owner["metadata"]["uid"], "controller": True}]},
            "spec": {"containers": [{"name": "web", "image": "nginx"}]}}


def test_orphan_keeps_the_dependents_without_the_owner_reference(client, kubectl):
    owner = client.create("replicasets", REPLICASET, namespace="default")
    client.create("pods", owned_pod("orphan-me", owner), namespace="default")
    out = kubectl("delete", "replicaset", "web-rs", "--cascade=orphan")
    assert 'replicaset.apps "web-rs" deleted' in out
    assert client.find("replicasets", "web-rs", "default") is None
    pod = client.get("pods", "orphan-me", "default")
    assert "ownerReferences" not in pod["metadata"]


def test_background_delete_leaves_the_reference_for_the_collector(client, kubectl):
    owner = client.create("replicasets", REPLICASET, namespace="default")
    client.create("pods", owned_pod("collect-me", owner), namespace="default")
    kubectl("delete", "replicaset", "web-rs")
    pod = client.get("pods", "collect-me", "default")     # no collector runs here
    assert pod["metadata"]["ownerReferences"][0]["uid"] == owner["metadata"]["uid"]


def test_an_unknown_propagation_policy_is_a_bad_request(client, kubectl):
    client.create("replicasets", REPLICASET, namespace="default")
    proc = kubectl.run("delete", "--raw",
                       "/apis/apps/v1/namespaces/default/replicasets/web-rs"
                       "?propagationPolicy=Sideways")
    assert proc.returncode != 0
    assert "propagationPolicy" in proc.stderr and "Orphan" in proc.stderr
    assert client.find("replicasets", "web-rs", "default") is not None
