"""The kubelet runs pods through a PodRuntime and reports what kubectl shows."""
from __future__ import annotations

import ipaddress
import signal
import socket

import pytest

from base.kube.client import KubeClient
from base.waiting import wait_until
from controlplane.api import ApiServer
from controlplane.kubelet.kubelet import Kubelet
from support.controller_harness import InProcessCluster, cluster_info
from support.fake_runtime import FakePodRuntime

WORKER_IPS = {"ip-172-31-0-11": "172.31.0.11", "ip-172-31-0-12": "172.31.0.12"}


@pytest.fixture
def cluster(tmp_path):
    with InProcessCluster(tmp_path / "api") as running:
        yield running


def create_pod(cluster, name: str, restart: str = "Always", grace: int = 1, **container):
    cluster.client.create("pods", {"apiVersion": "v1", "kind": "Pod", "metadata": {
        "name": name, "namespace": "default", "labels": {"app": name}},
        "spec": {"restartPolicy": restart, "terminationGracePeriodSeconds": grace,
                 "containers": [{"name": "c", "image": "svclab/workload", **container}]}})


def status_of(cluster, name: str) -> dict:
    return (cluster.get("pods", name) or {}).get("status") or {}


def condition(status: dict, kind: str) -> str | None:
    return next((c["status"] for c in status.get("conditions") or [] if c["type"] == kind),
                None)


def test_a_running_pod_reports_ips_conditions_and_container_status(cluster):
    create_pod(cluster, "web")
    status = wait_until("web ready", lambda: (
        condition(status_of(cluster, "web"), "Ready") == "True" and status_of(cluster, "web")))
    node = cluster.get("pods", "web")["spec"]["nodeName"]
    assert status["phase"] == "Running"
    assert status["hostIP"] == WORKER_IPS[node] and status["hostIPs"] == [{"ip": status["hostIP"]}]
    block = {"ip-172-31-0-11": "192.168.1.0/24", "ip-172-31-0-12": "192.168.2.0/24"}[node]
    assert ipaddress.ip_address(status["podIP"]) in ipaddress.ip_network(block)
    assert status["podIPs"] == [{"ip": status["podIP"]}] and status["startTime"]
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "PodReadyToStartContainers": "True", "Initialized": "True", "Ready": "True",
        "ContainersReady": "True", "PodScheduled": "True"}
    [container] = status["containerStatuses"]
    assert container["ready"] and container["started"] and container["restartCount"] == 0
    assert container["state"]["running"]["startedAt"]
    assert container["image"] == "docker.io/svclab/workload:latest"
    assert container["imageID"].startswith("docker.io/svclab/workload@sha256:")
    assert container["containerID"].startswith("svclab://")
    [(handle, info)] = list(cluster.runtime.containers.items())
    assert info["argv"][1:3] == ["-m", "agents.workload"] and "--port" in info["argv"]
    assert container["containerID"] == handle.container_id


def test_a_pod_whose_start_failed_unexpectedly_is_started_again(cluster, caplog):
    """A kubelet retries a failed pod sync whatever went wrong: an unexpected error
    (a bug, say) in starting the container once must not leave the pod
    ContainerCreating for good, as it did when the worker's thread ended."""
    start, failed = cluster.runtime.start_container, []

    def fails_once(*args, **kwargs):
        if not failed:
            failed.append(args[:2])
            raise RuntimeError("dictionary changed size during iteration")
        return start(*args, **kwargs)
    cluster.runtime.start_container = fails_once
    create_pod(cluster, "flaky")
    status = wait_until("flaky ready", lambda: (
        condition(status_of(cluster, "flaky"), "Ready") == "True" and status_of(cluster, "flaky")))
    assert failed == [("default", "flaky")]
    assert len(cluster.runtime.running("default", "flaky")) == 1
    assert status["containerStatuses"][0]["restartCount"] == 0
    assert "default/flaky: starting the pod failed" in caplog.text


