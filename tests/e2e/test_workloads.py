"""Workloads end to end: the seed's session on a real lab, with the real kubectl.

A lab started with `svclab up` (the daemon runs the API server, the
controllers and the kubelets), driven with `svclab kubectl`.  Pods really run
on worker nodes with 192.168.x addresses, answer on their ports, and
endpoints follow them.
"""
from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from base.kube.client import KubeClient
from controlplane.controllers.naming import ALPHANUMS
from labtools import running_lab, wait_for
from topo.netns import run_in
from topo.state import LabPaths, read_state

pytestmark = [pytest.mark.root, pytest.mark.e2e]
KUBECTL = Path(sys.executable).parent / "kubectl"
WAIT = 20.0
HTTP_GET = ("import sys, urllib.request; "
            "print(urllib.request.urlopen(sys.argv[1], timeout=3).read().decode())")


class _LabView:
    """The lab as recorded in its state folder (read fresh on every access)."""

    def __init__(self, name: str):
        self.paths = LabPaths(name)

    @property
    def state(self):
        return read_state(self.paths)


@dataclass
class WorkloadLab:
    lab: _LabView
    client: KubeClient
    home: Path

    def argv(self, *args: str) -> list[str]:
        return [str(KUBECTL), "--kubeconfig", str(self.lab.paths.kubeconfig), *args]

    def env(self) -> dict:
        return {**os.environ, "HOME": str(self.home)}

    def kubectl(self, *args: str, check: bool = True, timeout: float = 30,
                stdin: str | None = None) -> str:
        proc = subprocess.run(self.argv(*args), input=stdin, capture_output=True, text=True,
                              timeout=timeout, env=self.env())
        if check:
            assert proc.returncode == 0, f"kubectl {' '.join(args)}:\n{proc.stderr}"
        return proc.stdout

    def pods(self, selector: str) -> list[dict]:
        return self.client.list("pods", "default", label_selector=selector)[0]

    def get(self, resource: str, name: str) -> dict | None:
        return self.client.find(resource, name, "default")

    def pod_hosts(self) -> dict[str, str]:
        """Lab pod hosts of the default namespace: pod name -> IP."""
        return {r.name: r.addresses[0] for r in list(self.lab.state.hosts.values())
                if r.kind == "pod" and r.namespace == "default"}

    def http_from(self, pod: str, url: str) -> str:
        record = next(r for r in list(self.lab.state.hosts.values())
                      if r.kind == "pod" and r.name == pod and r.namespace == "default")
        return run_in(record.pid, [sys.executable, "-c", HTTP_GET, url], timeout=10).strip()


def ready_addresses(wl: WorkloadLab, service: str) -> list[str]:
    endpoints = wl.get("endpoints", service) or {}
    return sorted(f"{a['ip']}:{p['port']}" for s in endpoints.get("subsets") or []
                  for a in s.get("addresses") or [] for p in s.get("ports") or [])


def running_pods(wl: WorkloadLab, selector: str, count: int) -> list[dict]:
    pods = [p for p in wl.pods(selector) if not p["metadata"].get("deletionTimestamp")]
    ready = [p for p in pods if any(c["type"] == "Ready" and c["status"] == "True"
                                    for c in p["status"].get("conditions") or [])]
    return ready if len(ready) == count == len(pods) else []


@pytest.fixture(scope="module")
def wl(tmp_path_factory):
    with running_lab(prefix="wl") as running:
        view = _LabView(running.name)
        yield WorkloadLab(view, KubeClient.from_kubeconfig(str(view.paths.kubeconfig)),
                          tmp_path_factory.mktemp("kubectl-home"))


