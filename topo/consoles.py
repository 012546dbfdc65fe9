"""Containers' consoles: their output into CRI logs and to attached clients.

A container's stdout and stderr are pipes (one pseudo-terminal with tty)
read by the runtime, not files the container writes: one `OutputPump`
thread serves every container of the lab with epoll, timestamps each line
into the run's CRI log file (topo/crilog.py) and copies the bytes to every
`attach` session joined since.  So a pod costs no process and no thread of
its own for its logs.

`Console` is one container run's I/O.  With spec stdin the runtime holds the
write end of the container's input (a pipe, or the terminal) open while no
client is attached, so a shell waits instead of reading EOF; with stdinOnce
the input closes once the first attached client that wrote to it goes away
(a pipe reads EOF, a terminal gets ^D), as Kubernetes documents.
`AttachSession` (a base.cri.ExecSession) sees the output from the moment it
joined; its `kill()` detaches and leaves the container running.  A client
that reads slower than the container writes loses output beyond a 1 MiB pipe
rather than stalling the container and everyone else's logs.
"""
from __future__ import annotations

import collections
import contextlib
import errno
import fcntl
import logging
import os
import selectors
import threading
import traceback
from collections.abc import Callable
from functools import partial

from topo.crilog import CriLogFile
from topo.pidwait import wait_for_child
from topo.sessions import EOF_CHAR, Child, close_quietly, set_window

log = logging.getLogger("svclab.consoles")
READ_SIZE = 64 * 1024
# The thread looks at its commands this often even when no wake byte came
# (the wake pipe can be closed behind its back: see OutputPump).
WAKE_POLL_SECONDS = 1.0
ATTACH_PIPE_SIZE = 1 << 20


