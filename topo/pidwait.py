"""Waiting for a child process through its pidfd with poll(2), at any descriptor number.

topo/sessions.py's `Child.wait` uses select(2), which refuses descriptors
above 1,023; a daemon running a thousand pods holds more than that (two per
container log), so the runtime's own waits go through `wait_for_child`.
A container served by its node's workload server (no pidfd) waits its own way.
"""
from __future__ import annotations

import select


def wait_for_child(child, timeout: float | None) -> bool:
    """Whether child (topo.sessions.Child, or anything with wait()) ended within timeout."""
    fd = getattr(child, "pidfd", None)
    if not hasattr(child, "popen"):          # not a process of ours: its own wait
        return child.wait(timeout)
    if child.poll():
        return True
    if fd is not None:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        poller.poll(None if timeout is None else max(0, int(timeout * 1000)))
    return child.poll()
