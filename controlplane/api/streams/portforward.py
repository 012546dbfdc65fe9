"""port-forward: TCP connections into a pod, one socket pair per forwarded connection.

Two wire forms, as a kubelet serves them:

* SPDY (kubectl; plain ``Upgrade: SPDY/3.1`` or tunnelled in WebSocket
  messages): for every local connection kubectl opens an *error* and a
  *data* stream carrying the same ``requestid`` and the remote ``port``.
  A complete pair is dialled into the pod and copied both ways; a failure
  is written to the pair's error stream (kubectl prints it as ``an error
  occurred forwarding L -> R: ...``) and touches no other pair.
* ``v4.channel.k8s.io`` (the official Python client): the ``ports`` query
  names the ports; port i gets data channel 2i and error channel 2i+1, each
  opened with the port number (2 bytes, little endian); each port is one
  connection, dialled at once.

Every forwarded connection is a `Forward`: two copy threads and the pod-side
socket, all stopped and joined when the session ends.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from base.cri import PodStreams, StreamTargetError
from base.fdwait import readable
from controlplane.api.spdy import SpdyError, SpdySession, SpdyStream, SpdyTimeout
from controlplane.api.streams import channels
from controlplane.api.streams.channels import ChannelError, ChannelProtocol
from controlplane.api.streams.websocket import Closed, WebSocket

log = logging.getLogger("controlplane.api.streams")
DIAL_TIMEOUT = 10.0
PAIR_TIMEOUT = 30.0       # the kubelet's stream creation timeout
POLL = 0.2
READ_SIZE = 64 * 1024
JOIN_TIMEOUT = 5.0


@dataclass(frozen=True)
class PodAddress:
    namespace: str
    name: str
    uid: str


def forward_error(pod: PodAddress, port: int, exc: StreamTargetError | OSError) -> str:
    """The kubelet's text for a connection it could not make."""
    detail = exc.message if isinstance(exc, StreamTargetError) else str(exc)
    return f"error forwarding port {port} to pod {pod.uid}, uid : {detail}"


class Forward:
    """One forwarded connection: client bytes -> pod socket, pod socket -> client.

    Its reader thread owns the pod socket and closes it when it ends."""

    def __init__(self, sock: socket.socket, send: Callable[[bytes], None],
                 send_done: Callable[[], None], on_end: Callable[[Forward], None]) -> None:
        self.sock = sock
        self._send, self._send_done, self._on_end = send, send_done, on_end
        self._stop = threading.Event()
        sock.setblocking(True)
        self.reader = threading.Thread(target=self._from_pod, daemon=True,
                                       name="svclab-portforward-pod")
        self.reader.start()

    def to_pod(self, data: bytes) -> None:
        """Client bytes; b"" is the client's half-close."""
        try:
            if data:
                self.sock.sendall(data)
            else:
                self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self.close()      # the pod side is gone: the reader ends the stream

    def _from_pod(self) -> None:
        try:
            while not self._stop.is_set():
                if not readable(self.sock, POLL):
                    continue
                data = self.sock.recv(READ_SIZE)
                if not data:
                    self._send_done()
                    break
                self._send(data)
        except (OSError, ValueError, SpdyError):
            pass          # either side went away: the end of this connection only
        finally:
            self._stop.set()
            self.sock.close()
            self._on_end(self)

    def close(self) -> None:
        """Cut both directions; the reader notices and closes the socket."""
        self._stop.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass          # closed by the reader already, or never connected

    def join(self) -> None:
        if self.reader is not threading.current_thread():
            self.reader.join(JOIN_TIMEOUT)


@dataclass
class _Pair:
    request_id: str
    created: float
    data: SpdyStream | None = None
    error: SpdyStream | None = None
    threads: list[threading.Thread] = field(default_factory=list)


