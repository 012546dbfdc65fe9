"""exec and attach: one ExecSession wired to the client's streams until it ends.

`Relay` owns the threads that move bytes between the session's descriptors
and the client: one pump per output descriptor (stdout, stderr), the stdin
writes and resizes the transport's reader hands it, and the wait for the
exit code.  The transports (`serve_websocket` here, SPDY in ``spdy_exec``)
only frame bytes.  The session ends when its output is drained and the
process exited — the client then gets a Status (Success, or NonZeroExitCode
with the code) — or when the client goes away, which kills the process; the
relay joins every thread it started before it returns, and always calls
``ExecSession.kill()`` last to release the descriptors.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
from collections.abc import Callable

from base.cri import ExecSession
from base.fdwait import readable, writable
from controlplane.api.streams import channels
from controlplane.api.streams.channels import ChannelError, ChannelProtocol, ResizeDecoder
from controlplane.api.streams.target import ExecOptions
from controlplane.api.streams.websocket import Closed, WebSocket

log = logging.getLogger("controlplane.api.streams")
POLL = 0.2
READ_SIZE = 64 * 1024
JOIN_TIMEOUT = 5.0
CLOSE_WAIT = 10.0      # for the client's half of the closing handshake


class Relay:
    """Moves bytes between an ExecSession and a client; see the module docstring."""

    def __init__(self, session: ExecSession, opts: ExecOptions, *, attach: bool,
                 stdout: Callable[[bytes], None], stderr: Callable[[bytes], None],
                 stdout_done: Callable[[], None] = lambda: None,
                 stderr_done: Callable[[], None] = lambda: None) -> None:
        self.session = session
        self.opts = opts
        self.attach = attach
        self.stop = threading.Event()          # set: the client went away (or the server stops)
        self.changed = threading.Event()       # set whenever a pump ends
        self._threads: list[threading.Thread] = []
        self._stdin_open = opts.stdin and session.stdin is not None
        self._pumps = []
        for fd, sink, done in ((session.stdout, stdout, stdout_done),
                               (session.stderr, stderr, stderr_done)):
            if fd is not None:
                os.set_blocking(fd, False)
                self._pumps.append(self._spawn(self._pump, fd, sink, done))
        if self._stdin_open and session.stdin not in (session.stdout, session.stderr):
            os.set_blocking(session.stdin, False)

    def _spawn(self, target, *args) -> threading.Thread:
        thread = threading.Thread(target=target, args=args, daemon=True,
                                  name=f"svclab-stream-{target.__name__}")
        self._threads.append(thread)
        thread.start()
        return thread

    # ---- output -------------------------------------------------------------------
    def _pump(self, fd: int, sink: Callable[[bytes], None], done: Callable[[], None]) -> None:
        try:
            while not self.stop.is_set():
                if not readable(fd, POLL):
                    continue
                try:
                    data = os.read(fd, READ_SIZE)
                except BlockingIOError:
                    continue
                except OSError as exc:
                    if exc.errno != errno.EIO:     # EIO: the terminal's last writer is gone
                        raise
                    data = b""
                if not data:
                    done()
                    return
                sink(data)
        except (Closed, ConnectionError, TimeoutError):
            self.stop.set()        # the client went away mid-write
        finally:
            self.changed.set()

    # ---- input (called by the transport's reader) -------------------------------
    def write_stdin(self, data: bytes) -> None:
        if not self._stdin_open or not data:
            return
        view = memoryview(data)
        fd = self.session.stdin
        while view and not self.stop.is_set():
            if not writable(fd, POLL):
                continue
            try:
                view = view[os.write(fd, view):]
            except BlockingIOError:
                continue
            except OSError as exc:          # EPIPE, or EIO from a terminal nobody holds
                log.debug("exec: stdin no longer taken (%s): dropping the rest", exc)
                self._stdin_open = False
                return

    def close_stdin(self) -> None:
        if self._stdin_open:
            self._stdin_open = False
            try:
                self.session.close_stdin()
            except OSError as exc:
                log.debug("exec: closing stdin of an ended process: %s", exc)

    def resize(self, width: int, height: int) -> None:
        if not self.opts.tty:
            return
        try:
            self.session.resize(width, height)
        except OSError as exc:              # the terminal is gone with its process
            log.debug("exec: resize after the end: %s", exc)

    # ---- the end --------------------------------------------------------------------
    def wait(self, alive: Callable[[], bool] = lambda: True) -> int | None:
        """Block until the output is drained and the process exited (its exit code,
        0 for attach) or until the client went away (None; ``alive`` says whether
        the transport still stands)."""
        while not self.stop.is_set() and alive():
            if any(p.is_alive() for p in self._pumps):
                self.changed.wait(POLL)
                self.changed.clear()
                continue
            code = self.session.wait(POLL)
            if code is not None:
                return 0 if self.attach else code
        return None

    def close(self) -> None:
        """Stop and join every thread, then release the session (kill: a no-op once
        it exited)."""
        self.stop.set()
        for thread in self._threads:
            thread.join(JOIN_TIMEOUT)
        self.session.kill()


def discard(_data: bytes) -> None:
    """Output the client did not ask for: read (so the process never blocks), dropped."""


def status_for(code: int | None) -> dict:
    return channels.success_status() if not code else channels.exit_status(code)


# ---- WebSocket transport --------------------------------------------------------------

def serve_websocket(ws: WebSocket, protocol: ChannelProtocol, session: ExecSession,
                    opts: ExecOptions, attach: bool) -> None:
    """Run an exec/attach session over channel.k8s.io framing until it ends."""
    def sender(channel: int) -> Callable[[bytes], None]:
        def send(data: bytes) -> None:
            ws.send(*channels.encode(protocol, channel, data))
        return send

    relay = Relay(session, opts, attach=attach,
                  stdout=sender(channels.STDOUT) if opts.stdout else discard,
                  stderr=sender(channels.STDERR) if opts.stderr else discard)
    reader = threading.Thread(target=_read_channels, args=(ws, protocol, relay), daemon=True,
                              name="svclab-stream-reader")
    try:
        # Tell the client the streams are ready: an empty message on the lowest output channel.
        first = channels.STDOUT if opts.stdout else channels.STDERR if opts.stderr else \
            channels.ERROR
        sender(first)(b"")
        reader.start()
        code = relay.wait()
        if code is not None:
            payload = channels.status_payload(protocol.status_json, status_for(code))
            sender(channels.ERROR)(payload)
            ws.close()
            reader.join(CLOSE_WAIT)    # the client reads the rest, then answers the close
    except Closed:
        log.debug("exec client went away")
    finally:
        relay.stop.set()
        ws.duplex.close()
        if reader.ident is not None:
            reader.join(JOIN_TIMEOUT)
        relay.close()


def _read_channels(ws: WebSocket, protocol: ChannelProtocol, relay: Relay) -> None:
    resize = ResizeDecoder()
    try:
        while True:     # until the connection closes (the caller closes it at the end)
            message = ws.read(POLL)
            if message is None:
                continue
            channel, data = channels.decode(protocol, message[0])
            if channel == channels.STDIN:
                relay.write_stdin(data)
            elif channel == channels.RESIZE:
                for width, height in resize.feed(data):
                    relay.resize(width, height)
            elif channel == channels.CLOSE_SIGNAL and data[0] == channels.STDIN:
                relay.close_stdin()
    except (Closed, ConnectionError, TimeoutError):
        pass    # the connection ended: the relay notices through stop
    except ChannelError as exc:
        log.info("exec client broke the channel protocol: %s", exc)
        ws.close(1002)
    finally:
        relay.stop.set()
