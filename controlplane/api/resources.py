"""The resource types the API server serves, as data.

Discovery, routing, tables and storage all read this one table, so adding a
type is one line here plus its strategy.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ResourceType:
    plural: str
    singular: str
    kind: str
    group: str          # "" for the core group
    version: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()   # "status", "scale"; pods' streaming ones
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ()          # empty: every verb of VERBS
    virtual: bool = False                # not stored: a create-only review (rbac/reviews.py)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def list_kind(self) -> str:
        return self.kind + "List"


RBAC_GROUP = "rbac.authorization.k8s.io"
VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]

RESOURCES: tuple[ResourceType, ...] = (
    ResourceType("namespaces", "namespace", "Namespace", "", "v1", False, ("ns",), ("status",)),
    ResourceType("nodes", "node", "Node", "", "v1", False, ("no",), ("status",)),
    ResourceType("pods", "pod", "Pod", "", "v1", True, ("po",),
                 ("status", "exec", "attach", "portforward", "log"), ("all",)),
    ResourceType("services", "service", "Service", "", "v1", True, ("svc",), ("status",), ("all",)),
    ResourceType("endpoints", "endpoints", "Endpoints", "", "v1", True, ("ep",)),
    ResourceType("events", "event", "Event", "", "v1", True, ("ev",)),
    ResourceType("deployments", "deployment", "Deployment", "apps", "v1", True, ("deploy",),
                 ("status", "scale"), ("all",)),
    ResourceType("replicasets", "replicaset", "ReplicaSet", "apps", "v1", True, ("rs",),
                 ("status", "scale"), ("all",)),
    ResourceType("statefulsets", "statefulset", "StatefulSet", "apps", "v1", True, ("sts",),
                 ("status", "scale"), ("all",)),
    ResourceType("daemonsets", "daemonset", "DaemonSet", "apps", "v1", True, ("ds",),
                 ("status",), ("all",)),
    ResourceType("controllerrevisions", "controllerrevision", "ControllerRevision", "apps", "v1",
                 True),
    ResourceType("replicationcontrollers", "replicationcontroller", "ReplicationController", "",
                 "v1", True, ("rc",), ("status", "scale"), ("all",)),
    ResourceType("jobs", "job", "Job", "batch", "v1", True, (), ("status",), ("all",)),
    ResourceType("cronjobs", "cronjob", "CronJob", "batch", "v1", True, ("cj",), ("status",),
                 ("all",)),
    ResourceType("leases", "lease", "Lease", "coordination.k8s.io", "v1", True),
    ResourceType("endpointslices", "endpointslice", "EndpointSlice", "discovery.k8s.io", "v1",
                 True),
    ResourceType("networkpolicies", "networkpolicy", "NetworkPolicy", "networking.k8s.io", "v1",
                 True, ("netpol",)),
    ResourceType("ingresses", "ingress", "Ingress", "networking.k8s.io", "v1", True, ("ing",),
                 ("status",)),
    ResourceType("ingressclasses", "ingressclass", "IngressClass", "networking.k8s.io", "v1",
                 False),
    # The same Events as core/v1 "events", in the events.k8s.io shape (api/events.py).
    ResourceType("events", "event", "Event", "events.k8s.io", "v1", True),
    ResourceType("serviceaccounts", "serviceaccount", "ServiceAccount", "", "v1", True, ("sa",),
                 ("token",)),
    ResourceType("configmaps", "configmap", "ConfigMap", "", "v1", True, ("cm",)),
    ResourceType("secrets", "secret", "Secret", "", "v1", True),
    ResourceType("roles", "role", "Role", RBAC_GROUP, "v1", True),
    ResourceType("clusterroles", "clusterrole", "ClusterRole", RBAC_GROUP, "v1", False),
    ResourceType("rolebindings", "rolebinding", "RoleBinding", RBAC_GROUP, "v1", True),
    ResourceType("clusterrolebindings", "clusterrolebinding", "ClusterRoleBinding", RBAC_GROUP,
                 "v1", False),
    # Create-only reviews: answered, never stored (controlplane/api/rbac/reviews.py).
    ResourceType("selfsubjectaccessreviews", "selfsubjectaccessreview",
                 "SelfSubjectAccessReview", "authorization.k8s.io", "v1", False,
                 verbs=("create",), virtual=True),
    ResourceType("selfsubjectrulesreviews", "selfsubjectrulesreview", "SelfSubjectRulesReview",
                 "authorization.k8s.io", "v1", False, verbs=("create",), virtual=True),
    ResourceType("subjectaccessreviews", "subjectaccessreview", "SubjectAccessReview",
                 "authorization.k8s.io", "v1", False, verbs=("create",), virtual=True),
    ResourceType("selfsubjectreviews", "selfsubjectreview", "SelfSubjectReview",
                 "authentication.k8s.io", "v1", False, verbs=("create",), virtual=True),
)

BY_GROUP_VERSION: dict[tuple[str, str], dict[str, ResourceType]] = {}
for _rt in RESOURCES:
    BY_GROUP_VERSION.setdefault((_rt.group, _rt.version), {})[_rt.plural] = _rt

BY_KIND: dict[tuple[str, str], ResourceType] = {(rt.api_version, rt.kind): rt for rt in RESOURCES}
# The first type of a plural is where its objects are stored (core/v1 for "events").
BY_PLURAL: dict[str, ResourceType] = {}
for _rt in RESOURCES:
    if not _rt.virtual:
        BY_PLURAL.setdefault(_rt.plural, _rt)


def lookup(group: str, version: str, plural: str) -> ResourceType | None:
    return BY_GROUP_VERSION.get((group, version), {}).get(plural)
