"""The story Events tell, read with the real kubectl: the controllers, the scheduler and
the kubelets of an in-process cluster (fake pod runtime) record what they do, and
`kubectl get events [-w]`, `kubectl events` and `kubectl describe` show it."""

from __future__ import annotations

import os
import queue
import re
import subprocess
import threading
from pathlib import Path

import pytest

from base.waiting import wait_until
from support.controller_harness import InProcessCluster, ready_pods

REPO = Path(__file__).resolve().parents[2]
KUBECTL = REPO / ".venv" / "bin" / "kubectl"
WORKERS = ("ip-172-31-0-11", "ip-172-31-0-12")


class Kubectl:
    def __init__(self, kubeconfig: Path, home: Path):
        self.kubeconfig, self.home = kubeconfig, home

    def argv(self, *args: str) -> list[str]:
        return [str(KUBECTL), "--kubeconfig", str(self.kubeconfig),
                "--cache-dir", str(self.home / "cache"), *args]

    def env(self) -> dict:
        return {**os.environ, "HOME": str(self.home)}

    def __call__(self, *args: str) -> str:
        proc = subprocess.run(self.argv(*args), capture_output=True, text=True, timeout=30,
                              env=self.env(), cwd=self.home)
        assert proc.returncode == 0, f"kubectl {' '.join(args)} failed:\n{proc.stderr}"
        return proc.stdout


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with InProcessCluster(tmp_path_factory.mktemp("events-cluster")) as running:
        yield running


@pytest.fixture(scope="module")
def kubectl(cluster, tmp_path_factory) -> Kubectl:
    return Kubectl(cluster.server.kubeconfig_path, tmp_path_factory.mktemp("kubectl"))


@pytest.fixture(scope="module")
def web(cluster, kubectl) -> dict:
    """`kubectl create deployment web --replicas=2` + `kubectl expose`, running."""
    kubectl("create", "deployment", "web", "--image=nginx", "--replicas=2")
    pods = wait_until("2 web pods ready", lambda: ready_pods(cluster, "app=web", 2))
    kubectl("expose", "deployment", "web", "--port=80")
    rs = cluster.client.list("replicasets", "default", label_selector="app=web")[0][0]
    return {"pods": sorted(p["metadata"]["name"] for p in pods), "rs": rs["metadata"]["name"],
            "nodes": {p["metadata"]["name"]: p["spec"]["nodeName"] for p in pods}}


def table(text: str) -> list[list[str]]:
    """kubectl's columns (two or more spaces apart)."""
    return [re.split(r"\s{2,}", line.strip()) for line in text.strip().splitlines()]


def events_shown(kubectl: Kubectl, *args: str, until: list[str]) -> str:
    """`kubectl get events ARGS`, once every text of `until` is in it."""
    def complete() -> str:
        out = kubectl("get", "events", *args)
        return out if all(text in out for text in until) else ""
    return wait_until(f"events {until}", complete, timeout=20)


def test_get_events_tells_the_story_of_a_deployment(kubectl, web):
    pod, rs = web["pods"][0], web["rs"]
    out = events_shown(kubectl, until=[f"Scaled up replica set {rs} from 0 to 2",
                                       f"Created pod: {web['pods'][1]}", "Container started"])
    rows = table(out)
    assert rows[0] == ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    shown = {(r[2], r[3], r[4]) for r in rows[1:]}
    assert ("ScalingReplicaSet", "deployment/web",
            f"Scaled up replica set {rs} from 0 to 2") in shown
    for name in web["pods"]:
        assert ("SuccessfulCreate", f"replicaset/{rs}", f"Created pod: {name}") in shown
        assert ("Scheduled", f"pod/{name}",
                f"Successfully assigned default/{name} to {web['nodes'][name]}") in shown
    # no registry in the lab: the image is "already present", never pulled
    assert ("Pulled", f"pod/{pod}", 'Container image "nginx" already present on machine and '
                                    "can be accessed by the pod") in shown
    assert ("Created", f"pod/{pod}", "Container created") in shown
    assert ("Started", f"pod/{pod}", "Container started") in shown
    wide = table(kubectl("get", "events", "-o", "wide", "--field-selector",
                         f"involvedObject.name={pod},reason=Started"))
    assert wide[1][4:6] == ["spec.containers{nginx}", f"kubelet, {web['nodes'][pod]}"]
    sources = table(kubectl("get", "events", "-o", "wide", "--field-selector",
                            f"involvedObject.name={pod},reason=Scheduled"))
    assert sources[1][4] == "default-scheduler"


