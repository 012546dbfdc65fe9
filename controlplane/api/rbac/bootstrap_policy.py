"""The bootstrap RBAC policy a kubeadm cluster has, plus svclab's components' roles.

Created at API server start, and recreated if missing (kube-apiserver's
bootstrap reconciliation runs at start only; an object that exists is left as
it is). The user-facing roles (cluster-admin, admin, edit, view with their
``aggregate-to-*`` labels), discovery and basic-user roles for every
authenticated user, and one role and binding per svclab component identity
(see controlplane/identities.py): kubelets (system:node, for the group
system:nodes), kube-proxy (system:node-proxier), cluster DNS (system:coredns),
the controllers (system:controller:* aggregated into
system:kube-controller-manager), the scheduler, the cloud controller, the
AWS Load Balancer Controller and the NetworkPolicy agent (calico-node). Rules
are lists of plain dicts.
"""

from __future__ import annotations

from controlplane.api import errors
from controlplane.api.rbac.aggregation import aggregated_rules
from controlplane.api.registry import Registry
from controlplane.api.resources import BY_PLURAL

RBAC_GROUP = "rbac.authorization.k8s.io"
BOOTSTRAP_LABELS = {"kubernetes.io/bootstrapping": "rbac-defaults"}
AGGREGATE = "rbac.authorization.k8s.io/aggregate-to-"
TO_KCM = "svclab.io/aggregate-to-kube-controller-manager"

READ = ["get", "list", "watch"]
WRITE = ["create", "delete", "deletecollection", "patch", "update"]
EVENT_WRITE = ["create", "patch", "update"]


def r(groups, resources, verbs, names=()) -> dict:
    rule = {"verbs": list(verbs), "apiGroups": list(groups), "resources": list(resources)}
    if names:
        rule["resourceNames"] = list(names)
    return rule


def urls(paths, verbs=("get",)) -> dict:
    return {"verbs": list(verbs), "nonResourceURLs": list(paths)}


EVENTS = [r([""], ["events"], EVENT_WRITE), r(["events.k8s.io"], ["events"], EVENT_WRITE)]


def clusterrole(name: str, rules: list[dict], labels: dict | None = None,
                aggregate_from: str | None = None) -> dict:
    role = {"apiVersion": f"{RBAC_GROUP}/v1", "kind": "ClusterRole",
            "metadata": {"name": name, "labels": {**BOOTSTRAP_LABELS, **(labels or {})},
                         "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}},
            "rules": rules}
    if aggregate_from:
        role["aggregationRule"] = {"clusterRoleSelectors": [
            {"matchLabels": {aggregate_from: "true"}}]}
    return role


def subject(text: str) -> dict:
    """"User:x", "Group:x" or "ServiceAccount:ns:name"."""
    kind, _, name = text.partition(":")
    if kind == "ServiceAccount":
        namespace, _, sa = name.partition(":")
        return {"kind": kind, "name": sa, "namespace": namespace}
    return {"kind": kind, "apiGroup": RBAC_GROUP, "name": name}


def binding(name: str, role: str, *subjects: str) -> dict:
    return {"apiVersion": f"{RBAC_GROUP}/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": name, "labels": dict(BOOTSTRAP_LABELS),
                         "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}},
            "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": role},
            "subjects": [subject(s) for s in subjects]}


DISCOVERY_URLS = ["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi",
                  "/openapi/*", "/readyz", "/version", "/version/"]
PUBLIC_INFO_URLS = ["/healthz", "/livez", "/readyz", "/version", "/version/"]

