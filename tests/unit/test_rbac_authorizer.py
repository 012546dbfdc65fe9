"""The RBAC authorizer as a truth table: subjects x verbs x resources x namespaces x bindings,
with aggregation, resourceNames, subresources, non-resource URLs and missing roles; plus
the request attributes kube-apiserver derives from a URL and its 403 messages."""

from __future__ import annotations

import threading

import pytest

from controlplane.api.rbac.aggregation import aggregated_rules
from controlplane.api.rbac.attributes import (
    Attributes,
    UserInfo,
    authenticated,
    request_attributes,
    websocket_create,
)
from controlplane.api.rbac.authorizer import Authorizer, forbidden
from controlplane.api.store import Store

G = "rbac.authorization.k8s.io"


def meta(name, namespace="", labels=None):
    out = {"name": name}
    if namespace:
        out["namespace"] = namespace
    if labels:
        out["labels"] = labels
    return out


def rule(verbs, groups=("",), resources=(), names=(), urls=()):
    out = {"verbs": list(verbs)}
    if urls:
        out["nonResourceURLs"] = list(urls)
    else:
        out["apiGroups"], out["resources"] = list(groups), list(resources)
    if names:
        out["resourceNames"] = list(names)
    return out


def clusterrole(name, *rules, labels=None, aggregate=None):
    role = {"metadata": meta(name, labels=labels), "rules": list(rules)}
    if aggregate:
        role["aggregationRule"] = {"clusterRoleSelectors": [{"matchLabels": aggregate}]}
    return role


def role(namespace, name, *rules):
    return {"metadata": meta(name, namespace), "rules": list(rules)}


def subject(kind, name, namespace=""):
    out = {"kind": kind, "name": name}
    if kind != "ServiceAccount":
        out["apiGroup"] = G
    elif namespace:
        out["namespace"] = namespace
    return out


def binding(name, ref_kind, ref_name, *subjects, namespace=""):
    return {"metadata": meta(name, namespace),
            "roleRef": {"apiGroup": G, "kind": ref_kind, "name": ref_name},
            "subjects": list(subjects)}


CLUSTER_ROLES = [
    clusterrole("pod-reader", rule(["get", "list", "watch"], resources=["pods"])),
    clusterrole("secret-one", rule(["get"], resources=["secrets"], names=["one"])),
    clusterrole("scaler", rule(["update", "patch"], ["apps"], ["*/scale"]),
                rule(["patch"], ["apps"], ["deployments/status"])),
    clusterrole("health", rule(["get"], urls=["/healthz", "/logs/*"])),
    clusterrole("everything", rule(["*"], ["*"], ["*"])),
    clusterrole("svc-deleter", rule(["delete"], resources=["services"]),
                labels={"example.com/agg": "true"}),
    clusterrole("ep-reader", rule(["get"], ["discovery.k8s.io"], ["endpointslices"]),
                labels={"example.com/agg": "true"}),
    clusterrole("unlabeled", rule(["create"], resources=["nodes"])),
    clusterrole("aggregated", aggregate={"example.com/agg": "true"}),
]
for _role in CLUSTER_ROLES:       # filled as the aggregation controller fills them
    _rules = aggregated_rules(_role, CLUSTER_ROLES)
    if _rules is not None:
        _role["rules"] = _rules

OBJECTS = {
    "clusterroles": CLUSTER_ROLES,
    "roles": [role("a", "editor", rule(["create", "delete"], resources=["pods"]),
                   rule(["create"], resources=["pods/exec"]))],
    "rolebindings": [
        binding("alice-editor", "Role", "editor", subject("User", "alice"), namespace="a"),
        binding("devs-read", "ClusterRole", "pod-reader", subject("Group", "devs"),
                namespace="a"),
        binding("robot-read", "ClusterRole", "pod-reader", subject("ServiceAccount", "robot"),
                namespace="b"),
        binding("dangling", "Role", "gone", subject("User", "frank"), namespace="a"),
    ],
    "clusterrolebindings": [
        binding("carol-health", "ClusterRole", "health", subject("User", "carol")),
        binding("c-secrets", "ClusterRole", "secret-one",
                subject("Group", "system:serviceaccounts:c")),
        binding("dave-scales", "ClusterRole", "scaler", subject("User", "dave")),
        binding("erin-agg", "ClusterRole", "aggregated", subject("User", "erin")),
        binding("root", "ClusterRole", "everything", subject("ServiceAccount", "admin", "ops")),
    ],
}


