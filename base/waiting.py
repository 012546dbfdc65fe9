"""Polling with a deadline: the one wait loop of svclab, its experiments and
its tests (each raises its own error through ``error``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from base.errors import LabTimeout

T = TypeVar("T")


def wait_until(what: str, probe: Callable[[], T], timeout: float = 15.0,
               every: float = 0.02,
               error: Callable[[str], Exception] = LabTimeout) -> T:
    """Poll probe() until it returns something true and return that; after
    ``timeout`` seconds raise ``error`` naming `what` and the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise error(f"timed out after {timeout:g} s waiting for {what}; "
                        f"last: {value!r}")
        time.sleep(every)
