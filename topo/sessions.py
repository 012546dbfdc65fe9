"""Processes started in a pod for `exec`, and the pieces a runtime needs around them.

`Child` waits for a process the runtime started (a container or an exec)
through a pidfd and reaps it itself, so its exit code is exact: a signal
gives 128+N, as a container runtime reports it.  `find_program` looks argv[0]
up inside the pod's mount namespace (/proc/PID/root) before anything starts,
so a missing program fails as runc fails (`OCI runtime exec failed: ...
executable file not found in $PATH`, exit 127; 126 when it cannot be run).
`ExecProcess` is a running exec with raw file descriptors (pipes, or a
pseudo-terminal whose size `resize` sets); `FailedExec` is the answer when
the program could not start.  Both implement base.cri.ExecSession.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import stat
import struct
import subprocess
import termios
import threading
from dataclasses import dataclass

from base.fdwait import readable

UNKNOWN_EXIT = 255          # someone else reaped the process: its code is lost
KILL_WAIT = 5.0
DEFAULT_WINDOW = (80, 24)
EOF_CHAR = b"\x04"          # ^D, a terminal's default VEOF


def exit_code(status: int) -> int:
    """A wait status as a container's exit code: 128+N for signal N."""
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


class Child:
    """A child process of ours, waited for through a pidfd and reaped exactly once."""

    def __init__(self, popen):
        self.popen = popen       # kept alive: a dropped Popen would be reaped by subprocess
        self.pid = popen.pid
        self.pidfd = os.pidfd_open(popen.pid)
        self.code: int | None = None
        self.ended = False
        self._lock = threading.Lock()

    def poll(self) -> bool:
        """Whether it has ended (then `code` holds its exit code)."""
        with self._lock:
            if self.ended:
                return True
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                self._end(UNKNOWN_EXIT)
                return True
            if pid == 0:
                return False
            self._end(exit_code(status))
            return True

    def wait(self, timeout: float | None) -> bool:
        if self.poll():
            return True
        with self._lock:
            fd = self.pidfd
        if fd is not None:
            readable(fd, timeout)
        return self.poll()

    def kill_group(self, signum: int = signal.SIGKILL) -> None:
        """Signal its process group (it leads one) while it is not reaped: until
        then its PID, and so the group's ID, cannot belong to anyone else."""
        with self._lock:
            if self.ended:
                return
            try:
                os.killpg(self.pid, signum)
            except ProcessLookupError:
                # Not leading its group yet (`setsid --ctty` has not run): it
                # has no children either, so the process alone is everything.
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signum)

    def close(self) -> None:
        with self._lock:
            if self.pidfd is not None:
                os.close(self.pidfd)
                self.pidfd = None

    def _end(self, code: int) -> None:
        self.ended, self.code = True, code
        self.popen.returncode = code


# --- finding the program, as runc does ------------------------------------------

@dataclass(frozen=True)
class ExecFailure:
    """Why argv[0] cannot start: runc's words and the exit code a user then sees."""

    detail: str
    code: int

    @property
    def message(self) -> str:
        return ("OCI runtime exec failed: exec failed: unable to start container process: "
                f"{self.detail}: unknown")


def find_program(root: str, program: str, path: str) -> ExecFailure | None:
    """None when program runs inside the file system seen at root (e.g. /proc/PID/root)."""
    if "/" in program:
        inside = program if program.startswith("/") else "/" + program
        try:
            mode = os.stat(root + inside).st_mode
        except FileNotFoundError:
            return ExecFailure(f'exec: "{program}": stat {program}: no such file or directory',
                               127)
        if stat.S_ISDIR(mode):
            return ExecFailure(f'exec: "{program}": is a directory', 126)
        if not os.access(root + inside, os.X_OK) or not mode & 0o111:
            return ExecFailure(f'exec: "{program}": permission denied', 126)
        return None
    for folder in path.split(":"):
        if not folder.startswith("/"):      # relative entries: runc's Go refuses them too
            continue
        try:
            mode = os.stat(f"{root}{folder}/{program}").st_mode
        except OSError:
            continue
        if stat.S_ISREG(mode) and mode & 0o111:
            return None
    return ExecFailure(f'exec: "{program}": executable file not found in $PATH', 127)


