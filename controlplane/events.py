"""Recording Events, as client-go's legacy EventRecorder and EventCorrelator do.

A component says what happened to an object:

    recorder = EventRecorder(client, "kubelet", host="ip-172-31-0-11").start()
    recorder.event(pod, NORMAL, "Started", "Container started",
                   field_path=container_path("nginx"))
    ...
    recorder.stop()

``event`` only builds the Event and queues it (a bounded queue; when full the
Event is dropped, as client-go's broadcaster drops), so it never blocks its
caller and never raises into it.  One worker thread, owned by the recorder,
writes the queue to the API.  On the way, :class:`EventCorrelator` does what
client-go's does: the same object/reason/message again becomes the existing
Event with ``count`` + 1 and a new ``lastTimestamp`` (a strategic merge
PATCH); ten different messages for one object and reason within ten minutes
collapse into one "(combined from similar events): ..." Event.  Spam
filtering (client-go's token bucket per object) is not done.  A write the API
rejects is dropped; one the transport fails is retried a few times; the first
failure of a run of failures is logged, the rest are not.
"""
from __future__ import annotations

import datetime as dt
import http.client
import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from base.kube.client import ApiError, KubeClient
from controlplane.api.events import new_event

log = logging.getLogger("controlplane.events")
NORMAL, WARNING = "Normal", "Warning"
QUEUE_SIZE = 1000              # client-go's maxQueuedEvents
CACHE_ENTRIES = 4096           # client-go's maxLruCacheEntries
AGGREGATE_MAX_EVENTS = 10      # similar events (differing only by message) ...
AGGREGATE_INTERVAL = 600.0     # ... within this many seconds are combined
WRITE_TRIES = 3
RETRY_SECONDS = 1.0
POLL = 0.2
STOP_TIMEOUT = 5.0
JOIN_RESERVE = 1.0             # of a stop's budget, for the worker to notice and end
REFERENCE_FIELDS = ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion")


def container_path(name: str) -> str:
    """The fieldPath of a container in its pod, as the kubelet references it."""
    return f"spec.containers{{{name}}}"


def reference(obj: dict, field_path: str = "") -> dict:
    """An ObjectReference to an API object (reference.GetReference); a dict that already
    is a reference (kind and name at the top) is taken as it is."""
    if "metadata" not in obj:
        ref = {k: obj[k] for k in (*REFERENCE_FIELDS, "fieldPath") if obj.get(k)}
    else:
        meta = obj["metadata"]
        ref = {"kind": obj.get("kind", ""), "apiVersion": obj.get("apiVersion", ""),
               **{k: meta[k] for k in ("namespace", "name", "uid", "resourceVersion")
                  if meta.get(k)}}
    if field_path:
        ref["fieldPath"] = field_path
    return ref


def node_reference(node_name: str) -> dict:
    """How the kubelet refers to its node: the node's name stands in for its uid."""
    return {"kind": "Node", "name": node_name, "uid": node_name}


def event_key(event: dict) -> tuple:
    """getEventKey: what makes two Events the same Event."""
    ref, source = event.get("involvedObject") or {}, event.get("source") or {}
    return (source.get("component", ""), source.get("host", ""),
            *(ref.get(k, "") for k in ("kind", "namespace", "name", "fieldPath", "uid",
                                       "apiVersion")),
            event.get("type", ""), event.get("reason", ""), event.get("message", ""))


def aggregate_key(event: dict) -> tuple:
    """EventAggregatorByReasonFunc: the same Event but for its message."""
    ref, source = event.get("involvedObject") or {}, event.get("source") or {}
    return (source.get("component", ""), source.get("host", ""),
            *(ref.get(k, "") for k in ("kind", "namespace", "name", "uid", "apiVersion")),
            event.get("type", ""), event.get("reason", ""), event.get("reportingComponent", ""),
            event.get("reportingInstance", ""))


@dataclass
class _Seen:
    count: int
    first_timestamp: str
    name: str


@dataclass
class _Similar:
    messages: set = field(default_factory=set)
    last: float = 0.0


class _Lru(OrderedDict):
    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def put(self, key, value) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)


@dataclass(frozen=True)
class Correlated:
    event: dict              # what to create, or the existing Event's new state
    key: tuple               # under which the outcome is remembered (update_state)
    patch: dict | None       # a strategic merge patch of the existing Event, or None: create


class EventCorrelator:
    """Aggregation, then de-duplication (no spam filter); not thread-safe (one writer)."""

    def __init__(self, clock: Callable[[], float] = time.time, cache_entries: int = CACHE_ENTRIES):
        self.clock = clock
        self._similar: _Lru = _Lru(cache_entries)
        self._seen: _Lru = _Lru(cache_entries)

    def correlate(self, event: dict) -> Correlated:
        event, key = self._aggregate(event)
        seen = self._seen.get(key)
        if seen is None:
            self._seen.put(key, _Seen(1, event["firstTimestamp"], event["metadata"]["name"]))
            return Correlated(event, key, None)
        event = {**event, "metadata": {**event["metadata"], "name": seen.name},
                 "firstTimestamp": seen.first_timestamp, "count": seen.count + 1}
        self._seen.put(key, _Seen(seen.count + 1, seen.first_timestamp, seen.name))
        patch = {k: event[k] for k in ("count", "lastTimestamp", "message")}
        return Correlated(event, key, patch)

    def _aggregate(self, event: dict) -> tuple[dict, tuple]:
        now = self.clock()
        group = aggregate_key(event)
        similar = self._similar.get(group)
        if similar is None or now - similar.last > AGGREGATE_INTERVAL:
            similar = _Similar()
        similar.messages.add(event.get("message", ""))
        similar.last = now
        self._similar.put(group, similar)
        if len(similar.messages) < AGGREGATE_MAX_EVENTS:
            return event, event_key(event)
        similar.messages.pop()           # do not grow the set beyond the threshold
        when = dt.datetime.fromtimestamp(now, dt.timezone.utc)
        combined = new_event(event["involvedObject"], event["type"], event["reason"],
                             "(combined from similar events): " + event.get("message", ""),
                             event["source"].get("component", ""),
                             event["source"].get("host", ""), when)
        combined["metadata"]["namespace"] = event["metadata"]["namespace"]
        return combined, group

    def update_state(self, key: tuple, stored: dict) -> None:
        """Remember what the API holds now (its name, count and first timestamp)."""
        self._seen.put(key, _Seen(int(stored.get("count") or 1),
                                  stored.get("firstTimestamp", ""), stored["metadata"]["name"]))

    def forget(self, key: tuple) -> None:
        self._seen.pop(key, None)


