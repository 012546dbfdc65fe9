"""RBAC through the real kubectl: create role/rolebinding, a user bound to a namespaced Role
sees that namespace and nothing else (403 in Kubernetes' words), `auth can-i` (answers and
exit codes), `--list`, `whoami`, `--as` for the admin and not for others, the escalation
check, tables and describe, and bad RBAC objects refused with 422 and the field path."""

from __future__ import annotations

import pytest

from base.kube.client import ApiError, KubeClient, credentials_from_kubeconfig

NS = "team-a"
OTHER = "team-b"


@pytest.fixture(scope="module")
def cluster(shared_server, shared_kubectl):
    for ns in (NS, OTHER):
        shared_kubectl("create", "namespace", ns)
    shared_kubectl("create", "role", "pod-reader", "--verb=get,list,watch", "--resource=pods",
                   "-n", NS)
    shared_kubectl("create", "rolebinding", "jane-reads", "--role=pod-reader", "--user=jane",
                   "--serviceaccount=team-a:robot", "-n", NS)
    return shared_server


def as_user(server, kubectl, user: str, *groups: str):
    """kubectl argv prefix with a kubeconfig holding a token for ``user``."""
    path = kubectl.cwd / f"{user.replace(':', '_')}.kubeconfig"
    server.write_kubeconfig(path, f"https://{server.addresses[0]}",
                            token=server.mint_token(user, tuple(groups)), user=user)
    return ("--kubeconfig", str(path))


def forbidden_line(message: str) -> str:
    return f"Error from server (Forbidden): {message}"


def test_a_namespaced_role_allows_its_namespace_and_nothing_else(cluster, shared_kubectl):
    jane = as_user(cluster, shared_kubectl, "jane")
    proc = shared_kubectl.run(*jane, "get", "pods", "-n", NS)
    assert proc.returncode == 0 and proc.stderr.strip() == f"No resources found in {NS} namespace."
    cases = [
        (("get", "pods", "-n", OTHER),
         f'pods is forbidden: User "jane" cannot list resource "pods" in API group "" in the '
         f'namespace "{OTHER}"'),
        (("get", "services", "-n", NS),
         f'services is forbidden: User "jane" cannot list resource "services" in API group "" '
         f'in the namespace "{NS}"'),
        (("get", "nodes"),
         'nodes is forbidden: User "jane" cannot list resource "nodes" in API group "" at the '
         'cluster scope'),
        (("delete", "pod", "web", "-n", NS),
         f'pods "web" is forbidden: User "jane" cannot delete resource "pods" in API group "" '
         f'in the namespace "{NS}"'),
        (("get", "deployments", "-n", NS),
         f'deployments.apps is forbidden: User "jane" cannot list resource "deployments" in API '
         f'group "apps" in the namespace "{NS}"'),
        (("get", "--raw", "/metrics"), 'forbidden: User "jane" cannot get path "/metrics"'),
    ]
    for args, message in cases:
        proc = shared_kubectl.run(*jane, *args)
        assert proc.returncode == 1, args
        assert proc.stderr.strip() == forbidden_line(message), args


def test_discovery_and_health_stay_readable_for_every_authenticated_user(cluster,
                                                                        shared_kubectl):
    nobody = as_user(cluster, shared_kubectl, "nobody")
    assert "Server Version: v1." in shared_kubectl(*nobody, "version")
    assert "roles" in shared_kubectl(*nobody, "api-resources", "--api-group",
                                     "rbac.authorization.k8s.io", "-o", "name")
    for path in ("/healthz", "/readyz", "/livez"):
        assert shared_kubectl(*nobody, "get", "--raw", path) == "ok"