@pytest.fixture(scope="module")
def authorizer() -> Authorizer:
    store = Store()
    for plural, objects in OBJECTS.items():
        for obj in objects:
            store.put(plural, obj, "ADDED")
    return Authorizer(store)


def sa(namespace, name):
    return UserInfo(f"system:serviceaccount:{namespace}:{name}",
                    ("system:serviceaccounts", f"system:serviceaccounts:{namespace}",
                     "system:authenticated"))


ALICE = authenticated("alice", ())
BOB = authenticated("bob", ("devs",))
CAROL = authenticated("carol", ())
DAVE = authenticated("dave", ())
ERIN = authenticated("erin", ())
FRANK = authenticated("frank", ())
MASTER = authenticated("root-ish", ("system:masters",))

# user, verb, group, resource, subresource, namespace, name, allowed
CASES = [
    # a Role through a RoleBinding: its namespace only, its verbs only
    (ALICE, "create", "", "pods", "", "a", "", True),
    (ALICE, "delete", "", "pods", "", "a", "web", True),
    (ALICE, "create", "", "pods", "", "b", "", False),
    (ALICE, "get", "", "pods", "", "a", "web", False),
    (ALICE, "create", "", "pods", "exec", "a", "web", True),
    (ALICE, "get", "", "pods", "exec", "a", "web", False),
    (ALICE, "create", "", "pods", "log", "a", "web", False),
    (ALICE, "create", "apps", "pods", "", "a", "", False),        # another group
    # a ClusterRole through a RoleBinding to a group: that namespace only
    (BOB, "list", "", "pods", "", "a", "", True),
    (BOB, "watch", "", "pods", "", "a", "", True),
    (BOB, "list", "", "pods", "", "b", "", False),
    (BOB, "list", "", "pods", "", "", "", False),                # all namespaces
    (BOB, "get", "", "pods", "log", "a", "web", False),          # subresource not granted
    (BOB, "delete", "", "pods", "", "a", "web", False),
    # a ServiceAccount subject without namespace: the binding's namespace
    (sa("b", "robot"), "list", "", "pods", "", "b", "", True),
    (sa("b", "robot"), "list", "", "pods", "", "a", "", False),
    (sa("a", "robot"), "list", "", "pods", "", "b", "", False),  # same name, other ns
    (authenticated("system:serviceaccount:b:robot", ()), "get", "", "pods", "", "b", "x",
     True),                                                      # matched by user name
    # resourceNames: only that object, never a list or a create
    (sa("c", "app"), "get", "", "secrets", "", "c", "one", True),
    (sa("c", "app"), "get", "", "secrets", "", "d", "one", True),    # ClusterRoleBinding
    (sa("c", "app"), "get", "", "secrets", "", "c", "two", False),
    (sa("c", "app"), "list", "", "secrets", "", "c", "", False),
    (sa("c", "app"), "update", "", "secrets", "", "c", "one", False),
    (sa("d", "app"), "get", "", "secrets", "", "d", "one", False),   # group of ns c only
    # */scale and resource/subresource forms
    (DAVE, "update", "apps", "deployments", "scale", "x", "web", True),
    (DAVE, "patch", "apps", "replicasets", "scale", "", "rs", True),
    (DAVE, "update", "apps", "deployments", "", "x", "web", False),
    (DAVE, "patch", "apps", "deployments", "status", "x", "web", True),
    (DAVE, "patch", "apps", "replicasets", "status", "x", "web", False),
    (DAVE, "update", "", "deployments", "scale", "x", "web", False),  # core group
    # aggregation: the rules of every labeled ClusterRole, nothing else
    (ERIN, "delete", "", "services", "", "x", "s", True),
    (ERIN, "get", "discovery.k8s.io", "endpointslices", "", "x", "e", True),
    (ERIN, "create", "", "nodes", "", "", "n", False),
    (ERIN, "get", "", "services", "", "x", "s", False),
    # a wildcard ClusterRole bound to a service account: everything, everywhere
    (sa("ops", "admin"), "deletecollection", "apps", "deployments", "", "z", "", True),
    (sa("ops", "admin"), "escalate", G, "clusterroles", "", "", "x", True),
    (sa("ops", "other"), "get", "", "pods", "", "z", "p", False),
    # system:masters needs no binding
    (MASTER, "delete", "", "namespaces", "", "", "kube-system", True),
    # a binding to a missing role grants nothing
    (FRANK, "get", "", "pods", "", "a", "p", False),
    # nobody else
    (authenticated("mallory", ()), "get", "", "pods", "", "a", "p", False),
]


