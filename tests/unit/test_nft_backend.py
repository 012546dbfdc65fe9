"""NftablesBackend with a recording fake runner (no kernel, no root).

Checks the commands it runs: a full sync lists our chains and sets and
applies one `nft -f -`; a partial sync applies one transaction touching only
the changed services and lists nothing; a failure raises NftApplyError with
the failing line and makes the next sync a full one; cleanup names only
`table ip kube-proxy`.
"""

from __future__ import annotations

import json

import pytest

from agents.proxy import (
    NodeInfo,
    ProxyCommandError,
    compute_ruleset,
    endpoint_slice_from_k8s,
    service_from_k8s,
)
from agents.proxy.fixtures import endpoint, service_dict, slice_dict
from agents.proxy.iptables_backend import CommandResult
from agents.proxy.nft_backend import (
    NftablesBackend,
    NftApplyError,
    failing_position,
    parse_table_state,
)
from agents.proxy.nft_render import plan_ruleset, render_full
from agents.proxy.nft_table import apply_commands

NODE = NodeInfo("n1", ("172.31.0.11",))


class FakeNft:
    """Records (argv, stdin); answers list commands and scripted failures."""

    def __init__(self) -> None:
        self.calls: list[tuple[tuple[str, ...], str | None]] = []
        self.fail_next: CommandResult | None = None
        self.chains = [{"chain": {"family": "ip", "table": "kube-proxy",
                                  "name": "service-AAAAAAAA-shop/old/tcp/p"}},
                       {"chain": {"family": "ip", "table": "other",
                                  "name": "service-BBBBBBBB-x/y/tcp/p"}}]

    def __call__(self, argv, input_text, timeout_s):
        self.calls.append((tuple(argv), input_text))
        if "list" in argv:
            kind = "chain" if "chains" in argv else "set"
            items = self.chains if kind == "chain" else []
            return CommandResult(0, json.dumps({"nftables": items}), "")
        if self.fail_next is not None:
            result, self.fail_next = self.fail_next, None
            return result
        return CommandResult(0, "", "")

    def applied(self) -> list[str]:
        return [text for argv, text in self.calls if argv[-2:] == ("-f", "-")]


def ruleset(web_endpoints=2, node=NODE):
    services = [service_dict("web", "shop", cluster_ip="10.96.0.20"),
                service_dict("db", "shop", cluster_ip="10.96.0.21")]
    slices = [slice_dict("web", "shop", endpoints=[
        endpoint(f"192.168.1.{i + 1}", "n1") for i in range(web_endpoints)]),
        slice_dict("db", "shop", endpoints=[endpoint("192.168.2.1", "n2")])]
    return compute_ruleset([service_from_k8s(s) for s in services],
                           [endpoint_slice_from_k8s(s) for s in slices], node)


def test_full_then_partial_sync():
    fake = FakeNft()
    backend = NftablesBackend(fake, netns="svtest-x")
    report = backend.sync(ruleset(), frozenset({("shop", "web")}))
    assert not report.partial              # nothing known yet: full
    listed = [argv for argv, _ in fake.calls if "list" in argv]
    assert sorted(listed) == [("ip", "netns", "exec", "svtest-x", "nft", "-j",
                               "list", "chains", "ip"),
                              ("ip", "netns", "exec", "svtest-x", "nft", "-j",
                               "list", "sets", "ip")]
    [full] = fake.applied()
    assert "delete chain ip kube-proxy service-AAAAAAAA-shop/old/tcp/p" in full
    assert "BBBBBBBB" not in full          # another table's chain: not ours
    assert report.stale_chains == ("service-AAAAAAAA-shop/old/tcp/p",)

    fake.calls.clear()
    report = backend.sync(ruleset(3), frozenset({("shop", "web")}))
    assert report.partial and report.lines > 0
    assert not [argv for argv, _ in fake.calls if "list" in argv]
    [partial] = fake.applied()
    assert "192.168.1.3" in partial and "shop/db" not in partial
    assert all(line.split()[2:4] == ["ip", "kube-proxy"]
               for line in partial.splitlines())


