"""LoadBalancer Services behind the lab's AWS-style ELB, end to end: the
hostname in `kubectl get svc`, public DNS, spread over nodes then endpoints,
the source the pod sees, health checks taking nodes out and back, source
ranges, and teardown on type change and delete."""
from __future__ import annotations

import collections
import functools
import json
import os
import signal
import time

import pytest

import labtools
from labd.control import ControlClient
from labd.lb_status import lb_status
from labtools import admin_client, fetch_many, outcomes, running_lab, svclab, workload
from probes.reach import Probe
from probes.spread.probe import spread
from probes.stats import chi_square
from topo.netns import run_in
from topo.state import LabPaths, read_state

wait_for = functools.partial(labtools.wait_for, timeout=15.0, every=0.1)

pytestmark = [pytest.mark.root, pytest.mark.e2e]

N11, N12 = "ip-172-31-0-11", "ip-172-31-0-12"
PODS = {"web-a": (N11, "192.168.1.20"), "web-b": (N12, "192.168.2.20"),
        "web-c": (N12, "192.168.2.21")}
CLIENT = "203.0.113.100"
NLB = {"service.beta.kubernetes.io/aws-load-balancer-type": "nlb"}
ALPHA = 0.001


@pytest.fixture(scope="module")
def lab():
    """A lab with three web pods (the daemon runs the ELB and the cloud controller)."""
    with running_lab(prefix="elb") as running:
        control = ControlClient(running.name)
        for pod, (node, ip) in PODS.items():
            control.add_pod(pod, node, ip=ip, command=workload(pod, ip, "80/TCP", "53/UDP"))
        yield running


# --- helpers -------------------------------------------------------------------

def create_service(lab, name, pods, annotations=None, protocol="TCP", port=80, **spec):
    api = admin_client(lab.name)
    api.create("services", {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "annotations": annotations or {}},
        "spec": {"type": "LoadBalancer", "selector": {"app": name},
                 "ports": [{"port": port, "targetPort": port, "protocol": protocol}], **spec}},
        namespace="default")
    set_endpoints(lab, name, pods, create=True, protocol=protocol, port=port)


def set_endpoints(lab, name, pods, create=False, protocol="TCP", port=80):
    api = admin_client(lab.name)
    body = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{name}-manual",
                         "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [PODS[p][1]], "nodeName": PODS[p][0],
                           "conditions": {"ready": True, "serving": True,
                                          "terminating": False}} for p in pods],
            "ports": [{"name": "", "port": port, "protocol": protocol}]}
    if create:
        api.create("endpointslices", body, namespace="default")
    else:
        current = api.get("endpointslices", f"{name}-manual", "default")
        body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        body["metadata"]["namespace"] = "default"
        api.update("endpointslices", body)


def lb_of(lab, name):
    rows = [r for r in lb_status(lab.name) if r["key"] == f"default/{name}"]
    return rows[0] if rows else None


def states(lab, name):
    lb = lb_of(lab, name)
    return {t["node"]: t["state"] for t in lb["targets"]} if lb else {}


def wait_states(lab, name, wanted, timeout=15.0):
    return wait_for(f"{name} targets {wanted}", lambda: states(lab, name) == wanted,
                    timeout=timeout)


def hostname_of(lab, name):
    """The hostname as kubectl shows it (EXTERNAL-IP; -o jsonpath for the full name)."""
    full = svclab("kubectl", "--name", lab.name, "get", "svc", name, "-o",
                  "jsonpath={.status.loadBalancer.ingress[0].hostname}").stdout.strip()
    if not full:
        return None
    column = svclab("kubectl", "--name", lab.name, "get", "svc", name).stdout.splitlines()[1]
    shown = column.split()[3]
    # the API server's table cuts names over 16 characters ("a1b2c3d4e5f6a...")
    assert full == shown or (shown.endswith("...") and full.startswith(shown[:-3])), column
    return full


def source_node_counts(result):
    return collections.Counter(r.source_seen for r in result.records if r.outcome == "ok")


