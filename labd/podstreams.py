"""The kubelets' streaming endpoint, between the lab daemon and the API server's process.

kube-apiserver does not run `kubectl exec`, `attach`, `port-forward` or
`logs` itself: it proxies each to the pod's kubelet, whose streaming server
asks the container runtime.  In svclab the kubelets and the runtime live in
the lab daemon and the API server in a process of its own (labd/apiproc.py),
so the daemon serves its runtime's `base.cri.PodStreams` on a Unix socket in
the lab's folder (`PodStreamServer`) and the API server calls it through
`RemotePodStreams`, which is a `PodStreams` too.

The streams' bytes never pass through here.  The daemon starts the exec (or
joins the console, or connects the port inside the pod) and hands the file
descriptors over (SCM_RIGHTS); the API server reads and writes them as it
did when both ran in one process.  What crosses the socket (SOCK_SEQPACKET)
is one JSON message per call and one per answer (base/msgwire.py):

    {"op": "exec", "namespace", "pod", "container", "argv", "stdin", "tty"}
    {"op": "attach", "namespace", "pod", "container", "stdin", "tty"}
    {"op": "dial", "namespace", "pod", "port", "timeout"}
    {"op": "log_path", "namespace", "pod", "container", "previous"}

An exec or attach keeps its connection as the session's control:
`resize`, `close_stdin`, `wait` (with a timeout) and `kill` are messages on it,
and the daemon kills the session if the API server's side goes away.  A
refusal is `{"error": {"reason", "message"}}`, raised again as the same
`StreamTargetError`.
"""
from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from pathlib import Path

from base.cri import PodStreams, StreamTargetError
from base.msgwire import close_fds as _close
from base.msgwire import recv_message, send_message

log = logging.getLogger("svclab.podstreams")
WAIT_SLICE = 0.2          # a session's wait(None) asks in slices, so kill() is never held up
CALL_TIMEOUT = 30.0       # a call that is not a session's wait


# --- the daemon's side -----------------------------------------------------------

class PodStreamServer:
    """Serves `streams` (the lab's pod runtime) on a Unix socket; a context manager."""

    def __init__(self, streams: PodStreams, path: Path):
        self.streams = streams
        self.path = Path(path)
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def __enter__(self) -> PodStreamServer:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        listener.bind(str(self.path))
        os.chmod(self.path, 0o600)
        listener.listen(64)
        self._listener = listener
        self._thread = threading.Thread(target=self._accept, daemon=True,
                                        name="pod-streams")
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stopping.set()
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
        if self._thread is not None:
            self._thread.join(5.0)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True,
                             name="pod-stream").start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                request, fds = recv_message(conn)
                _close(fds)
                if request is None:
                    return
                self._answer(conn, request)
            except StreamTargetError as err:
                send_message(conn, {"error": {"reason": err.reason, "message": err.message}})
            except (OSError, ValueError, KeyError, TypeError) as err:
                log.warning("pod streams: %s", err)
                with contextlib.suppress(OSError):
                    send_message(conn, {"error": {"reason": "InternalError", "message": str(err)}})

    def _answer(self, conn: socket.socket, request: dict) -> None:
        op = request["op"]
        where = (request["namespace"], request["pod"])
        if op == "log_path":
            path = self.streams.log_path(*where, request["container"],
                                         bool(request.get("previous")))
            send_message(conn, {"path": path})
        elif op == "dial":
            sock = self.streams.dial(*where, int(request["port"]), float(request["timeout"]))
            with sock:
                send_message(conn, {"ok": True}, [sock.fileno()])
        elif op in ("exec", "attach"):
            flags = {"stdin": bool(request["stdin"]), "tty": bool(request["tty"])}
            session = (self.streams.exec(*where, request["container"], list(request["argv"]),
                                         **flags)
                       if op == "exec" else
                       self.streams.attach(*where, request["container"], **flags))
            self._session(conn, session)
        else:
            raise StreamTargetError("BadRequest", f"pod streams: unknown op {op!r}")

    def _session(self, conn: socket.socket, session) -> None:
        """Hand over the session's descriptors, then obey its control messages."""
        try:
            names = [n for n in ("stdin", "stdout", "stderr") if getattr(session, n) is not None]
            send_message(conn, {"streams": names}, [getattr(session, n) for n in names])
            while True:
                request, fds = recv_message(conn)
                _close(fds)
                if request is None:
                    return                     # the API server's side is gone
                op = request["op"]
                if op == "wait":
                    send_message(conn, {"code": session.wait(float(request["timeout"]))})
                elif op == "resize":
                    session.resize(int(request["width"]), int(request["height"]))
                    send_message(conn, {"ok": True})
                elif op == "close_stdin":
                    session.close_stdin()
                    send_message(conn, {"ok": True})
                elif op == "kill":
                    session.kill()
                    session = None
                    send_message(conn, {"ok": True})
                    return
                else:
                    raise ValueError(f"pod streams: unknown session op {op!r}")
        finally:
            if session is not None:
                session.kill()