VIEW = [
    r([""], ["pods", "pods/log", "pods/status", "services", "services/status", "endpoints",
             "serviceaccounts", "events", "namespaces/status", "configmaps",
             "replicationcontrollers", "replicationcontrollers/scale",
             "replicationcontrollers/status"],
      READ),
    r([""], ["namespaces"], READ),
    r(["apps"], ["deployments", "deployments/scale", "deployments/status", "replicasets",
                 "replicasets/scale", "replicasets/status"], READ),
    r(["apps"], ["controllerrevisions", "daemonsets", "daemonsets/status", "statefulsets",
                 "statefulsets/scale", "statefulsets/status"], READ),
    r(["batch"], ["cronjobs", "cronjobs/status", "jobs", "jobs/status"], READ),
    r(["discovery.k8s.io"], ["endpointslices"], READ),
    r(["networking.k8s.io"], ["ingresses", "ingresses/status", "networkpolicies"], READ),
    r(["events.k8s.io"], ["events"], READ),
]
EDIT = [
    r([""], ["pods/attach", "pods/exec", "pods/portforward", "pods/proxy", "secrets",
             "services/proxy"], READ),
    r([""], ["serviceaccounts"], ["impersonate"]),
    r([""], ["pods", "pods/attach", "pods/exec", "pods/portforward", "pods/proxy"], WRITE),
    r([""], ["pods/eviction"], ["create"]),
    r([""], ["configmaps", "endpoints", "events", "replicationcontrollers",
             "replicationcontrollers/scale", "secrets", "serviceaccounts", "services",
             "services/proxy"], WRITE),
    r([""], ["serviceaccounts/token"], ["create"]),
    r(["apps"], ["daemonsets", "deployments", "deployments/rollback", "deployments/scale",
                 "replicasets", "replicasets/scale", "statefulsets", "statefulsets/scale"],
      WRITE),
    r(["batch"], ["cronjobs", "jobs"], WRITE),
    r(["discovery.k8s.io"], ["endpointslices"], WRITE),
    r(["networking.k8s.io"], ["ingresses", "networkpolicies"], WRITE),
]
ADMIN = [
    r(["authorization.k8s.io"], ["localsubjectaccessreviews"], ["create"]),
    r([RBAC_GROUP], ["rolebindings", "roles"], WRITE + READ),
]
NODE = [
    r(["authentication.k8s.io"], ["tokenreviews"], ["create"]),
    r(["authorization.k8s.io"], ["localsubjectaccessreviews", "subjectaccessreviews"],
      ["create"]),
    r([""], ["services"], READ),
    r([""], ["nodes"], ["create", "get", "list", "watch"]),
    r([""], ["nodes/status"], ["patch", "update"]),
    r([""], ["nodes"], ["patch", "update"]),
    *EVENTS,
    r([""], ["pods"], READ),
    r([""], ["pods"], ["create", "delete"]),
    r([""], ["pods/status"], ["patch", "update"]),
    r([""], ["pods/eviction"], ["create"]),
    r([""], ["configmaps", "secrets"], READ),
    r([""], ["endpoints"], ["get"]),
    r([""], ["serviceaccounts"], ["get"]),
    r([""], ["serviceaccounts/token"], ["create"]),
    r(["coordination.k8s.io"], ["leases"], ["create", "delete", "get", "patch", "update"]),
]
NODE_PROXIER = [
    r([""], ["endpoints", "services"], ["list", "watch"]),
    r([""], ["nodes"], READ),
    *EVENTS,
    r(["discovery.k8s.io"], ["endpointslices"], ["list", "watch"]),
]
COREDNS = [
    r([""], ["endpoints", "services", "pods", "namespaces"], ["list", "watch"]),
    r(["discovery.k8s.io"], ["endpointslices"], ["list", "watch"]),
]
CALICO_NODE = [
    r([""], ["pods", "namespaces", "serviceaccounts"], READ),
    r(["networking.k8s.io"], ["networkpolicies"], READ),
    r([""], ["nodes"], READ),
    *EVENTS,
]
SCHEDULER = [
    *EVENTS,
    r([""], ["pods"], READ + ["patch", "update", "delete"]),
    r([""], ["bindings", "pods/binding"], ["create"]),
    r([""], ["pods/status"], ["patch", "update"]),
    r([""], ["nodes", "namespaces", "services"], READ),
    r(["coordination.k8s.io"], ["leases"], ["create", "get", "update"]),
]
CLOUD_CONTROLLER = [
    *EVENTS,
    r([""], ["nodes"], READ + ["patch", "update"]),
    r([""], ["nodes/status"], ["patch"]),
    r([""], ["services"], ["list", "patch", "update", "watch"]),
    r([""], ["services/status"], ["patch", "update"]),
    r([""], ["endpoints"], ["create", "get", "list", "update", "watch"]),
    r(["discovery.k8s.io"], ["endpointslices"], READ),
    r([""], ["serviceaccounts"], ["create"]),
    r(["coordination.k8s.io"], ["leases"], ["create", "get", "list", "update", "watch"]),
]
# The controllers kube-controller-manager runs here, each as system:controller:<name>;
# system:kube-controller-manager aggregates them (one identity runs them all in svclab).
CONTROLLERS = {
    "deployment-controller": [
        r(["apps"], ["deployments"], READ + ["update", "patch"]),
        r(["apps"], ["deployments/status"], ["update", "patch"]),
        r(["apps"], ["replicasets"], READ + ["create", "delete", "patch", "update"]),
        r([""], ["pods"], READ + ["update"]), *EVENTS],
    "replicaset-controller": [
        r(["apps"], ["replicasets"], READ + ["update", "patch"]),
        r(["apps"], ["replicasets/status", "replicasets/finalizers"], ["update", "patch"]),
        r([""], ["pods"], READ + ["create", "delete", "patch"]), *EVENTS],
    # The workload controllers (controlplane/controllers/: statefulset, daemonset_controller,
    # job_controller, cronjob, replicationcontroller); status writes by update or patch.
    "statefulset-controller": [
        r(["apps"], ["statefulsets"], READ),
        r(["apps"], ["statefulsets/status", "statefulsets/finalizers"], ["update", "patch"]),
        r([""], ["pods"], READ + ["create", "delete", "patch", "update"]),
        r(["apps"], ["controllerrevisions"], READ + ["create", "delete", "patch", "update"]),
        r([""], ["persistentvolumeclaims"], ["create", "get"]), *EVENTS],
    "daemon-set-controller": [
        r(["apps"], ["daemonsets"], READ),
        r(["apps"], ["daemonsets/status", "daemonsets/finalizers"], ["update", "patch"]),
        r([""], ["nodes"], READ),
        r([""], ["pods"], READ + ["create", "delete", "patch"]),
        r([""], ["pods/binding"], ["create"]),
        r(["apps"], ["controllerrevisions"], READ + ["create", "delete", "patch", "update"]),
        *EVENTS],
    "job-controller": [
        r(["batch"], ["jobs"], READ + ["update", "patch"]),
        r(["batch"], ["jobs/status", "jobs/finalizers"], ["update", "patch"]),
        r([""], ["pods"], READ + ["create", "delete", "patch"]), *EVENTS],
    "cronjob-controller": [
        r(["batch"], ["cronjobs"], READ + ["update"]),
        r(["batch"], ["jobs"], READ + ["create", "delete", "patch", "update"]),
        r(["batch"], ["cronjobs/status", "cronjobs/finalizers"], ["update", "patch"]),
        r([""], ["pods"], ["delete", "list"]), *EVENTS],
    "replication-controller": [
        r([""], ["replicationcontrollers"], READ + ["update"]),
        r([""], ["replicationcontrollers/status", "replicationcontrollers/finalizers"],
          ["update", "patch"]),
        r([""], ["pods"], READ + ["create", "delete", "patch"]), *EVENTS],
    "ttl-after-finished-controller": [r(["batch"], ["jobs"], READ + ["delete"]), *EVENTS],
    "endpoint-controller": [
        r([""], ["services", "pods"], READ),
        r([""], ["endpoints"], READ + ["create", "delete", "update"]),
        r([""], ["endpoints/restricted"], ["create"]), *EVENTS],
    "endpointslice-controller": [
        r([""], ["services", "pods", "nodes"], READ),
        r([""], ["services/finalizers"], ["update"]),
        r(["discovery.k8s.io"], ["endpointslices"], READ + ["create", "delete", "update"]),
        *EVENTS],
    "generic-garbage-collector": [r(["*"], ["*"], READ + ["patch", "update", "delete"]),
                                  *EVENTS],
    "service-account-controller": [
        r([""], ["serviceaccounts"], READ + ["create", "update"]),
        r([""], ["namespaces"], READ), *EVENTS],
    "clusterrole-aggregation-controller": [
        r([RBAC_GROUP], ["clusterroles"], READ + ["escalate", "patch", "update"])],
    "node-controller": [
        r([""], ["nodes"], READ + ["delete", "patch", "update"]),
        r([""], ["nodes/status"], ["patch", "update"]),
        r([""], ["pods/status"], ["patch", "update"]),
        r([""], ["pods"], ["delete", "list"]), *EVENTS],
    # The controllers share informers over these kinds (controlplane/control_plane.py).
    "shared-informers": [
        r([""], ["pods", "services", "endpoints", "nodes", "namespaces", "serviceaccounts",
                 "replicationcontrollers"], READ),
        r(["apps"], ["deployments", "replicasets", "statefulsets", "daemonsets",
                     "controllerrevisions"], READ),
        r(["batch"], ["jobs", "cronjobs"], READ),
        r(["discovery.k8s.io"], ["endpointslices"], READ),
        r(["networking.k8s.io"], ["ingresses", "networkpolicies"], READ)],
}
# The AWS Load Balancer Controller (controlplane/cloud/alb_controller.py), as its Helm
# chart's ClusterRole grants it: Ingresses and their status, IngressClasses, the Services,
# EndpointSlices, pods and nodes behind them, TLS Secrets, and Events.
ALB_CONTROLLER = [
    *EVENTS,
    r(["networking.k8s.io"], ["ingresses"], READ + ["patch", "update"]),
    r(["networking.k8s.io"], ["ingresses/status"], ["patch", "update"]),
    r(["networking.k8s.io"], ["ingressclasses"], READ),
    r([""], ["services", "endpoints", "pods", "nodes", "namespaces", "secrets"], READ),
    r([""], ["pods/status"], ["patch", "update"]),
    r(["discovery.k8s.io"], ["endpointslices"], READ),
    r(["coordination.k8s.io"], ["leases"], ["create", "get", "update"]),
]