def test_the_seed_session(wl):
    wl.kubectl("create", "deployment", "hwk", "--image=nginx")
    wl.kubectl("expose", "deployment", "hwk", "--port", "80", "--name", "web-hwk",
               "--type", "NodePort")
    wait_for("an endpoint for web-hwk", lambda: ready_addresses(wl, "web-hwk"))
    wl.kubectl("rollout", "status", "deployment/hwk", "--timeout=20s")

    svc = wl.kubectl("get", "svc").splitlines()
    assert svc[0].split() == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    row = next(line.split() for line in svc if line.startswith("web-hwk "))
    assert row[1] == "NodePort" and row[3] == "<none>"
    port, node_port = row[4].removesuffix("/TCP").split(":")
    assert port == "80" and 30000 <= int(node_port) <= 32767

    pods = wl.kubectl("get", "po", "-o", "wide").splitlines()
    assert pods[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE",
                               "NOMINATED", "NODE", "READINESS", "GATES"]
    name, ready, status, restarts, _, ip, node, nominated, gates = next(
        line.split() for line in pods if line.startswith("hwk-"))
    prefix, template_hash, suffix = name.rsplit("-", 2)
    assert prefix == "hwk" and len(suffix) == 5
    assert len(template_hash) in (9, 10)      # a uint32 in decimal, one char per digit
    assert set(template_hash) <= set("456789bcdf") and set(suffix) <= set(ALPHANUMS)
    assert (ready, status, restarts, nominated, gates) == ("1/1", "Running", "0", "<none>",
                                                          "<none>")
    assert ipaddress.ip_address(ip) in ipaddress.ip_network("192.168.0.0/16")
    assert node in ("ip-172-31-0-11", "ip-172-31-0-12")      # a worker, never the control plane
    assert wl.pod_hosts()[name] == ip                         # a real lab host with that IP

    endpoints = wl.kubectl("get", "ep").splitlines()
    assert endpoints[0].split() == ["NAME", "ENDPOINTS", "AGE"]
    assert next(l.split() for l in endpoints if l.startswith("web-hwk "))[1] == f"{ip}:80"
    deploy = next(l.split() for l in wl.kubectl("get", "deploy").splitlines()
                  if l.startswith("hwk "))
    assert deploy[1:4] == ["1/1", "1", "1"]


@pytest.fixture(scope="module")
def caller(wl) -> dict:
    """A pod to call others from."""
    wl.kubectl("run", "caller", "--image=nginx")
    [pod] = wait_for("the caller pod running", lambda: running_pods(wl, "run=caller", 1))
    return pod


def test_target_port_and_pods_talking_to_pods(wl, caller):
    wl.kubectl("create", "deployment", "nginx", "--image=nginx", "--port=8000")
    wl.kubectl("expose", "deployment", "nginx", "--port=80", "--target-port=8000")
    [address] = wait_for("an endpoint for nginx", lambda: ready_addresses(wl, "nginx"))
    ip, port = address.split(":")
    assert port == "8000"
    [target] = wait_for("nginx running", lambda: running_pods(wl, "app=nginx", 1))
    assert target["status"]["podIP"] == ip
    answer = wl.http_from(caller["metadata"]["name"], f"http://{ip}:8000/hostname")
    assert answer == target["metadata"]["name"]
    seen = wl.http_from(caller["metadata"]["name"], f"http://{ip}:8000/clientip")
    assert seen.split(":")[0] == caller["status"]["podIP"]


def test_a_container_with_a_real_command_runs_it(wl, caller):
    wl.kubectl("run", "pyserver", "--image=python:3.11", "--port=8000", "--command", "--",
               "python3", "-m", "http.server", "8000")
    [pod] = wait_for("pyserver running", lambda: running_pods(wl, "run=pyserver", 1))
    listing = wait_for("python's http.server to answer", lambda: _try_http(
        wl, caller["metadata"]["name"], f"http://{pod['status']['podIP']}:8000/"))
    assert "Directory listing for /" in listing
    state = wl.lab.state
    argv = [p.argv for p in state.processes if p.host == next(
        r.host for r in state.hosts.values() if r.name == "pyserver")]
    assert any(a[-4:] == ["python3", "-m", "http.server", "8000"] for a in argv)


