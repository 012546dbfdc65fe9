"""Cluster DNS end to end: what pods in two namespaces get from kube-dns.

One lab (`svclab up`: the coredns Deployment behind kube-dns 10.96.0.10),
driven with `svclab kubectl`; questions leave from inside pods through
probes.dnsprobe (one DNS message) or the pod's system resolver (getaddrinfo /
getent: search path and ndots apply).  Covers the Kubernetes DNS spec's
records, ExternalName with a real connection to the outside host, DNS
staying up while a coredns pod is deleted, and a hostile query storm.
"""
from __future__ import annotations

import json
import sys
import threading
import time

import pytest

from labtools import admin_client, running_lab, svclab, wait_for
from probes.dnsprobe import query, query_loop, query_many, resolve
from topo.netns import run_in
from topo.state import LabPaths, read_state

pytestmark = [pytest.mark.root, pytest.mark.e2e]

DOMAIN = "svc.cluster.local"
KUBE_DNS = "10.96.0.10"
DB = ("db.example.com", "203.0.113.50")
WAIT = 20.0

MANIFEST = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: svclab/workload, ports: [{name: http, containerPort: 80}]}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 80, protocol: TCP}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: peers, namespace: default}
spec:
  replicas: 2
  selector: {matchLabels: {app: peers}}
  template:
    metadata: {labels: {app: peers}}
    spec:
      containers: [{name: peer, image: svclab/workload, ports: [{name: http, containerPort: 80}]}]
---
apiVersion: v1
kind: Service
metadata: {name: peers, namespace: default}
spec:
  clusterIP: None
  selector: {app: peers}
  ports: [{name: http, port: 80, targetPort: 80, protocol: TCP}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: team-a}
spec:
  ports: [{name: http, port: 80, protocol: TCP}]
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: default}
spec: {type: ExternalName, externalName: db.example.com}
"""

DB_AS_CLUSTER_IP = """
apiVersion: v1
kind: Service
metadata: {name: db, namespace: default}
spec:
  type: ClusterIP
  selector: {app: web}
  ports: [{name: postgres, port: 5432, targetPort: 80, protocol: TCP}]