def test_no_change_applies_nothing():
    fake = FakeNft()
    backend = NftablesBackend(fake)
    backend.sync(ruleset())
    fake.calls.clear()
    report = backend.sync(ruleset(), frozenset({("shop", "db")}))
    assert report.partial and report.lines == 0 and fake.calls == []


def test_node_change_forces_a_full_sync():
    fake = FakeNft()
    backend = NftablesBackend(fake)
    backend.sync(ruleset())
    moved = NodeInfo("n1", ("172.31.0.12",))
    report = backend.sync(ruleset(node=moved), frozenset({("shop", "web")}))
    assert not report.partial
    assert ("add set ip kube-proxy nodeport-ips { type ipv4_addr ; comment "
            '"IPs that accept NodePort traffic" ; elements = { 172.31.0.12 } ; '
            "}") in fake.applied()[-1].splitlines()


def test_failure_names_the_line_and_next_sync_is_full():
    fake = FakeNft()
    backend = NftablesBackend(fake)
    backend.sync(ruleset())
    fake.fail_next = CommandResult(
        1, "", "/dev/stdin:3:24-30: Error: Could not process rule: No such "
               "file or directory\nadd rule ...\n")
    with pytest.raises(NftApplyError) as info:
        backend.sync(ruleset(3), frozenset({("shop", "web")}))
    err = info.value
    assert isinstance(err, ProxyCommandError) and err.returncode == 1
    assert err.line == 3 and err.columns == (24, 30)
    assert err.reason.startswith("Could not process rule")
    text = fake.applied()[-1].splitlines()
    assert err.line_text == text[2] and any(c.number == 3
                                            for c in err.context)
    assert "line 3" in str(err) and err.argv[-2:] == ("-f", "-")
    fake.calls.clear()
    assert not backend.sync(ruleset(3), frozenset({("shop", "web")})).partial


class FakeNetlink:
    """Records the netlink batches; a generation counter bumped per commit."""

    def __init__(self) -> None:
        self.batches: list[tuple] = []
        self.gen = 100

    def apply(self, ops, table):
        self.batches.append((table, tuple(ops)))
        self.gen += 1

    def generation(self):
        return self.gen

    def names(self, kind, table):
        """The table as netlink dumps list it: empty (these tests start
        from no table)."""
        return frozenset()


class CountingNft(FakeNft):
    """FakeNft whose every `nft -f` commits (bumps the generation)."""

    def __init__(self, netlink: FakeNetlink) -> None:
        super().__init__()
        self.netlink = netlink

    def __call__(self, argv, input_text, timeout_s):
        result = super().__call__(argv, input_text, timeout_s)
        if argv[-2:] == ("-f", "-") and result.returncode == 0:
            self.netlink.gen += 1
        return result


def test_a_partial_sync_deletes_what_goes_over_netlink():
    netlink = FakeNetlink()
    fake = CountingNft(netlink)
    backend = NftablesBackend(fake, netlink=netlink)
    backend.sync(ruleset(3))
    report = backend.sync(ruleset(2), frozenset({("shop", "web")}))
    [stale] = report.stale_chains
    assert "192.168.1.3" in stale
    partial = fake.applied()[-1]
    assert stale not in partial and "delete" not in partial
    [(table, ops)] = netlink.batches
    assert table == "kube-proxy"
    assert [op.nft_command("ip kube-proxy") for op in ops] == [
        f"delete chain ip kube-proxy {stale}"]
    assert backend.unchanged()                 # only our commits since
    netlink.gen += 1                           # somebody else commits
    assert not backend.unchanged()


