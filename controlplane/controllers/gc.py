"""The garbage collector: objects whose owners are gone are deleted.

Deleting a Deployment deletes its ReplicaSets, which delete their pods
(gracefully); a StatefulSet, DaemonSet, ReplicationController or Job its
pods (and the ControllerRevisions of the first two); a CronJob its Jobs and
so their pods; a Service its EndpointSlices — background cascading
deletion, as `kubectl delete` asks for by default (foreground is served the
same way: the owner goes first, then its dependents).  An owner is gone only
when a live GET says so (404 or another uid), never because a cache is
behind, and the dependent is read again after that, so one that `kubectl
delete --cascade=orphan` orphaned meanwhile (the API server strips the
owner's references in the same write that removes it, controlplane/api/
owners.py) is kept.
"""
from __future__ import annotations

from base.kube.client import ApiError
from controlplane.controllers.base import Controller
from controlplane.controllers.objects import key_of, split_key

OWNER_RESOURCES = {("apps/v1", "Deployment"): "deployments",
                   ("apps/v1", "ReplicaSet"): "replicasets",
                   ("apps/v1", "StatefulSet"): "statefulsets",
                   ("apps/v1", "DaemonSet"): "daemonsets",
                   ("batch/v1", "Job"): "jobs",
                   ("batch/v1", "CronJob"): "cronjobs",
                   ("v1", "ReplicationController"): "replicationcontrollers",
                   ("v1", "Service"): "services"}
DEPENDENT_RESOURCES = ("replicasets", "pods", "endpointslices", "networkpolicies",
                       "controllerrevisions", "jobs", "ingresses")


def known_owner_refs(obj: dict) -> list[tuple[str, dict]]:
    """(owner resource, reference) for each ownerReference to a kind the GC follows."""
    return [(OWNER_RESOURCES[(ref.get("apiVersion"), ref.get("kind"))], ref)
            for ref in (obj.get("metadata") or {}).get("ownerReferences") or []
            if (ref.get("apiVersion"), ref.get("kind")) in OWNER_RESOURCES]


def owned_by(obj: dict, uid: str) -> bool:
    return any(ref.get("uid") == uid for _, ref in known_owner_refs(obj))


class GarbageCollector(Controller):
    name = "garbage-collector"
    reads = tuple(sorted(set(DEPENDENT_RESOURCES) | set(OWNER_RESOURCES.values())))

    def __init__(self, client, informers, recorder=None):
        super().__init__(client, informers, recorder)
        for resource in DEPENDENT_RESOURCES:
            self.watch(resource, self._dependent_handler(resource))
        for resource in sorted(set(OWNER_RESOURCES.values())):
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
                    if owned_by(item, uid):
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

    def _orphaned(self, resource: str, namespace: str, name: str, uid: str | None) -> bool:
        """Whether the object's owners are all gone, asked live: first the owners, then
        the object itself, which must still name only those gone owners (a delete with
        `--cascade=orphan` removes the owner and its references in one write, so an
        object read after its owner is gone shows whether it was orphaned)."""
        try:
            live = self.client.get(resource, name, namespace)
        except ApiError as err:
            if err.not_found:
                return False
            raise
        refs = known_owner_refs(live)
        if not refs or any(self._owner_exists(r, namespace, ref) for r, ref in refs):
            return False
        gone = {ref.get("uid") for _, ref in refs}
        try:
            again = self.client.get(resource, name, namespace)
        except ApiError as err:
            if err.not_found:
                return False
            raise
        if again["metadata"].get("uid") != uid:
            return False
        now = {ref.get("uid") for _, ref in known_owner_refs(again)}
        return bool(now) and now <= gone

    def reconcile(self, key: str) -> None:
        resource, _, obj_key = key.partition("|")
        obj = self.get_cached(resource, obj_key)
        if obj is None or obj["metadata"].get("deletionTimestamp"):
            return
        namespace, name = split_key(obj_key)
        if not self._orphaned(resource, namespace, name, obj["metadata"].get("uid")):
            return
        try:
            self.client.delete(resource, name, namespace)
        except ApiError as err:
            if not err.not_found:
                raise
