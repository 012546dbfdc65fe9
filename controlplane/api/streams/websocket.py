"""The server side of RFC 6455 over an upgraded connection, framed by wsproto.

The HTTP request has already been parsed by the API server, so the opening
handshake is checked and answered here (`accept_headers`); after the ``101``
a `WebSocket` turns the `Duplex`'s bytes into whole messages and back with
wsproto's sans-IO ``Connection``.  Pings are answered as they arrive; the
closing handshake is completed in both directions.  Sends are serialised
under one lock so that frames from several writer threads never interleave.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Message,
    Ping,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError, generate_accept_token

from controlplane.api import errors
from controlplane.api.streams.transport import Duplex

NORMAL_CLOSURE = 1000


class Closed(ConnectionError):
    """The WebSocket is closed (closing handshake, or the connection dropped)."""


def is_websocket(headers: dict) -> bool:
    connection = {t.strip().lower() for t in headers.get("connection", "").split(",")}
    return headers.get("upgrade", "").lower() == "websocket" and "upgrade" in connection


def offered_subprotocols(headers: dict) -> list[str]:
    return [p.strip() for p in headers.get("sec-websocket-protocol", "").split(",") if p.strip()]


def negotiate(offered: list[str], supported: tuple[str, ...]) -> str:
    """The first subprotocol the client offered that we support ("" when it offered
    none and the bare protocol is supported); StatusError 400 otherwise."""
    for protocol in offered or [""]:
        if protocol in supported:
            return protocol
    wanted = [p for p in supported if p]
    raise errors.bad_request(f"unable to upgrade: requested protocol(s) are not supported: "
                             f"[{' '.join(offered)}]; supports [{' '.join(wanted)}]")


def accept_headers(headers: dict, subprotocol: str) -> list[tuple[str, str]]:
    """The 101 response's headers for a valid handshake; StatusError 400 otherwise."""
    key = headers.get("sec-websocket-key", "").strip()
    if not key:
        raise errors.bad_request("unable to upgrade: missing Sec-WebSocket-Key header")
    if headers.get("sec-websocket-version", "").strip() != "13":
        raise errors.bad_request("unable to upgrade: Sec-WebSocket-Version must be 13")
    out = [("Upgrade", "websocket"), ("Connection", "Upgrade"),
           ("Sec-WebSocket-Accept", generate_accept_token(key.encode()).decode())]
    if subprotocol:
        out.append(("Sec-WebSocket-Protocol", subprotocol))
    return out


class WebSocket:
    """Whole messages in, messages out; one reader thread, any number of writers."""

    def __init__(self, duplex: Duplex) -> None:
        self.duplex = duplex
        self._ws = Connection(ConnectionType.SERVER)
        self._state_lock = threading.Lock()    # wsproto's state: parsing and framing
        self._write_lock = threading.Lock()    # frames leave whole and in order
        self._events: deque = deque()
        self._parts: list[bytes] = []
        self._text = False
        self.close_code: int | None = None

    # ---- writing ----------------------------------------------------------------
    def send(self, data: bytes, text: bool = False) -> None:
        """One message (a text message carries ASCII data); raises Closed."""
        event = TextMessage(data=data.decode("ascii")) if text else BytesMessage(data=data)
        self._send_event(event)

    def close(self, code: int = NORMAL_CLOSURE) -> None:
        """Start (or finish) the closing handshake; no error if already closed."""
        try:
            self._send_event(CloseConnection(code=code))
        except Closed:
            pass   # closed already: nothing left to say

    def _send_event(self, event) -> None:
        with self._write_lock:
            with self._state_lock:
                try:
                    frame = self._ws.send(event)
                except LocalProtocolError as exc:
                    raise Closed(f"websocket closed ({self._ws.state.name})") from exc
            try:
                self.duplex.send(frame)
            except (ConnectionError, TimeoutError) as exc:
                raise Closed(str(exc)) from exc

    @property
    def open(self) -> bool:
        return self._ws.state is ConnectionState.OPEN

    # ---- reading ----------------------------------------------------------------
    def read(self, timeout: float) -> tuple[bytes, bool] | None:
        """The next whole message as (payload, is_text), text as UTF-8; None when
        none arrived within timeout; raises Closed at the end of the connection."""
        deadline = time.monotonic() + timeout
        while True:
            message = self._next_event()
            if message is not None:
                return message
            if self.close_code is not None:
                raise Closed(f"websocket closed with code {self.close_code}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            data = self.duplex.recv(remaining)
            if data is None:
                return None
            with self._state_lock:
                if self._ws.state is ConnectionState.CLOSED:
                    self.close_code = self.close_code or NORMAL_CLOSURE
                    continue
                self._ws.receive_data(data or None)   # None: the connection dropped

    def _next_event(self) -> tuple[bytes, bool] | None:
        while True:
            if not self._events:
                with self._state_lock:
                    self._events.extend(self._ws.events())
                if not self._events:
                    return None
            event = self._events.popleft()
            if isinstance(event, Ping):
                self._reply(event.response())
            elif isinstance(event, CloseConnection):
                self.close_code = event.code
                if self._ws.state is ConnectionState.REMOTE_CLOSING:
                    self._reply(event.response())
            elif isinstance(event, Message):
                chunk = event.data.encode() if isinstance(event, TextMessage) else event.data
                self._text = isinstance(event, TextMessage)
                self._parts.append(bytes(chunk))
                if event.message_finished:
                    payload, self._parts = b"".join(self._parts), []
                    return payload, self._text

    def _reply(self, event) -> None:
        try:
            self._send_event(event)
        except Closed:
            pass   # the peer is gone: the next read reports it
