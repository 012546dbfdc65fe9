"""kubernetes.io "Using Source IP" (content/en/docs/tutorials/services/source-ip.md),
replayed step by step in one lab.

Each test is one section of the tutorial, run with the page's own commands:
kubectl through the bundled real kubectl, the node-side `curl` through `svclab
exec NODE`, and the "outside the cluster" `curl`s from the lab's internet
`client`.  The checks are the outcomes the page states, by shape: the pod's
own address behind a ClusterIP, the nodes' addresses behind a NodePort (SNAT),
the client's own address and one answering node with externalTrafficPolicy
Local, the ELB host name, healthCheckNodePort and its /healthz counts, and the
two kinds of cloud load balancer of the page's "Cross-platform support".

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
from topo.state import LabPaths

pytestmark = [pytest.mark.root, pytest.mark.e2e]
KUBECTL = Path(sys.executable).parent / "kubectl"
APP = "source-ip-app"
IMAGE = "registry.k8s.io/echoserver:1.10"
ELB_HOST = re.compile(r"^[0-9a-f]{32}-[0-9a-f]+\.(us-east-1\.elb|elb\.us-east-1)\.amazonaws\.com$")
CLIENT_ADDRESS = re.compile(r"^\s*client_address=(\S+)$", re.M)

# The page's "Cross-platform support": a load balancer that forwards packets
# (AWS NLB with instance targets) rather than proxying them (Classic ELB).
NLB_SERVICE = """
apiVersion: v1
kind: Service
metadata:
  name: loadbalancer-nlb
  labels: {app: source-ip-app}
  annotations: {service.beta.kubernetes.io/aws-load-balancer-type: nlb}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  selector: {app: source-ip-app}
  ports: [{port: 80, targetPort: 8080}]