def set_window(fd: int, width: int, height: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))


def close_quietly(*fds: int | None) -> None:
    for fd in fds:
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass


# --- standard streams of a process about to start ---------------------------------

@dataclass
class Stdio:
    """Descriptors for a new process: its ends (for Popen), and ours.

    Pipes, or with tty one pseudo-terminal: then `stdout` is its master,
    `stdin` a dup of it (None without stdin), `stderr` None, `terminal`
    another dup for resizing and ^D; the process must make it its
    controlling terminal (`command` puts `setsid --ctty` in front)."""

    popen_args: dict
    child_ends: list
    stdin: int | None
    stdout: int
    stderr: int | None
    terminal: int | None

    @property
    def tty(self) -> bool:
        return self.terminal is not None

    def command(self, argv: list[str]) -> list[str]:
        return ["setsid", "--ctty", *argv] if self.tty else list(argv)

    def started(self) -> None:
        """The process has its ends: ours of them go."""
        close_quietly(*self.child_ends)
        self.child_ends = []

    def abandon(self) -> None:
        """The process did not start: every descriptor goes."""
        self.started()
        close_quietly(self.stdin, self.stdout, self.stderr, self.terminal)


def open_stdio(stdin: bool, tty: bool) -> Stdio:
    if tty:
        master, slave = os.openpty()
        set_window(master, *DEFAULT_WINDOW)
        return Stdio({"stdin": slave, "stdout": slave, "stderr": slave}, [slave],
                     os.dup(master) if stdin else None, master, None, os.dup(master))
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    in_r, in_w = os.pipe2(os.O_CLOEXEC) if stdin else (None, None)
    return Stdio({"stdin": subprocess.DEVNULL if in_r is None else in_r, "stdout": out_w,
                  "stderr": err_w}, [out_w, err_w, in_r], in_w, out_r, err_r, None)


# --- sessions --------------------------------------------------------------------

class ExecProcess:
    """A running exec: raw descriptors of its streams, its terminal, its end."""

    def __init__(self, child: Child, *, stdin: int | None, stdout: int, stderr: int | None,
                 master: int | None = None):
        self.child = child
        self.stdin, self.stdout, self.stderr = stdin, stdout, stderr
        self._master = master          # the pty (a dup of it is stdout) when tty
        self._lock = threading.Lock()

    def resize(self, width: int, height: int) -> None:
        with self._lock:
            if self._master is not None:
                set_window(self._master, width, height)

    def close_stdin(self) -> None:
        with self._lock:
            fd, self.stdin = self.stdin, None
            if fd is None:
                return
            if self._master is not None:
                with contextlib.suppress(OSError):      # (a hung-up terminal has no input)
                    os.write(self._master, EOF_CHAR)   # a terminal's only end of input
            close_quietly(fd)

    def wait(self, timeout: float | None = None) -> int | None:
        return self.child.code if self.child.wait(timeout) else None

    def kill(self) -> None:
        self.child.kill_group()
        self.child.wait(KILL_WAIT)
        with self._lock:
            fds = (self.stdin, self.stdout, self.stderr, self._master)
            self.stdin = self.stdout = self.stderr = self._master = None
        close_quietly(*fds)
        self.child.close()


class FailedExec:
    """An exec whose program could not start: its message, then its exit code."""

    def __init__(self, failure: ExecFailure, *, stdin: bool, tty: bool):
        self.code = failure.code
        message = (failure.message + ("\r\n" if tty else "\n")).encode()
        self.stdin = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC) if stdin else None
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC) if not tty else (None, None)
        os.write(out_w if tty else err_w, message)
        close_quietly(out_w, err_w)
        self.stdout, self.stderr = out_r, err_r

    def resize(self, width: int, height: int) -> None:
        """No terminal: nothing to resize."""

    def close_stdin(self) -> None:
        fd, self.stdin = self.stdin, None
        close_quietly(fd)

    def wait(self, timeout: float | None = None) -> int | None:
        return self.code

    def kill(self) -> None:
        fds = (self.stdin, self.stdout, self.stderr)
        self.stdin = self.stdout = self.stderr = None
        close_quietly(*fds)