def test_describe_shows_the_events_of_each_object(kubectl, web):
    pod, rs = web["pods"][0], web["rs"]
    events_shown(kubectl, until=[f"Created pod: {pod}", "Container started"])
    described = kubectl("describe", "pod", pod)
    events = described[described.index("\nEvents:"):]
    lines = table(events)
    assert lines[1] == ["Type", "Reason", "Age", "From", "Message"]
    by_reason = {line[1]: line for line in lines[3:]}
    assert by_reason["Scheduled"][0] == "Normal" and by_reason["Scheduled"][3:] == [
        "default-scheduler", f"Successfully assigned default/{pod} to {web['nodes'][pod]}"]
    assert by_reason["Started"][3] == "kubelet"
    assert by_reason["Started"][4].endswith("Container started")
    assert by_reason["Pulled"][4].endswith('Container image "nginx" already present on machine '
                                           "and can be accessed by the pod")
    deployment = kubectl("describe", "deployment", "web")
    assert re.search(rf"Normal\s+ScalingReplicaSet\s+\S+\s+deployment-controller\s+"
                     rf"Scaled up replica set {rs} from 0 to 2", deployment)
    replicaset = kubectl("describe", "replicaset", rs)
    assert re.search(rf"Normal\s+SuccessfulCreate\s+\S+\s+replicaset-controller\s+"
                     rf"Created pod: {pod}", replicaset)
    node = kubectl("describe", "node", web["nodes"][pod])
    assert re.search(r"Normal\s+Starting\s+\S+\s+kubelet\s+Starting kubelet\.", node)
    # a ClusterIP Service has no controller that reports on it, as upstream
    assert re.search(r"Events:\s+<none>", kubectl("describe", "service", "web"))


def test_kubectl_events_lists_and_filters(kubectl, web):
    pod = web["pods"][1]
    events_shown(kubectl, until=[f"pod/{pod}", "Container started"])
    rows = table(kubectl("events"))
    assert rows[0] == ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert {"ScalingReplicaSet", "SuccessfulCreate", "Scheduled", "Started"} <= {
        r[2] for r in rows[1:]}
    mine = table(kubectl("events", "--for", f"pod/{pod}"))
    assert {r[3] for r in mine[1:]} == {f"Pod/{pod}"}      # kubectl events writes the Kind
    assert {r[2] for r in mine[1:]} >= {"Scheduled", "Pulled", "Created", "Started"}
    assert kubectl("events", "--types=Warning", "--for", f"pod/{pod}") == ""   # all Normal


def test_get_events_watch_streams_new_events(cluster, kubectl, web):
    watcher = subprocess.Popen(kubectl.argv("get", "events", "-w"), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=kubectl.env(),
                               cwd=kubectl.home)
    lines: queue.Queue = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in watcher.stdout],
                              daemon=True)
    reader.start()
    try:
        first = lines.get(timeout=20)
        assert first.split()[:3] == ["LAST", "SEEN", "TYPE"]
        kubectl("scale", "deployment", "web", "--replicas=3")
        wanted = f"Scaled up replica set {web['rs']} from 2 to 3"
        seen = []
        while not any(wanted in line for line in seen):
            seen.append(lines.get(timeout=20))
        assert any("ScalingReplicaSet" in line and "deployment/web" in line for line in seen)
    finally:
        watcher.terminate()
        watcher.communicate(timeout=10)
        reader.join(10)


