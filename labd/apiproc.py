"""The lab's API server in a process of its own, with its controllers and scheduler.

A cluster runs kube-apiserver, kube-controller-manager and kube-scheduler
apart from the kubelets.  svclab's daemon holds the network, the pods and
the kubelets; this process holds the API server and, beside it, the
controllers and the scheduler, which call it in process (no TLS or HTTP, as
before).  Two interpreters instead of one: a thousand pods starting kept
one interpreter's lock busy all the time (docs/pod-sandbox.md, "Two
processes").

The daemon (`ApiProcess`, a context manager) creates the listening sockets
(the host's loopback, and :6443 inside the control-plane node) and hands
them to the child, with one end of a SOCK_SEQPACKET pair (base/msgwire.py)
on which it asks what only the API server can do: mint a token, write a
kubeconfig with it, register a joining node, and stop.  The API server
reaches the kubelets' streaming endpoint (exec, attach, port-forward, logs)
on the daemon's Unix socket (labd/podstreams.py).

The child ends when that pair closes, so a daemon killed with -9 takes it
along; its PID is in the state file, and `svclab clean` stops it as well.

    python -m labd.apiproc NAME --control-fd FD --listen-fd FD [--listen-fd FD]

It reads the lab's spec from the lab's folder, as the daemon does (the
node monitor's grace period, the lab's clock).
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from base.errors import LabError, LabTimeout
from base.msgwire import close_fds, recv_message, send_message
from controlplane.api.server import ApiServer
from controlplane.control_plane import ControlPlane
from controlplane.identities import KUBE_CONTROLLER_MANAGER, KUBE_SCHEDULER
from labd.credentials import in_process_client
from labd.podstreams import RemotePodStreams
from topo.apihost import cluster_info
from topo.netns import started_at
from topo.spec import load_spec
from topo.state import LabPaths

log = logging.getLogger("svclab.apiproc")
START_TIMEOUT = 60.0
CALL_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0


def streams_socket(paths: LabPaths) -> Path:
    """The kubelets' streaming endpoint in the lab's folder."""
    return paths.root / "kubelet-streams.sock"


# --- the daemon's side -------------------------------------------------------------------

class ApiProcess:
    """Starts the API server's process and speaks for it in the daemon.

    It answers what the daemon's components asked the in-process server:
    `addresses`, `ca_pem`, `mint_token`, `write_kubeconfig`, `register_node`."""

    def __init__(self, paths: LabPaths, listeners: list[socket.socket]):
        self.paths = paths
        self.listeners = listeners
        self.addresses: list[str] = []
        self.ca_pem = b""
        self.popen: subprocess.Popen | None = None
        self._conn: socket.socket | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> ApiProcess:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        fds = [theirs.fileno()] + [s.fileno() for s in self.listeners]
        argv = [sys.executable, "-m", "labd.apiproc", self.paths.name,
                "--control-fd", str(theirs.fileno())]
        for sock in self.listeners:
            argv += ["--listen-fd", str(sock.fileno())]
        try:
            with open(self.paths.log, "ab") as logfile:
                self.popen = subprocess.Popen(argv, pass_fds=fds, stdin=subprocess.DEVNULL,
                                              stdout=logfile, stderr=subprocess.STDOUT)
        finally:
            theirs.close()
            for sock in self.listeners:        # the child serves them now
                sock.close()
        self._conn = ours
        try:
            ready = self._call({"op": "hello"}, START_TIMEOUT)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        self.addresses = list(ready["addresses"])
        self.ca_pem = ready["ca"].encode()
        return self

    @property
    def pid(self) -> int:
        return self.popen.pid if self.popen else 0

    @property
    def start_time(self) -> int:
        return started_at(self.pid) if self.pid else 0

    def mint_token(self, user: str, groups: tuple[str, ...] = ()) -> str:
        return self._call({"op": "mint_token", "user": user, "groups": list(groups)})["token"]

    def write_kubeconfig(self, path: Path, server_url: str, *, token: str | None = None,
                         user: str = "kubernetes-admin") -> Path:
        self._call({"op": "write_kubeconfig", "path": str(path), "server": server_url,
                    "token": token, "user": user})
        return Path(path)

    def register_node(self, info: dict) -> dict:
        return self._call({"op": "register_node", "info": info})["node"]

    def _call(self, request: dict, timeout: float = CALL_TIMEOUT) -> dict:
        with self._lock:
            if self._conn is None:
                raise LabError("the API server's process is not running")
            self._conn.settimeout(timeout)
            try:
                send_message(self._conn, request)
                answer, fds = recv_message(self._conn)
            except TimeoutError as err:
                raise LabTimeout(f"the API server's process did not answer {request['op']} "
                                 f"within {timeout:.0f} s; see the lab log") from err
            except OSError as err:
                raise LabError(f"the API server's process: {err}") from err
        close_fds(fds)
        if answer is None:
            code = self.popen.poll() if self.popen else None
            raise LabError(f"the API server's process ended (exit code {code}); "
                           "see the lab log")
        if answer.get("error"):
            raise LabError(f"the API server's process: {request['op']}: {answer['error']}")
        return answer

    def __exit__(self, *exc) -> None:
        """Ask it to stop (its watches end, its controllers stop), then wait; kill it
        if it does not go."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()                      # its end of the pair closes: it stops
        if self.popen is None:
            return
        try:
            self.popen.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            log.warning("the API server's process did not stop in %.0f s; killing it",
                        STOP_TIMEOUT)
            self.popen.kill()
            self.popen.wait(STOP_TIMEOUT)


