"""A lab's folder, on a tmpfs of its own where the machine's /run is not one.

Every pod writes files into the lab's folder (its /etc/hosts and
resolv.conf, its service-account token, its containers' logs) and the state
file is rewritten as pods come and go.  /run is a tmpfs on systemd
distributions, but on some machines (this project's CI VM among them) it is
on ext4, where creating thousands of files a minute costs ext4's inode
allocator a walk over recently deleted inodes: a sixth of the lab daemon's
CPU at a thousand pods.  There the lab mounts a tmpfs of its own on its
folder, named `svclab-NAME` in the mount table, and removes it with the
folder; a folder already on a tmpfs (or ramfs) is used as it is.
"""
from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from topo.netns import MNT_DETACH, mount, umount
from topo.state import LabPaths

MEMORY_FILESYSTEMS = ("tmpfs", "ramfs")


def make_lab_root(paths: LabPaths) -> bool:
    """Create the lab's folder (mode 0700); whether it got a tmpfs of its own."""
    paths.root.mkdir(parents=True, mode=0o700)
    if filesystem_of(paths.root) in MEMORY_FILESYSTEMS:
        return False
    try:
        mount(tmpfs_source(paths), str(paths.root), "tmpfs", 0, "mode=0700")
    except OSError:
        return False        # the folder works on disk too, only slower
    return True


def remove_lab_root(paths: LabPaths) -> None:
    """Remove the lab's folder and everything in it, and its tmpfs if it has one.
    The tmpfs is detached lazily: a process of the lab still holding a file in
    it (its log) frees it when it ends."""
    shutil.rmtree(paths.root, ignore_errors=True)   # a mount point stays, empty
    if own_tmpfs(paths):
        umount(str(paths.root), MNT_DETACH)
        with contextlib.suppress(FileNotFoundError):
            paths.root.rmdir()


def tmpfs_source(paths: LabPaths) -> str:
    return f"svclab-{paths.name}"


def own_tmpfs(paths: LabPaths) -> bool:
    """Whether a tmpfs the lab mounted is on its folder (by path and name)."""
    mounts = _mounts()
    return mounts.get(str(paths.root)) == ("tmpfs", tmpfs_source(paths))


def filesystem_of(path: Path) -> str:
    """The type of the filesystem holding path ("" if unknown)."""
    best, found = "", ""
    resolved = os.path.realpath(path)
    for point, (fstype, _source) in _mounts().items():
        inside = resolved == point or resolved.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, found = point, fstype
    return found


def _mounts() -> dict[str, tuple[str, str]]:
    """mount point -> (filesystem type, source) in this mount namespace (the last
    mount on a point wins, as the kernel shows the top one)."""
    found = {}
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            fields = line.split()
            dash = fields.index("-")
            point = fields[4].replace("\\040", " ")
            found[point] = (fields[dash + 1], fields[dash + 2])
    return found
