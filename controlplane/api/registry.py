"""The generic create / update / patch / delete flow over the store.

Every write runs under the store lock: default, validate, allocate (a new
immutable allocation state), then store and only then commit the new
allocation state — so a rejected request stores and allocates nothing.

A type whose plural is stored under another type (events.k8s.io Events are
core/v1 Events) is a view: requests are converted to the stored shape,
served by the stored type's flow, and answered converted back (``view``).
"""

from __future__ import annotations

import datetime as dt
import json
import random
import string
import uuid
from dataclasses import dataclass

import yaml

from base.jsoncopy import json_copy
from controlplane.api import defaults, errors, events, owners
from controlplane.api import patch as patches
from controlplane.api.allocators import IPRange, PortRange, allocate_pod_ip, release
from controlplane.api.resources import BY_PLURAL, ResourceType
from controlplane.api.selectors import (
    Requirement,
    matches_fields,
    matches_labels,
    selector_string,
)
from controlplane.api.service_alloc import (
    ServiceAllocations,
    allocate_service,
    drop_type_dependent_fields,
    normalize_cluster_ips,
    release_service,
)
from controlplane.api.store import Store
from controlplane.api.strategies import STRATEGIES, spec_part

PROTECTED_NAMESPACES = ("default", "kube-system", "kube-public")


def now_rfc3339() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class ClusterConfig:
    service_range: IPRange
    node_port_range: PortRange
    pod_blocks: dict            # node name -> IPRange of its pod CIDR
    event_ttl: float = events.DEFAULT_TTL   # seconds (kube-apiserver --event-ttl)

    @classmethod
    def from_info(cls, info: dict) -> ClusterConfig:
        ttl = info.get("eventTTLSeconds", events.DEFAULT_TTL)
        if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not ttl > 0:
            raise errors.ApiServerError(f"eventTTLSeconds: must be a number of seconds > 0 "
                                        f"(default {events.DEFAULT_TTL:g}), got {ttl!r}")
        return cls(IPRange.parse(info.get("serviceCIDR", "10.96.0.0/12")),
                   PortRange.parse(info.get("nodePortRange", "30000-32767")),
                   {n["name"]: IPRange.parse(n["podCIDR"])
                    for n in info.get("nodes", []) if n.get("podCIDR")}, float(ttl))


def _is_view(rt: ResourceType) -> bool:
    return BY_PLURAL[rt.plural] is not rt


# Patch types whose body is JSON, where a null can only be written `null`
# (an apply patch is YAML: `~`, `Null`, an empty value).
_JSON_PATCH_TYPES = ("application/json-patch+json", "application/merge-patch+json",
                     "application/strategic-merge-patch+json")


