"""The ELB's configuration as data: what the cloud controller writes, the agent reads.

This is the lab's stand-in for the AWS load-balancer API, the one contract
between the cloud controller (controlplane/cloud) and the ELB agent
(agents/elb); it lives in the ground layer so neither imports the other.

One JSON file holds every load balancer the ELB host serves.  The controller
computes it (controlplane/cloud/lbconfig.py) and replaces the file atomically; the
agent parses it into these frozen dataclasses and reconciles.  Parsing
validates every field and raises ElbConfigError naming the one that fails.

In a lab with Availability Zones a load balancer has a node in each enabled
zone (`zone_nodes`: the zone, that node's public VIP, and the ELB's ENI in
the zone, the source of what it sends to targets); targets carry their
node's zone, and `cross_zone` says whether a zone's node may send to targets
in other zones.  Without zones `zone_nodes` is empty and the load balancer
is the one node at `vip`, exactly as before zones existed.  `dns_answer` is
the one place that says which nodes' addresses the DNS name answers.
"""
from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from base import config_fields
from base.errors import SvclabError

CLASSIC = "classic"
NLB = "nlb"
FLAVOURS = (CLASSIC, NLB)
PROTOCOLS = ("TCP", "UDP")
CHECK_PROTOCOLS = ("TCP", "HTTP")
CONFIG_VERSION = 1


class ElbConfigError(SvclabError):
    """A load-balancer config file that does not parse; names the failing field."""

    def __init__(self, field: str, message: str):
        super().__init__(f"elb config: {field}: {message}")
        self.field = field


_choice = partial(config_fields.choice, error=ElbConfigError)
_ip = partial(config_fields.ipv4, error=ElbConfigError)
_port = partial(config_fields.port, error=ElbConfigError)
_positive = partial(config_fields.positive, error=ElbConfigError)


@dataclass(frozen=True)
class Listener:
    port: int              # the service port, on the VIP
    protocol: str          # TCP | UDP (UDP: nlb only)
    node_port: int         # where every target listens


@dataclass(frozen=True)
class Target:
    node: str              # node name
    address: str           # its InternalIP (VPC address)
    zone: str | None = None    # its node's topology.kubernetes.io/zone (None: no zones)


@dataclass(frozen=True)
class ZoneNode:
    """A load balancer's node in one Availability Zone."""

    zone: str | None       # None: the single node of a lab without zones
    vip: str               # its public address (one A record of the DNS name)
    eni: str | None        # the ELB's ENI address in that zone (None: the agent's VPC address)


@dataclass(frozen=True)
class HealthCheck:
    protocol: str          # TCP (connect) | HTTP (GET path, 200 = healthy)
    port: int
    path: str = "/"
    interval: float = 10.0
    timeout: float = 5.0
    healthy_threshold: int = 2
    unhealthy_threshold: int = 6

    @property
    def detection_time(self) -> float:
        """How long a dead target keeps traffic at most: interval x unhealthy threshold."""
        return self.interval * self.unhealthy_threshold


@dataclass(frozen=True)
class LoadBalancer:
    key: str               # namespace/name of the Service
    uid: str
    hostname: str          # AWS-style DNS name
    flavour: str           # classic | nlb
    vip: str
    listeners: tuple[Listener, ...]
    targets: tuple[Target, ...]
    health_check: HealthCheck
    source_ranges: tuple[str, ...] = ("0.0.0.0/0",)
    zone_nodes: tuple[ZoneNode, ...] = ()   # (): a lab without zones, one node at `vip`
    cross_zone: bool = False                # may a zone's node send to other zones' targets

    def allows(self, source: str) -> bool:
        address = ipaddress.IPv4Address(source)
        return any(address in ipaddress.IPv4Network(r) for r in self.source_ranges)

    @property
    def nodes(self) -> tuple[ZoneNode, ...]:
        """Its nodes: one per enabled zone, or the single node of a lab without zones."""
        return self.zone_nodes or (ZoneNode(None, self.vip, None),)

    @property
    def vips(self) -> tuple[str, ...]:
        return tuple(node.vip for node in self.nodes)

    def targets_for(self, node: ZoneNode) -> tuple[Target, ...]:
        """The targets this node sends to (health permitting): all of them without
        zones; with zones, those in enabled zones, and with cross-zone load
        balancing off only those in the node's own zone."""
        if not self.zone_nodes:
            return self.targets
        enabled = {n.zone for n in self.zone_nodes}
        return tuple(t for t in self.targets if t.zone in enabled
                     and (self.cross_zone or t.zone == node.zone))


