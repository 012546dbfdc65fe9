"""The life both cloud controllers share (the Service one and the ALB one).

Informers wake one worker thread; it syncs on every change and every
RESYNC_SECONDS once all informers have listed, retries after RETRY_SECONDS
when the API is briefly away (a controller retries, it does not die), and
after each round reports what the ELB host says (target health, DNS).  Stop
is bounded: the thread, the informers and the recorder are each joined with
JOIN_TIMEOUT.
"""
from __future__ import annotations

import logging
import threading
import time

from base.kube.client import ApiError
from base.kube.informer import Informer
from controlplane.events import EventRecorder

log = logging.getLogger("controlplane.cloud")

POLL_SECONDS = 0.1
RESYNC_SECONDS = 10.0
RETRY_SECONDS = 0.5
JOIN_TIMEOUT = 5.0


class SyncWorker:
    """A context manager: informers and one worker thread, joined with timeouts.

    Subclasses name themselves (`label`, for the log and the thread), call
    ``__init__`` with their recorder and informers (made with ``_changed`` as
    their handler), and provide ``resume`` (what the last run left, read at
    start), ``sync`` and ``report``."""

    label = "cloud controller"

    def __init__(self, recorder: EventRecorder, informers: list[Informer]):
        self.recorder = recorder
        self._watched = list(informers)
        self.syncs = 0
        self.last_error = ""
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self):
        self.resume()
        self.recorder.start()
        for informer in self._watched:
            informer.start()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=self.label.replace(" ", "-"))
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(JOIN_TIMEOUT)
        for informer in self._watched:
            informer.stop(JOIN_TIMEOUT)
        self.recorder.stop(JOIN_TIMEOUT)

    def wait_synced(self, timeout: float) -> bool:
        """Whether a first sync happened within timeout seconds."""
        deadline = time.monotonic() + timeout
        while self.syncs == 0:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def resume(self) -> None:
        """Take over what the last run left (e.g. the VIPs it gave out)."""

    def sync(self) -> None:
        raise NotImplementedError

    def report(self) -> None:
        """After each round: what the ELB host reports (health, DNS)."""

    def _changed(self, *_args) -> None:
        self._wake.set()

    def _run(self) -> None:
        next_resync = 0.0
        while not self._stopping.is_set():
            woke = self._wake.wait(POLL_SECONDS)
            if self._stopping.is_set():
                return
            if not all(informer.wait_synced(0) for informer in self._watched):
                continue
            if woke or time.monotonic() >= next_resync:
                self._wake.clear()
                try:
                    self.sync()
                    self.last_error = ""
                except (ApiError, OSError) as err:
                    self.last_error = str(err)
                    log.warning("%s sync failed (retrying): %s", self.label, err)
                    self._stopping.wait(RETRY_SECONDS)
                    self._wake.set()
                next_resync = time.monotonic() + RESYNC_SECONDS
            try:
                self.report()
            except (ApiError, OSError, ValueError, KeyError) as err:
                log.warning("%s report failed (retrying): %s", self.label, err)
