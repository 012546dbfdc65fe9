"""A thread pool whose threads end when there is no work, as an HTTP client's
idle connections do.

The scheduler's binders and a controller's pod writers run a burst of API
writes in parallel.  With a plain ThreadPoolExecutor those threads stay for
the life of the process.  Here a thread that has waited `idle` seconds for
work ends, and the pool starts threads again, up to `size`, when work
comes.  (The connections they used are the API client's:
its pool closes them once idle, base/kube/transport.py.)
"""
from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future


class IdlePool:
    def __init__(self, size: int, name: str, idle: float = 5.0):
        self.size = size
        self.name = name
        self.idle = idle
        self._cond = threading.Condition()
        self._items: deque = deque()
        self._threads = 0
        self._waiting = 0
        self._closed = False
        self._started = 0

    @property
    def threads(self) -> int:
        with self._cond:
            return self._threads

    def submit(self, fn: Callable, *args) -> Future:
        future: Future = Future()
        with self._cond:
            if self._closed:
                raise RuntimeError(f"{self.name}: the pool is shut down")
            self._items.append((future, fn, args))
            if len(self._items) > self._waiting and self._threads < self.size:
                self._threads += 1
                self._started += 1
                threading.Thread(target=self._work, daemon=True,
                                 name=f"{self.name}-{self._started}").start()
            self._cond.notify()
        return future

    def map(self, fn: Callable, items: Iterable) -> list:
        """fn over items in parallel; the results in order (an exception is raised)."""
        return [f.result() for f in [self.submit(fn, item) for item in items]]

    def shutdown(self) -> None:
        """No new work; queued work not yet started is cancelled; threads end."""
        with self._cond:
            self._closed = True
            while self._items:
                self._items.popleft()[0].cancel()
            self._cond.notify_all()

    def _work(self) -> None:
        while True:
            with self._cond:
                deadline = time.monotonic() + self.idle
                while not self._items and not self._closed:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._waiting += 1
                    self._cond.wait(left)
                    self._waiting -= 1
                if not self._items:
                    self._threads -= 1
                    return
                future, fn, args = self._items.popleft()
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args))
                except BaseException as err:   # handed to whoever waits on the future
                    future.set_exception(err)
