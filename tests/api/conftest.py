"""Fixtures for the API server tests: an in-process ApiServer on loopback and the real kubectl."""

from __future__ import annotations

import copy
import os
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from base.kube.client import KubeClient
from controlplane.api import ApiServer
from support import controller_harness as harness
from support.fake_streams import FakePodStreams

REPO = Path(__file__).resolve().parents[2]
KUBECTL = REPO / ".venv" / "bin" / "kubectl"

CLUSTER_INFO = harness.cluster_info()    # the seed's 3-node cluster


@pytest.fixture
def cluster_info() -> dict:
    return copy.deepcopy(CLUSTER_INFO)


def loopback_listener() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    return sock


@dataclass
class Kubectl:
    """Runs the bundled kubectl against one server with its own discovery cache."""

    kubeconfig: Path
    cache_dir: Path
    cwd: Path

    def argv(self, *args: str) -> list[str]:
        return [str(KUBECTL), "--kubeconfig", str(self.kubeconfig),
                "--cache-dir", str(self.cache_dir), *args]

    def env(self) -> dict:
        return {**os.environ, "KUBECACHEDIR": str(self.cache_dir), "HOME": str(self.cwd)}

    def run(self, *args: str, stdin: str | None = None,
            timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv(*args), input=stdin, capture_output=True, text=True,
                              timeout=timeout, cwd=self.cwd, env=self.env())

    def __call__(self, *args: str, stdin: str | None = None) -> str:
        """Run and return stdout; fail the test with kubectl's stderr on a non-zero exit."""
        proc = self.run(*args, stdin=stdin)
        assert proc.returncode == 0, f"kubectl {' '.join(args)} failed:\n{proc.stderr}"
        return proc.stdout


def _start(tmp_path: Path) -> ApiServer:
    server = ApiServer(tmp_path / "state", CLUSTER_INFO, node_grace_period=None, seed=1)
    server.add_listener(loopback_listener())
    return server.start()


@pytest.fixture
def api_server(tmp_path):
    server = _start(tmp_path)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def kubectl(api_server, tmp_path) -> Kubectl:
    return Kubectl(api_server.kubeconfig_path, tmp_path / "kube-cache", tmp_path)


@pytest.fixture
def make_server(tmp_path):
    """Start servers with custom options; returns (server, kubectl). All are stopped afterwards."""
    started = []

    def start(**options) -> tuple[ApiServer, Kubectl]:
        state = tmp_path / f"state{len(started)}"
        server = ApiServer(state, copy.deepcopy(CLUSTER_INFO), **{"seed": 1, **options})
        started.append(server)
        server.add_listener(loopback_listener())
        server.start()
        return server, Kubectl(server.kubeconfig_path, state / "kube-cache", tmp_path)
    try:
        yield start
    finally:
        for server in started:
            server.stop()


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("api")
    server = _start(tmp)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def shared_kubectl(shared_server, tmp_path_factory) -> Kubectl:
    tmp = tmp_path_factory.mktemp("kubectl")
    return Kubectl(shared_server.kubeconfig_path, tmp / "kube-cache", tmp)


@pytest.fixture
def client(api_server) -> KubeClient:
    """An admin API client of the per-test server."""
    return KubeClient.from_kubeconfig(str(api_server.kubeconfig_path))


@pytest.fixture
def fake(api_server, tmp_path):
    """The per-test server's node side: FakePodStreams (local processes, no root)."""
    streams = FakePodStreams(tmp_path / "pods")
    api_server.pod_streams = streams
    yield streams
    streams.close()
