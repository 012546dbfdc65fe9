"""Pod sandboxes that cost no process: a thread of the lab daemon holds a pod's namespaces.

A pod used to be a Mininet host: a bash shell (and its pseudo-terminal) kept
alive in the pod's network, mount and UTS namespaces for the pod's whole
life, only so the namespaces existed.  Here one thread of the lab daemon
makes the three namespaces for itself (unshare(2) with CLONE_FS: the thread
gets its own root and working directory too), sets the sandbox up from
inside with plain system calls -- hostname, a fresh sysfs, the /etc files,
a private /run and /tmp -- makes the pod's veth, addresses and routes
(the plan's `ip` lines, sent as rtnetlink requests: topo/rtnetlink.py),
and then sleeps until the pod goes.

Everything else keeps addressing the pod by a PID: the thread's ID is one
(/proc/TID/ns/*, /proc/TID/root, `nsenter --target`, `mnexec -a` all work
with it), and its start time tells it from a recycled ID.  A pod that runs
a real command has that process in its namespaces as before; a pod served
by the node's workload server (topo/workload_host.py) has no process at all.

Why a thread rather than namespace files bind-mounted as `ip netns add` does:
every mount namespace created on the machine later (a new lab node, another
lab's hosts) copies such bind mounts and keeps the pod's namespaces (and its
tmpfs contents) alive after the pod is gone; a thread holds them only as
long as it lives, and if the daemon is killed the pods' namespaces go with
it, leaving `svclab clean` only the processes it recorded.

The node's side of each pod (its cali* end up, the /32 route, proxy ARP)
is done by one thread per node that entered the node's network namespace
(`NodeSide`), through the same requests and /proc/sys.
"""
from __future__ import annotations

import concurrent.futures
import os
import shlex
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from base.errors import CommandError, LabError, LabTimeout
from topo import rtnetlink
from topo.netns import (
    CLONE_FS,
    CLONE_NEWNET,
    CLONE_NEWNS,
    CLONE_NEWUTS,
    MS_BIND,
    MS_MOVE,
    MS_NODEV,
    MS_NOSUID,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_REMOUNT,
    current_netns_cookie,
    enter_netns,
    gettid,
    mount,
    netns_inode,
    own_netns_inode,
    start_time,
    unshare,
    uts_inode,
)
from topo.plan import POD_TMP_SIZE, HostConfig

POD_TMP_STAGING = "/mnt"          # where a pod's /tmp and /run are assembled before they move
POD_RUN_SIZE = "4m"
SETUP_TIMEOUT = 15.0
LINK_TIMEOUT = 5.0
IP_TIMEOUT = 15.0
POD_INTERFACE = "eth0"


def kept_under_tmp() -> tuple[str, ...]:
    """The folders under the machine's /tmp that a pod's programs need: where
    svclab and its Python live when the checkout (or its venv) is under /tmp,
    as a CI clone may be.  Their top-level folder under /tmp, each once."""
    needed = {Path(__file__).resolve().parents[1], Path(sys.prefix).resolve(),
              Path(sys.executable).resolve().parent}
    return tuple(sorted({f"/tmp/{p.relative_to('/tmp').parts[0]}" for p in needed
                         if p.is_relative_to("/tmp") and p != Path("/tmp")}))


def write_projected(folder: Path, volumes) -> tuple[tuple[str, str], ...]:
    """Write each projected volume's files into a folder of its own under folder;
    (that folder, where the pod sees it) for each."""
    placed = []
    for index, volume in enumerate(volumes):
        target = volume.path.replace("/var/run/", "/run/", 1)
        if not target.startswith("/run/"):
            raise LabError(f"projected volume {volume.path}: svclab mounts these under "
                           "/run (/var/run) only")
        source = folder / str(index)
        source.mkdir(parents=True, exist_ok=True)
        for name, content in volume.files:
            (source / name).write_text(content)
            (source / name).chmod(0o644)
        placed.append((str(source), target))
    return tuple(placed)


def kept_under_run(files: Path) -> tuple[str, ...]:
    """The folder under the machine's /run that pods keep seeing: the lab's state
    folder's top one (/run/svclab), where the lab's own programs find their files."""
    files = Path(files).resolve()
    if files.is_relative_to("/run") and files != Path("/run"):
        return (f"/run/{files.relative_to('/run').parts[0]}",)
    return ()


