"""The policy agent's input model: Pods, Namespaces and NetworkPolicies.

The API serves these objects as JSON dicts; the frozen dataclasses below keep
exactly the fields that decide who may talk to whom, so the evaluator, the
rule computation and the renderers stay pure and testable without a server.
Label selectors are data with a pure `matches(labels)`, with the semantics of
metav1.LabelSelector (matchLabels AND every matchExpression).
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from base.errors import SvclabError

PROTOCOLS = ("TCP", "UDP", "SCTP")
OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")
NAME_LABEL = "kubernetes.io/metadata.name"
INGRESS = "Ingress"
EGRESS = "Egress"
Labels = tuple[tuple[str, str], ...]


class PolicyModelError(SvclabError):
    """A Kubernetes object could not be turned into the policy model."""


def workload_iface(namespace: str, pod: str) -> str:
    """The pod's host-side veth, as topo.plan.cali_name names it."""
    return "cali" + hashlib.sha1(f"{namespace}.{pod}".encode()).hexdigest()[:11]


def _labels(obj: Mapping[str, Any] | None) -> Labels:
    return tuple(sorted((str(k), str(v)) for k, v in (obj or {}).items()))


@dataclass(frozen=True)
class Requirement:
    """One matchExpressions entry."""

    key: str
    operator: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator == "In":
            return labels.get(self.key) in self.values
        if self.operator == "NotIn":
            return labels.get(self.key) not in self.values
        if self.operator == "Exists":
            return self.key in labels
        return self.key not in labels            # DoesNotExist