class SpdyPortForward:
    """Serves one SPDY session's port-forward streams until the session ends."""

    def __init__(self, spdy: SpdySession, streams: PodStreams, pod: PodAddress) -> None:
        self.spdy, self.streams, self.pod = spdy, streams, pod
        self._pairs: dict[str, _Pair] = {}
        self._forwards: set[Forward] = set()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def run(self) -> None:
        try:
            while not self.spdy.closed:
                stream = self.spdy.accept_stream(POLL)
                if stream is not None:
                    self._add(stream)
                self._expire()
        finally:
            with self._lock:
                forwards = list(self._forwards)
            for forward in forwards:
                forward.close()
            for forward in forwards:
                forward.join()
            for thread in self._threads:
                thread.join(JOIN_TIMEOUT)

    def _add(self, stream: SpdyStream) -> None:
        headers = stream.headers
        kind = headers.get("streamtype", "")
        port = headers.get("port", "")
        if kind not in ("error", "data") or not port.isdigit() or not 0 < int(port) < 65536:
            log.info("port-forward: refused stream %s", headers)
            stream.reset()
            return
        request_id = headers.get("requestid") or self._legacy_id(stream, kind)
        pair = self._pairs.setdefault(request_id, _Pair(request_id, time.monotonic()))
        if getattr(pair, kind) is not None:
            self._fail(pair, f"error processing stream for request {request_id}: "
                             f"{kind} stream already assigned")
            stream.reset()
            return
        setattr(pair, kind, stream)
        if pair.data is not None and pair.error is not None:
            del self._pairs[request_id]
            thread = threading.Thread(target=self._forward, args=(pair, int(port)), daemon=True,
                                      name=f"svclab-portforward-{port}")
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
            thread.start()

    @staticmethod
    def _legacy_id(stream: SpdyStream, kind: str) -> str:
        # Clients without request ids open error then data: consecutive odd ids.
        return str(stream.id if kind == "error" else stream.id - 2)

    def _expire(self) -> None:
        now = time.monotonic()
        for request_id, pair in list(self._pairs.items()):
            if now - pair.created > PAIR_TIMEOUT:
                del self._pairs[request_id]
                self._fail(pair, f"timed out waiting for streams of request {request_id}")

    @staticmethod
    def _fail(pair: _Pair, message: str) -> None:
        for stream in (pair.error, pair.data):
            if stream is None:
                continue
            try:
                if stream is pair.error:
                    stream.write(message.encode())
                stream.close()
            except SpdyError:
                pass     # the client dropped the stream already

    def _forward(self, pair: _Pair, port: int) -> None:
        data, error = pair.data, pair.error
        try:
            sock = self.streams.dial(self.pod.namespace, self.pod.name, port, DIAL_TIMEOUT)
        except (StreamTargetError, OSError) as exc:
            self._fail(pair, forward_error(self.pod, port, exc))
            return
        forward = Forward(sock, data.write, data.close, self._ended)
        with self._lock:
            self._forwards.add(forward)
        try:
            while True:
                try:
                    chunk = data.read(POLL)
                except SpdyTimeout:
                    if forward.reader.is_alive():
                        continue
                    break
                forward.to_pod(chunk)
                if not chunk:
                    break
            forward.join()
        except SpdyError:
            forward.close()
        finally:
            try:
                error.close()
            except SpdyError:
                pass     # reset by the client: nothing left to say on it

    def _ended(self, forward: Forward) -> None:
        with self._lock:
            self._forwards.discard(forward)


# ---- v4.channel.k8s.io ----------------------------------------------------------------

def serve_channels(ws: WebSocket, protocol: ChannelProtocol, streams: PodStreams,
                   pod: PodAddress, ports: list[int]) -> None:
    """One connection per requested port over channel framing, until all end."""
    def sender(channel: int) -> Callable[[bytes], None]:
        return lambda data: ws.send(*channels.encode(protocol, channel, data))

    forwards: dict[int, Forward] = {}
    live = threading.Semaphore(0)
    try:
        for index, port in enumerate(ports):
            sender(2 * index)(channels.port_prefix(port))
            sender(2 * index + 1)(channels.port_prefix(port))
        for index, port in enumerate(ports):
            try:
                sock = streams.dial(pod.namespace, pod.name, port, DIAL_TIMEOUT)
            except (StreamTargetError, OSError) as exc:
                sender(2 * index + 1)(forward_error(pod, port, exc).encode())
                continue
            forwards[2 * index] = Forward(sock, sender(2 * index), lambda: None,
                                          lambda _f: live.release())
        _pump_client(ws, protocol, forwards, live)
    except (Closed, ChannelError) as exc:
        log.debug("port-forward client: %s", exc)
    finally:
        for forward in forwards.values():
            forward.close()
        for forward in forwards.values():
            forward.join()
        ws.close()
        ws.duplex.close()


def _pump_client(ws: WebSocket, protocol: ChannelProtocol, forwards: dict[int, Forward],
                 live: threading.Semaphore) -> None:
    """Client data to the pods until every connection ended or the client left."""
    ended = 0
    while ended < len(forwards):
        message = ws.read(POLL)
        while live.acquire(blocking=False):
            ended += 1
        if message is None:
            continue
        channel, data = channels.decode(protocol, message[0])
        forward = forwards.get(channel)
        if forward is not None and data:
            forward.to_pod(data)
