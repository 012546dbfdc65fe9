"""Unit-tier fixtures: an in-process API server on loopback (no root)."""
from __future__ import annotations

import socket

import pytest

from base.kube.client import KubeClient
from controlplane.api import ApiServer

ONE_NODE = {"serviceCIDR": "10.96.0.0/12", "nodePortRange": "30000-32767",
            "podCIDR": "192.168.0.0/16", "clusterDomain": "cluster.local",
            "controlPlaneEndpoint": {"ip": "172.31.0.10", "port": 6443},
            "nodes": [{"name": "n1", "role": "control-plane", "internalIP": "172.31.0.11",
                       "externalIP": "198.51.100.11", "podCIDR": "192.168.1.0/24"}]}


@pytest.fixture
def api_client(tmp_path):
    """A KubeClient (admin) to a fresh one-node API server on 127.0.0.1."""
    server = ApiServer(tmp_path / "api", ONE_NODE, node_grace_period=None, seed=1)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    server.add_listener(sock)
    with server.start():
        yield KubeClient.from_kubeconfig(str(server.kubeconfig_path))
