"""The ELB agent with zone nodes, without a lab: a Classic load balancer with a
node in two 'zones' on loopback (its own VIP and ENI address each) in front
of one loopback 'node' per zone.  Each VIP sends only to its zone's target
with cross-zone load balancing off, to both with it on, always from its own
zone's ENI; each target is checked from the ENI in its zone."""
from __future__ import annotations

import asyncio
import json
import socket

import pytest

from agents.elb.agent import ElbAgent
from base.elb_api import (
    ElbConfig,
    HealthCheck,
    Listener,
    LoadBalancer,
    Target,
    ZoneNode,
    write_config,
)

A, B = "us-east-1a", "us-east-1b"
TARGETS = (Target("node-a", "127.0.0.2", A), Target("node-b", "127.0.0.3", B))
NODES = (ZoneNode(A, "127.0.0.21", "127.0.0.5"), ZoneNode(B, "127.0.0.22", "127.0.0.6"))
FAST = HealthCheck("TCP", 1, interval=0.03, timeout=0.03, healthy_threshold=2,
                   unhealthy_threshold=2)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def classic(port, node_port, cross_zone):
    return LoadBalancer("default/web", "uid-1", "a1-1.us-east-1.elb.amazonaws.com", "classic",
                        NODES[0].vip, (Listener(port, "TCP", node_port),), TARGETS, FAST,
                        zone_nodes=NODES, cross_zone=cross_zone)


async def start_nodes(node_port):
    """A server per 'node' that answers its name and the source it saw."""
    servers = []
    for target in TARGETS:
        async def answer(reader, writer, name=target.node):
            writer.write(f"{name} {writer.get_extra_info('peername')[0]}\n".encode())
            await writer.drain()
            writer.close()
        servers.append(await asyncio.start_server(answer, target.address, node_port))
    return servers


async def fetch(vip, port):
    reader, writer = await asyncio.wait_for(asyncio.open_connection(vip, port), 1)
    data = await asyncio.wait_for(reader.read(100), 1)
    writer.close()
    return data.decode().strip()


async def until(condition, timeout=3.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


@pytest.fixture
def paths(tmp_path):
    return tmp_path / "config.json", tmp_path / "status.json"


def test_each_zone_node_sends_from_its_eni_to_its_zone_or_with_cross_zone_to_all(paths):
    config_path, status_path = paths
    port, node_port = free_port(), free_port()
    checked_from = {}

    async def check(hc, address, source):
        checked_from[address] = source
        return True, "ok"

    async def scenario():
        servers = await start_nodes(node_port)
        write_config(config_path, ElbConfig((classic(port, node_port, False),)))
        agent = ElbAgent(config_path, status_path, vpc_ip="127.0.0.1", check=check)
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop))
        try:
            await until(lambda: agent.lbs and agent.lbs["default/web"].in_service ==
                        ("127.0.0.2", "127.0.0.3"))
            zonal = {node.vip: {await fetch(node.vip, port) for _ in range(20)}
                     for node in NODES}
            await until(lambda: sum(n["connections"] for n in json.loads(
                status_path.read_text())["loadBalancers"][0]["zoneNodes"]) == 40)
            status = json.loads(status_path.read_text())["loadBalancers"][0]
            write_config(config_path, ElbConfig((classic(port, node_port, True),)))
            await until(lambda: agent.lbs["default/web"].lb.cross_zone)
            crossed = {node.vip: {await fetch(node.vip, port) for _ in range(40)}
                       for node in NODES}
        finally:
            stop.set()
            await task
            for server in servers:
                server.close()
        return zonal, status, crossed

    zonal, status, crossed = asyncio.run(scenario())
    assert zonal == {"127.0.0.21": {"node-a 127.0.0.5"}, "127.0.0.22": {"node-b 127.0.0.6"}}
    assert crossed == {"127.0.0.21": {"node-a 127.0.0.5", "node-b 127.0.0.5"},
                       "127.0.0.22": {"node-a 127.0.0.6", "node-b 127.0.0.6"}}
    assert checked_from == {"127.0.0.2": "127.0.0.5", "127.0.0.3": "127.0.0.6"}
    nodes = status["zoneNodes"]
    assert [(n["zone"], n["vip"], n["inService"], n["connections"], n["inDns"])
            for n in nodes] == [(A, "127.0.0.21", ["127.0.0.2"], 20, True),
                                (B, "127.0.0.22", ["127.0.0.3"], 20, True)]
    assert [(t["node"], t["zone"], t["connections"]) for t in status["targets"]] == [
        ("node-a", A, 20), ("node-b", B, 20)]
    assert status["dns"] == ["127.0.0.21", "127.0.0.22"] and status["crossZone"] is False


def test_a_zone_without_a_healthy_target_closes_its_vip_and_leaves_dns(paths):
    config_path, status_path = paths
    port, node_port = free_port(), free_port()

    async def only_a(hc, address, source):
        return address == "127.0.0.2", "ok" if address == "127.0.0.2" else "econnrefused"

    async def scenario():
        servers = await start_nodes(node_port)
        write_config(config_path, ElbConfig((classic(port, node_port, False),)))
        agent = ElbAgent(config_path, status_path, vpc_ip="127.0.0.1", check=only_a)
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop))
        try:
            await until(lambda: agent.lbs and all(
                h.checks >= 3 for h in agent.lbs["default/web"].health.values()))
            answers = [await fetch(NODES[1].vip, port) for _ in range(5)]
            await until(lambda: json.loads(status_path.read_text())["loadBalancers"][0][
                "dns"] == ["127.0.0.21"])
            return answers, json.loads(status_path.read_text())["loadBalancers"][0]
        finally:
            stop.set()
            await task
            for server in servers:
                server.close()

    answers, status = asyncio.run(scenario())
    assert answers == [""] * 5                      # us-east-1b's node has no one to send to
    assert [(n["healthy"], n["inDns"]) for n in status["zoneNodes"]] == [(True, True),
                                                                         (False, False)]
