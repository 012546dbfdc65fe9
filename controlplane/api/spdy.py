"""SPDY/3.1 sessions: the stream transport kubectl falls back to.

kubectl 1.37's port-forward tunnels SPDY/3.1 inside WebSocket binary messages
(or speaks it on a plain ``Upgrade: SPDY/3.1`` connection), and exec/attach use
it when WebSocket is refused.  The API server's streaming handlers need the
server side of such a session: take the streams the client opens (their
headers say what each is for: ``streamtype``, ``port``, ``requestid``), move
bytes both ways, half-close, reset, answer pings, go away.  A small client
mode (``server=False``, :meth:`SpdySession.open_stream`) lets tests speak it.

What kubectl's peer (moby/spdystream on the SPDY/3 framer) does and expects:
the client opens every stream (odd ids, the server's are even) and waits for
a SYN_REPLY before writing, so :meth:`~SpdySession.accept_stream` replies
before handing a stream out; FIN is a half-close (an empty DATA frame with
FIN); RST_STREAM aborts both directions (kubectl resets a port-forward data
stream when it is done with it); PINGs carrying the peer's parity are echoed
(kubectl pings every few seconds); GOAWAY says no new streams.

Flow control: SPDY/3.1 gives every stream a 64 KiB window (SETTINGS
INITIAL_WINDOW_SIZE changes it) and the session one more (WINDOW_UPDATE on
stream 0).  This session always sends WINDOW_UPDATEs as its user consumes
data.  spdystream, though, never sends WINDOW_UPDATE and ignores those it gets, so a
writer that waited for the peer's window would stall kubectl after 64 KiB:
the peer's windows are enforced once the peer shows it keeps them (a SETTINGS
INITIAL_WINDOW_SIZE or any WINDOW_UPDATE, which these sessions send when they
start), or always/never with ``peer_flow_control=True/False``.  Data past the
window is taken in; while one stream holds ``max_buffer`` unread bytes the
reader stops reading the transport (backpressure, as spdystream does).

Threads: one reader per session (a daemon that :meth:`~SpdySession.close`
stops and joins); writes run on the caller's thread, serialised by one lock,
one ``send()`` call per batch of whole frames.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping

from controlplane.api import spdy_frames as sf
from controlplane.api.spdy_frames import SpdyError

__all__ = ["SpdyError", "SpdySession", "SpdyStream", "SpdyStreamReset", "SpdyTimeout"]

DATA_CHUNK = 16384              # bytes per DATA frame we send


class SpdyTimeout(SpdyError):
    """A bounded wait (window, reply, read, ping) ran out."""


class SpdyStreamReset(SpdyError):
    """The stream was reset (by the peer, or by us); ``status`` is the RST code."""

    def __init__(self, stream_id: int, status: int, by_peer: bool) -> None:
        who = "the peer" if by_peer else "this side"
        super().__init__(f"stream {stream_id} was reset by {who} ({sf.status_name(status)})")
        self.stream_id, self.status, self.by_peer = stream_id, status, by_peer


class SpdyStream:
    """One stream of a session.  State is guarded by the session's condition."""

    def __init__(self, session: SpdySession, stream_id: int, headers: dict[str, str], *,
                 remote_fin: bool = False, local_fin: bool = False) -> None:
        self._session = session
        self.id = stream_id
        self.headers = headers              # the SYN_STREAM's, lower-case names
        self.reply_headers: dict[str, str] = {}    # the SYN_REPLY's (streams we opened)
        self.extra_headers: dict[str, str] = {}    # from HEADERS frames, if any
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._unacked = 0                   # consumed, not yet given back by WINDOW_UPDATE
        self._send_window = session._peer_initial_window
        self._remote_fin = remote_fin
        self._local_fin = local_fin
        self._replied = False
        self._reset: int | None = None
        self._reset_by_peer = False
        self._write_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<SpdyStream {self.id} {self.headers}>"

    @property
    def remote_closed(self) -> bool:
        """The peer sent FIN or reset the stream, or the session ended."""
        with self._session._cond:
            return self._remote_fin or self._reset is not None or self._session._ended

    @property
    def reset_status(self) -> int | None:
        """The RST_STREAM status if the stream was reset (either side), else None."""
        with self._session._cond:
            return self._reset

    @property
    def buffered(self) -> int:
        """Bytes received and not yet read."""
        with self._session._cond:
            return self._buffered

    @property
    def send_window(self) -> int:
        """The peer's window for this stream as this side counts it."""
        with self._session._cond:
            return self._send_window

    def read(self, timeout: float | None = None) -> bytes:
        """Everything received so far (waiting for some); b"" at the peer's FIN,
        a reset, or the session's end.  SpdyTimeout after timeout seconds;
        SpdyError if the session failed."""
        return self._session._read(self, timeout)

    def write(self, data: bytes) -> None:
        """Send data in DATA frames, within the peer's window: waits for room up
        to the session's timeout (SpdyTimeout).  SpdyStreamReset if the stream
        was reset, SpdyError after close() or on a dead session."""
        view = memoryview(data)
        with self._write_lock:
            while view:
                size = self._session._reserve(self, len(view))
                self._session._send_frames(sf.DataFrame(self.id, bytes(view[:size])))
                view = view[size:]

    def close(self) -> None:
        """Half-close: an empty DATA frame with FIN.  Idempotent; nothing to do
        once the stream was reset or the session ended."""
        with self._write_lock:
            with self._session._cond:
                if self._local_fin or self._reset is not None or self._session._ended:
                    return
                self._local_fin = True
                self._session._forget_if_done(self)
            self._session._send_frames(sf.DataFrame(self.id, b"", fin=True))

    def reset(self, status: int = sf.CANCEL) -> None:
        """Abort both directions with RST_STREAM (CANCEL by default); unread data
        is dropped.  Idempotent."""
        session = self._session
        with session._cond:
            if self._reset is not None:
                return
            was_open = not (self._local_fin and self._remote_fin)
            self._reset = status
            credit = session._drop(self)
            frames = ([sf.RstStream(self.id, status)] if was_open else []) + credit
            if session._ended:
                return
        if frames:
            session._send_quietly(*frames)


