"""kubernetes.io "Connecting Applications with Services" (content/en/docs/
tutorials/services/connect-applications-service.md), replayed step by step in
one lab.

Each test is one section of the tutorial, run with the page's own manifests
(written here in block YAML) and commands: kubectl through `svclab kubectl`,
the "from any node" `curl`s through `svclab exec NODE`, the internet side
from the lab's `client`.  The checks are the outcomes the page states, by
shape: two nginx pods with cluster-wide addresses and no NAT rule for them,
a Service whose endpoints are those pods, service environment variables only
in pods started after the Service, the name in cluster DNS, nginx serving
HTTPS from a self-signed certificate in a Secret and a site in a ConfigMap,
and the same Service reached on the nodes' public addresses (NodePort) and
through the AWS-style ELB whose host name is its EXTERNAL-IP.

The tests share the module's lab and run in file order, as the page's steps do.
"""
from __future__ import annotations

import base64
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
POD_CIDR = ipaddress.ip_network("192.168.0.0/16")
SERVICE_CIDR = ipaddress.ip_network("10.96.0.0/12")
PUBLIC_IPS = ipaddress.ip_network("198.51.100.0/24")
WELCOME = "<title>Welcome to nginx!</title>"
ELB_HOST = re.compile(r"[0-9a-f]{32}-\d+\.us-east-1\.elb\.amazonaws\.com")

RUN_MY_NGINX = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: my-nginx
spec:
  selector:
    matchLabels:
      run: my-nginx
  replicas: 2
  template:
    metadata:
      labels:
        run: my-nginx
    spec:
      containers:
      - name: my-nginx
        image: nginx
        ports:
        - containerPort: 80
"""

# The https-nginx example's site: plain HTTP on 80 (IPv4 and IPv6), TLS on 443
# with the Secret's key pair.
DEFAULT_CONF = """\
server {
        listen 80 default_server;
        listen [::]:80 default_server ipv6only=on;

        listen 443 ssl;

        root /usr/share/nginx/html;
        index index.html;

        server_name localhost;
        ssl_certificate /etc/nginx/ssl/tls.crt;
        ssl_certificate_key /etc/nginx/ssl/tls.key;

        location / {
                try_files $uri $uri/ =404;
        }
}
"""

NGINX_SECURE_APP = """\
apiVersion: v1
kind: Service
metadata:
  name: my-nginx
  labels:
    run: my-nginx
spec:
  type: NodePort
  ports:
  - port: 8080
    targetPort: 80
    protocol: TCP
    name: http
  - port: 443
    protocol: TCP
    name: https
  selector:
    run: my-nginx
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: my-nginx
spec:
  selector:
    matchLabels:
      run: my-nginx
  replicas: 1
  template:
    metadata:
      labels:
        run: my-nginx
    spec:
      volumes:
      - name: secret-volume
        secret:
          secretName: nginxsecret
      - name: configmap-volume
        configMap:
          name: nginxconfigmap
      containers:
      - name: nginxhttps
        image: bprashanth/nginxhttps:1.0
        ports:
        - containerPort: 443
        - containerPort: 80
        volumeMounts:
        - mountPath: /etc/nginx/ssl
          name: secret-volume
        - mountPath: /etc/nginx/conf.d
          name: configmap-volume
"""

CURLPOD = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: curl-deployment
spec:
  selector:
    matchLabels:
      app: curlpod
  replicas: 1
  template:
    metadata:
      labels:
        app: curlpod
    spec:
      volumes:
      - name: secret-volume
        secret:
          secretName: nginxsecret
      containers:
      - name: curlpod
        command:
        - sh
        - -c
        - while true; do sleep 1; done
        image: docker.io/curlimages/curl:8.18.0
        volumeMounts:
        - mountPath: /etc/nginx/ssl
          name: secret-volume
"""


