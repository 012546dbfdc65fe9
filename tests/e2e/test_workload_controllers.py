"""StatefulSets, DaemonSets and Jobs end to end, on one lab of 1 control plane + 4 workers.

Issue 16's acceptance: `web-0.nginx` answers web-0's IP from a pod and the
headless name lists every ready pod; a deleted web-0 comes back under its
name and its DNS name follows its IP within a second of it being Ready; a
DaemonSet puts one pod on each worker and none on the tainted control plane
unless tolerated; a Job with completions 3 and parallelism 2 completes and
`kubectl wait --for=condition=complete` returns.  DNS questions leave from
inside a pod (a UDP socket in its network namespace, to kube-dns).
"""
from __future__ import annotations

import socket
import time

import pytest
import yaml
from dnslib import QTYPE, RCODE, DNSRecord

from labtools import admin_client, running_lab, svclab, wait_for
from probes.dnsprobe import resolve
from topo.netns import socket_in_netns
from topo.spec import read_spec_data
from topo.state import LabPaths, read_state

pytestmark = [pytest.mark.root, pytest.mark.e2e]

KUBE_DNS = ("10.96.0.10", 53)
CONTROL_PLANE = "ip-172-31-0-10"
WORKERS = [f"ip-172-31-0-{i}" for i in range(11, 15)]
STATEFULSET = """
apiVersion: v1
kind: Service
metadata: {name: nginx, labels: {app: nginx}}
spec:
  clusterIP: None
  selector: {app: nginx}
  ports: [{name: web, port: 80}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web}
spec:
  serviceName: nginx
  replicas: 2
  selector: {matchLabels: {app: nginx}}
  template:
    metadata: {labels: {app: nginx}}
    spec:
      terminationGracePeriodSeconds: 1
      containers: [{name: nginx, image: nginx, ports: [{name: web, containerPort: 80}]}]
"""
DAEMONSET = """
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      terminationGracePeriodSeconds: 1
      containers: [{name: agent, image: nginx}]
"""
JOB = """
apiVersion: batch/v1
kind: Job
metadata: {name: pi}
spec:
  completions: 3
  parallelism: 2
  template:
    spec:
      restartPolicy: Never
      containers: [{name: pi, image: busybox, command: [sh, -c, "echo done"]}]
"""


class Lab:
    def __init__(self, running):
        self.name = running.name
        self.running = running
        self.api = admin_client(running.name)

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True,
                timeout: float = 120):
        return svclab("kubectl", "--name", self.name, *args, input=stdin, check=check,
                      timeout=timeout)

    def pods(self, selector: str) -> dict[str, dict]:
        return {p["metadata"]["name"]: p
                for p in self.api.list("pods", "default", label_selector=selector)[0]
                if not p["metadata"].get("deletionTimestamp")}

    def ask(self, source_pod: str, name: str) -> tuple[str, list[str]]:
        """One A query to kube-dns from inside `source_pod`: (rcode, addresses)."""
        host = read_state(LabPaths(self.name)).find_host(source_pod, "default")
        sock = socket_in_netns(host.pid, socket.AF_INET, socket.SOCK_DGRAM)
        with sock:
            sock.settimeout(1.0)
            sock.sendto(DNSRecord.question(name, "A").pack(), KUBE_DNS)
            reply = DNSRecord.parse(sock.recv(4096))
        return RCODE[reply.header.rcode], sorted(str(rr.rdata) for rr in reply.rr
                                                 if QTYPE[rr.rtype] == "A")


def ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    data = read_spec_data()
    data["nodes"] = [{"name": CONTROL_PLANE, "role": "control-plane"}] + [
        {"name": name, "role": "worker"} for name in WORKERS]
    spec = tmp_path_factory.mktemp("spec") / "five-nodes.yaml"
    spec.write_text(yaml.safe_dump(data))
    with running_lab("-f", str(spec), prefix="wl") as running:
        yield Lab(running)