@pytest.mark.parametrize("user,verb,group,resource,sub,namespace,name,allowed", CASES)
def test_resource_requests(authorizer, user, verb, group, resource, sub, namespace, name,
                           allowed):
    attrs = Attributes(user, verb, True, group, "v1", resource, sub, namespace, name)
    assert authorizer.authorize(attrs).allowed is allowed


@pytest.mark.parametrize("user,verb,path,allowed", [
    (CAROL, "get", "/healthz", True),
    (CAROL, "get", "/healthz/etcd", False),          # exact unless the rule ends in *
    (CAROL, "get", "/logs/kube.log", True),
    (CAROL, "get", "/logs/", True),
    (CAROL, "post", "/healthz", False),
    (ALICE, "get", "/healthz", False),               # Role rules never reach URLs
    (sa("ops", "admin"), "get", "/metrics", False),  # resources "*" is not URLs "*"
    (MASTER, "get", "/metrics", True),
])
def test_non_resource_requests(authorizer, user, verb, path, allowed):
    assert authorizer.authorize(Attributes(user, verb, False, path=path)).allowed is allowed


def test_an_allowed_request_names_its_binding(authorizer):
    decision = authorizer.authorize(Attributes(BOB, "list", True, "", "v1", "pods", "", "a"))
    assert decision.reason == ('RBAC: allowed by RoleBinding "devs-read/a" of ClusterRole '
                               '"pod-reader" to Group "devs"')


def test_a_missing_role_is_the_denials_reason(authorizer):
    attrs = Attributes(FRANK, "get", True, "", "v1", "pods", "", "a", "p")
    decision = authorizer.authorize(attrs)
    assert decision == type(decision)(False, 'RBAC: role.rbac.authorization.k8s.io "gone" '
                                             'not found')
    assert forbidden(attrs, decision.reason).message == (
        'pods "p" is forbidden: User "frank" cannot get resource "pods" in API group "" in '
        'the namespace "a": RBAC: role.rbac.authorization.k8s.io "gone" not found')


def test_the_index_follows_the_store():
    store = Store()
    authz = Authorizer(store)
    attrs = Attributes(ALICE, "get", True, "", "v1", "pods", "", "a", "p")
    assert not authz.authorize(attrs).allowed
    store.put("clusterroles", clusterrole("r", rule(["get"], resources=["pods"])), "ADDED")
    store.put("rolebindings", binding("b", "ClusterRole", "r", subject("User", "alice"),
                                      namespace="a"), "ADDED")
    assert authz.authorize(attrs).allowed
    store.put("pods", {"metadata": meta("p", "a")}, "ADDED")     # unrelated writes
    assert authz.authorize(attrs).allowed
    store.remove("rolebindings", "a", "b")
    assert not authz.authorize(attrs).allowed


def test_writes_to_other_resources_leave_the_index_and_its_lock_alone():
    """Every request asks the index; a pod write must not make it wait for
    the store's lock (the busiest lock of the daemon under pod churn)."""
    store = Store()
    authz = Authorizer(store)
    store.put("clusterroles", clusterrole("r", rule(["get"], resources=["pods"])), "ADDED")
    index = authz.index()
    with store.lock:                       # another thread writing, say
        store.put("pods", {"metadata": meta("p", "a")}, "ADDED")
    held = threading.Event()
    release = threading.Event()

    def writer():
        with store.lock:
            held.set()
            release.wait(5)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert held.wait(5)
        answered = []
        reader = threading.Thread(target=lambda: answered.append(authz.index()))
        reader.start()
        reader.join(2)                     # while the store's lock is held
        assert answered == [index]
        assert answered[0] is index        # not rebuilt
    finally:
        release.set()
        thread.join(5)
    store.put("clusterroles", clusterrole("s", rule(["list"], resources=["pods"])), "ADDED")
    assert authz.index() is not index      # an RBAC write is seen at once
    assert store.last_write("clusterroles") == store.resource_version
    assert store.last_write("pods") < store.resource_version
    assert store.last_write("secrets") == 0


@pytest.mark.parametrize("user,attrs,message", [
    (BOB, ("list", "", "pods", "", "y", ""),
     'pods is forbidden: User "bob" cannot list resource "pods" in API group "" in the '
     'namespace "y"'),
    (BOB, ("get", "apps", "deployments", "scale", "y", "web"),
     'deployments.apps "web" is forbidden: User "bob" cannot get resource "deployments/scale" '
     'in API group "apps" in the namespace "y"'),
    (BOB, ("list", "", "nodes", "", "", ""),
     'nodes is forbidden: User "bob" cannot list resource "nodes" in API group "" at the '
     'cluster scope'),
])
def test_forbidden_messages(user, attrs, message):
    verb, group, resource, sub, namespace, name = attrs
    error = forbidden(Attributes(user, verb, True, group, "v1", resource, sub, namespace, name))
    assert (error.code, error.reason, error.message) == (403, "Forbidden", message)