# --- the API server's process ------------------------------------------------------------

def serve(paths: LabPaths, control: socket.socket, listen_fds: list[int]) -> int:
    spec = load_spec(paths.spec)
    with ApiServer(paths.api, cluster_info(spec),
                   node_grace_period=spec.node_monitor_grace_period) as api:
        for fd in listen_fds:
            api.add_listener(socket.socket(fileno=fd))
        api.pod_streams = RemotePodStreams(streams_socket(paths))
        api.start()
        # kube-controller-manager and kube-scheduler, each as its own identity
        controllers = ControlPlane(in_process_client(api, KUBE_CONTROLLER_MANAGER), None, [],
                                   scheduler_client=in_process_client(api, KUBE_SCHEDULER),
                                   time_factor=spec.time_factor)
        with controllers:
            _answer_daemon(api, control)
    return 0


def _answer_daemon(api: ApiServer, control: socket.socket) -> None:
    """Answer the daemon until it closes its end."""
    while True:
        request, fds = recv_message(control)
        close_fds(fds)
        if request is None:
            log.info("the daemon closed its end: stopping")
            return
        try:
            answer = _handle(api, request)
        except Exception as err:      # the daemon sees it as a LabError; we serve on
            log.exception("apiproc: %s failed", request.get("op"))
            answer = {"error": f"{type(err).__name__}: {err}"}
        send_message(control, answer)


def _handle(api: ApiServer, request: dict) -> dict:
    op = request["op"]
    if op == "hello":
        return {"addresses": api.addresses, "ca": api.ca_pem.decode()}
    if op == "mint_token":
        return {"token": api.mint_token(request["user"], tuple(request["groups"]))}
    if op == "write_kubeconfig":
        api.write_kubeconfig(Path(request["path"]), request["server"],
                             token=request.get("token"), user=request["user"])
        return {}
    if op == "register_node":
        return {"node": api.register_node(request["info"])}
    raise ValueError(f"unknown request {op!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labd.apiproc")
    parser.add_argument("name")
    parser.add_argument("--control-fd", type=int, required=True)
    parser.add_argument("--listen-fd", type=int, action="append", default=[])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s apiserver %(name)s %(levelname)s %(message)s")
    # The daemon stops it by closing the pair; a terminal's ^C is the daemon's to handle.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    control = socket.socket(fileno=args.control_fd)
    started = time.monotonic()
    try:
        return serve(LabPaths(args.name), control, args.listen_fd)
    except Exception:
        log.exception("the API server's process failed")
        return 1
    finally:
        log.info("the API server's process ends after %.0f s (pid %d)",
                 time.monotonic() - started, os.getpid())


if __name__ == "__main__":
    sys.exit(main())
