"""IptablesBackend against the real kernel, inside throwaway namespaces.

Every command runs through ``ip netns exec svtest-<pid>-<n>``; the host's
own rules are never read or changed.  Checks: apply, idempotent re-apply,
stale chain removal, a broken rule set leaves the old rules in place (even
the table iptables-restore had already committed), cleanup removes only
KUBE-* chains and our jumps, and the installed rules trace like the
rendered ones.
"""

from __future__ import annotations

import re
import subprocess

import pytest

from agents.proxy import (
    IptablesRestoreError,
    NodeInfo,
    compute_ruleset,
    endpoint_slice_from_k8s,
    names,
    render_iptables,
    service_from_k8s,
)
from agents.proxy.fixtures import endpoint, service_dict, slice_dict
from agents.proxy.iptables_backend import IptablesBackend
from agents.proxy.iptables_tracer import Tracer

pytestmark = pytest.mark.root

NODE = NodeInfo("ip-172-31-0-11", ("172.31.0.11",))


def sh(*argv: str) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30,
                          check=False)
    assert done.returncode == 0, f"{argv}: {done.stderr}"
    return done.stdout


def saved(ns: str) -> str:
    """iptables-save of the namespace without comments and counters."""
    text = sh("ip", "netns", "exec", ns, "iptables-save", "-t", "nat") + \
        sh("ip", "netns", "exec", ns, "iptables-save", "-t", "filter")
    lines = [re.sub(r"\[\d+:\d+\]", "[0:0]", line)
             for line in text.splitlines() if not line.startswith("#")]
    return "\n".join(lines) + "\n"


def chains(text: str) -> set[str]:
    return {line[1:].split()[0] for line in text.splitlines()
            if line.startswith(":")}


def ruleset(n_endpoints: int = 3, *, extra_services=(), drop_db=False):
    services = [
        service_dict("web", "shop", cluster_ip="10.96.0.20",
                     type="NodePort", ports=[{"name": "http", "port": 80,
                                              "nodePort": 30080}],
                     affinity_timeout=300),
        service_dict("db", "shop", cluster_ip="10.96.0.21",
                     ports=[{"name": "pg", "port": 5432}]),
        *extra_services,
    ]
    slices = [
        slice_dict("web", "shop", endpoints=[
            endpoint(f"192.168.1.{10 + i}", NODE.name)
            for i in range(n_endpoints)]),
        slice_dict("db", "shop", ports=[{"name": "pg", "port": 5432}],
                   endpoints=[endpoint("192.168.2.5", "other")]),
    ]
    if drop_db:
        services, slices = services[:1] + services[2:], slices[:1]
    return compute_ruleset([service_from_k8s(s) for s in services],
                           [endpoint_slice_from_k8s(s) for s in slices], NODE)


def add_foreign_rules(ns: str) -> None:
    """Rules that are not ours and must survive everything."""
    for args in (("-t", "nat", "-N", "SVTEST-FOREIGN"),
                 ("-t", "nat", "-A", "PREROUTING", "-j", "SVTEST-FOREIGN"),
                 ("-t", "nat", "-A", "SVTEST-FOREIGN", "-d", "198.51.100.1",
                  "-j", "RETURN"),
                 ("-t", "filter", "-A", "INPUT", "-p", "tcp", "--dport", "22",
                  "-j", "ACCEPT")):
        sh("ip", "netns", "exec", ns, "iptables", *args)


FOREIGN = ("-A PREROUTING -j SVTEST-FOREIGN",
           "-A SVTEST-FOREIGN -d 198.51.100.1/32 -j RETURN",
           "-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT")