_WAKE = object()      # queued by stop() so the worker need not wait out its poll


class EventRecorder:
    """Events of one component (source.component / reportingController) on one host."""

    def __init__(self, client: KubeClient, component: str, host: str = "", *,
                 clock: Callable[[], float] = time.time, queue_size: int = QUEUE_SIZE):
        self.client = client
        self.component = component
        self.host = host
        self.clock = clock
        self.correlator = EventCorrelator(clock)
        self.dropped = 0
        self._queue: queue.Queue = queue.Queue(queue_size)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_nanos = 0
        self._failing = False
        self._lock = threading.Lock()
        self._busy = 0

    # --- the caller's side -------------------------------------------------------

    def event(self, obj: dict, event_type: str, reason: str, message: str, *,
              field_path: str = "") -> None:
        """Queue an Event about ``obj`` (an API object or an ObjectReference); never blocks
        and never raises."""
        try:
            now = self.clock()
            with self._lock:
                nanos = self._last_nanos = max(int(now * 1e9), self._last_nanos + 1)
            event = new_event(reference(obj, field_path), event_type, reason, message,
                              self.component, self.host,
                              dt.datetime.fromtimestamp(now, dt.timezone.utc), nanos)
        except (KeyError, TypeError, ValueError, AttributeError) as err:   # a malformed obj
            log.warning("%s: cannot make an event about %r: %s", self.component, obj, err)
            return
        with self._lock:
            self._busy += 1
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self._done()
            self.dropped += 1
            if self.dropped == 1:
                log.warning("%s: too many queued events, dropping (first: %s %s)",
                            self.component, reason, message)

    def flush(self, timeout: float) -> bool:
        """Wait until every queued Event has been written (or given up on)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if self._busy == 0:
                    return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)

    # --- lifecycle ------------------------------------------------------------------

    def start(self) -> EventRecorder:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, daemon=True,
                                            name=f"events-{self.component}"
                                                 + (f"-{self.host}" if self.host else ""))
            self._thread.start()
        return self

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Write what is queued for up to ``timeout`` seconds in all, then stop; the rest
        is dropped."""
        deadline = time.monotonic() + timeout
        if self._thread is not None:                 # keep some of the budget for the join
            self.flush(max(0.0, timeout - min(timeout / 2, JOIN_RESERVE)))
        self._stopping.set()
        if self._thread is not None:
            try:
                self._queue.put_nowait(_WAKE)     # end the worker's wait for an event now
            except queue.Full:
                pass                             # then it is not waiting
            self._thread.join(max(0.0, deadline - time.monotonic()))

    # --- the worker ---------------------------------------------------------------------

    def _done(self) -> None:
        with self._lock:
            self._busy -= 1

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                event = self._queue.get(timeout=POLL)
            except queue.Empty:
                continue
            if event is _WAKE:
                continue
            try:
                self._record(self.correlator.correlate(event))
            finally:
                self._done()

    def _record(self, result: Correlated) -> None:
        for attempt in range(WRITE_TRIES):
            try:
                stored = self._write(result)
            except ApiError as err:            # the API said no: retrying will not help
                self._failed(result.event, err)
                self.correlator.forget(result.key)
                return
            except (OSError, http.client.HTTPException) as err:
                self._failed(result.event, err)
                if attempt + 1 < WRITE_TRIES and self._stopping.wait(RETRY_SECONDS):
                    break
                continue
            self.correlator.update_state(result.key, stored)
            if self._failing:
                log.info("%s: writing events again", self.component)
            self._failing = False
            return
        self.correlator.forget(result.key)

    def _write(self, result: Correlated) -> dict:
        event, namespace = result.event, result.event["metadata"]["namespace"]
        if result.patch is not None:
            try:
                return self.client.patch("events", event["metadata"]["name"], result.patch,
                                         namespace, kind="strategic")
            except ApiError as err:
                if not err.not_found:          # expired or deleted meanwhile: create anew
                    raise
        return self.client.create("events", event, namespace)

    def _failed(self, event: dict, err: Exception) -> None:
        if not self._failing:
            log.warning("%s: cannot write event %s %s/%s: %s", self.component,
                        event.get("reason"), event["metadata"]["namespace"],
                        event["metadata"]["name"], err)
        self._failing = True


class NullRecorder:
    """Records nothing: for a component run without an API to report to (tests)."""

    def event(self, obj: dict, event_type: str, reason: str, message: str, *,
              field_path: str = "") -> None:
        return None


__all__ = ["NORMAL", "WARNING", "EventCorrelator", "EventRecorder", "NullRecorder",
           "container_path", "node_reference", "reference"]