class SpdySession:
    """One SPDY/3.1 connection over a byte transport (server side unless server=False).

    recv() returns the peer's next bytes (b"" at EOF); send(data) writes whole
    frames; shutdown(), if given, is what close() calls to make a blocked recv()
    return (e.g. ``lambda: sock.shutdown(socket.SHUT_RDWR)``).  timeout bounds
    every wait that has no timeout argument (window, reply, close's join); a
    send() that blocks is the transport's to bound (a socket timeout: its
    OSError fails the session)."""

    def __init__(self, recv: Callable[[], bytes], send: Callable[[bytes], None], *,
                 server: bool = True, timeout: float = 30.0,
                 shutdown: Callable[[], None] | None = None,
                 peer_flow_control: bool | None = None,
                 window: int = sf.DEFAULT_WINDOW, session_window: int = 16 * sf.DEFAULT_WINDOW,
                 max_buffer: int = 16 * sf.DEFAULT_WINDOW) -> None:
        if not 1 <= window <= sf.MAX_WINDOW:
            raise SpdyError(f"window: {window}, allowed 1..{sf.MAX_WINDOW}")
        if not sf.DEFAULT_WINDOW <= session_window <= sf.MAX_WINDOW:
            raise SpdyError(f"session_window: {session_window}, allowed "
                            f"{sf.DEFAULT_WINDOW}..{sf.MAX_WINDOW}")
        self._recv, self._send, self._shutdown = recv, send, shutdown
        self.server, self.timeout = server, timeout
        self._window, self._session_window, self._max_buffer = window, session_window, max_buffer
        self._peer_fc, self._peer_fc_seen = peer_flow_control, False
        self._cond = threading.Condition()
        self._wlock = threading.RLock()     # transport writes and the header compressor
        self._compressor = sf.HeaderCompressor()
        self._decoder = sf.FrameDecoder()
        self._streams: dict[int, SpdyStream] = {}
        self._incoming: deque[SpdyStream] = deque()
        self._next_id = 2 if server else 1
        self._last_peer_id = 0
        self._next_ping = 2 if server else 1
        self._pings: dict[int, float | None] = {}   # id -> answer time
        self._peer_initial_window = sf.DEFAULT_WINDOW
        self._session_send_window = sf.DEFAULT_WINDOW
        self._session_unacked = 0
        self.goaway: sf.GoAway | None = None   # the peer's, once received
        self._closing = self._ended = self._broken = False
        self._error: SpdyError | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> SpdySession:
        """Announce our windows and start the reader thread."""
        if self._thread is not None:
            raise SpdyError("session already started")
        frames: list[sf.Frame] = [sf.Settings(((sf.SETTINGS_INITIAL_WINDOW_SIZE, self._window),))]
        if self._session_window > sf.DEFAULT_WINDOW:
            frames.append(sf.WindowUpdate(0, self._session_window - sf.DEFAULT_WINDOW))
        self._send_frames(*frames)
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"spdy-{'server' if self.server else 'client'}")
        self._thread.start()
        return self

    @property
    def closed(self) -> bool:
        with self._cond:
            return self._ended

    @property
    def error(self) -> SpdyError | None:
        """Why the session failed (malformed input, transport error), if it did."""
        with self._cond:
            return self._error

    @property
    def peer_flow_control(self) -> bool:
        """Whether writes wait for the peer's windows."""
        with self._cond:
            return self._enforcing()

    def close(self) -> None:
        """GOAWAY, end every stream, stop and join the reader.  Idempotent."""
        with self._cond:
            if self._closing:
                return
            self._closing = True
            goaway = not self._ended
            last = self._last_peer_id
        if goaway:
            self._send_quietly(sf.GoAway(last, sf.GOAWAY_OK))
        self._end()
        if self._shutdown is not None:
            try:
                self._shutdown()
            except OSError:
                pass                        # the transport is already gone: what we want
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(self.timeout)

    # -- streams ----------------------------------------------------------------------

    def accept_stream(self, timeout: float | None) -> SpdyStream | None:
        """The next stream the peer opened, answered with SYN_REPLY; None on
        timeout, after the peer's GOAWAY, or once the session ended."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._incoming:
                if self._ended or self.goaway is not None:
                    return None
                if not self._wait(deadline):
                    return None
            stream = self._incoming.popleft()
            stream._replied = True
            if stream._reset is not None:
                return stream
        if not self._send_quietly(sf.SynReply(stream.id, {})):
            return None
        return stream

    def open_stream(self, headers: Mapping[str, str], *, fin: bool = False,
                    timeout: float | None = None) -> SpdyStream:
        """SYN_STREAM, then wait (timeout, else the session's) for the SYN_REPLY."""
        if self._thread is None:
            raise SpdyError("open_stream before start()")
        with self._wlock:
            with self._cond:
                if self._ended or self.goaway is not None:
                    raise SpdyError("cannot open a stream: the session "
                                    + ("ended" if self._ended else "received GOAWAY"))
                if self._next_id > sf.MAX_STREAM_ID:
                    raise SpdyError("stream ids exhausted: open a new session")
                stream = SpdyStream(self, self._next_id, {k.lower(): v for k, v in
                                                          headers.items()}, local_fin=fin)
                self._next_id += 2
                self._streams[stream.id] = stream
            self._send_frames(sf.SynStream(stream.id, stream.headers, fin=fin))
        wait = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + wait
        with self._cond:
            while not stream._replied:
                if stream._reset is not None:
                    raise SpdyStreamReset(stream.id, stream._reset, stream._reset_by_peer)
                self._raise_if_ended()
                if not self._wait(deadline):
                    raise SpdyTimeout(f"stream {stream.id}: no SYN_REPLY within {wait}s")
        return stream

    def ping(self, timeout: float | None = None) -> float:
        """Send a PING and wait for its echo; the round trip in seconds."""
        with self._cond:
            self._raise_if_ended()
            ping_id = self._next_ping
            self._next_ping = ping_id + 2 if ping_id < 0xFFFFFFFD else (2 if self.server else 1)
            self._pings[ping_id] = None
        wait = self.timeout if timeout is None else timeout
        start = time.monotonic()
        try:
            self._send_frames(sf.Ping(ping_id))
            with self._cond:
                while self._pings[ping_id] is None:
                    self._raise_if_ended()
                    if not self._wait(start + wait):
                        raise SpdyTimeout(f"PING {ping_id}: no echo within {wait}s")
                return self._pings[ping_id] - start
        finally:
            with self._cond:
                del self._pings[ping_id]

    # -- internals: waiting and sending ----------------------------------------------------

    def _wait(self, deadline: float | None) -> bool:
        """Wait on the condition (held) until notified or deadline; False when past it."""
        if deadline is None:
            self._cond.wait()
            return True
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        self._cond.wait(left)
        return True

    def _raise_if_ended(self) -> None:
        if self._error is not None:
            raise SpdyError(f"SPDY session failed: {self._error}") from self._error
        if self._ended:
            raise SpdyError("SPDY session ended")

    def _ours(self, stream_or_ping_id: int) -> bool:
        """Whether an id has this side's parity (the server's are even)."""
        return (stream_or_ping_id % 2 == 0) == self.server

    def _enforcing(self) -> bool:
        return self._peer_fc is True or (self._peer_fc is None and self._peer_fc_seen)

    def _send_frames(self, *frames: sf.Frame) -> None:
        with self._wlock:
            if self._broken:
                raise SpdyError(f"SPDY session failed: {self._error or 'transport closed'}")
            data = b"".join(sf.encode_frame(f, self._compressor) for f in frames)
            try:
                self._send(data)
            except OSError as exc:
                self._broken = True
                error = SpdyError(f"sending to the peer failed: {exc}")
                self._fail(error)
                raise error from exc

    def _send_quietly(self, *frames: sf.Frame) -> bool:
        """Send bookkeeping frames (echo, reply, window, reset, goaway); a failure
        is recorded as the session's error (the next call raises it): False."""
        try:
            self._send_frames(*frames)
        except SpdyError:
            return False
        return True

    def _reserve(self, stream: SpdyStream, want: int) -> int:
        """Bytes of a DATA frame stream may send now; waits for window."""
        deadline = time.monotonic() + self.timeout
        with self._cond:
            while True:
                if stream._reset is not None:
                    raise SpdyStreamReset(stream.id, stream._reset, stream._reset_by_peer)
                if stream._local_fin:
                    raise SpdyError(f"stream {stream.id}: write after close()")
                self._raise_if_ended()
                enforce = self._enforcing()
                room = min(stream._send_window, self._session_send_window)
                if not enforce or room > 0:
                    size = min(want, DATA_CHUNK, room if enforce else want)
                    stream._send_window -= size
                    self._session_send_window -= size
                    return size
                if not self._wait(deadline):
                    raise SpdyTimeout(
                        f"stream {stream.id}: the peer's window stayed closed for "
                        f"{self.timeout}s (stream {stream._send_window}, session "
                        f"{self._session_send_window})")

    def _read(self, stream: SpdyStream, timeout: float | None) -> bytes:
        deadline = None if timeout is None else time.monotonic() + timeout
        updates: list[sf.Frame] = []
        with self._cond:
            while not stream._chunks:
                if stream._remote_fin or stream._reset is not None:
                    return b""
                if self._ended:
                    if self._error is not None:
                        self._raise_if_ended()
                    return b""
                if not self._wait(deadline):
                    raise SpdyTimeout(f"stream {stream.id}: no data within {timeout}s")
            data = b"".join(stream._chunks)
            stream._chunks.clear()
            stream._buffered = 0
            self._cond.notify_all()         # a reader held back by max_buffer may go on
            stream._unacked += len(data)
            if stream._unacked >= self._window // 2 and not stream._remote_fin:
                updates.append(sf.WindowUpdate(stream.id, stream._unacked))
                stream._unacked = 0
            updates += self._session_credit(len(data))
        if updates:
            self._send_quietly(*updates)
        return data

    def _session_credit(self, size: int) -> list[sf.Frame]:
        """Count consumed (or dropped) bytes; the session WINDOW_UPDATE when due."""
        self._session_unacked += size
        if self._session_unacked < self._session_window // 2 or self._ended:
            return []
        frame, self._session_unacked = sf.WindowUpdate(0, self._session_unacked), 0
        return [frame]

    def _drop(self, stream: SpdyStream) -> list[sf.Frame]:
        """Forget a reset stream (condition held): its unread bytes are credited."""
        self._streams.pop(stream.id, None)
        dropped = stream._buffered
        stream._chunks.clear()
        stream._buffered = 0
        self._cond.notify_all()
        return self._session_credit(dropped) if dropped else []

    def _forget_if_done(self, stream: SpdyStream) -> None:
        if stream._local_fin and stream._remote_fin:
            self._streams.pop(stream.id, None)

    def _end(self) -> None:
        with self._cond:
            self._ended = True
            self._cond.notify_all()

    def _fail(self, error: SpdyError) -> None:
        with self._cond:
            if self._error is None and not self._closing:    # not a failure of our close()
                self._error = error
            self._ended = True
            self._cond.notify_all()

    # -- internals: the reader --------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._ended:
                chunk = self._recv()
                if not chunk:
                    break
                self._decoder.feed(chunk)
                while (frame := self._decoder.next_frame()) is not None:
                    self._handle(frame)
        except SpdyError as exc:
            if not self._closing:
                self._send_quietly(sf.GoAway(self._last_peer_id, sf.GOAWAY_PROTOCOL_ERROR))
                self._fail(exc)
        except OSError as exc:
            self._fail(SpdyError(f"receiving from the peer failed: {exc}"))
        except Exception as exc:            # recorded for the callers, and raised to be seen
            self._fail(SpdyError(f"the SPDY reader failed: {exc!r}"))
            raise
        finally:
            self._end()

    def _handle(self, frame: sf.Frame) -> None:
        out: list[sf.Frame] = []
        with self._cond:
            match frame:
                case sf.DataFrame():
                    out = self._on_data(frame)
                case sf.SynStream():
                    out = self._on_syn_stream(frame)
                case sf.SynReply(stream_id=sid, headers=headers, fin=fin):
                    stream = self._streams.get(sid)
                    if stream is not None and self._ours(sid) and not stream._replied:
                        stream._replied, stream.reply_headers = True, headers
                        self._remote_finish(stream, fin)
                case sf.Headers(stream_id=sid, headers=headers, fin=fin):
                    stream = self._streams.get(sid)
                    if stream is not None:
                        stream.extra_headers.update(headers)
                        self._remote_finish(stream, fin)
                case sf.RstStream(stream_id=sid, status=status):
                    stream = self._streams.get(sid)
                    if stream is not None and stream._reset is None:
                        stream._reset, stream._reset_by_peer = status, True
                        out = self._drop(stream)
                case sf.Settings(entries=entries):
                    out = self._on_settings(entries)
                case sf.Ping(ping_id=pid):
                    if not self._ours(pid):
                        out = [frame]                      # the peer's: echo it
                    elif pid in self._pings:
                        self._pings[pid] = time.monotonic()
                case sf.GoAway(last_good_stream_id=last):
                    self.goaway = frame
                    for stream in list(self._streams.values()):
                        if self._ours(stream.id) and stream.id > last:
                            stream._reset, stream._reset_by_peer = sf.REFUSED_STREAM, True
                            out += self._drop(stream)
                case sf.WindowUpdate(stream_id=sid, delta=delta):
                    out = self._on_window_update(sid, delta)
            self._cond.notify_all()
        if out:
            self._send_quietly(*out)

    def _remote_finish(self, stream: SpdyStream, fin: bool) -> None:
        if fin:
            stream._remote_fin = True
            self._forget_if_done(stream)

    def _on_data(self, frame: sf.DataFrame) -> list[sf.Frame]:
        stream = self._streams.get(frame.stream_id)
        if stream is None or stream._reset is not None:
            return self._session_credit(len(frame.data))  # late data for a closed stream
        if stream._remote_fin:
            stream._reset = sf.STREAM_ALREADY_CLOSED
            return [sf.RstStream(stream.id, sf.STREAM_ALREADY_CLOSED),
                    *self._drop(stream), *self._session_credit(len(frame.data))]
        while (stream._buffered >= self._max_buffer and stream._reset is None
               and not self._closing):
            self._cond.wait()                # backpressure: the user reads, resets or closes
        if stream._reset is not None or self._closing:
            return self._session_credit(len(frame.data))
        if frame.data:
            stream._chunks.append(frame.data)
            stream._buffered += len(frame.data)
        self._remote_finish(stream, frame.fin)
        return []

    def _on_syn_stream(self, frame: sf.SynStream) -> list[sf.Frame]:
        sid = frame.stream_id
        if self._ours(sid) or sid <= self._last_peer_id:
            return [sf.RstStream(sid, sf.PROTOCOL_ERROR)]   # wrong parity, or not increasing
        self._last_peer_id = sid
        if self._closing:
            return [sf.RstStream(sid, sf.REFUSED_STREAM)]
        stream = SpdyStream(self, sid, frame.headers, remote_fin=frame.fin,
                            local_fin=frame.unidirectional)
        self._streams[sid] = stream
        self._forget_if_done(stream)
        self._incoming.append(stream)
        return []

    def _on_settings(self, entries: tuple[tuple[int, int], ...]) -> list[sf.Frame]:
        for setting, value in entries:
            if setting != sf.SETTINGS_INITIAL_WINDOW_SIZE:
                continue
            if value > sf.MAX_WINDOW:
                raise SpdyError(f"SETTINGS: INITIAL_WINDOW_SIZE {value} exceeds {sf.MAX_WINDOW}")
            delta, self._peer_initial_window = value - self._peer_initial_window, value
            for stream in self._streams.values():
                stream._send_window += delta
            self._peer_fc_seen = True
        return []

    def _on_window_update(self, sid: int, delta: int) -> list[sf.Frame]:
        self._peer_fc_seen = True
        if sid == 0:
            self._session_send_window += delta
            if self._session_send_window > sf.MAX_WINDOW:
                raise SpdyError(f"WINDOW_UPDATE: the session window grew past {sf.MAX_WINDOW}")
            return []
        stream = self._streams.get(sid)
        if stream is None or stream._reset is not None:
            return []
        stream._send_window += delta
        if stream._send_window <= sf.MAX_WINDOW:
            return []
        stream._reset = sf.FLOW_CONTROL_ERROR
        return [sf.RstStream(sid, sf.FLOW_CONTROL_ERROR), *self._drop(stream)]