def test_deleting_a_service_is_netlink_only():
    netlink = FakeNetlink()
    fake = CountingNft(netlink)
    backend = NftablesBackend(fake, netlink=netlink)
    backend.sync(ruleset())
    applied = len(fake.applied())
    gone = compute_ruleset(
        [service_from_k8s(service_dict("web", "shop", cluster_ip="10.96.0.20"))],
        [endpoint_slice_from_k8s(slice_dict("web", "shop", endpoints=[
            endpoint(f"192.168.1.{i + 1}", "n1") for i in range(2)]))], NODE)
    assert backend.sync(gone, frozenset({("shop", "db")})).partial
    assert len(fake.applied()) == applied      # no nft process at all
    [(_, ops)] = netlink.batches
    commands = [op.nft_command("ip kube-proxy") for op in ops]
    assert commands[0] == ("delete element ip kube-proxy cluster-ips "
                           "{ 10.96.0.21 }")
    assert commands[1].startswith("delete element ip kube-proxy service-ips "
                                  "{ 10.96.0.21 . tcp . 80 }")
    assert [c.split()[1] for c in commands[2:]] == ["chain", "chain"]
    assert "service-" in commands[2] and "endpoint-" in commands[3]
    assert backend.unchanged()


def test_without_a_kernel_removals_go_as_nft_text():
    fake = FakeNft()
    backend = NftablesBackend(fake)
    backend.sync(ruleset(3))
    report = backend.sync(ruleset(2), frozenset({("shop", "web")}))
    [stale] = report.stale_chains
    assert f"delete chain ip kube-proxy {stale}" in fake.applied()[-1]
    assert not backend.unchanged()


def test_new_services_chains_are_written_ahead_in_chunks():
    fake = FakeNft()                 # the table exists (one stale chain)
    backend = NftablesBackend(fake, chunk_chains=2)
    report = backend.sync(ruleset(2))
    *ahead, final = fake.applied()
    assert len(ahead) == 2                  # db (2 chains), web (3 chains)
    assert sorted("shop/web" in text for text in ahead) == [False, True]
    assert sorted("shop/db" in text for text in ahead) == [False, True]
    assert "service-ips" not in "".join(ahead)   # nothing leads there yet
    assert "chain ip kube-proxy endpoint-" not in final
    assert "goto service-" in final and "delete chain" in final
    assert report.lines == sum(t.count("\n") for t in fake.applied())


def test_a_cold_start_hooks_the_table_in_last():
    fake = FakeNft()
    fake.chains = []                 # no table yet
    backend = NftablesBackend(fake, chunk_chains=2)
    report = backend.sync(ruleset(2))
    first, *ahead, last = fake.applied()
    assert first.startswith('add table ip kube-proxy { comment "rules for')
    assert "add map ip kube-proxy service-ips" in first
    assert "hook" not in first
    assert len(ahead) == 2 and "hook" not in "".join(ahead)
    assert any("elements = { 10.96.0.20 . tcp . 80 : goto service-" in text
               for text in ahead)
    assert all("hook" in line for line in last.splitlines()
               if "{ type" in line)
    assert "elements" not in last and "filter-forward" in last
    assert report.lines == sum(t.count("\n") for t in fake.applied())
    # the same table as one transaction would make
    table = None
    for text in fake.applied():
        table = apply_commands(text, table)
    assert table == apply_commands(render_full(plan_ruleset(ruleset(2))).text)


def test_cleanup_deletes_only_our_table():
    fake = FakeNft()
    NftablesBackend(fake).cleanup()
    assert fake.applied() == ["add table ip kube-proxy\n"
                              "delete table ip kube-proxy\n"]


def test_failing_position_without_a_line():
    assert failing_position("Error: syntax error\n") == (
        None, None, "Error: syntax error")


def test_table_state_ignores_other_tables_and_families():
    state = parse_table_state(json.dumps({"nftables": [
        {"metainfo": {}},
        {"chain": {"family": "ip", "table": "kube-proxy", "name": "a"}},
        {"chain": {"family": "ip6", "table": "kube-proxy", "name": "b"}},
        {"chain": {"family": "ip", "table": "filter", "name": "c"}}]}),
        json.dumps({"nftables": [
            {"set": {"family": "ip", "table": "kube-proxy", "name": "s"}}]}))
    assert state.chains == {"a"} and state.sets == {"s"}


def test_a_small_cold_start_is_one_transaction():
    fake = FakeNft()
    fake.chains = []                 # no table yet
    NftablesBackend(fake).sync(ruleset(2))          # 5 objects < 5000
    [only] = fake.applied()
    assert only.startswith('add table ip kube-proxy { comment "rules for')
    assert "hook" in only and "goto service-" in only
