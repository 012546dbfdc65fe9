"""Cluster DNS fed by a real (in-process) API server: a Service created
through the API answers by name, and goes away when deleted.  No root."""
from __future__ import annotations

import time

import dns.message
import dns.query
import dns.rcode
import pytest

from agents.dns.cluster import ClusterZone
from agents.dns.holder import ZoneHolder
from agents.dns.server import DnsServer
from agents.proxy.fixtures import endpoint, service_dict, slice_dict


@pytest.fixture
def client(api_client):
    return api_client


def ask(port: int, name: str, rtype: str = "A"):
    return dns.query.udp(dns.message.make_query(name, rtype), "127.0.0.1", port=port, timeout=2)


def answers(port: int, name: str) -> list[str]:
    reply = ask(port, name)
    return sorted(r.to_text() for rrset in reply.answer for r in rrset)


def eventually(fn, want, timeout=5.0):
    deadline = time.monotonic() + timeout
    while (got := fn()) != want:
        assert time.monotonic() < deadline, f"got {got!r}, want {want!r}"
        time.sleep(0.05)


def test_services_appear_and_disappear_by_name(client):
    holder = ZoneHolder()
    with ClusterZone(client, holder), DnsServer("127.0.0.1", 0, holder) as server:
        assert answers(server.port, "kubernetes.default.svc.cluster.local") == ["10.96.0.1"]
        client.create("services", service_dict("web", cluster_ip="10.96.7.7"),
                      namespace="default")
        eventually(lambda: answers(server.port, "web.default.svc.cluster.local"),
                   ["10.96.7.7"])
        client.delete("services", "web", "default")
        eventually(lambda: ask(server.port, "web.default.svc.cluster.local").rcode(),
                   dns.rcode.NXDOMAIN)


def test_headless_service_answers_ready_endpoints(client):
    headless = service_dict("peers", cluster_ip="None")
    client.create("services", headless, namespace="default")
    client.create("endpointslices", slice_dict("peers", endpoints=[
        endpoint("192.168.1.5", "n1"), endpoint("192.168.1.6", "n1", ready=False)]),
        namespace="default")
    holder = ZoneHolder()
    with ClusterZone(client, holder), DnsServer("127.0.0.1", 0, holder) as server:
        eventually(lambda: answers(server.port, "peers.default.svc.cluster.local"),
                   ["192.168.1.5"])
