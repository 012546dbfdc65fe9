"""kube-proxy's iptables chain names, computed exactly as kube-proxy does.

Chain names must be at most 28 characters, so kube-proxy hashes the service
port name ("ns/svc:port", or "ns/svc" for an unnamed port) plus the lower-case
protocol (plus "ip:port" for endpoint chains) with SHA-256, encodes it in
base32 and keeps 16 characters (servicePortChainName and
servicePortEndpointChainName in pkg/proxy/iptables/proxier.go).  Using the
same names means what a user sees in svclab matches a real node.
"""

from __future__ import annotations

import base64
import functools
import hashlib

CLUSTER_PREFIX = "KUBE-SVC-"
LOCAL_PREFIX = "KUBE-SVL-"
EXTERNAL_PREFIX = "KUBE-EXT-"
FIREWALL_PREFIX = "KUBE-FW-"
ENDPOINT_PREFIX = "KUBE-SEP-"
# Older kube-proxy versions used KUBE-XLB-; still ours when found stale.
SERVICE_CHAIN_PREFIXES = (CLUSTER_PREFIX, LOCAL_PREFIX, EXTERNAL_PREFIX,
                          FIREWALL_PREFIX, ENDPOINT_PREFIX, "KUBE-XLB-")


@functools.lru_cache(maxsize=1 << 16)
def _hash16(text: str) -> str:
    # Remembered: a sync names every endpoint's chain again, and base64's
    # base32 is written in Python (a thousand endpoints, six proxies, each sync).
    digest = hashlib.sha256(text.encode()).digest()
    return base64.b32encode(digest).decode()[:16]


def port_proto_hash(port_name: str, protocol: str) -> str:
    """16-char hash of a service port name and protocol (any case)."""
    return _hash16(port_name + protocol.lower())


def cluster_chain(port_name: str, protocol: str) -> str:
    return CLUSTER_PREFIX + port_proto_hash(port_name, protocol)


def local_chain(port_name: str, protocol: str) -> str:
    return LOCAL_PREFIX + port_proto_hash(port_name, protocol)


def external_chain(port_name: str, protocol: str) -> str:
    return EXTERNAL_PREFIX + port_proto_hash(port_name, protocol)


def firewall_chain(port_name: str, protocol: str) -> str:
    return FIREWALL_PREFIX + port_proto_hash(port_name, protocol)


def endpoint_chain(port_name: str, protocol: str, endpoint: str) -> str:
    """KUBE-SEP- name for an endpoint given as "ip:port"."""
    return ENDPOINT_PREFIX + _hash16(port_name + protocol.lower() + endpoint)


def is_service_chain(chain: str) -> bool:
    """True for per-service chains that a sync creates and may delete."""
    return chain.startswith(SERVICE_CHAIN_PREFIXES)
