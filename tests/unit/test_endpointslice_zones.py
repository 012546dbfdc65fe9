"""EndpointSlice endpoints carry their node's zone, and the controller writes hints.

Pure parts (endpoints.py), then the controller against an in-memory API
(writes land in the informers' caches at once, so each reconcile is
deterministic and the writes can be counted), then the real controllers and
API server of an in-process cluster.
"""
from __future__ import annotations

import copy

import pytest

from base.kube.client import ApiError
from base.waiting import wait_until
from controlplane.controllers import endpoints as ep
from controlplane.controllers.endpoints_controller import TOPOLOGY_KEY, EndpointsController
from support.controller_harness import InProcessCluster, deployment, ready_pods, service

A, B, C = "us-east-1a", "us-east-1b", "us-east-1c"
ZONE = "topology.kubernetes.io/zone"


def pod(name: str, ip: str, node: str, ready: bool = True) -> dict:
    return {"metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}",
                         "labels": {"app": "web"}, "resourceVersion": "1"},
            "spec": {"nodeName": node, "containers": [{"name": "c"}]},
            "status": {"phase": "Running", "podIP": ip, "conditions": [
                {"type": "Ready", "status": "True" if ready else "False"}]}}


def node(name: str, zone: str | None, ready: bool = True) -> dict:
    return {"metadata": {"name": name, "labels": {ZONE: zone} if zone else {},
                         "resourceVersion": "1"},
            "status": {"allocatable": {"cpu": "2"},
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def web(**spec) -> dict:
    annotations = spec.pop("annotations", {})
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "default", "uid": "svc-uid",
                         "annotations": annotations, "resourceVersion": "1"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "protocol": "TCP"}],
                     **spec}}


# --- pure ------------------------------------------------------------------------------

PODS = [pod("a", "192.168.1.1", "n1"), pod("b", "192.168.2.1", "n2"),
        pod("c", "192.168.3.1", "n3")]


def test_each_endpoint_carries_its_nodes_zone():
    [(_, endpoints)] = ep.slice_chunks(ep.desired_slice_groups(web(), PODS, {"n1": A, "n2": B}))
    assert [(e["nodeName"], e.get("zone")) for e in endpoints] == [
        ("n1", A), ("n2", B), ("n3", None)]          # n3 has no zone label


def test_without_zones_the_endpoints_are_as_before():
    [(_, endpoints)] = ep.slice_chunks(ep.desired_slice_groups(web(), PODS))
    assert all(set(e) == {"addresses", "conditions", "targetRef", "nodeName"}
               for e in endpoints)
    assert ep.desired_slice_groups(web(), PODS, {}) == ep.desired_slice_groups(web(), PODS)


def test_slice_differs_notices_zones_and_hints():
    [(ports, endpoints)] = ep.slice_chunks(ep.desired_slice_groups(web(), PODS, {"n1": A}))
    body = ep.slice_body(web(), ports, endpoints, ep.SLICE_CONTROLLER)
    current = copy.deepcopy(body)
    assert not ep.slice_differs(current, body)
    rezoned = copy.deepcopy(body)
    rezoned["endpoints"][0]["zone"] = B
    assert ep.slice_differs(current, rezoned)
    assert not ep.unchanged_but_hints(current, rezoned)
    hinted = copy.deepcopy(body)
    hinted["endpoints"][0]["hints"] = {"forZones": [{"name": A}]}
    assert ep.slice_differs(current, hinted)
    assert ep.unchanged_but_hints(hinted, body)         # the API holds it, hints aside
    assert not ep.unchanged_but_hints(None, body)


# --- the controller against an in-memory API ----------------------------------------------

class FakeInformer:
    def __init__(self):
        self.cache: dict[str, dict] = {}
        self.handlers = []

    def items(self) -> list[dict]:
        return list(self.cache.values())

    def get(self, key: str) -> dict | None:
        return self.cache.get(key)


def _key(obj: dict) -> str:
    meta = obj["metadata"]
    return f"{meta['namespace']}/{meta['name']}" if meta.get("namespace") else meta["name"]


