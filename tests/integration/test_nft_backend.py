"""NftablesBackend against the real kernel, inside throwaway namespaces.

Every nft command runs through ``ip netns exec svtest-<pid>-<n>``; the
host's own ruleset is never read or changed.  Checks: full sync, identical
re-sync, a partial sync (deletions over netlink) ends where a full sync of
the same state ends, a
broken transaction raises NftApplyError naming its line and keeps the old
rules, cleanup removes only our table, and each mode leaves the other's
objects absent (no KUBE-* chains after nftables mode, no `ip kube-proxy`
table after iptables mode).
"""

from __future__ import annotations

import subprocess

import pytest

from agents.proxy import NodeInfo, compute_ruleset, endpoint_slice_from_k8s, service_from_k8s
from agents.proxy.errors import ProxyCommandError
from agents.proxy.fixtures import endpoint, service_dict, slice_dict
from agents.proxy.iptables_backend import CommandResult, IptablesBackend, subprocess_runner
from agents.proxy.nft_backend import NftablesBackend, NftApplyError
from agents.proxy.nft_render import plan_ruleset, render_full
from support.nft_listing import normalised

pytestmark = pytest.mark.root

NODE = NodeInfo("ip-172-31-0-11", ("172.31.0.11",))
FOREIGN = ("table ip other {\n"
           "\tchain keep {\n"
           "\t\ttype filter hook input priority 10; policy accept;\n"
           "\t\ttcp dport 22 accept\n"
           "\t}\n}\n")


def sh(*argv: str, stdin: str | None = None) -> str:
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, f"{argv}: {done.stderr}"
    return done.stdout


def nft(ns: str, *args: str, stdin: str | None = None) -> str:
    return sh("ip", "netns", "exec", ns, "nft", *args, stdin=stdin)


def ruleset(web_endpoints: int = 3, *, with_db: bool = True,
            extra: int = 0):
    services = [
        service_dict("web", "shop", cluster_ip="10.96.0.20", type="NodePort",
                     ports=[{"name": "http", "port": 80, "nodePort": 30080}],
                     affinity_timeout=300),
        service_dict("db", "shop", cluster_ip="10.96.0.21",
                     ports=[{"name": "pg", "port": 5432}]),
        service_dict("empty", "shop", cluster_ip="10.96.0.22",
                     type="LoadBalancer", etp="Local",
                     ports=[{"name": "x", "port": 81, "nodePort": 30081}],
                     ingress=[{"ip": "203.0.113.5"}],
                     source_ranges=["203.0.113.0/24"]),
    ] + [service_dict(f"more-{i}", "shop", cluster_ip=f"10.96.1.{i + 1}")
         for i in range(extra)]
    slices = [
        slice_dict("web", "shop", endpoints=[
            endpoint(f"192.168.1.{10 + i}", NODE.name)
            for i in range(web_endpoints)]),
        slice_dict("db", "shop", ports=[{"name": "pg", "port": 5432}],
                   endpoints=[endpoint("192.168.2.5", "other")]),
    ] + [slice_dict(f"more-{i}", "shop",
                    endpoints=[endpoint(f"192.168.3.{i + 1}", "other")])
         for i in range(extra)]
    if not with_db:
        services, slices = [services[0]] + services[2:], \
            [slices[0]] + slices[2:]
    return compute_ruleset([service_from_k8s(s) for s in services],
                           [endpoint_slice_from_k8s(s) for s in slices], NODE)


def test_full_resync_partial_and_cleanup(netns):
    nft(netns, "-f", "-", stdin=FOREIGN)
    backend = NftablesBackend(netns=netns)
    first = backend.sync(ruleset())
    assert not first.partial
    after_first = backend.list_table()
    assert "map service-ips" in after_first and "set cluster-ips" in after_first
    assert "numgen random mod 3 vmap" in after_first

    assert not backend.sync(ruleset()).partial     # identical full resync
    assert normalised(backend.list_table()) == normalised(after_first)

    changed = ruleset(1, with_db=False, extra=2)   # web shrinks, db goes
    report = backend.sync(changed, frozenset({
        ("shop", "web"), ("shop", "db"), ("shop", "more-0"),
        ("shop", "more-1")}))
    assert report.partial and report.stale_chains
    after_partial = backend.list_table()
    assert normalised(after_partial) != normalised(after_first)
    for name in report.stale_chains:               # deleted at once
        assert name not in after_partial
    assert "shop/db" not in after_partial and "192.168.1.12" not in after_partial
    full = backend.sync(changed)                   # what a full sync makes
    assert not full.partial and full.stale_chains == ()
    assert normalised(backend.list_table()) == normalised(after_partial)
    assert "table ip other" in nft(netns, "list", "tables")

    backend.cleanup()
    tables = nft(netns, "list", "tables")
    assert "kube-proxy" not in tables and "table ip other" in tables
    assert "tcp dport 22 accept" in nft(netns, "list", "table", "ip", "other")
    backend.cleanup()                              # idempotent


