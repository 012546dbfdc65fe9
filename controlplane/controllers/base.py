"""What every controller shares: informers in, a work queue, one worker thread.

A controller subscribes handlers to shared informers (they only enqueue
keys), waits until every informer has listed once, then reconciles one key
at a time; what it does to objects it reports as Events through `recorder`
(its `component` is the Events' source, e.g. "replicaset-controller").
`reconcile` raising ApiError (a conflict with a newer object, say) puts the
key back with back-off; any other exception is a bug and is
logged with its traceback before the key is retried the same way, so one
bad object cannot stop the controller.
"""
from __future__ import annotations

import logging
import threading

from base.idlepool import IdlePool
from base.kube.client import ApiError, KubeClient
from base.kube.informer import Informer
from controlplane.controllers.queue import WorkQueue
from controlplane.events import NORMAL, WARNING, EventRecorder, NullRecorder

log = logging.getLogger("controlplane.controllers")
SYNC_TIMEOUT = 30.0
POLL = 0.5
SLOW_START_INITIAL = 1   # kube-controller-manager's SlowStartInitialBatchSize
WRITERS = 16             # concurrent pod writes of one controller


class Controller:
    """Subclasses set `name` (and `component` if they record Events), subscribe in
    __init__ and implement reconcile(key)."""

    name = "controller"
    component = ""

    def __init__(self, client: KubeClient, informers: dict[str, Informer],
                 recorder: EventRecorder | NullRecorder | None = None):
        self.client = client
        self.informers = informers
        self.recorder = recorder or NullRecorder()
        self.queue = WorkQueue()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._writers: IdlePool | None = None

    # --- to implement ----------------------------------------------------------

    def reconcile(self, key: str) -> None:
        raise NotImplementedError

    # --- helpers ---------------------------------------------------------------

    def watch(self, resource: str, handler) -> None:
        self.informers[resource].handlers.append(handler)

    def cached(self, resource: str) -> list[dict]:
        return self.informers[resource].items()

    def get_cached(self, resource: str, key: str) -> dict | None:
        return self.informers[resource].get(key)

    # --- lifecycle -------------------------------------------------------------

    def create_pod(self, owner: dict, pod: dict) -> None:
        """Create one of the owner's pods, with the Events a pod controller records."""
        try:
            self.client.create("pods", pod)
        except ApiError as err:
            self.recorder.event(owner, WARNING, "FailedCreate", f"Error creating: {err.message}")
            raise
        self.recorder.event(owner, NORMAL, "SuccessfulCreate",
                            f"Created pod: {pod['metadata']['name']}")

    def delete_pod(self, owner: dict, pod: dict) -> None:
        """Delete one of the owner's pods (already gone is fine), with its Events."""
        name = pod["metadata"]["name"]
        try:
            self.client.delete("pods", name, pod["metadata"]["namespace"])
        except ApiError as err:
            if err.not_found:
                return
            self.recorder.event(owner, WARNING, "FailedDelete", f"Error deleting: {err.message}")
            raise
        self.recorder.event(owner, NORMAL, "SuccessfulDelete", f"Deleted pod: {name}")

    def create_pods(self, owner: dict, pods: list[dict]) -> tuple[list[dict], Exception | None]:
        """Create pods as kube-controller-manager's slowStartBatch does: in parallel
        batches of 1, 2, 4, ..., stopping after the first batch with a failure, so a
        quota or admission refusal costs one call and a burst of hundreds a few round
        trips, not one each.  Returns the pods not created (failed or skipped) and
        the first error, for the caller to lower its expectations and raise."""
        done, size = 0, SLOW_START_INITIAL
        while done < len(pods):
            batch = pods[done:done + size]
            errors = self._write_all(self.create_pod, owner, batch)
            done += len(batch)
            failed = [pod for pod, err in zip(batch, errors) if err]
            if failed:
                return failed + pods[done:], next(e for e in errors if e)
            size *= 2
        return [], None

    def delete_pods(self, owner: dict, pods: list[dict]) -> tuple[list[dict], Exception | None]:
        """Delete pods all at once, as the ReplicaSet controller does; returns the pods
        not deleted and the first error."""
        errors = self._write_all(self.delete_pod, owner, pods)
        failed = [pod for pod, err in zip(pods, errors) if err]
        return failed, next((e for e in errors if e), None)

    def _write_all(self, write, owner: dict, pods: list[dict]) -> list[Exception | None]:
        def attempt(pod: dict) -> Exception | None:
            try:
                write(owner, pod)
            except Exception as err:   # handed back to the caller to raise
                return err
            return None
        if len(pods) <= 1:
            return [attempt(pod) for pod in pods]
        if self._writers is None:
            self._writers = self.pool(f"{self.name}-write")
        return self._writers.map(attempt, pods)

    def pool(self, name: str, size: int = WRITERS) -> IdlePool:
        """Threads for parallel API writes; idle ones end (the client's pool closes
        the connections they used once those are idle)."""
        return IdlePool(size, name)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"ctl-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        self.queue.shutdown()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._writers is not None:
            self._writers.shutdown()

    def _run(self) -> None:
        for informer in self.informers.values():
            while not informer.wait_synced(POLL):
                if self._stopping.is_set():
                    return
        while not self._stopping.is_set():
            key = self.queue.get(POLL)
            if key is None:
                continue
            try:
                self.reconcile(key)
                self.queue.forget(key)
            except ApiError as err:
                log.debug("%s: %s: %s; retrying", self.name, key, err)
                self.queue.add_rate_limited(key)
            except Exception:   # a bug: keep the controller alive, retry with back-off
                log.exception("%s: reconciling %s failed", self.name, key)
                self.queue.add_rate_limited(key)
            finally:
                self.queue.done(key)
