"""The kubelet hands the runtime a sandbox and each container its environment."""
from __future__ import annotations

import pytest

from base.waiting import wait_until
from support.controller_harness import InProcessCluster


@pytest.fixture
def cluster(tmp_path):
    with InProcessCluster(tmp_path / "api") as running:
        yield running


def create(cluster, name: str, container: dict, **spec) -> None:
    cluster.client.create("pods", {"apiVersion": "v1", "kind": "Pod", "metadata": {
        "name": name, "namespace": "default"}, "spec": {
            "terminationGracePeriodSeconds": 1, "containers": [
                {"name": "c", "image": "busybox", **container}], **spec}})


def started(cluster, name: str) -> dict:
    return wait_until(f"{name} started", lambda: next(
        (info for handle, info in cluster.runtime.containers.items() if handle.pod == name),
        None))


def test_containers_get_service_links_downward_values_and_their_own_env(cluster):
    cluster.client.create("services", {"apiVersion": "v1", "kind": "Service", "metadata": {
        "name": "web-db", "namespace": "default"}, "spec": {
            "selector": {"app": "db"}, "ports": [{"name": "pg", "port": 5432}]}})
    create(cluster, "api-0", {"command": ["sleep", "$(NAP)"], "env": [
        {"name": "NAP", "value": "3600"},
        {"name": "ME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "DB", "value": "$(WEB_DB_SERVICE_HOST):$(WEB_DB_SERVICE_PORT_PG)"}],
        "stdin": True, "tty": True}, hostname="api", subdomain="apis")
    info = started(cluster, "api-0")
    db_ip = cluster.get("services", "web-db")["spec"]["clusterIP"]
    env = info["env"]
    assert info["argv"] == ["sleep", "3600"]
    assert (env["ME"], env["DB"]) == ("api-0", f"{db_ip}:5432")
    assert env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"
    assert env["KUBERNETES_SERVICE_PORT_HTTPS"] == "443"
    assert env["WEB_DB_PORT"] == f"tcp://{db_ip}:5432"
    assert info["console"].stdin and info["console"].tty and not info["console"].stdin_once
    sandbox = cluster.runtime.pods[("default", "api-0")]["sandbox"]
    assert (sandbox.hostname, sandbox.domain) == ("api", "apis.default.svc.cluster.local")


def test_service_links_can_be_turned_off_but_kubernetes_stays(cluster):
    cluster.client.create("services", {"apiVersion": "v1", "kind": "Service", "metadata": {
        "name": "other", "namespace": "default"}, "spec": {"ports": [{"port": 80}]}})
    create(cluster, "quiet", {"command": ["sleep", "3600"]}, enableServiceLinks=False)
    env = started(cluster, "quiet")["env"]
    assert "KUBERNETES_SERVICE_HOST" in env and not any(k.startswith("OTHER_") for k in env)


def test_a_missing_configmap_leaves_the_container_waiting_with_the_reason(cluster):
    create(cluster, "needy", {"command": ["sleep", "3600"], "env": [
        {"name": "X", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "x"}}}]})
    waiting = wait_until("needy waiting", lambda: next(
        (s["state"].get("waiting") for s in ((cluster.get("pods", "needy") or {}).get("status")
                                             or {}).get("containerStatuses") or []
         if s["state"].get("waiting", {}).get("reason") == "CreateContainerConfigError"), None))
    assert waiting["message"] == 'configmap "settings" not found'
    assert not any(h.pod == "needy" for h in cluster.runtime.containers)
