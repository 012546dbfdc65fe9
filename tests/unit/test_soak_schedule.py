"""The soak's pure parts: its fault schedule, its churn steps, which probe
failures a fault explains, and the comparisons behind the leftover counts."""
from __future__ import annotations

import random

import pytest

from experiments.soak_checks import (
    compare_chains,
    iptables_chains,
    nft_chains,
    parse_conntrack,
    stale_entries,
)
from experiments.soak_schedule import (
    CHURN_KINDS,
    Limits,
    StableTarget,
    World,
    apply_to_world,
    churn_deployment,
    churn_service,
    classify,
    fault_schedule,
    namespace_of,
    next_action,
    policy,
    probe_totals,
    window,
)

N10, N11, N12 = "ip-172-31-0-10", "ip-172-31-0-11", "ip-172-31-0-12"
TARGETS = (StableTarget("web", "prober", N11, frozenset({N10, N11})),
           StableTarget("spread", "prober", N11, frozenset({N11, N12})))


def schedule(duration: float):
    return fault_schedule(duration, cut_s=10, cut_node=N12, probe_node=N11, other_node=N12,
                          stable_pod_of="web")


def test_a_short_soak_has_each_fault_once_in_order_and_inside_the_churn():
    faults = schedule(45)
    assert [f.kind for f in faults] == ["stable-pod-delete", "proxy-restart", "node-cut",
                                        "policy-restart"]
    assert all(0 < f.at < 45 for f in faults)
    cut = faults[2]
    assert (cut.target, cut.duration) == (N12, 10) and cut.at + cut.duration < faults[3].at


def test_a_long_soak_repeats_the_cycle():
    faults = schedule(1800)
    assert len(faults) == 6 * 4
    cuts = [f.at for f in faults if f.kind == "node-cut"]
    assert cuts == [135 + 300 * k for k in range(6)]


def test_only_a_cut_node_explains_failures_and_only_of_targets_through_it():
    cut = window("node-cut", N12, 100.0, 110.0, 1.0, TARGETS)
    assert cut.affects == {"spread"} and cut.until == 113.0
    assert window("node-cut", N11, 0, 1, 1.0, TARGETS).affects == {"web", "spread"}
    for kind in ("proxy-restart", "policy-restart", "stable-pod-delete"):
        assert window(kind, N11, 0, 5, 1.0, TARGETS).affects == frozenset()


def test_classify_uses_the_probe_span_and_the_window_with_its_grace():
    windows = [window("node-cut", N12, 100.0, 110.0, 1.0, TARGETS)]
    records = [
        {"target": "spread", "t": 99.5, "ms": 1000, "err": "timeout"},   # ends inside
        {"target": "spread", "t": 112.9, "ms": 5, "err": "timeout"},     # in the grace
        {"target": "spread", "t": 113.5, "ms": 5, "err": "timeout"},     # after it
        {"target": "web", "t": 105.0, "ms": 1000, "err": "timeout"},     # not through N12
        {"target": "spread", "t": 105.0, "ms": 3, "err": None},          # fine
    ]
    got = [(r["failed"], r["explained_by"]) for r in classify(records, windows)]
    assert got == [(True, "node-cut"), (True, "node-cut"), (True, ""), (True, ""),
                   (False, "")]
    assert probe_totals(classify(records, windows)) == {
        "spread": {"probes": 4, "failed": 3, "explained": 2, "unexplained": 1},
        "web": {"probes": 1, "failed": 1, "explained": 0, "unexplained": 1}}


def test_churn_steps_are_seeded_and_stay_within_limits():
    def run(seed):
        rng, world, limits, steps = random.Random(seed), World(), Limits(3, 2, 1), []
        for i in range(300):
            world.pods = [f"churn-a/p{i}"] if world.deployments else []
            action = next_action(rng, world, limits)
            apply_to_world(world, action)
            assert len(world.deployments) <= 3 and len(world.policies) <= 1
            assert all(0 <= r <= 2 for r in world.deployments.values())
            steps.append(action)
        return steps
    first = run(7)
    assert first == run(7) and first != run(8)
    assert {a.kind for a in first} == set(CHURN_KINDS)


def test_churn_steps_name_what_exists():
    rng, world = random.Random(1), World()
    assert next_action(rng, world, Limits()).kind == "create"   # nothing else is possible
    world.deployments = {"churn-1": 2}
    for _ in range(100):
        action = next_action(rng, world, Limits(policies=0))
        assert action.kind in ("create", "scale", "traffic")
        if action.kind != "create":
            assert action.name == "churn-1"
        if action.kind == "traffic":
            assert action.detail in ("tcp", "udp")


