"""The Application Load Balancers as data: what the ALB controller writes, the ELB agent reads.

The lab's stand-in for the ELBv2 API for ALBs, and the one contract between
the Ingress controller (controlplane/cloud/alb*.py) and the ALB proxy in the
ELB agent (agents/elb/alb*); it lives in the ground layer so neither imports
the other.  It mirrors base/elb_api.py (Classic and NLB), which stays as is.

One JSON file holds every ALB the ELB host serves; the controller replaces it
atomically (`write_alb_config`), the agent polls it and reconciles.  Parsing
validates every field and raises AlbConfigError naming the one that fails.

The model, as AWS has it:
- an ALB has a name, a DNS name, a scheme, an idle timeout and its nodes:
  one per enabled Availability Zone (`zone_nodes`, base.elb_api.ZoneNode:
  the zone, the node's address, the ELB's ENI in the zone that it sends
  from), or without zones the one node at `vip`, exactly as a Classic/NLB
  load balancer gets them.  An internet-facing ALB's addresses are on the
  internet side; an internal one's are VPC addresses;
- listeners (port, HTTP or HTTPS with certificate + key PEM files, the first
  the default and the others chosen by SNI), each with a default action and
  rules;
- a rule: a priority (lowest evaluated first, unique per listener), host
  conditions (patterns, `*` and `?` wildcards, case-insensitive) and path
  conditions (patterns, case-sensitive), ANDed between kinds and ORed within
  one, and an action: forward to a target group, a fixed response (the
  controller's default: 404), or a redirect (ssl-redirect);
- target groups: targets ip:port, protocol, health check (path, port or the
  traffic port, interval, timeout, thresholds, matcher codes) and the
  algorithm, round_robin or least_outstanding_requests.

Path conditions are ALB path patterns.  `path_patterns` turns a Kubernetes
path and pathType into them as the AWS Load Balancer Controller does:
Exact -> the path itself (no wildcards allowed); Prefix `/` -> `/*`, Prefix
`/foo` or `/foo/` -> `/foo` and `/foo/*`; ImplementationSpecific -> the path
as an ALB pattern.  Ordering Ingress paths into priorities is the
controller's business (see docs/alb.md): the ALB evaluates by priority only.

All times are in seconds as the ALB applies them: the controller has already
multiplied AWS's values by the lab's time factor, as it does for base/elb_api.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from base import config_fields
from base.elb_api import ZoneNode, write_json_atomically
from base.errors import SvclabError

ALB_CONFIG_VERSION = 1
INTERNET_FACING, INTERNAL = "internet-facing", "internal"
SCHEMES = (INTERNET_FACING, INTERNAL)
HTTP, HTTPS = "HTTP", "HTTPS"
PROTOCOLS = (HTTP, HTTPS)
ROUND_ROBIN, LEAST_OUTSTANDING = "round_robin", "least_outstanding_requests"
ALGORITHMS = (ROUND_ROBIN, LEAST_OUTSTANDING)
FORWARD, FIXED_RESPONSE, REDIRECT = "forward", "fixed-response", "redirect"
ACTIONS = (FORWARD, FIXED_RESPONSE, REDIRECT)
TARGET_TYPES = ("instance", "ip")
EXACT, PREFIX, IMPLEMENTATION_SPECIFIC = "Exact", "Prefix", "ImplementationSpecific"
PATH_TYPES = (EXACT, PREFIX, IMPLEMENTATION_SPECIFIC)
MAX_PRIORITY = 50000
MAX_PATTERN = 128
# The characters ELBv2 accepts in condition values.
_HOST_PATTERN = re.compile(r"^[A-Za-z0-9.*?-]+$")
_PATH_PATTERN = re.compile(r"^/[A-Za-z0-9_\-.$/~\"'@:+&*?=%]*$")
_MATCHER = re.compile(r"^\d{3}(-\d{3})?(,\d{3}(-\d{3})?)*$")


class AlbConfigError(SvclabError):
    """An ALB config that does not parse; names the failing field."""

    def __init__(self, field: str, message: str):
        super().__init__(f"alb config: {field}: {message}")
        self.field = field


_choice = partial(config_fields.choice, error=AlbConfigError)
_ip = partial(config_fields.ipv4, error=AlbConfigError)
_port = partial(config_fields.port, error=AlbConfigError)
_positive = partial(config_fields.positive, error=AlbConfigError)


# --- the model ----------------------------------------------------------------------

@dataclass(frozen=True)
class Certificate:
    """A listener certificate: PEM files the ELB agent can read (the controller
    writes them from the Ingress's TLS Secret)."""

    cert_file: str
    key_file: str


@dataclass(frozen=True)
class Action:
    """What a rule (or a listener's default) does with a request."""

    type: str                       # forward | fixed-response | redirect
    target_group: str = ""          # forward: a target group's name in the same ALB
    status_code: int = 404          # fixed-response: 2XX-5XX; redirect: 301 | 302
    content_type: str = "text/plain"    # fixed-response
    body: str = ""                  # fixed-response
    protocol: str = HTTPS           # redirect: scheme of the Location
    port: int | None = None         # redirect: port of the Location (None: the same)


NOT_FOUND = Action(FIXED_RESPONSE, status_code=404)


@dataclass(frozen=True)
class Rule:
    priority: int                   # 1-50000, lowest first, unique per listener
    hosts: tuple[str, ...]          # host-header patterns (any matches); () = any host
    paths: tuple[str, ...]          # path patterns (any matches); () = any path
    action: Action
    source: str = ""                # where it comes from, for logs and trace
                                    # (e.g. "default/web rules[0].paths[1]")


@dataclass(frozen=True)
class Listener:
    port: int
    protocol: str                   # HTTP | HTTPS
    default_action: Action = NOT_FOUND
    rules: tuple[Rule, ...] = ()    # in priority order
    certificates: tuple[Certificate, ...] = ()  # HTTPS: the first is the default


@dataclass(frozen=True)
class HealthCheck:
    """A target group's health check (the AWS Load Balancer Controller's defaults)."""

    protocol: str = HTTP            # HTTP | HTTPS
    port: int | None = None         # None: the traffic port (each target's own)
    path: str = "/"
    interval: float = 15.0
    timeout: float = 5.0
    healthy_threshold: int = 2
    unhealthy_threshold: int = 2
    matcher: str = "200"            # "200", "200,202", "200-299"

    def accepts(self, code: int) -> bool:
        return any(low <= code <= high for low, high in matcher_ranges(self.matcher))

    @property
    def detection_time(self) -> float:
        """How long a dead target keeps traffic at most: interval x unhealthy threshold."""
        return self.interval * self.unhealthy_threshold


@dataclass(frozen=True)
class Target:
    address: str                    # IPv4 (a node's InternalIP or a pod IP)
    port: int                       # a NodePort (instance) or the pod's port (ip)
    name: str = ""                  # for people: the node, or namespace/pod
    zone: str | None = None         # its zone (None: no zones)

    @property
    def endpoint(self) -> str:
        return f"{self.address}:{self.port}"


@dataclass(frozen=True)
class TargetGroup:
    name: str                       # unique within its ALB
    protocol: str = HTTP            # towards the targets
    target_type: str = "instance"   # instance | ip (informational)
    targets: tuple[Target, ...] = ()
    health_check: HealthCheck = field(default_factory=HealthCheck)
    algorithm: str = ROUND_ROBIN
    source: str = ""                # e.g. "default/web-svc:80"


@dataclass(frozen=True)
class Alb:
    name: str                       # e.g. k8s-default-web-1a2b3c4d5e
    hostname: str                   # its DNS name
    scheme: str                     # internet-facing | internal
    vip: str                        # the first node's address
    listeners: tuple[Listener, ...]
    target_groups: tuple[TargetGroup, ...] = ()
    zone_nodes: tuple[ZoneNode, ...] = ()   # (): a lab without zones, one node at vip
    idle_timeout: float = 60.0
    source_ranges: tuple[str, ...] = ("0.0.0.0/0",)     # its security group's inbound
    owner: str = ""                 # e.g. "ingress default/web" or "group team-a"

    @property
    def nodes(self) -> tuple[ZoneNode, ...]:
        return self.zone_nodes or (ZoneNode(None, self.vip, None),)

    @property
    def vips(self) -> tuple[str, ...]:
        return tuple(node.vip for node in self.nodes)

    def target_group(self, name: str) -> TargetGroup:
        return next(tg for tg in self.target_groups if tg.name == name)

    def allows(self, source: str) -> bool:
        address = ipaddress.IPv4Address(source)
        return any(address in ipaddress.IPv4Network(r) for r in self.source_ranges)


@dataclass(frozen=True)
class AlbConfig:
    load_balancers: tuple[Alb, ...] = ()

    def by_name(self) -> dict[str, Alb]:
        return {alb.name: alb for alb in self.load_balancers}


# --- pure helpers -------------------------------------------------------------------

def path_patterns(path: str, path_type: str) -> tuple[str, ...]:
    """A Kubernetes Ingress path as ALB path patterns (the AWS Load Balancer
    Controller's mapping); raises AlbConfigError for what it refuses."""
    if path_type == IMPLEMENTATION_SPECIFIC:
        return (path,)
    if path_type not in (EXACT, PREFIX):
        raise AlbConfigError("pathType", f"unsupported value {path_type!r}; "
                             f"allowed: {', '.join(PATH_TYPES)}")
    if "*" in path or "?" in path:
        raise AlbConfigError("path", f"{path_type.lower()} path shouldn't contain "
                             f"wildcards: {path}")
    if path_type == EXACT:
        return (path,)
    if path == "/":
        return ("/*",)
    trimmed = path[:-1] if path.endswith("/") else path
    return (trimmed, trimmed + "/*")


def matcher_ranges(matcher: str) -> tuple[tuple[int, int], ...]:
    """"200,202-299" -> ((200, 200), (202, 299))."""
    ranges = []
    for part in matcher.split(","):
        low, _, high = part.partition("-")
        ranges.append((int(low), int(high or low)))
    return tuple(ranges)


# --- JSON ---------------------------------------------------------------------------

def alb_config_to_json(config: AlbConfig) -> dict:
    return {"version": ALB_CONFIG_VERSION,
            "loadBalancers": [_alb_to_json(alb) for alb in config.load_balancers]}


def _action_to_json(action: Action) -> dict:
    out: dict[str, Any] = {"type": action.type}
    if action.type == FORWARD:
        out["targetGroup"] = action.target_group
    elif action.type == FIXED_RESPONSE:
        out.update(statusCode=action.status_code, contentType=action.content_type,
                   body=action.body)
    else:
        out.update(statusCode=action.status_code, protocol=action.protocol, port=action.port)
    return out


def _alb_to_json(alb: Alb) -> dict:
    return {
        "name": alb.name, "hostname": alb.hostname, "scheme": alb.scheme, "vip": alb.vip,
        "zoneNodes": [{"zone": n.zone, "vip": n.vip, "eni": n.eni} for n in alb.zone_nodes],
        "idleTimeout": alb.idle_timeout, "sourceRanges": list(alb.source_ranges),
        "owner": alb.owner,
        "listeners": [{
            "port": l.port, "protocol": l.protocol,
            "defaultAction": _action_to_json(l.default_action),
            "certificates": [{"certFile": c.cert_file, "keyFile": c.key_file}
                             for c in l.certificates],
            "rules": [{"priority": r.priority, "hosts": list(r.hosts), "paths": list(r.paths),
                       "action": _action_to_json(r.action), "source": r.source}
                      for r in l.rules]} for l in alb.listeners],
        "targetGroups": [{
            "name": tg.name, "protocol": tg.protocol, "targetType": tg.target_type,
            "algorithm": tg.algorithm, "source": tg.source,
            "targets": [{"address": t.address, "port": t.port, "name": t.name,
                         "zone": t.zone} for t in tg.targets],
            "healthCheck": {
                "protocol": tg.health_check.protocol, "port": tg.health_check.port,
                "path": tg.health_check.path, "interval": tg.health_check.interval,
                "timeout": tg.health_check.timeout,
                "healthyThreshold": tg.health_check.healthy_threshold,
                "unhealthyThreshold": tg.health_check.unhealthy_threshold,
                "matcher": tg.health_check.matcher}} for tg in alb.target_groups]}


def parse_alb_config(data: Any) -> AlbConfig:
    if not isinstance(data, dict) or data.get("version") != ALB_CONFIG_VERSION:
        raise AlbConfigError("version", f"expected a mapping with version {ALB_CONFIG_VERSION}")
    albs = tuple(_parse_alb(item, f"loadBalancers[{i}]")
                 for i, item in enumerate(_list(data, "loadBalancers", "")))
    for kind in ("name", "hostname", "vips"):
        values = [getattr(alb, kind) for alb in albs]
        if kind == "vips":
            kind, values = "vip", [vip for vips in values for vip in vips]
        _unique(values, "loadBalancers", kind)
    return AlbConfig(albs)


def _parse_alb(raw: Any, path: str) -> Alb:
    _mapping(raw, path)
    groups = tuple(_parse_target_group(item, f"{path}.targetGroups[{i}]")
                   for i, item in enumerate(_list(raw, "targetGroups", path)))
    _unique([tg.name for tg in groups], f"{path}.targetGroups", "name")
    names = {tg.name for tg in groups}
    listeners = tuple(_parse_listener(item, f"{path}.listeners[{i}]", names)
                      for i, item in enumerate(_list(raw, "listeners", path)))
    _unique([l.port for l in listeners], f"{path}.listeners", "port")
    vip = _ip(raw.get("vip"), f"{path}.vip")
    nodes = []
    for i, item in enumerate(_list(raw, "zoneNodes", path)):
        where = f"{path}.zoneNodes[{i}]"
        _mapping(item, where)
        nodes.append(ZoneNode(zone=_text(item, "zone", where),
                              vip=_ip(item.get("vip"), f"{where}.vip"),
                              eni=_ip(item.get("eni"), f"{where}.eni")))
    _unique([n.zone for n in nodes], f"{path}.zoneNodes", "zone")
    _unique([n.vip for n in nodes], f"{path}.zoneNodes", "vip")
    if nodes and nodes[0].vip != vip:
        raise AlbConfigError(f"{path}.vip", f"{vip} must be the first zone node's VIP "
                             f"({nodes[0].vip})")
    ranges = []
    for i, cidr in enumerate(raw.get("sourceRanges") or ["0.0.0.0/0"]):
        try:
            ranges.append(str(ipaddress.IPv4Network(str(cidr), strict=False)))
        except ValueError as err:
            raise AlbConfigError(f"{path}.sourceRanges[{i}]", str(err)) from err
    return Alb(name=_text(raw, "name", path), hostname=_text(raw, "hostname", path),
               scheme=_choice(raw.get("scheme", INTERNET_FACING), f"{path}.scheme", SCHEMES),
               vip=vip, listeners=listeners, target_groups=groups, zone_nodes=tuple(nodes),
               idle_timeout=_positive(raw.get("idleTimeout", 60.0), f"{path}.idleTimeout"),
               source_ranges=tuple(ranges), owner=str(raw.get("owner", "")))


def _parse_listener(raw: Any, path: str, groups: set[str]) -> Listener:
    _mapping(raw, path)
    protocol = _choice(raw.get("protocol", HTTP), f"{path}.protocol", PROTOCOLS)
    certificates = []
    for i, item in enumerate(_list(raw, "certificates", path)):
        where = f"{path}.certificates[{i}]"
        certificates.append(Certificate(_text(item, "certFile", where),
                                        _text(item, "keyFile", where)))
    if protocol == HTTPS and not certificates:
        raise AlbConfigError(f"{path}.certificates", "an HTTPS listener needs a certificate")
    rules = tuple(_parse_rule(item, f"{path}.rules[{i}]", groups)
                  for i, item in enumerate(_list(raw, "rules", path)))
    _unique([r.priority for r in rules], f"{path}.rules", "priority")
    default = raw.get("defaultAction")
    return Listener(port=_port(raw.get("port"), f"{path}.port"), protocol=protocol,
                    default_action=NOT_FOUND if default is None else
                    _parse_action(default, f"{path}.defaultAction", groups),
                    rules=tuple(sorted(rules, key=lambda r: r.priority)),
                    certificates=tuple(certificates))


def _parse_rule(raw: Any, path: str, groups: set[str]) -> Rule:
    _mapping(raw, path)
    priority = raw.get("priority")
    if not isinstance(priority, int) or isinstance(priority, bool) \
            or not 1 <= priority <= MAX_PRIORITY:
        raise AlbConfigError(f"{path}.priority",
                             f"invalid value {priority!r}; allowed: 1-{MAX_PRIORITY}")
    hosts = tuple(_pattern(value, f"{path}.hosts[{i}]", _HOST_PATTERN, "a host name "
                           "pattern (letters, digits, '-', '.', '*', '?')")
                  for i, value in enumerate(_list(raw, "hosts", path)))
    paths = tuple(_pattern(value, f"{path}.paths[{i}]", _PATH_PATTERN,
                           "a path pattern starting with '/'")
                  for i, value in enumerate(_list(raw, "paths", path)))
    return Rule(priority=priority, hosts=hosts, paths=paths,
                action=_parse_action(raw.get("action"), f"{path}.action", groups),
                source=str(raw.get("source", "")))


def _parse_action(raw: Any, path: str, groups: set[str]) -> Action:
    _mapping(raw, path)
    kind = _choice(raw.get("type"), f"{path}.type", ACTIONS)
    if kind == FORWARD:
        name = _text(raw, "targetGroup", path)
        if name not in groups:
            raise AlbConfigError(f"{path}.targetGroup", f"no target group {name!r} in this "
                                 f"load balancer; have: {', '.join(sorted(groups)) or 'none'}")
        return Action(FORWARD, target_group=name)
    code = raw.get("statusCode")
    if kind == REDIRECT:
        if code not in (301, 302):
            raise AlbConfigError(f"{path}.statusCode",
                                 f"invalid value {code!r}; allowed: 301, 302")
        port = raw.get("port")
        return Action(REDIRECT, status_code=code,
                      protocol=_choice(raw.get("protocol", HTTPS), f"{path}.protocol",
                                       PROTOCOLS),
                      port=None if port is None else _port(port, f"{path}.port"))
    if not isinstance(code, int) or isinstance(code, bool) or not 200 <= code <= 599:
        raise AlbConfigError(f"{path}.statusCode", f"invalid value {code!r}; allowed: 200-599")
    return Action(FIXED_RESPONSE, status_code=code,
                  content_type=str(raw.get("contentType", "text/plain")),
                  body=str(raw.get("body", "")))


def _parse_target_group(raw: Any, path: str) -> TargetGroup:
    _mapping(raw, path)
    targets = []
    for i, item in enumerate(_list(raw, "targets", path)):
        where = f"{path}.targets[{i}]"
        _mapping(item, where)
        zone = item.get("zone")
        if zone is not None and (not isinstance(zone, str) or not zone):
            raise AlbConfigError(f"{where}.zone", "must be a non-empty string or null")
        targets.append(Target(address=_ip(item.get("address"), f"{where}.address"),
                              port=_port(item.get("port"), f"{where}.port"),
                              name=str(item.get("name", "")), zone=zone))
    _unique([t.endpoint for t in targets], f"{path}.targets", "address:port")
    hc = raw.get("healthCheck", {})
    where = f"{path}.healthCheck"
    _mapping(hc, where)
    matcher = str(hc.get("matcher", "200"))
    if not _MATCHER.match(matcher) or not all(
            200 <= low <= high <= 499 for low, high in matcher_ranges(matcher)):
        raise AlbConfigError(f"{where}.matcher", f"invalid value {matcher!r}; allowed: "
                             "HTTP codes 200-499 as '200', '200,202' or '200-299'")
    check_path = hc.get("path", "/")
    if not isinstance(check_path, str) or not check_path.startswith("/"):
        raise AlbConfigError(f"{where}.path", f"invalid value {check_path!r}; allowed: a "
                             "path starting with '/'")
    port = hc.get("port")
    check = HealthCheck(
        protocol=_choice(hc.get("protocol", HTTP), f"{where}.protocol", PROTOCOLS),
        port=None if port is None else _port(port, f"{where}.port"), path=check_path,
        interval=_positive(hc.get("interval", 15.0), f"{where}.interval"),
        timeout=_positive(hc.get("timeout", 5.0), f"{where}.timeout"),
        healthy_threshold=_count(hc.get("healthyThreshold", 2), f"{where}.healthyThreshold"),
        unhealthy_threshold=_count(hc.get("unhealthyThreshold", 2),
                                   f"{where}.unhealthyThreshold"),
        matcher=matcher)
    return TargetGroup(
        name=_text(raw, "name", path),
        protocol=_choice(raw.get("protocol", HTTP), f"{path}.protocol", PROTOCOLS),
        target_type=_choice(raw.get("targetType", "instance"), f"{path}.targetType",
                            TARGET_TYPES),
        targets=tuple(targets), health_check=check,
        algorithm=_choice(raw.get("algorithm", ROUND_ROBIN), f"{path}.algorithm", ALGORITHMS),
        source=str(raw.get("source", "")))


# --- field checks -------------------------------------------------------------------

def _mapping(raw: Any, path: str) -> None:
    if not isinstance(raw, dict):
        raise AlbConfigError(path, "must be a mapping")


def _list(raw: dict, key: str, path: str) -> list:
    value = raw.get(key, [])
    if not isinstance(value, list):
        raise AlbConfigError(f"{path}.{key}" if path else key, "must be a list")
    return value


def _unique(values: list, path: str, kind: str) -> None:
    seen = [v for i, v in enumerate(values) if v in values[:i]]
    if seen:
        raise AlbConfigError(path, f"duplicate {kind} {seen[0]!r}")


def _text(raw: Any, key: str, path: str) -> str:
    value = raw.get(key) if isinstance(raw, dict) else None
    if not isinstance(value, str) or not value:
        raise AlbConfigError(f"{path}.{key}", "required: a non-empty string")
    return value


def _pattern(value: Any, path: str, allowed: re.Pattern, what: str) -> str:
    if not isinstance(value, str) or not allowed.match(value) or len(value) > MAX_PATTERN:
        raise AlbConfigError(path, f"invalid value {value!r}; allowed: {what}, at most "
                             f"{MAX_PATTERN} characters")
    return value


def _count(value: Any, path: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 10:
        raise AlbConfigError(path, f"invalid value {value!r}; allowed: an integer 1-10")
    return value


# --- files --------------------------------------------------------------------------

def write_alb_config(path: Path, config: AlbConfig) -> None:
    """Atomically replace the config file (the agent reloads on change)."""
    write_json_atomically(path, alb_config_to_json(config))


def read_alb_config(path: Path) -> AlbConfig:
    """The config in the file; an empty one when there is no file yet."""
    return config_fields.read_json_config(path, AlbConfig(), parse_alb_config, error=AlbConfigError)
