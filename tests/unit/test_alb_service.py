"""The ALB without a lab: the ELB agent serving an ALB on loopback in front of
loopback targets, driven by its config file (no root, no netns).

What a client sees: routing, keep-alive on both sides, 502/503/504, bodies
in both directions, a failing target taken out by its health checks, fail
open, the status file and the access log."""
from __future__ import annotations

import asyncio
import json
import shlex
import socket

import pytest

from agents.elb.agent import ElbAgent
from agents.elb.alb.report import render_alb_status
from base.alb_api import (
    FORWARD,
    Action,
    Alb,
    AlbConfig,
    HealthCheck,
    Listener,
    Rule,
    Target,
    TargetGroup,
    write_alb_config,
)

VIP = "127.0.0.1"
FAST = HealthCheck(interval=0.1, timeout=0.5, healthy_threshold=2, unhealthy_threshold=2)
CHECKER = "ELB-HealthChecker"


def free_port(address: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((address, 0))
        return sock.getsockname()[1]


class Target_:
    """An HTTP target on a loopback address; `mode` says how it answers the
    proxy (health checks always get their answer, except when `sick`)."""

    def __init__(self, address: str, name: str):
        self.address, self.name, self.mode = address, name, "ok"
        self.port = free_port(address)
        self.connections = 0        # those the proxy opened (health checks not counted)
        self.server = None
        self.open: set = set()

    async def start(self):
        self.server = await asyncio.start_server(self._handle, self.address, self.port)
        return self

    async def stop(self):
        """Stop as a dead process does: no listener, open connections reset."""
        self.server.close()
        for writer in list(self.open):
            writer.transport.abort()

    async def _handle(self, reader, writer):
        self.open.add(writer)
        first = True
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode()
                checking = CHECKER in head
                if first and not checking:
                    self.connections += 1
                first = False
                length = next((int(line.split(":")[1]) for line in head.split("\r\n")
                               if line.lower().startswith("content-length:")), 0)
                body = await reader.readexactly(length) if length else b""
                if "chunked" in head.lower():
                    body = await _read_chunked(reader)
                if self.mode == "hang" and not checking:
                    await asyncio.sleep(30)
                if self.mode == "garbage" and not checking:
                    writer.write(b"SSH-2.0-OpenSSH\r\n\r\n")
                    break
                if head.startswith("GET /stream "):
                    writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                 + b"".join(b"%x\r\n%s\r\n" % (len(p), p)
                                            for p in (b"x" * 70000, b"yz", b"")))
                    continue
                status = "503 Unavailable" if self.mode == "sick" and "/healthz" in head \
                    else "200 OK"
                payload = json.dumps({"name": self.name, "head": head,
                                      "body": body.decode()}).encode()
                writer.write(f"HTTP/1.1 {status}\r\nContent-Length: {len(payload)}\r\n\r\n"
                             .encode() + payload)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.open.discard(writer)
            writer.close()


async def _read_chunked(reader) -> bytes:
    body = b""
    while True:
        size = int((await reader.readuntil(b"\r\n")).strip(), 16)
        data = await reader.readexactly(size + 2)
        if size == 0:
            return body
        body += data[:-2]


class Client:
    """One keep-alive client connection to the ALB."""

    def __init__(self, port: int):
        self.port = port
        self.reader = self.writer = None

    async def request(self, path="/", host="shop.example.com", method="GET", body=b"",
                      headers=()) -> tuple[int, dict, bytes]:
        if self.writer is None or self.writer.is_closing():
            self.reader, self.writer = await asyncio.open_connection(VIP, self.port)
        lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", *headers]
        if body:
            lines.append(f"Content-Length: {len(body)}")
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        head = (await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 5)).decode()
        status = int(head.split()[1])
        fields = {k.lower(): v for k, v in (line.split(": ", 1)
                                            for line in head.split("\r\n")[1:] if line)}
        data = await self.reader.readexactly(int(fields.get("content-length", 0)))
        if fields.get("connection") == "close":
            self.writer.close()
        return status, fields, data

    def close(self):
        if self.writer is not None:
            self.writer.close()


def config(port: int, targets, check=FAST, algorithm="round_robin",
           idle_timeout=60.0) -> AlbConfig:
    group = TargetGroup("web", targets=tuple(Target(t.address, t.port, t.name)
                                             for t in targets),
                        health_check=check, algorithm=algorithm)
    rules = (Rule(1, ("shop.example.com",), ("/*",), Action(FORWARD, "web")),
             Rule(2, ("empty.example.com",), (), Action(FORWARD, "empty")))
    return AlbConfig((Alb("k8s-default-shop-1", "k8s-default-shop-1.us-east-1.elb.amazonaws"
                          ".com", "internet-facing", VIP, (Listener(port, "HTTP", rules=rules),),
                          (group, TargetGroup("empty", health_check=check)),
                          idle_timeout=idle_timeout),))


