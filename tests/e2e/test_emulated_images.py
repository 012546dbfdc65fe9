"""Images that behave like themselves, and nodes that look like nodes, end to end.

One lab for the module.  Each test does what a kubernetes.io page does with
the image and checks what the page says it shows: serve_hostname's name on
9376 behind a Service ("Debug Services"), echoserver's CLIENT VALUES with the
calling pod's address ("Using Source IP"), a busybox shell's wget and
nslookup, nginx's welcome page and its access log in `kubectl logs`, nginx
serving HTTPS from a mounted ConfigMap and Secret ("Connecting Applications
with Services"), agnhost netexec's UDP side through a Service; and on a
node, kube-proxy's /proxyMode and its name in `ps`.
"""
from __future__ import annotations

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
NODE = "ip-172-31-0-11"

NGINX_HTTPS_SITE = """\
server {
    listen 80 default_server;
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


class Lab:
    def __init__(self, name: str, home: Path):
        self.name = name
        self.env = {**os.environ, "HOME": str(home)}
        self.kubeconfig = str(LabPaths(name).kubeconfig)

    def kubectl(self, *args: str, check: bool = True, input: str | None = None,
                timeout: float = 60) -> str:
        proc = subprocess.run([str(KUBECTL), "--kubeconfig", self.kubeconfig, *args],
                              capture_output=True, text=True, env=self.env, input=input,
                              timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {proc.stderr}")
        return proc.stdout

    def shell(self, *cmd: str) -> str:
        """A command in the busybox `shell` pod, through kubectl exec."""
        return self.kubectl("exec", "shell", "--", *cmd)

    def field(self, kind: str, name: str, path: str) -> str:
        return self.kubectl("get", kind, name, "-o", f"jsonpath={{{path}}}")

    def running(self, selector: str, count: int) -> list[str]:
        out = self.kubectl("get", "pods", "-l", selector, "-o",
                           "jsonpath={range .items[*]}{.metadata.name} {.status.phase} "
                           "{.status.containerStatuses[0].ready}{'\\n'}{end}")
        ready = [line.split()[0] for line in out.splitlines()
                 if line.split()[1:] == ["Running", "true"]]
        return ready if len(ready) == count else []


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with running_lab(prefix="img") as running:
        lab = Lab(running.name, tmp_path_factory.mktemp("home"))
        lab.kubectl("run", "shell", "--image=busybox", "--", "sleep", "3600")
        wait_for("the busybox shell", lambda: lab.running("run=shell", 1), timeout=60)
        yield lab


def test_serve_hostname_answers_its_pod_name_behind_a_service(lab):
    lab.kubectl("create", "deployment", "hostnames", "--image=registry.k8s.io/serve_hostname",
                "--replicas=3")
    lab.kubectl("expose", "deployment", "hostnames", "--port=80", "--target-port=9376")
    pods = wait_for("3 hostnames pods", lambda: lab.running("app=hostnames", 3), timeout=60)
    ip = lab.field("pod", pods[0], ".status.podIP")
    assert lab.shell("wget", "-qO-", f"{ip}:9376") == pods[0]
    seen = wait_for("two backends answering through the Service", lambda: (
        names if len(names := {lab.shell("wget", "-qO-", "hostnames")
                               for _ in range(8)}) >= 2 else None), timeout=30)
    assert seen <= set(pods)
    shell_ip = lab.field("pod", "shell", ".status.podIP")
    assert re.search(rf"HTTP request from {re.escape(shell_ip)}:\d+",
                     lab.kubectl("logs", pods[0]))


def test_busybox_resolves_and_fetches_a_service_by_name(lab):
    wait_for("hostnames' endpoints", lambda: lab.running("app=hostnames", 3), timeout=60)
    cluster_ip = lab.field("svc", "hostnames", ".spec.clusterIP")
    answer = lab.shell("nslookup", "hostnames")
    assert "Name:\thostnames.default.svc.cluster.local" in answer
    assert f"Address: {cluster_ip}" in answer
    assert lab.shell("wget", "-qO-", "hostnames.default.svc.cluster.local").startswith(
        "hostnames-")


def test_echoserver_shows_the_calling_pods_address(lab):
    lab.kubectl("create", "deployment", "source-ip-app",
                "--image=registry.k8s.io/echoserver:1.4")
    lab.kubectl("expose", "deployment", "source-ip-app", "--name=clusterip", "--port=80",
                "--target-port=8080")
    wait_for("the echoserver", lambda: lab.running("app=source-ip-app", 1), timeout=60)
    shell_ip = lab.field("pod", "shell", ".status.podIP")
    answer = lab.shell("wget", "-qO", "-", "clusterip")
    assert answer.startswith(f"CLIENT VALUES:\nclient_address={shell_ip}\ncommand=GET\n"
                             "real path=/\n")
    assert "SERVER VALUES:\nserver_version=nginx: 1.10.0 - lua: 10001\n" in answer
    assert "\nHEADERS RECEIVED:\n" in answer and answer.endswith("BODY:\n-no body in request-")


def test_nginx_serves_its_welcome_page_and_logs_each_request(lab):
    lab.kubectl("create", "deployment", "my-nginx", "--image=nginx", "--port=80")
    lab.kubectl("expose", "deployment", "my-nginx")
    [pod] = wait_for("nginx", lambda: lab.running("app=my-nginx", 1), timeout=60)
    assert "<title>Welcome to nginx!</title>" in lab.shell("wget", "-qO-", "my-nginx")
    shell_ip = lab.field("pod", "shell", ".status.podIP")
    line = wait_for("the access-log line", lambda: next(
        (x for x in lab.kubectl("logs", pod).splitlines() if '"GET / HTTP/1.1" 200' in x),
        None))
    assert re.match(rf'{re.escape(shell_ip)} - - \[[^]]+\] "GET / HTTP/1.1" 200 \d+ "-" '
                    r'"Wget/[\d.]+" "-"$', line), line
    assert "start worker process" in lab.kubectl("logs", pod)      # nginx's own notices


def test_nginx_serves_https_from_a_mounted_configmap_and_secret(lab, tmp_path):
    key, cert = tmp_path / "nginx.key", tmp_path / "nginx.crt"
    subprocess.run(["openssl", "req", "-x509", "-nodes", "-days", "2", "-newkey", "rsa:2048",
                    "-keyout", str(key), "-out", str(cert), "-subj",
                    "/CN=my-nginx/O=my-nginx"], check=True, capture_output=True, timeout=60)
    (tmp_path / "default.conf").write_text(NGINX_HTTPS_SITE)
    lab.kubectl("create", "secret", "tls", "nginxsecret", "--key", str(key), "--cert",
                str(cert))
    lab.kubectl("create", "configmap", "nginxconfigmap",
                f"--from-file={tmp_path / 'default.conf'}")
    lab.kubectl("apply", "-f", "-", input="""