def test_a_dead_container_is_restarted_with_a_count(cluster):
    create_pod(cluster, "crashy")
    wait_until("crashy ready", lambda: condition(status_of(cluster, "crashy"), "Ready") == "True")
    cluster.runtime.exit_container("default", "crashy", "c", 3)

    def restarted():
        [c] = status_of(cluster, "crashy").get("containerStatuses") or [{}]
        return c.get("restartCount") == 1 and "running" in c.get("state", {}) and c
    container = wait_until("a restart", restarted)
    assert container["lastState"]["terminated"]["exitCode"] == 3
    assert container["lastState"]["terminated"]["reason"] == "Error"
    assert len(cluster.runtime.running("default", "crashy")) == 1


def test_restart_policy_never_lets_a_finished_pod_succeed(cluster):
    create_pod(cluster, "job", restart="Never")
    wait_until("job running", lambda: status_of(cluster, "job").get("phase") == "Running")
    cluster.runtime.exit_container("default", "job", "c", 0)
    wait_until("job succeeded", lambda: status_of(cluster, "job").get("phase") == "Succeeded")
    [container] = status_of(cluster, "job")["containerStatuses"]
    assert container["state"]["terminated"]["reason"] == "Completed"
    assert container["restartCount"] == 0


def test_a_readiness_probe_decides_ready(cluster):
    create_pod(cluster, "probed", readinessProbe={"tcpSocket": {"port": 80},
                                                  "periodSeconds": 1, "failureThreshold": 1})
    status = wait_until("probed running", lambda: status_of(cluster, "probed").get(
        "phase") == "Running" and status_of(cluster, "probed"))
    assert condition(status, "Ready") == "False"
    assert status["containerStatuses"][0]["ready"] is False
    cluster.runtime.tcp_open.add((status["podIP"], 80))
    wait_until("probed ready", lambda: condition(status_of(cluster, "probed"), "Ready") == "True")
    cluster.runtime.tcp_open.clear()
    wait_until("probed not ready again",
               lambda: condition(status_of(cluster, "probed"), "Ready") == "False")


def test_deletion_waits_for_the_grace_period_then_kills_and_removes(cluster):
    cluster.runtime.exit_on_term = False
    create_pod(cluster, "slow", grace=1)
    wait_until("slow ready", lambda: condition(status_of(cluster, "slow"), "Ready") == "True")
    cluster.client.delete("pods", "slow", "default")
    marked = cluster.get("pods", "slow")
    assert marked["metadata"]["deletionTimestamp"]
    assert marked["metadata"]["deletionGracePeriodSeconds"] == 1
    wait_until("SIGTERM sent", lambda: ("default/slow", "c", signal.SIGTERM)
               in cluster.runtime.signals)
    wait_until("the pod deleted", lambda: cluster.get("pods", "slow") is None)
    assert ("default/slow", "c", signal.SIGKILL) in cluster.runtime.signals
    assert ("default", "slow") in cluster.runtime.removed


def test_the_kubelet_posts_node_heartbeats(tmp_path):
    server = ApiServer(tmp_path / "api", cluster_info(), node_grace_period=None, seed=1)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    server.add_listener(sock)
    server.start()
    try:
        client = KubeClient.from_kubeconfig(str(server.kubeconfig_path))
        node = client.get("nodes", "ip-172-31-0-11")
        for cond in node["status"]["conditions"]:
            cond.update(status="Unknown", lastHeartbeatTime="2020-01-01T00:00:00Z")
        client.update("nodes", node, subresource="status")
        kubelet = Kubelet(client, FakePodRuntime(), "ip-172-31-0-11", heartbeat=0.1)
        kubelet.start()
        try:
            def ready():
                conditions = client.get("nodes", "ip-172-31-0-11")["status"]["conditions"]
                return [c for c in conditions if c["type"] == "Ready" and c["status"] == "True"
                        and c["lastHeartbeatTime"] != "2020-01-01T00:00:00Z"]
            [cond] = wait_until("a Ready heartbeat", ready)
            assert cond["reason"] == "KubeletReady"
        finally:
            kubelet.stop()
    finally:
        server.stop()