def _try_http(wl: WorkloadLab, pod: str, url: str) -> str:
    try:
        return wl.http_from(pod, url)
    except Exception:   # not listening yet: the caller polls
        return ""


def test_readiness_probe_decides_ready_and_endpoints(wl):
    flag = "/tmp/ready"                # in the pod's own /tmp, as in a container
    manifest = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "probed", "labels": {"app": "probed"}},
        "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
            "name": "web", "image": "nginx",
            "readinessProbe": {"exec": {"command": ["test", "-e", flag]},
                               "periodSeconds": 1, "failureThreshold": 1}}]}}
    wl.kubectl("apply", "-f", "-", stdin=json.dumps(manifest))
    wl.kubectl("expose", "pod", "probed", "--port=80")

    def not_ready_endpoint():
        endpoints = wl.get("endpoints", "probed") or {}
        return [a["ip"] for s in endpoints.get("subsets") or []
                for a in s.get("notReadyAddresses") or []]
    [ip] = wait_for("probed listed as not ready", not_ready_endpoint)
    row = next(l.split() for l in wl.kubectl("get", "po", "probed").splitlines()[1:])
    assert row[1:3] == ["0/1", "Running"]
    assert ready_addresses(wl, "probed") == []
    wl.kubectl("exec", "probed", "--", "touch", flag)
    assert wait_for("probed ready", lambda: ready_addresses(wl, "probed")) == [f"{ip}:80"]
    row = next(l.split() for l in wl.kubectl("get", "po", "probed").splitlines()[1:])
    assert row[1:3] == ["1/1", "Running"]


def deployment_manifest(name: str, replicas: int, grace: int) -> str:
    return json.dumps({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"terminationGracePeriodSeconds": grace,
                                       "containers": [{"name": "web",
                                                       "image": "svclab/workload"}]}}}})


def slice_conditions(wl: WorkloadLab, service: str) -> dict[str, dict]:
    slices = wl.client.list("endpointslices", "default",
                            label_selector=f"kubernetes.io/service-name={service}")[0]
    return {e["targetRef"]["name"]: e["conditions"] for s in slices
            for e in s.get("endpoints") or []}


def test_deleting_a_pod_is_graceful_and_replaced(wl, caller):
    wl.kubectl("apply", "-f", "-", stdin=deployment_manifest("term", 1, 3))
    wl.kubectl("expose", "deployment", "term", "--port=80")
    [old] = wait_for("term running", lambda: running_pods(wl, "app=term", 1))
    old_name, old_ip = old["metadata"]["name"], old["status"]["podIP"]
    watch = subprocess.Popen(wl.argv("get", "po", "-l", "app=term", "-w"), text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=wl.env())
    seen: list[str] = []
    reader = threading.Thread(target=lambda: seen.extend(iter(watch.stdout.readline, "")),
                              daemon=True)
    reader.start()
    try:
        wait_for("kubectl get -w to list the pod", lambda: any(
            l.startswith(old_name) for l in list(seen)))
        deleting = subprocess.Popen(wl.argv("delete", "pod", old_name), text=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=wl.env())
        # Terminating: still listed, serving but not ready, still answering.
        conditions = wait_for("the old endpoint terminating", lambda: (
            slice_conditions(wl, "term").get(old_name, {}).get("terminating") and
            slice_conditions(wl, "term")[old_name]))
        assert conditions == {"ready": False, "serving": True, "terminating": True}
        row = next(l.split() for l in wl.kubectl("get", "po", old_name).splitlines()[1:])
        assert row[2] == "Terminating"
        assert wl.http_from(caller["metadata"]["name"], f"http://{old_ip}/hostname") == old_name
        # A replacement comes up and the endpoints follow it.
        [new] = wait_for("a replacement", lambda: [
            p for p in running_pods(wl, "app=term", 1) if p["metadata"]["name"] != old_name])
        wait_for("endpoints on the replacement only", lambda: ready_addresses(wl, "term")
                 == [f"{new['status']['podIP']}:80"])
        out, err = deleting.communicate(timeout=WAIT)
        assert deleting.returncode == 0, err
        assert f'pod "{old_name}" deleted' in out
        assert wl.get("pods", old_name) is None
        assert old_name not in wl.pod_hosts()
        wait_for("the old pod gone from the slices",
                 lambda: old_name not in slice_conditions(wl, "term"))
    finally:
        watch.terminate()
        watch.wait(timeout=5)
        reader.join(timeout=5)
    statuses = [l.split()[2] for l in seen if l.startswith(old_name)]
    assert statuses[0] == "Running" and "Terminating" in statuses


