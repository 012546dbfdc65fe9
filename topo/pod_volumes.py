"""A pod's volumes inside its own mount namespace: written like the kubelet's
atomic writer, mounted at their mountPaths, invisible to the machine.

A svclab pod sees the machine's file system through a mount namespace of its
own.  Its volumes live in a tmpfs of that namespace (STAGING, like the
kubelet's /var/lib/kubelet/pods/<uid>/volumes/<plugin>/<name>): a "files"
volume (configMap, secret, downwardAPI, projected) is written as upstream's
atomic writer (pkg/volume/util/atomic_writer.go) lays it out: every visible
name is a link into `..data`, itself a link to a timestamped folder, so an
update swaps one link and readers see either the old files or the new ones;
an emptyDir is a tmpfs of its own.  Each mount is a bind mount at its path,
read-only where Kubernetes mounts read-only.  A path whose parent folders do
not exist in the pod is made in the pod only: the nearest existing folder is
covered, in the pod's namespace, by a tmpfs that shows the same entries (each
bound from the original) plus the new folder; for a folder at the top level
the pod's root itself is such a tmpfs (pivot_root).  Nothing is created on
the machine's file system.

This file runs in two places, so it uses only the standard library: inside
the pod's namespaces as a script (`python -S -E -s pod_volumes.py`, the
plan as JSON on stdin) right after the sandbox is made, and in the lab
daemon, which rewrites a volume through /proc/<pod pid>/root.
"""
from __future__ import annotations

import base64
import ctypes
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time

STAGING = "/run/.svclab-volumes"
STAGING_SIZE = "64m"
EMPTY_DIR_SIZE = "512m"            # an emptyDir without sizeLimit (node disk upstream)
DATA_DIR, NEW_DATA_DIR = "..data", "..data_tmp"
OWN_SOURCES = ("svclab-pod-run", "svclab-pod-tmp", "svclab-pod-volumes",
               "svclab-pod-emptydir", "svclab-pod-dir")
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT = 1, 2, 4, 32
MS_BIND, MS_MOVE, MS_REC = 4096, 8192, 16384
MNT_DETACH = 2
SET_UP_TIMEOUT = 30.0
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}


class VolumeError(Exception):
    """A volume could not be written or mounted."""


# --- the atomic writer ---------------------------------------------------------------

def check_path(path: str) -> str:
    """A payload path as the atomic writer accepts it (relative, no '..')."""
    parts = path.split("/")
    if not path or path.startswith("/") or ".." in parts or parts[0].startswith(".."):
        raise VolumeError(f"invalid path in volume: {path!r}")
    return os.path.normpath(path)


def _current(target: str) -> dict[str, tuple[bytes, int]]:
    """What the volume holds now: path -> (content, mode)."""
    old = os.path.join(target, DATA_DIR)
    if not os.path.islink(old):
        return {}
    found = {}
    for folder, _, names in os.walk(old + "/"):
        for name in names:
            full = os.path.join(folder, name)
            with open(full, "rb") as handle:
                found[os.path.relpath(full, old)] = (handle.read(),
                                                     stat.S_IMODE(os.lstat(full).st_mode))
    return found


def write_payload(target: str, files: list[tuple[str, bytes, int]]) -> bool:
    """Make the volume folder hold exactly files (path, content, mode); False if it did."""
    payload = {check_path(path): (data, mode) for path, data, mode in files}
    os.makedirs(target, exist_ok=True)
    old_ts = os.readlink(os.path.join(target, DATA_DIR)) \
        if os.path.islink(os.path.join(target, DATA_DIR)) else ""
    if old_ts and _current(target) == payload:
        return False
    prefix = time.strftime("..%Y_%m_%d_%H_%M_%S.", time.gmtime())
    ts_dir = tempfile.mkdtemp(prefix=prefix, dir=target)
    os.chmod(ts_dir, 0o755)
    for path, (data, mode) in payload.items():
        full = os.path.join(ts_dir, path)
        os.makedirs(os.path.dirname(full), mode=0o755, exist_ok=True)
        with open(full, "wb") as handle:
            handle.write(data)
        os.chmod(full, mode)
    visible = {path.split("/", 1)[0] for path in payload}
    for name in visible:
        if not os.path.lexists(os.path.join(target, name)):
            os.symlink(os.path.join(DATA_DIR, name), os.path.join(target, name))
    link = os.path.join(target, NEW_DATA_DIR)
    if os.path.lexists(link):
        os.unlink(link)
    os.symlink(os.path.basename(ts_dir), link)
    os.rename(link, os.path.join(target, DATA_DIR))
    for name in os.listdir(target):
        if not name.startswith("..") and name not in visible \
                and os.path.islink(os.path.join(target, name)):
            os.unlink(os.path.join(target, name))
    if old_ts:
        shutil.rmtree(os.path.join(target, old_ts), ignore_errors=True)
    return True