class OutputPump:
    """One thread reading many descriptors; handlers run on it and must be quick.

    Its own descriptors (the wake pipe, the epoll) are known by identity as
    well as by number: code elsewhere in the process that closes a number it
    no longer owns would otherwise make the pump write to, read from or close
    whatever took the number next.  Such a close is logged with what the
    number is now; the pump then works on its poll interval alone."""

    def __init__(self, name: str = "container-output"):
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._own = {fd: _identity(fd)
                     for fd in (self._wake_r, self._wake_w, self._selector.fileno())}
        self._wake_lost = False
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._commands: collections.deque = collections.deque()
        self._stopping = False          # set by the thread: its loop ends
        self._stop_requested = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def add(self, fd: int, on_data: Callable[[bytes], None],
            on_end: Callable[[], None]) -> tuple:
        """Read fd until EOF (or EIO: a terminal whose other side closed), then
        close it; the returned token names this registration for `drop`."""
        if fd in self._own:
            log.error("container output: asked to read fd %d, one of the pump's own: its "
                      "caller's descriptor was closed before; refused. Asked from:\n%s",
                      fd, "".join(traceback.format_stack(limit=12)))
        else:
            os.set_blocking(fd, False)
        token = (fd, on_data, on_end)
        self._send(("add", token))
        return token

    def drop(self, token: tuple) -> None:
        """Stop reading now: close the descriptor and call its on_end (a
        token, not a number: the number may already be someone else's)."""
        self._send(("drop", token))

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the thread to end and wait for it.  Only the thread itself sets
        `_stopping` (on the stop command), so it never closes the wake pipe
        while this method still writes to it."""
        if self._stop_requested:
            return
        self._stop_requested = True
        if self._thread.is_alive():      # else the pipe is closed (and its number reusable)
            self._send(None)
        self._thread.join(timeout)

    def _send(self, command) -> None:
        self._commands.append(command)
        if not self._mine(self._wake_w):
            self._lost_wake()
            return
        try:
            os.write(self._wake_w, b"x")
        except BlockingIOError:      # already awake with plenty to do
            pass
        except OSError:
            self._lost_wake()

    def _mine(self, fd: int) -> bool:
        """Whether fd is still the pump's own descriptor of that number."""
        try:
            return _identity(fd) == self._own[fd]
        except OSError:
            return False

    def _lost_wake(self) -> None:
        if not self._wake_lost:
            self._wake_lost = True
            log.error("container output: its wake pipe (fd %d) was closed by someone else "
                      "(the number is now %s); commands now wait up to %g s",
                      self._wake_w, _what_is(self._wake_w), WAKE_POLL_SECONDS)

    def _run(self) -> None:
        try:
            while not self._stopping:
                for key, _ in self._selector.select(WAKE_POLL_SECONDS):
                    if key.fd == self._wake_r:
                        self._drain_wake()
                    elif self._selector.get_map().get(key.fd) is key:   # not dropped meanwhile
                        self._serve(key.data)
                if self._commands:
                    self._commands_now()
        finally:
            for key in list(self._selector.get_map().values()):
                if key.fd != self._wake_r:
                    self._end(key.data)
            if self._mine(self._selector.fileno()):
                self._selector.close()
            close_quietly(*(fd for fd in (self._wake_r, self._wake_w) if self._mine(fd)))

    def _drain_wake(self) -> None:
        if not self._mine(self._wake_r):
            self._lost_wake()
            return
        try:
            while os.read(self._wake_r, 4096):
                pass
        except OSError:            # BlockingIOError: drained
            pass

    def _commands_now(self) -> None:
        while self._commands:
            command = self._commands.popleft()
            if command is None:
                self._stopping = True
                return
            kind, token = command
            try:
                if kind == "add":
                    self._register(token)
                else:
                    key = self._selector.get_map().get(token[0])
                    if key is not None and key.data is token:
                        self._end(token)
            except Exception:
                log.exception("container output: %s of fd %d failed", kind, token[0])

    def _serve(self, token: tuple) -> None:
        """Read one descriptor; whatever goes wrong with it ends it, not the
        thread that serves every container's output."""
        try:
            self._read(token)
        except Exception:
            log.exception("container output: reading fd %d failed; closing it", token[0])
            with contextlib.suppress(KeyError, ValueError):
                self._end(token)

    def _read(self, token: tuple) -> None:
        fd, on_data, _ = token
        try:
            data = os.read(fd, READ_SIZE)
        except BlockingIOError:
            return
        except OSError as err:
            if err.errno != errno.EIO:
                raise
            data = b""
        if data:
            on_data(data)
        else:
            self._end(token)

    def _register(self, token: tuple) -> None:
        if token[0] in self._own:             # refused in add(): it only ends
            token[2]()
            return
        stale = self._selector.get_map().get(token[0])
        if stale is not None:     # its number was closed behind our back and reused
            log.warning("container output: fd %d registered twice; ending the old one",
                        token[0])
            self._selector.unregister(token[0])
            stale.data[2]()
        try:
            self._selector.register(token[0], selectors.EVENT_READ, token)
        except (OSError, ValueError) as err:       # closed before we got to it
            log.warning("container output: cannot read fd %d: %s", token[0], err)
            token[2]()

    def _end(self, token: tuple) -> None:
        fd, _, on_end = token
        self._selector.unregister(fd)
        if fd not in self._own:
            close_quietly(fd)
        on_end()


def _identity(fd: int) -> tuple[int, int]:
    stat = os.fstat(fd)
    return stat.st_dev, stat.st_ino


