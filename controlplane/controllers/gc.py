"""The garbage collector: objects whose owners are gone are deleted.

Deleting a Deployment deletes its ReplicaSets, which delete their pods
(gracefully); deleting a Service deletes its EndpointSlices — background
cascading deletion, as `kubectl delete` asks for by default.  An owner is
gone only when a live GET says so (404 or another uid), never because a
cache is behind.  Orphan propagation is not supported (the API has no
finalizers): dependents always follow their owner.
"""
from __future__ import annotations

from base.kube.client import ApiError
from controlplane.controllers.base import Controller
from controlplane.controllers.objects import key_of, split_key

OWNER_RESOURCES = {("apps/v1", "Deployment"): "deployments",
                   ("apps/v1", "ReplicaSet"): "replicasets",
                   ("v1", "Service"): "services"}
DEPENDENT_RESOURCES = ("replicasets", "pods", "endpointslices", "networkpolicies")


def known_owner_refs(obj: dict) -> list[tuple[str, dict]]:
    return [(OWNER_RESOURCES[(ref.get("apiVersion"), ref.get("kind"))], ref)
            for ref in (obj.get("metadata") or {}).get("ownerReferences") or []
            if (ref.get("apiVersion"), ref.get("kind")) in OWNER_RESOURCES]


class GarbageCollector(Controller):
    name = "garbage-collector"

    def __init__(self, client, informers, recorder=None):
        super().__init__(client, informers, recorder)
        for resource in DEPENDENT_RESOURCES:
            self.watch(resource, self._dependent_handler(resource))
        for resource in set(OWNER_RESOURCES.values()):
            self.watch(resource, self._owner_handler(resource))

    def _dependent_handler(self, resource: str):
        def handler(kind: str, obj: dict, old: dict | None) -> None:
            if kind != "DELETED" and known_owner_refs(obj):
                if any(self._cached_owner(owner_resource, obj, ref) is None
                       for owner_resource, ref in known_owner_refs(obj)):
                    self.queue.add(f"{resource}|{key_of(obj)}")
        return handler

    def _owner_handler(self, resource: str):
        def handler(kind: str, obj: dict, old: dict | None) -> None:
            if kind != "DELETED":
                return
            uid = obj["metadata"].get("uid")
            for dependent in DEPENDENT_RESOURCES:
                for item in self.cached(dependent):
                    if any(ref.get("uid") == uid for _, ref in known_owner_refs(item)):
                        self.queue.add(f"{dependent}|{key_of(item)}")
        return handler

    def _cached_owner(self, owner_resource: str, obj: dict, ref: dict) -> dict | None:
        namespace = obj["metadata"].get("namespace")
        owner = self.get_cached(owner_resource, f"{namespace}/{ref.get('name')}")
        if owner is None or owner["metadata"].get("uid") != ref.get("uid"):
            return None
        return owner

    def _owner_exists(self, owner_resource: str, namespace: str, ref: dict) -> bool:
        try:
            live = self.client.get(owner_resource, ref.get("name", ""), namespace)
        except ApiError as err:
            if err.not_found:
                return False
            raise
        return live["metadata"].get("uid") == ref.get("uid")

    def reconcile(self, key: str) -> None:
        resource, _, obj_key = key.partition("|")
        obj = self.get_cached(resource, obj_key)
        if obj is None or obj["metadata"].get("deletionTimestamp"):
            return
        namespace, name = split_key(obj_key)
        refs = known_owner_refs(obj)
        if not refs or any(self._owner_exists(r, namespace, ref) for r, ref in refs):
            return
        try:
            self.client.delete(resource, name, namespace)
        except ApiError as err:
            if not err.not_found:
                raise