def transition_to(lab, name, node, state, after):
    for target in lb_of(lab, name)["targets"]:
        if target["node"] == node:
            hits = [t["at"] for t in target["transitions"] if t["state"] == state
                    and t["at"] > after]
            return hits[0] if hits else None
    return None


def node_agent_pid(lab, node):
    return read_state(LabPaths(lab.name)).agents[f"proxy/{node}"]["pid"]


# --- tests -----------------------------------------------------------------------

def test_classic_elb_hostname_dns_spread_and_node_source(lab):
    create_service(lab, "web", ["web-a", "web-b", "web-c"])
    hostname = wait_for("hostname in kubectl get svc", lambda: hostname_of(lab, "web"))
    assert hostname.endswith(".us-east-1.elb.amazonaws.com")
    resolved = lab.exec("client", "getent", "hosts", hostname).stdout.split()
    lb = lb_of(lab, "web")
    assert resolved == [lb["vip"], hostname] and lb["flavour"] == "classic"
    wait_states(lab, "web", {N11: "healthy", N12: "healthy"})

    result = spread(lab.name, "client", None, lb["vip"], 80, count=3000, concurrency=100)
    assert result.failures == {} and result.ok == 3000
    by_node = source_node_counts(result)                # Cluster: the node masquerades
    assert set(by_node) == {"172.31.0.11", "172.31.0.12"}
    by_endpoint = {e.pod: e.count for e in result.endpoints}
    assert set(by_endpoint) == {"web-a", "web-b", "web-c"}
    node_fit, endpoint_fit = chi_square(dict(by_node)), chi_square(by_endpoint)
    print(f"\nclassic/Cluster 3000 conns: by node {dict(by_node)} p={node_fit.p_value:.3f}; "
          f"by endpoint {by_endpoint} p={endpoint_fit.p_value:.3f}")
    assert node_fit.p_value > ALPHA and endpoint_fit.p_value > ALPHA
    wait_for("the ELB's own count of 3000 connections", lambda: sum(
        t["connections"] for t in lb_of(lab, "web")["targets"]) >= 3000, timeout=5)


def test_classic_elb_from_a_pod_goes_out_to_the_elb_and_back(lab):
    """The pod resolves the ELB's name through cluster DNS (forwarded to the VPC
    resolver) and its traffic really leaves for the ELB: hostname-only ingress
    gets no kube-proxy short-circuit."""
    lb = wait_for("web LB", lambda: lb_of(lab, "web"))
    hostname = hostname_of(lab, "web")
    assert lab.exec("web-a", "getent", "hosts", hostname).stdout.split()[0] == lb["vip"]
    before = sum(t["connections"] for t in lb["targets"])
    names = fetch_many(lab, "web-a", f"http://{hostname}/hostname", 10)
    assert set(names) <= {"web-a", "web-b", "web-c"} and len(names) == 10
    after = wait_for("ELB counters", lambda: (lambda n: n if n >= before + 10 else None)(
        sum(t["connections"] for t in lb_of(lab, "web")["targets"])), timeout=5)
    assert after >= before + 10                          # really went through the ELB


