"""The lab's API server as a user meets it: the bundled kubectl from the host,
and the control-plane node's :6443 from inside the lab."""
from __future__ import annotations

import os
import stat
import sys

import pytest

from labtools import svclab

pytestmark = [pytest.mark.root, pytest.mark.e2e]


def test_kubectl_sees_the_seed_cluster(lab):
    svc = svclab("kubectl", "--name", lab.name, "get", "svc").stdout.splitlines()
    assert svc[0].split() == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    assert svc[1].split()[:5] == ["kubernetes", "ClusterIP", "10.96.0.1", "<none>", "443/TCP"]
    ep = svclab("kubectl", "--name", lab.name, "get", "ep").stdout.splitlines()
    assert ep[1].split()[:2] == ["kubernetes", "172.31.0.10:6443"]
    nodes = svclab("kubectl", "--name", lab.name, "get", "nodes", "-o", "wide").stdout
    rows = {line.split()[0]: line.split() for line in nodes.splitlines()[1:]}
    assert rows["ip-172-31-0-10"][1:3] == ["Ready", "control-plane"]
    assert rows["ip-172-31-0-11"][2] == "<none>"
    for name, internal, external in (("ip-172-31-0-10", "172.31.0.10", "198.51.100.10"),
                                     ("ip-172-31-0-12", "172.31.0.12", "198.51.100.12")):
        assert rows[name][5:7] == [internal, external]


def test_kubeconfig_is_root_only(lab):
    path = svclab("kubeconfig", "--name", lab.name).stdout.strip()
    mode = stat.S_IMODE(os.stat(path).st_mode)
    assert mode == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700


def test_control_plane_serves_the_api_on_6443_inside_the_lab(lab):
    """From a worker: TLS on 172.31.0.10:6443, and no credentials means 401."""
    code = ("import json, ssl, urllib.request, urllib.error\n"
            "ctx = ssl.create_default_context(); ctx.check_hostname = False\n"
            "ctx.verify_mode = ssl.CERT_NONE\n"
            "try:\n"
            "    urllib.request.urlopen('https://172.31.0.10:6443/api/v1/namespaces/default/"
            "services', context=ctx, timeout=5)\n"
            "except urllib.error.HTTPError as err:\n"
            "    print(err.code, json.load(err)['reason'])\n")
    out = lab.exec("ip-172-31-0-11", sys.executable, "-c", code).stdout.split()
    assert out == ["401", "Unauthorized"]


def test_kubectl_errors_pass_through_with_kubectls_exit_code(lab):
    proc = svclab("kubectl", "--name", lab.name, "get", "svc", "nope", check=False)
    assert proc.returncode == 1
    assert 'services "nope" not found' in proc.stderr
