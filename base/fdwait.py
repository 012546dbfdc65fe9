"""Waiting for one descriptor with poll(2).

select(2) takes no descriptor numbers above 1023, and a lab daemon serving a
thousand pods (their sandboxes, logs and streams) has numbers above that:
select.select raises ValueError for them.  poll has no such limit.
"""
from __future__ import annotations

import math
import select


def readable(fd, timeout: float | None) -> bool:
    """Whether fd (a number or an object with fileno()) has data, EOF or an
    error to report within timeout seconds (None: wait as long as it takes)."""
    return _wait(fd, select.POLLIN, timeout)


def writable(fd, timeout: float | None) -> bool:
    return _wait(fd, select.POLLOUT, timeout)


def _wait(fd, events: int, timeout: float | None) -> bool:
    """ValueError for a closed socket (fileno -1), as select.select raises."""
    poller = select.poll()
    poller.register(fd, events)
    # Round up: a short timeout must not become a zero-wait busy loop.
    return bool(poller.poll(None if timeout is None else max(0, math.ceil(timeout * 1000))))
