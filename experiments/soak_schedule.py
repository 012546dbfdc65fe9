"""The soak's plan as data: its faults, its churn, and what a fault explains.

Pure (no I/O; experiments/soak.py carries the plan out):

- `fault_schedule` places the faults in the churn time: in each cycle (the
  whole run in quick mode, 5 minutes in a long one) a stable pod is deleted
  gracefully, the proxy agent of the probing node and the policy agent of
  another node are killed (the supervisor restarts them), and a worker is
  cut off the VPC and restored.
- `next_action` picks the next churn step with a seeded random generator:
  create, scale or delete a Deployment with its Service, delete one of its
  pods, add or remove a NetworkPolicy, or send a request to a churn Service
  (so that conntrack has entries to clean up when it goes).
- the manifests of what the churn makes (Deployments with TCP and UDP
  ports, their Services, NetworkPolicies) and which namespace each lives in.
- `classify` tells, for each probe of a stable service, whether it failed
  and whether a fault explains it: a failure is explained when the probe's
  own time span [start, start + duration] overlaps the window of a fault
  that affects that target.  A fault's window is [its start, its end +
  grace]: the node cut's end is when its link came back and its grace the
  probe timeout plus RECOVERY_S (connections sent just before the link
  returned time out just after).  Which targets a fault affects follows
  from where the target's endpoints live and which node it enters by: a
  cut node affects the targets with an endpoint or an entry there.  Graceful
  pod deletions and agent restarts affect nothing: Kubernetes promises no
  failed connection for either (terminating endpoints keep serving, rules
  stay in the kernel while an agent is down), so every failure then counts.
"""
from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from experiments.cluster_ops import deployment, service

RECOVERY_S = 2.0
CYCLE_S = 300.0
# Where in a cycle each fault starts, as a share of the cycle.
FAULT_PLACES = (("stable-pod-delete", 0.12), ("proxy-restart", 0.30),
                ("node-cut", 0.45), ("policy-restart", 0.80))
CHURN_NAMESPACES = ("churn-a", "churn-b")
CHURN_KINDS = ("create", "scale", "delete", "kill-pod", "policy-add", "policy-delete",
               "traffic")


@dataclass(frozen=True)
class StableTarget:
    """A stable service as a probe sees it: where it enters, where it ends."""

    name: str                         # e.g. stable-web
    probe_from: str                   # host or pod the probes leave from
    probe_node: str                   # the node that host is on (or the entry node)
    endpoint_nodes: frozenset[str]    # nodes holding its endpoints

    def through(self, node: str) -> bool:
        return node == self.probe_node or node in self.endpoint_nodes


@dataclass(frozen=True)
class Fault:
    """One planned fault: what, when (seconds after churn start), on what."""

    kind: str
    at: float
    target: str          # a node name, or a stable service whose pod is deleted
    duration: float = 0.0   # how long the fault itself lasts (a cut link)


@dataclass(frozen=True)
class FaultWindow:
    """A fault as it happened (epoch seconds) and the targets it may fail."""

    kind: str
    target: str
    start: float
    end: float
    grace: float
    affects: frozenset[str]

    @property
    def until(self) -> float:
        return self.end + self.grace

    def explains(self, target: str, start: float, finish: float) -> bool:
        return target in self.affects and start <= self.until and finish >= self.start