SAVED = """*nat
:PREROUTING ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
:cali-nat-outgoing - [0:0]
-A PREROUTING -j KUBE-SERVICES
-A KUBE-SERVICES -d 10.96.0.1/32 -j KUBE-SVC-X
-A cali-nat-outgoing -j MASQUERADE
COMMIT
*filter
:KUBE-FORWARD - [0:0]
:cali-FORWARD - [0:0]
-A cali-FORWARD -j ACCEPT
-A cali-FORWARD -j DROP
COMMIT
"""


def test_chains_and_rule_counts_per_table():
    assert iptables_chains(SAVED, "KUBE-") == {"KUBE-SERVICES": 1, "KUBE-FORWARD": 0}
    assert iptables_chains(SAVED, "cali-", ("filter",)) == {"cali-FORWARD": 2}


def test_compare_chains_names_leftover_missing_and_different():
    found = compare_chains({"a": 1, "b": 2, "c": 0}, {"b": 3, "c": None, "d": 1})
    assert found == {"leftover": ["a"], "missing": ["d"], "differs": ["b"]}


def test_nft_chains_from_json_listing():
    listing = ('{"nftables": [{"metainfo": {}}, {"table": {"name": "kube-proxy"}},'
               '{"chain": {"table": "kube-proxy", "name": "services"}},'
               '{"chain": {"table": "kube-proxy", "name": "empty"}},'
               '{"rule": {"table": "kube-proxy", "chain": "services", "expr": []}}]}')
    assert nft_chains(listing) == {"services": 1, "empty": 0}


CONNTRACK = """\
udp      17 25 src=192.168.1.5 dst=10.100.0.9 sport=40000 dport=8080 [UNREPLIED] \
src=192.168.2.7 dst=192.168.1.5 sport=8080 dport=40000 mark=0 use=1
tcp      6 110 TIME_WAIT src=192.168.1.5 dst=10.100.0.9 sport=4001 dport=80 \
src=192.168.2.7 dst=192.168.1.5 sport=80 dport=4001 [ASSURED] mark=0 use=1
tcp      6 431999 ESTABLISHED src=192.168.1.5 dst=10.96.0.20 sport=4002 dport=80 \
src=192.168.2.8 dst=192.168.1.5 sport=80 dport=4002 [ASSURED] mark=0 use=1
tcp      6 431999 ESTABLISHED src=192.168.1.5 dst=10.96.0.30 sport=4003 dport=80 \
src=192.168.2.9 dst=192.168.1.5 sport=80 dport=4003 [ASSURED] mark=0 use=1
udp      17 28 src=192.168.1.5 dst=192.168.2.8 sport=40001 dport=8080 [UNREPLIED] \
src=192.168.2.8 dst=192.168.1.5 sport=8080 dport=40001 mark=0 use=1
"""


def test_conntrack_entries_to_deleted_things_split_into_leftover_and_expiring():
    entries = parse_conntrack(CONNTRACK)
    assert entries[0] == {"proto": "udp", "state": "", "dst": "10.100.0.9",
                          "reply_src": "192.168.2.7"}
    assert entries[1]["state"] == "TIME_WAIT"
    found = stale_entries(entries, deleted_vips={"10.100.0.9"}, deleted_pods={"192.168.2.8"})
    # leftover: the translated UDP flow to the deleted Service, the established
    # TCP flow to the deleted pod; expiring: TIME_WAIT, and the UDP flow the
    # pod's own node forwarded untranslated
    assert found == {"leftover": 2, "expiring": 2,
                     "by_kind": {"tcp:ESTABLISHED": 1, "tcp:TIME_WAIT": 1, "udp:-": 1,
                                 "udp:-:forwarded": 1}}


@pytest.mark.parametrize("text", ["", "conntrack v1.4.7: 0 flow entries have been shown.\n"])
def test_empty_conntrack_listings(text):
    assert stale_entries(parse_conntrack(text), {"10.0.0.1"}, set()) == {
        "leftover": 0, "expiring": 0, "by_kind": {}}


def test_churn_manifests_have_tcp_and_udp_and_a_namespace_by_number():
    manifest = churn_deployment("churn-3", 2)
    assert manifest["spec"]["replicas"] == 2
    ports = manifest["spec"]["template"]["spec"]["containers"][0]["ports"]
    assert [(p["containerPort"], p.get("protocol", "TCP")) for p in ports] == [
        (80, "TCP"), (8080, "UDP")]
    assert [(p["port"], p["protocol"]) for p in churn_service("churn-3")["spec"]["ports"]] == [
        (80, "TCP"), (8080, "UDP")]
    assert (namespace_of("churn-3"), namespace_of("churn-4"), namespace_of("policy-7")) == (
        "churn-b", "churn-a", "churn-b")
    assert "ingress" not in policy("p", "churn-3", False)["spec"]
    assert policy("p", "churn-3", True)["spec"]["ingress"] == [
        {"from": [{"podSelector": {"matchLabels": {"app": "churn-3"}}}]}]
