"""Validation of coordination.k8s.io/v1 Leases (node heartbeats, leader election).

As pkg/apis/coordination/validation: a DNS subdomain name, a positive
``leaseDurationSeconds``, non-negative ``leaseTransitions``, a ``strategy``
of the known ones and ``preferredHolder`` only with a strategy. Times are
MicroTime strings (RFC 3339 with microseconds) when set.
"""

from __future__ import annotations

import datetime as dt

from controlplane.api.errors import FieldError, forbidden, invalid, not_supported
from controlplane.api.validation import validate_metadata

STRATEGIES = ("OldestEmulationVersion",)


def _micro_time(value, path: str) -> list[FieldError]:
    if value is None:
        return []
    try:
        dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return [invalid(value, path, "must be an RFC 3339 time, e.g. "
                                     "2006-01-02T15:04:05.000000Z")]
    return []


def validate_lease(lease: dict) -> list[FieldError]:
    errs = validate_metadata(lease, "subdomain", True)
    spec = lease.get("spec")
    if spec is None:
        return errs
    if not isinstance(spec, dict):
        return errs + [invalid(spec, "spec", "must be an object")]
    duration = spec.get("leaseDurationSeconds")
    if duration is not None and (not isinstance(duration, int) or duration <= 0):
        errs.append(invalid(duration, "spec.leaseDurationSeconds", "must be greater than 0"))
    transitions = spec.get("leaseTransitions")
    if transitions is not None and (not isinstance(transitions, int) or transitions < 0):
        errs.append(invalid(transitions, "spec.leaseTransitions",
                            "must be greater than or equal to 0"))
    strategy = spec.get("strategy")
    if strategy is not None and strategy not in STRATEGIES:
        errs.append(not_supported(strategy, "spec.strategy", STRATEGIES))
    if spec.get("preferredHolder") and not strategy:
        errs.append(forbidden("spec.preferredHolder",
                              "may only be specified if `strategy` is defined"))
    for key in ("acquireTime", "renewTime"):
        errs += _micro_time(spec.get(key), f"spec.{key}")
    return errs