@pytest.mark.parametrize("args,answer", [
    (("list", "pods", "-n", NS), "yes"),
    (("watch", "pods", "-n", NS), "yes"),
    (("get", "pods/web", "-n", NS), "yes"),
    (("delete", "pods", "-n", NS), "no"),
    (("list", "pods", "-n", OTHER), "no"),
    (("list", "pods", "--all-namespaces"), "no"),
    (("get", "pods", "--subresource=log", "-n", NS), "no"),
    (("create", "selfsubjectaccessreviews"), "yes"),
    (("get", "/healthz"), "yes"),
    (("get", "/metrics"), "no"),
])
def test_auth_can_i_answers_and_exit_codes(cluster, shared_kubectl, args, answer):
    proc = shared_kubectl.run("auth", "can-i", *args, "--as", "jane")
    assert (proc.stdout.strip(), proc.returncode) == (answer, 0 if answer == "yes" else 1)


def test_auth_can_i_for_the_service_account_and_as_itself(cluster, shared_kubectl):
    as_sa = ("--as", "system:serviceaccount:team-a:robot")
    assert shared_kubectl("auth", "can-i", "list", "pods", "-n", NS, *as_sa).strip() == "yes"
    assert shared_kubectl.run("auth", "can-i", "list", "pods", "-n", OTHER, *as_sa) \
        .returncode == 1
    jane = as_user(cluster, shared_kubectl, "jane")
    assert shared_kubectl(*jane, "auth", "can-i", "list", "pods", "-n", NS).strip() == "yes"
    proc = shared_kubectl.run(*jane, "auth", "can-i", "list", "pods", "-n", OTHER)
    assert (proc.stdout.strip(), proc.returncode) == ("no", 1)


def _rows(text: str) -> list[list[str]]:
    return [line.split() for line in text.strip().splitlines()[1:]]


def test_auth_can_i_list_matches_the_bindings(cluster, shared_kubectl):
    out = shared_kubectl("auth", "can-i", "--list", "-n", NS,
                         "--as", "system:serviceaccount:team-a:robot")
    assert out.splitlines()[0].split() == ["Resources", "Non-Resource", "URLs", "Resource",
                                           "Names", "Verbs"]
    rows = _rows(out)
    assert ["pods", "[]", "[]", "[get", "list", "watch]"] in rows
    assert ["selfsubjectaccessreviews.authorization.k8s.io", "[]", "[]", "[create]"] in rows
    assert ["[/healthz]", "[]", "[get]"] in rows
    assert not any(r[0].startswith(("services", "*.*")) for r in rows)
    other = _rows(shared_kubectl("auth", "can-i", "--list", "-n", OTHER,
                                 "--as", "system:serviceaccount:team-a:robot"))
    assert not any(r[0] == "pods" for r in other)
    admin = _rows(shared_kubectl("auth", "can-i", "--list", "-n", NS))
    assert ["*.*", "[]", "[]", "[*]"] in admin


def test_whoami(cluster, shared_kubectl):
    assert _rows(shared_kubectl("auth", "whoami")) == [
        ["Username", "kubernetes-admin"], ["Groups", "[system:masters", "system:authenticated]"]]
    jane = as_user(cluster, shared_kubectl, "jane", "devs")
    assert _rows(shared_kubectl(*jane, "auth", "whoami")) == [
        ["Username", "jane"], ["Groups", "[devs", "system:authenticated]"]]
    assert _rows(shared_kubectl("auth", "whoami", "--as", "system:serviceaccount:team-a:robot")) \
        == [["Username", "system:serviceaccount:team-a:robot"],
            ["Groups", "[system:serviceaccounts", "system:serviceaccounts:team-a",
             "system:authenticated]"]]


