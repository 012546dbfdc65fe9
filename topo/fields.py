"""Field checks for the cluster spec: each names the failing field and what is
allowed (SpecError), so topo/spec.py reads as the spec's structure."""
from __future__ import annotations

import ipaddress
import re
from typing import Any

from base.errors import SpecError

LINK_LOCAL = ipaddress.ip_network("169.254.0.0/16")
LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")

Net = ipaddress.IPv4Network
Addr = ipaddress.IPv4Address


def mapping(raw: Any, path: str, allowed: tuple[str, ...]) -> dict:
    if not isinstance(raw, dict):
        raise SpecError(path, f"must be a mapping with fields {', '.join(allowed)}")
    for key in raw:
        if key not in allowed:
            field = key if path == "spec" else f"{path}.{key}"
            raise SpecError(field, f"unknown field; allowed: {', '.join(allowed)}")
    return raw


def choice(raw: Any, path: str, allowed: tuple[str, ...]) -> str:
    if raw not in allowed:
        raise SpecError(path, f"unsupported value {raw!r}; allowed: {', '.join(allowed)}")
    return raw


def name(raw: Any, path: str, *, subdomain: bool) -> str:
    kind = "DNS-1123 subdomain" if subdomain else "DNS-1123 label"
    pattern = _DNS1123_SUBDOMAIN if subdomain else _DNS1123_LABEL
    if not isinstance(raw, str) or not raw:
        raise SpecError(path, f"required: a {kind} (lowercase letters, digits, '-')")
    if len(raw) > 63 or not pattern.match(raw):
        raise SpecError(path, f"invalid value {raw!r}: a {kind} must consist of lowercase "
                        "alphanumeric characters or '-', start and end with an "
                        "alphanumeric character, and be at most 63 characters")
    return raw


def cidr(raw: Any, path: str) -> Net:
    try:
        net = ipaddress.ip_network(str(raw), strict=True)
    except ValueError as err:
        raise SpecError(path, f"invalid value {raw!r}: {err}; allowed: an IPv4 CIDR "
                        "with no host bits, e.g. 10.0.0.0/16") from err
    if net.version != 4:
        raise SpecError(path, f"invalid value {raw!r}; allowed: an IPv4 CIDR")
    if net.overlaps(LINK_LOCAL) or net.overlaps(LOOPBACK):
        raise SpecError(path, f"{net} overlaps link-local or loopback space")
    return net


def address(raw: Any, path: str, within: Net, reserved: set, where: str = "") -> Addr:
    """An IPv4 address inside `within` (described as `where`, if given) and not reserved."""
    addr = ipv4(raw, path, f"in {where or within}")
    if addr not in within:
        raise SpecError(path, f"{addr} is outside {where or within}")
    if addr in reserved:
        raise SpecError(path, f"{addr} is reserved "
                        f"({', '.join(sorted(str(r) for r in reserved))})")
    return addr


def ipv4(raw: Any, path: str, allowed: str = "") -> Addr:
    try:
        return ipaddress.IPv4Address(str(raw))
    except ValueError as err:
        raise SpecError(path, f"invalid value {raw!r}; allowed: an IPv4 address"
                        + (f" {allowed}" if allowed else "")) from err


def port_range(raw: Any, path: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", str(raw))
    if not match:
        raise SpecError(path, f"invalid value {raw!r}; allowed: LOW-HIGH, e.g. 30000-32767")
    low, high = int(match[1]), int(match[2])
    if not 1024 <= low < high <= 65535:
        raise SpecError(path, f"invalid range {low}-{high}; "
                        "allowed: 1024 <= LOW < HIGH <= 65535")
    return low, high


def port_spec(raw: Any, path: str) -> tuple[int, str]:
    match = re.fullmatch(r"(\d+)(?:/(TCP|UDP))?", str(raw))
    if not match or not 1 <= int(match[1]) <= 65535:
        raise SpecError(path, f"invalid value {raw!r}; allowed: PORT[/TCP|/UDP], "
                        "e.g. 5432/TCP, with 1 <= PORT <= 65535")
    return int(match[1]), match[2] or "TCP"


_LATENCY = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(us|ms|s)\s*")
_LATENCY_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0}
MAX_LATENCY = 1.0     # seconds


def latency(raw: Any, path: str) -> float:
    """A delay such as "1ms", "500us" or "0.2s", in seconds (0 < delay <= 1 s)."""
    match = _LATENCY.fullmatch(raw) if isinstance(raw, str) else None
    seconds = float(match[1]) * _LATENCY_UNITS[match[2]] if match else 0.0
    if not match or not 0 < seconds <= MAX_LATENCY:
        raise SpecError(path, f"invalid value {raw!r}; allowed: a delay with a unit, "
                        "us, ms or s, greater than 0 and at most 1s, e.g. 1ms or 500us")
    return seconds


def ec2_name(addr: Addr) -> str:
    """An EC2 instance's private DNS host name: ip-172-31-17-4 for 172.31.17.4."""
    return "ip-" + str(addr).replace(".", "-")


def aws_reserved(subnet: Net) -> set:
    """AWS reserves the first four addresses and the last of every subnet;
    the lab's load balancer has base + 5."""
    base = subnet.network_address
    return {base, base + 1, base + 2, base + 3, base + 5, subnet.broadcast_address}
