"""The netpol experiment's catalogue: the lab's pods and the policy cases, as data.

The model is the upstream Kubernetes network-policy e2e suite's: namespaces
x, y, z (labelled ns=<name>), pods a, b, c in each (labelled pod=<name>),
every pod serving the same ports.  Pods are pinned, a on the control plane
ip-172-31-0-10, b on ip-172-31-0-11, c on ip-172-31-0-12, so every table
has same-node and cross-node cells (and ipBlocks can name a node's pod
block: 192.168.<node index>.0/24).  Each case is a name, what it shows,
the NetworkPolicy manifests and the ports to probe; a case with `dns`
also probes the cluster DNS pods (53/TCP) and makes real lookups.
The special cases (a policy update under traffic, the Service interplay)
live in experiments/netpol.py.  Pure data and manifest builders, no I/O.
"""
from __future__ import annotations

from dataclasses import dataclass, field

NAMESPACES = ("x", "y", "z")
PODS = {"a": "ip-172-31-0-10", "b": "ip-172-31-0-11", "c": "ip-172-31-0-12"}
POD_BLOCKS = {"a": "192.168.0.0/24", "b": "192.168.1.0/24", "c": "192.168.2.0/24"}
# svclab's built-in server answers on every declared port, TCP and UDP, as the
# upstream suite's agnhost containers (one per port) do between them.
IMAGE = "svclab/workload"
CONTAINER_PORTS = ((80, "TCP"), (80, "UDP"), (81, "TCP"), (81, "UDP"),
                   (8080, "TCP"), (8081, "TCP"), (8082, "TCP"))
TCP80 = ((80, "TCP"),)


@dataclass(frozen=True)
class Case:
    name: str
    about: str
    policies: tuple[dict, ...]
    ports: tuple[tuple[int, str], ...] = TCP80
    dns: bool = False            # also the DNS pods (53/TCP) as targets, and lookups
    quick: bool = False          # part of --quick


# --- manifests (pure) ------------------------------------------------------------

def port_name(number: int, protocol: str) -> str:
    return f"serve-{number}-{protocol.lower()}"


def namespace(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": {"ns": name}}}


def pod(ns: str, name: str, node: str) -> dict:
    ports = [{"name": port_name(n, p), "containerPort": n, "protocol": p}
             for n, p in CONTAINER_PORTS]
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": {"pod": name}},
            "spec": {"nodeName": node, "terminationGracePeriodSeconds": 0,
                     "containers": [{"name": "cont", "image": IMAGE, "ports": ports}]}}


def policy(ns: str, name: str, pods: dict | None = None, *, ingress: list | None = None,
           egress: list | None = None, types: tuple[str, ...] = ("Ingress",)) -> dict:
    spec: dict = {"podSelector": {"matchLabels": pods} if pods else {},
                  "policyTypes": list(types)}
    if ingress is not None:
        spec["ingress"] = ingress
    if egress is not None:
        spec["egress"] = egress
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}


def ns_sel(*names: str) -> dict:
    if len(names) == 1:
        return {"matchLabels": {"ns": names[0]}}
    return {"matchExpressions": [{"key": "ns", "operator": "In", "values": list(names)}]}


def pod_sel(name: str) -> dict:
    return {"matchLabels": {"pod": name}}


