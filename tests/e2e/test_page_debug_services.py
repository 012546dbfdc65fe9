"""kubernetes.io "Debug Services" (content/en/docs/tasks/debug/debug-application/
debug-service.md), replayed step by step in one lab.

Each test is one section of the page, run with the page's own commands:
kubectl through `svclab kubectl`, the in-cluster commands in a busybox pod
(`kubectl exec`), the node-side ones (`nslookup ... 10.96.0.10`, `ps`,
kube-proxy's /proxyMode, `iptables-save`, `curl` of the ClusterIP) through
`svclab exec NODE`.  Every check is the outcome the page states, by shape:
three serve_hostname pods answering their names on 9376, a Service that
first does not exist and then resolves by its short, namespaced and full
name, the pod's resolv.conf, the Service's JSON, its Endpoints and
EndpointSlice, and kube-proxy's KUBE-SVC/KUBE-SEP chains on a node.

The tests share the module's lab and run in file order, as the page's steps do.
"""
from __future__ import annotations

import ipaddress
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from labtools import running_lab, svclab, wait_for

pytestmark = [pytest.mark.root, pytest.mark.e2e]
NODE = "ip-172-31-0-11"
FQDN = "hostnames.default.svc.cluster.local"
CLUSTER_DNS = "10.96.0.10"
POD_CIDR = ipaddress.ip_network("192.168.0.0/16")
SERVICE_CIDR = ipaddress.ip_network("10.96.0.0/12")
PAGE_BUSYBOX = "gcr.io/google-containers/busybox"


