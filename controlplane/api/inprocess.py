"""An API client for the components that run in the API server's own process.

kube-controller-manager and kube-scheduler reach kube-apiserver over HTTPS on
the control-plane machine's loopback.  svclab's controllers, scheduler and
cloud controllers run in the lab daemon beside its API server, and there a
request of theirs goes to `ApiServer.handle` directly: the same
authentication (each component's own bearer token), the same RBAC,
impersonation and admission, the same dispatch and the same answers, but no
TLS, HTTP or JSON answer to encode and decode.  Their requests never crossed
the lab's network (the daemon's listener for them is the machine's
loopback), so no capture in the lab changes; the kubelets' requests still
leave from their nodes over HTTPS.  At a thousand pods the controllers'
requests were about a third of those the daemon made to itself.

Answers are deep copies (base/jsoncopy.py), as decoded JSON would be, so a
caller that changes an object it got never changes the store's.
"""
from __future__ import annotations

import http
import json
import threading
import urllib.parse
from collections.abc import Iterator

from base.jsoncopy import json_copy
from base.kube.client import ApiError, Credentials, KubeClient
from controlplane.api.handlers import Response, Stream
from controlplane.api.server import ApiServer


class InProcessClient(KubeClient):
    """A KubeClient whose requests `server` handles in this process."""

    def __init__(self, server: ApiServer, credentials: Credentials):
        super().__init__(credentials)
        self._server = server
        self._lower = {name.lower(): value for name, value in self._header_lines.items()}

    def request(self, method: str, path: str, *, body: dict | None = None,
                params: dict | None = None, content_type: str = "application/json") -> dict:
        if params:
            path += "?" + urllib.parse.urlencode(params)
        headers, payload = self._lower, b""
        if body is not None:
            payload = json.dumps(body).encode()
            headers = {**headers, "content-type": content_type,
                       "content-length": str(len(payload))}
        result = self._serve(method, path, headers, payload)
        if not isinstance(result, Response):
            _close(result)
            raise ApiError(400, "BadRequest", "a streaming answer to a plain request",
                           method, path)
        return _parsed(result, method, path)

    def open_watch(self, target: str, timeout: float) -> InProcessWatch:
        result = self._serve("GET", target, self._lower, b"")
        if isinstance(result, Stream):
            return InProcessWatch(result)
        _close(result)
        if isinstance(result, Response):
            _parsed(result, "WATCH", target)       # raises the error it answered
        raise ApiError(400, "BadRequest", "not a watch", "WATCH", target)

    def close(self) -> None:
        """Nothing is kept open between requests."""

    def _serve(self, method: str, target: str, headers: dict, body: bytes):
        if self._server.stopped:      # as a stopped server's closed port answers
            raise ConnectionRefusedError(f"{method} {target}: the API server has stopped")
        return self._server.handle(method, target, headers, body)


class InProcessWatch:
    """A watch on the server's own event stream: iterate for (type, object)
    events; close() (from any thread) ends the iteration at its next event or
    within the stream's poll (0.5 s)."""

    def __init__(self, stream: Stream):
        self._events = stream.events
        self._closed = threading.Event()

    def __iter__(self) -> Iterator[tuple[str, dict]]:
        try:
            for event in self._events:
                if self._closed.is_set():
                    return
                if event is not None:              # None: the stream is about to wait
                    yield event["type"], json_copy(event["object"])
        finally:
            _close_events(self._events)

    def close(self) -> None:
        self._closed.set()


def _parsed(result: Response, method: str, path: str) -> dict:
    body = result.body
    if isinstance(body, str):
        body = json.loads(body) if body else {}
    if result.code >= 400:
        reason = body.get("reason") or _phrase(result.code)
        raise ApiError(result.code, reason, body.get("message", ""), method, path)
    return json_copy(body)


def _phrase(code: int) -> str:
    try:
        return http.HTTPStatus(code).phrase
    except ValueError:
        return ""


def _close(result) -> None:
    _close_events(getattr(result, "events", None))


def _close_events(events) -> None:
    """End a stream's generator (its watch stops waiting on the store)."""
    close = getattr(events, "close", None)
    if close is not None:
        close()
