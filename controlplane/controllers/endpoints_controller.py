"""The endpoints and EndpointSlice controller: Services follow their pods.

One key per Service.  Pod changes enqueue every Service in the pod's
namespace whose selector matches the pod before or after the change;
changes to Endpoints or slices enqueue their Service (so a hand edit of a
managed object is put right).  Services without a selector keep the
Endpoints the user wrote; they are mirrored into slices.  The
`default/kubernetes` Service belongs to the API server and is left alone.  A
write the API refuses (other than a conflict with a newer object) is a
FailedToUpdateEndpointSlices Event on the Service, as upstream reports it.

Zones and hints: each slice endpoint carries its node's zone label, so a
node added, removed or relabelled re-syncs the Services with endpoints on
it.  Hints follow `spec.trafficDistribution` or topology-mode Auto
(topology_hints.py); as upstream's topology cache, a node turning ready or
not, or changing zone, re-syncs the Services whose Auto hints would now
overload a zone.  The TopologyAwareHints Events are recorded when they
differ from the last one recorded for the Service (upstream records the
Disabled ones on every sync; the Event correlator only counts them).
"""
from __future__ import annotations

import threading
import time

from base.kube.client import ApiError
from controlplane.controllers import endpoints as ep
from controlplane.controllers import topology_cache as tc
from controlplane.controllers import topology_hints as th
from controlplane.controllers.base import Controller
from controlplane.controllers.naming import generated_name
from controlplane.controllers.objects import key_of, map_selector_matches, split_key
from controlplane.events import WARNING

API_SERVER_OWNED = {"default/kubernetes"}
PENDING_TTL = 10.0
TOPOLOGY_KEY = "topology:nodes"     # no "/": never a Service's key