def update_volume(pid: int, folder: str, files: list[tuple[str, bytes, int]]) -> bool:
    """From the lab daemon: rewrite a pod's volume through its root."""
    target = f"/proc/{pid}/root{STAGING}/{folder}"
    if not os.path.isdir(target):
        raise VolumeError(f"pod process {pid} has no volume folder {STAGING}/{folder}")
    return write_payload(target, files)


# --- mounts, inside the pod ------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise VolumeError(f"{what}: {os.strerror(err)}")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    _check(_libc.mount(source and source.encode(), target.encode(), fstype and fstype.encode(),
                       ctypes.c_ulong(flags), data.encode() if data else None),
           f"mount {source} on {target}")


def umount_detach(target: str) -> None:
    _check(_libc.umount2(target.encode(), MNT_DETACH), f"umount {target}")


def _unescape(field: str) -> str:
    return field.encode().decode("unicode_escape") if "\\" in field else field


def mounts() -> list[dict]:
    """This namespace's mounts, in mount order."""
    found = []
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            fields = line.split()
            dash = fields.index("-")
            found.append({"dev": fields[2], "root": _unescape(fields[3]),
                          "point": _unescape(fields[4]), "rw": "rw" in fields[5].split(","),
                          "source": fields[dash + 2]})
    return found


def _inside(path: str, folder: str) -> bool:
    return folder == "/" or path == folder or path.startswith(folder.rstrip("/") + "/")


def writable_view(path: str) -> str | None:
    """Where path can be created in the pod's own tmpfs (a volume mounted read-only is
    written through the volumes' tmpfs); None when it lies on the machine's files."""
    table = mounts()
    holder = None
    for entry in table:
        if _inside(path, entry["point"]):
            holder = entry          # the last, deepest one wins (mount order)
    if holder is None or holder["source"] not in OWN_SOURCES:
        return None
    base = next((e for e in table if e["dev"] == holder["dev"] and e["root"] == "/"
                 and e["rw"]), None)
    if base is None:
        return None
    rest = os.path.relpath(path, holder["point"])
    inner = os.path.normpath(os.path.join(holder["root"], rest)).lstrip("/")
    return os.path.normpath(os.path.join(base["point"], inner))


def _fill_mirror(folder: str, stage: str, skip: str = "") -> None:
    """Make stage show folder's entries: links copied, the rest bound from folder."""
    info = os.stat(folder)
    os.chmod(stage, stat.S_IMODE(info.st_mode))
    os.chown(stage, info.st_uid, info.st_gid)
    for entry in os.scandir(folder):
        source, copy = entry.path, os.path.join(stage, entry.name)
        if entry.is_symlink():
            os.symlink(os.readlink(source), copy)
        elif entry.is_dir(follow_symlinks=False):
            os.mkdir(copy)
            mount(source, copy, None, MS_BIND | MS_REC)
        else:
            open(copy, "w").close()
            mount(source, copy, None, MS_BIND)
    if skip:
        umount_detach(os.path.join(stage, skip.lstrip("/")))


def mirror(folder: str) -> None:
    """Cover folder (of the machine's files) with a tmpfs of the pod that shows the same."""
    stage = tempfile.mkdtemp(prefix=".mirror-", dir=STAGING)
    mount("svclab-pod-dir", stage, "tmpfs", MS_NOSUID | MS_NODEV, "size=16m,mode=755")
    if folder != "/":
        _fill_mirror(folder, stage)
        mount(stage, folder, None, MS_MOVE)
        os.rmdir(stage)
        return
    # The root: the copy of /run holds the stage itself; drop it, then pivot onto the stage.
    _fill_mirror("/", stage, skip=stage)
    os.chdir(stage)
    _check(_libc.syscall(SYS_PIVOT_ROOT[os.uname().machine], b".", b"."), "pivot_root")
    umount_detach(".")
    os.chdir("/")
    try:
        os.rmdir(stage)             # the stage's folder in the volumes' tmpfs, now unused
    except OSError:
        pass


