"""The ALB on real namespaces (root): the ELB agent (python -m agents.elb) in a
throwaway `elb` namespace, a client namespace on its internet side, HTTP
targets in a namespace on its VPC side.

    client 10.98.0.1 --- eth1 10.98.0.2 [elb] eth0 10.97.0.1 --- 10.97.0.11-.14 targets
                          + the ALB's VIP 10.98.0.10 (placed by the agent)

One agent and one set of targets serve the whole module; the test that stops
a target runs last.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from base.alb_api import (
    FORWARD,
    Action,
    Alb,
    AlbConfig,
    Certificate,
    HealthCheck,
    Listener,
    Rule,
    Target,
    TargetGroup,
    path_patterns,
    write_alb_config,
)
from probes.stats import chi_square

pytestmark = pytest.mark.root
ROOT = Path(__file__).resolve().parents[2]
VIP, CLIENT, ELB_VPC = "10.98.0.10", "10.98.0.1", "10.97.0.1"
INTERNAL_VIP = "10.97.0.50"         # an internal ALB: on the VPC side
TARGETS = {"10.97.0.11": "web-a", "10.97.0.12": "web-b", "10.97.0.13": "web-c",
           "10.97.0.14": "api-a"}
PORT = 8080
CHECK = HealthCheck(interval=0.2, timeout=1.0, healthy_threshold=2, unhealthy_threshold=2)

TARGET_PROGRAM = """
import asyncio, json, sys
address, name = sys.argv[1], sys.argv[2]
async def handle(reader, writer):
    try:
        while True:
            head = (await reader.readuntil(b"\\r\\n\\r\\n")).decode()
            lines = head.split("\\r\\n")
            fields = {k.lower(): v for k, v in (l.split(": ", 1) for l in lines[1:] if l)}
            body = json.dumps({"name": name, "path": lines[0].split()[1],
                               "peer": writer.get_extra_info("peername")[0],
                               "xff": fields.get("x-forwarded-for"),
                               "proto": fields.get("x-forwarded-proto"),
                               "port": fields.get("x-forwarded-port"),
                               "host": fields.get("host")}).encode()
            writer.write(b"HTTP/1.1 200 OK\\r\\nContent-Type: application/json\\r\\n"
                         b"Content-Length: %d\\r\\n\\r\\n" % len(body) + body)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()
async def main():
    server = await asyncio.start_server(handle, address, TARGET_PORT)
    print("ready", flush=True)
    await server.serve_forever()
asyncio.run(main())
""".replace("TARGET_PORT", str(PORT))

# Runs in the client namespace: requests from stdin (JSON), results to stdout.
CLIENT_PROGRAM = """
import http.client, json, socket, ssl, sys, time
job = json.load(sys.stdin)
class Https(http.client.HTTPSConnection):
    def connect(self):
        raw = socket.create_connection((job["vip"], self.port), timeout=5)
        self.sock = self._context.wrap_socket(raw, server_hostname=self.host)
def connection(host, tls):
    if tls:
        context = ssl.create_default_context(cafile=job["ca"])
        return Https(host, 443, context=context, timeout=5)
    return http.client.HTTPConnection(job["vip"], 80, timeout=5)
results, conns = [], {}
deadline = time.time() + job.get("duration", 0)
while True:
    for item in job["requests"]:
        key = (item["host"], item.get("tls", False))
        if key not in conns:
            conns[key] = connection(*key)
        conn = conns[key]
        started = time.time()
        try:
            conn.request("GET", item["path"], headers={"Host": item["host"]})
            resp = conn.getresponse()
            data = resp.read()
            try:
                body = json.loads(data)
            except ValueError:
                body = data.decode(errors="replace")[:200]
            results.append({"status": resp.status, "body": body, "t": started,
                            "server": resp.getheader("Server")})
            if resp.getheader("Connection", "").lower() == "close":
                conn.close()
                del conns[key]
        except Exception as err:
            results.append({"status": None, "error": repr(err), "t": started})
            conn.close()
            del conns[key]
    if time.time() >= deadline:
        break
