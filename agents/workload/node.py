"""`python -m agents.workload.node --control PATH`: one workload server for a node's pods.

Every pod that runs the built-in workload server used to be a Python process
of its own (~13 MB each).  This server serves all of a node's such pods from
one asyncio loop: a socket keeps the network namespace it was created in,
so each pod's listeners are made by a short thread that entered the pod's
namespace (setns), and then served here like any other socket.  Per pod
everything stays as the single server did it: the pod's name and address in
the answers, its grace period on SIGTERM, its readiness, its access log
(written to a pipe of its own that the lab reads into the pod's log).

The lab daemon (topo/workload_host.py) talks to it over a Unix SOCK_SEQPACKET
socket at PATH, one JSON message per packet:

  -> {"op": "serve", "id": N, "netns": "/proc/TID/ns/net", "root": "/proc/TID/root",
      "args": [the `python -m agents.workload` arguments]}   with the log's fd attached
  <- {"id": N, "ok": true, "ports": ["80/TCP"]}   or   {"id": N, "ok": false,
      "code": 1 | 2, "error": "..."}
  -> {"op": "signal", "id": N, "signal": 15}      (15, 2: terminate; anything else: kill)
  <- {"event": "exited", "id": N, "code": 0 | 128+signal}

When the daemon's connection closes, every pod it served stops at once.
Exit codes: 0 once the connection ends, 2 bad usage.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import resource
import signal
import socket
import sys
import threading

from agents.workload.__main__ import config_from_args
from agents.workload.config import PortSpec, WorkloadConfig, WorkloadConfigError, WorkloadError
from agents.workload.server import AccessLog, WorkloadServer
from base.setns import setns

MAX_MESSAGE = 64 * 1024
TERMINATE = (signal.SIGTERM, signal.SIGINT)
IGNORED = (signal.SIGCHLD, signal.SIGWINCH, signal.SIGURG, signal.SIGCONT)


def open_listeners(netns: str, config: WorkloadConfig) -> list[socket.socket]:
    """The config's sockets, bound (TCP: listening) inside the network namespace at
    netns, made by a throwaway thread that entered it (the loop's thread stays)."""
    result: dict = {}

    def make() -> None:
        fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
        try:
            setns(fd, "net")
        finally:
            os.close(fd)
        made: list[socket.socket] = []
        try:
            for spec in config.ports:
                made.append(_bind(spec, config))
        except BaseException:
            for sock in made:
                sock.close()
            raise
        result["sockets"] = made

    def run() -> None:
        try:
            make()
        except BaseException as err:   # handed to the caller below
            result["error"] = err

    thread = threading.Thread(target=run, name="listen-in-pod", daemon=True)
    thread.start()
    thread.join(10.0)
    if "error" in result:
        raise result["error"]
    if "sockets" not in result:
        raise OSError(f"no answer from the pod's namespace {netns} in 10 s")
    return result["sockets"]


def _bind(spec: PortSpec, config: WorkloadConfig) -> socket.socket:
    kind = socket.SOCK_STREAM if spec.protocol == "TCP" else socket.SOCK_DGRAM
    sock = socket.socket(socket.AF_INET, kind)
    try:
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((config.bind_ip, spec.port))
        except OSError as error:
            raise WorkloadError(f"cannot listen on {config.bind_ip} {spec}: {error}") from error
        if kind == socket.SOCK_STREAM:
            sock.listen(config.backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class PodServing:
    """One pod's server inside the node's loop."""

    def __init__(self, ident: int, server: WorkloadServer, log: AccessLog, log_fd: int):
        self.ident = ident
        self.server = server
        self.log = log
        self.log_fd = log_fd
        self.code = 0
        self.task: asyncio.Task | None = None

    def signal(self, signum: int) -> None:
        if signum in TERMINATE:
            self.server.terminate()
        elif signum not in IGNORED:
            self.code = 128 + signum
            self.server.kill()


class NodeWorkloadServer:
    """Serves pods on request over one control connection (see the module's doc)."""

    def __init__(self, control: socket.socket):
        self.control = control
        self.pods: dict[int, PodServing] = {}
        self._closed: asyncio.Event | None = None

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self._closed = asyncio.Event()
        self.control.setblocking(False)
        loop.add_reader(self.control.fileno(), self._on_control)
        try:
            await self._closed.wait()
        finally:
            loop.remove_reader(self.control.fileno())
            for pod in list(self.pods.values()):
                pod.signal(signal.SIGKILL)
            tasks = [p.task for p in self.pods.values() if p.task is not None]
            if tasks:
                await asyncio.wait(tasks, timeout=2.0)

    def _on_control(self) -> None:
        try:
            data, fds, _, _ = socket.recv_fds(self.control, MAX_MESSAGE, 4)
        except BlockingIOError:
            return
        except OSError:
            data, fds = b"", []
        if not data:
            for fd in fds:
                os.close(fd)
            self._closed.set()
            return
        try:
            message = json.loads(data)
        except ValueError:
            for fd in fds:
                os.close(fd)
            return
        if message.get("op") == "serve":
            asyncio.get_running_loop().create_task(self._serve(message, fds))
        else:
            for fd in fds:
                os.close(fd)
            pod = self.pods.get(message.get("id"))
            if pod is not None and message.get("op") == "signal":
                pod.signal(int(message.get("signal", signal.SIGTERM)))

    def _send(self, message: dict) -> None:
        try:
            self.control.setblocking(True)
            self.control.send(json.dumps(message).encode())
        except OSError:
            self._closed.set()
        finally:
            with contextlib.suppress(OSError):
                self.control.setblocking(False)

    async def _serve(self, message: dict, fds: list[int]) -> None:
        ident = message.get("id")
        log_fd = fds[0] if fds else os.open(os.devnull, os.O_WRONLY)
        for extra in fds[1:]:
            os.close(extra)
        try:
            config = config_from_args(list(message.get("args") or []))
            if config.ready_file and message.get("root"):
                config = _with_ready_file(config, message["root"] + config.ready_file)
            listeners = open_listeners(message["netns"], config)
        except WorkloadConfigError as error:
            return self._refuse(ident, log_fd, 2, str(error))
        except SystemExit:      # argparse refused the arguments (it printed why)
            return self._refuse(ident, log_fd, 2, "bad arguments: "
                                + " ".join(message.get("args") or []))
        except (WorkloadError, OSError, KeyError) as error:
            return self._refuse(ident, log_fd, 1, str(error))
        log = AccessLog(log_fd)
        server = WorkloadServer(config, log=log, listeners=listeners)
        try:
            await server.start()
        except WorkloadError as error:
            for sock in listeners:
                sock.close()
            return self._refuse(ident, log_fd, 1, str(error))
        pod = self.pods[ident] = PodServing(ident, server, log, log_fd)
        log.open(json.dumps({"event": "listening", "pod": config.pod_name,
                             "ports": [f"{port}/{proto}" for proto, port in server.bound_ports]})
                 + "\n")
        self._send({"id": ident, "ok": True,
                    "ports": [f"{port}/{proto}" for proto, port in server.bound_ports]})
        pod.task = asyncio.current_task()
        try:
            await server.serve_until_terminated()
        finally:
            self.pods.pop(ident, None)
            os.close(log_fd)
            self._send({"event": "exited", "id": ident, "code": pod.code})

    def _refuse(self, ident, log_fd: int, code: int, error: str) -> None:
        with contextlib.suppress(OSError):
            os.write(log_fd, f"error: {error}\n".encode())
        os.close(log_fd)
        self._send({"id": ident, "ok": False, "code": code, "error": error})


def _with_ready_file(config: WorkloadConfig, path: str) -> WorkloadConfig:
    """The pod's --ready-file, seen through the pod's root (the loop lives in the node's)."""
    return dataclasses.replace(config, ready_file=path)


def serve_control(path: str) -> None:
    """Listen at path, serve the first connection until it closes."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    listener.bind(path)
    os.chmod(path, 0o600)
    listener.listen(1)
    try:
        control, _ = listener.accept()
    finally:
        listener.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    with control:
        asyncio.run(NodeWorkloadServer(control).run())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agents.workload.node",
                                     description="svclab workload server for a node's pods")
    parser.add_argument("--control", required=True, help="Unix socket path to listen on")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)    # 2-3 descriptors per pod
    wanted = 1 << 16 if hard == resource.RLIM_INFINITY else hard
    if wanted > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    serve_control(args.control)
    return 0


if __name__ == "__main__":
    sys.exit(main())