def test_scale_3_to_10_to_2_leaves_exactly_the_right_pods(wl):
    wl.kubectl("apply", "-f", "-", stdin=deployment_manifest("scale", 3, 1))
    wl.kubectl("expose", "deployment", "scale", "--port=80")
    wait_for("3 pods", lambda: running_pods(wl, "app=scale", 3))
    wl.kubectl("scale", "deployment", "scale", "--replicas=10")
    pods = wait_for("10 pods", lambda: running_pods(wl, "app=scale", 10))
    wait_for("10 endpoints", lambda: len(ready_addresses(wl, "scale")) == 10)
    assert {p["spec"]["nodeName"] for p in pods} == {"ip-172-31-0-11", "ip-172-31-0-12"}
    wl.kubectl("scale", "deployment", "scale", "--replicas=2")
    wait_for("2 pods left", lambda: len(wl.pods("app=scale")) == 2)
    pods = running_pods(wl, "app=scale", 2)
    want = {p["metadata"]["name"]: p["status"]["podIP"] for p in pods}
    assert len(want) == 2
    wait_for("endpoints of the 2 pods", lambda: ready_addresses(wl, "scale")
             == sorted(f"{ip}:80" for ip in want.values()))
    hosts = wl.pod_hosts()
    assert {n: ip for n, ip in hosts.items() if n.startswith("scale-")} == want
    # Every pod host belongs to a pod the API knows, with the same IP; no IP twice.
    api_pods = {p["metadata"]["name"]: p["status"].get("podIP")
                for p in wl.client.list("pods", "default")[0]}
    assert all(api_pods.get(name) == ip for name, ip in hosts.items())
    assert all(name in hosts for name, ip in api_pods.items() if ip)
    assert len(set(hosts.values())) == len(hosts)
    # No container process outlives its pod host.
    state = wl.lab.state
    containers = [p for p in state.processes if p.role.startswith("container")]
    assert all(p.host in state.hosts and p.proc.alive() for p in containers)
    deploy = next(l.split() for l in wl.kubectl("get", "deploy", "scale").splitlines()[1:])
    assert deploy[1:4] == ["2/2", "2", "2"]


def test_http_and_tcp_probes_run_from_the_node(wl):
    manifest = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "httpprobed", "labels": {"app": "httpprobed"}},
        "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
            "name": "web", "image": "nginx", "ports": [{"name": "http", "containerPort": 80}],
            "readinessProbe": {"httpGet": {"path": "/hostname", "port": "http"},
                               "periodSeconds": 1},
            "livenessProbe": {"tcpSocket": {"port": 80}, "periodSeconds": 1}}]}}
    wl.kubectl("apply", "-f", "-", stdin=json.dumps(manifest))
    [pod] = wait_for("httpprobed ready", lambda: running_pods(wl, "app=httpprobed", 1))
    [status] = pod["status"]["containerStatuses"]
    assert status["ready"] and status["restartCount"] == 0
    time.sleep(2.5)     # a few liveness periods: a passing probe never restarts the container
    [status] = wl.get("pods", "httpprobed")["status"]["containerStatuses"]
    assert status["restartCount"] == 0 and status["ready"]