DNS_EGRESS = {"to": [{"namespaceSelector": {"matchLabels": {
                  "kubernetes.io/metadata.name": "kube-system"}},
                      "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
              "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}


# --- the catalogue -----------------------------------------------------------------

CASES: tuple[Case, ...] = (
    Case("no-policy", "no policy anywhere: every pod reaches every pod", ()),
    Case("deny-ingress-x", "default deny ingress in x: nothing reaches x's pods",
         (policy("x", "default-deny-ingress"),), quick=True),
    Case("deny-egress-x", "default deny egress in x: x's pods reach nothing (but themselves)",
         (policy("x", "default-deny-egress", types=("Egress",)),)),
    Case("allow-same-namespace", "x accepts only x: podSelector {} in from",
         (policy("x", "allow-same-ns", ingress=[{"from": [{"podSelector": {}}]}]),)),
    Case("namespace-selector", "x/a accepts every pod of y (namespaceSelector ns=y)",
         (policy("x", "allow-ns-y", pod_sel("a")["matchLabels"],
                 ingress=[{"from": [{"namespaceSelector": ns_sel("y")}]}]),)),
    Case("pod-and-namespace-one-peer",
         "x/a accepts pod b of y or z: namespaceSelector AND podSelector in one peer",
         (policy("x", "and-peer", {"pod": "a"}, ingress=[{"from": [
             {"namespaceSelector": ns_sel("y", "z"), "podSelector": pod_sel("b")}]}]),),
         quick=True),
    Case("pod-or-namespace-two-peers",
         "x/a accepts every pod of y and z, and pod b of x: the same selectors as two peers",
         (policy("x", "or-peers", {"pod": "a"}, ingress=[{"from": [
             {"namespaceSelector": ns_sel("y", "z")}, {"podSelector": pod_sel("b")}]}]),)),
    Case("ip-block-except",
         f"x/a accepts 192.168.0.0/16 except {POD_BLOCKS['c']} (ip-172-31-0-12's pods)",
         (policy("x", "ipblock", {"pod": "a"}, ingress=[{"from": [
             {"ipBlock": {"cidr": "192.168.0.0/16", "except": [POD_BLOCKS["c"]]}}]}]),)),
    Case("egress-dns-only",
         "x may talk to the cluster DNS only (53/UDP+TCP to kube-system k8s-app=kube-dns)",
         (policy("x", "dns-only", types=("Egress",), egress=[DNS_EGRESS]),), dns=True,
         quick=True),
    Case("named-port", "x/a accepts everyone on its port named serve-81-tcp only",
         (policy("x", "named-port", {"pod": "a"},
                 ingress=[{"ports": [{"protocol": "TCP", "port": "serve-81-tcp"}]}]),),
         ports=((80, "TCP"), (81, "TCP"))),
    Case("end-port", "x/a accepts 8080-8081/TCP (port + endPort), not 8082",
         (policy("x", "port-range", {"pod": "a"}, ingress=[{"ports": [
             {"protocol": "TCP", "port": 8080, "endPort": 8081}]}]),),
         ports=((8080, "TCP"), (8081, "TCP"), (8082, "TCP"))),
    Case("tcp-not-udp", "x accepts 80/TCP from everyone, no UDP at all",
         (policy("x", "tcp-only", ingress=[{"ports": [{"protocol": "TCP", "port": 80}]}]),),
         ports=((80, "TCP"), (80, "UDP"))),
    Case("both-directions",
         "x/a accepts only y; y's pods may only send to x: egress and ingress both decide",
         (policy("x", "from-y", {"pod": "a"},
                 ingress=[{"from": [{"namespaceSelector": ns_sel("y")}]}]),
          policy("y", "to-x", types=("Egress",),
                 egress=[{"to": [{"namespaceSelector": ns_sel("x")}]}]))),
)


@dataclass(frozen=True)
class UpdateCase:
    """A policy replaced while a connection is open through it."""

    name: str = "update-under-traffic"
    about: str = ("x/a accepts y, a y/b connection is open; the policy is replaced to "
                  "accept z only: the open connection survives, new ones follow the new policy")
    before: dict = field(default_factory=lambda: policy(
        "x", "moving", {"pod": "a"}, ingress=[{"from": [{"namespaceSelector": ns_sel("y")}]}]))
    after: dict = field(default_factory=lambda: policy(
        "x", "moving", {"pod": "a"}, ingress=[{"from": [{"namespaceSelector": ns_sel("z")}]}]))
    holder: tuple[str, str] = ("y", "b")     # who keeps a connection open to x/a:80
    quick: bool = True


def cases(quick: bool) -> tuple[Case, ...]:
    return tuple(c for c in CASES if c.quick) if quick else CASES


__all__ = ["Case", "UpdateCase", "CASES", "cases", "NAMESPACES", "PODS", "POD_BLOCKS",
           "namespace", "pod", "policy", "port_name", "CONTAINER_PORTS"]