def run_ip_batch(lines: list[str], where: str) -> None:
    """`ip -batch -` in the calling thread's namespaces (its children inherit them)."""
    argv = ["ip", "-batch", "-"]
    try:
        proc = subprocess.run(argv, input="\n".join(lines) + "\n", capture_output=True,
                              text=True, timeout=IP_TIMEOUT, check=False, cwd="/")
    except subprocess.TimeoutExpired as err:
        raise CommandError(argv, -1, "", f"timed out after {IP_TIMEOUT} s", where) from err
    if proc.returncode != 0:
        raise CommandError(argv, proc.returncode, proc.stdout,
                           proc.stderr + "\nbatch:\n" + "\n".join(lines), where)


def run_ip_lines(lines: list[str], where: str) -> None:
    """A pod's `ip` lines: as rtnetlink requests of our own where they are of the
    few forms topo/rtnetlink.py knows (every pod's are), else by `ip -batch`."""
    requests = rtnetlink.requests(lines)
    if requests is None:
        run_ip_batch(lines, where)
    else:
        rtnetlink.apply(requests, where)


def write_sysctl(key: str, value: str) -> None:
    """A sysctl of the calling thread's network namespace (net.* keys follow the thread)."""
    with open("/proc/sys/" + key.replace(".", "/"), "w") as handle:
        handle.write(value)


