"""Signals that ask a program to stop (or reload), handled without a lock.

A Python signal handler runs in the main thread between two bytecodes.  One
that calls threading.Event.set() hangs for good if the signal lands while the
main thread is inside that same Event's wait(): wait() holds the Event's
non-reentrant lock for a moment around its sleep, and the handler then waits
for a lock its own thread holds.  A lab daemon that never stopped on SIGTERM
(no "stopping" line in its log, `down` gave up after 60 s) was this.

So these handlers only store the signal's number, and the main thread sleeps
in short steps and looks at it: no lock is ever taken in a handler.
"""
from __future__ import annotations

import signal
import time

STEP_SECONDS = 0.05     # how late the main thread may notice a signal at most


class Signals:
    """Records the last of ``signums`` received; ``wait`` is Event.wait's shape."""

    def __init__(self, *signums: int):
        self.received: int | None = None
        for signum in signums:
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, _frame) -> None:
        self.received = signum

    def is_set(self) -> bool:
        return self.received is not None

    def take(self) -> int | None:
        """The signal received since the last take (None if none), and forget it."""
        signum, self.received = self.received, None
        return signum

    def wait(self, timeout: float) -> bool:
        """Sleep until one of the signals came or timeout passed; whether one came."""
        deadline = time.monotonic() + timeout
        while self.received is None:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(left, STEP_SECONDS))
        return True