@dataclass(frozen=True)
class Selector:
    """A label selector; the empty selector matches everything."""

    match_labels: Labels = ()
    expressions: tuple[Requirement, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.match_labels and not self.expressions

    def matches(self, labels: Mapping[str, str]) -> bool:
        return (all(labels.get(k) == v for k, v in self.match_labels)
                and all(r.matches(labels) for r in self.expressions))

    def describe(self) -> str:
        parts = [f"{k}={v}" for k, v in self.match_labels]
        for r in self.expressions:
            vals = ",".join(r.values)
            parts.append(f"{r.key} {r.operator} ({vals})" if r.values
                         else f"{r.operator} {r.key}")
        return ",".join(parts) or "{}"


def selector_from_k8s(obj: Mapping[str, Any] | None, where: str) -> Selector:
    if obj is None:
        return Selector()
    if not isinstance(obj, Mapping):
        raise PolicyModelError(f"{where}: a label selector must be an object")
    exprs = []
    for i, e in enumerate(obj.get("matchExpressions") or ()):
        op = e.get("operator")
        if op not in OPERATORS or not e.get("key"):
            raise PolicyModelError(f"{where}.matchExpressions[{i}]: bad key/operator {op!r}")
        values = tuple(str(v) for v in e.get("values") or ())
        if op in ("In", "NotIn") and not values:
            raise PolicyModelError(f"{where}.matchExpressions[{i}]: {op} needs values")
        if op in ("Exists", "DoesNotExist") and values:
            raise PolicyModelError(f"{where}.matchExpressions[{i}]: {op} takes no values")
        exprs.append(Requirement(str(e["key"]), op, tuple(sorted(set(values)))))
    return Selector(_labels(obj.get("matchLabels")), tuple(exprs))


@dataclass(frozen=True)
class IPBlock:
    """An ipBlock peer: cidr minus every except range."""

    cidr: str
    excepts: tuple[str, ...] = ()

    def contains(self, ip: str) -> bool:
        addr = ipaddress.ip_address(ip)
        if addr not in ipaddress.ip_network(self.cidr):
            return False
        return not any(addr in ipaddress.ip_network(e) for e in self.excepts)


@dataclass(frozen=True)
class Peer:
    """One from/to entry; selectors present together are ANDed."""

    pod_selector: Selector | None = None
    namespace_selector: Selector | None = None
    ip_block: IPBlock | None = None


@dataclass(frozen=True)
class PortSpec:
    """One ports entry: port is a number, a name, or None (all ports)."""

    protocol: str = "TCP"
    port: int | str | None = None
    end_port: int | None = None

    def matches_number(self, number: int, protocol: str) -> bool:
        """For numeric specs only (a named port needs the pod to resolve)."""
        if protocol != self.protocol:
            return False
        if self.port is None:
            return True
        if isinstance(self.port, str):
            return False
        high = self.end_port if self.end_port is not None else self.port
        return self.port <= number <= high


@dataclass(frozen=True)
class Rule:
    """One ingress or egress rule: empty peers = everyone, empty ports = all."""

    peers: tuple[Peer, ...] = ()
    ports: tuple[PortSpec, ...] = ()


@dataclass(frozen=True)
class Policy:
    """A parsed NetworkPolicy (policy_types always filled in)."""

    namespace: str
    name: str
    pod_selector: Selector
    policy_types: tuple[str, ...]
    ingress: tuple[Rule, ...] = ()
    egress: tuple[Rule, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def applies_ingress(self) -> bool:
        return INGRESS in self.policy_types

    @property
    def applies_egress(self) -> bool:
        return EGRESS in self.policy_types

    def rules(self, direction: str) -> tuple[Rule, ...]:
        return self.ingress if direction == INGRESS else self.egress


@dataclass(frozen=True)
class Pod:
    """What policies need of a Pod: labels, IP, node, container ports."""

    namespace: str
    name: str
    ip: str | None
    node: str | None
    labels: Labels
    ports: tuple[tuple[str, int, str], ...] = ()   # (name, number, protocol)
    phase: str = "Running"
    host_network: bool = False

    @property
    def label_map(self) -> dict[str, str]:
        return dict(self.labels)

    @property
    def iface(self) -> str:
        return workload_iface(self.namespace, self.name)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def active(self) -> bool:
        """Has an IP of its own and is not finished: policies can see it."""
        return (bool(self.ip) and not self.host_network
                and self.phase not in ("Succeeded", "Failed"))

    def named_port(self, name: str, protocol: str) -> int | None:
        for pname, number, proto in self.ports:
            if pname == name and proto == protocol:
                return number
        return None


@dataclass(frozen=True)
class Namespace:
    """A namespace's name and labels (namespaceSelector matches these)."""

    name: str
    labels: Labels = ()

    @property
    def label_map(self) -> dict[str, str]:
        return dict(self.labels)


@dataclass(frozen=True)
class Cluster:
    """Everything a verdict or a node's rules depend on."""

    pods: tuple[Pod, ...]
    namespaces: tuple[Namespace, ...]
    policies: tuple[Policy, ...]
    nodes: tuple[tuple[str, str], ...] = ()   # (node name, node IP)

    def namespace_labels(self, name: str) -> dict[str, str]:
        """The namespace's labels; Kubernetes sets kubernetes.io/metadata.name
        on every namespace, so it is there even for one not seen yet."""
        for ns in self.namespaces:
            if ns.name == name:
                return {NAME_LABEL: name, **ns.label_map}
        return {NAME_LABEL: name}

    def node_ip(self, node: str | None) -> str | None:
        return dict(self.nodes).get(node) if node else None


def _meta(obj: Mapping[str, Any], kind: str) -> tuple[str, str, Mapping[str, Any]]:
    meta = obj.get("metadata") or {}
    name = meta.get("name")
    if not name:
        raise PolicyModelError(f"{kind} without metadata.name")
    return meta.get("namespace") or "default", name, meta


def pod_from_k8s(obj: Mapping[str, Any]) -> Pod:
    ns, name, meta = _meta(obj, "Pod")
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    ports = []
    for c in spec.get("containers") or ():
        for p in c.get("ports") or ():
            if p.get("containerPort") is None:
                continue
            ports.append((str(p.get("name") or ""), int(p["containerPort"]),
                          str(p.get("protocol") or "TCP")))
    return Pod(ns, name, status.get("podIP") or None, spec.get("nodeName") or None,
               _labels(meta.get("labels")), tuple(ports), status.get("phase") or "Pending",
               bool(spec.get("hostNetwork")))


def namespace_from_k8s(obj: Mapping[str, Any]) -> Namespace:
    meta = obj.get("metadata") or {}
    if not meta.get("name"):
        raise PolicyModelError("Namespace without metadata.name")
    labels = dict(meta.get("labels") or {})
    labels.setdefault(NAME_LABEL, meta["name"])
    return Namespace(meta["name"], _labels(labels))


def _ip_block(obj: Mapping[str, Any], where: str) -> IPBlock:
    try:
        cidr = ipaddress.ip_network(str(obj.get("cidr")), strict=False)
        excepts = [ipaddress.ip_network(str(e), strict=False)
                   for e in obj.get("except") or ()]
    except ValueError as err:
        raise PolicyModelError(f"{where}.ipBlock: {err}") from err
    if cidr.version != 4:
        raise PolicyModelError(f"{where}.ipBlock: only IPv4 is emulated ({cidr})")
    for e in excepts:
        if e.version != 4 or not e.subnet_of(cidr):
            raise PolicyModelError(f"{where}.ipBlock.except {e} is not inside {cidr}")
    return IPBlock(str(cidr), tuple(str(e) for e in excepts))


def _peer(obj: Mapping[str, Any], where: str) -> Peer:
    if not isinstance(obj, Mapping):
        raise PolicyModelError(f"{where}: a peer must be an object")
    pod = obj.get("podSelector")
    ns = obj.get("namespaceSelector")
    block = obj.get("ipBlock")
    if block is not None and (pod is not None or ns is not None):
        raise PolicyModelError(f"{where}: ipBlock cannot be combined with selectors")
    if block is None and pod is None and ns is None:
        raise PolicyModelError(f"{where}: a peer needs podSelector, namespaceSelector "
                               "or ipBlock")
    return Peer(None if pod is None else selector_from_k8s(pod, f"{where}.podSelector"),
                None if ns is None else selector_from_k8s(ns, f"{where}.namespaceSelector"),
                None if block is None else _ip_block(block, where))


def _port(obj: Mapping[str, Any], where: str) -> PortSpec:
    protocol = str(obj.get("protocol") or "TCP")
    if protocol not in PROTOCOLS:
        raise PolicyModelError(f"{where}.protocol: {protocol!r} is not TCP, UDP or SCTP")
    port = obj.get("port")
    end = obj.get("endPort")
    if isinstance(port, str) and port.isdigit():
        port = int(port)
    if isinstance(port, int) and not 1 <= port <= 65535:
        raise PolicyModelError(f"{where}.port: {port} out of range")
    if end is not None:
        if not isinstance(port, int) or not isinstance(end, int) or end < port or end > 65535:
            raise PolicyModelError(f"{where}.endPort: needs a numeric port <= endPort")
    return PortSpec(protocol, port, end)


def _rules(items: Any, peers_key: str, where: str) -> tuple[Rule, ...]:
    rules = []
    for i, r in enumerate(items or ()):
        w = f"{where}[{i}]"
        peers = tuple(_peer(p, f"{w}.{peers_key}[{j}]")
                      for j, p in enumerate(r.get(peers_key) or ()))
        ports = tuple(_port(p, f"{w}.ports[{j}]") for j, p in enumerate(r.get("ports") or ()))
        rules.append(Rule(peers, ports))
    return tuple(rules)


def policy_from_k8s(obj: Mapping[str, Any]) -> Policy:
    ns, name, _ = _meta(obj, "NetworkPolicy")
    where = f"NetworkPolicy {ns}/{name}"
    spec = obj.get("spec")
    if not isinstance(spec, Mapping):
        raise PolicyModelError(f"{where}: spec missing")
    ingress = _rules(spec.get("ingress"), "from", f"{where}: spec.ingress")
    egress = _rules(spec.get("egress"), "to", f"{where}: spec.egress")
    types = spec.get("policyTypes")
    if not types:
        types = [INGRESS] + ([EGRESS] if spec.get("egress") else [])
    for t in types:
        if t not in (INGRESS, EGRESS):
            raise PolicyModelError(f"{where}: spec.policyTypes: unknown {t!r}")
    return Policy(ns, name, selector_from_k8s(spec.get("podSelector"),
                                              f"{where}: spec.podSelector"),
                  tuple(sorted(set(types))), ingress, egress)