def test_impersonation_works_for_the_admin_and_is_refused_for_others(cluster, shared_kubectl):
    proc = shared_kubectl.run("get", "pods", "-n", OTHER, "--as", "jane")
    assert proc.returncode == 1
    assert proc.stderr.strip() == forbidden_line(
        f'pods is forbidden: User "jane" cannot list resource "pods" in API group "" in the '
        f'namespace "{OTHER}"')
    assert shared_kubectl.run("get", "pods", "-n", NS, "--as", "jane").returncode == 0
    assert shared_kubectl.run("get", "pods", "-n", NS, "--as", "x",
                              "--as-group", "system:masters").returncode == 0
    jane = as_user(cluster, shared_kubectl, "jane")
    for extra, message in [
        (("--as", "kubernetes-admin"),
         'users "kubernetes-admin" is forbidden: User "jane" cannot impersonate resource '
         '"users" in API group "" at the cluster scope'),
        (("--as", "system:serviceaccount:kube-system:default"),
         'serviceaccounts "default" is forbidden: User "jane" cannot impersonate resource '
         '"serviceaccounts" in API group "" in the namespace "kube-system"'),
    ]:
        proc = shared_kubectl.run(*jane, "get", "pods", "-n", NS, *extra)
        assert proc.returncode == 1 and proc.stderr.strip() == forbidden_line(message)


def test_escalation_through_roles_and_bindings_is_refused(cluster, shared_kubectl):
    shared_kubectl("create", "role", "rbac-manager", "--verb=create,get,list",
                   "--resource=roles.rbac.authorization.k8s.io,"
                   "rolebindings.rbac.authorization.k8s.io", "-n", NS)
    shared_kubectl("create", "rolebinding", "joe-manages", "--role=rbac-manager", "--user=joe",
                   "-n", NS)
    shared_kubectl("create", "rolebinding", "joe-reads", "--role=pod-reader", "--user=joe",
                   "-n", NS)
    joe = as_user(cluster, shared_kubectl, "joe")
    groups = '(groups=["system:authenticated"])'
    proc = shared_kubectl.run(*joe, "create", "role", "deleter", "--verb=delete,get",
                              "--resource=pods", "-n", NS)
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        'Error from server (Forbidden): roles.rbac.authorization.k8s.io "deleter" is '
        'forbidden: '
        f'user "joe" {groups} is attempting to grant RBAC permissions not currently held:\n'
        '{APIGroups:[""], Resources:["pods"], Verbs:["delete"]}')
    proc = shared_kubectl.run(*joe, "create", "rolebinding", "joe-admin", "--clusterrole=admin",
                              "--user=joe", "-n", NS)
    assert proc.returncode == 1
    assert proc.stderr.startswith(
        'error: failed to create rolebinding: rolebindings.rbac.authorization.k8s.io '
        f'"joe-admin" is forbidden: user "joe" {groups} is attempting to grant RBAC '
        'permissions not currently held:\n')
    assert '{APIGroups:[""], Resources:["pods"], Verbs:["create" "delete" "deletecollection" ' \
           '"patch" "update"]}' in proc.stderr
    assert shared_kubectl.run(*joe, "get", "rolebinding", "joe-admin", "-n", NS).returncode == 1
    # what joe holds, joe may grant
    shared_kubectl(*joe, "create", "role", "subset", "--verb=list", "--resource=pods", "-n", NS)
    shared_kubectl(*joe, "create", "rolebinding", "ann-reads", "--role=pod-reader",
                   "--user=ann", "-n", NS)
    # and with `bind` on the role, joe may bind even what he does not hold
    shared_kubectl("create", "role", "binder", "--verb=bind", "--resource=clusterroles",
                   "--resource-name=edit", "-n", NS)
    shared_kubectl("create", "rolebinding", "joe-binds", "--role=binder", "--user=joe",
                   "-n", NS)
    shared_kubectl(*joe, "create", "rolebinding", "ann-edits", "--clusterrole=edit",
                   "--user=ann", "-n", NS)