def _what_is(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return "closed"


class Console:
    """One container run's output (into its log and to attached sessions) and input."""

    def __init__(self, pump: OutputPump, log: CriLogFile, child: Child, *,
                 outputs: dict[str, int], stdin_fd: int | None, terminal: int | None,
                 stdin_once: bool):
        self.child = child
        self.log = log
        self.tty = terminal is not None
        self._pump = pump
        self._lock = threading.Lock()
        self._sessions: list[AttachSession] = []
        self._open: dict[str, tuple] = {}   # stream -> the pump's token, until its end
        self._stdin = stdin_fd            # where input goes; a dup of the master with tty
        self._terminal = terminal         # another dup of the pty master: resize
        self._stdin_once = stdin_once
        self._ended = threading.Event()   # every output at EOF: the log is complete
        with self._lock:      # an output may end before the others are registered
            for stream, fd in outputs.items():
                self._open[stream] = pump.add(fd, partial(self._on_data, stream),
                                              partial(self._on_end, stream))

    def attach(self, stdin: bool, tty: bool) -> AttachSession:
        with self._lock:
            feed = os.dup(self._stdin) if stdin and self._stdin is not None else None
            session = AttachSession(self, stdin=feed, tty=self.tty and tty,
                                    streams=("stdout",) if self.tty else ("stdout", "stderr"))
            if self._open:
                self._sessions.append(session)
            else:
                session.end_output()
            return session

    def resize(self, width: int, height: int) -> None:
        with self._lock:
            if self._terminal is not None:
                set_window(self._terminal, width, height)

    def input_done(self, session: AttachSession) -> None:
        """An attached client's input ended: with stdinOnce the container's input ends too."""
        with self._lock:
            if not self._stdin_once or self._stdin is None or not session.wrote_stdin:
                return
            fd, self._stdin = self._stdin, None
            if self.tty:
                with contextlib.suppress(OSError):     # the terminal may be hung up already
                    os.write(fd, EOF_CHAR)
            close_quietly(fd)

    def detach(self, session: AttachSession) -> None:
        with self._lock:
            if session in self._sessions:
                self._sessions.remove(session)
        session.end_output()

    def wait_ended(self, timeout: float) -> bool:
        """Wait until every output reached its end (the log holds all the
        process wrote); False if one is still open after timeout (a child
        of the container may hold it)."""
        return self._ended.wait(timeout)

    def close(self) -> None:
        """The run is over for the runtime: stop reading, release the input."""
        with self._lock:
            tokens = list(self._open.values())
            fds = (self._stdin, self._terminal)
            self._stdin = self._terminal = None
        for token in tokens:
            self._pump.drop(token)
        close_quietly(*fds)

    # --- on the pump's thread ---------------------------------------------------------

    def _on_data(self, stream: str, data: bytes) -> None:
        self.log.write(stream, data)
        with self._lock:
            sessions = list(self._sessions)
        for session in sessions:
            session.feed(stream, data)

    def _on_end(self, stream: str) -> None:
        self.log.end(stream)
        with self._lock:
            self._open.pop(stream, None)
            if self._open:
                return
            sessions, self._sessions = self._sessions, []
        self.log.close()
        self._ended.set()
        for session in sessions:
            session.end_output()


class AttachSession:
    """A client joined to a container's console (base.cri.ExecSession)."""

    def __init__(self, console: Console, *, stdin: int | None, tty: bool,
                 streams: tuple[str, ...]):
        self._console = console
        self._lock = threading.Lock()
        self._writers: dict[str, int] = {}
        readers: dict[str, int] = {}
        for stream in streams:
            read_end, write_end = os.pipe2(os.O_CLOEXEC)
            fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, ATTACH_PIPE_SIZE)
            os.set_blocking(write_end, False)
            readers[stream], self._writers[stream] = read_end, write_end
        self.stdin = stdin
        self.stdout = readers["stdout"]
        self.stderr = readers.get("stderr")
        self.tty = tty
        self.wrote_stdin = stdin is not None
        self.dropped = 0                  # bytes a slow reader missed

    def resize(self, width: int, height: int) -> None:
        if self.tty:
            self._console.resize(width, height)

    def close_stdin(self) -> None:
        with self._lock:
            fd, self.stdin = self.stdin, None
        if fd is not None:
            close_quietly(fd)
            self._console.input_done(self)

    def wait(self, timeout: float | None = None) -> int | None:
        child = self._console.child
        return child.code if wait_for_child(child, timeout) else None

    def kill(self) -> None:
        """Detach (the container keeps running) and release every descriptor."""
        self.close_stdin()
        self._console.detach(self)
        with self._lock:
            fds = (self.stdout, self.stderr)
            self.stdout = self.stderr = None
        close_quietly(*fds)

    # --- from the console -------------------------------------------------------------

    def feed(self, stream: str, data: bytes) -> None:
        with self._lock:
            fd = self._writers.get(stream)
            if fd is None:
                return
            try:
                written = os.write(fd, data)
            except BlockingIOError:
                written = 0
            except BrokenPipeError:       # the client closed its end: nothing more to send
                self._writers.pop(stream)
                close_quietly(fd)
                return
            self.dropped += len(data) - written

    def end_output(self) -> None:
        with self._lock:
            fds, self._writers = list(self._writers.values()), {}
        close_quietly(*fds)