def test_statefulset_pods_resolve_by_name_and_a_recreated_pod_follows(lab):
    lab.kubectl("apply", "-f", "-", stdin=STATEFULSET)
    pods = wait_for("web-0 and web-1 ready", lambda: (
        lambda found: found if set(found) == {"web-0", "web-1"} and all(
            ready(p) for p in found.values()) else None)(lab.pods("app=nginx")), 60)
    ips = {name: pod["status"]["podIP"] for name, pod in pods.items()}
    assert lab.running.exec("web-0", "hostname", namespace="default").stdout.strip() == "web-0"
    # `nslookup web-0.nginx` from a pod: the search path completes the name
    assert resolve(lab.name, "web-1", "default", "web-0.nginx").addresses == (ips["web-0"],)
    fqdn = "web-0.nginx.default.svc.cluster.local"
    wait_for("both pods behind the headless name", lambda: lab.ask(
        "web-1", "nginx.default.svc.cluster.local")[1] == sorted(ips.values()), 5)
    assert lab.ask("web-1", fqdn) == ("NOERROR", [ips["web-0"]])

    old_uid = pods["web-0"]["metadata"]["uid"]
    lab.kubectl("delete", "pod", "web-0", "--wait=false")

    def new_web0():
        pod = lab.pods("app=nginx").get("web-0")
        return pod if pod and pod["metadata"]["uid"] != old_uid and ready(pod) else None
    pod = wait_for("web-0 made again and ready", new_web0, 60)
    became_ready = time.monotonic()
    new_ip = pod["status"]["podIP"]
    answers = []
    while time.monotonic() - became_ready <= 1.0:
        answers.append(lab.ask("web-1", fqdn))
        if answers[-1] == ("NOERROR", [new_ip]):
            break
    assert answers[-1] == ("NOERROR", [new_ip]), f"still {answers[-1]} 1 s after web-0 " \
                                                 f"was Ready at {new_ip}"
    assert pod["spec"]["hostname"] == "web-0" and pod["spec"]["subdomain"] == "nginx"


def test_daemonset_one_pod_per_worker_and_the_control_plane_only_if_tolerated(lab):
    lab.kubectl("apply", "-f", "-", stdin=DAEMONSET)

    def spread(expected: set[str]):
        pods = [p for p in lab.pods("app=agent").values() if ready(p)]
        nodes = sorted(p["spec"]["nodeName"] for p in pods)
        status = lab.api.get("daemonsets", "agent", "default").get("status") or {}
        return nodes if set(nodes) == expected and len(nodes) == len(expected) and \
            status.get("numberReady") == len(expected) else None
    assert wait_for("one agent on each worker", lambda: spread(set(WORKERS)), 60) == WORKERS
    status = lab.api.get("daemonsets", "agent", "default")["status"]
    assert (status["desiredNumberScheduled"], status["currentNumberScheduled"],
            status["updatedNumberScheduled"], status["numberAvailable"]) == (4, 4, 4, 4)
    lab.kubectl("patch", "daemonset", "agent", "--type=merge", "-p",
                '{"spec":{"template":{"spec":{"tolerations":[{"key":'
                '"node-role.kubernetes.io/control-plane","operator":"Exists",'
                '"effect":"NoSchedule"}]}}}}')
    wait_for("an agent on every node, the control plane too",
             lambda: spread(set(WORKERS) | {CONTROL_PLANE}), 90)
    out = lab.kubectl("rollout", "status", "daemonset/agent", "--timeout=60s").stdout
    assert "successfully rolled out" in out


def test_job_completions_3_parallelism_2_completes_and_kubectl_wait_returns(lab):
    lab.kubectl("apply", "-f", "-", stdin=JOB)
    waited = lab.kubectl("wait", "--for=condition=complete", "job/pi", "--timeout=90s")
    assert waited.stdout.strip() == "job.batch/pi condition met"
    job = lab.api.get("jobs", "pi", "default")
    assert job["status"]["succeeded"] == 3 and "active" not in job["status"]
    assert [c["type"] for c in job["status"]["conditions"]] == ["SuccessCriteriaMet", "Complete"]
    pods = lab.pods("job-name=pi")
    assert len(pods) == 3 and all(p["status"]["phase"] == "Succeeded" for p in pods.values())
    assert lab.kubectl("logs", "job/pi").stdout.strip() == "done"


def test_every_node_holds_its_lease(lab):
    leases = {lease["metadata"]["name"]: lease
              for lease in lab.api.list("leases", "kube-node-lease")[0]}
    assert sorted(leases) == [CONTROL_PLANE, *WORKERS]
    for name, lease in leases.items():
        assert lease["spec"]["holderIdentity"] == name
        assert lease["metadata"]["ownerReferences"][0]["kind"] == "Node"
    out = lab.kubectl("get", "leases", "-n", "kube-node-lease").stdout
    assert all(name in out for name in leases)
