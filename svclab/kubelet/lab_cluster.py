"""A real lab with the API server and the control plane, in this process (root).

    with LabCluster() as cluster:
        subprocess.run([kubectl, "--kubeconfig", cluster.kubeconfig, "get", "po"])

Wired the way the lab daemon wires them (Lab, then ApiServer, then
ControlPlane over LabPodRuntime), but without the daemon: for the workload
end-to-end tests and benchmarks until the daemon embeds the control plane.
The lab lives under a private SVCLAB_RUN_DIR that is removed afterwards.
"""
from __future__ import annotations

import os
import shutil
import socket
import tempfile
import uuid
from pathlib import Path

from svclab.api import ApiServer
from svclab.controlplane import ControlPlane
from svclab.kube.client import KubeClient
from svclab.kubelet.runtime import LabPodRuntime
from svclab.errors import LabTimeout


class LabCluster:
    def __init__(self, spec_path: str | None = None, prefix: str = "wl"):
        self.spec_path = spec_path
        self.name = f"{prefix}-{uuid.uuid4().hex[:6]}"
        self.lab = None
        self.api: ApiServer | None = None
        self.client: KubeClient | None = None
        self.plane: ControlPlane | None = None
        self._run_dir = ""
        self._old_run_dir: str | None = None
        self._exits: list = []

    @property
    def kubeconfig(self) -> Path:
        return self.api.kubeconfig_path

    def __enter__(self) -> "LabCluster":
        from mininet.log import setLogLevel
        from topo.apihost import cluster_info
        from topo.lab import Lab
        from topo.netns import ProcRef
        from topo.spec import load_spec
        from topo.state import LabPaths, LabState
        setLogLevel("error")
        self._run_dir = tempfile.mkdtemp(prefix="svclab-run-")
        self._old_run_dir = os.environ.get("SVCLAB_RUN_DIR")
        os.environ["SVCLAB_RUN_DIR"] = self._run_dir
        try:
            spec = load_spec(self.spec_path)
            paths = LabPaths(self.name)
            paths.root.mkdir(parents=True)
            me = ProcRef.of(os.getpid())
            state = LabState(name=self.name, daemon_pid=me.pid, daemon_start=me.start)
            self.lab = self._enter(Lab(spec, paths, state))
            self.api = self._enter(ApiServer(paths.root / "api", cluster_info(spec),
                                             node_grace_period=None))
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sock.listen(128)
            self.api.add_listener(sock)
            self.api.start()
            self.client = KubeClient.from_kubeconfig(str(self.api.kubeconfig_path))
            self.plane = self._enter(ControlPlane(self.client, LabPodRuntime(self.lab),
                                                  [n.name for n in spec.nodes]))
            if not self.plane.wait_synced(10.0):
                raise LabTimeout("control plane informers did not sync in 10 s")
        except BaseException:
            self.__exit__()
            raise
        return self

    def _enter(self, manager):
        value = manager.__enter__()
        self._exits.append(manager)
        return value

    def __exit__(self, *exc) -> None:
        while self._exits:
            self._exits.pop().__exit__(None, None, None)
        if self._old_run_dir is None:
            os.environ.pop("SVCLAB_RUN_DIR", None)
        else:
            os.environ["SVCLAB_RUN_DIR"] = self._old_run_dir
        if self._run_dir:
            shutil.rmtree(self._run_dir, ignore_errors=True)
