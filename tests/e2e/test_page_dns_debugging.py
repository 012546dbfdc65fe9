"""kubernetes.io "Debugging DNS Resolution"
(content/en/docs/tasks/administer-cluster/dns-debugging-resolution.md),
replayed step by step in one lab.

Each test is one section of the task page, run with the page's own manifest
(the dnsutils pod) and commands through the bundled real kubectl; the checks
are what the page says a healthy cluster shows, by shape: nslookup answering
from kube-dns, the pod's resolv.conf, running CoreDNS pods and their logs, the
kube-dns Service and its EndpointSlice, queries reaching CoreDNS (its metrics,
then the log plugin added with `kubectl edit` of the coredns ConfigMap: one
line per query once the pods reload), and names limited to the pod's
namespace.  The page's own example Corefile is older than the CoreDNS the lab
emulates (1.12): its `upstream` line is refused at reload, as a real CoreDNS
refuses it, and the running configuration goes on.

The tests share the module's lab and run in file order, as the page's steps do.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from labtools import running_lab, svclab, wait_for
from topo.state import LabPaths

pytestmark = [pytest.mark.root, pytest.mark.e2e]
KUBECTL = Path(sys.executable).parent / "kubectl"
DNS = ("--namespace=kube-system", "-l", "k8s-app=kube-dns")

# The page's admin/dns/dnsutils.yaml.
DNSUTILS = """
apiVersion: v1
kind: Pod
metadata:
  name: dnsutils
  namespace: default
spec:
  containers:
  - name: dnsutils
    image: registry.k8s.io/e2e-test-images/jessie-dnsutils:1.3
    command:
      - sleep
      - "infinity"
    imagePullPolicy: IfNotPresent
  restartPolicy: Always
"""

# The page's example ConfigMap (`log` added to the Corefile of its day): a
# CoreDNS 1.12 refuses its `upstream` line in the kubernetes block.
PAGE_CONFIGMAP = """
apiVersion: v1
kind: ConfigMap
metadata:
  name: coredns
  namespace: kube-system
data:
  Corefile: |
    .:53 {
        log
        errors
        health
        kubernetes cluster.local in-addr.arpa ip6.arpa {
          pods insecure
          upstream
          fallthrough in-addr.arpa ip6.arpa
        }
        prometheus :9153
        forward . /etc/resolv.conf
        cache 30
        loop
        reload
        loadbalance
    }
