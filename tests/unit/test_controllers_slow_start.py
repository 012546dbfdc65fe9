"""Pod writes of a controller: creates in slow-start batches (1, 2, 4, ...) that
stop at the first failing batch, deletes all at once; what was not written is
handed back with the first error."""
from __future__ import annotations

import threading

from base.kube.client import ApiError
from controlplane.controllers.base import Controller

OWNER = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
         "metadata": {"name": "web", "namespace": "default", "uid": "rs-1"}}


def pods(count: int) -> list[dict]:
    return [{"metadata": {"name": f"web-{i}", "namespace": "default"}} for i in range(count)]


class CountingPods:
    """The pods API: refuses the names in `refuse`, counts the largest number of
    writes in flight at once."""

    def __init__(self, refuse=()):
        self.refuse = set(refuse)
        self.created: list[str] = []
        self.deleted: list[str] = []
        self.in_flight = self.most_in_flight = 0
        self._lock = threading.Lock()
        self._overlap = threading.Barrier(2, timeout=0.2)

    def _write(self, name: str, into: list[str]) -> None:
        with self._lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            self._overlap.wait()         # give a parallel write the chance to overlap
        except threading.BrokenBarrierError:
            self._overlap.reset()
        with self._lock:
            self.in_flight -= 1
        if name in self.refuse:
            raise ApiError(403, "Forbidden", f'pods "{name}" is forbidden: exceeded quota')
        with self._lock:
            into.append(name)

    def create(self, resource, pod, namespace=None):
        self._write(pod["metadata"]["name"], self.created)
        return pod

    def delete(self, resource, name, namespace=None, **_):
        self._write(name, self.deleted)


def written(method: str, count: int, refuse=()) -> tuple[CountingPods, list[dict], Exception]:
    """(the API, what was not written, the error) after a controller's create_pods or
    delete_pods of `count` pods."""
    api = CountingPods(refuse)
    ctl = Controller(api, {})
    try:
        return (api, *getattr(ctl, method)(OWNER, pods(count)))
    finally:
        ctl.stop()


def names(pods_: list[dict]) -> list[str]:
    return [p["metadata"]["name"] for p in pods_]


def test_a_burst_is_created_in_parallel_and_all_of_it_is_written():
    api, unmade, error = written("create_pods", 40)
    assert (unmade, error) == ([], None)
    assert sorted(api.created) == sorted(names(pods(40)))
    assert api.most_in_flight > 1


def test_a_failing_batch_stops_the_rest_and_hands_back_what_was_not_created():
    # batches: [web-0], [web-1, web-2], [web-3 .. web-6], ...: web-4 fails in the third
    api, unmade, error = written("create_pods", 20, refuse={"web-4"})
    assert isinstance(error, ApiError) and error.status == 403
    assert sorted(api.created) == sorted(f"web-{i}" for i in (0, 1, 2, 3, 5, 6))
    assert names(unmade) == ["web-4"] + [f"web-{i}" for i in range(7, 20)]


def test_the_first_pod_alone_probes_a_refusal():
    api, unmade, error = written("create_pods", 500, refuse={"web-0"})
    assert api.created == [] and len(unmade) == 500 and error.status == 403


def test_deletes_go_at_once_and_failures_are_handed_back():
    api, kept, error = written("delete_pods", 6, refuse={"web-2"})
    assert sorted(api.deleted) == ["web-0", "web-1", "web-3", "web-4", "web-5"]
    assert names(kept) == ["web-2"] and error.status == 403
