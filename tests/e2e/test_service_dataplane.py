"""kube-proxy's data plane end to end, in both proxy modes: Services with
hand-written EndpointSlices over real pods, probed from pods, nodes and the
outside client.  What each endpoint saw as the source tells where traffic was
masqueraded.  Every test runs once per mode (the lab fixture is per mode)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from labd.control import ControlClient
from labtools import admin_client, fetch_many, outcomes, running_lab, svclab, wait_open, workload
from probes.reach import Probe
from probes.runner import probe_from
from probes.spread.probe import spread
from topo.state import LabPaths, read_state

pytestmark = [pytest.mark.root, pytest.mark.e2e]

N11, N12 = "ip-172-31-0-11", "ip-172-31-0-12"
ENDPOINTS = {"ep-a": (N11, "192.168.1.20"), "ep-b": (N12, "192.168.2.20"),
             "ep-c": (N12, "192.168.2.21")}
SOURCE_POD = ("src", N11, "192.168.1.30")
CLIENT = "203.0.113.100"


def service(name: str, port: int = 80, **spec) -> dict:
    ports = [{"port": port, "protocol": "TCP", "targetPort": 80}]
    if spec.get("type") == "NodePort":
        ports[0]["nodePort"] = spec.pop("nodePort")
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"ports": ports, **spec}}


def endpoint_slice(service_name: str, pods: list[str]) -> dict:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{service_name}-manual",
                         "labels": {"kubernetes.io/service-name": service_name}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [ENDPOINTS[p][1]], "nodeName": ENDPOINTS[p][0],
                           "conditions": {"ready": True, "serving": True,
                                          "terminating": False}} for p in pods],
            "ports": [{"name": "", "port": 80, "protocol": "TCP"}]}


@pytest.fixture(scope="module", params=["iptables", "nftables"])
def lab(request):
    with running_lab("--proxy-mode", request.param) as running:
        running.mode = request.param
        yield running


def udp_slice(pods: list[str]) -> dict:
    body = endpoint_slice("udp", pods)
    body["ports"] = [{"name": "echo", "port": 5353, "protocol": "UDP"}]
    return body


@pytest.fixture(scope="module")
def services(lab):
    control = ControlClient(lab.name)
    for name, (node, ip) in ENDPOINTS.items():
        control.add_pod(name, node, ip=ip, command=workload(name, ip, "80/TCP", "5353/UDP"))
    name, node, ip = SOURCE_POD
    control.add_pod(name, node, ip=ip, command=workload(name, ip))
    api = admin_client(lab.name)
    created = {}
    for svc, eps in (
            (service("web", type="NodePort", nodePort=30080), ["ep-a", "ep-b", "ep-c"]),
            (service("local", type="NodePort", nodePort=30081,
                     externalTrafficPolicy="Local"), ["ep-b", "ep-c"]),
            (service("empty"), []),
            (service("sticky", sessionAffinity="ClientIP",
                     sessionAffinityConfig={"clientIP": {"timeoutSeconds": 2}}),
             ["ep-a", "ep-b", "ep-c"]),
            # an external IP that the VPC routes to a node: ip-172-31-0-12's own
            (service("ext", port=8080, externalIPs=["172.31.0.12"]), ["ep-a", "ep-b", "ep-c"])):
        obj = api.create("services", svc, namespace="default")
        created[svc["metadata"]["name"]] = obj["spec"]["clusterIP"]
        if eps:
            api.create("endpointslices", endpoint_slice(svc["metadata"]["name"], eps),
                       namespace="default")
    udp = api.create("services", {"apiVersion": "v1", "kind": "Service",
                                  "metadata": {"name": "udp"},
                                  "spec": {"ports": [{"name": "echo", "port": 53,
                                                      "protocol": "UDP", "targetPort": 5353}]}},
                     namespace="default")
    created["udp"] = udp["spec"]["clusterIP"]
    api.create("endpointslices", udp_slice(["ep-a", "ep-b"]), namespace="default")
    for _, ip in ENDPOINTS.values():
        wait_open(lab.name, N11, Probe(ip, 80))
    wait_open(lab.name, "src", Probe(created["web"], 80))
    return created


def hostnames(bodies: list[str]) -> set[str]:
    return set(bodies)


def test_cluster_ip_from_a_pod_spreads_and_keeps_the_pod_source(lab, services):
    vip = services["web"]
    names = fetch_many(lab, "src", f"http://{vip}/hostname", 30)
    assert set(names) == {"ep-a", "ep-b", "ep-c"}, names
    seen = fetch_many(lab, "src", f"http://{vip}/clientip", 5)
    assert {s.rsplit(":", 1)[0] for s in seen} == {"192.168.1.30"}   # not masqueraded


def test_cluster_ip_from_a_node_is_masqueraded_to_the_node(lab, services):
    seen = fetch_many(lab, "ip-172-31-0-10", f"http://{services['web']}/clientip", 6)
    assert {s.rsplit(":", 1)[0] for s in seen} == {"172.31.0.10"}, seen


def test_nodeport_on_a_public_ip_is_masqueraded_under_cluster_policy(lab, services):
    seen = fetch_many(lab, "client", "http://198.51.100.11:30080/clientip", 6)
    assert {s.rsplit(":", 1)[0] for s in seen} == {"172.31.0.11"}, seen


def test_local_policy_keeps_the_client_ip_and_drops_where_no_local_endpoint(lab, services):
    seen = fetch_many(lab, "client", "http://198.51.100.12:30081/clientip", 6)
    assert {s.rsplit(":", 1)[0] for s in seen} == {CLIENT}, seen
    got = outcomes(lab.name, "client", [Probe("198.51.100.11", 30081),
                                        Probe("198.51.100.12", 30081)])
    assert got == {"198.51.100.11:30081/tcp": "dropped", "198.51.100.12:30081/tcp": "open"}


def test_external_ip_is_an_external_entry_masqueraded_under_cluster_policy(lab, services):
    """kube-proxy serves an externalIP like an LB IP: through KUBE-EXT, where
    Cluster policy masquerades every packet, even from a pod."""
    seen = fetch_many(lab, "src", "http://172.31.0.12:8080/clientip", 9)
    sources = {s.rsplit(":", 1)[0] for s in seen}
    assert sources <= {"172.31.0.11", "172.31.0.12"} and sources, seen
    # From the internet: the igw maps the node's public IP to 172.31.0.12, which
    # is the external IP, so kube-proxy on that node takes it from there.
    names = fetch_many(lab, "client", "http://198.51.100.12:8080/hostname", 6)
    assert set(names) <= {"ep-a", "ep-b", "ep-c"}, names


def test_service_without_endpoints_rejects(lab, services):
    results = {r.probe.label(): r for r in __import__("probes.runner").runner.probe_from(
        lab.name, "src", [Probe(services["empty"], 80)], timeout=1.0)}
    result = results[f"{services['empty']}:80/tcp"]
    assert (result.outcome, result.icmp_type, result.icmp_code) == ("rejected", 3, 3)


def test_session_affinity_sticks_until_the_timeout(lab, services):
    url = f"http://{services['sticky']}/hostname"
    first = fetch_many(lab, "src", url, 20)
    assert len(set(first)) == 1, first
    seen = set(first)
    for _ in range(8):          # after 2 s idle the choice is random again
        time.sleep(2.5)
        seen |= set(fetch_many(lab, "src", url, 1))
        if len(seen) > 1:
            break
    assert len(seen) > 1, "affinity never expired"


HOLD = """
import socket, sys
s = socket.create_connection((sys.argv[1], 80), timeout=5)
print(s.makefile().readline().strip(), flush=True)
sys.stdin.readline()
s.sendall(b"still here\\n")
print(s.recv(100).decode().strip(), flush=True)
"""


def test_killed_agent_leaves_rules_and_connections_and_comes_back(lab, services):
    vip = services["web"]
    held = subprocess.Popen([sys.executable, "-m", "svclab.cli", "exec", "--name", lab.name,
                             "src", "--", sys.executable, "-c", HOLD, vip],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        banner = held.stdout.readline()
        assert banner.startswith("svclab ep-"), banner
        state = read_state(LabPaths(lab.name))
        agent = state.agents[f"proxy/{N11}"]
        os.kill(agent["pid"], signal.SIGKILL)
        # Rules stay while no agent runs: new connections still work.
        assert set(fetch_many(lab, "src", f"http://{vip}/hostname", 9)) <= {
            "ep-a", "ep-b", "ep-c"}
        deadline = time.monotonic() + 20
        while read_state(LabPaths(lab.name)).agents[f"proxy/{N11}"]["restarts"] < 1:
            assert time.monotonic() < deadline, "agent was not restarted"
            time.sleep(0.1)
        status = svclab("status", "--name", lab.name).stdout
        assert f"agent proxy/{N11}: pid" in status and "restarts 1" in status
        time.sleep(1.0)      # the restarted agent's first sync
        held.stdin.write("go\n")
        held.stdin.flush()
        assert held.stdout.readline().strip() == "still here"
        assert held.wait(timeout=10) == 0
    finally:
        if held.poll() is None:
            held.kill()


def test_three_thousand_connections_spread_uniformly(lab, services):
    result = spread(lab.name, "src", None, services["web"], 80, "tcp", 3000, 3.0, 100)
    assert result.ok == 3000
    assert {e.pod for e in result.endpoints} == {"ep-a", "ep-b", "ep-c"}
    assert result.p_value > 0.001, result.describe()


UDP_FLOW = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
s.connect((sys.argv[1], 53))
for line in sys.stdin:
    s.send(b"ping")
    try:
        print(s.recv(200).decode().split()[1], flush=True)
    except socket.timeout:
        print("timeout", flush=True)
"""