def _without_nulls(value):
    """JSON null means "unset" in Kubernetes objects."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


class Registry:
    """CRUD with Kubernetes semantics; owns the allocation state."""

    def __init__(self, store: Store, config: ClusterConfig,
                 rand: random.Random | None = None) -> None:
        self.store = store
        self.config = config
        self.rand = rand or random.Random()
        self.service_allocations = ServiceAllocations()
        self.pod_ips: dict[str, frozenset[str]] = {name: frozenset() for name in config.pod_blocks}
        store.set_ttl("events", config.event_ttl)

    # ---- reads ----------------------------------------------------------
    def get(self, rt: ResourceType, namespace: str, name: str) -> dict:
        obj = self.store.get(rt.plural, namespace, name)
        if obj is None:
            raise errors.not_found(rt.plural, rt.group, name)
        return self.view(rt, obj)

    @staticmethod
    def view(rt: ResourceType, obj: dict) -> dict:
        """A stored object as ``rt`` shows it (watch events pass through here too)."""
        return events.to_view(obj) if _is_view(rt) else obj

    @staticmethod
    def field_selector(rt: ResourceType, reqs: tuple[Requirement, ...]
                       ) -> tuple[Requirement, ...]:
        """A field selector in the stored type's labels; 400 for a label Events cannot be
        selected by (other types are matched by field path, unchecked)."""
        if rt.plural != "events":
            return reqs
        return tuple(Requirement(events.storage_label(_is_view(rt), r.key), r.op, r.values)
                     for r in reqs)

    def list(self, rt: ResourceType, namespace: str | None,
             labels: tuple[Requirement, ...] = (), fields: tuple[Requirement, ...] = ()
             ) -> tuple[list[dict], int]:
        """The selected objects as ``rt`` shows them, and the rv the list is consistent at."""
        fields = self.field_selector(rt, fields)
        items, rv = self.store.list(rt.plural, namespace, read_only=True)
        return [self.view(rt, o) for o in items
                if matches_labels(labels, o["metadata"].get("labels"))
                and matches_fields(fields, o)], rv

    def _require_namespace(self, rt: ResourceType, namespace: str) -> None:
        if rt.namespaced and not self.store.contains("namespaces", "", namespace):
            raise errors.not_found("namespaces", "", namespace)

    # ---- create ---------------------------------------------------------
    def create(self, rt: ResourceType, namespace: str, body: dict, dry_run: bool = False) -> dict:
        obj = self._check_body(rt, namespace, body)
        if _is_view(rt):
            core = events.to_core(obj)
            self._raise_invalid(rt, core, events.validate_view_create(core))
            return self.view(rt, self.create(BY_PLURAL[rt.plural], namespace, core, dry_run))
        meta = obj["metadata"]
        if not meta.get("name") and meta.get("generateName"):
            suffix = "".join(self.rand.choice(string.ascii_lowercase + string.digits)
                             for _ in range(5))
            meta["name"] = meta["generateName"] + suffix
        strategy = STRATEGIES[rt.plural]
        if strategy.reset_status_on_create:
            obj["status"] = {}
        for key in ("uid", "resourceVersion", "creationTimestamp", "deletionTimestamp",
                    "generation", "managedFields", "selfLink"):
            meta.pop(key, None)
        with self.store.lock:
            self._require_namespace(rt, namespace)
            obj = strategy.default(obj)
            if rt.plural == "services":
                obj = normalize_cluster_ips(obj, None)
            if strategy.admit is not None:
                obj = strategy.admit(obj, self.store)
            self._raise_invalid(rt, obj, strategy.validate(obj) + strategy.validate_create(obj))
            if self.store.contains(rt.plural, namespace if rt.namespaced else "", meta["name"]):
                raise errors.already_exists(rt.plural, rt.group, meta["name"])
            new_state = None
            if rt.plural == "services":
                obj, new_state, errs = allocate_service(obj, None, self.service_allocations,
                                                        self.config.service_range,
                                                        self.config.node_port_range, self.rand)
                self._raise_invalid(rt, obj, errs)
                obj = defaults.service_ip_families(obj)
            meta = obj["metadata"]
            # Defaulting may have set it: a Job's selector carries its own uid.
            meta.setdefault("uid", str(uuid.uuid4()))
            meta["creationTimestamp"] = now_rfc3339()
            if strategy.tracks_generation:
                meta["generation"] = 1
            if dry_run:
                meta["resourceVersion"] = ""
                return obj
            stored = self.store.put(rt.plural, obj, "ADDED")
            if new_state is not None:
                self.service_allocations = new_state
            if rt.plural == "pods":
                self._note_pod_ip(stored)
            return stored

    def _check_body(self, rt: ResourceType, namespace: str, body, nulls: bool = True) -> dict:
        """body as the object to store; nulls=False: it has no null (JSON) values."""
        if not isinstance(body, dict):
            raise errors.bad_request("the body of the request must be a JSON object")
        obj = _without_nulls(body) if nulls else body
        kind, api_version = obj.get("kind"), obj.get("apiVersion")
        if kind and kind != rt.kind or api_version and api_version != rt.api_version:
            raise errors.bad_request(f"the API version in the data ({api_version}) does not match "
                                     f"the expected API version ({rt.api_version})"
                                     if api_version != rt.api_version else
                                     f"the kind in the data ({kind}) does not match "
                                     f"the expected kind ({rt.kind})")
        obj["kind"], obj["apiVersion"] = rt.kind, rt.api_version
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise errors.bad_request("metadata must be an object")
        if rt.namespaced:
            if meta.get("namespace") and meta["namespace"] != namespace:
                raise errors.bad_request("the namespace of the provided object does not match "
                                         "the namespace sent on the request")
            meta["namespace"] = namespace
        return obj

    def _raise_invalid(self, rt: ResourceType, obj: dict, errs: list) -> None:
        if errs:
            name = (obj.get("metadata") or {}).get("name", "")
            raise errors.invalid_object(rt.kind, rt.group, name, errs)

    # ---- update ---------------------------------------------------------
    def update(self, rt: ResourceType, namespace: str, name: str, body: dict,
               subresource: str = "", dry_run: bool = False) -> dict:
        obj = self._check_body(rt, namespace, body)
        if obj["metadata"].get("name", name) != name:
            raise errors.bad_request(f"the name of the object ({obj['metadata'].get('name')}) "
                                     f"does not match the name on the URL ({name})")
        obj["metadata"]["name"] = name
        if _is_view(rt):
            core, stored_rt = events.to_core(obj), BY_PLURAL[rt.plural]
            with self.store.lock:
                old = self.get(stored_rt, namespace, name)
                self._raise_invalid(rt, core, events.validate_view_update(core, old))
                return self.view(rt, self.update(stored_rt, namespace, name, core, subresource,
                                                 dry_run))
        with self.store.lock:
            old = self.get(rt, namespace, name)
            want_rv = obj["metadata"].get("resourceVersion")
            if want_rv and want_rv != old["metadata"]["resourceVersion"]:
                raise errors.conflict(rt.plural, rt.group, name)
            return self._commit_update(rt, old, obj, subresource, dry_run)

    def _commit_update(self, rt: ResourceType, old: dict, obj: dict, subresource: str,
                       dry_run: bool) -> dict:
        strategy = STRATEGIES[rt.plural]
        if subresource == "status":
            new = json_copy(old)
            new["status"] = obj.get("status", {})
            # status writers may touch labels/annotations as well, like the real registry
        else:
            new = obj
            if strategy.status_subresource:
                new["status"] = json_copy(old.get("status", {}))
        meta = new["metadata"]
        for key in ("uid", "creationTimestamp", "generation", "namespace"):
            if key in old["metadata"]:
                meta[key] = old["metadata"][key]
        for key in ("deletionTimestamp", "deletionGracePeriodSeconds"):   # only DELETE sets these
            if key in old["metadata"]:
                meta[key] = old["metadata"][key]
            else:
                meta.pop(key, None)
        meta["resourceVersion"] = old["metadata"]["resourceVersion"]
        new = strategy.default(new)
        new_state = None
        if rt.plural == "services":
            new = normalize_cluster_ips(new, old)
            new = drop_type_dependent_fields(new, old)
        errs = strategy.validate(new) + strategy.validate_update(new, old)
        self._raise_invalid(rt, new, errs)
        if rt.plural == "services":
            new, new_state, errs = allocate_service(new, old, self.service_allocations,
                                                    self.config.service_range,
                                                    self.config.node_port_range, self.rand)
            self._raise_invalid(rt, new, errs)
            new = defaults.service_ip_families(new)
        if strategy.tracks_generation and spec_part(new) != spec_part(old):
            new["metadata"]["generation"] = old["metadata"].get("generation", 1) + 1
        if new == old or dry_run:
            return new
        stored = self.store.put(rt.plural, new, "MODIFIED")
        if new_state is not None:
            self.service_allocations = new_state
        if rt.plural == "pods":
            self._note_pod_ip(stored)
        return stored

    # ---- patch ----------------------------------------------------------
    def patch(self, rt: ResourceType, namespace: str, name: str, content_type: str, raw: bytes,
              subresource: str = "", dry_run: bool = False) -> dict:
        body = self._parse_patch(content_type, raw)
        with self.store.lock:
            old = self.store.get(rt.plural, namespace, name)
            if old is None:
                if content_type.startswith("application/apply-patch"):
                    body.setdefault("metadata", {}).setdefault("name", name)
                    return self.create(rt, namespace, body, dry_run)
                raise errors.not_found(rt.plural, rt.group, name)
            if subresource == "scale":
                return self._patch_scale(rt, old, content_type, body, dry_run)
            patched = self._apply_patch(self.view(rt, old), content_type, body)
            if _is_view(rt):
                return self.update(rt, namespace, name, patched, subresource, dry_run)
            want_rv = (patched.get("metadata") or {}).get("resourceVersion")
            if want_rv and want_rv != old["metadata"]["resourceVersion"]:
                raise errors.conflict(rt.plural, rt.group, name)
            # The stored object holds no nulls; a JSON patch without the token
            # `null` adds none (stripping walks the whole object, on every write).
            patched = self._check_body(rt, namespace, patched, nulls=not content_type.startswith(
                _JSON_PATCH_TYPES) or b"null" in raw)
            patched["metadata"]["name"] = name
            return self._commit_update(rt, old, patched, subresource, dry_run)

    @staticmethod
    def _parse_patch(content_type: str, raw: bytes):
        try:
            if content_type.startswith("application/apply-patch"):
                return yaml.safe_load(raw.decode()) or {}
            return json.loads(raw.decode() or "null")
        except (ValueError, yaml.YAMLError) as exc:
            raise errors.bad_request(f"error decoding patch: {exc}") from exc

    @staticmethod
    def _apply_patch(old: dict, content_type: str, body) -> dict:
        if content_type.startswith("application/json-patch+json"):
            return patches.json_patch(old, body)
        if content_type.startswith("application/merge-patch+json"):
            return patches.json_merge_patch(old, body)
        if content_type.startswith("application/strategic-merge-patch+json"):
            return patches.strategic_merge(old, body)
        if content_type.startswith("application/apply-patch"):
            applied = json_copy(body)
            applied.get("metadata", {}).pop("resourceVersion", None)
            return patches.strategic_merge(old, applied)
        raise errors.unsupported_media_type(content_type)

    # ---- scale subresource ----------------------------------------------
    @staticmethod
    def scale_of(obj: dict) -> dict:
        meta = obj["metadata"]
        selector = obj["spec"].get("selector")
        if obj.get("kind") == "ReplicationController":     # a plain map, not a LabelSelector
            selector = {"matchLabels": selector or {}}
        return {"kind": "Scale", "apiVersion": "autoscaling/v1",
                "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion",
                                                   "creationTimestamp") if k in meta},
                "spec": {"replicas": obj["spec"].get("replicas", 1)},
                "status": {"replicas": (obj.get("status") or {}).get("replicas", 0),
                           "selector": selector_string(selector)
                                       .replace("<none>", "")}}

    def _patch_scale(self, rt: ResourceType, old: dict, content_type: str, body,
                     dry_run: bool) -> dict:
        scale = self._apply_patch(self.scale_of(old), content_type, body)
        return self._set_replicas(rt, old, scale, dry_run)

    def update_scale(self, rt: ResourceType, namespace: str, name: str, body: dict,
                     dry_run: bool) -> dict:
        with self.store.lock:
            old = self.get(rt, namespace, name)
            want_rv = (body.get("metadata") or {}).get("resourceVersion")
            if want_rv and want_rv != old["metadata"]["resourceVersion"]:
                raise errors.conflict(rt.plural, rt.group, name)
            return self._set_replicas(rt, old, body, dry_run)

    def _set_replicas(self, rt: ResourceType, old: dict, scale: dict, dry_run: bool) -> dict:
        replicas = (scale.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or replicas < 0:
            raise errors.invalid_object("Scale", "autoscaling", old["metadata"]["name"],
                                        [errors.invalid(replicas, "spec.replicas",
                                                        "must be greater than or equal to 0")])
        new = json_copy(old)
        new["spec"]["replicas"] = replicas
        return self.scale_of(self._commit_update(rt, old, new, "", dry_run))

    # ---- delete ---------------------------------------------------------
    def delete(self, rt: ResourceType, namespace: str, name: str, dry_run: bool = False,
               grace_period: int | None = None, policy: str = "") -> dict:
        """Delete one object; policy "Orphan" (DeleteOptions.propagationPolicy) first
        drops the owner from its dependents' ownerReferences, in the same write."""
        with self.store.lock:
            obj = self.get(rt, namespace, name)
            if rt.plural == "namespaces":
                if name in PROTECTED_NAMESPACES:
                    raise errors.forbidden_request("namespaces", name,
                                                   "this namespace may not be deleted")
                if dry_run:
                    return obj
                for other in BY_PLURAL.values():
                    if other.namespaced:
                        for item in self.store.list(other.plural, name)[0]:
                            self.delete(other, name, item["metadata"]["name"])
            if dry_run:
                return obj
            if rt.plural == "pods":
                terminating = self._graceful_pod_delete(obj, grace_period)
                if terminating is not None:
                    return terminating
            if policy == "Orphan":
                self._orphan_dependents(obj, namespace)
            gone = self.store.remove(rt.plural, namespace, name)
            if rt.plural == "services":
                self.service_allocations = release_service(gone, self.service_allocations)
            if rt.plural == "pods":
                self._release_pod_ip(gone)
            return self.view(rt, gone)

    def _orphan_dependents(self, owner: dict, namespace: str) -> None:
        """kubectl delete --cascade=orphan: the owner's dependents outlive it (caller
        holds the lock)."""
        for other in BY_PLURAL.values():
            if other.virtual or (namespace and not other.namespaced):
                continue
            scope = namespace if other.namespaced else ""
            for dependent in owners.orphaned(self.store.list(other.plural, scope)[0], owner):
                self.store.put(other.plural, dependent, "MODIFIED")

    def _graceful_pod_delete(self, pod: dict, grace_period: int | None) -> dict | None:
        """Graceful pod deletion (the pod strategy's BeforeDelete); caller holds the lock.

        A pod on a node is not removed but marked: deletionTimestamp = now + grace,
        deletionGracePeriodSeconds = grace.  Its kubelet stops it and deletes it
        with grace 0.  Returns the marked pod, or None to remove it right away
        (grace 0, never scheduled, or already finished).
        """
        spec, status = pod.get("spec") or {}, pod.get("status") or {}
        if grace_period is None:
            grace_period = int(spec.get("terminationGracePeriodSeconds", 30))
        if not spec.get("nodeName") or status.get("phase") in ("Succeeded", "Failed"):
            grace_period = 0
        if grace_period <= 0:
            return None
        meta = pod["metadata"]
        current = meta.get("deletionGracePeriodSeconds")
        if meta.get("deletionTimestamp") and current is not None and current <= grace_period:
            return pod
        deadline = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=grace_period)
        meta["deletionTimestamp"] = deadline.strftime("%Y-%m-%dT%H:%M:%SZ")
        meta["deletionGracePeriodSeconds"] = grace_period
        return self.store.put("pods", pod, "MODIFIED")

    # ---- pod IPs --------------------------------------------------------
    def allocate_pod_ip(self, node: str) -> str:
        """Reserve the next free pod IP of ``node``'s block (for the kubelet / CNI)."""
        with self.store.lock:
            block = self.config.pod_blocks.get(node)
            if block is None:
                raise errors.StatusError(404, "NotFound", f'node "{node}" has no pod CIDR')
            ip, self.pod_ips[node] = allocate_pod_ip(block, self.pod_ips[node])
            return ip

    def release_pod_ip(self, ip: str) -> None:
        with self.store.lock:
            for node, used in self.pod_ips.items():
                self.pod_ips[node] = release(used, ip)

    def _note_pod_ip(self, pod: dict) -> None:
        ip = (pod.get("status") or {}).get("podIP")
        for node, block in self.config.pod_blocks.items():
            if ip and block.contains(ip):
                self.pod_ips[node] = self.pod_ips[node] | {ip}

    def _release_pod_ip(self, pod: dict) -> None:
        ip = (pod.get("status") or {}).get("podIP")
        if ip:
            self.release_pod_ip(ip)


