"""Pure: the AWS Load Balancer Controller's Ingress annotations, parsed as it parses them.

Annotations are strings under ``alb.ingress.kubernetes.io/``; the ones a target
group reads (target type, health check, backend protocol, target group
attributes) may sit on the backend Service as well and the Service's win, as
the controller merges them. Defaults are the controller's: scheme
``internal``, target type ``instance``, listen ports ``[{"HTTP": 80}]`` (or
``[{"HTTPS": 443}]`` when the Ingress brings a certificate: in the lab its TLS
Secret stands in for ``certificate-arn``), health checks HTTP ``/`` on the
traffic port every 15 s, 5 s timeout, 2 healthy and 2 unhealthy, success code
200, round robin. A value the controller refuses raises AlbProblem with the
controller's words; ``deploy=True`` marks what the ELBv2 API itself would
refuse (FailedDeployModel rather than FailedBuildModel).
"""
from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass

from base.alb_api import (
    HTTP,
    HTTPS,
    INTERNAL,
    INTERNET_FACING,
    LEAST_OUTSTANDING,
    ROUND_ROBIN,
    matcher_ranges,
)
from base.errors import SvclabError

PREFIX = "alb.ingress.kubernetes.io/"
GROUP_NAME, GROUP_ORDER = PREFIX + "group.name", PREFIX + "group.order"
SCHEME, TARGET_TYPE = PREFIX + "scheme", PREFIX + "target-type"
LISTEN_PORTS, SSL_REDIRECT = PREFIX + "listen-ports", PREFIX + "ssl-redirect"
CERTIFICATE_ARN, INBOUND_CIDRS = PREFIX + "certificate-arn", PREFIX + "inbound-cidrs"
LB_NAME, LB_ATTRIBUTES = PREFIX + "load-balancer-name", PREFIX + "load-balancer-attributes"
TG_ATTRIBUTES, BACKEND_PROTOCOL = PREFIX + "target-group-attributes", PREFIX + "backend-protocol"
CHECK_PATH, CHECK_PORT = PREFIX + "healthcheck-path", PREFIX + "healthcheck-port"
CHECK_PROTOCOL = PREFIX + "healthcheck-protocol"
CHECK_INTERVAL = PREFIX + "healthcheck-interval-seconds"
CHECK_TIMEOUT = PREFIX + "healthcheck-timeout-seconds"
HEALTHY, UNHEALTHY = PREFIX + "healthy-threshold-count", PREFIX + "unhealthy-threshold-count"
SUCCESS_CODES = PREFIX + "success-codes"
TRAFFIC_PORT = "traffic-port"
GROUP_NAME_RE = re.compile(r"^([a-z0-9][-a-z0-9.]*)?[a-z0-9]$")
MIN_ORDER, MAX_ORDER = -1000, 1000
INT_RE = re.compile(r"^[+-]?\d+$")
# ELBv2's limits on a target group's health check (seconds, counts).
CHECK_LIMITS = {"interval": (5, 300), "timeout": (2, 120), "healthy": (2, 10),
                "unhealthy": (2, 10)}


class AlbProblem(SvclabError):
    """What the controller cannot build (an Event on the group's Ingresses)."""

    def __init__(self, message: str, deploy: bool = False):
        super().__init__(message)
        self.message = message
        self.deploy = deploy        # ELBv2 refused it (FailedDeployModel)


@dataclass(frozen=True)
class CheckSettings:
    """A target group's health check as annotated, in AWS's seconds."""

    protocol: str = HTTP
    port: str = TRAFFIC_PORT        # "traffic-port", a number or a Service port name
    path: str = "/"
    interval: int = 15
    timeout: int = 5
    healthy: int = 2
    unhealthy: int = 2
    matcher: str = "200"


@dataclass(frozen=True)
class TargetSettings:
    """What a target group reads: Service annotations over the Ingress's."""

    target_type: str = "instance"
    protocol: str = HTTP
    check: CheckSettings = CheckSettings()
    algorithm: str = ROUND_ROBIN


def value(annotations: dict, key: str) -> str | None:
    raw = (annotations or {}).get(key)
    return None if raw is None else str(raw).strip()


