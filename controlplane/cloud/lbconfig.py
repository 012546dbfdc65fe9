"""Pure: from a LoadBalancer Service and the Nodes to the ELB's config for it.

What cloud-provider-aws does for `type: LoadBalancer`, as data:
- flavour from `service.beta.kubernetes.io/aws-load-balancer-type`
  (absent -> Classic ELB; `nlb` -> NLB with instance targets; `external` is
  aws-load-balancer-controller's, like a foreign `spec.loadBalancerClass`:
  not ours, the Service stays pending);
- one listener per service port at `<node>:<nodePort>` (UDP only on NLB);
- targets: every node without `node.kubernetes.io/exclude-from-external-load-
  balancers` and not being deleted.  Readiness is not a filter (upstream's
  StableLoadBalancerNodeSet, GA in v1.30): the health checks decide.  Each
  target carries its node's `topology.kubernetes.io/zone` label (labs with
  zones);
- cross-zone load balancing off unless
  `service.beta.kubernetes.io/aws-load-balancer-cross-zone-load-balancing-
  enabled` says true: cloud-provider-aws sets the attribute to false for
  both flavours when the annotation is absent, and parses it as Go's
  strconv.ParseBool does;
- health check: externalTrafficPolicy Local -> HTTP GET /healthz on the
  healthCheckNodePort; Cluster -> TCP to the (first TCP) NodePort;
  interval/timeout/thresholds from annotations, AWS defaults, all times
  multiplied by the lab's time factor;
- loadBalancerSourceRanges (or the annotation) enforced at the ELB.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from base.elb_api import CLASSIC, NLB, HealthCheck, Listener, LoadBalancer, Target
from base.errors import SvclabError
from controlplane.cloud.hostnames import classic_hostname, nlb_hostname
from controlplane.cloud.zones import allocate_node_vips, node_zone

PREFIX = "service.beta.kubernetes.io/"
TYPE_ANNOTATION = PREFIX + "aws-load-balancer-type"
RANGES_ANNOTATION = PREFIX + "load-balancer-source-ranges"
CHECK_ANNOTATIONS = {
    "interval": PREFIX + "aws-load-balancer-healthcheck-interval",
    "timeout": PREFIX + "aws-load-balancer-healthcheck-timeout",
    "healthy_threshold": PREFIX + "aws-load-balancer-healthcheck-healthy-threshold",
    "unhealthy_threshold": PREFIX + "aws-load-balancer-healthcheck-unhealthy-threshold",
}
CROSS_ZONE_ANNOTATION = PREFIX + "aws-load-balancer-cross-zone-load-balancing-enabled"
EXCLUDE_LABEL = "node.kubernetes.io/exclude-from-external-load-balancers"
# What Go's strconv.ParseBool accepts (cloud-provider-aws parses the annotation with it).
TRUE_VALUES = ("1", "t", "T", "TRUE", "true", "True")
FALSE_VALUES = ("0", "f", "F", "FALSE", "false", "False")
# cloud-provider-aws turns cross-zone load balancing off for both flavours
# unless the annotation says true (a Classic ELB made in AWS's console would
# have it on; one made through the API, as the provider does, has it off).
CROSS_ZONE_DEFAULTS = {CLASSIC: False, NLB: False}
KUBE_PROXY_HEALTHZ = 10256


@dataclass(frozen=True)
class CheckDefaults:
    interval: int
    timeout: int
    healthy_threshold: int
    unhealthy_threshold: int


# AWS's defaults (seconds, counts): Classic ELB 10/5/2/6; NLB 10/10/3/3.
DEFAULTS = {CLASSIC: CheckDefaults(10, 5, 2, 6), NLB: CheckDefaults(10, 10, 3, 3)}
LIMITS = {"interval": (5, 300), "timeout": (2, 120), "healthy_threshold": (2, 10),
          "unhealthy_threshold": (2, 10)}


class LoadBalancerProblem(SvclabError):
    """The Service asks for something the ELB cannot do (reported as a Warning event)."""


def is_load_balancer(service: dict) -> bool:
    return (service.get("spec") or {}).get("type") == "LoadBalancer"


def is_ours(service: dict) -> bool:
    """A LoadBalancer Service this controller provisions (no foreign class)."""
    spec = service.get("spec") or {}
    annotations = (service.get("metadata") or {}).get("annotations") or {}
    return (is_load_balancer(service) and not spec.get("loadBalancerClass")
            and annotations.get(TYPE_ANNOTATION) != "external")


def flavour_of(service: dict) -> str:
    annotations = service["metadata"].get("annotations") or {}
    return NLB if annotations.get(TYPE_ANNOTATION) == NLB else CLASSIC


def hostname_for(service: dict) -> str:
    uid = service["metadata"]["uid"]
    return nlb_hostname(uid) if flavour_of(service) == NLB else classic_hostname(uid)


def target_nodes(nodes: list[dict]) -> tuple[Target, ...]:
    targets = []
    for node in nodes:
        meta = node["metadata"]
        if EXCLUDE_LABEL in (meta.get("labels") or {}) or meta.get("deletionTimestamp"):
            continue
        internal = [a["address"] for a in (node.get("status") or {}).get("addresses", [])
                    if a.get("type") == "InternalIP"]
        if internal:
            targets.append(Target(meta["name"], internal[0], node_zone(node)))
    return tuple(sorted(targets, key=lambda t: t.node))


def cross_zone_enabled(service: dict) -> bool:
    """The cross-zone annotation, or the flavour's default; raises LoadBalancerProblem."""
    raw = (service["metadata"].get("annotations") or {}).get(CROSS_ZONE_ANNOTATION, "")
    if raw == "":
        return CROSS_ZONE_DEFAULTS[flavour_of(service)]
    if raw in TRUE_VALUES or raw in FALSE_VALUES:
        return raw in TRUE_VALUES
    raise LoadBalancerProblem(f"annotation {CROSS_ZONE_ANNOTATION}: invalid value {raw!r}; "
                              "allowed: true or false (also 1, t, T, TRUE, True, 0, f, F, "
                              "FALSE, False)")