def test_classic_elb_drops_a_node_whose_link_is_down_and_restores_it(lab):
    # Pods on ip-172-31-0-12 only, so the other node's link can go down
    # without taking endpoints with it (under Cluster policy any node forwards
    # to any endpoint).
    set_endpoints(lab, "web", ["web-b", "web-c"])
    hc = lb_of(lab, "web")["healthCheck"]
    vpc = read_state(LabPaths(lab.name)).hosts["vpc"]
    n11 = read_state(LabPaths(lab.name)).find_host(N11)
    # The node about to be cut off must have the new endpoints first: a watch
    # event still in flight when the link goes down arrives only when TCP's
    # backed-off retransmission gets through, seconds after the link is back,
    # and until then the node would send a share of connections to web-a.
    wait_for(f"{N11}'s rules without web-a", lambda: PODS["web-a"][1] not in run_in(
        n11.pid, ["iptables-save", "-t", "nat"]))
    peer = json.loads(run_in(n11.pid, ["ip", "-j", "link", "show", "eth0"]))[0]["link_index"]
    port = next(l["ifname"] for l in json.loads(run_in(vpc.pid, ["ip", "-j", "link"]))
                if l["ifindex"] == peer)
    down_at = time.time()
    run_in(vpc.pid, ["ip", "link", "set", "dev", port, "down"])
    try:
        wait_states(lab, "web", {N11: "unhealthy", N12: "healthy"}, timeout=30)
        took = transition_to(lab, "web", N11, "unhealthy", down_at) - down_at
        print(f"\nlink down -> ELB took {N11} out after {took:.2f} s "
              f"(interval x unhealthy threshold = {hc['detectionTime']:g} s)")
        assert took <= hc["detectionTime"] + hc["interval"] + hc["timeout"]
        result = spread(lab.name, "client", None, lb_of(lab, "web")["vip"], 80, count=300)
        assert result.failures == {} and set(source_node_counts(result)) == {"172.31.0.12"}
    finally:
        run_in(vpc.pid, ["ip", "link", "set", "dev", port, "up"])
    wait_states(lab, "web", {N11: "healthy", N12: "healthy"}, timeout=30)
    result = spread(lab.name, "client", None, lb_of(lab, "web")["vip"], 80, count=300)
    assert result.failures == {}
    assert set(source_node_counts(result)) == {"172.31.0.11", "172.31.0.12"}


def test_nlb_local_keeps_the_client_ip_and_follows_the_nodes_health(lab):
    create_service(lab, "nlb", ["web-a", "web-b", "web-c"], NLB,
                   externalTrafficPolicy="Local")
    hostname = wait_for("nlb hostname", lambda: hostname_of(lab, "nlb"))
    assert hostname.endswith(".elb.us-east-1.amazonaws.com")
    wait_states(lab, "nlb", {N11: "healthy", N12: "healthy"})
    lb = lb_of(lab, "nlb")
    assert lb["healthCheck"]["target"].startswith("HTTP:") and \
        lb["healthCheck"]["target"].endswith("/healthz")
    result = spread(lab.name, "client", None, lb["vip"], 80, count=600)
    assert result.failures == {}
    assert set(source_node_counts(result)) == {CLIENT}     # client IP preserved end to end
    assert {e.node for e in result.endpoints} == {N11, N12}

    # the node's proxy agent stops answering /healthz -> the ELB takes it out
    pid = node_agent_pid(lab, N11)
    stopped_at = time.time()
    os.kill(pid, signal.SIGSTOP)
    try:
        wait_states(lab, "nlb", {N11: "unhealthy", N12: "healthy"}, timeout=30)
        took = transition_to(lab, "nlb", N11, "unhealthy", stopped_at) - stopped_at
        hc = lb["healthCheck"]
        print(f"\nagent stopped -> NLB took {N11} out after {took:.2f} s "
              f"(interval x unhealthy threshold = {hc['detectionTime']:g} s)")
        assert took <= hc["detectionTime"] + hc["interval"] + hc["timeout"]
        result = spread(lab.name, "client", None, lb["vip"], 80, count=300)
        assert result.failures == {} and {e.node for e in result.endpoints} == {N12}
        events = wait_for("a TargetUnhealthy event", lambda: [
            e for e in admin_client(lab.name).list("events", "default")[0]
            if e["reason"] == "TargetUnhealthy" and e["involvedObject"]["name"] == "nlb"])
        assert N11 in events[0]["message"] and events[0]["type"] == "Warning"
    finally:
        os.kill(pid, signal.SIGCONT)
    wait_states(lab, "nlb", {N11: "healthy", N12: "healthy"})
    result = spread(lab.name, "client", None, lb["vip"], 80, count=300)
    assert result.failures == {} and {e.node for e in result.endpoints} == {N11, N12}

    # pods on one node only: the other node answers 503 and gets nothing
    set_endpoints(lab, "nlb", ["web-b", "web-c"])
    wait_states(lab, "nlb", {N11: "unhealthy", N12: "healthy"})
    target = next(t for t in lb_of(lab, "nlb")["targets"] if t["node"] == N11)
    assert target["lastResult"] == "http-503" and not target["inService"]
    result = spread(lab.name, "client", None, lb["vip"], 80, count=300)
    assert result.failures == {} and {e.node for e in result.endpoints} == {N12}
    assert set(source_node_counts(result)) == {CLIENT}


