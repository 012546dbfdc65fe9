"""When to sync: kube-proxy's bounded-frequency runner, small.

A sync runs when something changed, but never sooner than `min_interval`
after the previous one (changes arriving meanwhile are batched), and at least
every `max_interval` even with no change (a full resync that repairs rules
someone else removed).  A failed sync is retried after `retry_interval`.

The lab's agents use a `min_interval` of 100 ms where kube-proxy's default is
1 s, so a test sees a Service's rules at once.  A sync that took long (a
thousand endpoints changing, six agents on two cores) would then follow the
last almost back to back; so a change-driven sync also waits `rest` times
the last sync's own duration after it ended.  Quick syncs are not affected:
with rest 2, only a sync over a third of `min_interval` delays the next.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger("svclab.proxy.runner")


class BoundedFrequencyRunner:
    """Runs `fn(full: bool)` on its own thread; a context manager."""

    def __init__(self, fn: Callable[[bool], None], min_interval: float,
                 max_interval: float, retry_interval: float = 1.0,
                 clock: Callable[[], float] = time.monotonic, rest: float = 2.0):
        if min_interval < 0 or max_interval <= 0 or min_interval > max_interval:
            raise ValueError("need 0 <= min_interval <= max_interval and max_interval > 0")
        if rest < 0:
            raise ValueError("need rest >= 0")
        self.fn = fn
        self.min_interval = min_interval
        self.max_interval = max_interval
        self.rest = rest
        self.retry_interval = retry_interval
        self.clock = clock
        self._wake = threading.Condition()
        self._pending = True          # the first sync happens at once
        self._full_pending = True
        self._stopping = False
        self._last_run = float("-inf")
        self._rested_at = float("-inf")     # the last sync's end + rest x its duration
        self._thread: threading.Thread | None = None

    def __enter__(self) -> BoundedFrequencyRunner:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="sync-runner", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout)

    def request(self, full: bool = False) -> None:
        """Something changed: sync soon (as soon as min_interval allows)."""
        with self._wake:
            self._pending = True
            self._full_pending = self._full_pending or full
            self._wake.notify()

    def next_delay(self, now: float) -> float:
        """Seconds until the next sync should run (0 = now); pure given state."""
        since = now - self._last_run
        if self._pending:
            return max(0.0, self.min_interval - since, self._rested_at - now)
        return max(0.0, self.max_interval - since)

    def _loop(self) -> None:
        while True:
            with self._wake:
                while not self._stopping:
                    delay = self.next_delay(self.clock())
                    if delay <= 0:
                        break
                    self._wake.wait(delay)
                if self._stopping:
                    return
                full = self._full_pending or not self._pending
                self._pending = self._full_pending = False
                self._last_run = self.clock()
            try:
                self.fn(full)
            except Exception:   # the loop must outlive a failed sync
                log.exception("sync failed; retrying with a full sync in %.1f s",
                              self.retry_interval)
                with self._wake:
                    self._pending = self._full_pending = True
                    self._last_run = self.clock() - self.min_interval + self.retry_interval
                    self._rested_at = float("-inf")
                continue
            with self._wake:
                ended = self.clock()
                self._rested_at = ended + self.rest * (ended - self._last_run)
