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


def address(raw: Any, path: str, within: Net, reserved: set) -> Addr:
    try:
        addr = ipaddress.IPv4Address(str(raw))
    except ValueError as err:
        raise SpecError(path, f"invalid value {raw!r}; allowed: an IPv4 address "
                        f"in {within}") from err
    if addr not in within:
        raise SpecError(path, f"{addr} is outside {within}")
    if addr in reserved:
        raise SpecError(path, f"{addr} is reserved "
                        f"({', '.join(sorted(str(r) for r in reserved))})")
    return addr