apiVersion: apps/v1
kind: Deployment
metadata: {name: secure-nginx}
spec:
  selector: {matchLabels: {run: secure-nginx}}
  template:
    metadata: {labels: {run: secure-nginx}}
    spec:
      volumes:
      - {name: secret-volume, secret: {secretName: nginxsecret}}
      - {name: configmap-volume, configMap: {name: nginxconfigmap}}
      containers:
      - name: nginxhttps
        image: bprashanth/nginxhttps:1.0
        ports: [{containerPort: 443}, {containerPort: 80}]
        volumeMounts:
        - {mountPath: /etc/nginx/ssl, name: secret-volume}
        - {mountPath: /etc/nginx/conf.d, name: configmap-volume}
""")
    [pod] = wait_for("nginx with TLS", lambda: lab.running("run=secure-nginx", 1), timeout=60)
    ip = lab.field("pod", pod, ".status.podIP")
    page = lab.shell("curl", "-sk", f"https://{ip}/")
    assert "<title>Welcome to nginx!</title>" in page
    subject = lab.shell("sh", "-c", f"openssl s_client -connect {ip}:443 </dev/null "
                                    "2>/dev/null | grep -m1 '^subject='")
    assert "CN = my-nginx" in subject or "CN=my-nginx" in subject
    assert lab.kubectl("exec", pod, "--", "cat", "/etc/nginx/conf.d/default.conf") == \
        NGINX_HTTPS_SITE


def test_agnhost_netexec_answers_udp_through_a_service(lab):
    lab.kubectl("create", "deployment", "netexec",
                "--image=registry.k8s.io/e2e-test-images/agnhost:2.39", "--", "/agnhost",
                "netexec", "--http-port=8080", "--udp-port=8081")
    lab.kubectl("apply", "-f", "-", input="""
apiVersion: v1
kind: Service
metadata: {name: netexec}
spec:
  selector: {app: netexec}
  ports:
  - {name: http, port: 80, targetPort: 8080}
  - {name: udp, port: 90, targetPort: 8081, protocol: UDP}
""")
    [pod] = wait_for("netexec", lambda: lab.running("app=netexec", 1), timeout=60)
    assert lab.shell("wget", "-qO-", "netexec/hostname") == pod
    shell_ip = lab.field("pod", "shell", ".status.podIP")
    assert lab.shell("wget", "-qO-", "netexec/clientip").startswith(f"{shell_ip}:")
    answer = wait_for("a UDP answer", lambda: lab.shell(
        "sh", "-c", "echo hostname | nc -u -w1 netexec 90") or None, timeout=20)
    assert answer == pod


def test_busybox_without_a_command_exits_as_its_shell_does(lab):
    lab.kubectl("run", "no-command", "--image=busybox", "--restart=Never")
    wait_for("the pod to complete", lambda: lab.field(
        "pod", "no-command", ".status.phase") == "Succeeded", timeout=60)
    assert lab.field("pod", "no-command",
                     ".status.containerStatuses[0].state.terminated.exitCode") == "0"


def test_a_node_runs_kube_proxy_and_answers_its_proxy_mode(lab):
    mode = svclab("exec", "--name", lab.name, NODE, "--", "curl", "-s",
                  "localhost:10249/proxyMode").stdout
    assert mode == "iptables"
    ps = svclab("exec", "--name", lab.name, NODE, "--", "ps", "auxw").stdout
    assert re.search(r"^root .* \d+:\d\d kube-proxy --kubeconfig ", ps, re.M), ps
    wide = svclab("exec", "--name", lab.name, NODE, "--", "ps", "auxww").stdout
    mine = [line for line in wide.splitlines() if " kube-proxy " in line
            and f"--node {NODE} " in line and f"/{lab.name}/" in line]
    assert len(mine) == 1, mine
    for tool in ("nslookup", "dig"):
        assert svclab("exec", "--name", lab.name, NODE, "--", "which", tool).stdout.strip()