# --- the API server's side ---------------------------------------------------------

class RemotePodStreams:
    """`base.cri.PodStreams` of the daemon at `path` (the API server's pod_streams)."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def exec(self, namespace: str, pod: str, container: str, argv: list[str], *,
             stdin: bool, tty: bool) -> RemoteSession:
        return self._session({"op": "exec", "namespace": namespace, "pod": pod,
                              "container": container, "argv": list(argv),
                              "stdin": stdin, "tty": tty})

    def attach(self, namespace: str, pod: str, container: str, *,
               stdin: bool, tty: bool) -> RemoteSession:
        return self._session({"op": "attach", "namespace": namespace, "pod": pod,
                              "container": container, "stdin": stdin, "tty": tty})

    def dial(self, namespace: str, pod: str, port: int, timeout: float) -> socket.socket:
        with self._connect(timeout + CALL_TIMEOUT) as conn:
            answer, fds = self._call(conn, {"op": "dial", "namespace": namespace, "pod": pod,
                                            "port": port, "timeout": timeout})
        if len(fds) != 1:
            _close(fds)
            raise StreamTargetError("InternalError", f"pod streams: dial answered {answer}")
        return socket.socket(fileno=fds[0])

    def log_path(self, namespace: str, pod: str, container: str,
                 previous: bool = False) -> str | None:
        with self._connect(CALL_TIMEOUT) as conn:
            answer, fds = self._call(conn, {"op": "log_path", "namespace": namespace,
                                            "pod": pod, "container": container,
                                            "previous": previous})
        _close(fds)
        return answer.get("path")

    def _session(self, request: dict) -> RemoteSession:
        conn = self._connect(CALL_TIMEOUT)
        try:
            answer, fds = self._call(conn, request)
            names = answer.get("streams") or []
            if len(fds) != len(names):
                _close(fds)
                raise StreamTargetError("InternalError",
                                        f"pod streams: {len(fds)} descriptors for {names}")
            conn.settimeout(None)
            return RemoteSession(conn, dict(zip(names, fds)))
        except BaseException:
            conn.close()
            raise

    def _connect(self, timeout: float) -> socket.socket:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        conn.settimeout(timeout)
        try:
            conn.connect(str(self.path))
        except OSError as err:
            conn.close()
            raise StreamTargetError("InternalError", f"the node's kubelet is not reachable "
                                    f"({self.path}: {err.strerror or err})") from err
        return conn

    @staticmethod
    def _call(conn: socket.socket, request: dict) -> tuple[dict, list[int]]:
        send_message(conn, request)
        answer, fds = recv_message(conn)
        if answer is None:
            raise StreamTargetError("InternalError", "the node's kubelet closed the stream")
        if "error" in answer:
            _close(fds)
            raise StreamTargetError(answer["error"]["reason"], answer["error"]["message"])
        return answer, fds


class RemoteSession:
    """A `base.cri.ExecSession` whose process the daemon holds: the descriptors
    are ours, the rest is asked over the session's connection."""

    def __init__(self, conn: socket.socket, fds: dict[str, int]):
        self._conn = conn
        self._lock = threading.Lock()
        self.stdin: int | None = fds.get("stdin")
        self.stdout: int | None = fds.get("stdout")
        self.stderr: int | None = fds.get("stderr")
        self._code: int | None = None

    def _ask(self, request: dict) -> dict:
        with self._lock:
            if self._conn is None:
                raise OSError("the exec session has ended")
            send_message(self._conn, request)
            answer, fds = recv_message(self._conn)
        _close(fds)
        if answer is None:
            raise OSError("the node's kubelet ended the exec session")
        return answer

    def resize(self, width: int, height: int) -> None:
        with contextlib.suppress(OSError):
            self._ask({"op": "resize", "width": width, "height": height})

    def close_stdin(self) -> None:
        fd, self.stdin = self.stdin, None
        if fd is None:
            return
        _close([fd])                 # ours first: a pipe ends when every copy is closed
        with contextlib.suppress(OSError):
            self._ask({"op": "close_stdin"})

    def wait(self, timeout: float | None = None) -> int | None:
        if self._code is not None:
            return self._code
        while True:
            step = WAIT_SLICE if timeout is None else min(timeout, CALL_TIMEOUT)
            try:
                code = self._ask({"op": "wait", "timeout": step}).get("code")
            except OSError:
                return None
            if code is not None:
                self._code = code
                return code
            if timeout is not None:
                return None

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self._ask({"op": "kill"})
        with self._lock:
            conn, self._conn = self._conn, None
            fds = (self.stdin, self.stdout, self.stderr)
            self.stdin = self.stdout = self.stderr = None
        _close(fds)
        if conn is not None:
            conn.close()