def test_tables_and_describe(cluster, shared_kubectl):
    out = shared_kubectl("get", "rolebindings", "jane-reads", "-n", NS, "-o", "wide")
    assert out.splitlines()[0].split() == ["NAME", "ROLE", "AGE", "USERS", "GROUPS",
                                           "SERVICEACCOUNTS"]
    assert out.splitlines()[1].split()[:2] == ["jane-reads", "Role/pod-reader"]
    assert out.splitlines()[1].split()[-2:] == ["jane", "team-a/robot"]
    out = shared_kubectl("get", "clusterroles", "view")
    assert out.splitlines()[0].split() == ["NAME", "CREATED", "AT"]
    described = shared_kubectl("describe", "role", "pod-reader", "-n", NS)
    assert "PolicyRule:" in described
    assert ["pods", "[]", "[]", "[get", "list", "watch]"] in \
        [line.split() for line in described.splitlines()]
    described = shared_kubectl("describe", "rolebinding", "jane-reads", "-n", NS)
    lines = [line.split() for line in described.splitlines()]
    assert ["Kind:", "Role"] in lines and ["Name:", "pod-reader"] in lines
    assert ["User", "jane"] in lines and ["ServiceAccount", "robot", "team-a"] in lines


def test_bootstrap_roles_are_aggregated_and_grant_as_kubernetes(cluster, shared_kubectl):
    shared_kubectl("create", "rolebinding", "viewer", "--clusterrole=view", "--user=vera",
                   "-n", NS)
    vera = ("--as", "vera")
    assert shared_kubectl("auth", "can-i", "list", "deployments.apps", "-n", NS, *vera) \
        .strip() == "yes"
    assert shared_kubectl.run("auth", "can-i", "get", "secrets", "-n", NS, *vera).returncode == 1
    assert shared_kubectl.run("auth", "can-i", "create", "pods", "-n", NS, *vera).returncode == 1
    shared_kubectl("create", "rolebinding", "editor", "--clusterrole=edit", "--user=ed", "-n", NS)
    assert shared_kubectl("auth", "can-i", "create", "pods/exec", "-n", NS, "--as", "ed") \
        .strip() == "yes"
    assert shared_kubectl.run("auth", "can-i", "create", "roles", "-n", NS, "--as", "ed") \
        .returncode == 1


def test_a_kubelet_changes_only_its_own_node_and_pods(cluster, shared_kubectl):
    path = shared_kubectl.cwd / "kubelet.kubeconfig"
    cluster.write_kubeconfig(path, f"https://{cluster.addresses[0]}",
                             token=cluster.mint_token("system:node:ip-172-31-0-11",
                                                      ("system:nodes",)))
    kubelet = KubeClient(credentials_from_kubeconfig(str(path)))
    own = kubelet.get("nodes", "ip-172-31-0-11")
    kubelet.update("nodes", own, subresource="status")
    other = kubelet.get("nodes", "ip-172-31-0-12")
    with pytest.raises(ApiError) as err:
        kubelet.update("nodes", other, subresource="status")
    assert err.value.status == 403
    assert str(err.value).endswith('nodes "ip-172-31-0-12" is forbidden: node "ip-172-31-0-11" '
                                   'is not allowed to modify node "ip-172-31-0-12"')
    with pytest.raises(ApiError) as err:
        kubelet.create("services", {"metadata": {"name": "evil"},
                                    "spec": {"ports": [{"port": 80}]}}, "default")
    assert err.value.status == 403


RB = "apiVersion: rbac.authorization.k8s.io/v1\nkind: {kind}\nmetadata: {{name: {name}}}\n"
REF = "roleRef: {{apiGroup: {group}, kind: {kind}, name: view}}\n"
USER = "subjects: [{kind: User, name: u, apiGroup: rbac.authorization.k8s.io}]\n"
DNS = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
       "'-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', "
       "regex used for validation is "
       "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")