def dns_answer(lb: LoadBalancer, healthy_vips: set[str] | frozenset[str]) -> tuple[str, ...]:
    """The A records of the load balancer's DNS name, in node order.

    AWS answers with the address of every node that has at least one healthy
    target to send to (healthy_vips) and takes the others out of DNS; when no
    node has one, it fails open and answers them all."""
    answer = tuple(vip for vip in lb.vips if vip in healthy_vips)
    return answer or lb.vips


@dataclass(frozen=True)
class ElbConfig:
    load_balancers: tuple[LoadBalancer, ...] = field(default=())

    def by_key(self) -> dict[str, LoadBalancer]:
        return {lb.key: lb for lb in self.load_balancers}


# --- JSON --------------------------------------------------------------------

def config_to_json(config: ElbConfig) -> dict:
    return {"version": CONFIG_VERSION, "loadBalancers": [_lb_to_json(lb)
                                                         for lb in config.load_balancers]}


def _lb_to_json(lb: LoadBalancer) -> dict:
    hc = lb.health_check
    return {"key": lb.key, "uid": lb.uid, "hostname": lb.hostname, "flavour": lb.flavour,
            "vip": lb.vip,
            "zoneNodes": [{"zone": n.zone, "vip": n.vip, "eni": n.eni} for n in lb.zone_nodes],
            "crossZone": lb.cross_zone,
            "listeners": [{"port": l.port, "protocol": l.protocol, "nodePort": l.node_port}
                          for l in lb.listeners],
            "targets": [{"node": t.node, "address": t.address, "zone": t.zone}
                        for t in lb.targets],
            "healthCheck": {"protocol": hc.protocol, "port": hc.port, "path": hc.path,
                            "interval": hc.interval, "timeout": hc.timeout,
                            "healthyThreshold": hc.healthy_threshold,
                            "unhealthyThreshold": hc.unhealthy_threshold},
            "sourceRanges": list(lb.source_ranges)}


def parse_config(data: Any) -> ElbConfig:
    if not isinstance(data, dict) or data.get("version") != CONFIG_VERSION:
        raise ElbConfigError("version", f"expected a mapping with version {CONFIG_VERSION}")
    raw = data.get("loadBalancers", [])
    if not isinstance(raw, list):
        raise ElbConfigError("loadBalancers", "must be a list")
    lbs = tuple(_parse_lb(item, f"loadBalancers[{i}]") for i, item in enumerate(raw))
    for kind in ("key", "vips", "hostname"):
        values = [getattr(lb, kind) for lb in lbs]
        if kind == "vips":
            kind, values = "vip", [vip for vips in values for vip in vips]
        if len(set(values)) != len(values):
            raise ElbConfigError("loadBalancers", f"duplicate {kind} in {values}")
    return ElbConfig(lbs)


