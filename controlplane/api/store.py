"""Thread-safe in-memory object store with one global resourceVersion.

Objects are plain JSON dicts keyed by (resource, namespace, name). Every
change appends a watch event to a bounded history; watchers wait on the
store's condition and read the history from their own resourceVersion, so a
slow watcher never blocks writers and one that falls too far behind gets
410 Expired, as with etcd compaction.

A resource may have a time to live (Events: kube-apiserver's --event-ttl),
counted from an object's last write, as an etcd lease renewed on every
update. Expired objects are removed lazily, by the next read, write or
watch poll: no thread of its own; watchers see them DELETED, as etcd's
lease expiry shows them.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from base.jsoncopy import json_copy

HISTORY_LENGTH = 10000


@dataclass(frozen=True)
class WatchEvent:
    rv: int
    resource: str
    type: str        # ADDED, MODIFIED, DELETED
    object: dict     # never mutated after the event is recorded


class Store:
    """The single source of truth; callers hold ``lock`` for read-modify-write."""

    def __init__(self, history_length: int = HISTORY_LENGTH,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        # Watchers of one resource wait on its own condition (see wait_for_change).
        self._changed_for: dict[str, threading.Condition] = {}
        self._watching = threading.local()
        self._objects: dict[str, dict[tuple[str, str], dict]] = {}
        self._rv = 0
        self._written: dict[str, int] = {}      # resource -> rv of its last change
        self._history: deque[WatchEvent] = deque(maxlen=history_length)
        self.closed = False
        self._clock = clock
        self._ttl: dict[str, float] = {}
        self._deadlines: dict[tuple[str, str, str], float] = {}
        self._expiry: list[tuple[float, str, str, str]] = []     # a heap of deadlines

    # ---- time to live ---------------------------------------------------
    def set_ttl(self, resource: str, seconds: float) -> None:
        """Objects of ``resource`` written from now on expire ``seconds`` after their last
        write."""
        if not seconds > 0:
            raise ValueError(f"time to live of {resource} must be > 0 seconds, got {seconds!r}")
        with self.lock:
            self._ttl[resource] = float(seconds)

    def expire(self) -> int:
        """Remove every object whose time is up (each a DELETED watch event); how many."""
        with self.lock:
            now, gone = self._clock(), 0
            while self._expiry and self._expiry[0][0] <= now:
                deadline, resource, namespace, name = heapq.heappop(self._expiry)
                if self._deadlines.get((resource, namespace, name)) == deadline:
                    self._remove(resource, namespace, name)
                    gone += 1
            return gone

    def _arm(self, resource: str, namespace: str, name: str) -> None:
        ttl = self._ttl.get(resource)
        if ttl is not None:
            deadline = self._clock() + ttl
            self._deadlines[(resource, namespace, name)] = deadline
            heapq.heappush(self._expiry, (deadline, resource, namespace, name))

    @property
    def resource_version(self) -> int:
        with self.lock:
            return self._rv

    def last_write(self, resource: str) -> int:
        """The rv of the last change to any object of ``resource`` (0: none
        yet).  Read without the lock: one dict read, and a writer sets it
        before its write returns, so whoever saw a write's answer sees it."""
        return self._written.get(resource, 0)

    def oldest_watchable_rv(self) -> int:
        """Smallest rv a watch may start from without missing events."""
        with self.lock:
            if len(self._history) < (self._history.maxlen or 0):
                return 0
            return self._history[0].rv - 1

    def get(self, resource: str, namespace: str, name: str, *,
            read_only: bool = False) -> dict | None:
        """A copy of the object, or None; ``read_only=True`` as for list()."""
        with self.lock:
            self.expire()
            obj = self._objects.get(resource, {}).get((namespace, name))
        # Copied outside the lock (a stored dict is never changed, only replaced):
        # hundreds of request threads queue for it, and each hand-off of a
        # contended lock also waits for the interpreter's.
        return json_copy(obj) if obj is not None and not read_only else obj

    def contains(self, resource: str, namespace: str, name: str) -> bool:
        """Whether the object exists (get() without the copy)."""
        with self.lock:
            self.expire()
            return (namespace, name) in self._objects.get(resource, {})

    def list(self, resource: str, namespace: str | None = None, *,
             read_only: bool = False) -> tuple[list[dict], int]:
        """Objects sorted by namespace/name, and the rv the list is consistent at.

        ``read_only=True`` returns the stored dicts themselves (no copy): the
        caller promises not to mutate them (serialisation, filtering).
        """
        with self.lock:
            self.expire()
            objs = self._objects.get(resource, {})
            keys = sorted(k for k in objs if namespace is None or k[0] == namespace)
            found, rv = [objs[k] for k in keys], self._rv
        return (found if read_only else [json_copy(obj) for obj in found]), rv

    def put(self, resource: str, obj: dict, event_type: str) -> dict:
        """Store ``obj`` (create or replace) under a new resourceVersion."""
        stored = json_copy(obj)         # before the lock, as get() copies after it
        with self.lock:
            self.expire()
            self._rv += 1
            meta = obj["metadata"]
            meta["resourceVersion"] = stored["metadata"]["resourceVersion"] = str(self._rv)
            namespace = meta.get("namespace", "")
            self._objects.setdefault(resource, {})[(namespace, meta["name"])] = stored
            self._arm(resource, namespace, meta["name"])
            self._record(resource, event_type, stored)
            return obj      # the caller's own dict, equal to what is stored: no second copy

    def remove(self, resource: str, namespace: str, name: str) -> dict | None:
        with self.lock:
            self.expire()
            return self._remove(resource, namespace, name)

    def _remove(self, resource: str, namespace: str, name: str) -> dict | None:
        with self.lock:
            obj = self._objects.get(resource, {}).pop((namespace, name), None)
            self._deadlines.pop((resource, namespace, name), None)
            if obj is None:
                return None
            self._rv += 1
            gone = json_copy(obj)     # obj is an earlier event's object: never mutated
            gone["metadata"]["resourceVersion"] = str(self._rv)
            self._record(resource, "DELETED", gone)
            return json_copy(gone)

    def _record(self, resource: str, event_type: str, obj: dict) -> None:
        self._written[resource] = self._rv
        self._history.append(WatchEvent(self._rv, resource, event_type, obj))
        self.changed.notify_all()
        waiting = self._changed_for.get(resource)
        if waiting is not None:
            waiting.notify_all()

    def events_after(self, rv: int, resource: str) -> tuple[list[WatchEvent], int]:
        """Events for ``resource`` newer than rv, and the newest rv seen. Caller holds lock.

        The calling thread is remembered as a watcher of ``resource``: its next
        wait_for_change wakes for that resource's changes only."""
        self._watching.resource = resource
        self.expire()
        out = []
        for event in reversed(self._history):
            if event.rv <= rv:
                break
            if event.resource == resource:
                out.append(event)
        out.reverse()
        return out, self._rv

    def wait_for_change(self, rv: int, timeout: float) -> None:
        """Block until the global rv passes ``rv``, the store closes, or timeout. Caller holds
        lock.  A thread that read events of one resource (events_after) waits for
        a change of that resource only: with a thousand pods, every other
        watcher waking on every change cost more than the watches themselves."""
        if self._rv <= rv and not self.closed:
            resource = getattr(self._watching, "resource", None)
            if resource is None:
                self.changed.wait(timeout)
            else:
                condition = self._changed_for.get(resource)
                if condition is None:
                    condition = self._changed_for[resource] = threading.Condition(self.lock)
                condition.wait(timeout)

    def close(self) -> None:
        """Wake every watcher so that it ends (server shutdown)."""
        with self.lock:
            self.closed = True
            self.changed.notify_all()
            for condition in self._changed_for.values():
                condition.notify_all()
