"""NetworkPolicy as a user checks it: the netpol experiment's quick run through the
CLI (both proxy modes: every cell of every truth table agrees with the evaluator,
an open connection survives a policy update, the NodePort/ipBlock interplay is
what SNAT predicts) and `svclab probe matrix --policy` on a small lab: the
table with a deny policy in place, and a disagreement reported (exit 1) when a
pod drops its own traffic behind the policies' back."""
from __future__ import annotations

import csv
import json

import pytest

import labtools
from labtools import admin_client, running_lab, svclab

pytestmark = [pytest.mark.root, pytest.mark.e2e]

CLIENT = "203.0.113.100"
N10, N11, N12 = "ip-172-31-0-10", "ip-172-31-0-11", "ip-172-31-0-12"


def rows(path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_netpol_quick_run_agrees_in_both_proxy_modes(tmp_path):
    out = tmp_path / "netpol"
    proc = svclab("experiment", "run", "netpol", "--quick", "--out", str(out), timeout=300)
    assert proc.stdout.startswith("# NetworkPolicy")
    for name in ("summary.md", "meta.json", "netpol_cells.csv", "netpol_cases.json",
                 "netpol_matrices.md", "netpol_interplay.csv"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "netpol_agreement.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    records = json.loads((out / "netpol_cases.json").read_text())
    matrices = [r for r in records if "total" in r]
    assert {r["mode"] for r in matrices} == {"iptables", "nftables"}
    for record in matrices:
        assert record["total"] > 0 and record["agree"] == record["total"], record
    cells = rows(out / "netpol_cells.csv")
    assert cells and all(c["agree"] == "True" for c in cells)
    denied = {(c["mode"], c["case"]) for c in cells if c["expected"] == "denied"}
    assert ("nftables", "deny-ingress-x") in denied and ("iptables", "egress-dns-only") in denied
    lookups = [c for c in cells if c["target"].startswith("lookup")]
    assert lookups and all(c["outcome"] == "NOERROR" for c in lookups)

    updates = [r for r in records if "survived" in r]
    assert [u["mode"] for u in updates] == ["iptables", "nftables"]
    for update in updates:
        assert update["survived"] and update["new_from_holder"] == "dropped", update

    interplay = rows(out / "netpol_interplay.csv")
    assert len(interplay) == 2 * 8 and all(r["agree"] == "True" for r in interplay)
    guarded = {(r["mode"], r["etp"], r["via"]): r for r in interplay
               if r["policy"] != "no policy"}
    for mode in ("iptables", "nftables"):
        # the endpoint is on N11: entering via N12 under Cluster, the SNATed
        # packet no longer matches the client's ipBlock
        assert guarded[(mode, "Cluster", N12)]["observed"] == "dropped"
        assert guarded[(mode, "Cluster", N12)]["policy_sees"] == "172.31.0.12"
        assert guarded[(mode, "Local", N11)]["observed"] == "open"
        assert guarded[(mode, "Local", N11)]["pod_saw"] == CLIENT
    assert "SNATed to 172.31.0.12" in (out / "summary.md").read_text()


# --- svclab probe matrix --policy ----------------------------------------------------

MANIFESTS = [
    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "p", "labels": {"ns": "p"}}},
    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "q", "labels": {"ns": "q"}}},
    *({"apiVersion": "v1", "kind": "Pod",
       "metadata": {"name": name, "namespace": ns, "labels": {"pod": name}},
       "spec": {"nodeName": node, "terminationGracePeriodSeconds": 0,
                "containers": [{"name": "c", "image": "nginx",
                                "ports": [{"containerPort": 80}]}]}}
      for ns, name, node in (("p", "a", N11), ("p", "b", N12), ("q", "a", N11))),
    {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
     "metadata": {"name": "allow-q", "namespace": "p"},
     "spec": {"podSelector": {}, "policyTypes": ["Ingress"],
              "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "q"}}}]}]}},
]


@pytest.fixture(scope="module")
def lab():
    with running_lab(prefix="npm") as running:
        svclab("kubectl", "--name", running.name, "apply", "-f", "-",
               input="\n---\n".join(json.dumps(m) for m in MANIFESTS))
        client = admin_client(running.name)

        def running_pods():
            pods = [p for ns in ("p", "q") for p in client.list("pods", ns)[0]]
            return len(pods) == 3 and all(p["status"].get("phase") == "Running" for p in pods)
        labtools.wait_for("pods p/a, p/b, q/a running", running_pods, timeout=30)
        yield running


def matrix(lab, *extra, check=True):
    return svclab("probe", "matrix", "--policy", "--name", lab.name, "-n", "p", "-n", "q",
                  *extra, check=check)


def agreeing_matrix(lab):
    proc = matrix(lab, check=False)
    return proc if proc.returncode == 0 else None


def test_probe_matrix_policy_prints_the_truth_table(lab):
    proc = labtools.wait_for("a matrix that agrees", lambda: agreeing_matrix(lab), timeout=20)
    lines = proc.stdout.splitlines()
    assert lines[:4] == ["80/TCP  p/a p/b q/a",
                         "p/a     .   X   .",
                         "p/b     X   .   .",
                         "q/a     .   .   ."]
    assert lines[-1].startswith("9 of 9 cells agree (3 pods")
    data = json.loads(matrix(lab, "--json").stdout)
    assert (data["agree"], data["total"], data["ok"]) == (9, 9, True)
    cell = next(c for c in data["cells"] if (c["source"], c["target"]) == ("p/b", "p/a"))
    assert cell["expected"] == cell["observed"] == "denied" and cell["outcome"] == "dropped"
    assert "p/allow-q" in cell["reasons"]["ingress"]


def test_probe_matrix_policy_marks_cells_the_policies_do_not_explain(lab):
    # p/a drops its own outgoing web traffic: nothing the policies say
    lab.exec("a", "iptables", "-A", "OUTPUT", "-o", "eth0", "-p", "tcp", "--dport", "80",
             "-j", "DROP", namespace="p")
    proc = matrix(lab, "--port", "80/TCP", check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[1] == "p/a     .   X   X!"
    assert "8 of 9 cells agree" in proc.stdout
    assert "! p/a -> q/a 80/TCP: observed denied (dropped), expected allowed" in proc.stdout
