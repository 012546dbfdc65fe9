"""Per-type behaviour: defaulting, validation, what create/update may change.

One :class:`Strategy` per resource type, as data; the generic flow lives in
``registry.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from controlplane.api import admission, defaults, defaults_workloads, events
from controlplane.api import validation as v
from controlplane.api import validation_apps as va
from controlplane.api import validation_batch as vb
from controlplane.api import validation_config as vc
from controlplane.api import validation_ingress as vi
from controlplane.api import validation_lease as vl
from controlplane.api import validation_netpol as vn
from controlplane.api import validation_rbac as vr
from controlplane.api import validation_workloads as vw
from controlplane.api.errors import FieldError

Validator = Callable[[dict], list[FieldError]]
UpdateValidator = Callable[[dict, dict], list[FieldError]]


def _no_update_rules(new: dict, old: dict) -> list[FieldError]:
    return []


def _no_create_rules(obj: dict) -> list[FieldError]:
    return []


@dataclass(frozen=True)
class Strategy:
    default: Callable[[dict], dict]
    validate: Validator
    validate_update: UpdateValidator = _no_update_rules
    status_subresource: bool = True      # main endpoint ignores status changes
    reset_status_on_create: bool = True
    tracks_generation: bool = False      # metadata.generation bumps on spec change
    validate_create: Validator = _no_create_rules    # rules of create only
    # Create-time mutating admission that reads other objects (obj, store) -> obj,
    # after defaulting and before validation (admission.py).
    admit: Callable | None = None


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
    # networking.k8s.io/v1 Ingress: status written by its controller through
    # ingresses/status; the default IngressClass filled in on create (admission.py).
    "ingresses": Strategy(defaults.ingress, vi.validate_ingress, vi.validate_ingress_update,
                          tracks_generation=True, validate_create=vi.validate_ingress_create,
                          admit=admission.admit_ingress),
    # IngressClass has no status; its controller is immutable.
    "ingressclasses": Strategy(defaults.ingressclass, vi.validate_ingressclass,
                               vi.validate_ingressclass_update, status_subresource=False,
                               reset_status_on_create=False, tracks_generation=True),
    # No status on ServiceAccounts and the RBAC kinds; a binding's roleRef is immutable.
    "serviceaccounts": Strategy(defaults.serviceaccount, vr.validate_serviceaccount,
                                status_subresource=False, reset_status_on_create=False),
    # No status on ConfigMaps and Secrets; `immutable: true` freezes their contents.
    "configmaps": Strategy(defaults.configmap, vc.validate_configmap,
                           vc.validate_configmap_update, status_subresource=False,
                           reset_status_on_create=False),
    "secrets": Strategy(defaults.secret, vc.validate_secret, vc.validate_secret_update,
                        status_subresource=False, reset_status_on_create=False),
    # apps/v1, batch/v1 and core/v1 workloads with a status subresource and a generation.
    "statefulsets": Strategy(defaults_workloads.statefulset, va.validate_statefulset,
                             va.validate_statefulset_update, tracks_generation=True),
    "daemonsets": Strategy(defaults_workloads.daemonset, va.validate_daemonset,
                           va.validate_selector_immutable, tracks_generation=True),
    "replicationcontrollers": Strategy(defaults_workloads.replicationcontroller,
                                       va.validate_replicationcontroller, tracks_generation=True),
    "jobs": Strategy(defaults_workloads.job, vb.validate_job, vb.validate_job_update,
                     tracks_generation=True),
    "cronjobs": Strategy(defaults_workloads.cronjob, vb.validate_cronjob,
                         tracks_generation=True),
    # Plain data: no status, no generation; a revision's data never changes.
    "controllerrevisions": Strategy(defaults_workloads.controllerrevision,
                                    va.validate_controllerrevision,
                                    va.validate_controllerrevision_update,
                                    status_subresource=False, reset_status_on_create=False),
    "leases": Strategy(defaults_workloads.lease, vl.validate_lease, status_subresource=False,
                       reset_status_on_create=False),
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
