"""Who each svclab component is to the API server: one table, used by all.

Every component talks to the API as its own identity and gets only what the
bootstrap RBAC policy binds to that identity (controlplane/api/rbac), as in a
kubeadm cluster: kube-proxy is `system:kube-proxy` (bound to
system:node-proxier), a kubelet `system:node:NAME` in `system:nodes`, the
controllers `system:kube-controller-manager`, the scheduler
`system:kube-scheduler`, cluster DNS and the NetworkPolicy agents the service
accounts `kube-system/coredns` and `kube-system/calico-node`, the cloud
controller `kube-system/cloud-controller-manager`.  The lab daemon mints
their credentials from this table (labd), and the identity tests check the
same table against the policy, so what is tested is what runs.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Identity:
    """A user name and the groups a credential minted for it carries."""

    user: str
    groups: tuple[str, ...] = ()


def service_account(namespace: str, name: str) -> Identity:
    """A service account as the token authenticator presents it."""
    return Identity(f"system:serviceaccount:{namespace}:{name}",
                    ("system:serviceaccounts", f"system:serviceaccounts:{namespace}"))


def kubelet(node: str) -> Identity:
    return Identity(f"system:node:{node}", ("system:nodes",))


ADMIN = Identity("kubernetes-admin", ("system:masters",))
KUBE_PROXY = Identity("system:kube-proxy")
KUBE_CONTROLLER_MANAGER = Identity("system:kube-controller-manager")
KUBE_SCHEDULER = Identity("system:kube-scheduler")
COREDNS = service_account("kube-system", "coredns")
CALICO_NODE = service_account("kube-system", "calico-node")
CLOUD_CONTROLLER_MANAGER = service_account("kube-system", "cloud-controller-manager")
AWS_LOAD_BALANCER_CONTROLLER = service_account("kube-system", "aws-load-balancer-controller")

# component -> identity (the kubelet's is per node: kubelet(node))
COMPONENTS: dict[str, Identity] = {
    "kube-proxy": KUBE_PROXY,
    "kube-controller-manager": KUBE_CONTROLLER_MANAGER,
    "kube-scheduler": KUBE_SCHEDULER,
    "coredns": COREDNS,
    "calico-node": CALICO_NODE,
    "cloud-controller-manager": CLOUD_CONTROLLER_MANAGER,
    "aws-load-balancer-controller": AWS_LOAD_BALANCER_CONTROLLER,
}