def compute_load_balancer(service: dict, nodes: list[dict], vip: str,
                          time_factor: float) -> LoadBalancer:
    """The ELB config for one of our Services; raises LoadBalancerProblem."""
    meta, spec = service["metadata"], service.get("spec") or {}
    key = f"{meta['namespace']}/{meta['name']}"
    flavour = flavour_of(service)
    listeners = tuple(_listener(port, flavour, key) for port in spec.get("ports") or [])
    if not listeners:
        raise LoadBalancerProblem(f"{key}: a LoadBalancer Service needs at least one port")
    return LoadBalancer(
        key=key, uid=meta["uid"], hostname=hostname_for(service), flavour=flavour, vip=vip,
        listeners=listeners, targets=target_nodes(nodes),
        health_check=health_check(service, flavour, listeners, time_factor),
        source_ranges=source_ranges(service), cross_zone=cross_zone_enabled(service))


def _listener(port: dict, flavour: str, key: str) -> Listener:
    protocol = port.get("protocol", "TCP")
    if protocol not in ("TCP", "UDP") or (protocol == "UDP" and flavour != NLB):
        raise LoadBalancerProblem(
            f"{key}: port {port.get('port')}/{protocol}: "
            + ("a Classic ELB listens on TCP only; use the annotation "
               f"{TYPE_ANNOTATION}: nlb for UDP" if protocol == "UDP"
               else "only TCP and UDP listeners are supported"))
    if not port.get("nodePort"):
        raise LoadBalancerProblem(f"{key}: port {port.get('port')}/{protocol} has no nodePort "
                                  "(instance targets need NodePorts; "
                                  "allocateLoadBalancerNodePorts is false?)")
    return Listener(int(port["port"]), protocol, int(port["nodePort"]))


def health_check(service: dict, flavour: str, listeners: tuple[Listener, ...],
                 time_factor: float) -> HealthCheck:
    spec = service.get("spec") or {}
    settings = check_settings(service, flavour)
    scaled = dict(interval=settings["interval"] * time_factor,
                  timeout=min(settings["timeout"], settings["interval"]) * time_factor,
                  healthy_threshold=settings["healthy_threshold"],
                  unhealthy_threshold=settings["unhealthy_threshold"])
    if spec.get("externalTrafficPolicy") == "Local" and spec.get("healthCheckNodePort"):
        return HealthCheck("HTTP", int(spec["healthCheckNodePort"]), "/healthz", **scaled)
    tcp = [l for l in listeners if l.protocol == "TCP"]
    if tcp:
        return HealthCheck("TCP", tcp[0].node_port, "/", **scaled)
    # UDP only: no TCP traffic port to connect to; ask kube-proxy's own
    # healthz instead (what KEP-3836 recommends to cloud providers).
    return HealthCheck("HTTP", KUBE_PROXY_HEALTHZ, "/healthz", **scaled)


def check_settings(service: dict, flavour: str) -> dict[str, int]:
    annotations = service["metadata"].get("annotations") or {}
    defaults = DEFAULTS[flavour]
    settings = {}
    for name, annotation in CHECK_ANNOTATIONS.items():
        raw = annotations.get(annotation)
        if raw is None:
            settings[name] = getattr(defaults, name)
            continue
        low, high = LIMITS[name]
        try:
            value = int(str(raw).strip())
        except ValueError as err:
            raise LoadBalancerProblem(f"annotation {annotation}: invalid value {raw!r}; "
                                      f"allowed: an integer {low}-{high}") from err
        if not low <= value <= high:
            raise LoadBalancerProblem(f"annotation {annotation}: {value} is out of range; "
                                      f"allowed: {low}-{high}")
        settings[name] = value
    return settings


def source_ranges(service: dict) -> tuple[str, ...]:
    spec = service.get("spec") or {}
    raw = list(spec.get("loadBalancerSourceRanges") or [])
    if not raw:
        annotation = (service["metadata"].get("annotations") or {}).get(RANGES_ANNOTATION, "")
        raw = [part.strip() for part in annotation.split(",") if part.strip()]
    ranges = []
    for cidr in raw or ["0.0.0.0/0"]:
        try:
            ranges.append(str(ipaddress.IPv4Network(cidr.strip(), strict=False)))
        except ValueError as err:
            raise LoadBalancerProblem(f"loadBalancerSourceRanges: invalid CIDR {cidr!r}: "
                                      f"{err}") from err
    return tuple(ranges)


def allocate_vips(wanted_uids: list[str], current: dict[str, str],
                  pool: list[str]) -> dict[str, str]:
    """uid -> VIP for load balancers of one node each (a lab without zones):
    keep what each LB has, give new ones the first free address.

    A uid missing from the result found the pool exhausted."""
    placed = allocate_node_vips([(uid, (None,)) for uid in wanted_uids],
                                {(uid, None): vip for uid, vip in current.items()}, pool)
    return {uid: vip for (uid, _), vip in placed.items()}
