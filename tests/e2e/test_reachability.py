"""End to end: the default lab plus pods, probed the way a user would.

Calico-style pod networking across an AWS-style VPC: pods reach each other on
the same node and across nodes, nodes reach pods, pods reach the internet
leaving as their node's public IP, the internet reaches nodes only through
their public IPs, and never a pod directly.
"""
from __future__ import annotations

import subprocess
import sys

import pytest

from labd.control import ControlClient
from labtools import http_get, outcomes, svclab, wait_open, workload
from probes.reach import Probe

pytestmark = [pytest.mark.root, pytest.mark.e2e]

NODES = ["ip-172-31-0-10", "ip-172-31-0-11", "ip-172-31-0-12"]
PODS = {  # name -> (node, ip)
    "web-0": (NODES[0], "192.168.0.50"),
    "web-1": (NODES[1], "192.168.1.50"),
    "web-1b": (NODES[1], "192.168.1.51"),
    "web-2": (NODES[2], "192.168.2.50"),
}
CLIENT_IP = "203.0.113.100"
PUBLIC = {NODES[1]: "198.51.100.11", NODES[2]: "198.51.100.12"}


@pytest.fixture(scope="module")
def pods(lab):
    control = ControlClient(lab.name)
    for name, (node, ip) in PODS.items():
        control.add_pod(name, node, ip=ip, command=workload(name, ip, "80/TCP", "5353/UDP"))
    # Servers on the client and on a node, started as a user would (svclab exec).
    lab.spawned = []
    for host, ip, port in (("client", CLIENT_IP, "8080/TCP"),
                           (NODES[2], "172.31.0.12", "8080/TCP")):
        lab.spawned.append(subprocess.Popen(
            [sys.executable, "-m", "svclab.cli", "exec", "--name", lab.name, host, "--",
             *workload(host, ip, port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    for _node, ip in PODS.values():
        wait_open(lab.name, NODES[0], Probe(ip, 80, "tcp"))
    wait_open(lab.name, NODES[0], Probe(CLIENT_IP, 8080, "tcp"))
    wait_open(lab.name, NODES[0], Probe("172.31.0.12", 8080, "tcp"))
    yield PODS
    for proc in lab.spawned:
        proc.terminate()
        proc.wait(timeout=10)


def test_pod_reaches_pods_on_same_and_other_nodes_and_nodes(lab, pods):
    got = outcomes(lab.name, "web-1", [
        Probe("192.168.1.51", 80), Probe("192.168.2.50", 80), Probe("192.168.0.50", 80),
        Probe("192.168.2.50", 5353, "udp"), Probe("172.31.0.12", 8080),
        Probe("172.31.0.10", 0, "icmp"), Probe("192.168.2.50", 81)])
    assert got == {
        "192.168.1.51:80/tcp": "open",       # same node
        "192.168.2.50:80/tcp": "open",       # other worker
        "192.168.0.50:80/tcp": "open",       # control-plane node's pod
        "192.168.2.50:5353/udp": "open",
        "172.31.0.12:8080/tcp": "open",      # pod -> node
        "172.31.0.10/icmp": "open",
        "192.168.2.50:81/tcp": "refused",    # the packet arrived; nothing listens
    }


def test_pod_sees_the_real_source_of_another_pod(lab, pods):
    assert http_get(lab, "web-1", "http://192.168.2.50/hostname") == "web-2"
    assert http_get(lab, "web-1", "http://192.168.2.50/clientip").startswith("192.168.1.50:")


def test_node_reaches_pods_everywhere(lab, pods):
    got = outcomes(lab.name, NODES[0], [Probe(ip, 80) for _, ip in PODS.values()])
    assert set(got.values()) == {"open"}, got


def test_pod_reaches_the_internet_as_its_nodes_public_ip(lab, pods):
    seen = http_get(lab, "web-1", f"http://{CLIENT_IP}:8080/clientip")
    assert seen.startswith(PUBLIC[NODES[1]] + ":"), seen
    assert outcomes(lab.name, "web-2", [Probe(CLIENT_IP, 0, "icmp")]) == {
        f"{CLIENT_IP}/icmp": "open"}


def test_client_reaches_nodes_only_through_public_ips(lab, pods):
    got = outcomes(lab.name, "client", [
        Probe(PUBLIC[NODES[2]], 8080), Probe(PUBLIC[NODES[1]], 0, "icmp"),
        Probe("192.168.1.50", 80), Probe("192.168.2.50", 0, "icmp"),
        Probe("172.31.0.12", 8080)])
    assert got == {
        "198.51.100.12:8080/tcp": "open",
        "198.51.100.11/icmp": "open",
        "192.168.1.50:80/tcp": "dropped",    # never a pod directly
        "192.168.2.50/icmp": "dropped",
        "172.31.0.12:8080/tcp": "dropped",   # nor a private node address
    }
    # The node sees the client's own address: the igw translates only the destination.
    seen = http_get(lab, "client", f"http://{PUBLIC[NODES[2]]}:8080/clientip")
    assert seen.startswith(CLIENT_IP + ":"), seen


def test_probe_cli_reports_json_and_exit_codes(lab, pods):
    import json
    ok = svclab("probe", "reach", "--name", lab.name, "--from", "web-0",
                "--to", "192.168.2.50:80", "--json")
    result = json.loads(ok.stdout)
    assert (result["outcome"], result["responder"], result["source"]) == (
        "open", "192.168.2.50", "192.168.0.50")
    dropped = svclab("probe", "reach", "--name", lab.name, "--from", "client",
                     "--to", "192.168.0.50:80", check=False)
    assert dropped.returncode == 1 and "dropped" in dropped.stdout
    bad = svclab("probe", "reach", "--name", lab.name, "--from", "client",
                 "--to", "not-an-ip:80", check=False)
    assert bad.returncode == 2 and "--to" in bad.stderr


def test_pods_come_and_go_while_the_lab_runs(lab, pods):
    control = ControlClient(lab.name)
    control.add_pod("extra", NODES[2], namespace="team-a", ip="192.168.2.77",
                    command=workload("extra", "192.168.2.77"))
    wait_open(lab.name, "web-1", Probe("192.168.2.77", 80))
    assert http_get(lab, "extra", "http://127.0.0.1/hostname", namespace="team-a") == "extra"
    control.remove_pod("extra", namespace="team-a")
    assert outcomes(lab.name, "web-1", [Probe("192.168.2.77", 80)]) == {
        "192.168.2.77:80/tcp": "dropped"}
    status = svclab("status", "--name", lab.name).stdout
    assert "team-a/extra" not in status and "default/web-2" in status


def test_each_pod_has_its_own_resolv_conf(lab, pods):
    conf = lab.exec("web-1", "cat", "/etc/resolv.conf").stdout
    assert conf == ("search default.svc.cluster.local svc.cluster.local cluster.local\n"
                    "nameserver 10.96.0.10\n"
                    "options ndots:5\n")
    with open("/etc/resolv.conf") as host_conf:
        assert "10.96.0.10" not in host_conf.read()


def test_exec_passes_stdin_stdout_stderr_and_exit_code(lab):
    proc = lab.exec("igw", "sh", "-c", "tr a-z A-Z; echo oops >&2; exit 7",
                    input="hello\n", check=False)
    assert (proc.returncode, proc.stdout, proc.stderr) == (7, "HELLO\n", "oops\n")
    assert lab.exec(NODES[1], "ip", "-4", "-o", "addr", "show", "eth0").stdout.split()[3] \
        == "172.31.0.11/20"


def test_exec_rejects_unknown_hosts_with_usage_error(lab):
    proc = lab.exec("nosuchhost", "true", check=False)
    assert proc.returncode == 2 and "no host 'nosuchhost'" in proc.stderr
