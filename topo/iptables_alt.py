"""Which iptables a lab node runs: iptables-nft or iptables-legacy.

Clusters differ here (kube-proxy runs whichever the node's OS selected), and
at scale the two differ by an order of magnitude (`iptables-restore` of 10k
services: ~25 s through iptables-nft, ~2 s through iptables-legacy on the
project's VM).  Debian and Ubuntu select the variant with the alternatives
system: /usr/sbin/iptables -> /etc/alternatives/iptables ->
/usr/sbin/iptables-nft (a link to xtables-nft-multi), and the same for
iptables-save, iptables-restore and the ip6tables trio.  A node's OS would
run `update-alternatives --set iptables /usr/sbin/iptables-legacy`; a lab
node does the same inside its own mount namespace only: it gets an
/etc/alternatives of its own (a copy of the machine's links with those six
pointing at the chosen variant) bind-mounted over /etc/alternatives there.
Everything that runs in the node -- topo's own rules, the proxy and policy
agents, `svclab exec NODE -- iptables-save` -- then resolves `iptables*` to
the same variant, and `ls -l /etc/alternatives/iptables` in the node tells
which.  Under legacy a node also gets its own iptables lock
(/run/xtables.lock, which iptables-legacy takes for every command): on a
real node it is the node's own file, and sharing the machine's would make
the lab's nodes wait on each other.  The machine's /etc/alternatives is
never written: the mounts are made only after checking that the host has a
mount namespace of its own whose mounts do not propagate back to the
machine's.

Pure: `detect`-free planning (`alternative_links`, `node_alternatives`,
`backend_of`, `propagates`); I/O: `detect_backend`, `prepare`,
`apply_in_host`, `host_backend`.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import shlex
import threading
from collections.abc import Mapping
from pathlib import Path

from base.errors import LabError
from topo.netns import run_in

BACKENDS = ("nft", "legacy")
FIELD = "iptablesBackend"
ALTERNATIVES = "/etc/alternatives"
XT_LOCK = "/run/xtables.lock"      # iptables-legacy's lock (libxtables' XT_LOCK_NAME)
SBIN = "/usr/sbin"
# The alternatives Debian's iptables package registers, with the member of
# each variant: iptables (master) with -restore and -save (slaves), ip6tables alike.
GROUPS = ("iptables", "ip6tables")
_SUFFIXES = ("", "-restore", "-save")
NAMES = tuple(group + suffix for group in GROUPS for suffix in _SUFFIXES)
_PREPARE_LOCK = threading.Lock()


def variant_name(name: str, backend: str) -> str:
    """The variant's own command for an alternative: iptables-save, legacy ->
    iptables-legacy-save."""
    for group in GROUPS:
        for suffix in _SUFFIXES:
            if name == group + suffix:
                return f"{group}-{backend}{suffix}"
    raise ValueError(f"not an iptables alternative: {name!r}")


def backend_of(binary: str) -> str:
    """Which variant a resolved iptables binary is: xtables-legacy-multi (or
    any *legacy* path) is legacy, anything else nft (xtables-nft-multi)."""
    return "legacy" if "legacy" in Path(binary).name else "nft"


def alternative_links(backend: str, sbin: str = SBIN) -> dict[str, str]:
    """The six alternatives' targets for a backend, e.g. iptables-restore ->
    /usr/sbin/iptables-legacy-restore."""
    if backend not in BACKENDS:
        raise ValueError(f"{FIELD}: unsupported value {backend!r}; allowed: "
                         + ", ".join(BACKENDS))
    return {name: f"{sbin}/{variant_name(name, backend)}" for name in NAMES}


def node_alternatives(machine: Mapping[str, str], backend: str) -> dict[str, str]:
    """A node's /etc/alternatives (link name -> target): the machine's links
    with the iptables ones switched to backend.  The variants live where the
    machine's current iptables variant lives; an ip6tables group the machine
    lacks stays absent; a machine whose iptables is not an alternative cannot
    switch (LabError naming the field)."""
    current = machine.get("iptables")
    if current is None:
        raise LabError(f"{FIELD}: this machine's iptables is not managed by "
                       f"update-alternatives (no {ALTERNATIVES}/iptables), so a node "
                       "cannot switch it; leave iptablesBackend unset")
    wanted = alternative_links(backend, str(Path(current).parent))
    switched = {name: target for name, target in wanted.items()
                if name.startswith("iptables") or "ip6tables" in machine}
    return {**machine, **switched}


def propagates(mountinfo: str, path: str) -> bool:
    """Whether a mount made at path would propagate to peers (the machine):
    true when the mount that holds path (longest mount point prefix in
    /proc/PID/mountinfo) is shared.  Unparsable or empty input counts as
    shared: refuse rather than guess."""
    best, shared = "", True
    for line in mountinfo.splitlines():
        fields = line.split()
        if "-" not in fields or len(fields) < 7:
            continue
        point = _unescape(fields[4])
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best = point
            optional = fields[6:fields.index("-")]
            shared = any(tag.startswith("shared:") for tag in optional)
    return shared


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def mount_script(mnt_inode: int, binds: list[tuple[str, str]]) -> str:
    """The shell script run in the host: check, from inside, that it is the
    expected mount namespace (the one checked to be not the machine's), then
    bind each (source, target)."""
    lines = [f'[ "$(stat -L -c %i /proc/self/ns/mnt)" = {mnt_inode} ] || '
             f'{{ echo "not in mount namespace {mnt_inode}" >&2; exit 3; }}']
    lines += [f"mount --bind {shlex.quote(source)} {shlex.quote(target)}"
              for source, target in binds]
    return "\n".join(lines) + "\n"


# --- I/O -------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def detect_backend() -> str:
    """The distribution's choice: what `iptables` resolves to on this machine
    (nft where iptables is missing: what current distributions default to)."""
    for folder in (SBIN, "/sbin", "/usr/bin", "/bin"):
        path = Path(folder) / "iptables"
        if path.exists():
            return backend_of(os.path.realpath(path))
    return "nft"


def read_alternatives(folder: str = ALTERNATIVES) -> dict[str, str]:
    """The symbolic links of an alternatives folder (name -> target)."""
    links = {}
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.is_symlink():
                links[entry.name] = os.readlink(entry.path)
    return links


def prepare(backend: str, folder: Path) -> Path:
    """Write the node's /etc/alternatives for backend under folder (once per
    lab and backend; shared by its nodes); returns it.  Refuses, naming the
    field, when the variant's programs are missing on this machine."""
    missing = [t for n, t in alternative_links(backend).items()
               if n.startswith("iptables") and not os.path.exists(t)]
    if missing:
        raise LabError(f"{FIELD}: {backend} needs {', '.join(missing)}, which this "
                       "machine lacks (Debian package iptables)")
    wanted = node_alternatives(read_alternatives(), backend)
    # Named by content: a folder some node has mounted is never changed.
    digest = hashlib.sha256(json.dumps(sorted(wanted.items())).encode()).hexdigest()[:12]
    target = folder / f"alternatives-{backend}-{digest}"
    with _PREPARE_LOCK:
        if not target.is_dir():
            staging = folder / f".{target.name}.{os.getpid()}"
            staging.mkdir(parents=True, mode=0o755)
            for name, link in wanted.items():
                os.symlink(link, staging / name)
            staging.rename(target)
    return target