class EndpointsController(Controller):
    name = "endpoints"
    component = "endpoint-slice-controller"

    def __init__(self, client, informers, recorder=None):
        super().__init__(client, informers, recorder)
        self._lock = threading.Lock()
        self._created: dict[str, tuple[set[str], float]] = {}   # slices not seen yet
        # Worker thread only: topology-mode Auto's hints per zone of each Service that
        # has them (upstream's topology cache), and the last hints Event per Service.
        self._hinted: dict[str, dict[str, int]] = {}
        self._last_hint_event: dict[str, tuple[str, str]] = {}
        self.watch("services", lambda kind, svc, old: self._enqueue(key_of(svc)))
        self.watch("pods", self._on_pod)
        self.watch("endpoints", lambda kind, obj, old: self._enqueue(key_of(obj)))
        self.watch("endpointslices", self._on_slice)
        self.watch("nodes", self._on_node)

    def _enqueue(self, key: str) -> None:
        if key not in API_SERVER_OWNED:
            self.queue.add(key)

    def _on_pod(self, kind: str, pod: dict, old: dict | None) -> None:
        namespace = pod["metadata"].get("namespace")
        labels = [pod["metadata"].get("labels")]
        if old is not None:
            labels.append(old["metadata"].get("labels"))
        for svc in self.cached("services"):
            if svc["metadata"].get("namespace") != namespace:
                continue
            selector = (svc.get("spec") or {}).get("selector")
            if any(map_selector_matches(selector, l) for l in labels):
                self._enqueue(key_of(svc))

    def _on_slice(self, kind: str, obj: dict, old: dict | None) -> None:
        service = (obj["metadata"].get("labels") or {}).get(ep.SERVICE_NAME)
        if service:
            self._enqueue(f"{obj['metadata']['namespace']}/{service}")

    def _on_node(self, kind: str, node: dict, old: dict | None) -> None:
        zone_changed = kind != "MODIFIED" or old is None or \
            tc.node_zone(old) != tc.node_zone(node)
        if zone_changed or tc.node_ready(old) != tc.node_ready(node):
            self.queue.add(TOPOLOGY_KEY)
        if zone_changed:
            name = node["metadata"]["name"]
            for obj in self.cached("endpointslices"):
                if any(e.get("nodeName") == name for e in obj.get("endpoints") or []):
                    self._on_slice(kind, obj, None)

    # --- reconcile -------------------------------------------------------------

    def _waiting_for_cache(self, key: str, existing: list[dict]) -> bool:
        """Slices created by the last pass and not in the cache yet: wait, never duplicate."""
        with self._lock:
            names, since = self._created.get(key, (set(), 0.0))
            names -= {s["metadata"]["name"] for s in existing}
            if not names or time.monotonic() - since > PENDING_TTL:
                self._created.pop(key, None)
                return False
            return True

    def reconcile(self, key: str) -> None:
        if key == TOPOLOGY_KEY:
            self._check_topology()
            return
        namespace, name = split_key(key)
        service = self.get_cached("services", key)
        existing = [s for s in self.cached("endpointslices")
                    if s["metadata"].get("namespace") == namespace
                    and (s["metadata"].get("labels") or {}).get(ep.SERVICE_NAME) == name]
        if self._waiting_for_cache(key, existing):
            self.queue.add_after(key, 0.05)
            return
        if service is None:
            if not self._service_exists(namespace, name):   # never trust a cache miss
                self._delete_all(namespace, name, existing)
                self._hinted.pop(key, None)
                self._last_hint_event.pop(key, None)
            return
        try:
            self._sync_service(service, existing)
        except ApiError as err:
            if not err.conflict:       # a conflict is a stale cache: the retry sorts it out
                self.recorder.event(service, WARNING, "FailedToUpdateEndpointSlices",
                                    f"Error updating Endpoint Slices for Service "
                                    f"{namespace}/{name}: {err.message}")
            raise

    def _sync_service(self, service: dict, existing: list[dict]) -> None:
        namespace, key = service["metadata"]["namespace"], key_of(service)
        if (service.get("spec") or {}).get("type") == "ExternalName":
            self._sync_slices(service, [], existing, ep.SLICE_CONTROLLER, remove_only=True)
            return
        if (service.get("spec") or {}).get("selector"):
            pods = [p for p in self.cached("pods") if p["metadata"].get("namespace") == namespace]
            self._sync_endpoints(service, ep.compute_subsets(service, pods))
            zones = th.node_zones(self.cached("nodes"))
            chunks = ep.slice_chunks(ep.desired_slice_groups(service, pods, zones))
            self._sync_slices(service, chunks, existing, ep.SLICE_CONTROLLER, hinted=True)
            self._sync_slices(service, [], existing, ep.MIRROR_CONTROLLER, remove_only=True)
            return
        self._sync_slices(service, [], existing, ep.SLICE_CONTROLLER, remove_only=True)
        endpoints = self.get_cached("endpoints", key)
        if endpoints is None or (endpoints["metadata"].get("labels") or {}).get(ep.SKIP_MIRROR):
            self._sync_slices(service, [], existing, ep.MIRROR_CONTROLLER, remove_only=True)
            return
        chunks = ep.slice_chunks(ep.mirrored_slice_groups(endpoints))
        if chunks == [((), [])]:
            chunks = []
        self._sync_slices(service, chunks, existing, ep.MIRROR_CONTROLLER)

    def _sync_endpoints(self, service: dict, subsets: list[dict]) -> None:
        meta = service["metadata"]
        labels = ep.service_labels(service)
        current = self.get_cached("endpoints", key_of(service))
        if current is None:
            body = {"apiVersion": "v1", "kind": "Endpoints",
                    "metadata": {"name": meta["name"], "namespace": meta["namespace"],
                                 "labels": labels},
                    "subsets": subsets}
            try:
                self.client.create("endpoints", body)
            except ApiError as err:
                if err.status != 409:
                    raise
                raise ApiError(409, "Conflict", "endpoints appeared meanwhile; retry") from err
            return
        if (current.get("subsets") or []) == subsets and \
                (current["metadata"].get("labels") or {}) == labels:
            return
        body = dict(current)
        body["metadata"] = dict(current["metadata"], labels=labels)
        body["subsets"] = subsets
        self.client.update("endpoints", body)

    def _sync_slices(self, service: dict, chunks: list, existing: list[dict], manager: str,
                     remove_only: bool = False, hinted: bool = False) -> None:
        mine = [s for s in existing
                if (s["metadata"].get("labels") or {}).get(ep.MANAGED_BY) == manager]
        if remove_only:
            for obj in mine:
                self._delete_slice(obj)
            return
        pairs, leftovers = ep.plan_slices(chunks, mine)
        bodies = [ep.slice_body(service, ports, endpoints, manager)
                  for _, ports, endpoints in pairs]
        events = self._hint(service, [c for c, _, _ in pairs], bodies) if hinted else []
        try:
            self._write_slices(service, [c for c, _, _ in pairs], bodies, leftovers)
        finally:
            self._record_hint_events(service, events)

    def _write_slices(self, service: dict, currents: list[dict | None], bodies: list[dict],
                      leftovers: list[dict]) -> None:
        for current, body in zip(currents, bodies):
            if current is None:
                body["metadata"]["name"] = generated_name(service["metadata"]["name"])
                self.client.create("endpointslices", body)
                with self._lock:
                    names, _ = self._created.get(key_of(service), (set(), 0.0))
                    self._created[key_of(service)] = (names | {body["metadata"]["name"]},
                                                       time.monotonic())
            elif ep.slice_differs(current, body):
                body["metadata"]["name"] = current["metadata"]["name"]
                body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
                self.client.update("endpointslices", body)
        for obj in leftovers:
            self._delete_slice(obj)

    # --- hints -----------------------------------------------------------------

    def _hint(self, service: dict, currents: list[dict | None], bodies: list[dict]
              ) -> list[th.HintEvent]:
        """Put the hints into `bodies`; the Events to record."""
        key = key_of(service)
        slices = []
        for current, body in zip(currents, bodies):
            unchanged = ep.unchanged_but_hints(current, body)
            slices.append(((current.get("endpoints") or []) if unchanged else body["endpoints"],
                           unchanged))
        outcome = th.reconcile_hints(service, slices, tc.zone_cpu_ratios(self.cached("nodes")),
                                     key in self._hinted)
        for body, endpoints in zip(bodies, outcome.slices):
            body["endpoints"] = endpoints
        if outcome.allocated is None:
            self._hinted.pop(key, None)
        else:
            self._hinted[key] = outcome.allocated
        if not outcome.events and not th.hints_enabled(service["metadata"].get("annotations")):
            self._last_hint_event.pop(key, None)
        return outcome.events

    def _record_hint_events(self, service: dict, events: list[th.HintEvent]) -> None:
        key = key_of(service)
        for event in events:
            if self._last_hint_event.get(key) != (event.reason, event.message):
                self.recorder.event(service, event.type, event.reason, event.message)
            self._last_hint_event[key] = (event.reason, event.message)

    def _check_topology(self) -> None:
        """Nodes changed: re-sync the Services whose Auto hints would overload a zone."""
        ratios = tc.zone_cpu_ratios(self.cached("nodes"))
        for key, allocated in list(self._hinted.items()):
            if tc.service_overloaded(allocated, ratios):
                self._enqueue(key)

    def _delete_slice(self, obj: dict) -> None:
        try:
            self.client.delete("endpointslices", obj["metadata"]["name"],
                               obj["metadata"]["namespace"])
        except ApiError as err:
            if not err.not_found:
                raise

    def _service_exists(self, namespace: str, name: str) -> bool:
        try:
            self.client.get("services", name, namespace)
            return True
        except ApiError as err:
            if err.not_found:
                return False
            raise

    def _delete_all(self, namespace: str, name: str, existing: list[dict]) -> None:
        for obj in existing:
            if (obj["metadata"].get("labels") or {}).get(ep.MANAGED_BY) in (
                    ep.SLICE_CONTROLLER, ep.MIRROR_CONTROLLER):
                self._delete_slice(obj)
        if self.get_cached("endpoints", f"{namespace}/{name}") is not None:
            try:
                self.client.delete("endpoints", name, namespace)
            except ApiError as err:
                if not err.not_found:
                    raise