"""


class Lab:
    def __init__(self, name: str, home: Path):
        self.name = name
        self.env = {**os.environ, "HOME": str(home)}
        self.kubeconfig = str(LabPaths(name).kubeconfig)

    def run(self, *args: str, input: str | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([str(KUBECTL), "--kubeconfig", self.kubeconfig, *args],
                              capture_output=True, text=True, env=self.env, input=input,
                              timeout=timeout)

    def kubectl(self, *args: str, input: str | None = None) -> str:
        proc = self.run(*args, input=input)
        assert proc.returncode == 0, f"kubectl {' '.join(args)}: {proc.stderr}"
        return proc.stdout

    def field(self, kind: str, name: str, path: str) -> str:
        return self.kubectl("get", kind, name, "-o", f"jsonpath={{{path}}}")

    def on(self, host: str, *cmd: str, check: bool = True) -> str:
        """A command on a lab host (node, client, elb), as `svclab exec` runs it."""
        return svclab("exec", "--name", self.name, host, "--", *cmd, check=check).stdout

    def nodes(self, address_type: str) -> list[str]:
        out = self.kubectl("get", "nodes", "-o", "jsonpath={ $.items[*].status.addresses"
                           f"[?(@.type==\"{address_type}\")].address }}")
        return out.split()

    def app_pod(self) -> tuple[str, str]:
        """(node name, node InternalIP) of the one source-ip-app pod."""
        node = self.kubectl("get", "pods", "-l", f"app={APP}", "-o",
                            "jsonpath={.items[0].spec.nodeName}")
        address = self.kubectl("get", "node", node, "-o", "jsonpath={.status.addresses"
                               "[?(@.type==\"InternalIP\")].address}")
        return node, address

    def client_addresses(self, host: str, script: str) -> list[str]:
        """The client_address lines of what a shell script got (curl may fail)."""
        return CLIENT_ADDRESS.findall(self.on(host, "sh", "-c", script, check=False))

    def lb_in_service(self, service: str) -> list[str]:
        status = json.loads(svclab("lb", "status", "--name", self.name, "--json").stdout)
        [lb] = [x for x in status if x["key"] == f"default/{service}"]
        return sorted(lb["inService"])


def own_address(ip_addr_output: str, device: str = "eth0") -> str:
    """The IPv4 address `ip addr` shows on `device`."""
    match = re.search(rf"^\d+: {device}[@:].*?\n(?:\s+.*\n)*?\s+inet (\S+)/\d+",
                      ip_addr_output, re.M)
    assert match, ip_addr_output
    return match.group(1)


def ready(lab: Lab) -> bool:
    out = lab.kubectl("get", "pods", "-l", f"app={APP}", "-o",
                      "jsonpath={.items[*].status.containerStatuses[0].ready}")
    return out.split() == ["true"]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with running_lab(prefix="srcip") as running:
        yield Lab(running.name, tmp_path_factory.mktemp("home"))


def test_prerequisites_the_echoserver_deployment(lab):
    out = lab.kubectl("create", "deployment", APP, f"--image={IMAGE}")
    assert out.strip() == f"deployment.apps/{APP} created"
    wait_for("the source-ip-app pod", lambda: ready(lab), timeout=60)


def test_clusterip_the_proxy_mode_on_a_node(lab):
    rows = lab.kubectl("get", "nodes").splitlines()
    assert rows[0].split()[:5] == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    assert [row.split()[1] for row in rows[1:]] == ["Ready"] * 3
    node = rows[1].split()[0]
    assert lab.on(node, "curl", "http://localhost:10249/proxyMode").strip() == "iptables"


def test_clusterip_the_service(lab):
    out = lab.kubectl("expose", "deployment", APP, "--name=clusterip", "--port=80",
                      "--target-port=8080")
    assert out.strip() == "service/clusterip exposed"
    row = lab.kubectl("get", "svc", "clusterip").splitlines()[1].split()
    assert row[:2] == ["clusterip", "ClusterIP"] and row[3:5] == ["<none>", "80/TCP"]
    ipaddress.ip_address(row[2])


@pytest.mark.parametrize("where", ["same node", "other node"])
def test_clusterip_the_client_address_is_the_client_pods_own(lab, where):
    cluster_ip = lab.field("svc", "clusterip", ".spec.clusterIP")
    server_node, _ = lab.app_pod()
    workers = lab.kubectl("get", "nodes", "-l", "!node-role.kubernetes.io/control-plane",
                          "-o", "jsonpath={.items[*].metadata.name}").split()
    node = server_node if where == "same node" else next(
        n for n in workers if n != server_node)
    # kubectl run -it busybox ... --rm; then `ip addr` and `wget -qO - <ClusterIP>`
    # typed into its shell (stdin attached, no terminal).
    proc = lab.run("run", "busybox", "-i", "--image=busybox", "--restart=Never", "--rm",
                   f"--overrides={json.dumps({'spec': {'nodeName': node}})}",
                   input=f"ip addr\nwget -qO - {cluster_ip}\nexit\n")
    assert proc.returncode == 0, proc.stderr
    assert CLIENT_ADDRESS.findall(proc.stdout) == [own_address(proc.stdout)], proc.stdout
    assert "\tmethod=GET\n" in proc.stdout


def test_nodeport_from_outside_the_source_is_a_nodes_address(lab):
    out = lab.kubectl("expose", "deployment", APP, "--name=nodeport", "--port=80",
                      "--target-port=8080", "--type=NodePort")
    assert out.strip() == "service/nodeport exposed"
    nodeport = lab.kubectl("get", "-o", "jsonpath={.spec.ports[0].nodePort}",
                           "services", "nodeport")
    # From the internet only the EC2-style public addresses reach the nodes (the
    # igw maps them 1:1), so $NODES is the ExternalIPs here.
    nodes = lab.nodes("ExternalIP")
    seen = lab.client_addresses("client", f"for node in {' '.join(nodes)}; do "
                                f"curl -s $node:{nodeport} | grep -i client_address; done")
    # each node masquerades to its own (internal) address, not the client's
    assert seen == lab.nodes("InternalIP")


def test_nodeport_local_only_the_endpoints_node_answers_with_the_client_address(lab):
    out = lab.kubectl("patch", "svc", "nodeport", "-p",
                      '{"spec":{"externalTrafficPolicy":"Local"}}')
    assert out.strip() == "service/nodeport patched"
    nodeport = lab.field("svc", "nodeport", ".spec.ports[0].nodePort")
    client = own_address(lab.on("client", "ip", "addr"))
    loop = (f"for node in {' '.join(lab.nodes('ExternalIP'))}; do curl --connect-timeout 1"
            f" -s $node:{nodeport} | grep -i client_address; done")
    assert wait_for("one reply, from the endpoint's node", lambda: (
        seen if len(seen := lab.client_addresses("client", loop)) == 1 else None),
        timeout=30) == [client]
    _, server_address = lab.app_pod()
    public = dict(zip(lab.nodes("InternalIP"), lab.nodes("ExternalIP")))[server_address]
    assert lab.client_addresses("client", f"curl -s {public}:{nodeport}") == [client]


def test_loadbalancer_the_elb_proxies_from_a_node(lab):
    out = lab.kubectl("expose", "deployment", APP, "--name=loadbalancer", "--port=80",
                      "--target-port=8080", "--type=LoadBalancer")
    assert out.strip() == "service/loadbalancer exposed"
    row = wait_for("the ELB's host name", lambda: (
        r if (r := lab.kubectl("get", "svc", "loadbalancer").splitlines()[1].split())[3]
        != "<pending>" else None))
    assert row[1] == "LoadBalancer" and ELB_HOST.match(row[3]), row
    assert re.fullmatch(r"80:\d+/TCP", row[4])
    seen = wait_for("an answer through the ELB", lambda: lab.client_addresses(
        "client", f"curl -s --max-time 2 {row[3]}"), timeout=30)
    assert seen[0] in lab.nodes("InternalIP")


def test_loadbalancer_local_health_check_node_port(lab):
    lab.kubectl("patch", "svc", "loadbalancer", "-p",
                '{"spec":{"externalTrafficPolicy":"Local"}}')
    yaml = lab.kubectl("get", "svc", "loadbalancer", "-o", "yaml")
    [line] = [x for x in yaml.splitlines() if "healthchecknodeport" in x.lower()]
    port = re.fullmatch(r"  healthCheckNodePort: (\d+)", line).group(1)
    # The page selects run=source-ip-app, which `kubectl create deployment` does not
    # set (it labels app=); a real cluster finds nothing either.
    missing = lab.run("get", "pod", "-o", "wide", "-l", f"run={APP}")
    assert (missing.stdout, missing.stderr.strip()) == (
        "", "No resources found in default namespace.")
    [row] = lab.kubectl("get", "pod", "-o", "wide", "-l", f"app={APP}").splitlines()[1:]
    server_node = row.split()[6]
    health = "curl -s -w ' %{http_code}' localhost:" + port + "/healthz"
    for node in ("ip-172-31-0-11", "ip-172-31-0-12"):
        body, code = lab.on(node, "sh", "-c", health).rsplit(" ", 1)
        local = json.loads(body)["localEndpoints"]
        assert (local, code) == ((1, "200") if node == server_node else (0, "503")), node


def test_loadbalancer_local_the_classic_elb_shows_its_own_address(lab):
    """After the nodes without endpoints fail the health check, every request
    lands on the endpoint's node; a Classic ELB proxies (the page's first kind
    of cloud load balancer), so the pod sees the ELB, not the client."""
    _, server_address = lab.app_pod()
    wait_for("only the endpoint's node in service", lambda: (
        lab.lb_in_service("loadbalancer") == [server_address]), timeout=30)
    elb = own_address(lab.on("elb", "ip", "addr"))
    host = lab.field("svc", "loadbalancer", ".status.loadBalancer.ingress[0].hostname")
    seen = lab.client_addresses("client", f"for i in 1 2 3 4; do curl -s --max-time 2 "
                                f"{host}; done")
    assert seen == [elb] * 4


def test_cross_platform_a_packet_forwarding_lb_keeps_the_client_address(lab):
    lab.kubectl("apply", "-f", "-", input=NLB_SERVICE)
    _, server_address = lab.app_pod()
    host = wait_for("the NLB's host name", lambda: lab.field(
        "svc", "loadbalancer-nlb", ".status.loadBalancer.ingress[0].hostname"))
    assert ELB_HOST.match(host), host
    wait_for("only the endpoint's node in service", lambda: (
        lab.lb_in_service("loadbalancer-nlb") == [server_address]), timeout=30)
    client = own_address(lab.on("client", "ip", "addr"))
    seen = lab.client_addresses("client", f"for i in 1 2 3 4; do curl -s --max-time 2 "
                                f"{host}; done")
    assert seen == [client] * 4


def test_cleanup(lab):
    # The page's selector (run=) matches none of the Services `kubectl expose`
    # made from this deployment (they carry app=), as on a real cluster.
    proc = lab.run("delete", "svc", "-l", f"run={APP}")
    assert (proc.returncode, proc.stdout + proc.stderr) == (0, "No resources found\n")
    deleted = lab.kubectl("delete", "svc", "-l", f"app={APP}").splitlines()
    assert sorted(deleted) == [f'service "{name}" deleted from default namespace' for name in
                               ("clusterip", "loadbalancer", "loadbalancer-nlb",
                                "nodeport")]
    out = lab.kubectl("delete", "deployment", APP)
    assert out.startswith(f'deployment.apps "{APP}" deleted')
    wait_for("the pods gone", lambda: lab.kubectl(
        "get", "pods", "-l", f"app={APP}", "-o", "name") == "", timeout=30)
    assert lab.kubectl("get", "svc", "-o", "name").split() == ["service/kubernetes"]