# (kind, name, body after metadata, the error kubectl prints after "is invalid: ")
BAD = [
    ("RoleBinding", "kind-foo", REF.format(group="rbac.authorization.k8s.io", kind="Foo") + USER,
     'roleRef.kind: Unsupported value: "Foo": supported values: "Role", "ClusterRole"'),
    ("ClusterRoleBinding", "kind-role",
     REF.format(group="rbac.authorization.k8s.io", kind="Role") + USER,
     'roleRef.kind: Unsupported value: "Role": supported values: "ClusterRole"'),
    ("RoleBinding", "group-wrong", REF.format(group="example.com", kind="ClusterRole") + USER,
     'roleRef.apiGroup: Unsupported value: "example.com": supported values: '
     '"rbac.authorization.k8s.io"'),
    ("RoleBinding", "no-name", REF.format(group="rbac.authorization.k8s.io", kind="ClusterRole")
     + "subjects: [{kind: User, apiGroup: rbac.authorization.k8s.io}]\n",
     "subjects[0].name: Required value"),
    ("RoleBinding", "kind-robot",
     REF.format(group="rbac.authorization.k8s.io", kind="ClusterRole")
     + "subjects: [{kind: Robot, name: r}]\n",
     'subjects[0].kind: Unsupported value: "Robot": supported values: "ServiceAccount", '
     '"User", "Group"'),
    ("ClusterRoleBinding", "sa-no-ns",
     REF.format(group="rbac.authorization.k8s.io", kind="ClusterRole")
     + "subjects: [{kind: ServiceAccount, name: robot}]\n",
     "subjects[0].namespace: Required value"),
    ("RoleBinding", "sa-group",
     REF.format(group="rbac.authorization.k8s.io", kind="ClusterRole")
     + "subjects: [{kind: ServiceAccount, name: robot, apiGroup: rbac.authorization.k8s.io}]\n",
     'subjects[0].apiGroup: Unsupported value: "rbac.authorization.k8s.io": supported '
     'values: ""'),
    ("RoleBinding", "sa-bad-name",
     REF.format(group="rbac.authorization.k8s.io", kind="ClusterRole")
     + "subjects: [{kind: ServiceAccount, name: Robot_1}]\n",
     f'subjects[0].name: Invalid value: "Robot_1": {DNS}'),
    ("Role", "no-verbs", "rules: [{apiGroups: [''], resources: [pods]}]\n",
     "rules[0].verbs: Required value: verbs must contain at least one value"),
    ("Role", "no-groups", "rules: [{verbs: [get], resources: [pods]}]\n",
     "rules[0].apiGroups: Required value: resource rules must supply at least one api group"),
    ("Role", "urls", "rules: [{verbs: [get], nonResourceURLs: [/healthz]}]\n",
     'rules[0].nonResourceURLs: Invalid value: []string{"/healthz"}: namespaced rules cannot '
     'apply to non-resource URLs'),
    ("ClusterRole", "urls-and-pods",
     "rules: [{verbs: [get], apiGroups: [''], resources: [pods], nonResourceURLs: [/healthz]}]\n",
     'rules[0].nonResourceURLs: Invalid value: []string{"/healthz"}: rules cannot apply to '
     'both regular resources and non-resource URLs'),
    ("ClusterRole", "empty-aggregation", "aggregationRule: {clusterRoleSelectors: []}\n",
     "aggregationRule.clusterRoleSelectors: Required value: at least one clusterRoleSelector "
     "required if aggregationRule is non-nil"),
    ("Role", "'..'", "rules: []\n", "metadata.name: Invalid value: \"..\": may not be '..'"),
    ("ServiceAccount", "Bad_Name", "", f'metadata.name: Invalid value: "Bad_Name": {DNS}'),
]


def test_bad_rbac_objects_are_refused_with_the_field_path(cluster, shared_kubectl):
    docs = [(RB if kind != "ServiceAccount" else "apiVersion: v1\nkind: {kind}\n"
             "metadata: {{name: {name}}}\n").format(kind=kind, name=name) + body
            for kind, name, body, _ in BAD]
    proc = shared_kubectl.run("create", "-n", NS, "-f", "-", stdin="---\n".join(docs))
    assert proc.returncode == 1 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == len(BAD)
    for line, (kind, name, _, error) in zip(lines, BAD):
        # (kube-apiserver qualifies the kind with its group: RoleBinding.rbac.authorization...)
        assert line.startswith(f'Error from server (Invalid): error when creating "STDIN": '
                               f'{kind}'), line
        assert line.endswith(f'"{name.strip(chr(39))}" is invalid: {error}'), line
    stored = shared_kubectl("get", "roles,rolebindings,clusterroles,clusterrolebindings,sa",
                            "-A", "-o", "name").split()
    assert not {s.rpartition("/")[2] for s in stored} & {n for _, n, _, _ in BAD}