def ensure_target(path: str, is_dir: bool) -> str:
    """The mount point for path in the pod, made in the pod only; its real path."""
    real = os.path.realpath(path)
    if os.path.exists(real):
        if os.path.isdir(real) != is_dir:
            kind = "a directory" if is_dir else "a file"
            raise VolumeError(f"cannot mount {kind} on {path}: it exists as something else")
        return real
    ancestor = os.path.dirname(real)
    while not os.path.exists(ancestor):
        ancestor = os.path.dirname(ancestor)
    if not os.path.isdir(ancestor):
        raise VolumeError(f"cannot mount on {path}: {ancestor} is not a directory")
    view = writable_view(ancestor)
    if view is None:
        mirror(ancestor)
        view = ancestor
    made = os.path.join(view, os.path.relpath(real, ancestor))
    if is_dir:
        os.makedirs(made, mode=0o755, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(made), mode=0o755, exist_ok=True)
        open(made, "a").close()
    return real


def volume_source(folder: str, sub_path: str) -> str:
    """What a mount binds: the volume, or the file or folder at sub_path in it (made if
    missing, as the kubelet makes a missing subPath); never a path outside the volume."""
    root = os.path.join(STAGING, folder)
    if not sub_path:
        return root
    source = os.path.realpath(os.path.join(root, check_path(sub_path)))
    if not _inside(source, os.path.realpath(root)):
        raise VolumeError(f"subPath {sub_path!r} leaves the volume")
    if not os.path.exists(source):
        os.makedirs(source, mode=0o755)
    return source


def set_up(plan: dict) -> None:
    """Write and mount every volume of the plan, in the pod's mount namespace."""
    os.makedirs(STAGING, mode=0o755, exist_ok=True)
    mount("svclab-pod-volumes", STAGING, "tmpfs", MS_NOSUID | MS_NODEV,
          f"size={STAGING_SIZE},mode=755")
    for volume in plan["volumes"]:
        target = os.path.join(STAGING, volume["folder"])
        os.makedirs(target, mode=0o755)
        if volume["kind"] == "emptyDir":
            size = volume.get("size") or EMPTY_DIR_SIZE
            mount("svclab-pod-emptydir", target, "tmpfs", MS_NOSUID | MS_NODEV,
                  f"size={size},mode=777")
        else:
            write_payload(target, [(p, base64.b64decode(d), m) for p, d, m in volume["files"]])
    for entry in sorted(plan["mounts"], key=lambda m: m["path"].count("/")):
        source = volume_source(entry["folder"], entry.get("sub_path", ""))
        is_dir = os.path.isdir(source)
        target = ensure_target(entry["path"], is_dir)
        mount(source, target, None, MS_BIND | (MS_REC if is_dir else 0))
        if entry.get("read_only"):
            mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)


def encode_plan(volumes, mounts_) -> str:
    """The script's input from base.cri PodVolume and VolumeMount objects."""
    folders = {v.name: v.folder for v in volumes}
    return json.dumps({
        "volumes": [{"folder": v.folder, "kind": v.kind, "size": v.size_limit,
                     "files": [[f.path, base64.b64encode(f.data).decode(), f.mode]
                               for f in v.files]} for v in volumes],
        "mounts": [{"folder": folders[m.volume], "sub_path": m.sub_path, "path": m.path,
                    "read_only": m.read_only} for m in mounts_ if m.volume in folders]})


def set_up_in_pod(popen_in, host: str, python: str, plan: str,
                  timeout: float = SET_UP_TIMEOUT) -> None:
    """From the lab daemon: run this file in the pod host's namespaces (popen_in:
    topo.network.LabNetwork.popen_in) with no site and no user paths."""
    argv = [python, "-S", "-E", "-s", os.path.abspath(__file__)]
    proc, _ = popen_in(host, argv, record=False, stdin=subprocess.PIPE,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _, err = proc.communicate(plan.encode(), timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise VolumeError(f"setting up the volumes took more than {timeout:g} s") from None
    if proc.returncode != 0:
        raise VolumeError(err.decode(errors="replace").strip()
                          or f"exit code {proc.returncode}")


def main() -> int:
    try:
        set_up(json.load(sys.stdin))
    except (OSError, VolumeError, ValueError, KeyError) as err:
        print(f"volumes: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