class Lab:
    """kubectl through `svclab kubectl` (with a private HOME and working
    folder, where the page's files are) and commands on lab hosts."""

    def __init__(self, name: str, folder: Path):
        self.name = name
        self.folder = folder
        self.env = {**os.environ, "HOME": str(folder)}

    def run(self, *args: str, input: str | None = None, env: dict | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess:
        argv = [sys.executable, "-m", "svclab.cli", "kubectl", "--name", self.name, *args]
        return subprocess.run(argv, capture_output=True, text=True, input=input,
                              env={**self.env, **(env or {})}, cwd=self.folder,
                              timeout=timeout)

    def kubectl(self, *args: str, input: str | None = None, env: dict | None = None) -> str:
        proc = self.run(*args, input=input, env=env)
        assert proc.returncode == 0, f"kubectl {' '.join(args)}: {proc.stderr}"
        return proc.stdout

    def on(self, host: str, *cmd: str, check: bool = True) -> str:
        return svclab("exec", "--name", self.name, host, "--", *cmd, check=check).stdout

    def field(self, kind: str, name: str, path: str) -> str:
        return self.kubectl("get", kind, name, "-o", f"jsonpath={{{path}}}")

    def running(self, selector: str, count: int) -> dict[str, str] | None:
        """{pod name: pod IP} once exactly `count` pods (and no others) run ready."""
        out = self.kubectl("get", "pods", "-l", selector, "-o",
                           "jsonpath={range .items[*]}{.metadata.name} {.status.phase} "
                           "{.status.containerStatuses[0].ready} {.status.podIP}{'\\n'}{end}")
        rows = [line.split() for line in out.splitlines()]
        ready = {r[0]: r[3] for r in rows if len(r) == 4 and r[1:3] == ["Running", "true"]}
        return ready if len(ready) == count == len(rows) else None

    def service_env(self, pod: str) -> dict[str, str]:
        """`kubectl exec POD -- printenv | grep SERVICE`, as a dict."""
        lines = [x for x in self.kubectl("exec", pod, "--", "printenv").splitlines()
                 if "SERVICE" in x]
        return dict(line.split("=", 1) for line in lines)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with running_lab(prefix="connapp") as running:
        yield Lab(running.name, tmp_path_factory.mktemp("page"))


def table(out: str) -> list[dict[str, str]]:
    """kubectl's table as rows keyed by header (columns split on 2+ spaces)."""
    lines = out.strip().splitlines()
    header = re.split(r"\s{2,}", lines[0].strip())
    return [dict(zip(header, re.split(r"\s{2,}", line.strip()))) for line in lines[1:]]


def pod_ips_column(out: str) -> list[str]:
    """The IPs of `-o custom-columns=POD_IP:.status.podIPs` ([map[ip:...]] rows)."""
    lines = out.strip().splitlines()
    assert lines[0].strip() == "POD_IP"
    return [re.fullmatch(r"\[map\[ip:(\S+)\]\]", line.strip()).group(1) for line in lines[1:]]


# --- Exposing pods to the cluster --------------------------------------------------

def test_two_nginx_pods_get_cluster_wide_addresses(lab):
    (lab.folder / "run-my-nginx.yaml").write_text(RUN_MY_NGINX)
    assert lab.kubectl("apply", "-f", "./run-my-nginx.yaml").strip() == \
        "deployment.apps/my-nginx created"
    pods = wait_for("2 nginx pods", lambda: lab.running("run=my-nginx", 2), timeout=60)
    rows = table(lab.kubectl("get", "pods", "-l", "run=my-nginx", "-o", "wide"))
    assert {r["NAME"]: r["IP"] for r in rows} == pods
    for row in rows:
        assert (row["READY"], row["STATUS"]) == ("1/1", "Running")
        assert ipaddress.ip_address(row["IP"]) in POD_CIDR
        assert re.fullmatch(r"ip-172-31-0-1\d", row["NODE"])
    ips = pod_ips_column(lab.kubectl("get", "pods", "-l", "run=my-nginx", "-o",
                                     "custom-columns=POD_IP:.status.podIPs"))
    assert sorted(ips) == sorted(pods.values())


def test_any_node_reaches_both_pods_without_nat_rules(lab):
    pods = lab.running("run=my-nginx", 2)
    for ip in pods.values():
        assert WELCOME in lab.on(NODE, "curl", "-s", f"http://{ip}")
    # not port 80 of the node, and no NAT rule that names a pod
    nat = lab.on(NODE, "iptables-save", "-t", "nat")
    assert not any(ip in nat for ip in pods.values())
    refused = svclab("exec", "--name", lab.name, NODE, "--", "curl", "-s", "--max-time", "2",
                     "http://127.0.0.1:80", check=False)
    assert refused.returncode == 7                # curl: could not connect


# --- Creating a Service ------------------------------------------------------------

def test_expose_creates_a_service_whose_endpoints_are_the_pods(lab):
    pods = lab.running("run=my-nginx", 2)
    assert lab.kubectl("expose", "deployment/my-nginx").strip() == "service/my-nginx exposed"
    [row] = table(lab.kubectl("get", "svc", "my-nginx"))
    assert (row["TYPE"], row["EXTERNAL-IP"], row["PORT(S)"]) == ("ClusterIP", "<none>",
                                                                 "80/TCP")
    cluster_ip = row["CLUSTER-IP"]
    assert ipaddress.ip_address(cluster_ip) in SERVICE_CIDR
    expected = ",".join(sorted(f"{ip}:80" for ip in pods.values()))

    def described():
        out = lab.kubectl("describe", "svc", "my-nginx")
        fields = dict(re.findall(r"^([A-Za-z ]+):\s+(.*)$", out, re.M))
        return fields if fields.get("Endpoints") == expected else None

    fields = wait_for("describe svc with both endpoints", described, timeout=10)
    assert fields["Selector"] == "run=my-nginx" and fields["Type"] == "ClusterIP"
    assert fields["IP"] == fields["IPs"] == cluster_ip
    assert fields["IP Family Policy"] == "SingleStack" and fields["IP Families"] == "IPv4"
    assert re.fullmatch(r"<unset>\s+80/TCP", fields["Port"])
    assert fields["TargetPort"] == "80/TCP" and fields["Session Affinity"] == "None"
    [row] = table(lab.kubectl("get", "endpointslices", "-l",
                              "kubernetes.io/service-name=my-nginx"))
    assert row["NAME"].startswith("my-nginx-")
    assert (row["ADDRESSTYPE"], row["PORTS"]) == ("IPv4", "80")
    assert sorted(row["ENDPOINTS"].split(",")) == sorted(pods.values())


def test_the_service_ip_answers_from_any_node(lab):
    cluster_ip = lab.field("svc", "my-nginx", ".spec.clusterIP")
    for node in ("ip-172-31-0-10", "ip-172-31-0-11", "ip-172-31-0-12"):
        assert WELCOME in lab.on(node, "curl", "-s", f"http://{cluster_ip}:80")


# --- Accessing the Service: environment variables ---------------------------------

def test_pods_started_before_the_service_have_no_variables_for_it(lab):
    for pod in lab.running("run=my-nginx", 2):
        env = lab.service_env(pod)
        assert env == {"KUBERNETES_SERVICE_HOST": "10.96.0.1",
                       "KUBERNETES_SERVICE_PORT": "443",
                       "KUBERNETES_SERVICE_PORT_HTTPS": "443"}


def test_pods_started_after_the_service_have_its_variables(lab):
    before = set(lab.running("run=my-nginx", 2))
    lab.kubectl("scale", "deployment", "my-nginx", "--replicas=0")
    lab.kubectl("scale", "deployment", "my-nginx", "--replicas=2")
    pods = wait_for("2 new nginx pods", lambda: (
        p if (p := lab.running("run=my-nginx", 2)) and not set(p) & before else None),
        timeout=60)
    rows = table(lab.kubectl("get", "pods", "-l", "run=my-nginx", "-o", "wide"))
    assert {r["NAME"] for r in rows} == set(pods)        # different names: new pods
    cluster_ip = lab.field("svc", "my-nginx", ".spec.clusterIP")
    for pod in pods:
        env = lab.service_env(pod)
        assert env["MY_NGINX_SERVICE_HOST"] == cluster_ip
        assert env["MY_NGINX_SERVICE_PORT"] == "80"
        assert env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"


# --- Accessing the Service: DNS -------------------------------------------------------

def test_the_cluster_dns_service_runs(lab):
    [row] = table(lab.kubectl("get", "services", "kube-dns", "--namespace=kube-system"))
    assert (row["NAME"], row["TYPE"], row["CLUSTER-IP"]) == ("kube-dns", "ClusterIP",
                                                             "10.96.0.10")
    assert row["PORT(S)"].startswith("53/UDP,53/TCP")


def test_a_busybox_pod_resolves_the_service_name(lab):
    cluster_ip = lab.field("svc", "my-nginx", ".spec.clusterIP")
    # The page's interactive session, the command typed into the pod's shell
    # (on stdin: the test has no terminal to give --tty).
    proc = lab.run("run", "-i", "--image", "busybox:1.37", "dns-test",
                   "--restart=Never", "--rm", input="nslookup my-nginx\nexit\n", timeout=90)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.replace("\r\n", "\n")          # a terminal's line ends
    assert re.search(r"^Server:\s+10\.96\.0\.10$", out, re.M), out
    answers = re.findall(r"^Name:\s+(\S+)\nAddress:\s+(\S+)$", out, re.M)
    assert answers == [("my-nginx.default.svc.cluster.local", cluster_ip)]
    assert lab.run("get", "pod", "dns-test").returncode == 1     # --rm removed it


# --- Securing the Service ----------------------------------------------------------

def test_a_tls_secret_and_a_configmap_hold_the_certificate_and_the_site(lab):
    folder = lab.folder
    subprocess.run(["openssl", "req", "-x509", "-nodes", "-days", "365", "-newkey",
                    "rsa:2048", "-keyout", str(folder / "nginx.key"), "-out",
                    str(folder / "nginx.crt"), "-subj", "/CN=my-nginx/O=my-nginx"],
                   check=True, capture_output=True, timeout=60)
    assert lab.kubectl("create", "secret", "tls", "nginxsecret", "--key",
                       str(folder / "nginx.key"), "--cert",
                       str(folder / "nginx.crt")).strip() == "secret/nginxsecret created"
    rows = {r["NAME"]: r for r in table(lab.kubectl("get", "secrets"))}
    assert (rows["nginxsecret"]["TYPE"], rows["nginxsecret"]["DATA"]) == \
        ("kubernetes.io/tls", "2")
    (folder / "default.conf").write_text(DEFAULT_CONF)
    assert lab.kubectl("create", "configmap", "nginxconfigmap",
                       "--from-file=default.conf").strip() == \
        "configmap/nginxconfigmap created"
    rows = {r["NAME"]: r for r in table(lab.kubectl("get", "configmaps"))}
    assert rows["nginxconfigmap"]["DATA"] == "1"
    described = lab.kubectl("describe", "configmap", "nginxconfigmap")
    assert re.search(r"^Name:\s+nginxconfigmap$", described, re.M)
    assert f"Data\n====\ndefault.conf:\n----\n{DEFAULT_CONF}" in described
    assert "\nBinaryData\n====\n" in described


def test_the_same_secret_from_a_manifest_with_base64_data(lab):
    """The page's manual route: the key pair base64-encoded into a Secret manifest."""
    crt, key = (base64.b64encode((lab.folder / f).read_bytes()).decode()
                for f in ("nginx.crt", "nginx.key"))
    (lab.folder / "nginxsecrets.yaml").write_text(
        'apiVersion: "v1"\nkind: "Secret"\nmetadata:\n  name: "nginxsecret"\n'
        f'  namespace: "default"\ntype: kubernetes.io/tls\ndata:\n'
        f'  tls.crt: "{crt}"\n  tls.key: "{key}"\n')
    lab.kubectl("apply", "-f", "nginxsecrets.yaml")
    rows = {r["NAME"]: r for r in table(lab.kubectl("get", "secrets"))}
    assert (rows["nginxsecret"]["TYPE"], rows["nginxsecret"]["DATA"]) == \
        ("kubernetes.io/tls", "2")
    assert lab.field("secret", "nginxsecret", "['data']['tls\\.crt']") == crt


def test_nginx_serves_https_with_the_secrets_certificate(lab):
    (lab.folder / "nginx-secure-app.yaml").write_text(NGINX_SECURE_APP)
    lab.kubectl("delete", "deployments,svc", "my-nginx")
    out = lab.kubectl("create", "-f", "./nginx-secure-app.yaml")
    assert out.split() == ["service/my-nginx", "created", "deployment.apps/my-nginx",
                           "created"]
    pods = wait_for("the https nginx", lambda: lab.running("run=my-nginx", 1), timeout=60)
    [ip] = pod_ips_column(lab.kubectl("get", "pods", "-l", "run=my-nginx", "-o",
                                      "custom-columns=POD_IP:.status.podIPs"))
    assert [ip] == list(pods.values())
    assert "<h1>Welcome to nginx!</h1>" in lab.on(NODE, "curl", "-k", "-s", f"https://{ip}")


def test_a_pod_with_the_certificate_verifies_the_service_name(lab):
    (lab.folder / "curlpod.yaml").write_text(CURLPOD)
    lab.kubectl("apply", "-f", "./curlpod.yaml")
    [pod] = wait_for("the curl pod", lambda: lab.running("app=curlpod", 1), timeout=60)
    [row] = table(lab.kubectl("get", "pods", "-l", "app=curlpod"))
    assert (row["NAME"], row["READY"], row["STATUS"]) == (pod, "1/1", "Running")
    page = lab.kubectl("exec", pod, "--", "curl", "-s", "https://my-nginx", "--cacert",
                       "/etc/nginx/ssl/tls.crt")
    assert WELCOME in page
    # and without the certificate, curl refuses the self-signed one
    proc = lab.run("exec", pod, "--", "curl", "-s", "https://my-nginx")
    assert proc.returncode != 0


# --- Exposing the Service ------------------------------------------------------------

def test_the_nodeport_serves_https_on_the_nodes_public_addresses(lab):
    lines = lab.kubectl("get", "svc", "my-nginx", "-o", "yaml").splitlines()
    assert any("nodePort" in line for line in lines)
    svc_ports = {p["name"]: p for p in _ports(lab)}
    assert (svc_ports["http"]["port"], svc_ports["http"]["targetPort"]) == (8080, 80)
    assert (svc_ports["https"]["port"], svc_ports["https"]["targetPort"]) == (443, 443)
    https_node_port = svc_ports["https"]["nodePort"]
    assert 30000 <= https_node_port <= 32767
    nodes = lab.kubectl("get", "nodes", "-o", "yaml")
    external = re.findall(r"- address: (\S+)\n\s+type: ExternalIP", nodes)
    assert len(external) == 3
    assert all(ipaddress.ip_address(ip) in PUBLIC_IPS for ip in external)
    for ip in external:
        page = lab.on("client", "curl", "-s", "--max-time", "5", f"https://{ip}:{https_node_port}",
                      "-k")
        assert "<h1>Welcome to nginx!</h1>" in page


def test_a_loadbalancer_service_is_reached_through_the_elb_host_name(lab):
    # `kubectl edit`, with an editor that changes the type as a user would
    lab.kubectl("edit", "svc", "my-nginx",
                env={"KUBE_EDITOR": "sed -i s/type:\\ NodePort/type:\\ LoadBalancer/"})

    def listed():
        [row] = table(lab.kubectl("get", "svc", "my-nginx"))
        return row if ELB_HOST.fullmatch(row["EXTERNAL-IP"]) else None

    row = wait_for("the ELB's host name in EXTERNAL-IP", listed, timeout=30)
    assert row["TYPE"] == "LoadBalancer"
    assert re.fullmatch(r"8080:\d{5}/TCP,443:\d{5}/TCP", row["PORT(S)"])
    described = lab.kubectl("describe", "service", "my-nginx")
    assert re.search(rf"^LoadBalancer Ingress:\s+{re.escape(row['EXTERNAL-IP'])}",
                     described, re.M)
    page = wait_for("nginx through the ELB", lambda: (
        out if WELCOME in (out := lab.on("client", "curl", "-s", "--max-time", "2",
                                         f"https://{row['EXTERNAL-IP']}", "-k",
                                         check=False)) else None), timeout=30)
    assert WELCOME in page
    # the ClusterIP is only for inside the cluster
    cluster_ip = row["CLUSTER-IP"]
    assert lab.on("client", "curl", "-s", "--max-time", "2", f"http://{cluster_ip}:8080",
                  check=False) == ""


def _ports(lab) -> list[dict]:
    return json.loads(lab.kubectl("get", "svc", "my-nginx", "-o", "json"))["spec"]["ports"]
