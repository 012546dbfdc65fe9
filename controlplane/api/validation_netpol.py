"""Validation of networking.k8s.io/v1 NetworkPolicies, with Kubernetes' own messages.

The policy agent trusts what the API stores, so every rule the real API server
enforces is enforced here: label selectors (operators, values, key and value
syntax), peers (exactly one of ipBlock or selectors), ipBlock CIDRs (strict
form, ``except`` a strict subset of ``cidr``), ports (protocol, number or
IANA name, ``endPort`` range) and policyTypes. Texts and field paths follow
pkg/apis/networking/validation and apimachinery's meta/v1 validation.

Pure functions over defaulted object dicts returning lists of FieldError.
"""

from __future__ import annotations

import ipaddress
import json

from controlplane.api.errors import FieldError, GoRaw, forbidden, invalid, required
from controlplane.api.validation import (
    port_name_errors,
    port_num_errors,
    validate_metadata,
)
from controlplane.api.validation_selector import validate_label_selector

NETPOL_PROTOCOLS = ("TCP", "UDP", "SCTP")         # in Kubernetes' order (not sorted)
POLICY_TYPES = ("Ingress", "Egress")
CIDR_MSG = "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"


def not_supported_in_order(value, field: str, allowed: tuple[str, ...]) -> FieldError:
    """field.NotSupported with the supported values listed as given (Go does not sort)."""
    listed = ", ".join(json.dumps(a) for a in allowed)
    return FieldError("NotSupported", field, value, f"supported values: {listed}")


# ---- CIDRs (IsValidCIDRForLegacyField with strict validation) -----------------

def _sloppy_network(value: str):
    """The network Go's ParseCIDRSloppy reads (leading zeros allowed), or None."""
    ip_text, sep, prefix = value.partition("/")
    if not sep or not prefix.isdigit() or not prefix.isascii() or "%" in ip_text:
        return None     # Go takes no IPv6 zone ("fe80::1%eth0") in a CIDR
    if "." in ip_text and ":" not in ip_text:
        octets = ip_text.split(".")
        if len(octets) != 4 or not all(o.isdigit() and o.isascii() for o in octets):
            return None
        ip_text = ".".join(str(int(o)) for o in octets)
    try:
        return ipaddress.ip_network(f"{ip_text}/{int(prefix)}", strict=False)
    except ValueError:
        return None


def cidr_errors(value) -> tuple[object, list[str]]:
    """(network or None, messages) for one CIDR value, as the API server judges it."""
    if not isinstance(value, str):
        return None, [CIDR_MSG]
    network = _sloppy_network(value)
    if network is None:
        return None, [CIDR_MSG]
    ip_text, _, prefix = value.partition("/")
    try:
        exact = ipaddress.ip_address(ip_text)
    except ValueError:
        return network, ["must not have leading 0s in IP or prefix length"]
    if prefix != str(int(prefix)):
        return network, ["must not have leading 0s in IP or prefix length"]
    if isinstance(exact, ipaddress.IPv6Address) and exact.ipv4_mapped is not None:
        return network, ["must not have an IPv4-mapped IPv6 address"]
    if exact != network.network_address:
        return network, ["must not have bits set beyond the prefix length"]
    return network, []


def validate_ip_block(block, path: str) -> list[FieldError]:
    if not isinstance(block, dict):
        return [invalid(block, path, "must be an object")]
    cidr = block.get("cidr", "")
    if not cidr:
        return [required(f"{path}.cidr")]
    network, msgs = cidr_errors(cidr)
    errs = [invalid(cidr, f"{path}.cidr", m) for m in msgs]
    if network is None:
        return errs
    excepts = block.get("except") or []
    for i, text in enumerate(excepts if isinstance(excepts, list) else [excepts]):
        epath = f"{path}.except[{i}]"
        inner, msgs = cidr_errors(text)
        errs += [invalid(text, epath, m) for m in msgs]
        if inner is None:
            continue
        if (inner.version != network.version or inner.network_address not in network
                or network.prefixlen >= inner.prefixlen):
            errs.append(invalid(text, epath, "must be a strict subset of `cidr`"))
    return errs


# ---- rules --------------------------------------------------------------------