def test_apply_reapply_change_break_cleanup(netns):
    add_foreign_rules(netns)
    backend = IptablesBackend(netns=netns)

    first = ruleset(3)
    backend.sync(first)
    after_first = saved(netns)
    sep = names.endpoint_chain("shop/web:http", "tcp", "192.168.1.12:8080")
    assert {"KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-MARK-MASQ",
            "KUBE-POSTROUTING", "KUBE-FORWARD", "KUBE-EXTERNAL-SERVICES",
            names.cluster_chain("shop/web:http", "tcp"),
            names.external_chain("shop/web:http", "tcp"),
            names.cluster_chain("shop/db:pg", "tcp"), sep} <= chains(after_first)
    assert all(rule in after_first for rule in FOREIGN)

    # What the kernel holds traces exactly like what was rendered.
    rendered = Tracer(render_iptables(first), NODE.node_ips)
    installed = Tracer(after_first, NODE.node_ips)
    for packet in (("192.168.1.5", "10.96.0.20", 80, False),
                   ("203.0.113.7", "172.31.0.11", 30080, False),
                   ("172.31.0.11", "10.96.0.21", 5432, True)):
        src, dst, port, local = packet
        assert installed.trace(src, dst, port, locally_originated=local) == \
            rendered.trace(src, dst, port, locally_originated=local)

    backend.sync(first)                       # identical: nothing changes
    assert saved(netns) == after_first

    second = ruleset(1, drop_db=True)
    report = backend.sync(second)
    after_second = saved(netns)
    ours = {c for c in chains(after_second) if c.startswith("KUBE-")}
    assert ours == {c for c in chains(render_iptables(second))
                    if c.startswith("KUBE-")}
    assert sep not in ours
    assert names.cluster_chain("shop/db:pg", "tcp") not in ours
    assert set(report.stale_chains) == {
        c for c in chains(after_first) - chains(after_second)
        if names.is_service_chain(c)}

    # A broken sync that would also change the filter table (a REJECT for a
    # service without endpoints) fails in nat after filter was committed.
    broken_rs = ruleset(2, extra_services=[
        service_dict("empty", "shop", cluster_ip="10.96.0.22",
                     ports=[{"name": "x", "port": 81}])])
    state = backend.read_state()
    lines = render_iptables(broken_rs, state).splitlines()
    bad = "-A KUBE-SERVICES -m bogus-match --nope -j ACCEPT"
    at = len(lines) - 1                       # just before the nat COMMIT
    lines.insert(at, bad)
    with pytest.raises(IptablesRestoreError) as info:
        backend.apply("\n".join(lines) + "\n", state)
    err = info.value
    assert err.line == at + 1 and err.line_text == bad
    assert err.returncode != 0 and err.stderr
    assert any(c.text == bad for c in err.context) and len(err.context) > 1
    assert err.rolled_back == ("filter",)
    assert saved(netns) == after_second       # old rules, both tables

    backend.cleanup()
    final = saved(netns)
    assert "KUBE-" not in final
    assert all(rule in final for rule in FOREIGN)


def test_broken_first_sync_leaves_nothing_behind(netns):
    backend = IptablesBackend(netns=netns)
    before = saved(netns)
    state = backend.read_state()
    text = render_iptables(ruleset(2), state).replace(
        "-j KUBE-MARK-MASQ\n", "-j KUBE-NO-SUCH-CHAIN\n", 1)
    with pytest.raises(IptablesRestoreError) as info:
        backend.apply(text, state)
    assert info.value.line is not None
    assert saved(netns) == before


def test_cleanup_on_empty_namespace_is_a_no_op(netns):
    before = saved(netns)
    IptablesBackend(netns=netns).cleanup()
    assert saved(netns) == before


def test_partial_sync_converges_to_the_full_result(netns):
    backend = IptablesBackend(netns=netns)
    backend.sync(ruleset(3))
    changed = ruleset(1)                       # only shop/web's endpoints
    report = backend.sync(changed, frozenset({("shop", "web")}))
    assert report.partial
    after_partial = saved(netns)
    assert names.endpoint_chain("shop/web:http", "tcp",
                                "192.168.1.12:8080") not in chains(after_partial)
    full = backend.sync(changed)               # a full resync changes nothing
    assert not full.partial and full.stale_chains == ()
    assert saved(netns) == after_partial