"""


class DnsLab:
    def __init__(self, running):
        self.name = running.name
        self.running = running
        self.api = admin_client(running.name)
        self.box: dict[str, str] = {}         # namespace -> a client pod's name
        self.web = ""                         # the pod behind default/web

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        return svclab("kubectl", "--name", self.name, *args, input=stdin).stdout

    def pods(self, namespace: str, selector: str, ready_only: bool = True) -> list[dict]:
        pods = self.api.list("pods", namespace, label_selector=selector)[0]
        live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
        if ready_only:
            live = [p for p in live if any(c["type"] == "Ready" and c["status"] == "True"
                                           for c in p["status"].get("conditions") or [])]
        return live

    def cluster_ip(self, namespace: str, service: str) -> str:
        return self.api.get("services", service, namespace)["spec"]["clusterIP"]

    def host(self, namespace: str, pod: str):
        return read_state(LabPaths(self.name)).find_host(pod, namespace)

    def in_pod(self, namespace: str, pod: str, *argv: str, timeout: float = 15) -> str:
        return run_in(self.host(namespace, pod).pid, list(argv), timeout=timeout, where=pod)


def one_pod(lab: DnsLab, namespace: str, app: str) -> str:
    [pod] = wait_for(f"{namespace}/{app} running", lambda: lab.pods(namespace, f"app={app}"))
    return pod["metadata"]["name"]


@pytest.fixture(scope="module")
def lab():
    with running_lab(prefix="dns") as running:
        dns = DnsLab(running)
        dns.kubectl("create", "namespace", "team-a")
        dns.kubectl("apply", "-f", "-", stdin=MANIFEST)
        for namespace in ("default", "team-a"):
            dns.kubectl("create", "deployment", "box", "--image=nginx", "-n", namespace)
        dns.box = {ns: one_pod(dns, ns, "box") for ns in ("default", "team-a")}
        dns.web = one_pod(dns, "default", "web")
        yield dns


def a_records(lab: DnsLab, namespace: str, name: str, **kwargs) -> list[str]:
    result = query(lab.name, lab.box[namespace], namespace, name, "A", **kwargs)
    assert result.ok, result.describe()
    return result.addresses


# --- names, as pods ask them --------------------------------------------------------

def test_short_qualified_and_full_names_from_two_namespaces(lab):
    web, team_web = lab.cluster_ip("default", "web"), lab.cluster_ip("team-a", "web")
    assert web != team_web
    box, team_box = lab.box["default"], lab.box["team-a"]
    # the system resolver inside a pod: getent walks the search path (ndots:5)
    assert lab.running.exec(box, "getent", "hosts", "web", namespace="default") \
        .stdout.split() == [web, f"web.default.{DOMAIN}"]
    for name in ("web", "web.default", f"web.default.{DOMAIN}"):
        assert resolve(lab.name, box, "default", name).addresses == (web,), name
    # the same short name is the pod's own namespace's service
    assert resolve(lab.name, team_box, "team-a", "web").addresses == (team_web,)
    for name in ("web.default", f"web.default.{DOMAIN}", f"web.default.{DOMAIN}."):
        assert resolve(lab.name, team_box, "team-a", name).addresses == (web,), name
    assert resolve(lab.name, team_box, "team-a", "web.team-a").addresses == (team_web,)
    # one DNS message: TTL 30, authoritative, case does not matter; TCP too
    result = query(lab.name, team_box, "team-a", "WEB.Default.Svc.Cluster.Local")
    assert result.ok and result.authoritative and result.server == f"{KUBE_DNS}:53"
    assert [(a.rtype, a.ttl, a.data) for a in result.answers] == [("A", 30, web)]
    assert query(lab.name, team_box, "team-a", f"web.default.{DOMAIN}", tcp=True).addresses \
        == [web]
    # names outside the zone are forwarded to the VPC resolver
    assert resolve(lab.name, box, "default", DB[0]).addresses == (DB[1],)


def test_unknown_names_under_the_zone_are_nxdomain(lab):
    box = lab.box["default"]
    results = query_many(lab.name, box, "default",
                         [(f"nope.default.{DOMAIN}", "A"), (f"web.nope.{DOMAIN}", "A"),
                          ("nope.cluster.local", "A"), (f"nope.default.{DOMAIN}", "SRV")])
    assert [r.rcode for r in results] == ["NXDOMAIN"] * 4, [r.describe() for r in results]
    assert resolve(lab.name, box, "default", "nope").error.startswith("not found")
    assert lab.running.exec(box, "getent", "hosts", "nope", namespace="default",
                            check=False).returncode == 2


def test_srv_for_named_ports_and_ptr_for_cluster_ips(lab):
    web, box = lab.cluster_ip("default", "web"), lab.box["team-a"]
    fqdn = f"web.default.{DOMAIN}."
    srv, ptr = query_many(lab.name, box, "team-a", [(f"_http._tcp.{fqdn}", "SRV"), (web, "PTR")])
    assert srv.data() == [f"0 100 80 {fqdn}"], srv.describe()
    assert [(a.name, a.data) for a in srv.additional] == [(fqdn, web)]
    assert ptr.name == ".".join(reversed(web.split("."))) + ".in-addr.arpa."
    assert ptr.data() == [fqdn], ptr.describe()
    # no SRV for a port without that name/protocol
    assert query(lab.name, box, "team-a", f"_http._udp.{fqdn}", "SRV").rcode == "NXDOMAIN"


def test_pod_records(lab):
    box = lab.box["default"]
    ip = lab.host("default", box).addresses[0]
    for namespace in ("default", "team-a"):
        name = f"{ip.replace('.', '-')}.{namespace}.pod.cluster.local"
        assert a_records(lab, "team-a", name) == [ip]
    assert query(lab.name, box, "default", "1-2-3.default.pod.cluster.local").rcode == "NXDOMAIN"


def test_headless_service_follows_ready_pods(lab):
    fqdn = f"peers.default.{DOMAIN}"

    def ready_ips():
        return sorted(p["status"]["podIP"] for p in lab.pods("default", "app=peers"))

    for replicas in (2, 3):
        lab.kubectl("scale", "deployment", "peers", f"--replicas={replicas}")
        ips = wait_for(f"{replicas} ready peers",
                       lambda n=replicas: len(ready_ips()) == n and ready_ips())
        wait_for(f"one A per ready peer ({ips})", lambda want=ips: sorted(query(
            lab.name, lab.box["default"], "default", fqdn).addresses) == want)
    srv = query(lab.name, lab.box["default"], "default", f"_http._tcp.{fqdn}", "SRV")
    targets = [f"{ip.replace('.', '-')}.{fqdn}." for ip in ips]
    assert sorted(d.split()[3] for d in srv.data()) == sorted(targets), srv.describe()
    assert {a.data for a in srv.additional} == set(ips)
    assert a_records(lab, "team-a", targets[0]) == [ips[0]]
    lab.kubectl("scale", "deployment", "peers", "--replicas=0")
    wait_for("NXDOMAIN for peers at zero", lambda: query(
        lab.name, lab.box["team-a"], "team-a", fqdn).rcode == "NXDOMAIN")


# --- ExternalName --------------------------------------------------------------------

CONNECT = """
import socket, sys
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5) as sock:
    print(sock.recv(200).decode().strip())