def _parse_lb(raw: Any, path: str) -> LoadBalancer:
    if not isinstance(raw, dict):
        raise ElbConfigError(path, "must be a mapping")
    flavour = _choice(raw.get("flavour"), f"{path}.flavour", FLAVOURS)
    listeners = tuple(_parse_listener(item, f"{path}.listeners[{i}]", flavour)
                      for i, item in enumerate(_list(raw, "listeners", path)))
    targets = tuple(Target(node=_text(t, "node", f"{path}.targets[{i}]"),
                           address=_ip(t.get("address"), f"{path}.targets[{i}].address"),
                           zone=_zone(t.get("zone"), f"{path}.targets[{i}].zone"))
                    for i, t in enumerate(_list(raw, "targets", path)))
    hc = raw.get("healthCheck")
    if not isinstance(hc, dict):
        raise ElbConfigError(f"{path}.healthCheck", "must be a mapping")
    check = HealthCheck(
        protocol=_choice(hc.get("protocol"), f"{path}.healthCheck.protocol", CHECK_PROTOCOLS),
        port=_port(hc.get("port"), f"{path}.healthCheck.port"),
        path=str(hc.get("path", "/")),
        interval=_positive(hc.get("interval"), f"{path}.healthCheck.interval"),
        timeout=_positive(hc.get("timeout"), f"{path}.healthCheck.timeout"),
        healthy_threshold=int(_positive(hc.get("healthyThreshold"),
                                        f"{path}.healthCheck.healthyThreshold")),
        unhealthy_threshold=int(_positive(hc.get("unhealthyThreshold"),
                                          f"{path}.healthCheck.unhealthyThreshold")))
    ranges = []
    for i, cidr in enumerate(raw.get("sourceRanges") or ["0.0.0.0/0"]):
        try:
            ranges.append(str(ipaddress.IPv4Network(str(cidr), strict=False)))
        except ValueError as err:
            raise ElbConfigError(f"{path}.sourceRanges[{i}]", str(err)) from err
    vip = _ip(raw.get("vip"), f"{path}.vip")
    zone_nodes = _parse_zone_nodes(raw, path, vip)
    cross_zone = raw.get("crossZone", False)
    if not isinstance(cross_zone, bool):
        raise ElbConfigError(f"{path}.crossZone",
                             f"invalid value {cross_zone!r}; allowed: true, false")
    return LoadBalancer(key=_text(raw, "key", path), uid=str(raw.get("uid", "")),
                        hostname=_text(raw, "hostname", path), flavour=flavour,
                        vip=vip, listeners=listeners,
                        targets=targets, health_check=check, source_ranges=tuple(ranges),
                        zone_nodes=zone_nodes, cross_zone=cross_zone)


def _parse_zone_nodes(raw: dict, path: str, vip: str) -> tuple[ZoneNode, ...]:
    nodes = []
    for i, item in enumerate(_list(raw, "zoneNodes", path)):
        where = f"{path}.zoneNodes[{i}]"
        if not isinstance(item, dict):
            raise ElbConfigError(where, "must be a mapping")
        nodes.append(ZoneNode(zone=_text(item, "zone", where),
                              vip=_ip(item.get("vip"), f"{where}.vip"),
                              eni=_ip(item.get("eni"), f"{where}.eni")))
    for kind in ("zone", "vip"):
        values = [getattr(n, kind) for n in nodes]
        if len(set(values)) != len(values):
            raise ElbConfigError(f"{path}.zoneNodes", f"duplicate {kind} in {values}")
    if nodes and nodes[0].vip != vip:
        raise ElbConfigError(f"{path}.vip", f"{vip} must be the first zone node's VIP "
                             f"({nodes[0].vip})")
    return tuple(nodes)


def _parse_listener(raw: Any, path: str, flavour: str) -> Listener:
    if not isinstance(raw, dict):
        raise ElbConfigError(path, "must be a mapping")
    protocol = _choice(raw.get("protocol", "TCP"), f"{path}.protocol", PROTOCOLS)
    if protocol == "UDP" and flavour != NLB:
        raise ElbConfigError(f"{path}.protocol", "UDP listeners need flavour nlb")
    return Listener(port=_port(raw.get("port"), f"{path}.port"), protocol=protocol,
                    node_port=_port(raw.get("nodePort"), f"{path}.nodePort"))


def _list(raw: dict, key: str, path: str) -> list:
    value = raw.get(key, [])
    if not isinstance(value, list):
        raise ElbConfigError(f"{path}.{key}", "must be a list")
    return value


def _text(raw: Any, key: str, path: str) -> str:
    value = raw.get(key) if isinstance(raw, dict) else None
    if not isinstance(value, str) or not value:
        raise ElbConfigError(f"{path}.{key}", "required: a non-empty string")
    return value


def _zone(value: Any, path: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ElbConfigError(path, "must be a non-empty string or null")
    return value


# --- files -------------------------------------------------------------------

def write_config(path: Path, config: ElbConfig) -> None:
    """Atomically replace the config file (the agent reloads on change)."""
    write_json_atomically(path, config_to_json(config))


def read_config(path: Path) -> ElbConfig:
    return config_fields.read_json_config(path, ElbConfig(), parse_config, error=ElbConfigError)


def write_json_atomically(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, path)