def test_cold_start_in_chunks_makes_the_same_table(netns):
    """Chains written ahead by parallel nft processes, then one transaction:
    the table equals what a single transaction makes, and a partial sync on
    top works on it."""
    single = NftablesBackend(netns=netns, chunk_chains=None)
    single.sync(ruleset(extra=12))
    one_go = normalised(single.list_table())
    single.cleanup()
    chunked = NftablesBackend(netns=netns, chunk_chains=4)
    report = chunked.sync(ruleset(extra=12))
    assert not report.partial
    assert normalised(chunked.list_table()) == one_go
    report = chunked.sync(ruleset(2, extra=12), frozenset({("shop", "web")}))
    assert report.partial
    [gone] = report.stale_chains             # the endpoint 192.168.1.12's
    assert "192.168.1.12" in gone and gone not in chunked.list_table()


def test_a_restarted_agent_rewrites_services_but_not_whole_endpoint_chains(
        netns):
    NftablesBackend(netns=netns).sync(ruleset(extra=3))
    before = normalised(nft(netns, "list", "table", "ip", "kube-proxy"))
    web = next(line.split()[1] for line in nft(
        netns, "list", "chains", "ip").splitlines()
        if "chain service-" in line and "shop/web" in line)
    nft(netns, "flush", "chain", "ip", "kube-proxy", web)    # drift
    sent: list[str] = []

    def recording(argv, text, timeout_s):
        sent.append(text or "")
        return subprocess_runner(argv, text, timeout_s)

    restarted = NftablesBackend(recording, netns=netns, chunk_chains=2)
    assert not restarted.sync(ruleset(extra=3)).partial
    assert normalised(restarted.list_table()) == before       # repaired
    written = "".join(sent)
    assert f"flush chain ip kube-proxy {web}" in written
    assert "add chain ip kube-proxy endpoint-" not in written  # left whole


def test_a_cold_start_cut_short_is_finished_by_the_next_sync(netns):
    """A chunk fails: nothing is hooked yet, and the next (full) sync makes
    the same table one transaction would."""
    calls = {"n": 0}

    def second_chunk_fails(argv, text, timeout_s):
        if argv[-2:] == ("-f", "-"):
            calls["n"] += 1
            if calls["n"] == 3:                  # first, chunk, *chunk*
                return CommandResult(1, "", "/dev/stdin:1:1-3: Error: boom")
        return subprocess_runner(argv, text, timeout_s)

    backend = NftablesBackend(second_chunk_fails, netns=netns, chunk_chains=4,
                              workers=1)
    with pytest.raises(NftApplyError):
        backend.sync(ruleset(extra=12))
    half = nft(netns, "list", "table", "ip", "kube-proxy")
    assert "hook" not in half                     # nothing sees it
    assert not backend.sync(ruleset(extra=12)).partial
    one_go = NftablesBackend(netns=netns, chunk_chains=None)
    made = normalised(backend.list_table())
    one_go.cleanup()
    one_go.sync(ruleset(extra=12))
    assert made == normalised(one_go.list_table())


def test_broken_transaction_keeps_old_rules(netns):
    backend = NftablesBackend(netns=netns)
    backend.sync(ruleset())
    before = backend.list_table()
    plan = plan_ruleset(ruleset(2))
    lines = render_full(plan, backend.read_state()).text.splitlines()
    bad = "add rule ip kube-proxy services ip daddr 10.96.0.99 bogus-thing"
    at = len(lines) // 2
    lines.insert(at, bad)
    with pytest.raises(NftApplyError) as info:
        backend.apply("\n".join(lines) + "\n")
    err = info.value
    assert err.line == at + 1 and err.line_text == bad
    assert err.returncode != 0 and "Error" in err.stderr and err.columns
    assert len(err.context) > 1
    assert backend.list_table() == before          # atomic: nothing applied


def test_failed_sync_is_followed_by_a_full_sync(netns):
    backend = NftablesBackend(netns=netns)
    backend.sync(ruleset())
    backend.binary = "/bin/false"                  # the next apply fails
    with pytest.raises(ProxyCommandError):
        backend.sync(ruleset(2), frozenset({("shop", "web")}))
    backend.binary = "nft"
    report = backend.sync(ruleset(2), frozenset({("shop", "web")}))
    assert not report.partial
    assert "192.168.1.11" in backend.list_table()
    assert "192.168.1.12" not in backend.list_table()


def test_nftables_mode_leaves_no_iptables_chains(netns):
    NftablesBackend(netns=netns).sync(ruleset())
    saved = sh("ip", "netns", "exec", netns, "iptables-save")
    assert "KUBE-" not in saved
    assert "table ip kube-proxy" in nft(netns, "list", "tables")


def test_iptables_mode_leaves_no_nftables_table(netns):
    IptablesBackend(netns=netns).sync(ruleset())
    assert "KUBE-SERVICES" in sh("ip", "netns", "exec", netns,
                                 "iptables-save")
    assert "kube-proxy" not in nft(netns, "list", "tables")