def validate_port(port, path: str) -> list[FieldError]:
    """A NetworkPolicyPort (after defaulting: protocol is set)."""
    if not isinstance(port, dict):
        return [invalid(port, path, "must be an object")]
    errs = []
    proto = port.get("protocol")
    if proto is not None and proto not in NETPOL_PROTOCOLS:
        errs.append(not_supported_in_order(proto, f"{path}.protocol", NETPOL_PROTOCOLS))
    number, end = port.get("port"), port.get("endPort")
    if number is None:
        if end is not None:
            errs.append(invalid(end, f"{path}.endPort",
                                "may not be specified when `port` is not specified"))
    elif isinstance(number, str):
        if end is not None:
            errs.append(invalid(end, f"{path}.endPort",
                                "may not be specified when `port` is non-numeric"))
        errs += [invalid(number, f"{path}.port", m) for m in port_name_errors(number)]
    elif isinstance(number, int) and not isinstance(number, bool):
        errs += [invalid(number, f"{path}.port", m) for m in port_num_errors(number)]
        if end is not None:
            if isinstance(end, int) and not isinstance(end, bool) and end < number:
                errs.append(invalid(end, f"{path}.endPort",
                                    "must be greater than or equal to `port`"))
            errs += [invalid(end, f"{path}.endPort", m) for m in port_num_errors(end)]
    else:
        errs.append(invalid(number, f"{path}.port", "must be an integer or a string"))
    return errs


def validate_peer(peer, path: str) -> list[FieldError]:
    """A NetworkPolicyPeer: exactly one of ipBlock, or pod and/or namespace selectors."""
    if not isinstance(peer, dict):
        return [invalid(peer, path, "must be an object")]
    errs, count = [], 0
    for key in ("podSelector", "namespaceSelector"):
        if key in peer:
            count += 1
            errs += validate_label_selector(peer[key], f"{path}.{key}")
    if "ipBlock" in peer:
        count += 1
        errs += validate_ip_block(peer["ipBlock"], f"{path}.ipBlock")
    if count == 0:
        errs.append(required(path, "must specify a peer"))
    elif count > 1 and "ipBlock" in peer:
        errs.append(forbidden(path, "may not specify both ipBlock and another peer"))
    return errs


def _validate_rules(spec: dict, direction: str, peers_key: str) -> list[FieldError]:
    rules = spec.get(direction) or []
    if not isinstance(rules, list):
        return [invalid(rules, f"spec.{direction}", "must be a list")]
    errs = []
    for i, rule in enumerate(rules):
        rpath = f"spec.{direction}[{i}]"
        if not isinstance(rule, dict):
            errs.append(invalid(rule, rpath, "must be an object"))
            continue
        for key, check in (("ports", validate_port), (peers_key, validate_peer)):
            items = rule.get(key) or []
            if not isinstance(items, list):
                errs.append(invalid(items, f"{rpath}.{key}", "must be a list"))
                continue
            for j, item in enumerate(items):
                errs += check(item, f"{rpath}.{key}[{j}]")
    return errs


def _go_policy_types(types: list) -> GoRaw:
    return GoRaw("[]networking.PolicyType{" + ", ".join(json.dumps(str(t)) for t in types) + "}")


def validate_policy_types(types) -> list[FieldError]:
    if not isinstance(types, list):
        return [invalid(types, "spec.policyTypes", "must be a list")]
    if len(types) > len(POLICY_TYPES):
        return [invalid(_go_policy_types(types), "spec.policyTypes",
                        "may not specify more than two policyTypes")]
    # Kubernetes accepts a repeated type (["Ingress", "Ingress"]); so do we.
    return [not_supported_in_order(t, f"spec.policyTypes[{i}]", POLICY_TYPES)
            for i, t in enumerate(types) if t not in POLICY_TYPES]


def validate_networkpolicy(np: dict) -> list[FieldError]:
    """ValidateNetworkPolicy on a defaulted NetworkPolicy."""
    errs = validate_metadata(np, "subdomain", True)
    spec = np.get("spec")
    if not isinstance(spec, dict):
        return errs + [invalid(spec, "spec", "must be an object")]
    errs += validate_label_selector(spec.get("podSelector", {}), "spec.podSelector")
    errs += _validate_rules(spec, "ingress", "from")
    errs += _validate_rules(spec, "egress", "to")
    errs += validate_policy_types(spec.get("policyTypes") or [])
    return errs


def validate_networkpolicy_update(new: dict, old: dict) -> list[FieldError]:
    """ValidateNetworkPolicyUpdate adds nothing to the create rules: no spec field is
    immutable (the registry runs validate_networkpolicy on updates too)."""
    return []

