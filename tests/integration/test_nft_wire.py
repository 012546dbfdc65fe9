"""Tables written over netlink equal tables written by nft, in the kernel.

In throwaway namespaces (root).  A backend that writes the services'
chains, rules and map elements as its own netlink messages (in chunks,
cold and as a forced resync) and its partial syncs as one netlink batch
must leave exactly the table that one `nft -f` transaction of the same
rule set makes, as `nft list table` prints it: the kernel and nft's own
listing are the judges, not the encoder.  Services whose shapes only nft
writes (affinity, firewall sets, no endpoints) are mixed in and go as
text.  A message the kernel refuses is named, and nothing of its batch
stays; the netlink listing of chains and sets equals nft's.
"""

from __future__ import annotations

import errno
import subprocess

import pytest

from agents.proxy import NodeInfo, compute_ruleset, endpoint_slice_from_k8s, service_from_k8s
from agents.proxy.errors import NetlinkError
from agents.proxy.fixtures import endpoint, service_dict, slice_dict
from agents.proxy.model import ProxyOptions
from agents.proxy.nfnetlink import NfNetlink
from agents.proxy.nft_backend import NftablesBackend
from agents.proxy.nft_plan import Chain
from agents.proxy.nft_wire import write_chain
from support.nft_listing import normalised

pytestmark = pytest.mark.root

NODE = NodeInfo("ip-172-31-0-11", ("172.31.0.11",), cluster_cidr="192.168.0.0/16")
LARGE = ProxyOptions(large_cluster_endpoints=1)


def ruleset(plain: int = 12, *, moved: bool = False, without: int | None = None,
            options: ProxyOptions = LARGE):
    """``plain`` ClusterIP services of 3 endpoints (netlink), plus a
    NodePort with affinity, a LoadBalancer with source ranges and no
    endpoints, and an ExternalTrafficPolicy=Local NodePort (text)."""
    services = [service_dict(f"svc-{i}", "bench", cluster_ip=f"10.96.1.{i + 1}",
                             ports=[{"name": "http", "port": 80, "targetPort": 8080}])
                for i in range(plain) if i != without]
    slices = [slice_dict(f"svc-{i}", "bench", ports=[{"name": "http", "port": 8080}],
                         endpoints=[endpoint(f"192.168.{i}.{j + (9 if moved and i == 0 else 1)}",
                                             NODE.name if j == 0 else "other")
                                    for j in range(3)])
              for i in range(plain) if i != without]
    services += [
        service_dict("web", "shop", cluster_ip="10.96.0.20", type="NodePort",
                     ports=[{"name": "http", "port": 80, "nodePort": 30080}],
                     affinity_timeout=300),
        service_dict("edge", "shop", cluster_ip="10.96.0.22", type="LoadBalancer",
                     ports=[{"name": "x", "port": 81, "nodePort": 30081}],
                     ingress=[{"ip": "203.0.113.5"}], source_ranges=["203.0.113.0/24"]),
        service_dict("local", "shop", cluster_ip="10.96.0.23", type="NodePort", etp="Local",
                     ports=[{"name": "y", "port": 82, "nodePort": 30082}]),
    ]
    slices += [
        slice_dict("web", "shop", endpoints=[endpoint(f"192.168.200.{i + 1}", NODE.name)
                                             for i in range(2)]),
        slice_dict("local", "shop", ports=[{"name": "y", "port": 82}],
                   endpoints=[endpoint("192.168.201.1", NODE.name),
                              endpoint("192.168.201.2", "other")]),
    ]
    return compute_ruleset([service_from_k8s(s) for s in services],
                           [endpoint_slice_from_k8s(s) for s in slices], NODE, options)


def nft(ns: str, *args: str) -> str:
    done = subprocess.run(("ip", "netns", "exec", ns, "nft") + args,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, f"{args}: {done.stderr}"
    return done.stdout


def by_nft(netns: str, rs) -> list:
    """The table one nft transaction makes of rs (then removed again)."""
    text_only = NftablesBackend(netns=netns, chunk_chains=None)
    text_only.sync(rs)
    listing = normalised(text_only.list_table())
    text_only.cleanup()
    return listing


def test_netlink_chunks_and_partial_batches_make_nfts_table(netns):
    expected = {name: by_nft(netns, rs) for name, rs in (
        ("all", ruleset()), ("moved", ruleset(moved=True)),
        ("without", ruleset(moved=True, without=5)))}
    backend = NftablesBackend(netns=netns, chunk_chains=8)
    assert not backend.sync(ruleset()).partial              # cold, in chunks
    cold_commits = backend.netlink.commits
    assert cold_commits >= 3                                # netlink did write
    assert normalised(backend.list_table()) == expected["all"]
    assert not backend.sync(ruleset()).partial              # forced resync
    assert backend.netlink.commits > cold_commits
    assert normalised(backend.list_table()) == expected["all"]

    commits = backend.netlink.commits
    report = backend.sync(ruleset(moved=True), frozenset({("bench", "svc-0")}))
    assert report.partial and backend.netlink.commits == commits + 1  # one batch
    assert len(report.stale_chains) == 3
    assert normalised(backend.list_table()) == expected["moved"]
    report = backend.sync(ruleset(moved=True, without=5), frozenset({("bench", "svc-5")}))
    assert report.partial
    assert normalised(backend.list_table()) == expected["without"]
    assert backend.unchanged()                              # only our commits


def test_a_refused_message_is_named_and_its_batch_leaves_nothing(netns):
    backend = NftablesBackend(netns=netns)
    backend.sync(ruleset(2))
    before = backend.list_table()
    netlink = NfNetlink(netns)
    try:
        with pytest.raises(NetlinkError) as info:
            netlink.apply([write_chain(Chain("zz-new", ("goto nowhere",)))],
                          "kube-proxy", ack_every=False)
    finally:
        netlink.close()
    assert info.value.operation == "add rule ip kube-proxy zz-new goto nowhere"
    assert info.value.errno == errno.ENOENT
    assert backend.list_table() == before                  # zz-new is not there


def test_the_netlink_listing_of_chains_and_sets_is_nfts(netns):
    backend = NftablesBackend(netns=netns)
    backend.sync(ruleset(3, options=ProxyOptions()))     # vmaps: anonymous sets
    assert "vmap {" in backend.list_table()
    state = backend.read_state()
    backend.netlink = None                                # nft -j instead
    assert backend.read_state() == state
    assert [s for s in state.sets if s.startswith("affinity-")]
    assert not [s for s in state.sets if s.startswith("__")]
    assert "services" in state.chains and len(state.chains) > 20
