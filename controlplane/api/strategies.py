"""Per-type behaviour: defaulting, validation, what create/update may change.

One :class:`Strategy` per resource type, as data; the generic flow lives in
``registry.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from controlplane.api import defaults, events
from controlplane.api import validation as v
from controlplane.api import validation_netpol as vn
from controlplane.api import validation_rbac as vr
from controlplane.api import validation_workloads as vw
from controlplane.api.errors import FieldError

Validator = Callable[[dict], list[FieldError]]
UpdateValidator = Callable[[dict, dict], list[FieldError]]


def _no_update_rules(new: dict, old: dict) -> list[FieldError]:
    return []


@dataclass(frozen=True)
class Strategy:
    default: Callable[[dict], dict]
    validate: Validator
    validate_update: UpdateValidator = _no_update_rules
    status_subresource: bool = True      # main endpoint ignores status changes
    reset_status_on_create: bool = True
    tracks_generation: bool = False      # metadata.generation bumps on spec change



STRATEGIES: dict[str, Strategy] = {
    "services": Strategy(defaults.service, v.validate_service, v.validate_service_update),
    "deployments": Strategy(defaults.deployment, vw.validate_deployment,
                            vw.validate_selector_update, tracks_generation=True),
    "replicasets": Strategy(defaults.replicaset, vw.validate_replicaset,
                            vw.validate_selector_update, tracks_generation=True),
    "pods": Strategy(defaults.pod, vw.validate_pod),
    "namespaces": Strategy(defaults.namespace, vw.validate_namespace),
    "nodes": Strategy(defaults.identity, vw.validate_node, reset_status_on_create=False),
    "endpoints": Strategy(defaults.endpoints, vw.validate_endpoints, status_subresource=False,
                          reset_status_on_create=False),
    "endpointslices": Strategy(defaults.endpointslice, vw.validate_endpointslice,
                               status_subresource=False, reset_status_on_create=False),
    "events": Strategy(defaults.identity, events.validate, status_subresource=False,
                       reset_status_on_create=False),
    # networking.k8s.io/v1 NetworkPolicy has no status (removed in Kubernetes 1.28):
    # generation starts at 1 and bumps on every spec change.
    "networkpolicies": Strategy(defaults.networkpolicy, vn.validate_networkpolicy,
                                vn.validate_networkpolicy_update, status_subresource=False,
                                reset_status_on_create=False, tracks_generation=True),
    # No status on ServiceAccounts and the RBAC kinds; a binding's roleRef is immutable.
    "serviceaccounts": Strategy(defaults.serviceaccount, vr.validate_serviceaccount,
                                status_subresource=False, reset_status_on_create=False),
    "roles": Strategy(defaults.rbac_role, vr.validate_role, status_subresource=False,
                      reset_status_on_create=False),
    "clusterroles": Strategy(defaults.rbac_role, vr.validate_clusterrole,
                             status_subresource=False, reset_status_on_create=False),
    "rolebindings": Strategy(defaults.rbac_binding, vr.validate_rolebinding,
                             vr.validate_binding_update, status_subresource=False,
                             reset_status_on_create=False),
    "clusterrolebindings": Strategy(defaults.rbac_binding, vr.validate_clusterrolebinding,
                                    vr.validate_binding_update, status_subresource=False,
                                    reset_status_on_create=False),
}


def spec_part(obj: dict) -> dict:
    """Everything but metadata and status: what bumps metadata.generation."""
    return {k: val for k, val in obj.items()
            if k not in ("metadata", "status", "kind", "apiVersion")}
