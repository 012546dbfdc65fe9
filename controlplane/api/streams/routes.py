"""The pod streaming subresources, from request to what the HTTP layer runs.

``pods/exec``, ``pods/attach`` and ``pods/portforward`` answer an upgrade
request with an `Upgrade`: the ``101`` headers and the session to run on the
raw connection once they are sent.  Everything that can be refused is
refused before that, as an HTTP Status the client prints (the pod, the
container, the node, the protocol — and the node side's StreamTargetError,
since the session is started before the ``101``).  ``pods/log`` answers a
`ByteStream` of text.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from base.cri import ExecSession, PodStreams, StreamTargetError
from controlplane.api import errors
from controlplane.api.registry import Registry
from controlplane.api.spdy import SpdySession
from controlplane.api.streams import logs, target
from controlplane.api.streams.channels import (
    EXEC_PROTOCOLS,
    PORTFORWARD_PROTOCOLS,
    SPDY_EXEC_PROTOCOLS,
    SPDY_PORTFORWARD_PROTOCOL,
    TUNNEL_PREFIX,
)
from controlplane.api.streams.exec import serve_websocket
from controlplane.api.streams.portforward import PodAddress, SpdyPortForward, serve_channels
from controlplane.api.streams.spdy_exec import serve_spdy
from controlplane.api.streams.transport import Duplex
from controlplane.api.streams.websocket import (
    Closed,
    WebSocket,
    accept_headers,
    is_websocket,
    negotiate,
    offered_subprotocols,
)

SUBRESOURCES = ("exec", "attach", "portforward", "log")


@dataclass
class Upgrade:
    """Send ``101`` with ``headers``, then ``run(duplex)`` until the session ends;
    ``release()`` afterwards, or when the 101 could not be sent: it frees what was
    started before the 101 (ExecSession.kill; idempotent)."""

    headers: list[tuple[str, str]]
    run: Callable[[Duplex], None]
    release: Callable[[], None]


@dataclass
class ByteStream:
    """A chunked text response; empty chunks are heartbeats (nothing is sent)."""

    chunks: Iterator[bytes]
    content_type: str = "text/plain"


@dataclass(frozen=True)
class StreamRequest:
    method: str
    target: str
    headers: dict          # lower-case names; repeated headers joined with ", "
    namespace: str
    name: str
    subresource: str


def is_spdy(headers: dict) -> bool:
    connection = {t.strip().lower() for t in headers.get("connection", "").split(",")}
    return headers.get("upgrade", "").lower() == "spdy/3.1" and "upgrade" in connection


def spdy_protocol(headers: dict, supported: tuple[str, ...]) -> str:
    offered = [p.strip() for p in headers.get("x-stream-protocol-version", "").split(",")
               if p.strip()]
    if not offered:
        raise errors.bad_request("unable to upgrade: header X-Stream-Protocol-Version "
                                 "does not exist in request")
    for protocol in offered:
        if protocol in supported:
            return protocol
    raise errors.StatusError(403, "Forbidden",
                             f"unable to upgrade: unable to negotiate protocol: client supports "
                             f"[{' '.join(offered)}], server accepts [{' '.join(supported)}]")


def spdy_headers(protocol: str) -> list[tuple[str, str]]:
    return [("Connection", "Upgrade"), ("Upgrade", "SPDY/3.1"),
            ("X-Stream-Protocol-Version", protocol)]


class PodStreamRoutes:
    """Serves the pods' streaming subresources against one registry."""

    def __init__(self, registry: Registry, stopped: Callable[[], bool]) -> None:
        self.registry = registry
        self.stopped = stopped
        self.pod_streams: PodStreams | None = None

    def serve(self, req: StreamRequest) -> Upgrade | ByteStream:
        allowed = ("GET",) if req.subresource == "log" else ("GET", "POST")
        if req.method not in allowed:
            raise errors.method_not_allowed()
        if req.subresource == "log":
            return self._log(req)
        pod = target.get_pod(self.registry, req.namespace, req.name)
        if req.subresource == "portforward":
            target.require_host(pod)
            return self._portforward(req, target.require_streams(self.pod_streams), pod)
        opts = target.exec_options(target.query_all(req.target), req.subresource == "attach")
        container = target.pick_container(pod, opts.container)
        target.require_host(pod)
        return self._exec(req, target.require_streams(self.pod_streams), opts, container)

    # ---- exec / attach ----------------------------------------------------------
    def _exec(self, req: StreamRequest, streams: PodStreams, opts: target.ExecOptions,
              container: str) -> Upgrade:
        attach = req.subresource == "attach"
        if is_websocket(req.headers):
            protocol = EXEC_PROTOCOLS[negotiate(offered_subprotocols(req.headers),
                                                tuple(EXEC_PROTOCOLS))]
            headers = accept_headers(req.headers, protocol.name)
            session = self._start(streams, req, container, opts, attach)
            return Upgrade(headers, lambda duplex: serve_websocket(
                WebSocket(duplex), protocol, session, opts, attach), session.kill)
        if is_spdy(req.headers):
            version = spdy_protocol(req.headers, SPDY_EXEC_PROTOCOLS)
            session = self._start(streams, req, container, opts, attach)
            return Upgrade(spdy_headers(version), lambda duplex: serve_spdy(
                _plain_spdy(duplex), version, session, opts, attach), session.kill)
        raise errors.bad_request("Upgrade request required")

    @staticmethod
    def _start(streams: PodStreams, req: StreamRequest, container: str,
               opts: target.ExecOptions, attach: bool) -> ExecSession:
        try:
            if attach:
                return streams.attach(req.namespace, req.name, container, stdin=opts.stdin,
                                      tty=opts.tty)
            return streams.exec(req.namespace, req.name, container, list(opts.command),
                                stdin=opts.stdin, tty=opts.tty)
        except StreamTargetError as exc:
            raise target.target_error(exc) from exc

    # ---- port-forward -------------------------------------------------------------
    def _portforward(self, req: StreamRequest, streams: PodStreams, pod: dict) -> Upgrade:
        address = PodAddress(req.namespace, req.name, pod["metadata"].get("uid", ""))
        headers = req.headers
        if is_websocket(headers):
            offered = offered_subprotocols(headers)
            tunnel = TUNNEL_PREFIX + SPDY_PORTFORWARD_PROTOCOL
            if tunnel in offered:
                def run_tunnel(duplex: Duplex) -> None:
                    ws = WebSocket(duplex)
                    SpdyPortForward(_tunnelled_spdy(ws), streams, address).run()
                return Upgrade(accept_headers(headers, tunnel), run_tunnel, _nothing)
            protocol = PORTFORWARD_PROTOCOLS[negotiate(offered, tuple(PORTFORWARD_PROTOCOLS))]
            ports = target.forwarded_ports(target.query_all(req.target))
            if not ports:
                raise errors.bad_request('query parameter "ports" is required')
            return Upgrade(accept_headers(headers, protocol.name), lambda duplex: serve_channels(
                WebSocket(duplex), protocol, streams, address, ports), _nothing)
        if is_spdy(headers):
            spdy_protocol(headers, (SPDY_PORTFORWARD_PROTOCOL,))
            return Upgrade(spdy_headers(SPDY_PORTFORWARD_PROTOCOL), lambda duplex: SpdyPortForward(
                _plain_spdy(duplex), streams, address).run(), _nothing)
        raise errors.bad_request("Upgrade request required")

    # ---- logs -------------------------------------------------------------------------
    def _log(self, req: StreamRequest) -> ByteStream:
        now = time.time_ns()
        opts = logs.log_options(target.query_all(req.target), now)
        pod = target.get_pod(self.registry, req.namespace, req.name)
        container = target.pick_container(pod, opts.container)
        if not (pod.get("spec") or {}).get("nodeName"):
            return ByteStream(iter(()))        # not scheduled: no logs yet, as the API says
        logs.check_log_status(pod, container, opts.previous)
        streams = target.require_streams(self.pod_streams)
        try:
            path = streams.log_path(req.namespace, req.name, container, opts.previous)
        except StreamTargetError as exc:
            raise target.target_error(exc) from exc
        if path is None:
            return ByteStream(iter(()))
        run_id = _container_id(pod, container)

        def running() -> bool:
            current = self.registry.store.get("pods", req.namespace, req.name)
            return (current is not None and _container_id(current, container) == run_id
                    and _is_running(current, container))
        try:
            chunks = logs.read_log(path, opts, running, self.stopped)
            first = next(chunks, None)        # open the file now: a missing one is an error
        except FileNotFoundError as exc:
            raise errors.StatusError(500, "InternalError",
                                     f"failed to open log file {path!r}: {exc.strerror}") from exc
        return ByteStream(_prepend(first, chunks))