def parse_int(annotations: dict, key: str, default: int) -> int:
    raw = value(annotations, key)
    if raw is None:
        return default
    if not INT_RE.match(raw):
        raise AlbProblem(f'failed to parse annotation "{key}": strconv.ParseInt: parsing '
                         f'"{raw}": invalid syntax')
    return int(raw)


def string_list(annotations: dict, key: str) -> list[str]:
    raw = value(annotations, key)
    return [] if raw is None else [part.strip() for part in raw.split(",") if part.strip()]


def string_map(annotations: dict, key: str) -> dict[str, str]:
    out = {}
    for part in string_list(annotations, key):
        name, sep, val = part.partition("=")
        if not sep:
            raise AlbProblem(f"failed to parse stringMap annotation, {key}: "
                             f"{value(annotations, key)}")
        out[name.strip()] = val.strip()
    return out


def group_of(ingress: dict) -> tuple[str, bool]:
    """(group id, explicit): the group.name annotation, or the Ingress itself."""
    meta = ingress["metadata"]
    name = value(meta.get("annotations"), GROUP_NAME)
    if name is None:
        return f"{meta['namespace']}/{meta['name']}", False
    if not GROUP_NAME_RE.match(name):
        raise AlbProblem("invalid ingress group: groupName must consist of lower case "
                         "alphanumeric characters, '-' or '.', and must start and end with an "
                         "alphanumeric character")
    if len(name) > 63:
        raise AlbProblem("invalid ingress group: groupName must be no more than 63 characters")
    return name, True


def group_order(ingress: dict) -> int:
    meta = ingress["metadata"]
    order = parse_int(meta.get("annotations"), GROUP_ORDER, 0)
    if not MIN_ORDER <= order <= MAX_ORDER:
        raise AlbProblem(f"explicit Ingress group order must be within [{MIN_ORDER}:{MAX_ORDER}],"
                         f" Ingress: {meta['namespace']}/{meta['name']}, order: {order}")
    return order


def exclusive(members: list[dict], key: str, what: str) -> str | None:
    """An annotation the group's Ingresses must agree on (the controller's Exclusive)."""
    found = sorted({v for m in members
                    if (v := value(m["metadata"].get("annotations"), key)) is not None})
    if len(found) > 1:
        raise AlbProblem(f"conflicting {what}: [{' '.join(found)}]")
    return found[0] if found else None


def scheme(members: list[dict]) -> str:
    raw = exclusive(members, SCHEME, "scheme")
    if raw is None:
        return INTERNAL
    if raw not in (INTERNET_FACING, INTERNAL):
        raise AlbProblem(f"unknown scheme: {raw}")
    return raw


def listen_ports(ingress: dict, prefer_tls: bool) -> dict[int, str]:
    """port -> HTTP|HTTPS for one Ingress."""
    raw = value(ingress["metadata"].get("annotations"), LISTEN_PORTS)
    if raw is None:
        return {443: HTTPS} if prefer_tls else {80: HTTP}
    try:
        entries = json.loads(raw)
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise ValueError("expected a list of objects")
    except ValueError as err:
        raise AlbProblem(f"failed to parse listen-ports configuration: `{raw}`: {err}") from err
    if not entries:
        raise AlbProblem(f"empty listen-ports configuration: `{raw}`")
    ports: dict[int, str] = {}
    for entry in entries:
        for protocol, port in entry.items():
            if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
                raise AlbProblem(f"listen port must be within [1, 65535]: {port}")
            if protocol not in (HTTP, HTTPS):
                raise AlbProblem(f"listen protocol must be within [{HTTP}, {HTTPS}]: {protocol}")
            ports[port] = protocol
    return ports


def ssl_redirect(members: list[dict]) -> int | None:
    raw = exclusive(members, SSL_REDIRECT, "sslRedirect SSLPort")
    if raw is None:
        return None
    if not INT_RE.match(raw):
        raise AlbProblem(f'failed to parse annotation "{SSL_REDIRECT}": strconv.ParseInt: '
                         f'parsing "{raw}": invalid syntax')
    return int(raw)


