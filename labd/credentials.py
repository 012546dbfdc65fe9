"""Credentials for the lab's components, each as its own identity.

The identities are controlplane/identities.py's table; this module mints a
bearer token for one on the lab's API server (like a kubeconfig kubeadm
writes for each control-plane component) and wraps it as a client for the
components that run in the daemon (controllers, scheduler, cloud
controller: `in_process_client`, whose requests the API server handles in
its own process) or as a kubeconfig file for those that run in lab hosts.
The identity tests mint their credentials here too, so they check what runs.
"""
from __future__ import annotations

from pathlib import Path

from base.kube.client import Credentials, KubeClient, SocketFactory
from controlplane.api.inprocess import InProcessClient
from controlplane.identities import Identity


def mint(api, identity: Identity) -> str:
    """A new bearer token for identity on api (a controlplane ApiServer)."""
    return api.mint_token(identity.user, identity.groups)


def identity_client(api, identity: Identity, server: str | None = None,
                    socket_factory: SocketFactory | None = None) -> KubeClient:
    """A client speaking as identity (default server: the API's first listener)."""
    url = server or f"https://{api.addresses[0]}"
    return KubeClient(Credentials(server=url, ca_pem=api.ca_pem.decode(),
                                  token=mint(api, identity)),
                      socket_factory=socket_factory)


def in_process_client(api, identity: Identity) -> InProcessClient:
    """A client speaking as identity whose requests api handles in this process
    (same authentication, RBAC and answers; no TLS or HTTP)."""
    return InProcessClient(api, Credentials(server=f"https://{api.addresses[0]}",
                                            ca_pem=api.ca_pem.decode(),
                                            token=mint(api, identity)))


def write_identity_kubeconfig(api, identity: Identity, path: Path, server: str,
                              label: str) -> Path:
    """A kubeconfig (0600) with a token for identity; label names its user entry."""
    return api.write_kubeconfig(path, server, token=mint(api, identity), user=label)