def cluster_roles() -> list[dict]:
    roles = [
        clusterrole("cluster-admin", [r(["*"], ["*"], ["*"]), urls(["*"], ["*"])]),
        clusterrole("system:discovery", [urls(DISCOVERY_URLS)]),
        clusterrole("system:public-info-viewer", [urls(PUBLIC_INFO_URLS)]),
        clusterrole("system:basic-user", [
            r(["authorization.k8s.io"], ["selfsubjectaccessreviews",
                                         "selfsubjectrulesreviews"], ["create"]),
            r(["authentication.k8s.io"], ["selfsubjectreviews"], ["create"])]),
        clusterrole("admin", [], None, AGGREGATE + "admin"),
        clusterrole("edit", [], {AGGREGATE + "admin": "true"}, AGGREGATE + "edit"),
        clusterrole("view", [], {AGGREGATE + "edit": "true"}, AGGREGATE + "view"),
        clusterrole("system:aggregate-to-admin", ADMIN, {AGGREGATE + "admin": "true"}),
        clusterrole("system:aggregate-to-edit", EDIT, {AGGREGATE + "edit": "true"}),
        clusterrole("system:aggregate-to-view", VIEW, {AGGREGATE + "view": "true"}),
        clusterrole("system:node", NODE),
        clusterrole("system:node-proxier", NODE_PROXIER),
        clusterrole("system:coredns", COREDNS),
        clusterrole("calico-node", CALICO_NODE),
        clusterrole("system:kube-scheduler", SCHEDULER),
        clusterrole("system:cloud-controller-manager", CLOUD_CONTROLLER),
        clusterrole("aws-load-balancer-controller-role", ALB_CONTROLLER),
        clusterrole("system:kube-controller-manager", [], None, TO_KCM),
    ]
    roles += [clusterrole(f"system:controller:{name}", rules, {TO_KCM: "true"})
              for name, rules in CONTROLLERS.items()]
    changed = True
    while changed:               # created filled, as the aggregation controller converges
        changed = False
        for role in roles:
            rules = aggregated_rules(role, roles)
            if rules is not None and rules != role["rules"]:
                role["rules"], changed = rules, True
    return roles


