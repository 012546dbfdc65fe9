"""Run commands inside a lab host's namespaces, and identify processes safely.

Every kernel-touching command of the lab goes through `run_in`, which refuses
to run in the host's own network namespace: a lab must never change the
host's routes, rules or sysctls.  Processes are identified by (pid, start
time) so a recycled PID is never mistaken for one of ours.

A pod also has a UTS namespace of its own (its hostname): `enter_argv`
enters all three (network, mount, UTS), and `set_uts_hostname` names a
host's UTS namespace only after checking, on the namespace's own file
descriptor, that it is not the machine's.
"""
from __future__ import annotations

import ctypes
import errno
import os
import socket
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from base.errors import CommandError, LabError
from base.setns import setns

MNEXEC = "mnexec"
NSENTER = "nsenter"
# mnexec -a returns to the caller's working directory inside the host, which a
# pod (its /tmp is its own) may not have: processes entering hosts start at /.
HOST_CWD = "/"
CLONE_FS = 0x00000200
CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
CLONE_NEWUTS = 0x04000000
MS_RDONLY, MS_NOSUID, MS_NODEV = 0x1, 0x2, 0x4
MS_REMOUNT, MS_BIND, MS_MOVE, MS_REC = 0x20, 0x1000, 0x2000, 0x4000
MS_PRIVATE = 0x40000
_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_char_p)
_libc.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)
T = TypeVar("T")


def netns_inode(pid: int | str) -> int:
    """Inode of a process's network namespace (identifies the namespace)."""
    return os.stat(f"/proc/{pid}/ns/net").st_ino


def own_netns_inode() -> int:
    return os.stat("/proc/self/ns/net").st_ino


def start_time(pid: int) -> int | None:
    """Kernel start time of a process (clock ticks since boot), None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            stat = handle.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # comm may hold spaces or parentheses: split after the last ')'.
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):      # exited, waiting to be reaped: gone for us
        return None
    return int(fields[19])


@dataclass(frozen=True)
class ProcRef:
    """A process we started or own, identified beyond its PID."""

    pid: int
    start: int

    @classmethod
    def of(cls, pid: int) -> ProcRef:
        start = start_time(pid)
        if start is None:
            raise LabError(f"process {pid} is gone")
        return cls(pid, start)

    def alive(self) -> bool:
        return start_time(self.pid) == self.start

    def to_json(self) -> dict:
        return {"pid": self.pid, "start": self.start}

    @classmethod
    def from_json(cls, data: dict) -> ProcRef:
        return cls(int(data["pid"]), int(data["start"]))


def ensure_lab_namespace(pid: int) -> None:
    """Refuse to act on a process that lives in our own (the host's) netns."""
    try:
        inode = netns_inode(pid)
    except FileNotFoundError as err:
        raise LabError(f"lab host process {pid} is gone") from err
    if inode == own_netns_inode():
        raise LabError(f"refusing to touch the host network namespace (pid {pid})")


def run_in(pid: int, argv: list[str], *, input: str | None = None,
           timeout: float = 15.0, where: str = "") -> str:
    """Run argv in the network and mount namespaces of pid; return stdout."""
    ensure_lab_namespace(pid)
    full = [MNEXEC, "-a", str(pid), *argv]
    try:
        proc = subprocess.run(full, input=input, capture_output=True, text=True,
                              timeout=timeout, check=False, cwd=HOST_CWD)
    except subprocess.TimeoutExpired as err:
        raise CommandError(full, -1, "", f"timed out after {timeout} s", where) from err
    if proc.returncode != 0:
        raise CommandError(argv, proc.returncode, proc.stdout, proc.stderr, where)
    return proc.stdout


def enter_netns(pid: int) -> None:
    """Move the calling thread (only it) into pid's network namespace.

    For threads that live there for good (a thread pool serving one lab
    host); the host's own namespace is refused, as everywhere else."""
    ensure_lab_namespace(pid)
    fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
    try:
        setns(fd, "net")
    finally:
        os.close(fd)


def call_in_netns(pid: int, fn: Callable[[], T], timeout: float = 5.0) -> T:
    """Run fn in a throwaway thread that has entered pid's network namespace.

    Sockets fn creates belong to that namespace and stay usable from any
    thread afterwards; the thread itself ends and is never reused.
    """
    ensure_lab_namespace(pid)
    result: dict = {}

    def enter_and_call() -> None:
        try:
            enter_netns(pid)
            result["value"] = fn()
        except Exception as err:   # handed to the caller's thread below
            result["error"] = err

    thread = threading.Thread(target=enter_and_call, name=f"netns-{pid}", daemon=True)
    thread.start()
    thread.join(timeout)
    if "error" in result:
        raise result["error"]
    if "value" not in result:
        raise OSError(errno.ETIMEDOUT, f"no answer from namespace of {pid} in {timeout} s")
    return result["value"]


def netns_connector(pid: int, timeout: float = 5.0):
    """A socket factory for clients whose connections leave from pid's namespace."""
    import socket

    def connect(host: str, port: int, connect_timeout: float):
        return call_in_netns(pid, lambda: socket.create_connection(
            (host, port), timeout=connect_timeout), timeout=max(timeout, connect_timeout + 1))
    return connect


def socket_in_netns(pid: int, family: int = socket.AF_INET,
                    kind: int = socket.SOCK_STREAM) -> socket.socket:
    """A new, unconnected socket that belongs to pid's network namespace.

    Only creating it needs the namespace; connect it from any thread."""
    return call_in_netns(pid, lambda: socket.socket(family, kind))


def enter_argv(pid: int) -> list[str]:
    """The argv prefix that runs a program in pid's network, mount and UTS namespaces.

    nsenter execs the program itself (no extra process); its working
    directory is the root of pid's mount namespace."""
    ensure_lab_namespace(pid)
    return [NSENTER, f"--target={pid}", "--net", "--mount", "--uts", "--"]


def uts_inode(pid: int | str) -> int:
    return os.stat(f"/proc/{pid}/ns/uts").st_ino


def set_uts_hostname(pid: int, hostname: str) -> None:
    """Set the host name of pid's UTS namespace, which must not be the machine's.

    The check is made on the namespace's file descriptor that setns then
    uses, and again from inside, so no race can rename the machine; the
    work happens in a throwaway thread (UTS namespaces are per thread)."""
    ensure_lab_namespace(pid)
    fd = os.open(f"/proc/{pid}/ns/uts", os.O_RDONLY)
    try:
        target = os.fstat(fd).st_ino
        if target == uts_inode("self"):
            raise LabError(f"refusing to set the host name of the machine's UTS "
                           f"namespace (pid {pid} shares it)")

        def rename() -> None:
            setns(fd, "uts")
            if uts_inode("thread-self") != target:
                raise LabError(f"thread is not in the UTS namespace of {pid}")
            socket.sethostname(hostname)

        result: dict = {}

        def run() -> None:
            try:
                rename()
                result["done"] = True
            except Exception as err:   # handed to the caller's thread below
                result["error"] = err

        thread = threading.Thread(target=run, name=f"uts-{pid}", daemon=True)
        thread.start()
        thread.join(5.0)
        if "error" in result:
            raise result["error"]
        if "done" not in result:
            raise LabError(f"setting the host name of {pid} did not finish in 5 s")
    finally:
        os.close(fd)


def unshare(flags: int) -> None:
    """unshare(2) for the calling thread (CLONE_FS with CLONE_NEWNS: the thread
    gets a root and working directory of its own, the rest of the process keeps
    its own)."""
    if _libc.unshare(flags) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"unshare({flags:#x}): {os.strerror(code)}")


