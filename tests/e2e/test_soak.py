"""The soak, quick (~45 s of churn), through the experiment runner: a lab
under continuous change -- Deployments, Services, pods, NetworkPolicies
created and removed, a stable pod deleted, both agents of a node killed, a
worker cut off the VPC -- while three stable targets are probed all along.
No probe may fail outside the window of a fault that explains it, and once
the churn is cleaned up nothing of any kind may be left over: rules and
chains, conntrack entries, pod hosts, interfaces, namespaces, processes,
API objects, API server connections."""
from __future__ import annotations

import json

import pytest

from experiments import runner

pytestmark = [pytest.mark.root, pytest.mark.e2e]
TARGETS = {"stable-web", "stable-spread", "stable-web-nodeport"}


@pytest.fixture(scope="module")
def soak(tmp_path_factory):
    folder, summary = runner.run("soak", out=str(tmp_path_factory.mktemp("soak")),
                                 quick=True, seed=1)
    return folder, summary, json.loads((folder / "soak_result.json").read_text())


def test_no_probe_failed_outside_the_window_of_a_fault_that_explains_it(soak):
    _, _, result = soak
    probes = result["probes"]
    assert set(probes) == TARGETS
    for name, totals in probes.items():
        assert totals["unexplained"] == 0, (name, totals, result["unexplained_failures"],
                                            result["windows"])
        assert totals["probes"] > 200, (name, totals)       # 10 per second all along
    # the cut worker holds one of stable-spread's two endpoints: its probes
    # there time out until the node's endpoints leave, inside the cut's window
    assert probes["stable-spread"]["explained"] > 0
    assert probes["stable-web"]["failed"] == probes["stable-web-nodeport"]["failed"] == 0
    assert {w["kind"] for w in result["windows"]} == {
        "stable-pod-delete", "proxy-restart", "node-cut", "policy-restart"}


def test_nothing_is_left_over_after_the_churn(soak):
    _, _, result = soak
    leftovers = result["leftovers"]
    assert leftovers["total"] == 0, (
        {k: v for k, v in leftovers["counts"].items() if v}, leftovers["settling"],
        leftovers["details"])
    # the checks looked at something: every node's chains, the churn's conntrack
    rules = leftovers["details"]["rules"]
    assert len(rules) == 3 and all(n["proxy_chains"] > 10 for n in rules.values())
    assert result["actions"].get("create", 0) >= 3 and result["actions"].get("traffic", 0) >= 1


def test_it_writes_its_data_plots_and_summary(soak):
    folder, summary, result = soak
    for name in ("soak_probes.csv", "soak_events.csv", "soak_samples.csv", "summary.md"):
        assert (folder / name).stat().st_size > 0, name
    for figure in summary.figures:
        assert (folder / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", figure
    assert "0 unexplained" in "\n".join(summary.findings)
    assert {"daemon", "proxy/ip-172-31-0-11", "policy/ip-172-31-0-12"} <= set(result["memory"])
