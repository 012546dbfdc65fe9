"""The ELB agent without a lab: a Classic listener on loopback in front of two
loopback 'nodes', driven by its config file, with scripted health checks."""
from __future__ import annotations

import asyncio
import json
import socket

import pytest

from agents.elb.agent import ElbAgent
from base.elb_api import ElbConfig, HealthCheck, Listener, LoadBalancer, Target, write_config

NODES = {"127.0.0.2": "node-a", "127.0.0.3": "node-b"}
FAST = HealthCheck("TCP", 1, interval=0.03, timeout=0.03, healthy_threshold=2,
                   unhealthy_threshold=2)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def classic(port: int, node_port: int, ranges=("0.0.0.0/0",)) -> LoadBalancer:
    return LoadBalancer("default/web", "uid-1", "a1-1.us-east-1.elb.amazonaws.com", "classic",
                        "127.0.0.1", (Listener(port, "TCP", node_port),),
                        tuple(Target(n, a) for a, n in NODES.items()), FAST, ranges)


async def start_nodes(node_port: int):
    """A server per 'node' address that answers its name and the peer it saw."""
    servers = []
    for address, name in NODES.items():
        async def answer(reader, writer, name=name):
            peer = writer.get_extra_info("peername")[0]
            writer.write(f"{name} {peer}\n".encode())
            await writer.drain()
            writer.close()
        servers.append(await asyncio.start_server(answer, address, node_port))
    return servers


async def fetch(port: int) -> str:
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 1)
    except OSError as err:
        return f"error {type(err).__name__}"
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


def test_classic_listener_sends_only_to_healthy_targets_and_follows_health(paths):
    config_path, status_path = paths
    port, node_port = free_port(), free_port()
    healthy = {"127.0.0.2"}

    async def check(hc, address, source):
        return (address in healthy), ("ok" if address in healthy else "econnrefused")

    async def scenario():
        servers = await start_nodes(node_port)
        write_config(config_path, ElbConfig((classic(port, node_port),)))
        agent = ElbAgent(config_path, status_path, vpc_ip=None, check=check)
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop))
        try:
            await until(lambda: agent.lbs and agent.lbs["default/web"].in_service ==
                        ("127.0.0.2",))
            first = [await fetch(port) for _ in range(30)]
            healthy.clear()
            healthy.add("127.0.0.3")
            await until(lambda: agent.lbs["default/web"].in_service == ("127.0.0.3",))
            second = [await fetch(port) for _ in range(30)]
            await until(lambda: json.loads(status_path.read_text())["loadBalancers"][0][
                "targets"][1]["connections"] == 30)
            status = json.loads(status_path.read_text())
            write_config(config_path, ElbConfig(()))          # service deleted
            await until(lambda: not agent.listeners)
            after_delete = await fetch(port)
        finally:
            stop.set()
            await task
            for server in servers:
                server.close()
        return first, second, status, after_delete

    first, second, status, after_delete = asyncio.run(scenario())
    assert set(first) == {"node-a 127.0.0.1"}           # node saw the ELB, not the client
    assert set(second) == {"node-b 127.0.0.1"}
    lb = status["loadBalancers"][0]
    assert lb["hostname"] == "a1-1.us-east-1.elb.amazonaws.com" and lb["flavour"] == "classic"
    a, b = lb["targets"]
    assert (a["node"], a["state"], a["inService"]) == ("node-a", "unhealthy", False)
    assert [t["state"] for t in a["transitions"]] == ["healthy", "unhealthy"]
    assert (b["node"], b["state"], b["inService"]) == ("node-b", "healthy", True)
    assert a["connections"] == 30 and b["connections"] == 30
    assert after_delete == "error ConnectionRefusedError"


def test_source_ranges_close_other_clients_and_no_healthy_target_closes(paths):
    config_path, status_path = paths
    port, node_port = free_port(), free_port()

    async def always(hc, address, source):
        return True, "ok"

    async def never(hc, address, source):
        return False, "timeout"

    async def scenario(ranges, check):
        status_path.unlink(missing_ok=True)         # a fresh ELB each time
        servers = await start_nodes(node_port)
        write_config(config_path, ElbConfig((classic(port, node_port, ranges),)))
        agent = ElbAgent(config_path, status_path, vpc_ip=None, check=check)
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop))
        try:
            await until(lambda: agent.lbs and all(
                h.checks >= 3 for h in agent.lbs["default/web"].health.values()))
            return [await fetch(port) for _ in range(5)]
        finally:
            stop.set()
            await task
            for server in servers:
                server.close()

    assert asyncio.run(scenario(("10.0.0.0/8",), always)) == [""] * 5
    assert set(asyncio.run(scenario(("127.0.0.0/8",), always))) <= {
        "node-a 127.0.0.1", "node-b 127.0.0.1"}
    assert asyncio.run(scenario(("0.0.0.0/0",), never)) == [""] * 5


def test_a_bad_config_keeps_the_previous_one_and_is_reported(paths):
    config_path, status_path = paths
    port, node_port = free_port(), free_port()

    async def always(hc, address, source):
        return True, "ok"

    async def scenario():
        write_config(config_path, ElbConfig((classic(port, node_port),)))
        agent = ElbAgent(config_path, status_path, vpc_ip=None, check=always)
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop))
        try:
            await until(lambda: bool(agent.listeners))
            config_path.write_text('{"version": 1, "loadBalancers": [{"key": 3}]}')
            await until(lambda: json.loads(status_path.read_text())["configError"] != "")
            return json.loads(status_path.read_text()), len(agent.listeners)
        finally:
            stop.set()
            await task

    status, listeners = asyncio.run(scenario())
    assert "loadBalancers[0].flavour" in status["configError"]
    assert listeners == 1 and status["loadBalancers"][0]["key"] == "default/web"


def test_a_restarted_agent_keeps_healthy_targets_in_service(paths):
    config_path, status_path = paths
    port, node_port = free_port(), free_port()

    async def only_a(hc, address, source):
        return address == "127.0.0.2", "ok"

    async def hangs(hc, address, source):
        await asyncio.sleep(3600)

    async def scenario():
        write_config(config_path, ElbConfig((classic(port, node_port),)))
        first = ElbAgent(config_path, status_path, vpc_ip=None, check=only_a)
        stop = asyncio.Event()
        task = asyncio.create_task(first.run(stop))
        await until(lambda: first.lbs and first.lbs["default/web"].in_service ==
                    ("127.0.0.2",))
        stop.set()
        await task
        servers = await start_nodes(node_port)
        second = ElbAgent(config_path, status_path, vpc_ip=None, check=hangs)
        stop = asyncio.Event()
        task = asyncio.create_task(second.run(stop))
        try:
            await until(lambda: bool(second.listeners))
            return second.lbs["default/web"].in_service, await fetch(port)
        finally:
            stop.set()
            await task
            for server in servers:
                server.close()

    in_service, answer = asyncio.run(scenario())
    assert in_service == ("127.0.0.2",) and answer == "node-a 127.0.0.1"


def test_the_agent_refuses_to_run_outside_the_elb_hosts_namespace(tmp_path):
    import subprocess
    import sys
    proc = subprocess.run([sys.executable, "-m", "agents.elb", "--config",
                           str(tmp_path / "c.json"), "--status", str(tmp_path / "s.json"),
                           "--vpc-ip", "172.31.0.5", "--netns-inode", "1"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert "not in the network namespace 1" in proc.stderr
    assert not (tmp_path / "s.json").exists()