def inbound_cidrs(members: list[dict]) -> tuple[str, ...]:
    """The security group's inbound ranges: every member's, 0.0.0.0/0 by default."""
    ranges: list[str] = []
    for member in members:
        meta = member["metadata"]
        for cidr in string_list(meta.get("annotations"), INBOUND_CIDRS):
            try:
                network = ipaddress.ip_network(cidr, strict=False)
            except ValueError as err:
                raise AlbProblem(f"invalid {INBOUND_CIDRS} settings on Ingress: "
                                 f"{meta['namespace']}/{meta['name']}: invalid CIDR address: "
                                 f"{cidr}") from err
            if network.version == 4 and str(network) not in ranges:
                ranges.append(str(network))
    return tuple(ranges) or ("0.0.0.0/0",)


def idle_timeout(members: list[dict]) -> float:
    """load-balancer-attributes idle_timeout.timeout_seconds (60 s by default)."""
    found = set()
    for member in members:
        attrs = string_map(member["metadata"].get("annotations"), LB_ATTRIBUTES)
        if "idle_timeout.timeout_seconds" in attrs:
            found.add(attrs["idle_timeout.timeout_seconds"])
    if len(found) > 1:
        raise AlbProblem(f"conflicting loadBalancerAttributes idle_timeout.timeout_seconds: "
                         f"{sorted(found)}")
    raw = found.pop() if found else "60"
    if not INT_RE.match(raw) or not 1 <= int(raw) <= 4000:
        raise AlbProblem(f"ValidationError: idle_timeout.timeout_seconds must be 1-4000, "
                         f"got {raw}", deploy=True)
    return float(raw)


def target_settings(service: dict, ingress: dict) -> TargetSettings:
    """The target group settings for one backend (Service annotations first)."""
    merged = {**(ingress["metadata"].get("annotations") or {}),
              **(service["metadata"].get("annotations") or {})}
    target_type = value(merged, TARGET_TYPE) or "instance"
    if target_type not in ("instance", "ip"):
        raise AlbProblem(f"unknown targetType: {target_type}")
    protocol = value(merged, BACKEND_PROTOCOL) or HTTP
    if protocol not in (HTTP, HTTPS):
        raise AlbProblem(f"backend protocol must be within [{HTTP}, {HTTPS}]: {protocol}")
    check_protocol = value(merged, CHECK_PROTOCOL) or protocol
    if check_protocol not in (HTTP, HTTPS):
        raise AlbProblem(f"healthCheckProtocol must be within [{HTTP}, {HTTPS}]")
    check = CheckSettings(
        protocol=check_protocol, port=value(merged, CHECK_PORT) or TRAFFIC_PORT,
        path=value(merged, CHECK_PATH) or "/",
        interval=parse_int(merged, CHECK_INTERVAL, 15),
        timeout=parse_int(merged, CHECK_TIMEOUT, 5),
        healthy=parse_int(merged, HEALTHY, 2), unhealthy=parse_int(merged, UNHEALTHY, 2),
        matcher=value(merged, SUCCESS_CODES) or "200")
    _check_limits(check)
    algorithm = string_map(merged, TG_ATTRIBUTES).get("load_balancing.algorithm.type",
                                                      ROUND_ROBIN)
    if algorithm not in (ROUND_ROBIN, LEAST_OUTSTANDING):
        raise AlbProblem(f"ValidationError: load_balancing.algorithm.type must be "
                         f"{ROUND_ROBIN} or {LEAST_OUTSTANDING}, got {algorithm}", deploy=True)
    return TargetSettings(target_type, protocol, check, algorithm)


def _check_limits(check: CheckSettings) -> None:
    for name, (low, high) in CHECK_LIMITS.items():
        number = getattr(check, name)
        if not low <= number <= high:
            raise AlbProblem(f"ValidationError: health check {name} must be {low}-{high}, "
                             f"got {number}", deploy=True)
    if check.timeout >= check.interval:
        raise AlbProblem("ValidationError: Health check interval must be greater than the "
                         "timeout.", deploy=True)
    if not check.path.startswith("/"):
        raise AlbProblem(f"ValidationError: health check path must start with '/': "
                         f"{check.path}", deploy=True)
    if not re.fullmatch(r"\d{3}(-\d{3})?(,\d{3}(-\d{3})?)*", check.matcher) or not all(
            200 <= low <= high <= 499 for low, high in matcher_ranges(check.matcher)):
        raise AlbProblem(f"ValidationError: success codes must be HTTP codes 200-499 as '200', "
                         f"'200,202' or '200-299', got {check.matcher}", deploy=True)
