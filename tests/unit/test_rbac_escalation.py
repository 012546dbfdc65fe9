"""The escalation check's rule coverage and message, impersonation and the kubelets' node
restriction, over an in-memory store (no server)."""
from __future__ import annotations

import pytest

from controlplane.api.errors import StatusError
from controlplane.api.rbac import noderestriction
from controlplane.api.rbac.attributes import authenticated, request_attributes
from controlplane.api.rbac.authorizer import Authorizer
from controlplane.api.rbac.escalation import EscalationCheck, compact_string, covers
from controlplane.api.rbac.impersonation import impersonate
from controlplane.api.store import Store

G = "rbac.authorization.k8s.io"
PODS_READ = {"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]}


@pytest.mark.parametrize("owner,wanted,missing", [
    ([PODS_READ], [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}], []),
    ([PODS_READ], [{"verbs": ["get", "delete"], "apiGroups": [""], "resources": ["pods"]}],
     [{"apiGroups": [""], "resources": ["pods"], "verbs": ["delete"]}]),
    ([PODS_READ], [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods/log"]}],
     [{"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]}]),
    ([{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
     [{"verbs": ["escalate"], "apiGroups": [G], "resources": ["roles"]}], []),
    ([{"verbs": ["get"], "apiGroups": [""], "resources": ["*/scale"]}],
     [{"verbs": ["get"], "apiGroups": [""], "resources": ["deployments/scale"]}], []),
    ([{"verbs": ["get"], "apiGroups": [""], "resources": ["secrets"], "resourceNames": ["a"]}],
     [{"verbs": ["get"], "apiGroups": [""], "resources": ["secrets"]}],
     [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]),
    ([{"verbs": ["get"], "nonResourceURLs": ["/logs/*"]}],
     [{"verbs": ["get"], "nonResourceURLs": ["/logs/a", "/metrics"]}],
     [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]),
])
def test_covers(owner, wanted, missing):
    assert covers(owner, wanted) == missing


def test_compact_string_reads_as_kubernetes():
    assert compact_string({"apiGroups": [""], "resources": ["pods"], "resourceNames": ["a"],
                           "verbs": ["get", "list"]}) == \
        '{APIGroups:[""], Resources:["pods"], ResourceNames:["a"], Verbs:["get" "list"]}'


@pytest.fixture
def store() -> Store:
    s = Store()
    s.put("roles", {"metadata": {"name": "reader", "namespace": "a"}, "rules": [PODS_READ]},
          "ADDED")
    s.put("rolebindings", {"metadata": {"name": "b", "namespace": "a"},
                           "roleRef": {"apiGroup": G, "kind": "Role", "name": "reader"},
                           "subjects": [{"kind": "User", "apiGroup": G, "name": "joe"}]},
          "ADDED")
    s.put("clusterroles", {"metadata": {"name": "impersonator"}, "rules": [
        {"verbs": ["impersonate"], "apiGroups": [""], "resources": ["users"],
         "resourceNames": ["joe"]}]}, "ADDED")
    s.put("clusterrolebindings", {"metadata": {"name": "i"},
                                  "roleRef": {"apiGroup": G, "kind": "ClusterRole",
                                              "name": "impersonator"},
                                  "subjects": [{"kind": "User", "apiGroup": G, "name": "ivy"}]},
          "ADDED")
    s.put("pods", {"metadata": {"name": "mine", "namespace": "a"},
                   "spec": {"nodeName": "n1"}}, "ADDED")
    s.put("pods", {"metadata": {"name": "theirs", "namespace": "a"},
                   "spec": {"nodeName": "n2"}}, "ADDED")
    return s


def test_a_role_with_rules_not_held_is_refused_and_held_ones_pass(store):
    check = EscalationCheck(Authorizer(store))
    joe = authenticated("joe", ())
    check.check_role(joe, "roles", {"metadata": {"name": "r", "namespace": "a"},
                                    "rules": [{"verbs": ["get"], "apiGroups": [""],
                                               "resources": ["pods"]}]})
    with pytest.raises(StatusError) as err:
        check.check_role(joe, "roles", {"metadata": {"name": "r", "namespace": "b"},
                                        "rules": [PODS_READ]})
    assert err.value.code == 403
    assert err.value.message == (
        'roles.rbac.authorization.k8s.io "r" is forbidden: user "joe" '
        '(groups=["system:authenticated"]) is attempting to grant RBAC permissions not '
        'currently held:\n{APIGroups:[""], Resources:["pods"], Verbs:["get" "list"]}')
    check.check_role(authenticated("root", ("system:masters",)), "clusterroles",
                     {"metadata": {"name": "x"}, "rules": [{"verbs": ["*"], "apiGroups": ["*"],
                                                            "resources": ["*"]}]})


def test_impersonation_needs_the_impersonate_verb_for_that_name(store):
    authz = Authorizer(store)
    ivy = authenticated("ivy", ())
    user = impersonate(authz, ivy, {"impersonate-user": "joe"})
    assert (user.name, user.groups) == ("joe", ("system:authenticated",))
    with pytest.raises(StatusError) as err:
        impersonate(authz, ivy, {"impersonate-user": "ann"})
    assert err.value.message == ('users "ann" is forbidden: User "ivy" cannot impersonate '
                                 'resource "users" in API group "" at the cluster scope')
    with pytest.raises(StatusError) as err:
        impersonate(authz, ivy, {"impersonate-user": "joe", "impersonate-group": "admins"})
    assert err.value.message.startswith('groups "admins" is forbidden: User "ivy" cannot '
                                        'impersonate resource "groups"')
    sa = impersonate(authz, authenticated("root", ("system:masters",)),
                     {"impersonate-user": "system:serviceaccount:a:robot"})
    assert sa.groups == ("system:serviceaccounts", "system:serviceaccounts:a",
                         "system:authenticated")


@pytest.mark.parametrize("method,url,body,message", [
    ("PUT", "/api/v1/nodes/n1/status", b"", None),
    ("PATCH", "/api/v1/nodes/n2", b"",
     'nodes "n2" is forbidden: node "n1" is not allowed to modify node "n2"'),
    ("PATCH", "/api/v1/namespaces/a/pods/mine/status", b"", None),
    ("PATCH", "/api/v1/namespaces/a/pods/theirs/status", b"",
     'pods "theirs" is forbidden: node "n1" can only update pod status for pods with '
     'spec.nodeName set to itself'),
    ("DELETE", "/api/v1/namespaces/a/pods/theirs", b"",
     'pods "theirs" is forbidden: node "n1" can only delete pods with spec.nodeName set '
     'to itself'),
    ("DELETE", "/api/v1/namespaces/a/pods/mine", b"", None),
    ("POST", "/api/v1/namespaces/a/pods", b'{"spec": {"nodeName": "n2"}}',
     'pods is forbidden: node "n1" can only create pods with spec.nodeName set to itself'),
    ("GET", "/api/v1/namespaces/a/pods/theirs", b"", None),       # reads are RBAC's business
])
def test_node_restriction(store, method, url, body, message):
    kubelet = authenticated("system:node:n1", ("system:nodes",))
    attrs = request_attributes(kubelet, method, url)
    if message is None:
        noderestriction.check(attrs, store, body)
        return
    with pytest.raises(StatusError) as err:
        noderestriction.check(attrs, store, body)
    assert (err.value.code, err.value.message) == (403, message)
