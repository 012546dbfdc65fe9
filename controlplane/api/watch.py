"""Watch streams: initial state, then changes from the store's event history.

:func:`watch_events` is a generator of ``(type, object)`` pairs that ends on
timeout, server shutdown, or when the consumer stops asking (client gone);
asked to, it yields ``IDLE`` (None) whenever it is about to wait for changes.
resourceVersion semantics follow the apiserver: unset or "0" starts with
synthetic ADDED events for the current state; a number N streams what came
after N (410 Expired when N is older than the history); ``sendInitialEvents``
adds the current state and a bookmark marking its end.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from controlplane.api.errors import expired
from controlplane.api.resources import ResourceType
from controlplane.api.selectors import Requirement, matches_fields, matches_labels
from controlplane.api.store import Store

BOOKMARK_INTERVAL = 10.0
POLL = 0.5
IDLE = None   # yielded when nothing more is ready: time to flush


@dataclass(frozen=True)
class WatchRequest:
    resource: ResourceType
    namespace: str | None
    labels: tuple[Requirement, ...]
    fields: tuple[Requirement, ...]
    resource_version: str
    send_initial_events: bool
    allow_bookmarks: bool
    timeout: float


def _matches(req: WatchRequest, obj: dict) -> bool:
    meta = obj.get("metadata") or {}
    if req.namespace is not None and meta.get("namespace") != req.namespace:
        return False
    return matches_labels(req.labels, meta.get("labels")) and matches_fields(req.fields, obj)


def bookmark(rt: ResourceType, rv: int, initial_end: bool = False) -> dict:
    meta: dict = {"resourceVersion": str(rv)}
    if initial_end:
        meta["annotations"] = {"k8s.io/initial-events-end": "true"}
    return {"kind": rt.kind, "apiVersion": rt.api_version, "metadata": meta}


def watch_events(store: Store, req: WatchRequest, stopped: Callable[[], bool], *,
                 mark_idle: bool = False) -> Iterator[tuple[str, dict] | None]:
    """(event type, object) pairs until timeout, shutdown or ``stopped()``;
    with ``mark_idle``, also IDLE (None) before each wait for changes: a
    writer sends what it has then, one flush for a burst of events instead
    of one per event.

    The starting point is checked here, eagerly (410 Expired raises before
    any byte of the response is sent); the returned generator streams.
    """
    rt = req.resource
    rv_text = req.resource_version
    with store.lock:
        if rv_text in ("", "0") or req.send_initial_events:
            items, start = store.list(rt.plural, req.namespace, read_only=True)
            initial = [obj for obj in items if _matches(req, obj)]
            if rv_text not in ("", "0") and req.send_initial_events:
                start = max(start, int(rv_text))
        else:
            try:
                start = int(rv_text)
            except ValueError:
                start = -1
            if start < store.oldest_watchable_rv():
                raise expired(f"too old resource version: {rv_text} "
                              f"({store.oldest_watchable_rv() + 1})")
            initial = []
    return _stream(store, req, stopped, initial, start, mark_idle)


def _stream(store: Store, req: WatchRequest, stopped: Callable[[], bool], initial: list[dict],
            start: int, mark_idle: bool) -> Iterator[tuple[str, dict] | None]:
    rt = req.resource
    for obj in initial:
        yield "ADDED", obj
    if req.send_initial_events and req.allow_bookmarks:
        yield "BOOKMARK", bookmark(rt, start, initial_end=True)
    last = start
    deadline = time.monotonic() + req.timeout
    next_bookmark = time.monotonic() + BOOKMARK_INTERVAL
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or stopped():
            return
        if mark_idle:
            yield IDLE
        with store.lock:
            store.wait_for_change(last, min(POLL, remaining))
            if store.closed:
                return
            events, newest = store.events_after(last, rt.plural)
        for event in events:
            if _matches(req, event.object):
                yield event.type, event.object
        last = newest
        if req.allow_bookmarks and time.monotonic() >= next_bookmark:
            next_bookmark = time.monotonic() + BOOKMARK_INTERVAL
            yield "BOOKMARK", bookmark(rt, last)
