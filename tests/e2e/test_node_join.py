"""Nodes joining and leaving a running lab (`svclab node add|remove`), as
`kubeadm join` on a new instance and `kubectl drain` + `kubectl delete node`
+ terminating the instance do on a real cluster."""
from __future__ import annotations

import json
import threading

import pytest
import yaml

import labtools
from labtools import admin_client, host_snapshot, running_lab, svclab
from probes.spread.probe import spread
from topo.state import LabPaths, read_state

pytestmark = [pytest.mark.root, pytest.mark.e2e]
JOINER = "ip-172-31-0-20"
GRACE = 1       # the pods' terminationGracePeriodSeconds: a drain waits for it

WEB = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 6
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: %d
      containers: [{name: web, image: svclab/workload, ports: [{containerPort: 8080}]}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      terminationGracePeriodSeconds: %d
      containers: [{name: agent, image: svclab/workload, ports: [{containerPort: 9000}]}]
""" % (GRACE, GRACE)


@pytest.fixture(scope="module")
def lab():
    before = host_snapshot()
    with running_lab(prefix="nodes") as running:
        svclab("kubectl", "--name", running.name, "apply", "-f", "-", input=WEB)
        yield running
    assert host_snapshot() == before


def kubectl(lab, *args) -> str:
    return svclab("kubectl", "--name", lab.name, *args).stdout


def pods_by_node(lab, app: str) -> dict[str, list[str]]:
    pods = json.loads(kubectl(lab, "get", "pods", "-l", f"app={app}", "-o", "json"))["items"]
    out: dict[str, list[str]] = {}
    for pod in pods:
        if pod["status"].get("phase") == "Running" and not pod["metadata"].get(
                "deletionTimestamp"):
            out.setdefault(pod["spec"]["nodeName"], []).append(pod["status"]["podIP"])
    return out


def node_port(lab) -> int:
    return json.loads(kubectl(lab, "get", "svc", "web", "-o", "json"))["spec"]["ports"][0][
        "nodePort"]


def test_bad_node_changes_are_refused_and_change_nothing(lab):
    nodes_before = kubectl(lab, "get", "nodes", "-o", "name")
    status_before = svclab("status", "--name", lab.name, "--json").stdout
    for args, field in ((["add", "ip-172-31-0-11"], "name: node 'ip-172-31-0-11' already exists"),
                        (["add", "--address", "10.9.0.1"], "address: 10.9.0.1 is outside"),
                        (["add", "--address", "172.31.0.12"], "address: 172.31.0.12 is already"),
                        (["add", "--address", "172.31.0.5"], "address: 172.31.0.5 is reserved"),
                        (["add", "--zone", "us-east-1a"], "zone: this lab has no zones"),
                        (["add", "--role", "control-plane"], "role: invalid value"),
                        (["add", "Bad_Name"], "name:"),
                        (["remove", "ip-172-31-0-10"], "node: ip-172-31-0-10 is the control"),
                        (["remove", "ip-172-31-9-9"], "node: no node 'ip-172-31-9-9'")):
        refused = svclab("node", *args, "--name", lab.name, check=False)
        assert refused.returncode == 2, (args, refused.stdout, refused.stderr)
        assert field in refused.stderr, (args, refused.stderr)
    assert kubectl(lab, "get", "nodes", "-o", "name") == nodes_before
    assert svclab("status", "--name", lab.name, "--json").stdout == status_before


def test_a_joining_node_gets_its_daemonset_pod_and_serves(lab):
    joined = json.loads(svclab("node", "add", JOINER, "--address", "172.31.0.20",
                               "--name", lab.name, "--json").stdout)
    assert joined["address"] == "172.31.0.20"
    assert joined["podBlock"] == "192.168.3.0/24"
    public = joined["publicIP"]
    node = admin_client(lab.name).get("nodes", JOINER)
    assert node["spec"]["podCIDR"] == "192.168.3.0/24"
    assert {"type": "ExternalIP", "address": public} in node["status"]["addresses"]
    # The DaemonSet controller places its pod on the new node, as on every worker.
    labtools.wait_for("the DaemonSet's pod on the new node",
                      lambda: JOINER in pods_by_node(lab, "agent"), timeout=30)
    assert sorted(pods_by_node(lab, "agent")) == ["ip-172-31-0-11", "ip-172-31-0-12", JOINER]
    # New pods land on the new node too; they serve through its NodePort on
    # its public IP from the internet, and by ClusterIP from the old nodes.
    kubectl(lab, "scale", "deployment", "web", "--replicas=9")
    labtools.wait_for("web pods on the new node",
                      lambda: len(pods_by_node(lab, "web").get(JOINER, [])) >= 2, timeout=30)
    new_pods = set(pods_by_node(lab, "web")[JOINER])
    result = spread(lab.name, "client", None, public, node_port(lab), count=200)
    assert result.failures == {} and {e.ip for e in result.endpoints} & new_pods
    result = spread(lab.name, "ip-172-31-0-11", None, public, node_port(lab), count=100)
    assert result.failures == {}
    hosts = json.loads(svclab("status", "--name", lab.name, "--json").stdout)["hosts"]
    assert [h["addresses"] for h in hosts.values() if h["name"] == JOINER] == [["172.31.0.20"]]
    spec = yaml.safe_load(LabPaths(lab.name).spec.read_text())
    assert {"name": JOINER, "role": "worker", "address": "172.31.0.20",
            "publicIP": public, "podBlock": "192.168.3.0/24"} in spec["nodes"]


def test_removing_a_node_drains_it_and_loses_no_connection_elsewhere(lab):
    port = node_port(lab)
    cluster_ip = json.loads(kubectl(lab, "get", "svc", "web", "-o", "json"))["spec"]["clusterIP"]
    traffic: dict = {}
    # Connections to the Service while the node is drained and removed.
    worker = threading.Thread(target=lambda: traffic.update(
        result=spread(lab.name, "ip-172-31-0-10", None, cluster_ip, 80, count=1500,
                      concurrency=20)))
    worker.start()
    removed = json.loads(svclab("node", "remove", JOINER, "--name", lab.name, "--json").stdout)
    worker.join(timeout=120)
    assert sorted(p.split("/")[1].rsplit("-", 2)[0] for p in removed["evicted"]) == \
        ["web"] * len(removed["evicted"]) and removed["evicted"]
    assert [p.split("/")[1].rsplit("-", 1)[0] for p in removed["deleted"]] == ["agent"]
    assert traffic["result"].failures == {}, traffic["result"].failures
    # Its pods run elsewhere again; the node, its routes and its NAT are gone.
    labtools.wait_for("9 web pods on the old workers", lambda: sum(
        len(v) for k, v in pods_by_node(lab, "web").items() if k != JOINER) == 9, timeout=30)
    assert JOINER not in kubectl(lab, "get", "nodes")
    assert sorted(pods_by_node(lab, "agent")) == ["ip-172-31-0-11", "ip-172-31-0-12"]
    assert "192.168.3.0/24" not in lab.exec("ip-172-31-0-11", "ip", "route").stdout
    assert "172.31.0.20" not in lab.exec("igw", "iptables-save").stdout
    state = read_state(LabPaths(lab.name))
    assert not [r for r in state.hosts.values() if r.name == JOINER or r.node == JOINER]
    assert not [p for p in state.agents if p.endswith(JOINER)]
    assert spread(lab.name, "client", None, "198.51.100.11", port, count=50).failures == {}