class Lab:
    """The page's two vantage points: kubectl (with a private HOME, so no
    discovery cache of another lab is used) and a lab host."""

    def __init__(self, name: str, home: Path):
        self.name = name
        self.env = {**os.environ, "HOME": str(home)}

    def run(self, *args: str, input: str | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess:
        argv = [sys.executable, "-m", "svclab.cli", "kubectl", "--name", self.name, *args]
        return subprocess.run(argv, capture_output=True, text=True, env=self.env,
                              input=input, timeout=timeout)

    def kubectl(self, *args: str, input: str | None = None) -> str:
        proc = self.run(*args, input=input)
        assert proc.returncode == 0, f"kubectl {' '.join(args)}: {proc.stderr}"
        return proc.stdout

    def in_shell(self, *cmd: str) -> subprocess.CompletedProcess:
        """A command in the running busybox pod, as the page's
        `kubectl exec <POD-NAME> -c <CONTAINER-NAME> -- <COMMAND>`."""
        return self.run("exec", "shell", "-c", "shell", "--", *cmd)

    def on(self, host: str, *cmd: str) -> str:
        return svclab("exec", "--name", self.name, host, "--", *cmd).stdout

    def field(self, kind: str, name: str, path: str) -> str:
        return self.kubectl("get", kind, name, "-o", f"jsonpath={{{path}}}")

    def running(self, selector: str, count: int) -> dict[str, str] | None:
        """{pod name: pod IP} once exactly `count` pods run ready."""
        out = self.kubectl("get", "pods", "-l", selector, "-o",
                           "jsonpath={range .items[*]}{.metadata.name} {.status.phase} "
                           "{.status.containerStatuses[0].ready} {.status.podIP}{'\\n'}{end}")
        rows = [line.split() for line in out.splitlines()]
        ready = {r[0]: r[3] for r in rows if len(r) == 4 and r[1:3] == ["Running", "true"]}
        return ready if len(ready) == count == len(rows) else None


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with running_lab(prefix="dbgsvc") as running:
        yield Lab(running.name, tmp_path_factory.mktemp("home"))


@pytest.fixture(scope="module")
def pods(lab):
    """The Setup section's three hostnames pods, {name: IP}."""
    return wait_for("3 hostnames pods", lambda: lab.running("app=hostnames", 3), timeout=60)


def table(out: str) -> list[dict[str, str]]:
    """kubectl's table as rows keyed by header (columns split on 2+ spaces)."""
    lines = out.strip().splitlines()
    header = re.split(r"\s{2,}", lines[0].strip())
    return [dict(zip(header, re.split(r"\s{2,}", line.strip()))) for line in lines[1:]]


def nslookup_answer(out: str) -> tuple[str, str, list[tuple[str, str]]]:
    """(server, server address, [(name, address)]) of an nslookup answer."""
    server = re.search(r"^Server:\s+(\S+)$", out, re.M).group(1)
    server_address = re.search(r"^Address:\s+(\S+#\d+)$", out, re.M).group(1)
    answers = re.findall(r"^Name:\s+(\S+)\nAddress:\s+(\S+)$", out, re.M)
    return server, server_address, answers


# --- Running commands in a Pod ---------------------------------------------------

def test_an_interactive_busybox_pod_runs_what_is_typed_and_goes_away(lab):
    # What is typed goes on stdin (the test has no terminal to give -t).
    proc = lab.run("run", "-i", "--rm", "--restart=Never", "busybox",
                   f"--image={PAGE_BUSYBOX}", "sh", input="hostname\nexit\n", timeout=90)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == "busybox", proc.stdout
    assert 'pod "busybox" deleted' in proc.stdout + proc.stderr
    # The page's alternative: a Pod that keeps running, used with kubectl exec.
    lab.kubectl("run", "shell", f"--image={PAGE_BUSYBOX}", "--", "sleep", "3600")
    wait_for("the busybox pod", lambda: lab.running("run=shell", 1), timeout=60)
    assert lab.in_shell("hostname").stdout.strip() == "shell"


# --- Setup -------------------------------------------------------------------------

def test_setup_runs_three_serve_hostname_pods(lab):
    assert lab.kubectl("create", "deployment", "hostnames",
                       "--image=registry.k8s.io/serve_hostname").strip() == \
        "deployment.apps/hostnames created"
    assert lab.kubectl("scale", "deployment", "hostnames", "--replicas=3").strip() == \
        "deployment.apps/hostnames scaled"
    deployment = json.loads(lab.kubectl("get", "deployment", "hostnames", "-o", "json"))
    assert deployment["metadata"]["labels"] == {"app": "hostnames"}   # set by create
    assert deployment["spec"]["selector"]["matchLabels"] == {"app": "hostnames"}
    assert deployment["spec"]["replicas"] == 3
    wait_for("3 hostnames pods", lambda: lab.running("app=hostnames", 3), timeout=60)
    rows = table(lab.kubectl("get", "pods", "-l", "app=hostnames"))
    assert len(rows) == 3
    for row in rows:
        # <replicaset>-<suffix>: the template hash is a uint32 in decimal, each digit
        # re-encoded (so 1 to 10 of "456789bcdf"); the suffix is 5 of apimachinery's
        # vowel-free alphabet.
        assert re.fullmatch(r"hostnames-[4-9bcdf]{1,10}-[bcdfghjklmnpqrstvwxz245-9]{5}",
                            row["NAME"]), row
        assert (row["READY"], row["STATUS"], row["RESTARTS"]) == ("1/1", "Running", "0")


def test_setup_the_pod_ips_answer_their_hostnames_on_9376(lab, pods):
    template = '{{range .items}}{{.status.podIP}}{{"\\n"}}{{end}}'
    ips = lab.kubectl("get", "pods", "-l", "app=hostnames", "-o",
                      f"go-template={template}").splitlines()
    assert sorted(ips) == sorted(pods.values())
    assert all(ipaddress.ip_address(ip) in POD_CIDR for ip in ips)
    loop = "; ".join(f"wget -qO- {ip}:9376; echo" for ip in ips)
    answers = lab.in_shell("sh", "-c", loop).stdout.splitlines()
    by_ip = {ip: name for name, ip in pods.items()}
    assert answers == [by_ip[ip] for ip in ips]


# --- Does the Service exist? ----------------------------------------------------

def test_a_missing_service_does_not_resolve_and_is_not_found(lab, pods):
    proc = lab.in_shell("wget", "-O-", "hostnames")
    assert proc.returncode != 0
    assert "unable to resolve host address 'hostnames'" in proc.stdout + proc.stderr
    proc = lab.run("get", "svc", "hostnames")
    assert proc.returncode == 1
    assert 'Error from server (NotFound): services "hostnames" not found' in proc.stderr


def test_expose_creates_the_service(lab, pods):
    assert lab.kubectl("expose", "deployment", "hostnames", "--port=80",
                       "--target-port=9376").strip() == "service/hostnames exposed"
    [row] = table(lab.kubectl("get", "svc", "hostnames"))
    assert (row["NAME"], row["TYPE"], row["EXTERNAL-IP"], row["PORT(S)"]) == \
        ("hostnames", "ClusterIP", "<none>", "80/TCP")
    assert ipaddress.ip_address(row["CLUSTER-IP"]) in SERVICE_CIDR


# --- Does the Service work by DNS name? -----------------------------------------

@pytest.mark.parametrize("name", ["hostnames", "hostnames.default", FQDN])
def test_the_service_resolves_from_a_pod_by_short_namespaced_and_full_name(lab, pods, name):
    cluster_ip = lab.field("svc", "hostnames", ".spec.clusterIP")
    proc = wait_for(f"nslookup {name}", lambda: (
        p if (p := lab.in_shell("nslookup", name)).returncode == 0 else None), timeout=10)
    server, server_address, answers = nslookup_answer(proc.stdout)
    assert (server, server_address) == (CLUSTER_DNS, f"{CLUSTER_DNS}#53")
    assert answers == [(FQDN, cluster_ip)]


def test_the_service_resolves_from_a_node_through_the_cluster_dns(lab, pods):
    cluster_ip = lab.field("svc", "hostnames", ".spec.clusterIP")
    out = lab.on(NODE, "nslookup", FQDN, CLUSTER_DNS)
    assert nslookup_answer(out) == (CLUSTER_DNS, f"{CLUSTER_DNS}#53", [(FQDN, cluster_ip)])


def test_the_pods_resolv_conf_points_at_the_cluster_dns(lab):
    kube_dns = lab.kubectl("get", "svc", "kube-dns", "-n", "kube-system", "-o",
                           "jsonpath={.spec.clusterIP}")
    lines = lab.in_shell("cat", "/etc/resolv.conf").stdout.splitlines()
    assert f"nameserver {kube_dns}" in lines
    [search] = [line.split()[1:] for line in lines if line.startswith("search ")]
    assert search[:3] == ["default.svc.cluster.local", "svc.cluster.local", "cluster.local"]
    assert len(search) <= 6
    assert "options ndots:5" in lines


def test_the_kubernetes_service_resolves_too(lab):
    kubernetes_ip = lab.field("svc", "kubernetes", ".spec.clusterIP")
    out = lab.in_shell("nslookup", "kubernetes.default").stdout
    assert nslookup_answer(out)[2] == [("kubernetes.default.svc.cluster.local", kubernetes_ip)]


# --- Does the Service work by IP? ---------------------------------------------

def test_the_service_ip_answers_with_the_pods_names(lab, pods):
    cluster_ip = lab.field("svc", "hostnames", ".spec.clusterIP")
    out = lab.in_shell("sh", "-c", f"for i in $(seq 1 3); do wget -qO- {cluster_ip}:80; "
                                   "echo; done").stdout
    assert len(out.splitlines()) == 3 and set(out.splitlines()) <= set(pods)
    # Load-balanced over all three: 30 new connections miss one pod with
    # probability 3 * (2/3)^30, about 1.5e-5.
    out = lab.in_shell("sh", "-c", f"for i in $(seq 1 30); do wget -qO- {cluster_ip}:80; "
                                   "echo; done").stdout
    assert set(out.splitlines()) == set(pods)


# --- Is the Service defined correctly? -----------------------------------------

def test_the_service_json_matches_the_pods_port(lab, pods):
    svc = json.loads(lab.kubectl("get", "service", "hostnames", "-o", "json"))
    assert (svc["kind"], svc["apiVersion"]) == ("Service", "v1")
    meta = svc["metadata"]
    assert (meta["name"], meta["namespace"], meta["labels"]) == \
        ("hostnames", "default", {"app": "hostnames"})
    assert meta["uid"] and meta["resourceVersion"] and meta["creationTimestamp"]
    [port] = svc["spec"]["ports"]
    assert (port["port"], port["protocol"], port["targetPort"]) == (80, "TCP", 9376)
    assert isinstance(port["targetPort"], int)          # a number, not "9376"
    assert svc["spec"]["selector"] == {"app": "hostnames"}
    assert ipaddress.ip_address(svc["spec"]["clusterIP"]) in SERVICE_CIDR
    assert (svc["spec"]["type"], svc["spec"]["sessionAffinity"]) == ("ClusterIP", "None")
    assert svc["status"] == {"loadBalancer": {}}


# --- Does the Service have any Endpoints? -------------------------------------

def test_the_endpoints_are_the_pods_on_9376(lab, pods):
    rows = table(lab.kubectl("get", "pods", "-l", "app=hostnames"))
    assert {r["NAME"] for r in rows} == set(pods)
    assert all(r["RESTARTS"] == "0" for r in rows)
    [row] = table(lab.kubectl("get", "endpoints", "hostnames"))
    assert row["NAME"] == "hostnames"
    assert sorted(row["ENDPOINTS"].split(",")) == sorted(f"{ip}:9376" for ip in pods.values())
    [row] = table(lab.kubectl("get", "endpointslices", "-l",
                              "kubernetes.io/service-name=hostnames"))
    assert row["NAME"].startswith("hostnames-")
    assert (row["ADDRESSTYPE"], row["PORTS"]) == ("IPv4", "9376")
    assert sorted(row["ENDPOINTS"].split(",")) == sorted(pods.values())


# --- Are the Pods working? ---------------------------------------------------------

def test_each_endpoint_returns_its_own_hostname(lab, pods):
    endpoints = lab.field("endpoints", "hostnames",
                          ".subsets[*].addresses[*].ip").split()
    by_ip = {ip: name for name, ip in pods.items()}
    for ip in endpoints:
        assert lab.in_shell("wget", "-qO-", f"{ip}:9376").stdout == by_ip[ip]


# --- Is the kube-proxy working? ---------------------------------------------------

def test_kube_proxy_runs_on_the_node(lab):
    out = lab.on(NODE, "sh", "-c", "ps auxw | grep kube-proxy")
    # The lab's processes share the machine's PID namespace (docs/images.md,
    # "Limits"): `ps` on a node lists every running lab's kube-proxies, one
    # per node, each with its lab's kubeconfig (`auxw` cuts the line there).
    mine = [line for line in out.splitlines() if re.search(
        rf"^root\s+\d+ .* kube-proxy --kubeconfig /run/svclab/{re.escape(lab.name)}/", line)]
    assert len(mine) == 3, out


def test_kube_proxy_says_it_runs_in_iptables_mode(lab):
    assert lab.on(NODE, "curl", "-s", "localhost:10249/proxyMode").strip() == "iptables"


def test_iptables_mode_has_one_service_chain_and_a_chain_per_endpoint(lab, pods):
    cluster_ip = lab.field("svc", "hostnames", ".spec.clusterIP")
    rules = lab.on(NODE, "sh", "-c", "iptables-save | grep hostnames").splitlines()
    assert all('"default/hostnames' in rule for rule in rules)
    entry = [r for r in rules if r.startswith("-A KUBE-SERVICES ")]
    assert len(entry) == 1, rules
    assert f"-d {cluster_ip}/32 -p tcp" in entry[0] and "--dport 80" in entry[0]
    svc_chain = re.search(r"-j (KUBE-SVC-[A-Z0-9]{16})$", entry[0]).group(1)
    jumps = [re.search(r"-j (KUBE-SEP-[A-Z0-9]{16})$", r)
             for r in rules if r.startswith(f"-A {svc_chain} ")]
    seps = [m.group(1) for m in jumps if m]
    assert len(seps) == 3 == len(set(seps))
    probabilities = [r for r in rules if r.startswith(f"-A {svc_chain} ")
                     and "--mode random --probability" in r]
    assert len(probabilities) == 2                   # the last endpoint takes the rest
    targets = set()
    for sep in seps:
        own = [r for r in rules if r.startswith(f"-A {sep} ")]
        [dnat] = [r for r in own if "-j DNAT" in r]
        target = re.search(r"--to-destination (\S+):9376$", dnat).group(1)
        assert any(f"-s {target}/32" in r for r in own), own     # hairpin: masquerade
        targets.add(target)
    assert targets == set(pods.values())


def test_the_service_ip_answers_from_the_node(lab, pods):
    cluster_ip = lab.field("svc", "hostnames", ".spec.clusterIP")
    assert lab.on(NODE, "curl", "-s", f"{cluster_ip}:80").strip() in pods
