"""Give a Python program the process name of the program it stands for.

On a node, `ps auxw | grep kube-proxy` should find the proxy agent, and in a
pod `ps` should show `/serve_hostname`, not `python -m ...`.  `ps` prints a
process's command line from the memory between the kernel's arg_start and
arg_end (fields 48 and 49 of /proc/self/stat); `top`, `pgrep` and `ps -e`
print its 15-character `comm`.  This module rewrites both, as the
setproctitle package does on Linux, without a C extension: the new command
line is written over the old one (which CPython no longer reads once
started: sys.argv is a copy), padded with NULs, so it can never be longer
than the original; prctl(PR_SET_NAME) sets `comm`.

A title that does not fit is cut at an argument boundary; anything the
kernel refuses leaves the process as it was (the title is cosmetic).
"""
from __future__ import annotations

import ctypes
from collections.abc import Sequence

PR_SET_NAME = 15
COMM_MAX = 15                    # TASK_COMM_LEN - 1


def encode_title(argv: Sequence[str], room: int) -> bytes:
    """NUL-separated argv, cut to whole arguments that fit in room bytes
    (with a final NUL), then NUL-padded to exactly room bytes."""
    out = b""
    for arg in argv:
        piece = arg.encode() + b"\0"
        if len(out) + len(piece) > room:
            break
        out += piece
    if not out and room > 0:          # not even the first argument: cut it
        out = argv[0].encode()[:room - 1] + b"\0" if argv else b""
    return out.ljust(room, b"\0")


def argument_area(stat: str) -> tuple[int, int]:
    """(arg_start, arg_end) from the text of /proc/self/stat."""
    fields = stat[stat.rindex(")") + 2:].split()
    # fields[0] is field 3 (state); arg_start/arg_end are fields 48 and 49
    return int(fields[45]), int(fields[46])


def set_process_title(argv: Sequence[str]) -> bool:
    """Show argv as this process's command line and argv[0]'s base name as its
    comm.  False when the kernel's view could not be changed."""
    if not argv:
        return False
    try:
        with open("/proc/self/stat") as stat:
            start, end = argument_area(stat.read())
        libc = ctypes.CDLL(None, use_errno=True)
        name = argv[0].rsplit("/", 1)[-1].encode()[:COMM_MAX]
        libc.prctl(PR_SET_NAME, ctypes.c_char_p(name), 0, 0, 0)
        if end <= start:
            return False
        title = encode_title(argv, end - start)
        ctypes.memmove(start, title, len(title))
        with open("/proc/self/cmdline", "rb") as cmdline:
            return cmdline.read().split(b"\0", 1)[0] == title.split(b"\0", 1)[0]
    except (OSError, ValueError, IndexError):
        return False