async def until(condition, timeout=5.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


@pytest.fixture
def lab(tmp_path):
    """(run, targets, port, agent-ish): run(coroutine) with the agent running."""
    def run(scenario, count=2, **options):
        async def main():
            targets = [await Target_(f"127.0.0.{i + 2}", f"t{i}").start()
                       for i in range(count)]
            port = free_port()
            alb_path = tmp_path / "alb.json"
            write_alb_config(alb_path, config(port, targets, **options))
            agent = ElbAgent(tmp_path / "config.json", tmp_path / "status.json", None,
                             alb_config_path=alb_path, access_log=tmp_path / "access.log")
            stop = asyncio.Event()
            task = asyncio.create_task(agent.run(stop))
            try:
                await until(lambda: agent.albs.servers and all(
                    t["state"] == "healthy" for a in agent.albs.status()
                    for g in a["targetGroups"] for t in g["targets"]))
                await scenario(targets, port, agent, alb_path)
            finally:
                stop.set()
                await asyncio.wait_for(task, 5)
                for target in targets:
                    await target.stop()
        asyncio.run(main())
    return run


def test_routing_keep_alive_and_forwarded_headers(lab, tmp_path):
    ports = []

    async def scenario(targets, port, agent, _):
        ports.append(port)
        client = Client(port)
        seen = []
        for _ in range(4):
            status, _, body = await client.request("/cart?x=1", headers=(
                "X-Forwarded-For: 198.51.100.9",))
            assert status == 200
            seen.append(json.loads(body))
        assert [s["name"] for s in seen] == ["t0", "t1", "t0", "t1"]
        head = seen[0]["head"]
        assert "X-Forwarded-For: 198.51.100.9, 127.0.0.1\r\n" in head
        assert f"X-Forwarded-Port: {port}\r\n" in head
        assert "X-Forwarded-Proto: http\r\n" in head and "Host: shop.example.com" in head
        assert [t.connections for t in targets] == [1, 1]          # kept alive
        status, fields, body = await client.request("/", host="other.example.com")
        assert (status, body) == (404, b"") and fields["server"] == "awselb/2.0"
        status, _, body = await client.request("/", method="POST", body=b"hello")
        assert status == 200 and json.loads(body)["body"] == "hello"
        client.close()
        agent.albs.access_log.flush()
    lab(scenario)
    lines = [shlex.split(line) for line in (tmp_path / "access.log").read_text().splitlines()]
    assert [line[8] for line in lines] == ["200", "200", "200", "200", "404", "200"]
    assert lines[4][4] == "-" and lines[4][20] == "0"         # default rule, no target
    assert lines[0][12] == f"GET http://shop.example.com:{ports[0]}/cart?x=1 HTTP/1.1"


def test_a_chunked_request_body_reaches_the_target(lab):
    async def scenario(targets, port, agent, _):
        reader, writer = await asyncio.open_connection(VIP, port)
        writer.write(b"PUT /x HTTP/1.1\r\nHost: shop.example.com\r\nTransfer-Encoding: "
                     b"chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.decode().lower().split("content-length: ")[1].split("\r\n")[0])
        assert json.loads(await reader.readexactly(length))["body"] == "hello world"
        writer.close()
    lab(scenario, count=1)


def test_large_bodies_both_ways(lab):
    async def scenario(targets, port, agent, _):
        client = Client(port)
        payload = bytes(range(97, 123)) * 8000                  # 208 kB, streamed
        status, _, body = await client.request("/upload", method="POST", body=payload)
        assert status == 200 and json.loads(body)["body"].encode() == payload
        reader, writer = await asyncio.open_connection(VIP, port, limit=1 << 20)
        writer.write(b"GET /stream HTTP/1.1\r\nHost: shop.example.com\r\n\r\n")
        head = await reader.readuntil(b"\r\n\r\n")
        assert b"Transfer-Encoding: chunked" in head
        raw = await asyncio.wait_for(reader.readuntil(b"\r\n0\r\n\r\n"), 5)
        assert raw.startswith(b"11170\r\n" + b"x" * 70000 + b"\r\n2\r\nyz\r\n")
        writer.write(b"GET /again HTTP/1.1\r\nHost: shop.example.com\r\n\r\n")
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200 OK")
        writer.close()
        client.close()
    lab(scenario, count=1)


def test_expect_100_continue_is_answered_by_the_alb(lab):
    async def scenario(targets, port, agent, _):
        reader, writer = await asyncio.open_connection(VIP, port)
        writer.write(b"POST /x HTTP/1.1\r\nHost: shop.example.com\r\nContent-Length: 5\r\n"
                     b"Expect: 100-continue\r\n\r\n")
        assert await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2) == \
            b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(b"hello")
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        length = int(head.lower().split("content-length: ")[1].split("\r\n")[0])
        seen = json.loads(await reader.readexactly(length))
        assert seen["body"] == "hello" and "expect" not in seen["head"].lower()
        # answered without a target: no 100, no body read, the connection closes
        writer.write(b"POST / HTTP/1.1\r\nHost: nowhere.example\r\nContent-Length: 5\r\n"
                     b"Expect: 100-continue\r\n\r\n")
        head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)).decode()
        assert head.startswith("HTTP/1.1 404 ") and "Connection: close" in head
        writer.close()
    lab(scenario, count=1)