json.dump(results, sys.stdout)
"""


def sh(*argv, input=None, check=True):
    return subprocess.run(argv, input=input, capture_output=True, text=True, check=check,
                          timeout=60)


def make_pki(folder: Path) -> dict[str, str]:
    """A CA and two server certificates it signed (the second one for SNI)."""
    now = dt.datetime.now(dt.timezone.utc)

    def build(subject: str, issuer_key, issuer: str, key, names=(), ca=False):
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                   .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(minutes=5))
                   .not_valid_after(now + dt.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.DNSName(n) for n in names]), critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = build("svtest-alb-ca", ca_key, "svtest-alb-ca", ca_key, ca=True)
    files = {"ca": folder / "ca.crt"}
    files["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for label, names in (("shop", ("shop.example.test", "*.example.test")),
                         ("other", ("api.other.test",))):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = build(names[0], ca_key, "svtest-alb-ca", key, names)
        files[f"{label}.crt"] = folder / f"{label}.crt"
        files[f"{label}.key"] = folder / f"{label}.key"
        files[f"{label}.crt"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        files[f"{label}.key"].write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
    return {k: str(v) for k, v in files.items()}


def alb_config(pki: dict[str, str]) -> AlbConfig:
    web = TargetGroup("web", targets=tuple(Target(a, PORT, n) for a, n in TARGETS.items()
                                           if n.startswith("web")), health_check=CHECK)
    api = TargetGroup("api", targets=(Target("10.97.0.14", PORT, "api-a"),), health_check=CHECK)
    dead = TargetGroup("dead", targets=(Target("10.97.0.14", PORT + 1, "nobody"),),
                       health_check=CHECK)
    empty = TargetGroup("empty", health_check=CHECK)
    rules = (Rule(1, ("shop.example.test",), path_patterns("/api", "Prefix"),
                  Action(FORWARD, "api")),
             Rule(2, ("shop.example.test",), path_patterns("/", "Prefix"), Action(FORWARD, "web")),
             Rule(3, ("dead.example.test",), (), Action(FORWARD, "dead")),
             Rule(4, ("empty.example.test",), (), Action(FORWARD, "empty")),
             Rule(5, ("api.other.test",), (), Action(FORWARD, "api")))
    certificates = (Certificate(pki["shop.crt"], pki["shop.key"]),
                    Certificate(pki["other.crt"], pki["other.key"]))
    internal = Alb("internal-k8s-svtest-api-1", "internal-k8s-svtest-api-1.us-east-1.elb"
                   ".amazonaws.com", "internal", INTERNAL_VIP,
                   (Listener(80, "HTTP", Action(FORWARD, "api")),), (api,))
    return AlbConfig((Alb("k8s-svtest-shop-1", "k8s-svtest-shop-1.us-east-1.elb.amazonaws.com",
                          "internet-facing", VIP,
                          (Listener(80, "HTTP", rules=rules),
                           Listener(443, "HTTPS", rules=rules, certificates=certificates)),
                          (web, api, dead, empty)), internal))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.fail("this test needs root (network namespaces)")
    folder = tmp_path_factory.mktemp("alb")
    tag = os.getpid()
    client, elb, targets = (f"svtest-alb{x}-{tag}" for x in "cet")
    processes: dict[str, subprocess.Popen] = {}
    try:
        for ns in (client, elb, targets):
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", client, "link", "add", "veth0", "type", "veth", "peer", "name", "eth1",
           "netns", elb)
        sh("ip", "-n", elb, "link", "add", "eth0", "type", "veth", "peer", "name", "veth0",
           "netns", targets)
        for ns, dev, addresses in ((client, "veth0", [CLIENT]), (elb, "eth1", ["10.98.0.2"]),
                                   (elb, "eth0", [ELB_VPC]),
                                   (targets, "veth0", ["10.97.0.2", *TARGETS])):
            for address in addresses:
                sh("ip", "-n", ns, "addr", "add", f"{address}/24", "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
        for address, name in TARGETS.items():
            processes[name] = subprocess.Popen(
                ["ip", "netns", "exec", targets, sys.executable, "-c", TARGET_PROGRAM,
                 address, name], stdout=subprocess.PIPE, text=True)
            assert processes[name].stdout.readline().strip() == "ready"
        pki = make_pki(folder)
        write_alb_config(folder / "alb.json", alb_config(pki))
        processes["agent"] = subprocess.Popen(
            ["ip", "netns", "exec", elb, sys.executable, "-m", "agents.elb",
             "--config", str(folder / "config.json"), "--status", str(folder / "status.json"),
             "--vpc-ip", ELB_VPC, "--vip-interface", "eth1",
             "--netns-inode", str(os.stat(f"/run/netns/{elb}").st_ino)],
            cwd=ROOT, stderr=open(folder / "agent.log", "w"))
        world = {"folder": folder, "pki": pki, "client": client, "elb": elb,
                 "targets": targets, "processes": processes}
        wait_for(world, lambda s: all(t["state"] == "healthy"
                                      for g in s["targetGroups"] if g["name"] in ("web", "api")
                                      for t in g["targets"]))
        yield world
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=5)
        for ns in (client, elb, targets):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


def status(world, name: str = "k8s-svtest-shop-1") -> dict:
    albs = json.loads((world["folder"] / "status.json").read_text())["applicationLoadBalancers"]
    return next(alb for alb in albs if alb["name"] == name)


def wait_for(world, condition, timeout=20.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = status(world)
            if condition(found):
                return found
        except (OSError, ValueError, StopIteration, KeyError):
            found = None
        assert time.monotonic() < deadline, f"condition not met; last status {found}; agent " \
            f"log: {(world['folder'] / 'agent.log').read_text()[-2000:]}"
        time.sleep(0.05)


def fetch(world, requests, repeat=1, duration=0.0, background=False):
    job = {"vip": VIP, "ca": world["pki"]["ca"], "duration": duration,
           "requests": [r for r in requests for _ in range(repeat)]}
    argv = ["ip", "netns", "exec", world["client"], sys.executable, "-c", CLIENT_PROGRAM]
    if background:
        process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   text=True)
        process.stdin.write(json.dumps(job))
        process.stdin.close()
        return process
    return json.loads(sh(*argv, input=json.dumps(job)).stdout)


def test_routing_by_host_and_path_with_the_client_in_x_forwarded_for(world):
    results = fetch(world, [{"host": "shop.example.test", "path": p}
                            for p in ("/", "/cart", "/api", "/api/items", "/apiary")])
    assert [r["body"]["name"].split("-")[0] for r in results] == \
        ["web", "web", "api", "api", "web"]
    for result in results:
        body = result["body"]
        assert (body["xff"], body["peer"]) == (CLIENT, ELB_VPC)
        assert (body["proto"], body["port"], body["host"]) == ("http", "80", "shop.example.test")


def test_404_502_503_as_the_alb_answers_them(world):
    wait_for(world, lambda s: [t["state"] for g in s["targetGroups"] if g["name"] == "dead"
                               for t in g["targets"]] == ["unhealthy"])
    results = fetch(world, [{"host": h, "path": "/"} for h in
                            ("nowhere.example.test", "dead.example.test", "empty.example.test")])
    assert [r["status"] for r in results] == [404, 502, 503]
    assert [r["server"] for r in results] == ["awselb/2.0"] * 3
    assert "502 Bad Gateway" in results[1]["body"]


def test_the_security_group_drops_what_is_not_a_listener(world):
    probe = ("import socket, sys\n"
             "for port in (80, 8080):\n"
             "    s = socket.socket(); s.settimeout(0.5)\n"
             "    try: s.connect((sys.argv[1], port)); print('open')\n"
             "    except socket.timeout: print('dropped')\n"
             "    except OSError: print('refused')\n")
    out = sh("ip", "netns", "exec", world["client"], sys.executable, "-c", probe, VIP).stdout
    assert out.split() == ["open", "dropped"]


def test_an_internal_alb_answers_on_the_vpc_side_only(world):
    get = ("import http.client, sys\n"
           "c = http.client.HTTPConnection(sys.argv[1], 80, timeout=2)\n"
           "c.request('GET', '/x', headers={'Host': 'api.internal'})\n"
           "print(c.getresponse().read().decode())\n")
    body = json.loads(sh("ip", "netns", "exec", world["targets"], sys.executable, "-c", get,
                         INTERNAL_VIP).stdout)
    assert (body["name"], body["xff"], body["peer"]) == ("api-a", "10.97.0.2", ELB_VPC)
    fields = [line.split() for line in sh("ip", "-n", world["elb"], "-4", "-o", "addr",
                                          "show").stdout.splitlines()]
    placed = sorted((f[1], f[3], f[6].rstrip("\\")) for f in fields
                    if f[3] in (f"{INTERNAL_VIP}/32", f"{VIP}/32"))
    assert placed == [("eth0", f"{INTERNAL_VIP}/32", "eth0:vip"),      # its ENI's side
                      ("eth1", f"{VIP}/32", "eth1:vip")]


def test_https_with_the_listeners_certificate_verified_against_the_ca(world):
    results = fetch(world, [{"host": "shop.example.test", "path": "/api", "tls": True},
                            {"host": "www.example.test", "path": "/", "tls": True},
                            {"host": "api.other.test", "path": "/", "tls": True}])
    assert [r.get("error") for r in results] == [None] * 3
    assert [r["body"]["name"] for r in results[0::2]] == ["api-a", "api-a"]
    assert results[1]["status"] == 404                    # www: no rule, default 404
    assert {(r["body"]["proto"], r["body"]["port"]) for r in results[0::2]} == {("https", "443")}


def test_round_robin_spreads_requests_evenly(world):
    results = fetch(world, [{"host": "shop.example.test", "path": "/"}], repeat=600)
    counts: dict[str, int] = {}
    for result in results:
        counts[result["body"]["name"]] = counts.get(result["body"]["name"], 0) + 1
    assert set(counts) == {"web-a", "web-b", "web-c"}
    assert chi_square(counts).p_value > 0.001


def test_a_failing_target_is_taken_out_within_interval_times_threshold(world):
    folder = world["folder"]
    load = fetch(world, [{"host": "shop.example.test", "path": "/"}], duration=4.0,
                 background=True)
    time.sleep(0.5)
    killed_at = time.time()
    world["processes"]["web-c"].kill()
    world["processes"]["web-c"].wait(timeout=5)
    found = wait_for(world, lambda s: [t["state"] for g in s["targetGroups"] if g["name"] == "web"
                                       for t in g["targets"]][2] == "unhealthy")
    web_c = next(t for g in found["targetGroups"] if g["name"] == "web" for t in g["targets"]
                 if t["name"] == "web-c")
    out_at = web_c["transitions"][-1]["at"]
    # interval x threshold after the kill, plus the check in flight (refused at
    # once, well under its timeout) and scheduling slack on a shared machine
    assert out_at - killed_at <= CHECK.detection_time + 3 * CHECK.interval
    results = json.loads(load.stdout.read())
    assert load.wait(timeout=30) == 0
    after = [r for r in results if r["t"] > out_at]
    assert len(after) > 20
    assert [r for r in after if r["status"] != 200] == []
    assert {r["body"]["name"] for r in after} == {"web-a", "web-b"}
    failed = [line.split(" ") for line in (folder / "alb-access.log").read_text().splitlines()
              if "targetgroup/web/" in line and line.split(" ")[8] != "200"]
    assert {(f[4], f[8]) for f in failed} <= {("10.97.0.13:8080", "502")}
