"""The lab daemon's control socket: JSON lines over a root-only Unix socket.

The daemon owns the Mininet network; everything else (CLI, tests, later the
control plane's tools) asks it through this socket to add or remove pods, or
to stop.  One request and one reply per connection keeps both sides simple.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from base import errors
from topo.state import LabPaths

log = logging.getLogger("svclab.control")
REQUEST_LIMIT = 1 << 20


class ControlServer:
    """Serves requests with a handler table; errors go back typed."""

    def __init__(self, path: Path, handlers: dict[str, Callable[..., object]]):
        self.path = path
        self.handlers = handlers
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()

    def __enter__(self) -> ControlServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        if self.path.exists():
            self.path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)
        try:
            sock.bind(str(self.path))
        finally:
            os.umask(old_umask)
        sock.listen(16)
        sock.settimeout(0.2)
        self._sock = sock
        self._thread = threading.Thread(target=self._serve, name="control", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._closing.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._sock is not None:
            self._sock.close()

    def _serve(self) -> None:
        while not self._closing.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(120)
            reply = self._dispatch(_read_line(conn))
            conn.sendall(json.dumps(reply).encode() + b"\n")

    def _dispatch(self, raw: bytes) -> dict:
        try:
            request = json.loads(raw)
            handler = self.handlers[request["op"]]
        except (ValueError, KeyError, TypeError):
            return {"ok": False, "type": "UsageError",
                    "error": f"bad request; ops: {', '.join(sorted(self.handlers))}"}
        try:
            return {"ok": True, "result": handler(**request.get("args", {}))}
        except errors.SvclabError as err:
            return {"ok": False, "type": type(err).__name__, "error": str(err)}
        except Exception as err:  # the daemon must survive a bad request
            log.exception("control request %s failed", request.get("op"))
            return {"ok": False, "type": "LabError", "error": f"{type(err).__name__}: {err}"}


def _read_line(conn: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
        if len(data) > REQUEST_LIMIT:
            break
    return data


class ControlClient:
    """Talks to a running lab's daemon."""

    def __init__(self, name: str, timeout: float = 120.0):
        self.paths = LabPaths(name)
        self.timeout = timeout

    def call(self, op: str, **args) -> object:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self.paths.control))
        except (FileNotFoundError, ConnectionRefusedError) as err:
            sock.close()
            raise errors.LabError(f"lab {self.paths.name!r} is not running "
                                  f"(no daemon at {self.paths.control})") from err
        with sock:
            sock.sendall(json.dumps({"op": op, "args": args}).encode() + b"\n")
            try:
                reply = json.loads(_read_line(sock))
            except TimeoutError as err:
                raise errors.LabTimeout(f"lab daemon did not answer {op!r} "
                                        f"within {self.timeout} s") from err
        if reply.get("ok"):
            return reply.get("result")
        error_type = getattr(errors, reply.get("type", ""), errors.LabError)
        if not (isinstance(error_type, type) and issubclass(error_type, errors.SvclabError)):
            error_type = errors.LabError
        if error_type is errors.SpecError:
            error_type = errors.UsageError
        raise error_type(reply.get("error", "unknown error"))

    def add_pod(self, name: str, node: str, namespace: str = "default",
                ip: str | None = None, command: list[str] | None = None) -> dict:
        return self.call("add_pod", name=name, namespace=namespace, node=node,
                         ip=ip, command=command)

    def remove_pod(self, name: str, namespace: str = "default") -> None:
        self.call("remove_pod", name=name, namespace=namespace)


def record_to_json(record) -> dict:
    return asdict(record)
