"""`trace` end to end, in both proxy modes: the seed's NodePort scenario seen
hop by hop from the internet, a pod -> ClusterIP flow, and a flow an
externalTrafficPolicy Local NodePort drops; each checked against the pcaps
the trace kept (read again here with scapy)."""
from __future__ import annotations

import json
import time

import pytest
from scapy.layers.inet import IP, TCP
from scapy.utils import rdpcap

from labtools import admin_client, running_lab, svclab
from probes.trace.probe import trace

pytestmark = [pytest.mark.root, pytest.mark.e2e]

N11, N12 = "ip-172-31-0-11", "ip-172-31-0-12"
N11_IP, N11_PUBLIC, CLIENT = "172.31.0.11", "198.51.100.11", "203.0.113.100"


def pinned(name: str, node: str) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"nodeSelector": {"kubernetes.io/hostname": node},
                                           "containers": [{"name": "app", "image": "nginx"}]}}}}


def node_port(name: str, app: str, **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"type": "NodePort", "selector": {"app": app},
                     "ports": [{"port": 80, "targetPort": 80, "protocol": "TCP"}], **spec}}


@pytest.fixture(scope="module", params=["iptables", "nftables"])
def lab(request):
    with running_lab("--proxy-mode", request.param, prefix="tr") as running:
        running.mode = request.param
        manifests = [pinned("hwk", N12), pinned("caller", N11), node_port("web-hwk", "hwk"),
                     node_port("web-local", "hwk", externalTrafficPolicy="Local")]
        svclab("kubectl", "--name", running.name, "apply", "-f", "-",
               input="\n---\n".join(json.dumps(m) for m in manifests))
        api = admin_client(running.name)
        deadline = time.monotonic() + 30
        while True:
            pods, _ = api.list("pods", "default")
            running_pods = {p["metadata"]["labels"]["app"]: p for p in pods
                            if p.get("status", {}).get("podIP")
                            and p["status"].get("phase") == "Running"}
            slices, _ = api.list("endpointslices", "default",
                                 label_selector="kubernetes.io/service-name=web-hwk")
            ready = any(e.get("conditions", {}).get("ready")
                        for s in slices for e in s.get("endpoints") or [])
            if {"hwk", "caller"} <= set(running_pods) and ready:
                break
            assert time.monotonic() < deadline, "pods did not start"
            time.sleep(0.2)
        running.pod = running_pods["hwk"]["metadata"]["name"]
        running.pod_ip = running_pods["hwk"]["status"]["podIP"]
        running.caller = running_pods["caller"]["metadata"]["name"]
        running.caller_ip = running_pods["caller"]["status"]["podIP"]
        services = {s: api.get("services", s, "default") for s in ("web-hwk", "web-local")}
        running.node_port = services["web-hwk"]["spec"]["ports"][0]["nodePort"]
        running.local_port = services["web-local"]["spec"]["ports"][0]["nodePort"]
        running.cluster_ip = services["web-hwk"]["spec"]["clusterIP"]
        yield running


def tcp_packets(path):
    return [(p[IP].src, p[TCP].sport, p[IP].dst, p[TCP].dport, str(p[TCP].flags))
            for p in rdpcap(str(path)) if TCP in p]