"""


def node_public_ip(lab: DnsLab, node: str) -> str:
    addresses = lab.api.get("nodes", node)["status"]["addresses"]
    return next(a["address"] for a in addresses if a["type"] == "ExternalIP")


def test_external_name_is_a_cname_and_pods_reach_the_outside_host(lab):
    box = lab.box["default"]
    cname, a = query_many(lab.name, box, "default",
                          [(f"db.default.{DOMAIN}", "CNAME"), (f"db.default.{DOMAIN}", "A")])
    assert [(x.rtype, x.data) for x in cname.answers] == [("CNAME", DB[0] + ".")]
    assert [(x.rtype, x.data) for x in a.answers] == [("CNAME", DB[0] + "."), ("A", DB[1])]
    banner = lab.in_pod("default", box, sys.executable, "-c", CONNECT, "db", "5432")
    name, ip, client = banner.split()[1:]
    node = lab.host("default", box).node
    # the outside host answered, and saw the node's public IP (node SNAT, then the igw)
    assert (name, ip) == DB
    assert client.rpartition(":")[0] == node_public_ip(lab, node)


def test_external_name_to_cluster_ip_updates_dns(lab):
    box = lab.box["team-a"]
    fqdn = f"db.default.{DOMAIN}"
    lab.kubectl("apply", "-f", "-", stdin=DB_AS_CLUSTER_IP)
    cluster_ip = lab.cluster_ip("default", "db")
    wait_for("db as an A record", lambda: query(lab.name, box, "team-a", fqdn).addresses
             == [cluster_ip])
    assert query(lab.name, box, "team-a", fqdn, "CNAME").data("CNAME") == []
    banner = lab.in_pod("team-a", box, sys.executable, "-c", CONNECT, "db.default", "5432")
    assert banner.split()[1] == lab.web           # now a pod behind the ClusterIP answers


# --- propagation ---------------------------------------------------------------------

def test_a_new_service_resolves_from_every_pod(lab):
    coredns = lab.pods("kube-system", "k8s-app=kube-dns")
    lab.kubectl("create", "service", "clusterip", "fresh", "--tcp=8080:8080", "-n", "team-a")
    ip = lab.cluster_ip("team-a", "fresh")
    fqdn = f"fresh.team-a.{DOMAIN}"
    askers = [(lab.box[ns], ns, None) for ns in ("default", "team-a")]
    # the coredns pods ask themselves (their own resolv.conf is the VPC's: dnsPolicy Default)
    askers += [(p["metadata"]["name"], "kube-system", p["status"]["podIP"]) for p in coredns]
    for pod, namespace, server in askers:
        wait_for(f"{fqdn} from {namespace}/{pod}", lambda p=pod, ns=namespace, s=server: query(
            lab.name, p, ns, fqdn, server=s).addresses == [ip], timeout=10)


# --- availability --------------------------------------------------------------------

def test_dns_keeps_answering_while_a_coredns_pod_is_deleted(lab):
    web = lab.cluster_ip("default", "web")
    before = {p["metadata"]["name"] for p in lab.pods("kube-system", "k8s-app=kube-dns")}
    assert len(before) == 2
    victim = sorted(before)[0]
    deleter = threading.Thread(target=lambda: (time.sleep(1.0), lab.kubectl(
        "delete", "pod", victim, "-n", "kube-system", "--wait=false")))
    deleter.start()
    try:
        results = query_loop(lab.name, lab.box["team-a"], "team-a", f"web.default.{DOMAIN}",
                             duration=8.0, interval=0.01, timeout=2.0)
    finally:
        deleter.join(30)
    failed = [r.describe() for r in results if r.addresses != [web]]
    assert len(results) > 100 and failed == [], failed[:5]
    after = {p["metadata"]["name"] for p in wait_for(
        "two coredns pods again", lambda: len(lab.pods("kube-system", "k8s-app=kube-dns")) == 2
        and lab.pods("kube-system", "k8s-app=kube-dns"))}
    assert victim not in after and len(after - before) == 1


STORM = r"""
import json, os, random, socket, struct, sys, time
server, rate, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
rng = random.Random(7)

def name(text):
    return b"".join(bytes([len(l)]) + l for l in text.encode().split(b".")) + b"\0"

def msg(qname, qtype=1, flags=0x0100, qd=1, tail=b""):
    return struct.pack("!HHHHHH", rng.getrandbits(16), flags, qd, 0, 0, 0) + qname + \
        struct.pack("!HH", qtype, 1) + tail

def valid():
    pick = rng.random()
    if pick < 0.5:
        return msg(name("web.default.svc.cluster.local"), rng.choice((1, 28, 33, 255)))
    if pick < 0.95:
        return msg(name("n%d.default.svc.cluster.local" % rng.getrandbits(30)))
    return msg(name("x%d.example.com" % rng.getrandbits(30)))

