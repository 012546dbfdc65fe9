"""The periodic resync against the real kernel: skip when nothing changed,
repair when someone changed the table behind the agent's back.

In a throwaway namespace (root): after a sync, a resync decision with
nothing changed skips, and the kernel's ruleset generation stays as it
was; a rule deleted or a chain flushed by someone else moves the
generation, and the next (full) resync puts the table back exactly; a
commit to another table (the NetworkPolicy agent's, say) also moves it,
and costs one full resync; a service deleted by a partial sync goes over
netlink and leaves the table a full sync would make.  The kernel's table
is read with `nft list table ip kube-proxy`.
"""

from __future__ import annotations

import re
import subprocess

import pytest

from agents.proxy import NodeInfo, compute_ruleset, endpoint_slice_from_k8s, service_from_k8s
from agents.proxy.agent import resync_skippable
from agents.proxy.errors import NetlinkError
from agents.proxy.fixtures import endpoint, service_dict, slice_dict
from agents.proxy.iptables_backend import IptablesBackend
from agents.proxy.nfnetlink import DeleteChain, NfNetlink
from agents.proxy.nft_backend import NftablesBackend
from support.nft_listing import normalised

pytestmark = pytest.mark.root
NODE = NodeInfo("ip-172-31-0-11", ("172.31.0.11",))


def nft(ns: str, *args: str) -> str:
    done = subprocess.run(("ip", "netns", "exec", ns, "nft") + args,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, f"{args}: {done.stderr}"
    return done.stdout


def ruleset(*, with_db: bool = True):
    services = [service_dict("web", "shop", cluster_ip="10.96.0.20", type="NodePort",
                             ports=[{"name": "http", "port": 80, "nodePort": 30080}],
                             affinity_timeout=300),
                service_dict("db", "shop", cluster_ip="10.96.0.21",
                             ports=[{"name": "pg", "port": 5432}])]
    slices = [slice_dict("web", "shop", endpoints=[
        endpoint(f"192.168.1.{10 + i}", NODE.name) for i in range(3)]),
        slice_dict("db", "shop", ports=[{"name": "pg", "port": 5432}],
                   endpoints=[endpoint("192.168.2.10", "other")])]
    if not with_db:
        services, slices = services[:1], slices[:1]
    return compute_ruleset([service_from_k8s(s) for s in services],
                           [endpoint_slice_from_k8s(s) for s in slices], NODE)


def generation(netns: str) -> int:
    probe = NfNetlink(netns)
    try:
        return probe.generation()
    finally:
        probe.close()


def synced(netns: str):
    backend = NftablesBackend(netns=netns)
    rs = ruleset()
    backend.sync(rs)
    return backend, rs, normalised(nft(netns, "list", "table", "ip", "kube-proxy"))


def test_a_resync_with_nothing_changed_leaves_the_generation(netns):
    backend, rs, _ = synced(netns)
    before = generation(netns)
    assert resync_skippable(backend, rs, NODE)
    assert resync_skippable(backend, rs, NODE)    # asking commits nothing
    assert generation(netns) == before
    other_node = type(NODE)("ip-172-31-0-12", ("172.31.0.12",))
    assert not resync_skippable(backend, rs, other_node)
    assert not resync_skippable(backend, None, NODE)  # no sync succeeded yet


def test_a_deleted_rule_is_noticed_and_repaired(netns):
    backend, rs, table = synced(netns)
    listing = nft(netns, "-a", "list", "chain", "ip", "kube-proxy", "services")
    handle = re.search(r"vmap @service-ips # handle (\d+)", listing).group(1)
    nft(netns, "delete", "rule", "ip", "kube-proxy", "services", "handle",
        handle)
    assert normalised(nft(netns, "list", "table", "ip", "kube-proxy")) != table
    assert not resync_skippable(backend, rs, NODE)
    assert not backend.sync(rs).partial
    assert normalised(nft(netns, "list", "table", "ip", "kube-proxy")) == table
    assert resync_skippable(backend, rs, NODE)    # ours again


def test_a_flushed_chain_is_noticed_and_repaired(netns):
    backend, rs, table = synced(netns)
    web = next(line.split()[1] for line in nft(
        netns, "list", "chains", "ip").splitlines()
        if "chain service-" in line and "shop/web" in line)
    nft(netns, "flush", "chain", "ip", "kube-proxy", web)
    assert not resync_skippable(backend, rs, NODE)
    backend.sync(rs)
    assert normalised(nft(netns, "list", "table", "ip", "kube-proxy")) == table


def test_a_commit_to_another_table_costs_one_full_resync(netns):
    backend, rs, table = synced(netns)
    nft(netns, "add", "table", "ip", "svclab-netpol")
    assert not resync_skippable(backend, rs, NODE)
    backend.sync(rs)
    assert resync_skippable(backend, rs, NODE)
    assert normalised(nft(netns, "list", "table", "ip", "kube-proxy")) == table


def test_a_deleted_service_goes_over_netlink_and_matches_a_full_sync(netns):
    backend, rs, _ = synced(netns)
    fewer = ruleset(with_db=False)
    report = backend.sync(fewer, frozenset({("shop", "db")}))
    assert report.partial and len(report.stale_chains) == 2  # service-, endpoint-
    after = nft(netns, "list", "table", "ip", "kube-proxy")
    assert "shop/db" not in after and "10.96.0.21" not in after
    assert resync_skippable(backend, fewer, NODE)   # our commit only
    fresh = NftablesBackend(netns=netns)
    fresh.cleanup()
    fresh.sync(fewer)
    assert normalised(nft(netns, "list", "table", "ip", "kube-proxy")) == \
        normalised(after)


def test_a_refused_netlink_batch_names_the_message_and_changes_nothing(netns):
    backend, _, table = synced(netns)
    before = generation(netns)
    with pytest.raises(NetlinkError) as info:
        backend.netlink.apply([DeleteChain("services")], "kube-proxy")
    assert info.value.operation == "delete chain ip kube-proxy services"
    assert info.value.errno == 16                  # EBUSY: still referenced
    assert generation(netns) == before
    assert normalised(nft(netns, "list", "table", "ip", "kube-proxy")) == table


def test_iptables_nft_mode_skips_and_repairs_by_the_generation_too(netns):
    backend = IptablesBackend(netns=netns)
    rs = ruleset()
    backend.sync(rs)
    saved = subprocess.run(("ip", "netns", "exec", netns, "iptables-save", "-t", "nat"),
                           capture_output=True, text=True, timeout=60, check=True).stdout
    kube = sorted(line for line in saved.splitlines() if "KUBE-" in line)
    assert resync_skippable(backend, rs, NODE)
    subprocess.run(("ip", "netns", "exec", netns, "iptables", "-t", "nat", "-F",
                    "KUBE-SERVICES"), timeout=60, check=True)
    assert not resync_skippable(backend, rs, NODE)
    backend.sync(rs)
    assert resync_skippable(backend, rs, NODE)
    saved = subprocess.run(("ip", "netns", "exec", netns, "iptables-save", "-t", "nat"),
                           capture_output=True, text=True, timeout=60, check=True).stdout
    assert sorted(line for line in saved.splitlines() if "KUBE-" in line) == kube


def test_iptables_legacy_has_no_generation_and_never_skips(netns):
    backend = IptablesBackend(netns=netns, restore_binary="iptables-legacy-restore",
                              save_binary="iptables-legacy-save")
    rs = ruleset()
    backend.sync(rs)
    assert backend.netlink is None and not resync_skippable(backend, rs, NODE)
    backend.cleanup()