def test_seed_scenario_client_to_public_ip_node_port(lab, tmp_path):
    result = trace(lab.name, "client", None, f"{N11_PUBLIC}:{lab.node_port}",
                   keep_pcaps_dir=tmp_path)
    print("\n" + result.describe())
    assert result.outcome == "open" and result.answer["pod"] == lab.pod
    assert result.answer["client"].startswith(f"{N11_IP}:")      # SNAT to the node IP
    (leg,) = result.legs
    steps = result.steps(leg)
    assert steps[0].startswith(f"1) client -> {N11_PUBLIC}:{lab.node_port}")
    igw = next(s for s in steps if ") igw:" in s and "reply" not in s)
    assert f"DNAT to {N11_IP}:{lab.node_port}" in igw and "IGW-PREROUTING" in igw
    node = next(s for s in steps if f") {N11}:" in s and "reply" not in s)
    assert f"DNAT to {lab.pod_ip}:80" in node and f"masquerade (SNAT) to {N11_IP}:" in node
    chains = ("KUBE-NODEPORTS", "KUBE-EXT-", "KUBE-SVC-", "KUBE-SEP-") \
        if lab.mode == "iptables" else ("services", "external-", "service-", "endpoint-")
    assert all(c in node for c in chains), node
    decision = result.decision(0, N11)
    assert decision.dnat == f"{lab.pod_ip}:80" and decision.masquerade and \
        decision.matches_capture
    assert f"src={CLIENT} dst={N11_IP}" in decision.conntrack
    assert f"src={lab.pod_ip} dst={N11_IP} sport=80" in decision.conntrack
    # The hops in capture order, request then reply.
    hops = [(s.host, s.direction, str(s.src.addr), str(s.dst)) for s in leg.request]
    assert hops[0] == ("client", "out", CLIENT, f"{N11_PUBLIC}:{lab.node_port}")
    assert ("igw", "out", CLIENT, f"{N11_IP}:{lab.node_port}") in hops
    assert hops[-1] == (lab.pod, "in", N11_IP, f"{lab.pod_ip}:80")
    assert leg.reply[0].host == lab.pod and str(leg.reply[0].src) == f"{lab.pod_ip}:80"
    assert leg.reply[-1].host == "client" and \
        str(leg.reply[-1].src) == f"{N11_PUBLIC}:{lab.node_port}"
    # ... and the pcaps say the same.
    client_sport = leg.request[0].src.port
    assert (CLIENT, client_sport, N11_PUBLIC, lab.node_port, "S") in \
        tcp_packets(tmp_path / "client.pcap")
    node_syns = [p for p in tcp_packets(tmp_path / f"{N11}.pcap") if p[4] == "S"]
    assert (CLIENT, client_sport, N11_IP, lab.node_port, "S") in node_syns
    assert any(p[0] == N11_IP and p[2:4] == (lab.pod_ip, 80) for p in node_syns)
    pod_syns = [p for p in tcp_packets(tmp_path / f"{lab.pod}.pcap") if p[4] == "S"]
    assert pod_syns and all(p[0] == N11_IP and p[2:4] == (lab.pod_ip, 80) for p in pod_syns)
    assert (tmp_path / "capture.json").exists()
    document = json.loads(json.dumps(result.to_json()))
    assert document["outcome"] == "open" and document["steps"] == steps


def test_pod_to_cluster_ip_is_dnated_on_the_source_node_without_snat(lab):
    result = trace(lab.name, lab.caller, "default", "svc/web-hwk")
    print("\n" + result.describe())
    assert result.outcome == "open" and result.answer["pod"] == lab.pod
    assert result.answer["client"].startswith(f"{lab.caller_ip}:")   # no SNAT
    (leg,) = result.legs
    first = leg.request[0]
    assert (first.host, str(first.dst)) == (lab.caller, f"{lab.cluster_ip}:80")
    decision = result.decision(0, N11)
    assert decision is not None and decision.dnat == f"{lab.pod_ip}:80"
    assert decision.masquerade is False and decision.matches_capture
    leaving = next(s for s in leg.request if s.host == N11 and s.direction == "out")
    assert (str(leaving.src.addr), str(leaving.dst)) == (lab.caller_ip, f"{lab.pod_ip}:80")
    assert leg.request[-1].host == lab.pod
    assert not any(s.changes for s in leg.request if s.host not in (N11,))
    step = next(s for s in result.steps(leg) if f") {N11}:" in s and "reply" not in s)
    assert f"DNAT to {lab.pod_ip}:80" in step and "SNAT" not in step.split("[")[0]


def test_local_policy_node_port_without_local_endpoint_is_dropped_and_explained(lab):
    result = trace(lab.name, "client", None, f"{N11_PUBLIC}:{lab.local_port}")
    print("\n" + result.describe())
    assert result.outcome == "dropped" and result.answer is None
    (leg,) = result.legs
    assert leg.reply == ()
    assert leg.request[-1].host == N11 and leg.request[-1].direction == "in"
    decision = result.decision(0, N11)
    assert decision.verdict == "DROP" and decision.matches_capture
