"""The NetworkPolicy truth table: pods and ports chosen, cells planned with the
evaluator's verdicts, probe outcomes read as allowed/denied, the table and JSON
a user sees."""
from __future__ import annotations

import pytest

from agents.policy.model import Cluster, Namespace, Pod, policy_from_k8s
from base.errors import UsageError
from probes.matrix import policy as policy_probe
from probes.matrix.policy_table import (
    PolicyCell,
    PolicyMatrix,
    observed_allowed,
    parse_port,
    plan_policy_cells,
    ports_of,
    render_table,
    select_pods,
)
from svclab.cli import build_parser


def pod(ns, name, ip, ports=(("http", 80, "TCP"),), phase="Running", **labels):
    return Pod(ns, name, ip, "ip-172-31-0-11", tuple(sorted({"pod": name, **labels}.items())),
               tuple(ports), phase)


def deny_ingress(ns):
    return policy_from_k8s({"metadata": {"name": "deny", "namespace": ns},
                            "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}})


X_A, X_B = pod("x", "a", "192.168.1.2"), pod("x", "b", "192.168.1.3")
Y_A = pod("y", "a", "192.168.2.2")
NAMESPACES = tuple(Namespace(n, (("ns", n),)) for n in ("x", "y", "kube-system"))


def cell(src, dst, expected, observed, port=80, outcome=None):
    return PolicyCell(src, dst, "192.168.1.2", port, "TCP", expected, "not isolated",
                      "not isolated", outcome or ("open" if observed else "dropped"), observed)


def test_port_arguments():
    assert parse_port("80") == (80, "TCP")
    assert parse_port("53/udp") == (53, "UDP")
    for bad in ("http", "0", "80/SCTP", "70000/TCP"):
        with pytest.raises(UsageError):
            parse_port(bad)


def test_pods_default_to_the_running_pods_of_non_system_namespaces():
    dns = pod("kube-system", "coredns-1", "192.168.0.2")
    pending = pod("x", "p", None, phase="Pending")
    done = pod("y", "job", "192.168.2.9", phase="Succeeded")
    pods = [Y_A, dns, X_B, pending, X_A, done]
    assert select_pods(pods) == [X_A, X_B, Y_A]
    assert select_pods(pods, ["y"]) == [Y_A]
    assert select_pods(pods, all_namespaces=True) == [dns, X_A, X_B, Y_A]


def test_ports_are_the_given_ones_or_the_destinations_container_ports():
    web = pod("x", "w", "192.168.1.5", ports=(("http", 80, "TCP"), ("dns", 53, "UDP"),
                                              ("sctp", 90, "SCTP"), ("alt", 80, "TCP")))
    assert ports_of(web, None) == [(80, "TCP"), (53, "UDP")]
    assert ports_of(web, [(81, "TCP"), (81, "TCP")]) == [(81, "TCP")]


def test_cells_carry_the_evaluators_verdict_and_reasons():
    cluster = Cluster((X_A, X_B, Y_A), NAMESPACES, (deny_ingress("x"),))
    cells = plan_policy_cells(cluster, [X_A, X_B, Y_A], [X_A, X_B, Y_A])
    assert len(cells) == 9
    verdicts = {(c.source.key, c.target.key): c for c in cells}
    into_b = verdicts[("y/a", "x/b")]
    assert not into_b.allowed and "x/deny" in into_b.ingress
    assert verdicts[("x/b", "y/a")].allowed
    assert verdicts[("x/a", "x/a")].allowed           # a pod to itself
    assert {(c.port, c.protocol) for c in cells} == {(80, "TCP")}


def test_a_reply_from_the_pod_means_the_packet_got_through():
    assert observed_allowed("open", "192.168.1.2", "192.168.1.2")
    assert observed_allowed("refused", "192.168.1.2", "192.168.1.2")
    assert observed_allowed("rejected", "192.168.1.2", "192.168.1.2", icmp_code=3)
    assert not observed_allowed("rejected", "172.31.0.11", "192.168.1.2", icmp_code=3)
    assert not observed_allowed("rejected", "192.168.1.2", "192.168.1.2", icmp_code=13)
    assert not observed_allowed("dropped", None, "192.168.1.2")


def test_table_rows_are_sources_and_columns_destinations():
    pods = ["x/a", "x/b"]
    lines = render_table("80/TCP", pods, [
        cell("x/a", "x/a", True, True), cell("x/a", "x/b", False, False),
        cell("x/b", "x/a", True, False)])
    assert lines == ["80/TCP  x/a x/b",
                     "x/a     .   X",
                     "x/b     X!  -"]


def test_long_names_number_the_columns():
    pods = ["default/web-1", "default/web-2"]
    lines = render_table("80/TCP", pods, [cell(s, t, True, True) for s in pods for t in pods])
    assert lines[0].split() == ["80/TCP", "1", "2"]
    assert lines[1].split() == ["1", "default/web-1", ".", "."]


def test_matrix_summary_and_json():
    cells = (cell("x/a", "x/b", False, False), cell("x/b", "x/a", False, True),
             cell("x/a", "x/b", True, True, port=81))
    matrix = PolicyMatrix("lab", ("x",), ("x/a", "x/b"), cells, 1.5)
    assert not matrix.ok and matrix.agree == 2
    text = matrix.render()
    assert "80/TCP" in text and "81/TCP" in text
    assert "2 of 3 cells agree (2 pods, 1.5 s)" in text
    assert "! x/b -> x/a 80/TCP: observed allowed (open), expected denied" in text
    data = matrix.to_json()
    assert (data["agree"], data["total"], data["ok"]) == (2, 3, False)
    assert data["cells"][1] == {
        "source": "x/b", "target": "x/a", "dst": "192.168.1.2", "port": 80,
        "protocol": "TCP", "expected": "denied", "observed": "allowed", "outcome": "open",
        "agree": False, "reasons": {"egress": "not isolated", "ingress": "not isolated"},
        "detail": ""}


def test_every_cell_agreeing_says_so():
    matrix = PolicyMatrix("lab", ("x",), ("x/a",), (cell("x/a", "x/a", True, True),))
    assert matrix.ok
    assert matrix.render().splitlines()[-1] == "1 of 1 cells agree"


def test_extra_destinations_get_numbered_columns_and_a_legend():
    dns = "kube-system/coredns-1"
    lines = render_table("53/TCP", ["x/a"], [cell("x/a", dns, True, True, port=53)],
                         ["x/a", dns])
    assert lines == ["53/TCP  1  2", "x/a     -  .", f"columns: 1 x/a, 2 {dns}"]


@pytest.mark.parametrize("argv", [["-n", "x", "-n", "y"], ["-A"], ["--port", "80"],
                                  ["--policy", "--port", "http"],
                                  ["--policy", "--timeout", "0"]])
def test_matrix_usage_errors_before_any_lab_is_touched(argv):
    args = build_parser().parse_args(["probe", "matrix", "--name", "nolab", *argv])
    with pytest.raises(UsageError):
        args.func(args)


def test_pods_without_container_ports_ask_for_ports_instead_of_an_empty_table(monkeypatch):
    bare = (pod("x", "a", "192.168.1.2", ports=()), pod("x", "b", "192.168.1.3", ports=()))
    monkeypatch.setattr(policy_probe.KubeClient, "from_kubeconfig", lambda path: None)
    monkeypatch.setattr(policy_probe, "load_cluster",
                        lambda client: Cluster(bare, NAMESPACES, ()))
    monkeypatch.setattr(policy_probe, "probe_planned", lambda *args: pytest.fail("probed"))
    with pytest.raises(UsageError, match="--port: nothing to probe.*--port 80/TCP"):
        policy_probe.run_policy_matrix("lab")