class PodSandbox:
    """A pod's namespaces, held and set up by a thread of ours (see the module's doc)."""

    kind = "pod"

    def __init__(self, config: HostConfig, files: Path, node_pid: int, veth: str):
        self.config = config
        self.name = config.host
        self.files = files
        self.node_pid = node_pid
        self.veth = veth
        self.pid = 0
        self._start: int | None = None
        self._netns = 0
        self.netns_cookie: int | None = None
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._hold, daemon=True,
                                        name=f"pod-sandbox-{config.host}")

    @property
    def netns(self) -> int:
        return self._netns

    @property
    def start_time(self) -> int | None:
        return self._start

    def start(self) -> None:
        """Make the namespaces and set the pod's side up; raises what went wrong."""
        self.files.mkdir(parents=True, exist_ok=True)
        self._thread.start()
        if not self._ready.wait(SETUP_TIMEOUT):
            self.terminate()
            raise LabTimeout(f"pod host {self.name}: sandbox not set up in {SETUP_TIMEOUT} s")
        if self._error is not None:
            self._thread.join(SETUP_TIMEOUT)
            raise self._error

    def wait_links_up(self, timeout: float = LINK_TIMEOUT) -> None:
        """Until both ends of the pod's veth are up (carrier, operstate UP): a packet
        sent before the kernel's linkwatch ran would be lost."""
        ends = (f"/proc/{self.pid}/root/sys/class/net/{POD_INTERFACE}/operstate",
                f"/proc/{self.node_pid}/root/sys/class/net/{self.veth}/operstate")
        deadline = time.monotonic() + timeout
        while True:
            states = [_read(path) for path in ends]
            if all(state == "up" for state in states):
                return
            if time.monotonic() > deadline:
                raise LabTimeout(f"{self.name}: veth {self.veth}<->{POD_INTERFACE} not up "
                                 f"after {timeout} s (operstate {states})")
            time.sleep(0.005)

    def terminate(self) -> None:
        """Let the thread end: the namespaces go once nothing else is in them."""
        self._stop.set()
        self._thread.join(SETUP_TIMEOUT)

    # --- on the sandbox's own thread ----------------------------------------------------

    def _hold(self) -> None:
        try:
            unshare(CLONE_FS | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWUTS)
            self.pid = gettid()
            self._start = start_time(self.pid)
            self._netns = netns_inode(self.pid)
            self.netns_cookie = current_netns_cookie()
            if self._netns == own_netns_inode() or uts_inode("thread-self") == uts_inode("self"):
                raise LabError(f"{self.name}: the sandbox thread did not get namespaces "
                               "of its own")
            self._set_up()
        except BaseException as err:   # handed to start(), in the caller's thread
            self._error = err if isinstance(err, (LabError, CommandError)) else LabError(
                f"pod host {self.name}: sandbox set-up failed: {err}")
            self._ready.set()
            return
        self._ready.set()
        self._stop.wait()

    def _set_up(self) -> None:
        config = self.config
        # Mount events stay in the pod; a sysfs of its own shows its interfaces.
        mount(None, "/", None, MS_REC | MS_PRIVATE)
        mount("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV)
        if config.hostname is not None:
            socket.sethostname(config.hostname)
        etc_files = list(config.etc_files)
        if config.resolv_conf is not None:
            etc_files.append(("/etc/resolv.conf", config.resolv_conf))
        for target, content in etc_files:
            source = self.files / Path(target).name
            source.write_text(content)
            source.chmod(0o644)
            mount(str(source), target, None, MS_BIND)
        for key, value in config.sysctls:
            write_sysctl(key, value)
        run_ip_lines([f"link add dev {POD_INTERFACE} type veth peer name {self.veth} "
                      f"netns {self.node_pid}", *config.ip_batch], self.name)
        self._private_run()
        if config.private_tmp:
            # Last: the files above may live under the machine's /tmp (a test's state folder).
            self._private_tmp()

    def _private_run(self) -> None:
        """A tmpfs of the pod's own on /run (so /var/run): `lock` and `shm` as a
        container has them, the folders of the machine's /run the lab's programs
        use, and each projected volume read-only; assembled aside, then moved."""
        stage = POD_TMP_STAGING
        mount("svclab-pod-run", stage, "tmpfs", MS_NOSUID | MS_NODEV,
              f"mode=755,size={POD_RUN_SIZE}")
        os.mkdir(f"{stage}/lock")
        os.chmod(f"{stage}/lock", 0o1777)
        os.symlink("/dev/shm", f"{stage}/shm")
        projected = write_projected(self.files / "volumes", self.config.volumes)
        binds = [(path, path, False) for path in kept_under_run(self.files)]
        binds += [(source, target, True) for source, target in projected]
        for source, target, read_only in binds:
            staged = stage + target.removeprefix("/run")
            os.makedirs(staged, exist_ok=True)
            mount(source, staged, None, MS_BIND)
            if read_only:
                mount(None, staged, None, MS_REMOUNT | MS_BIND | MS_RDONLY)
        mount(stage, "/run", None, MS_MOVE)

    def _private_tmp(self) -> None:
        stage = POD_TMP_STAGING
        mount("svclab-pod-tmp", stage, "tmpfs", MS_NOSUID | MS_NODEV,
              f"mode=1777,size={POD_TMP_SIZE}")
        for path in kept_under_tmp():
            staged = stage + path.removeprefix("/tmp")
            os.makedirs(staged, exist_ok=True)
            mount(path, staged, None, MS_BIND)
        mount(stage, "/tmp", None, MS_MOVE)


def _read(path: str) -> str:
    try:
        with open(path) as handle:
            return handle.read().strip()
    except OSError:
        return ""


class NodeSide:
    """One thread per node, in the node's network namespace, for its pods' node side."""

    def __init__(self):
        self._lock = threading.Lock()
        self._pools: dict[int, concurrent.futures.ThreadPoolExecutor] = {}

    def configure(self, node_pid: int, where: str, batch: tuple[str, ...],
                  sysctls: tuple[tuple[str, str], ...]) -> None:
        """The node's `ip -batch` lines and sysctls for one pod (in the node's netns)."""
        def apply() -> None:
            if batch:
                run_ip_lines(list(batch), where)
            for key, value in sysctls:
                write_sysctl(key, value)
        self._run(node_pid, apply)

    def delete_link(self, node_pid: int, where: str, veth: str) -> None:
        """Remove a pod's veth from the node's side (both ends go), if it is there."""
        def delete() -> None:
            if os.path.exists(f"/proc/{node_pid}/root/sys/class/net/{veth}"):
                run_ip_batch([f"link del dev {shlex.quote(veth)}"], where)
        self._run(node_pid, delete)

    def forget(self, node_pid: int) -> None:
        with self._lock:
            pool = self._pools.pop(node_pid, None)
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def close(self) -> None:
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.shutdown(wait=True, cancel_futures=True)

    def _run(self, node_pid: int, fn) -> None:
        with self._lock:
            pool = self._pools.get(node_pid)
            if pool is None:
                pool = self._pools[node_pid] = concurrent.futures.ThreadPoolExecutor(
                    1, thread_name_prefix=f"node-side-{node_pid}",
                    initializer=enter_netns, initargs=(node_pid,))
        pool.submit(fn).result(timeout=IP_TIMEOUT * 2)