def test_502_503_504_and_a_failing_target_taken_out(lab):
    async def scenario(targets, port, agent, alb_path):
        client = Client(port)
        status, _, body = await client.request("/", host="empty.example.com")
        assert status == 503 and b"503 Service Temporarily Unavailable" in body
        targets[1].mode = "garbage"
        codes = sorted([(await client.request("/"))[0] for _ in range(2)])
        assert codes == [200, 502]
        targets[1].mode = "hang"
        codes = sorted([(await client.request("/"))[0] for _ in range(2)])
        assert codes == [200, 504]                  # idle timeout 0.3 s below
        assert tg_status(agent)["inService"] == [endpoint(t) for t in targets]
        await targets[1].stop()
        targets[1].mode = "ok"
        await until(lambda: tg_status(agent)["inService"] == [endpoint(targets[0])])
        assert [(await client.request("/"))[0] for _ in range(6)] == [200] * 6
        await targets[0].stop()
        await until(lambda: tg_status(agent)["failingOpen"])    # all unhealthy: fail open
        status, _, _ = await client.request("/")
        assert status == 502                                    # ... to refusing targets
        client.close()
    lab(scenario, idle_timeout=0.3)


def test_a_sick_health_check_path_and_least_outstanding_requests(lab):
    check = HealthCheck(path="/healthz", interval=0.1, timeout=0.5, healthy_threshold=2,
                        unhealthy_threshold=2)

    async def scenario(targets, port, agent, _):
        assert tg_status(agent)["algorithm"] == "least_outstanding_requests"
        targets[0].mode = "sick"
        await until(lambda: tg_status(agent)["inService"] == [endpoint(targets[1])])
        last = tg_status(agent)["targets"][0]
        assert last["state"] == "unhealthy" and last["lastResult"] == "http-503"
        client = Client(port)
        names = {json.loads((await client.request("/"))[2])["name"] for _ in range(5)}
        assert names == {"t1"}
        targets[0].mode = "ok"
        await until(lambda: len(tg_status(agent)["inService"]) == 2)
        client.close()
    lab(scenario, check=check, algorithm="least_outstanding_requests")


def test_the_status_file_reports_albs(lab, tmp_path):
    async def scenario(targets, port, agent, alb_path):
        await Client(port).request("/")
        agent.write_status()
        data = json.loads((tmp_path / "status.json").read_text())
        assert data["albConfigError"] == ""
        alb = data["applicationLoadBalancers"][0]
        assert alb["name"] == "k8s-default-shop-1" and alb["listeners"][0]["port"] == port
        assert alb["responses"] == {"200": 1}
        web = alb["targetGroups"][0]
        assert [t["state"] for t in web["targets"]] == ["healthy", "healthy"]
        assert sum(t["requests"] for t in web["targets"]) == 1
        text = render_alb_status(data["applicationLoadBalancers"])
        assert text.splitlines()[0] == "k8s-default-shop-1  ALB internet-facing  " \
            "k8s-default-shop-1.us-east-1.elb.amazonaws.com"
        assert f"listeners {port}/HTTP (2 rules)  requests 1 (200: 1)" in text
        assert "  target group empty (instance, round_robin)\n" \
            "    health check HTTP:traffic-port/ every 0.1 s, timeout 0.5 s, healthy 2, " \
            "unhealthy 2, codes 200 (a dead target leaves within 0.2 s)\n" \
            "    no registered targets: requests get 503" in text
        rows = [line.split() for line in text.splitlines() if line.startswith("    t")]
        assert [(r[0], r[2], r[3]) for r in rows] == [("t0", "healthy", "yes"),
                                                      ("t1", "healthy", "yes")]
        alb_path.write_text("{\"version\": 1, \"loadBalancers\": [{}]}")
        await until(lambda: agent.albs.config_error != "")
        assert agent.albs.config_error.startswith("alb config: loadBalancers[0].")
        assert (await Client(port).request("/"))[0] == 200      # previous config kept
        write_alb_config(alb_path, AlbConfig())
        await until(lambda: not agent.albs.servers)
    lab(scenario)


def tg_status(agent) -> dict:
    return agent.albs.status()[0]["targetGroups"][0]


def endpoint(target) -> str:
    return f"{target.address}:{target.port}"