def mount_namespace(pid: int | str) -> int:
    return os.stat(f"/proc/{pid}/ns/mnt").st_ino


def host_backend(pid: int) -> str:
    """Which variant `iptables` resolves to inside a host (read through its
    root, /proc/PID/root: no process enters it)."""
    root = f"/proc/{pid}/root"
    for folder in (SBIN, "/sbin", "/usr/bin", "/bin"):
        path = root + folder + "/iptables"
        if os.path.lexists(path):
            return backend_of(_resolve_in(root, folder + "/iptables"))
    raise LabError(f"no iptables inside host {pid}")


def _resolve_in(root: str, path: str, hops: int = 16) -> str:
    """Follow a symbolic link chain as the host sees it (absolute links are
    taken relative to its root)."""
    for _ in range(hops):
        full = root + path
        if not os.path.islink(full):
            return path
        link = os.readlink(full)
        path = link if link.startswith("/") else str(Path(path).parent / link)
    raise LabError(f"too many symbolic links resolving {path} in {root}")


def apply_in_host(pid: int, backend: str, folder: Path, where: str = "") -> bool:
    """Make iptables* in host pid's mount namespace resolve to backend.

    Call it right after the host is created, before anything in it runs
    iptables (topo's own node rules included).  Refuses a host that shares
    the machine's mount namespace, or whose mounts propagate to it; checks
    from inside, too (mount_script).  A host whose iptables already is
    backend (the machine's default) keeps its /etc/alternatives.  Under
    legacy the host also gets an xtables lock of its own (XT_LOCK): a node's
    OS has its own /run, and the lab's nodes would otherwise wait on each
    other's (and the machine's) iptables-legacy commands.  Returns whether
    it mounted anything."""
    label = where or str(pid)
    mnt = mount_namespace(pid)
    if mnt == mount_namespace("self"):
        raise LabError(f"{label}: refusing to switch iptables in the machine's "
                       "own mount namespace")
    with open(f"/proc/{pid}/mountinfo") as handle:
        mountinfo = handle.read()
    for target in (ALTERNATIVES, XT_LOCK):
        if propagates(mountinfo, target):
            raise LabError(f"{label}: refusing to switch iptables: a mount at "
                           f"{target} there would propagate to the machine")
    binds = []
    if host_backend(pid) != backend:
        binds.append((str(prepare(backend, folder)), ALTERNATIVES))
    if backend == "legacy":
        binds.append((str(own_lock(folder, mnt)), XT_LOCK))
    if not binds:
        return False
    run_in(pid, ["sh", "-ec", mount_script(mnt, binds)], where=where)
    if host_backend(pid) != backend:
        raise LabError(f"{label}: iptables still resolves to "
                       f"{host_backend(pid)} after switching to {backend}")
    return True


def own_lock(folder: Path, mnt: int) -> Path:
    """An empty lock file for one host (by its mount namespace), and the
    machine's XT_LOCK to mount it on: iptables-legacy creates that file on
    first use anyway, empty and root-only, as it is made here."""
    if not os.path.exists(XT_LOCK):
        os.close(os.open(XT_LOCK, os.O_WRONLY | os.O_CREAT, 0o600))
    locks = folder / "xtables-locks"
    locks.mkdir(parents=True, exist_ok=True)
    lock = locks / f"{mnt}.lock"
    os.close(os.open(lock, os.O_WRONLY | os.O_CREAT, 0o600))
    return lock


def describe(backend: str, given: bool) -> str:
    """How `svclab status` and `up --dry-run` name the nodes' iptables."""
    variant = f"iptables-{backend}"
    return (f"{variant} (iptablesBackend)" if given
            else f"{variant} (the machine's iptables, detected)")