def test_forbidden_non_resource_message():
    error = forbidden(Attributes(BOB, "get", False, path="/metrics"))
    assert error.message == 'forbidden: User "bob" cannot get path "/metrics"'


# method, url -> verb, group, resource, subresource, namespace, name (or path for URLs)
URLS = [
    ("GET", "/api/v1/namespaces/a/pods", ("list", "", "pods", "", "a", "")),
    ("GET", "/api/v1/namespaces/a/pods?watch=true&resourceVersion=5",
     ("watch", "", "pods", "", "a", "")),
    ("GET", "/api/v1/watch/namespaces/a/pods", ("watch", "", "pods", "", "a", "")),
    ("GET", "/api/v1/pods", ("list", "", "pods", "", "", "")),
    ("GET", "/api/v1/namespaces/a/pods/web", ("get", "", "pods", "", "a", "web")),
    ("GET", "/api/v1/namespaces/a/pods?fieldSelector=metadata.name%3Dweb",
     ("list", "", "pods", "", "a", "web")),
    ("POST", "/api/v1/namespaces/a/pods", ("create", "", "pods", "", "a", "")),
    ("PUT", "/api/v1/namespaces/a/pods/web/status", ("update", "", "pods", "status", "a", "web")),
    ("PATCH", "/apis/apps/v1/namespaces/a/deployments/web/scale",
     ("patch", "apps", "deployments", "scale", "a", "web")),
    ("DELETE", "/api/v1/namespaces/a/pods/web", ("delete", "", "pods", "", "a", "web")),
    ("DELETE", "/api/v1/namespaces/a/pods", ("deletecollection", "", "pods", "", "a", "")),
    ("POST", "/api/v1/namespaces/a/pods/web/exec?command=ls",
     ("create", "", "pods", "exec", "a", "web")),
    ("GET", "/api/v1/namespaces/a/pods/web/log", ("get", "", "pods", "log", "a", "web")),
    ("GET", "/api/v1/namespaces/a", ("get", "", "namespaces", "", "a", "a")),
    ("PUT", "/api/v1/namespaces/a/finalize", ("update", "", "namespaces", "finalize", "a", "a")),
    ("GET", "/api/v1/nodes/n1", ("get", "", "nodes", "", "", "n1")),
    ("POST", "/api/v1/namespaces/a/serviceaccounts/robot/token",
     ("create", "", "serviceaccounts", "token", "a", "robot")),
    ("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
     ("create", "authorization.k8s.io", "selfsubjectaccessreviews", "", "", "")),
]


@pytest.mark.parametrize("method,url,expected", URLS)
def test_request_attributes_from_urls(method, url, expected):
    a = request_attributes(ALICE, method, url)
    assert a.resource_request
    assert (a.verb, a.api_group, a.resource, a.subresource, a.namespace, a.name) == expected


@pytest.mark.parametrize("method,url,verb,path", [
    ("GET", "/healthz", "get", "/healthz"),
    ("GET", "/api", "get", "/api"),
    ("GET", "/api/v1", "get", "/api/v1"),
    ("GET", "/apis/apps/v1", "get", "/apis/apps/v1"),
    ("GET", "/openapi/v3/apis/apps/v1?hash=X", "get", "/openapi/v3/apis/apps/v1"),
    ("POST", "/version", "post", "/version"),
])
def test_non_resource_urls(method, url, verb, path):
    a = request_attributes(ALICE, method, url)
    assert (a.resource_request, a.verb, a.path) == (False, verb, path)


def test_a_websocket_exec_must_also_be_allowed_create():
    get = request_attributes(ALICE, "GET", "/api/v1/namespaces/a/pods/web/exec?command=ls")
    assert get.verb == "get"
    again = websocket_create(get, {"upgrade": "websocket", "connection": "Upgrade"})
    assert again is not None and (again.verb, again.subresource) == ("create", "exec")
    assert websocket_create(get, {}) is None
    log = request_attributes(ALICE, "GET", "/api/v1/namespaces/a/pods/web/log")
    assert websocket_create(log, {"upgrade": "websocket"}) is None


def test_every_authenticated_user_is_in_system_authenticated():
    assert authenticated("x", ("g",)).groups == ("g", "system:authenticated")
    assert authenticated("x", ("system:authenticated",)).groups == ("system:authenticated",)
