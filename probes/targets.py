"""What a probe's --to means: addresses, Services, nodes and public names.

    10.96.0.10:53          an address and port
    svc/web[:80|:http]     a Service's ClusterIP and port (namespace from -n)
    ip-172-31-0-11:30080   a node's (private) address, e.g. for a NodePort
    db.example.com:5432    a name the lab's public DNS knows (outside hosts, ELBs)
    http://HOST[:PORT]/PATH   an HTTP request: HOST in any form above (an ALB's
                           DNS name, typically), its path, and the Host header
                           curl would send (or --host-header's)

Resolution reads the lab: its spec, its API and its public DNS records; it
never asks a resolver outside the lab.
"""
from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from urllib.parse import urlsplit

from base.errors import UsageError
from base.kube.client import ApiError, KubeClient
from probes.reach import Probe
from probes.runner import parse_target
from topo.spec import load_spec
from topo.state import LabPaths

FORMS = ("ADDRESS:PORT", "svc/NAME[:PORT]", "NODE:PORT", "PUBLIC-NAME:PORT",
         "http://HOST[:PORT]/PATH")
_HOST_HEADER_BAD = set(" \t\r\n/?#@")


@dataclass(frozen=True)
class HttpTarget:
    """An HTTP request's destination: where to connect, and what to ask there."""

    url: str                    # as shown to the user: http://HOST[:PORT]/PATH
    address: str                # the IPv4 address connected to
    port: int
    host: str                   # the Host header sent
    path: str                   # path and query asked (starts with /)

    def to_json(self) -> dict:
        return {"url": self.url, "address": self.address, "port": self.port,
                "host": self.host, "path": self.path}


def is_url(text: str) -> bool:
    return text.lower().startswith(("http://", "https://"))


def resolve_http_target(lab: str, text: str, host_header: str | None = None,
                        namespace: str | None = None) -> HttpTarget:
    """A URL, or any other --to form asked over HTTP (path /), as an HttpTarget.

    The Host header is host_header when given, else the URL's host (with its
    port when not 80), as curl sends it; for the other forms the name typed
    (an address when an address was typed)."""
    if host_header is not None:
        check_host_header(host_header)
    if not is_url(text):
        probe = resolve_target(lab, text, "tcp", namespace)
        typed = _split(text, "tcp")[0]
        host = host_header or (probe.dst if typed.startswith("svc/") else typed)
        return HttpTarget(f"http://{host}:{probe.port}/", probe.dst, probe.port, host, "/")
    url = urlsplit(text)
    if url.scheme.lower() != "http":
        raise UsageError(f"--to: {text!r}: only http:// URLs are followed (the ALB's HTTP "
                         "listeners); for HTTPS use curl from the host")
    try:
        port = url.port or 80
    except ValueError as err:
        raise UsageError(f"--to: {text!r}: the port is not 1-65535") from err
    if not url.hostname or url.username or url.password:
        raise UsageError(f"--to: {text!r} is not http://HOST[:PORT]/PATH")
    address = _address(lab, url.hostname, text)
    path = (url.path or "/") + (f"?{url.query}" if url.query else "")
    host = host_header or (url.hostname if port == 80 else f"{url.hostname}:{port}")
    return HttpTarget(text, address, port, host, path)


def check_host_header(value: str) -> str:
    """--host-header: a host name or address, optionally with :PORT (no spaces, paths)."""
    if not value or set(value) & _HOST_HEADER_BAD or not value.isascii():
        raise UsageError(f"--host-header: {value!r} is not HOST[:PORT] "
                         "(e.g. shop.example.com)")
    return value


def resolve_target(lab: str, text: str, proto: str = "tcp",
                   namespace: str | None = None) -> Probe:
    host, port = _split(text, proto)
    if host.startswith("svc/"):
        return _service(lab, host[4:], port, proto, namespace or "default")
    address = _address(lab, host, text)
    return parse_target(f"{address}:{port}" if port else address, proto)


def _split(text: str, proto: str) -> tuple[str, str]:
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = text, ""
    if not host:
        raise UsageError(f"--to: {text!r} is not one of {', '.join(FORMS)}")
    return host, port


def _address(lab: str, host: str, text: str) -> str:
    try:
        return str(ipaddress.IPv4Address(host))
    except ValueError:
        pass
    paths = LabPaths(lab)
    spec = load_spec(paths.spec)
    for node in spec.nodes:
        if node.name == host:
            return str(node.address)
    try:
        records = json.loads(paths.outside_dns.read_text())
    except (OSError, ValueError):
        records = {}
    if records.get(host):
        return records[host][0]
    raise UsageError(f"--to: cannot resolve {host!r} in lab {lab!r}; use one of "
                     f"{', '.join(FORMS)}")


def _service(lab: str, name: str, port: str, proto: str, namespace: str) -> Probe:
    client = KubeClient.from_kubeconfig(str(LabPaths(lab).kubeconfig))
    try:
        service = client.get("services", name, namespace)
    except ApiError as err:
        if err.not_found:
            raise UsageError(f"--to: service {namespace}/{name} not found") from err
        raise
    cluster_ip = service["spec"].get("clusterIP")
    if not cluster_ip or cluster_ip == "None":
        raise UsageError(f"--to: service {namespace}/{name} has no ClusterIP "
                         f"(type {service['spec'].get('type')}, headless or ExternalName)")
    if proto == "icmp":
        return Probe(cluster_ip, 0, "icmp")
    ports = service["spec"].get("ports", [])
    chosen = [p for p in ports if not port or str(p["port"]) == port or p.get("name") == port]
    if not chosen:
        known = ", ".join(f"{p.get('name') or p['port']}" for p in ports)
        raise UsageError(f"--to: service {namespace}/{name} has no port {port!r}; ports: {known}")
    return Probe(cluster_ip, int(chosen[0]["port"]), proto)