class FakeApi:
    """The client the controller writes with; every write shows in the informers."""

    RESOURCES = ("services", "pods", "endpoints", "endpointslices", "nodes")

    def __init__(self):
        self.informers = {r: FakeInformer() for r in self.RESOURCES}
        self.writes: list[tuple[str, str]] = []
        self.version = 100

    def put(self, resource: str, obj: dict) -> dict:
        """Store (as a user's write would) and tell the handlers."""
        informer = self.informers[resource]
        obj = copy.deepcopy(obj)
        self.version += 1
        obj["metadata"]["resourceVersion"] = str(self.version)
        old = informer.cache.get(_key(obj))
        informer.cache[_key(obj)] = obj
        for handler in informer.handlers:
            handler("ADDED" if old is None else "MODIFIED", obj, old)
        return obj

    def remove(self, resource: str, key: str) -> None:
        obj = self.informers[resource].cache.pop(key)
        for handler in self.informers[resource].handlers:
            handler("DELETED", obj, obj)

    def create(self, resource, body, namespace=None):
        self.writes.append(("create", resource))
        return self.put(resource, body)

    def update(self, resource, body, subresource=None):
        self.writes.append(("update", resource))
        return self.put(resource, body)

    def delete(self, resource, name, namespace=None):
        self.writes.append(("delete", resource))
        self.remove(resource, f"{namespace}/{name}")

    def get(self, resource, name, namespace=None):
        obj = self.informers[resource].get(f"{namespace}/{name}" if namespace else name)
        if obj is None:
            raise ApiError(404, "NotFound", "not found", "GET", resource)
        return obj

    def slice_endpoints(self) -> list[dict]:
        return [e for s in self.informers["endpointslices"].items()
                for e in s.get("endpoints") or []]


class Recorder:
    def __init__(self):
        self.events: list[tuple[str, str, str]] = []

    def event(self, obj, event_type, reason, message, *, field_path=""):
        self.events.append((event_type, reason, message))


@pytest.fixture
def api():
    fake = FakeApi()
    for n in (node("n1", A), node("n2", B)):
        fake.put("nodes", n)
    for p in PODS[:2]:
        fake.put("pods", p)
    return fake


def controller(api: FakeApi) -> tuple[EndpointsController, Recorder]:
    recorder = Recorder()
    return EndpointsController(api, api.informers, recorder), recorder


def drain(ctl: EndpointsController) -> list[str]:
    keys = []
    while (key := ctl.queue.get(0)) is not None:
        ctl.queue.done(key)
        keys.append(key)
    return keys


def zones_and_hints(api: FakeApi) -> list[tuple]:
    return [(e["nodeName"], e.get("zone"), e.get("hints")) for e in api.slice_endpoints()]


def zone_hints(zone: str) -> dict:
    return {"forZones": [{"name": zone}]}


def test_prefer_same_zone_hints_and_a_slice_rewritten_only_when_they_change(api):
    ctl, _ = controller(api)
    api.put("services", web(trafficDistribution="PreferSameZone"))
    ctl.reconcile("default/web")
    assert zones_and_hints(api) == [("n1", A, zone_hints(A)), ("n2", B, zone_hints(B))]
    assert api.writes == [("create", "endpoints"), ("create", "endpointslices")]

    api.writes.clear()
    api.put("services", web(trafficDistribution="PreferSameZone",
                             annotations={"owner": "team-a"}))
    ctl.reconcile("default/web")
    assert api.writes == []                                    # nothing to rewrite

    drain(ctl)
    relabelled = node("n2", C)
    api.put("nodes", relabelled)
    assert drain(ctl) == [TOPOLOGY_KEY, "default/web"]         # n2 holds a web endpoint
    ctl.reconcile("default/web")
    assert zones_and_hints(api) == [("n1", A, zone_hints(A)), ("n2", C, zone_hints(C))]
    assert api.writes == [("update", "endpointslices")]

    api.writes.clear()
    api.put("services", web())
    ctl.reconcile("default/web")
    assert zones_and_hints(api) == [("n1", A, None), ("n2", C, None)]
    assert api.writes == [("update", "endpointslices")]


def test_a_node_heartbeat_enqueues_nothing(api):
    ctl, _ = controller(api)
    drain(ctl)
    beat = node("n1", A)
    beat["status"]["conditions"][0]["lastHeartbeatTime"] = "2026-01-01T00:00:10Z"
    api.put("nodes", beat)
    assert drain(ctl) == []


def test_prefer_same_node_hints_node_and_zone(api):
    ctl, _ = controller(api)
    api.put("services", web(trafficDistribution="PreferSameNode"))
    ctl.reconcile("default/web")
    assert zones_and_hints(api) == [
        ("n1", A, {**zone_hints(A), "forNodes": [{"name": "n1"}]}),
        ("n2", B, {**zone_hints(B), "forNodes": [{"name": "n2"}]})]


