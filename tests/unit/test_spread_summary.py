"""SpreadResult from per-connection records: counts, nodes, sources, failures, fit."""
from __future__ import annotations

import json
import random

import pytest

from base.errors import UsageError
from probes.spread.probe import ConnRecord, Place, SpreadResult, endpoint_directory, summarize
from topo.state import HostRecord, LabState

PODS = {  # pod ip -> (name, node)
    "192.168.1.10": ("web-a", "ip-172-31-0-11"),
    "192.168.1.11": ("web-b", "ip-172-31-0-11"),
    "192.168.2.10": ("web-c", "ip-172-31-0-12"),
    "192.168.2.11": ("web-d", "ip-172-31-0-12"),
}
DIRECTORY = {ip: Place(name, node) for ip, (name, node) in PODS.items()}
SOURCE_IP = "192.168.0.5"


def records_for(split: dict[str, int], *, seen_as=SOURCE_IP, failures=None, seed=7):
    """Synthetic records: split maps pod ip -> connections answered there."""
    rng = random.Random(seed)
    records, port = [], 40000
    for ip, count in split.items():
        for _ in range(count):
            port += 1
            records.append(ConnRecord(
                target="10.96.0.50:80", outcome="ok", latency_ms=rng.uniform(0.5, 3.0),
                local=f"{SOURCE_IP}:{port}", pod=PODS[ip][0], pod_ip=ip,
                client=f"{seen_as}:{port}"))
    for outcome, count in (failures or {}).items():
        records += [ConnRecord("10.96.0.50:80", outcome, 2000.0, error="x")] * count
    rng.shuffle(records)
    return records


def summary(records, **kwargs) -> SpreadResult:
    return summarize(records, source="client-pod", proto="tcp", targets=["10.96.0.50:80"],
                     elapsed_s=2.0, directory=DIRECTORY, **kwargs)


# A deliberately skewed rule set's outcome: 70/10/10/10 over four endpoints.
SKEWED = {"192.168.1.10": 2800, "192.168.1.11": 400, "192.168.2.10": 400, "192.168.2.11": 400}


def test_skewed_spread_is_flagged_as_not_uniform():
    result = summary(records_for(SKEWED))
    assert result.p_value < 0.001
    assert result.fits_expected() is False
    assert "NOT consistent" in result.describe()


def test_uniform_spread_passes():
    rng = random.Random(11)
    ips = list(PODS)
    split = dict.fromkeys(ips, 0)
    for _ in range(4000):
        split[rng.choice(ips)] += 1
    result = summary(records_for(split))
    assert result.p_value > 0.001 and result.fits_expected() is True
    assert sum(e.count for e in result.endpoints) == 4000


def test_skew_matching_expected_shares_passes():
    expected = {"web-a": 0.7, "web-b": 0.1, "192.168.2.10": 0.1, "192.168.2.11": 0.1}
    result = summary(records_for(SKEWED), expected=expected)
    assert result.p_value > 0.5
    assert result.expected == {"192.168.1.10": 0.7, "192.168.1.11": 0.1,
                               "192.168.2.10": 0.1, "192.168.2.11": 0.1}


def test_local_policy_expectation_flags_a_remote_endpoint():
    # eTP Local on ip-172-31-0-11: only its two pods may answer.
    split = {"192.168.1.10": 500, "192.168.1.11": 480, "192.168.2.10": 20}
    result = summary(records_for(split), expected={"web-a": 1, "web-b": 1})
    assert result.p_value == 0.0


def test_counts_per_endpoint_and_node_and_sources_seen():
    split = {"192.168.1.10": 30, "192.168.2.10": 20}
    result = summary(records_for(split, seen_as="172.31.0.11",
                                 failures={"timeout": 3, "refused": 2}))
    assert [(e.ip, e.pod, e.node, e.count) for e in result.endpoints] == [
        ("192.168.1.10", "web-a", "ip-172-31-0-11", 30),
        ("192.168.2.10", "web-c", "ip-172-31-0-12", 20)]
    assert result.endpoints[0].share == pytest.approx(0.6)
    assert result.by_node == {"ip-172-31-0-11": 30, "ip-172-31-0-12": 20}
    assert result.endpoints[0].sources == {"172.31.0.11": 30}   # SNAT: the node's address
    assert result.sent_from == {SOURCE_IP: 50}
    assert result.failures == {"refused": 2, "timeout": 3}
    assert result.ok == 50 and result.rate == pytest.approx(55 / 2.0)
    assert 0.5 <= result.latency_p50_ms <= result.latency_p99_ms <= 3.0


def test_single_endpoint_has_no_fit_and_says_so():
    result = summary(records_for({"192.168.1.10": 100}))
    assert result.fit is None and result.fits_expected() is None
    assert "not applicable" in result.describe()


def test_endpoint_outside_the_lab_directory_is_still_counted():
    record = ConnRecord("203.0.113.9:80", "ok", 1.0, pod="outside", pod_ip="203.0.113.9",
                        client="198.51.100.11:5555")
    result = summary([record])
    assert (result.endpoints[0].pod, result.endpoints[0].node) == ("outside", None)
    assert result.by_node == {"?": 1}


def test_unknown_expected_name_is_a_usage_error():
    with pytest.raises(UsageError, match="--expect"):
        summary(records_for({"192.168.1.10": 5}), expected={"nosuchpod": 1})


def test_to_json_is_machine_readable_and_describe_is_a_table():
    result = summary(records_for({"192.168.1.10": 3, "192.168.2.10": 1},
                                 failures={"reset": 1}))
    data = json.loads(json.dumps(result.to_json()))
    assert data["ok"] == 4 and data["finished"] == 5 and data["failures"] == {"reset": 1}
    assert data["endpoints"][0] == {"ip": "192.168.1.10", "pod": "web-a",
                                    "node": "ip-172-31-0-11", "count": 3, "share": 0.75,
                                    "sources": {SOURCE_IP: 3}}
    assert data["chi_square"]["dof"] == 1 and "records" not in data
    assert len(result.to_json(include_records=True)["records"]) == 5
    text = result.describe()
    assert "ENDPOINT" in text and "web-a" in text and "reset 1" in text
    assert "ip-172-31-0-11 3, ip-172-31-0-12 1" in text


def test_endpoint_directory_maps_pods_to_nodes_and_nodes_to_themselves():
    state = LabState(name="x", daemon_pid=1, daemon_start=1, hosts={
        "n1": HostRecord("n1", "node", "ip-172-31-0-11", 10, 1, 1, addresses=["172.31.0.11"]),
        "p1": HostRecord("p1", "pod", "web-a", 11, 1, 2, namespace="default",
                         node="ip-172-31-0-11", addresses=["192.168.1.10"]),
        "p2": HostRecord("p2", "pod", "db", 12, 1, 3, namespace="team-a",
                         node="ip-172-31-0-12", addresses=["192.168.2.9"]),
        "client": HostRecord("client", "client", "client", 13, 1, 4,
                             addresses=["203.0.113.100"])})
    assert endpoint_directory(state) == {
        "172.31.0.11": Place("ip-172-31-0-11", "ip-172-31-0-11"),
        "192.168.1.10": Place("web-a", "ip-172-31-0-11"),
        "192.168.2.9": Place("team-a/db", "ip-172-31-0-12"),
        "203.0.113.100": Place("client", None)}
