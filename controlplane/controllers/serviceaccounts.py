"""The service-account controller: every namespace has a `default` ServiceAccount.

As kube-controller-manager's serviceaccount controller: when a namespace
exists (at start for every existing one, later for each new one) and has no
ServiceAccount named `default`, one is created; deleting it brings it back.
A namespace being deleted gets none.  Pods name `default` unless they say
otherwise (the API's pod defaulting), so their kubelet can fetch a token for it.
"""
from __future__ import annotations

from base.kube.client import ApiError
from controlplane.controllers.base import Controller

MANAGED = ("default",)


def service_account(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}}


class ServiceAccountsController(Controller):
    name = "serviceaccount"

    def __init__(self, client, informers, recorder=None):
        super().__init__(client, informers, recorder)
        self.watch("namespaces", self._on_namespace)
        self.watch("serviceaccounts", self._on_service_account)

    def _on_namespace(self, kind: str, obj: dict, old: dict | None) -> None:
        if kind != "DELETED":
            self.queue.add(obj["metadata"]["name"])

    def _on_service_account(self, kind: str, obj: dict, old: dict | None) -> None:
        meta = obj["metadata"]
        if kind == "DELETED" and meta["name"] in MANAGED:
            self.queue.add(meta["namespace"])

    def reconcile(self, key: str) -> None:
        namespace = self.get_cached("namespaces", key)
        if namespace is None or namespace["metadata"].get("deletionTimestamp") or \
                (namespace.get("status") or {}).get("phase") == "Terminating":
            return
        for name in MANAGED:
            if self.get_cached("serviceaccounts", f"{key}/{name}") is not None:
                continue
            try:
                self.client.create("serviceaccounts", service_account(name), key)
            except ApiError as err:
                if not err.conflict:      # created meanwhile: the cache is behind
                    raise
