"""What a probe's --to means: addresses, Services, nodes and public names.

    10.96.0.10:53          an address and port
    svc/web[:80|:http]     a Service's ClusterIP and port (namespace from -n)
    ip-172-31-0-11:30080   a node's (private) address, e.g. for a NodePort
    db.example.com:5432    a name the lab's public DNS knows (outside hosts, ELBs)

Resolution reads the lab: its spec, its API and its public DNS records; it
never asks a resolver outside the lab.
"""
from __future__ import annotations

import ipaddress
import json

from base.errors import UsageError
from base.kube.client import ApiError, KubeClient
from probes.reach import Probe
from probes.runner import parse_target
from topo.spec import load_spec
from topo.state import LabPaths

FORMS = ("ADDRESS:PORT", "svc/NAME[:PORT]", "NODE:PORT", "PUBLIC-NAME:PORT")


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