def test_scaling_down_and_deleting_are_told_too(cluster, kubectl, web):
    kubectl("scale", "deployment", "web", "--replicas=1")
    out = events_shown(kubectl, until=[f"Scaled down replica set {web['rs']} from",
                                       "Deleted pod:", "Stopping container nginx"])
    deleted = re.search(r"Deleted pod: (\S+)", out).group(1)
    assert re.search(rf"pod/{deleted}\s+Stopping container nginx", out)
    kubectl("delete", "deployment", "web")
    wait_until("web pods gone", lambda: not cluster.pods("app=web"), timeout=20)
    created = set(re.findall(r"Created pod: (\S+)", kubectl("get", "events")))
    assert len(created) == 3 and set(web["pods"]) <= created
    def killed() -> set[str]:
        return set(kubectl("get", "events", "--field-selector", "reason=Killing", "-o",
                           "jsonpath={range .items[*]}{.involvedObject.name} {end}").split())
    wait_until("a Killing event for every web pod", lambda: created <= killed(), timeout=20)


def test_a_crashing_container_is_one_backoff_event_with_a_count(cluster, kubectl):
    cluster.client.create("pods", {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "crash", "namespace": "default"},
        "spec": {"terminationGracePeriodSeconds": 1, "nodeSelector": {
            "kubernetes.io/hostname": WORKERS[0]},
            "containers": [{"name": "app", "image": "busybox",
                            "readinessProbe": {"tcpSocket": {"port": 80}, "periodSeconds": 1,
                                               "failureThreshold": 1}}]}})
    for run in (1, 2):
        wait_until(f"run {run} of crash/app", lambda: cluster.runtime.running("default", "crash"),
                   timeout=20)
        cluster.runtime.exit_container("default", "crash", "app", 1)
        wait_until(f"BackOff x{run}", lambda r=run: [
            e for e in cluster.client.list("events", "default",
                                           field_selector="involvedObject.name=crash,"
                                                          "reason=BackOff")[0]
            if e["count"] >= r], timeout=20)
    [backoff] = cluster.client.list("events", "default",
                                    field_selector="involvedObject.name=crash,reason=BackOff")[0]
    uid = cluster.get("pods", "crash")["metadata"]["uid"]
    assert backoff["message"] == (f"Back-off restarting failed container app in pod "
                                  f"crash_default({uid})")
    assert backoff["type"] == "Warning" and backoff["count"] == 2
    described = kubectl("describe", "pod", "crash")
    assert re.search(r"Warning\s+BackOff\s+\S+ \(x2 over \S+\)\s+kubelet\s+", described)
    assert re.search(r"Warning\s+Unhealthy\s+.*Readiness probe failed: dial tcp "
                     r"[\d.]+:80: connect: connection refused", described)
    assert re.search(r"Normal\s+Started\s+\S+ \(x[23] over \S+\)\s+kubelet", described)
    kubectl("delete", "pod", "crash", "--wait=false")


def test_an_unschedulable_pod_gets_failed_scheduling(cluster, kubectl):
    cluster.client.create("pods", {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "nowhere", "namespace": "default"},
        "spec": {"nodeSelector": {"disk": "ssd"},
                 "containers": [{"name": "app", "image": "nginx"}]}})
    out = events_shown(kubectl, "--field-selector", "involvedObject.name=nowhere",
                       until=["FailedScheduling"])
    [row] = table(out)[1:]
    assert row[1:4] == ["Warning", "FailedScheduling", "pod/nowhere"]
    assert row[4].startswith("0/3 nodes are available: ")
    assert "didn't match Pod's node affinity/selector" in row[4]
    kubectl("delete", "pod", "nowhere", "--wait=false")
