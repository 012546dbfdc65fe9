"""The official Python client's SharedInformer (list, then watch from the list's
resourceVersion) over the new kinds: its cache follows creates, updates and
deletes made with kubectl through the watch alone (no resync) and ends equal
to `kubectl get`; a periodic re-list then changes nothing."""
from __future__ import annotations

import time

import pytest
from kubernetes import client, config
from kubernetes.informer.informer import SharedInformer

WAIT = 10.0


def api_client(server) -> client.ApiClient:
    configuration = client.Configuration()
    config.load_kube_config(str(server.kubeconfig_path), client_configuration=configuration)
    return client.ApiClient(configuration)


def wait_until(what: str, probe) -> None:
    deadline = time.monotonic() + WAIT
    while not probe():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def cached(informer: SharedInformer) -> dict[str, dict]:
    """name -> the cached object's data (dicts or models, as the client gives them)."""
    out = {}
    for obj in informer.cache.list():
        meta = obj["metadata"] if isinstance(obj, dict) else obj.metadata
        name = meta["name"] if isinstance(meta, dict) else meta.name
        out[name] = obj
    return out


def kubectl_names(kubectl, resource: str) -> set[str]:
    return {line.split("/", 1)[1] for line in kubectl("get", resource, "-o", "name").split()}


@pytest.mark.parametrize("resource, lister", [
    ("configmaps", lambda c: client.CoreV1Api(c).list_namespaced_config_map),
    ("secrets", lambda c: client.CoreV1Api(c).list_namespaced_secret),
    ("jobs", lambda c: client.BatchV1Api(c).list_namespaced_job),
    ("statefulsets", lambda c: client.AppsV1Api(c).list_namespaced_stateful_set),
])
def test_the_informer_cache_matches_kubectl_get(api_server, kubectl, resource, lister):
    informer = SharedInformer(lister(api_client(api_server)), namespace="default")
    informer.start()
    try:
        create = {
            "configmaps": lambda n: kubectl("create", "configmap", n, "--from-literal=k=v"),
            "secrets": lambda n: kubectl("create", "secret", "generic", n, "--from-literal=k=v"),
            "jobs": lambda n: kubectl("create", "job", n, "--image=busybox", "--", "true"),
            "statefulsets": lambda n: kubectl("apply", "-f", "-", stdin=statefulset(n)),
        }[resource]
        for name in ("one", "two", "three"):
            create(name)
        kubectl("label", resource, "two", "touched=yes")
        kubectl("delete", resource, "three")
        wait_until(f"the {resource} informer to hold one and two",
                   lambda: set(cached(informer)) == {"one", "two"})
        assert set(cached(informer)) == kubectl_names(kubectl, resource)
        two = cached(informer)["two"]
        labels = (two["metadata"] if isinstance(two, dict) else two.metadata)
        labels = labels["labels"] if isinstance(labels, dict) else labels.labels
        assert labels.get("touched") == "yes"
    finally:
        informer.stop()
    relisting = SharedInformer(lister(api_client(api_server)), namespace="default",
                               resync_period=0.5)
    relisting.start()
    try:
        wait_until("a re-listing informer", lambda: set(cached(relisting)) == {"one", "two"})
        time.sleep(1.2)                 # two re-lists later, the same cache
        assert set(cached(relisting)) == kubectl_names(kubectl, resource)
    finally:
        relisting.stop()


def statefulset(name: str) -> str:
    return f"""apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: {name}}}
spec:
  serviceName: web
  replicas: 0
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec: {{containers: [{{name: web, image: nginx}}]}}
"""