def test_udp_flow_moves_on_when_its_endpoint_goes_away(lab, services):
    """One UDP 5-tuple keeps its conntrack entry; when its endpoint is removed
    the agent flushes the entry, so the next datagram reaches a live one."""
    api = admin_client(lab.name)
    flow = subprocess.Popen([sys.executable, "-m", "svclab.cli", "exec", "--name", lab.name,
                             "src", "--", sys.executable, "-c", UDP_FLOW, services["udp"]],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        flow.stdin.write("1\n")
        flow.stdin.flush()
        first = flow.stdout.readline().strip()
        assert first in ("ep-a", "ep-b")
        survivor = "ep-b" if first == "ep-a" else "ep-a"
        current = api.get("endpointslices", "udp-manual", "default")
        current["endpoints"] = udp_slice([survivor])["endpoints"]
        api.update("endpointslices", current)
        time.sleep(1.0)                        # the agents' sync and conntrack flush
        flow.stdin.write("2\n")
        flow.stdin.flush()
        assert flow.stdout.readline().strip() == survivor
    finally:
        flow.stdin.close()
        flow.wait(timeout=10)


def test_each_mode_programs_only_its_own_tables(lab, services):
    iptables = lab.exec(N11, "iptables-save").stdout
    tables = lab.exec(N11, "nft", "list", "tables").stdout.split("\n")
    if lab.mode == "iptables":
        assert ":KUBE-SERVICES" in iptables
        assert "table ip kube-proxy" not in tables
    else:
        assert "KUBE-" not in iptables
        assert "table ip kube-proxy" in tables


def test_wrong_port_on_a_live_cluster_ip_differs_by_mode_on_purpose(lab, services):
    """nftables mode REJECTs a port the ClusterIP does not serve; iptables mode
    has no rule for it, so the packet is routed on (and the igw refuses it)."""
    result = probe_from(lab.name, "src", [Probe(services["web"], 81)], timeout=1.0)[0]
    if lab.mode == "nftables":
        assert (result.outcome, result.icmp_code) == ("rejected", 3)
    else:
        assert (result.outcome, result.responder) == ("rejected", "172.31.0.1")
        assert result.icmp_code == 0                 # net unreachable, from the igw
