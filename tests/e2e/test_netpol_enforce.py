"""NetworkPolicy enforced on real connections, in both proxy modes.

One lab per mode, with pods created through `svclab kubectl` in namespace
`shop`: `web` (app=web, 80/TCP) on ip-172-31-0-11, and clients `a` on
ip-172-31-0-12, `b` on ip-172-31-0-11 (web's node) and `c` on
ip-172-31-0-10.  The tests run in order, each building on the policies the
previous one left: no policy (all open); default-deny ingress (new
connections dropped, not refused; web's own node still gets through); an
allow policy for chosen labels (just those sources open again); an update
of that policy while connections are held open (established connections
survive, new ones follow the new policy); deleting the policies (all open).
"""
from __future__ import annotations

import functools
import json
import subprocess
import sys

import pytest

import labtools
from labtools import admin_client, outcomes, running_lab, svclab
from probes.reach import Probe

pytestmark = [pytest.mark.root, pytest.mark.e2e]
wait_for = functools.partial(labtools.wait_for, timeout=20.0, every=0.2)

N10, N11, N12 = "ip-172-31-0-10", "ip-172-31-0-11", "ip-172-31-0-12"
PODS = {"web": N11, "a": N12, "b": N11, "c": N10}
NS = "shop"

# Held inside a client pod: one TCP connection to the workload server (banner,
# then echo); every line read from stdin sends a ping on that same connection.
HOLD = """
import socket, sys
sock = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
print("banner " + sock.recv(200).decode().strip(), flush=True)
for line in sys.stdin:
    try:
        sock.sendall(b"ping\\n")
        print("echo " + sock.recv(200).decode().strip(), flush=True)
    except OSError as err:
        print("error " + type(err).__name__, flush=True)
"""


def pod(name: str, node: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NS, "labels": {"app": name}},
            "spec": {"nodeSelector": {"kubernetes.io/hostname": node},
                     "tolerations": [{"key": "node-role.kubernetes.io/control-plane",
                                      "operator": "Exists", "effect": "NoSchedule"}],
                     "containers": [{"name": "app", "image": "svclab/workload", "ports": [
                         {"containerPort": 80, "protocol": "TCP"}]}]}}


def ingress_policy(name: str, allow: list[str] | None = None) -> dict:
    spec: dict = {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress"]}
    if allow is not None:
        spec["ingress"] = [{"from": [{"podSelector": {"matchExpressions": [
            {"key": "app", "operator": "In", "values": allow}]}}],
            "ports": [{"protocol": "TCP", "port": 80}]}]
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": NS}, "spec": spec}


def kubectl_apply(lab, *objects: dict) -> None:
    svclab("kubectl", "--name", lab.name, "apply", "-f", "-",
           input="\n---\n".join(json.dumps(o) for o in objects))


@pytest.fixture(scope="module", params=["iptables", "nftables"])
def lab(request):
    with running_lab("--proxy-mode", request.param, prefix="np") as running:
        kubectl_apply(running, {"apiVersion": "v1", "kind": "Namespace",
                                "metadata": {"name": NS}},
                      *(pod(name, node) for name, node in PODS.items()))
        api = admin_client(running.name)

        def addresses():
            items, _ = api.list("pods", NS)
            ips = {p["metadata"]["name"]: p["status"].get("podIP") for p in items
                   if p["status"].get("phase") == "Running"}
            return ips if len(ips) == len(PODS) and all(ips.values()) else None
        running.ip = wait_for("pods running with IPs", addresses, timeout=60.0)
        web = Probe(running.ip["web"], 80)
        wait_for("web answering", lambda: reach(running, [N12], web)[N12] == "open")
        yield running


def reach(lab, sources: list[str], probe: Probe) -> dict[str, str]:
    """Outcome of one new connection from each source (a client pod or a node)."""
    return {s: next(iter(outcomes(lab.name, s, [probe],
                                  namespace=None if s.startswith("ip-") else NS).values()))
            for s in sources}


def web(lab) -> Probe:
    return Probe(lab.ip["web"], 80)


def settled(lab, expected: dict[str, str]) -> dict[str, str]:
    """Wait until new connections from every source have the expected outcome."""
    seen = {}

    def check():
        seen.update(reach(lab, list(expected), web(lab)))
        return seen == expected
    wait_for(f"outcomes {expected} (last seen {seen})", check)
    return seen


def test_without_policy_every_pod_reaches_web(lab):
    assert reach(lab, ["a", "b", "c", N11], web(lab)) == {
        "a": "open", "b": "open", "c": "open", N11: "open"}


def test_default_deny_drops_new_connections_except_from_the_pods_node(lab):
    kubectl_apply(lab, ingress_policy("default-deny"))
    settled(lab, {"a": "dropped", "b": "dropped"})
    assert reach(lab, ["c", N11], web(lab)) == {"c": "dropped", N11: "open"}


def test_an_allow_policy_opens_just_the_labelled_sources(lab):
    kubectl_apply(lab, ingress_policy("allow-clients", ["a", "c"]))
    settled(lab, {"a": "open", "c": "open"})
    assert reach(lab, ["b"], web(lab)) == {"b": "dropped"}


def test_a_policy_update_keeps_established_connections(lab):
    held = {name: subprocess.Popen(
        [sys.executable, "-m", "svclab.cli", "exec", "--name", lab.name, "-n", NS, name, "--",
         sys.executable, "-c", HOLD, lab.ip["web"], "80"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name in ("a", "c")}
    try:
        for name, proc in held.items():
            assert proc.stdout.readline().startswith("banner svclab web"), name
        kubectl_apply(lab, ingress_policy("allow-clients", ["b", "c"]))   # a out, b in
        settled(lab, {"a": "dropped", "b": "open", "c": "open"})
        for name, proc in held.items():      # a's and c's connections still carry data
            proc.stdin.write("ping\n")
            proc.stdin.flush()
            assert proc.stdout.readline().strip() == "echo ping", name
    finally:
        for proc in held.values():
            proc.stdin.close()
            proc.wait(timeout=10)


def test_deleting_the_policies_restores_access(lab):
    svclab("kubectl", "--name", lab.name, "-n", NS, "delete", "networkpolicy",
           "default-deny", "allow-clients")
    settled(lab, {"a": "open", "b": "open", "c": "open"})
