"""Where a kubelet reads the ConfigMaps and Secrets its pods use.

Upstream's kubelet watches each object its pods reference (the watch-based
configmap and secret managers) with the node's own credentials; svclab's
kubelet keeps one informer per kind, started the first time one of its pods
needs that kind, so kubelets whose pods use neither cost the API nothing.
Every change wakes the kubelet's pod workers: a pod waiting for an object
starts when it appears, and volumes follow an edit without waiting for the
next sync period.

The root CA ConfigMap (`kube-root-ca.crt`, which kube-controller-manager's
root CA publisher puts in every namespace) is answered with the cluster's CA
when the namespace does not hold one, so manifests copied from a cluster
(their `kube-api-access-*` projected volume) mount as they do there.
"""
from __future__ import annotations

import threading
from collections.abc import Callable

from base.kube.client import KubeClient
from base.kube.informer import Informer
from controlplane.kubelet.sandbox import ContainerConfigError

SYNC_WAIT = 5.0
ROOT_CA_CONFIGMAP = "kube-root-ca.crt"
KINDS = {"configmap": "configmaps", "secret": "secrets"}


class ConfigSource:
    """ConfigObjects (controlplane/kubelet/env.py) over lazily started informers."""

    def __init__(self, client: KubeClient, on_change: Callable[[], None] | None = None,
                 sync_wait: float = SYNC_WAIT):
        self.client = client
        self.on_change = on_change
        self.sync_wait = sync_wait
        self._lock = threading.Lock()
        self._informers: dict[str, Informer] = {}
        self._stopped = False

    def configmap(self, namespace: str, name: str) -> dict | None:
        found = self._get("configmap", namespace, name)
        if found is None and name == ROOT_CA_CONFIGMAP:
            return {"metadata": {"name": name, "namespace": namespace},
                    "data": {"ca.crt": self.client.credentials.ca_pem}}
        return found

    def secret(self, namespace: str, name: str) -> dict | None:
        return self._get("secret", namespace, name)

    def stop(self, timeout: float = 5.0) -> None:
        with self._lock:
            self._stopped = True
            informers = list(self._informers.values())
        for informer in informers:
            informer.stop(timeout)

    def _get(self, kind: str, namespace: str, name: str) -> dict | None:
        informer = self._informer(kind)
        if not informer.wait_synced(self.sync_wait):
            raise ContainerConfigError(f"failed to sync {kind} cache: timed out waiting for "
                                       "the condition")
        return informer.get(f"{namespace}/{name}")

    def _informer(self, kind: str) -> Informer:
        with self._lock:
            informer = self._informers.get(kind)
            if informer is None:
                if self._stopped:
                    raise ContainerConfigError("the kubelet is stopping")
                informer = Informer(self.client, KINDS[kind], self._changed)
                self._informers[kind] = informer
                informer.start()
            return informer

    def _changed(self, kind: str, obj: dict, old: dict | None) -> None:
        if self.on_change is not None:
            self.on_change()