def test_a_bindings_role_ref_cannot_change(cluster, shared_kubectl):
    manifest = (RB.format(kind="RoleBinding", name="fixed")
                + REF.format(group="rbac.authorization.k8s.io", kind="ClusterRole") + USER)
    shared_kubectl("create", "-n", NS, "-f", "-", stdin=manifest)
    proc = shared_kubectl.run("replace", "-n", NS, "-f", "-",
                              stdin=manifest.replace("name: view", "name: edit"))
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        'The RoleBinding "fixed" is invalid: roleRef: Invalid value: rbac.RoleRef{APIGroup:'
        '"rbac.authorization.k8s.io", Kind:"ClusterRole", Name:"edit"}: cannot change roleRef')
    assert "name: view" in shared_kubectl("get", "rolebinding", "fixed", "-n", NS, "-o", "yaml")


def test_subject_access_review_answers_for_another_user(cluster, shared_kubectl):
    admin = KubeClient.from_kubeconfig(str(cluster.kubeconfig_path))
    path = "/apis/authorization.k8s.io/v1/subjectaccessreviews"

    def review(user, verb, namespace):
        return admin.request("POST", path, body={
            "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": {"user": user, "groups": ["system:authenticated"], "resourceAttributes": {
                "verb": verb, "resource": "pods", "namespace": namespace}}})["status"]
    allowed = review("jane", "list", NS)
    assert allowed["allowed"] is True
    assert allowed["reason"] == ('RBAC: allowed by RoleBinding "jane-reads/team-a" of Role '
                                 '"pod-reader" to User "jane"')
    assert review("jane", "list", OTHER) == {"allowed": False}
    jane = as_user(cluster, shared_kubectl, "jane")
    proc = shared_kubectl.run(*jane, "create", "-f", "-", stdin=(
        "apiVersion: authorization.k8s.io/v1\nkind: SubjectAccessReview\n"
        "spec: {user: bob, nonResourceAttributes: {path: /healthz, verb: get}}\n"))
    assert proc.returncode == 1
    assert proc.stderr.strip().endswith(
        'subjectaccessreviews.authorization.k8s.io is forbidden: User "jane" cannot create '
        'resource "subjectaccessreviews" in API group "authorization.k8s.io" at the cluster '
        'scope')


def test_create_clusterrole_and_clusterrolebinding(cluster, shared_kubectl):
    shared_kubectl("create", "clusterrole", "node-reader", "--verb=get,list",
                   "--resource=nodes", "--resource=nodes/status")
    shared_kubectl("create", "clusterrole", "monitoring",
                   "--aggregation-rule=example.com/aggregate-to-monitoring=true")
    shared_kubectl("create", "clusterrolebinding", "nora-reads-nodes",
                   "--clusterrole=node-reader", "--user=nora",
                   "--serviceaccount=team-b:watcher")
    aggregated = shared_kubectl("get", "clusterrole", "monitoring", "-o",
                                "jsonpath={.aggregationRule.clusterRoleSelectors[0]}")
    assert aggregated == '{"matchLabels":{"example.com/aggregate-to-monitoring":"true"}}'
    for who in ("nora", "system:serviceaccount:team-b:watcher"):
        assert shared_kubectl("auth", "can-i", "list", "nodes", "--as", who).strip() == "yes"
        assert shared_kubectl("auth", "can-i", "get", "nodes", "--subresource=status",
                              "--as", who).strip() == "yes"
        assert shared_kubectl.run("auth", "can-i", "delete", "nodes", "--as", who) \
            .returncode == 1
    row = shared_kubectl("get", "clusterrolebinding", "nora-reads-nodes", "-o", "wide") \
        .splitlines()[1].split()
    assert row[:2] == ["nora-reads-nodes", "ClusterRole/node-reader"]
    assert row[-2:] == ["nora", "team-b/watcher"]