"""
# What `kubectl edit` runs as the editor: `log` added above `errors`, as the page asks.
ADD_LOG = """#!/bin/sh
sed -i 's/^\\( *\\)errors$/\\1log\\n\\1errors/' "$1"
"""
# A query as CoreDNS's log plugin writes it (its default format).
QUERY_LOG = re.compile(r'^\[INFO\] [\d.]+:\d+ - \d+ "A IN kubernetes\.default\.svc\.'
                       r'cluster\.local\. udp \d+ (false|true) \d+" NOERROR qr,aa,rd \d+ '
                       r'[\d.]+s$', re.M)
REFUSED = ("[ERROR] plugin/reload: Corefile changed but reload failed: starting with listener "
           "file descriptors: plugin/kubernetes: /etc/coredns/Corefile:7 - Error during "
           "parsing: unknown property 'upstream'")


class Lab:
    def __init__(self, name: str, home: Path):
        self.name = name
        self.env = {**os.environ, "HOME": str(home)}
        self.kubeconfig = str(LabPaths(name).kubeconfig)

    def run(self, *args: str, input: str | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([str(KUBECTL), "--kubeconfig", self.kubeconfig, *args],
                              capture_output=True, text=True, env={**self.env, **(env or {})},
                              input=input, timeout=60)

    def kubectl(self, *args: str, input: str | None = None) -> str:
        proc = self.run(*args, input=input)
        assert proc.returncode == 0, f"kubectl {' '.join(args)}: {proc.stderr}"
        return proc.stdout

    def field(self, *args: str) -> str:
        *what, path = args
        return self.kubectl("get", *what, "-o", f"jsonpath={{{path}}}")

    def kube_dns_ip(self) -> str:
        return self.field("svc", "kube-dns", "-n", "kube-system", ".spec.clusterIP")

    def dns_requests(self) -> int:
        """coredns_dns_requests_total summed over the CoreDNS pods, read from a node."""
        total = 0
        for ip in self.field("pods", *DNS, ".items[*].status.podIP").split():
            metrics = svclab("exec", "--name", self.name, "ip-172-31-0-11", "--", "curl",
                             "-s", f"http://{ip}:9153/metrics").stdout
            total += sum(int(float(line.rsplit(" ", 1)[1])) for line in metrics.splitlines()
                         if line.startswith("coredns_dns_requests_total"))
        return total


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with running_lab(prefix="dnsdbg") as running:
        yield Lab(running.name, tmp_path_factory.mktemp("home"))


def test_create_the_dnsutils_pod(lab):
    assert lab.kubectl("apply", "-f", "-", input=DNSUTILS).strip() == "pod/dnsutils created"
    row = wait_for("dnsutils running", lambda: (
        r if (r := lab.kubectl("get", "pods", "dnsutils").splitlines()[1].split())[1:3]
        == ["1/1", "Running"] else None), timeout=60)
    assert row[:4] == ["dnsutils", "1/1", "Running", "0"]


def test_nslookup_kubernetes_default_works(lab):
    answer = lab.kubectl("exec", "-i", "-t", "dnsutils", "--", "nslookup",
                         "kubernetes.default")
    server = lab.kube_dns_ip()
    kubernetes = lab.field("svc", "kubernetes", ".spec.clusterIP")
    # CoreDNS answers its own names without the RA bit (it never sets it), and the
    # nslookup of bind 9 says so before the answer, as with a real CoreDNS.
    warnings, answer = re.match(r"((?:;; Got recursion not available from \S+\n)*)(.*)",
                                answer, re.S).groups()
    assert set(warnings.splitlines()) <= {f";; Got recursion not available from {server}"}
    assert re.match(rf"Server:\s+{re.escape(server)}\nAddress:\s+{re.escape(server)}#53\n",
                    answer), answer
    assert re.search(r"\nName:\s+kubernetes\.default\.svc\.cluster\.local\n"
                     rf"Address: {re.escape(kubernetes)}\n", answer), answer


def test_check_the_local_dns_configuration(lab):
    lines = lab.kubectl("exec", "-ti", "dnsutils", "--", "cat", "/etc/resolv.conf").splitlines()
    search = next(x for x in lines if x.startswith("search ")).split()[1:]
    # the cluster's search path, then the node's own (the VPC's DHCP domain), as
    # the page's example ends with its node's google.internal
    assert search == ["default.svc.cluster.local", "svc.cluster.local", "cluster.local",
                      "ec2.internal"]
    assert f"nameserver {lab.kube_dns_ip()}" in lines
    assert "options ndots:5" in lines


def test_check_if_the_dns_pod_is_running(lab):
    rows = [r.split() for r in lab.kubectl("get", "pods", *DNS).splitlines()]
    assert rows[0][:3] == ["NAME", "READY", "STATUS"] and len(rows) >= 2
    for row in rows[1:]:
        assert row[0].startswith("coredns-") and row[1:3] == ["1/1", "Running"], row


def test_check_for_errors_in_the_dns_pod(lab):
    logs = lab.kubectl("logs", *DNS)
    assert logs.strip(), "no log from the DNS pods"
    suspicious = [x for x in logs.splitlines()
                  if re.search(r"\b(ERROR|FATAL|Traceback|panic)\b", x)]
    assert not suspicious, suspicious


def test_is_dns_service_up(lab):
    rows = [r.split() for r in lab.kubectl("get", "svc", "--namespace=kube-system").splitlines()]
    [row] = [r for r in rows if r[0] == "kube-dns"]
    assert row[1:4] == ["ClusterIP", lab.kube_dns_ip(), "<none>"]
    assert row[4].startswith("53/UDP,53/TCP"), row


def test_are_dns_endpoints_exposed(lab):
    # The page selects k8s.io/service-name, a label nothing sets: a real cluster
    # answers "No resources found" too.  The EndpointSlice controller's label is
    # kubernetes.io/service-name.
    page = lab.run("get", "endpointslices", "-l", "k8s.io/service-name=kube-dns",
                   "--namespace=kube-system")
    assert (page.returncode, page.stdout, page.stderr.strip()) == (
        0, "", "No resources found in kube-system namespace.")
    rows = [r.split() for r in lab.kubectl(
        "get", "endpointslices", "-l", "kubernetes.io/service-name=kube-dns",
        "--namespace=kube-system").splitlines()]
    assert rows[0] == ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"]
    [row] = rows[1:]
    assert row[0].startswith("kube-dns-") and row[1] == "IPv4"
    assert sorted(row[2].split(",")) == ["53", "53", "9153"]
    pods = lab.field("pods", *DNS, ".items[*].status.podIP").split()
    assert sorted(row[3].split(",")) == sorted(pods)


def test_are_dns_queries_being_received(lab):
    """What the page reads from the log plugin, read from CoreDNS's
    prometheus counter: each nslookup reaches a DNS pod."""
    before = lab.dns_requests()
    for _ in range(3):
        lab.kubectl("exec", "dnsutils", "--", "nslookup", "kubernetes.default")
    assert lab.dns_requests() >= before + 3


def test_are_dns_queries_logged_with_the_log_plugin(lab, tmp_path):
    """The page: `kubectl -n kube-system edit configmap coredns`, add `log` to the
    Corefile, wait for the reload, and each query is a line in the CoreDNS logs."""
    corefile = lab.field("configmap", "coredns", "-n", "kube-system", ".data.Corefile")
    assert corefile.startswith(".:53 {\n    errors\n") and "\n    reload\n" in corefile
    editor = tmp_path / "add-log"
    editor.write_text(ADD_LOG)
    editor.chmod(0o755)
    edited = lab.run("-n", "kube-system", "edit", "configmap", "coredns",
                     env={"KUBE_EDITOR": str(editor)})
    assert (edited.returncode, edited.stdout.strip()) == (0, "configmap/coredns edited"), edited
    wait_for("both CoreDNS pods reloaded", lambda: lab.kubectl(
        "logs", *DNS, "--tail=-1").count("[INFO] Reloading complete") == 2, timeout=60)
    logs = lab.kubectl("logs", *DNS, "--tail=-1")
    assert logs.count("[INFO] Reloading\n") == 2
    assert len(re.findall(r"^\[INFO\] plugin/reload: Running configuration SHA512 = [0-9a-f]{128}$",
                          logs, re.M)) == 4          # at start and after the reload, per pod

    def logged() -> bool:
        lab.kubectl("exec", "dnsutils", "--", "nslookup", "kubernetes.default")
        return bool(QUERY_LOG.search(lab.kubectl("logs", *DNS)))
    wait_for("a query line in the CoreDNS logs", logged, timeout=30, every=1)


def test_the_pages_example_corefile_is_refused_and_dns_keeps_working(lab):
    """The page's example Corefile (with `log`) still has the kubernetes plugin's
    `upstream`, which CoreDNS 1.12 refuses: the reload fails, is logged, and the
    running configuration (with `log`, from the step before) goes on answering."""
    running = lab.field("configmap", "coredns", "-n", "kube-system", ".data.Corefile")
    lab.kubectl("apply", "-f", "-", input=PAGE_CONFIGMAP)
    try:
        wait_for("the refused reload in both pods' logs", lambda: lab.kubectl(
            "logs", *DNS, "--tail=-1").count(REFUSED) == 2, timeout=60)
        before = len(QUERY_LOG.findall(lab.kubectl("logs", *DNS, "--tail=-1")))
        answer = lab.kubectl("exec", "dnsutils", "--", "nslookup", "kubernetes.default")
        assert "Name:\tkubernetes.default.svc.cluster.local" in answer
        wait_for("the query logged by the running configuration", lambda: len(
            QUERY_LOG.findall(lab.kubectl("logs", *DNS, "--tail=-1"))) > before, timeout=10)
    finally:
        lab.kubectl("-n", "kube-system", "patch", "configmap", "coredns", "--type=merge", "-p",
                    json.dumps({"data": {"Corefile": running}}))


def test_are_you_in_the_right_namespace(lab):
    lab.kubectl("create", "namespace", "elsewhere")
    lab.kubectl("create", "service", "clusterip", "web", "--tcp=80", "-n", "elsewhere")
    cluster_ip = lab.field("svc", "web", "-n", "elsewhere", ".spec.clusterIP")
    qualified = wait_for("web.elsewhere resolving", lambda: (
        p if (p := lab.run("exec", "-i", "-t", "dnsutils", "--", "nslookup",
                           "web.elsewhere")).returncode == 0 else None))
    assert re.search(r"\nName:\s+web\.elsewhere\.svc\.cluster\.local\n"
                     rf"Address: {re.escape(cluster_ip)}\n", qualified.stdout)
    bare = lab.run("exec", "-i", "-t", "dnsutils", "--", "nslookup", "web")
    assert bare.returncode == 1 and "server can't find web: NXDOMAIN" in bare.stdout, bare


# --- the Pod's DNS policy and config ("DNS for Services and Pods") ---------------------

POLICY_PODS = """
apiVersion: v1
kind: Pod
metadata: {name: own-resolver}
spec:
  containers: [{name: main, image: busybox, command: [sleep, "3600"]}]
  dnsPolicy: "None"
  dnsConfig:
    nameservers: [192.0.2.53]
    searches: [corp.example, lab.example]
    options: [{name: ndots, value: "2"}, {name: edns0}]