GARBAGE = [
    lambda: os.urandom(rng.randrange(0, 600)),
    lambda: valid()[:rng.randrange(0, 40)],
    lambda: msg(b"\x3f" + b"a" * 63) * 1 + b"\x3f" * 300,
    lambda: msg((b"\x3f" + b"a" * 63) * 5 + b"\0"),
    lambda: msg(b"\x40" + b"b" * 64 + b"\0"),
    lambda: struct.pack("!HHHHHH", 1, 0x0100, 1, 0, 0, 0) + b"\xc0\x0c" + b"\0\1\0\1",
    lambda: msg(name("web.default.svc.cluster.local"), flags=0x8180),
    lambda: msg(name("web.default.svc.cluster.local"), qd=rng.choice((0, 2, 65535))),
    lambda: msg(name("web.default.svc.cluster.local"), flags=0x2900),
    lambda: msg(name("web.default.svc.cluster.local"), qtype=252),
    lambda: msg(b"\x05\xff\xfe\x00\x80\x2e\0"),
    lambda: msg(name("web.default.svc.cluster.local"), tail=os.urandom(50)),
]
socks = []
for _ in range(16):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sock.connect((server, 53))
    socks.append(sock)
counts = dict(valid=0, garbage=0, send_errors=0, replies=0)
start, sent = time.monotonic(), 0
while time.monotonic() - start < seconds:
    due = min(int(rate * (time.monotonic() - start)) + 1, int(rate * seconds))
    while sent < due:                    # catch up to the schedule, then drain replies
        good = rng.random() < 0.5
        packet = valid() if good else rng.choice(GARBAGE)()
        try:
            socks[sent % len(socks)].send(packet)
            counts["valid" if good else "garbage"] += 1
        except OSError:
            counts["send_errors"] += 1
        sent += 1
    for sock in socks:
        while True:
            try:
                sock.recv(65535)
                counts["replies"] += 1
            except OSError:
                break
    time.sleep(0.001)
counts["seconds"] = round(time.monotonic() - start, 2)
print(json.dumps(counts))
"""


def metrics(lab: DnsLab, pod_ip: str) -> dict[str, float]:
    code = ("import sys, urllib.request; "
            "print(urllib.request.urlopen(sys.argv[1], timeout=3).read().decode())")
    text = lab.in_pod("default", lab.box["default"], sys.executable, "-c", code,
                      f"http://{pod_ip}:9153/metrics")
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines() if line and not line.startswith("#")}


def test_a_hostile_query_storm_leaves_dns_answering_others(lab):
    web = lab.cluster_ip("default", "web")
    coredns = {p["metadata"]["name"]: p["status"]["podIP"]
               for p in lab.pods("kube-system", "k8s-app=kube-dns")}
    requests_before = sum(metrics(lab, ip).get('coredns_dns_requests_total{proto="udp"}', 0)
                          for ip in coredns.values())
    storm: dict = {}

    def run_storm():
        out = lab.in_pod("default", lab.box["default"], sys.executable, "-c", STORM, KUBE_DNS,
                         "10000", "3", timeout=30)
        storm.update(json.loads(out))

    stormer = threading.Thread(target=run_storm)
    stormer.start()
    try:
        during = query_loop(lab.name, lab.box["team-a"], "team-a", f"web.default.{DOMAIN}",
                            duration=3.0, interval=0.05, timeout=1.0)
    finally:
        stormer.join(60)
    assert storm["valid"] + storm["garbage"] >= 27000, storm     # ~10k/s for 3 s
    # every reply another client got during the storm was right
    wrong = [r.describe() for r in during if r.answered and r.addresses != [web]]
    assert wrong == [] and any(r.answered for r in during), wrong[:5]
    # afterwards: both coredns pods, never restarted, answer everything correctly
    pods = {p["metadata"]["name"]: p for p in lab.pods("kube-system", "k8s-app=kube-dns")}
    assert set(pods) == set(coredns)
    assert all(c["restartCount"] == 0 for p in pods.values()
               for c in p["status"]["containerStatuses"])
    for server in (None, *coredns.values()):
        results = query_many(lab.name, lab.box["team-a"], "team-a",
                             [(f"web.default.{DOMAIN}", "A")] * 10, server=server)
        assert all(r.addresses == [web] for r in results), [r.describe() for r in results]
    after = [metrics(lab, ip) for ip in coredns.values()]
    assert [m["svclab_dns_internal_errors_total"] for m in after] == [0, 0]
    handled = sum(m['coredns_dns_requests_total{proto="udp"}'] for m in after) - requests_before
    assert handled >= 5000, handled        # the storm really reached the servers