def mount(source: str | None, target: str, fstype: str | None = None, flags: int = 0,
          data: str | None = None) -> None:
    """mount(2) in the calling thread's mount namespace; OSError names the target."""
    def raw(text: str | None):
        return None if text is None else text.encode()
    if _libc.mount(raw(source), raw(target), raw(fstype), flags, raw(data)) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"mount {source or fstype or ''} on {target}: {os.strerror(code)}")


MNT_DETACH = 2


def umount(target: str, flags: int = 0) -> None:
    """umount2(2) in the calling thread's mount namespace; OSError names the target."""
    if _libc.umount2(target.encode(), flags) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"umount {target}: {os.strerror(code)}")


SO_NETNS_COOKIE = 71       # Linux 5.14+: a namespace's 64-bit ID, never reused


def current_netns_cookie() -> int | None:
    """The cookie of the calling thread's network namespace (None: the kernel has none).

    Unlike a namespace's inode number, which the kernel hands to the next
    namespace anyone makes once it is freed, a cookie is never reused: it
    tells a lab's namespace from another lab's that got the same inode."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            return int.from_bytes(sock.getsockopt(socket.SOL_SOCKET, SO_NETNS_COOKIE, 8),
                                  "little")
    except OSError:
        return None


def netns_cookie(pid: int) -> int | None:
    """The cookie of pid's network namespace; None if it cannot be read (pid gone)."""
    try:
        return call_in_netns(pid, current_netns_cookie, timeout=5.0)
    except (OSError, LabError):
        return None


def gettid() -> int:
    return threading.get_native_id()


def started_at(pid: int) -> int:
    """Start time of a child of ours, even one that already exited (a zombie
    until we reap it); 0 if it is gone altogether."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return int(handle.read().rsplit(")", 1)[1].split()[19])
    except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
        return 0