def cluster_role_bindings() -> list[dict]:
    bindings = [
        binding("cluster-admin", "cluster-admin", "Group:system:masters"),
        binding("system:discovery", "system:discovery", "Group:system:authenticated"),
        binding("system:basic-user", "system:basic-user", "Group:system:authenticated"),
        binding("system:public-info-viewer", "system:public-info-viewer",
                "Group:system:authenticated", "Group:system:unauthenticated"),
        binding("system:node", "system:node", "Group:system:nodes"),
        binding("system:node-proxier", "system:node-proxier", "User:system:kube-proxy",
                "ServiceAccount:kube-system:kube-proxy"),
        binding("system:coredns", "system:coredns", "ServiceAccount:kube-system:coredns"),
        binding("calico-node", "calico-node", "ServiceAccount:kube-system:calico-node"),
        binding("system:kube-scheduler", "system:kube-scheduler", "User:system:kube-scheduler"),
        binding("system:cloud-controller-manager", "system:cloud-controller-manager",
                "User:system:cloud-controller-manager",
                "ServiceAccount:kube-system:cloud-controller-manager"),
        binding("system:kube-controller-manager", "system:kube-controller-manager",
                "User:system:kube-controller-manager"),
        binding("aws-load-balancer-controller-rolebinding", "aws-load-balancer-controller-role",
                "ServiceAccount:kube-system:aws-load-balancer-controller"),
    ]
    bindings += [binding(f"system:controller:{name}", f"system:controller:{name}",
                         f"ServiceAccount:kube-system:{name}")
                 for name in CONTROLLERS if name != "shared-informers"]
    return bindings


def ensure_bootstrap_policy(registry: Registry) -> list[str]:
    """Create every bootstrap ClusterRole and ClusterRoleBinding that does not exist
    (the start-up reconciliation); returns the names created."""
    created = []
    for plural, objects in (("clusterroles", cluster_roles()),
                            ("clusterrolebindings", cluster_role_bindings())):
        rt = BY_PLURAL[plural]
        for obj in objects:
            name = obj["metadata"]["name"]
            if registry.store.contains(plural, "", name):
                continue
            try:
                registry.create(rt, "", obj)
            except errors.StatusError as err:
                if err.code != 409:      # created meanwhile: fine
                    raise
            created.append(f"{plural}/{name}")
    return created
