"""setns(2) for Python 3.11 (os.setns arrived in 3.12): enter a namespace by its fd."""
from __future__ import annotations

import ctypes
import os

CLONE_FLAGS = {"net": 0x40000000, "mnt": 0x00020000, "uts": 0x04000000}
_libc = ctypes.CDLL(None, use_errno=True)


def setns(fd: int, kind: str) -> None:
    """Move the calling thread into the namespace `fd` refers to; kind is one of
    CLONE_FLAGS' keys, and the kernel checks that fd is a namespace of that kind.
    Entering a mount namespace needs a single-threaded process."""
    if _libc.setns(fd, CLONE_FLAGS[kind]) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"setns into the {kind} namespace: {os.strerror(code)}")