def _prepend(first: bytes | None, rest: Iterator[bytes]) -> Iterator[bytes]:
    if first is None:
        return
    try:
        yield first
        yield from rest
    finally:
        rest.close()


def _status_of(pod: dict, container: str) -> dict:
    status = pod.get("status") or {}
    return next((s for key in ("containerStatuses", "initContainerStatuses")
                 for s in status.get(key) or [] if s.get("name") == container), {})


def _container_id(pod: dict, container: str) -> str:
    return _status_of(pod, container).get("containerID", "")


def _is_running(pod: dict, container: str) -> bool:
    return "running" in (_status_of(pod, container).get("state") or {})


def _plain_spdy(duplex: Duplex) -> SpdySession:
    def recv() -> bytes:
        while True:
            data = duplex.recv(1.0)
            if data is not None:
                return data
    return SpdySession(recv, duplex.send, server=True, shutdown=duplex.close).start()


def _tunnelled_spdy(ws: WebSocket) -> SpdySession:
    """SPDY whose bytes travel in WebSocket binary messages (SPDY/3.1+portforward.k8s.io)."""
    def recv() -> bytes:
        while True:
            try:
                message = ws.read(1.0)
            except Closed:
                return b""
            if message is not None and message[0]:
                return message[0]

    def send(data: bytes) -> None:
        ws.send(data)

    def shutdown() -> None:
        ws.close()
        ws.duplex.close()
    return SpdySession(recv, send, server=True, shutdown=shutdown).start()


def _nothing() -> None:
    """Nothing was started before the 101."""


