"""Informers: list + watch one resource into a local cache, with callbacks.

The pattern of client-go's reflector and informer, small: list (remember the
resourceVersion), then watch from it; when the watch ends, resume from the
last version seen; on 410 Gone (history compacted) or an error, list again
and replay the difference as events.  Handlers run on the informer's thread
and must be quick (controllers enqueue keys and work elsewhere).
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from base.kube.client import ApiError, KubeClient, Watch

log = logging.getLogger("svclab.informer")
Handler = Callable[[str, dict, dict | None], None]   # (type, obj, old)
RETRY_SECONDS = 0.5


def key_of(obj: dict) -> str:
    meta = obj["metadata"]
    return f"{meta['namespace']}/{meta['name']}" if meta.get("namespace") else meta["name"]


class Informer:
    """Keeps `cache` (key -> object) in step with the API; a context manager."""

    def __init__(self, client: KubeClient, resource: str, handler: Handler | None = None,
                 namespace: str | None = None, watch_timeout: int = 300, *,
                 label_selector: str | None = None, field_selector: str | None = None):
        self.client = client
        self.resource = resource
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.handlers: list[Handler] = [handler] if handler else []
        self.watch_timeout = watch_timeout
        self._cache: dict[str, dict] = {}
        self._lock = threading.Lock()
        self._synced = threading.Event()
        self._stopping = threading.Event()
        self._watch: Watch | None = None
        self._thread: threading.Thread | None = None
        self._rv = "0"

    def __enter__(self) -> Informer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- reading ---------------------------------------------------------------

    def get(self, key: str) -> dict | None:
        with self._lock:
            return self._cache.get(key)

    def items(self) -> list[dict]:
        with self._lock:
            return list(self._cache.values())

    def wait_synced(self, timeout: float) -> bool:
        return self._synced.wait(timeout)

    # --- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"informer-{self.resource}")
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        deadline = time.monotonic() + timeout
        while True:
            # Close whatever watch is open now: one may be opening as we stop.
            watch = self._watch
            if watch is not None:
                watch.close()
            if self._thread is None:
                return
            self._thread.join(min(0.1, max(0.0, deadline - time.monotonic())))
            if not self._thread.is_alive() or time.monotonic() >= deadline:
                return

    def _run(self) -> None:
        need_list = True
        while not self._stopping.is_set():
            try:
                if need_list:
                    self._relist()
                    need_list = False
                self._watch_once()
            except ApiError as err:
                need_list = True
                if err.status != 410:
                    log.warning("%s: %s; listing again", self.resource, err)
                    self._stopping.wait(RETRY_SECONDS)
            except (OSError, ValueError) as err:
                if self._stopping.is_set():
                    return
                log.warning("%s watch broke (%s); listing again", self.resource, err)
                need_list = True
                self._stopping.wait(RETRY_SECONDS)
            except Exception:
                # stop() closes the watch under the reading thread; http.client
                # then fails in odd ways (AttributeError): that is the end, not a bug.
                if self._stopping.is_set():
                    return
                raise

    def _relist(self) -> None:
        items, rv = self.client.list(self.resource, self.namespace,
                                     label_selector=self.label_selector,
                                     field_selector=self.field_selector)
        fresh = {key_of(o): o for o in items}
        with self._lock:
            old = self._cache
            self._cache = fresh
        for key, obj in fresh.items():
            before = old.get(key)
            if before is None:
                self._emit("ADDED", obj, None)
            elif before["metadata"].get("resourceVersion") != obj["metadata"].get(
                    "resourceVersion"):
                self._emit("MODIFIED", obj, before)
        for key, obj in old.items():
            if key not in fresh:
                self._emit("DELETED", obj, None)
        self._rv = rv
        self._synced.set()

    def _watch_once(self) -> None:
        self._watch = self.client.watch(self.resource, self._rv, self.namespace,
                                        timeout_seconds=self.watch_timeout,
                                        label_selector=self.label_selector,
                                        field_selector=self.field_selector)
        try:
            for kind, obj in self._watch:
                if self._stopping.is_set():
                    return
                if kind == "ERROR":
                    raise ApiError(int(obj.get("code", 500)), obj.get("reason", ""),
                                   obj.get("message", ""), "WATCH", self.resource)
                self._rv = obj.get("metadata", {}).get("resourceVersion", self._rv)
                if kind == "BOOKMARK":
                    continue
                key = key_of(obj)
                with self._lock:
                    before = self._cache.get(key)
                    if kind == "DELETED":
                        self._cache.pop(key, None)
                    else:
                        self._cache[key] = obj
                self._emit(kind, obj, before)
        finally:
            self._watch.close()
            self._watch = None

    def _emit(self, kind: str, obj: dict, old: dict | None) -> None:
        for handler in self.handlers:
            try:
                handler(kind, obj, old)
            except Exception:   # one bad handler must not kill the informer
                log.exception("%s handler failed on %s %s", self.resource, kind, key_of(obj))
