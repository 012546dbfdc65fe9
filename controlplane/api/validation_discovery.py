"""Validation of an EndpointSlice endpoint's topology: `zone` and `hints`.

As pkg/apis/discovery/validation does it in Kubernetes 1.34: `zone` is any
string; `hints.forZones` holds at most 8 entries, each a distinct valid label
value; `hints.forNodes` at most 8, each a distinct valid node name (a DNS
subdomain).  Too many entries stop the checks of that list.  Messages are the
apiserver's (``endpoints[0].hints.forZones: Too many: 9: must have at most 8
items``).
"""

from __future__ import annotations

from dataclasses import dataclass

from controlplane.api.errors import FieldError, duplicate, invalid
from controlplane.api.validation import is_dns1123_subdomain, is_label_value

MAX_ZONE_HINTS = 8
MAX_NODE_HINTS = 8


@dataclass(frozen=True)
class TooMany(FieldError):
    """field.TooMany (the shared FieldError kinds have no such type)."""

    def body(self) -> str:
        return f"Too many: {self.value}: {self.detail}"

    def cause(self) -> dict:
        return {"reason": "FieldValueTooMany", "message": self.body(), "field": self.field}


def too_many(field: str, actual: int, most: int) -> FieldError:
    noun = "item" if most == 1 else "items"
    return TooMany("TooMany", field, actual, f"must have at most {most} {noun}")


def _validate_targets(entries, path: str, most: int, rule) -> list[FieldError]:
    if not isinstance(entries, list):
        return [invalid(entries, path, "must be a list")]
    if len(entries) > most:
        return [too_many(path, len(entries), most)]
    errs, seen = [], set()
    for i, entry in enumerate(entries):
        where = f"{path}[{i}].name"
        name = entry.get("name", "") if isinstance(entry, dict) else entry
        if not isinstance(name, str):
            errs.append(invalid(name, where, "must be a string"))
            continue
        if name in seen:
            errs.append(duplicate(name, where))
        seen.add(name)
        errs += [invalid(name, where, m) for m in rule(name)]
    return errs


def validate_endpoint_topology(endpoint: dict, path: str) -> list[FieldError]:
    """The `zone` and `hints` of one endpoint at `path` (e.g. ``endpoints[0]``)."""
    errs = []
    zone = endpoint.get("zone")
    if zone is not None and not isinstance(zone, str):
        errs.append(invalid(zone, f"{path}.zone", "must be a string"))
    hints = endpoint.get("hints")
    if hints is None:
        return errs
    if not isinstance(hints, dict):
        return errs + [invalid(hints, f"{path}.hints", "must be an object")]
    zones = hints.get("forZones")
    if zones is not None:
        zone_errs = _validate_targets(zones, f"{path}.hints.forZones", MAX_ZONE_HINTS,
                                      is_label_value)
        errs += zone_errs
        if any(isinstance(e, TooMany) for e in zone_errs):
            return errs
    nodes = hints.get("forNodes")
    if nodes is not None:
        errs += _validate_targets(nodes, f"{path}.hints.forNodes", MAX_NODE_HINTS,
                                  is_dns1123_subdomain)
    return errs
