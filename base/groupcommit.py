"""Group commit: one write serves every caller that asked for it meanwhile.

A lab's state file is rewritten whole after every change; with a thousand
pods starting, writing it once per pod cost O(pods) each time, O(pods^2) in
all, and most of the daemon's time.  Callers of a `GroupCommit` each return
only after a commit that *began after they called* has finished, so what they
changed before calling is on disk, as with a write of their own; but callers
that arrive while a commit runs (or waits) share the next one.  Between two
commits it leaves `spacing` times the CPU time the last commit took, so
commits take at most 1 / (1 + spacing) of a core however many callers there
are, and a small state (a few milliseconds per write) is written at once.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable


class GroupCommit:
    """Call it to get `commit()` run on your behalf; a caller waits at most `timeout`."""

    def __init__(self, commit: Callable[[], None], spacing: float = 2.0,
                 timeout: float = 60.0):
        self._commit = commit
        self._spacing = spacing
        self._timeout = timeout
        self._cond = threading.Condition()
        self._asked = 0          # callers so far
        self._done = 0           # callers whose changes a finished commit holds
        self._running = False    # a caller is committing for the others
        self._next_start = 0.0   # monotonic time the next commit may start
        self.commits = 0

    def __call__(self) -> None:
        deadline = time.monotonic() + self._timeout
        with self._cond:
            self._asked += 1
            mine = self._asked
            while self._done < mine:
                if not self._running:
                    self._running = True
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no state commit within {self._timeout:g} s")
                self._cond.wait(left)
            else:
                return
        self._lead()

    def _lead(self) -> None:
        """Commit for everyone who asked until the commit starts."""
        finished = False
        try:
            pause = self._next_start - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            with self._cond:
                covered = self._asked
            began = time.thread_time()
            self._commit()
            # Spaced by the commit's own CPU time, not its wall time: a busy
            # process stretches the latter (a thousand pod workers waiting for
            # the interpreter made a 60 ms write last a second, and the next
            # one then waited four).
            self._next_start = time.monotonic() + self._spacing * (time.thread_time() - began)
            finished = True
        finally:
            with self._cond:
                self._running = False
                if finished:
                    self._done = max(self._done, covered)
                    self.commits += 1
                self._cond.notify_all()