AUTO = {"service.kubernetes.io/topology-mode": "Auto"}
ENABLED = ("Normal", "TopologyAwareHintsEnabled",
           "Topology Aware Hints has been enabled, addressType: IPv4")


def test_topology_mode_auto_events_only_on_change(api):
    ctl, recorder = controller(api)
    api.put("services", web(annotations=AUTO))
    ctl.reconcile("default/web")
    assert zones_and_hints(api) == [("n1", A, zone_hints(A)), ("n2", B, zone_hints(B))]
    ctl.reconcile("default/web")
    assert recorder.events == [ENABLED]

    api.remove("pods", "default/b")
    for _ in range(2):
        ctl.reconcile("default/web")
    assert zones_and_hints(api) == [("n1", A, None)]
    too_few = ("Warning", "TopologyAwareHintsDisabled", "Insufficient number of endpoints "
               "(1 endpoints, 2 zones), addressType: IPv4")
    assert recorder.events == [ENABLED, too_few]

    api.put("pods", PODS[1])
    ctl.reconcile("default/web")
    assert recorder.events == [ENABLED, too_few, ENABLED]
    api.put("services", web())
    ctl.reconcile("default/web")
    assert zones_and_hints(api) == [("n1", A, None), ("n2", B, None)]
    assert recorder.events[-1] == ("Warning", "TopologyAwareHintsDisabled",
                                   "Topology Aware Hints has been disabled, addressType: IPv4")


def test_a_new_zone_resyncs_services_whose_auto_hints_it_would_overload(api):
    ctl, _ = controller(api)
    api.put("services", web(annotations=AUTO))
    ctl.reconcile("default/web")
    drain(ctl)
    api.put("nodes", node("n3", C))                # a third zone: A and B's hints overload it
    keys = drain(ctl)
    assert keys == [TOPOLOGY_KEY]
    ctl.reconcile(TOPOLOGY_KEY)
    assert drain(ctl) == ["default/web"]
    ctl.reconcile("default/web")                   # 2 endpoints, 3 zones: no hints any more
    assert [h for _, _, h in zones_and_hints(api)] == [None, None]


def test_a_node_without_zone_label_makes_node_info_insufficient(api):
    ctl, recorder = controller(api)
    api.put("nodes", node("n3", None))
    api.put("services", web(annotations=AUTO))
    ctl.reconcile("default/web")
    assert [h for _, _, h in zones_and_hints(api)] == [None, None]
    assert recorder.events == [(
        "Warning", "TopologyAwareHintsDisabled", "Insufficient Node information: allocatable "
        "CPU or zone not specified on one or more nodes, addressType: IPv4")]


# --- the real controllers --------------------------------------------------------------

WORKER_ZONES = {"ip-172-31-0-10": A, "ip-172-31-0-11": A, "ip-172-31-0-12": B}


@pytest.fixture
def cluster(tmp_path):
    with InProcessCluster(tmp_path / "api") as running:
        for name, zone in WORKER_ZONES.items():
            running.client.patch("nodes", name, {"metadata": {"labels": {ZONE: zone}}})
        yield running


def test_zones_hints_and_the_event_in_a_running_cluster(cluster):
    cluster.client.create("deployments", deployment("web", 2))
    cluster.client.create("services", service("web", {"app": "web"}, [{"port": 80}],
                                              trafficDistribution="PreferClose"))
    wait_until("2 ready pods", lambda: ready_pods(cluster, "app=web", 2))

    def endpoints():
        return sorted(((e["nodeName"], e.get("zone"), e.get("hints"))
                       for s in cluster.slices("web") for e in s.get("endpoints") or []),
                      key=str)
    want = sorted(((n, WORKER_ZONES[n], zone_hints(WORKER_ZONES[n]))
                   for n in ("ip-172-31-0-11", "ip-172-31-0-12")), key=str)
    wait_until("zone hints", lambda: endpoints() == want)

    cluster.client.patch("services", "web", {"metadata": {"annotations": AUTO}}, "default")

    def enabled():
        events = cluster.client.list("events", "default")[0]
        return [e for e in events if e["reason"] == "TopologyAwareHintsEnabled"
                and e["involvedObject"]["name"] == "web"]
    [event] = wait_until("the TopologyAwareHintsEnabled event", enabled)
    assert event["source"]["component"] == "endpoint-slice-controller"
    assert event["message"] == "Topology Aware Hints has been enabled, addressType: IPv4"
    assert endpoints() == want       # one endpoint per zone: each keeps its own