def fault_schedule(duration: float, *, cut_s: float, cut_node: str, probe_node: str,
                   other_node: str, stable_pod_of: str,
                   cycle: float = CYCLE_S) -> tuple[Fault, ...]:
    """The faults of a churn phase of `duration` seconds: one of each kind per
    cycle (one cycle when the run is shorter than two)."""
    cycles = max(1, int(duration // cycle))
    length = duration / cycles
    targets = {"stable-pod-delete": stable_pod_of, "proxy-restart": probe_node,
               "node-cut": cut_node, "policy-restart": other_node}
    faults = []
    for k in range(cycles):
        for kind, share in FAULT_PLACES:
            faults.append(Fault(kind, round(k * length + share * length, 3), targets[kind],
                                cut_s if kind == "node-cut" else 0.0))
    return tuple(faults)


def affected(kind: str, node: str, targets: Iterable[StableTarget]) -> frozenset[str]:
    """The stable targets a fault may fail: only a cut node's."""
    if kind != "node-cut":
        return frozenset()
    return frozenset(t.name for t in targets if t.through(node))


def window(kind: str, target: str, start: float, end: float, probe_timeout: float,
           targets: Iterable[StableTarget]) -> FaultWindow:
    return FaultWindow(kind, target, start, end, probe_timeout + RECOVERY_S,
                       affected(kind, target, targets))


# --- churn ---------------------------------------------------------------------

@dataclass(frozen=True)
class Limits:
    deployments: int = 6
    replicas: int = 3
    policies: int = 3


@dataclass
class World:
    """What the churn has made so far (the experiment keeps it current)."""

    deployments: dict[str, int] = field(default_factory=dict)   # name -> replicas
    policies: set[str] = field(default_factory=set)
    pods: list[str] = field(default_factory=list)               # churn pods seen running
    made: int = 0                                               # names handed out


@dataclass(frozen=True)
class Action:
    kind: str
    name: str = ""
    replicas: int = 0
    detail: str = ""


def next_action(rng: random.Random, world: World, limits: Limits) -> Action:
    """The next churn step, drawn with weights that keep the world within limits."""
    n = len(world.deployments)
    weights = {"create": 3 if n < limits.deployments else 0,
               "scale": 3 if n else 0, "delete": 2 if n > 1 else 0,
               "kill-pod": 2 if world.pods else 0,
               "policy-add": 1 if n and len(world.policies) < limits.policies else 0,
               "policy-delete": 1 if world.policies else 0,
               "traffic": 3 if n else 0}
    kinds = [k for k in CHURN_KINDS if weights[k]]
    kind = rng.choices(kinds, [weights[k] for k in kinds])[0]
    if kind == "create":
        world.made += 1
        return Action(kind, f"churn-{world.made}", rng.randint(1, limits.replicas))
    if kind in ("scale", "delete", "traffic"):
        name = rng.choice(sorted(world.deployments))
        if kind == "scale":
            return Action(kind, name, rng.randint(0, limits.replicas))
        return Action(kind, name, detail=rng.choice(("tcp", "udp")) if kind == "traffic"
                      else "")
    if kind == "kill-pod":
        return Action(kind, rng.choice(sorted(world.pods)))
    if kind == "policy-add":
        world.made += 1
        return Action(kind, f"policy-{world.made}",
                      detail=rng.choice(("deny-all", "allow-same-app")) + ":"
                      + rng.choice(sorted(world.deployments)))
    return Action(kind, rng.choice(sorted(world.policies)))


def apply_to_world(world: World, action: Action) -> None:
    """Record what an action did (after it succeeded)."""
    if action.kind in ("create", "scale"):
        world.deployments[action.name] = action.replicas
    elif action.kind == "delete":
        world.deployments.pop(action.name, None)
    elif action.kind == "policy-add":
        world.policies.add(action.name)
    elif action.kind == "policy-delete":
        world.policies.discard(action.name)


# --- what the churn makes (manifests) ------------------------------------------

def churn_deployment(name: str, replicas: int) -> dict:
    """A churn Deployment of the workload server: TCP 80 and UDP 8080."""
    manifest = deployment(name, replicas, {"app": name})
    ports = manifest["spec"]["template"]["spec"]["containers"][0]["ports"]
    ports.append({"containerPort": 8080, "protocol": "UDP"})
    return manifest


def churn_service(name: str) -> dict:
    manifest = service(name, {"app": name})
    manifest["spec"]["ports"] = [
        {"name": "http", "port": 80, "targetPort": 80, "protocol": "TCP"},
        {"name": "echo", "port": 8080, "targetPort": 8080, "protocol": "UDP"}]
    return manifest


def policy(name: str, app: str, allow_same_app: bool) -> dict:
    """Deny all ingress to app's pods, or allow it only from the same app."""
    spec: dict = {"podSelector": {"matchLabels": {"app": app}}, "policyTypes": ["Ingress"]}
    if allow_same_app:
        spec["ingress"] = [{"from": [{"podSelector": {"matchLabels": {"app": app}}}]}]
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name}, "spec": spec}


def namespace_of(name: str) -> str:
    """The churn namespace an object lives in, by the number in its name."""
    return CHURN_NAMESPACES[int(name.rsplit("-", 1)[1]) % len(CHURN_NAMESPACES)]


# --- probes -------------------------------------------------------------------

def classify(records: Iterable[Mapping], windows: Iterable[FaultWindow]) -> list[dict]:
    """Each probe record ({target, t, ms, err, ...}) with `failed` and
    `explained_by` (the kind of the first fault window explaining it, "")."""
    windows = list(windows)
    out = []
    for record in records:
        failed = bool(record.get("err"))
        start = float(record["t"])
        finish = start + float(record.get("ms") or 0) / 1e3
        why = next((w.kind for w in windows
                    if failed and w.explains(record["target"], start, finish)), "")
        out.append({**record, "failed": failed, "explained_by": why})
    return out


def probe_totals(classified: Iterable[Mapping]) -> dict[str, dict[str, int]]:
    """Per target: probes, failed, explained and unexplained failures."""
    totals: dict[str, dict[str, int]] = {}
    for r in classified:
        t = totals.setdefault(r["target"], {"probes": 0, "failed": 0, "explained": 0,
                                            "unexplained": 0})
        t["probes"] += 1
        if r["failed"]:
            t["failed"] += 1
            t["explained" if r["explained_by"] else "unexplained"] += 1
    return totals