def test_nlb_udp_listener_round_trips_through_the_elb(lab):
    create_service(lab, "dns", ["web-a", "web-b", "web-c"], NLB, protocol="UDP", port=53)
    wait_for("dns hostname", lambda: hostname_of(lab, "dns"))
    lb = lb_of(lab, "dns")
    assert lb["listeners"][0]["protocol"] == "UDP"
    assert lb["healthCheck"]["target"] == "HTTP:10256/healthz"    # kube-proxy's own healthz
    wait_states(lab, "dns", {N11: "healthy", N12: "healthy"})
    result = spread(lab.name, "client", None, lb["vip"], 53, proto="udp", count=300)
    assert result.failures == {} and {e.pod for e in result.endpoints} == {
        "web-a", "web-b", "web-c"}
    # Cluster policy: the node masquerades; the reply still leaves through the ELB
    assert set(source_node_counts(result)) <= {"172.31.0.11", "172.31.0.12"}
    admin_client(lab.name).delete("services", "dns", "default")
    wait_for("dns LB gone", lambda: lb_of(lab, "dns") is None)


def test_source_ranges_type_change_and_delete_leave_nothing_behind(lab):
    elb = read_state(LabPaths(lab.name)).hosts["elb"]
    create_service(lab, "ranged", ["web-a", "web-b", "web-c"],
                   loadBalancerSourceRanges=["198.51.100.0/24"])
    hostname = wait_for("ranged hostname", lambda: hostname_of(lab, "ranged"))
    wait_states(lab, "ranged", {N11: "healthy", N12: "healthy"})
    vip = lb_of(lab, "ranged")["vip"]
    # the client is outside the ranges; a pod leaves through the igw as its
    # node's public IP (198.51.100.x), which is inside
    assert outcomes(lab.name, "client", [Probe(vip, 80)]) == {f"{vip}:80/tcp": "dropped"}
    assert outcomes(lab.name, "web-b", [Probe(vip, 80)]) == {f"{vip}:80/tcp": "open"}

    api = admin_client(lab.name)
    svc = api.get("services", "ranged", "default")
    svc["spec"]["type"] = "ClusterIP"
    svc["spec"].pop("loadBalancerSourceRanges")
    svc["spec"].pop("externalTrafficPolicy", None)
    for port in svc["spec"]["ports"]:
        port.pop("nodePort", None)
    api.update("services", svc)
    wait_for("ranged LB gone", lambda: lb_of(lab, "ranged") is None)
    table = svclab("kubectl", "--name", lab.name, "get", "svc", "ranged").stdout
    assert table.splitlines()[1].split()[3] == "<none>" and hostname[:13] not in table
    assert lab.exec("client", "getent", "hosts", hostname, check=False).returncode == 2
    assert vip not in run_in(elb.pid, ["ip", "-4", "addr", "show", "dev", "eth1"])

    for name in ("web", "nlb", "ranged"):
        api.delete("services", name, "default")
    wait_for("no load balancers", lambda: lb_status(lab.name) == [])
    addresses = run_in(elb.pid, ["ip", "-4", "addr", "show", "dev", "eth1"])
    assert "eth1:vip" not in addresses
    rules = run_in(elb.pid, ["iptables-save"])
    assert "ELB-L-" not in rules and "ELB-FW-" not in rules and "-A ELB-" not in rules
    dns = json.loads(LabPaths(lab.name).outside_dns.read_text())
    assert not any(name.endswith(".amazonaws.com") and "elb" in name for name in dns)
