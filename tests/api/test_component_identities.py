"""Every svclab component talks to the API as its own identity and may do only its job.

Credentials are made exactly as in a lab: minted as the lab daemon mints them
(labd/credentials.py over controlplane/identities.py's table), or for cluster DNS, which
runs in pods, a token of its ServiceAccount kube-system/coredns as its kubelet gets it; on
an in-process API server with the bootstrap RBAC policy, each component does something its
work needs (allowed) and something outside its role (403 with Kubernetes' message).
"""
from __future__ import annotations

import pytest

from base.kube.client import ApiError, Credentials, KubeClient
from controlplane import identities as ids
from labd.addons import coredns_service_account
from labd.credentials import identity_client, in_process_client

SERVICE = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "rogue"},
           "spec": {"ports": [{"port": 80}]}}
NODE = "ip-172-31-0-11"
OTHER_NODE = "ip-172-31-0-12"
POLICY = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
          "metadata": {"name": "rogue"}, "spec": {"podSelector": {}}}
DEPLOYMENT = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "rogue"},
              "spec": {"selector": {"matchLabels": {"a": "b"}},
                       "template": {"metadata": {"labels": {"a": "b"}},
                                    "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}


def list_(resource, namespace=None):
    return lambda c: c.list(resource, namespace)


def create(resource, body, namespace="default"):
    return lambda c: c.create(resource, body, namespace)


def patch_status(resource, name, namespace=None):
    return lambda c: c.patch(resource, name, {"metadata": {"labels": {"x": "y"}}}, namespace,
                             subresource="status")


def coredns_pod_client(server) -> KubeClient:
    """A client with a token of ServiceAccount kube-system/coredns, as its pods get."""
    admin = KubeClient.from_kubeconfig(str(server.kubeconfig_path))
    account = admin.find("serviceaccounts", "coredns", "kube-system") or admin.create(
        "serviceaccounts", coredns_service_account(), "kube-system")
    token, _ = server.tokens.issue(account)
    return KubeClient(Credentials(server=f"https://{server.addresses[0]}",
                                  ca_pem=server.ca.cert_pem.decode(), token=token))


# component, identity, an allowed call, a refused call, the refusal's words
CASES = [
    ("kube-proxy", ids.KUBE_PROXY, list_("endpointslices"), create("services", SERVICE),
     'User "system:kube-proxy" cannot create resource "services" in API group "" in the '
     'namespace "default"'),
    ("kubelet", ids.kubelet(NODE), lambda c: c.get("nodes", NODE),
     create("services", SERVICE), f'User "system:node:{NODE}" cannot create resource'),
    ("kubelet-other-node", ids.kubelet(NODE), patch_status("nodes", NODE),
     patch_status("nodes", OTHER_NODE), ""),
    ("coredns", ids.COREDNS, list_("services"),
     lambda c: c.delete("services", "kubernetes", "default"),
     'User "system:serviceaccount:kube-system:coredns" cannot delete resource "services"'),
    ("calico-node", ids.CALICO_NODE, list_("networkpolicies"),
     create("networkpolicies", POLICY),
     'cannot create resource "networkpolicies" in API group "networking.k8s.io"'),
    ("kube-controller-manager", ids.KUBE_CONTROLLER_MANAGER, list_("pods"),
     create("services", SERVICE), 'User "system:kube-controller-manager" cannot create'),
    ("kube-scheduler", ids.KUBE_SCHEDULER, list_("pods"),
     create("deployments", DEPLOYMENT),
     'cannot create resource "deployments" in API group "apps"'),
    ("cloud-controller-manager", ids.CLOUD_CONTROLLER_MANAGER,
     patch_status("services", "kubernetes", "default"),
     lambda c: c.delete("services", "kubernetes", "default"),
     'User "system:serviceaccount:kube-system:cloud-controller-manager" cannot delete'),
]


@pytest.mark.parametrize(("identity", "allowed", "refused", "words"),
                         [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_each_component_does_its_job_and_nothing_else(shared_server, identity, allowed,
                                                      refused, words):
    client = (coredns_pod_client(shared_server) if identity is ids.COREDNS
              else identity_client(shared_server, identity))
    does_only_its_job(shared_server, client, allowed, refused, words)


def does_only_its_job(server, client, allowed, refused, words) -> None:
    """`allowed` works; `refused` is a 403 with `words` and changes nothing."""
    allowed(client)
    before = server.store.resource_version
    with pytest.raises(ApiError) as err:
        refused(client)
    assert err.value.status == 403, err.value
    assert words in err.value.message
    assert server.store.resource_version == before


def test_the_table_names_every_component_the_lab_runs():
    assert set(ids.COMPONENTS) == {"kube-proxy", "kube-controller-manager", "kube-scheduler",
                                   "coredns", "calico-node", "cloud-controller-manager",
                                   "aws-load-balancer-controller"}
    assert all(not identity.user.startswith("kubernetes-admin")
               and "system:masters" not in identity.groups
               for identity in [*ids.COMPONENTS.values(), ids.kubelet(NODE)])


IN_DAEMON = ("kube-controller-manager", "kube-scheduler", "cloud-controller-manager")


@pytest.mark.parametrize(("identity", "allowed", "refused", "words"),
                         [case[1:] for case in CASES if case[0] in IN_DAEMON],
                         ids=[case[0] for case in CASES if case[0] in IN_DAEMON])
def test_components_in_the_daemon_are_held_to_their_role_in_process_too(
        shared_server, identity, allowed, refused, words):
    """The lab's controllers call the API server in its process (labd/credentials.py's
    in_process_client): the same RBAC answers as over HTTPS."""
    does_only_its_job(shared_server, in_process_client(shared_server, identity), allowed,
                      refused, words)