---
apiVersion: v1
kind: Pod
metadata: {name: node-resolver}
spec:
  containers: [{name: main, image: busybox, command: [sleep, "3600"]}]
  dnsPolicy: Default
"""


def test_a_pods_dns_policy_and_config_make_its_resolv_conf(lab):
    lab.kubectl("apply", "-f", "-", input=POLICY_PODS)
    for pod in ("own-resolver", "node-resolver"):
        lab.kubectl("wait", "--for=condition=Ready", f"pod/{pod}", "--timeout=60s")
    # None: the pod's dnsConfig alone (written as containerd writes it: search first)
    assert lab.kubectl("exec", "own-resolver", "--", "cat", "/etc/resolv.conf") == (
        "search corp.example lab.example\nnameserver 192.0.2.53\noptions ndots:2 edns0\n")
    # Default: the node's resolver, the VPC's, and names resolve through it
    assert lab.kubectl("exec", "node-resolver", "--", "cat", "/etc/resolv.conf") == (
        "search ec2.internal\nnameserver 172.31.0.2\n")
    answer = lab.run("exec", "node-resolver", "--", "nslookup", "ip-172-31-0-11.ec2.internal")
    assert answer.returncode == 0 and "172.31.0.11" in answer.stdout, answer
    # ... but not the cluster's names
    assert lab.run("exec", "node-resolver", "--", "nslookup",
                   "kubernetes.default.svc.cluster.local").returncode != 0
