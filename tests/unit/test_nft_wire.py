"""The nf_tables messages svclab writes for what it adds, byte for byte.

No socket, no root.  One rule's expressions are written out by hand from
the kernel's uapi (NFTA_LIST_ELEM, NFTA_EXPR_*, payload/cmp/immediate
attributes) as `nft --debug=netlink` shows nft 1.0.6 sends them; the fast
template path is checked against attributes built one by one here for
many values; what is not encoded (and so left to nft's text) is listed;
the batch asks one ack for a big transaction and still names every
message; dump answers are read in place.  tests/integration/test_nft_wire.py
checks against the kernel that netlink and nft make identical tables.
"""

from __future__ import annotations

import random
import socket
import struct

import pytest

from agents.proxy import NodeInfo, compute_ruleset, endpoint_slice_from_k8s, service_from_k8s
from agents.proxy.errors import NetlinkError
from agents.proxy.fixtures import endpoint, service_dict, slice_dict
from agents.proxy.model import ProxyOptions
from agents.proxy.nfnetlink import (
    NLM_F_ACK,
    NLM_F_DUMP_INTR,
    NLMSG_DONE,
    NLMSG_ERROR,
    DeleteChain,
    attr,
    decode_messages,
    dumped_names,
    encode_batch,
    nested,
    strz,
)
from agents.proxy.nft_plan import Chain, Element
from agents.proxy.nft_render import partial_change, plan_ruleset
from agents.proxy.nft_wire import (
    AddElements,
    Unencodable,
    WriteChain,
    created_ops,
    element_bytes,
    partial_ops,
    rule_expressions,
    write_chain,
)

NODE = NodeInfo("ip-172-31-0-11", ("172.31.0.11",), cluster_cidr="192.168.0.0/16")
LARGE = ProxyOptions(large_cluster_endpoints=1)     # numgen goto, no vmaps


def hexbytes(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", "").replace("\n", ""))


# ------------------------------------------------------- reference bytes ---
# Attributes built one at a time, as the uapi nests them: the template
# path in nft_wire must give the same bytes.

def be32(kind: int, value: int) -> bytes:
    return attr(kind, struct.pack("!i" if value < 0 else "!I", value))


def expr(name: str, *attrs: bytes) -> bytes:
    return nested(1, strz(1, name), nested(2, *attrs))


def cmp_eq(data: bytes, op: int = 0) -> bytes:
    return expr("cmp", be32(1, 1), be32(2, op), nested(3, attr(1, data)))


def verdict(code: int, chain: str) -> bytes:
    return expr("immediate", be32(1, 0), nested(2, nested(
        2, be32(1, code), strz(2, chain))))


def ip_match(offset: int, data: bytes, op: int = 0) -> bytes:
    return expr("payload", be32(1, 1), be32(2, 1), be32(3, offset),
                be32(4, len(data))) + cmp_eq(data, op)


def dnat(address: str, port: int) -> bytes:
    return (expr("immediate", be32(1, 1), nested(2, attr(1, socket.inet_aton(address))))
            + expr("immediate", be32(1, 2), nested(2, attr(1, struct.pack("!H", port))))
            + expr("nat", be32(1, 1), be32(2, 2), be32(3, 1), be32(5, 2), be32(7, 2)))


# ---------------------------------------------------------------- rules ---

def test_an_endpoint_masquerade_rule_byte_for_byte():
    assert rule_expressions("ip saddr 192.168.0.2 jump mark-for-masquerade") == hexbytes(
        "3400 0180  0c00 0100 7061796c6f616400"          # LIST_ELEM, NAME "payload"
        "  2400 0280"                                      # EXPR_DATA
        "    0800 0100 00000001  0800 0200 00000001"       # DREG 1, BASE network
        "    0800 0300 0000000c  0800 0400 00000004"       # OFFSET 12, LEN 4
        "2c00 0180  0800 0100 636d7000"                    # "cmp"
        "  2000 0280  0800 0100 00000001  0800 0200 00000000"   # SREG 1, OP eq
        "    0c00 0380  0800 0100 c0a80002"                # DATA { VALUE 192.168.0.2 }
        "4800 0180  0e00 0100 696d6d65646961746500 0000"   # "immediate"
        "  3400 0280  0800 0100 00000000"                  # DREG verdict
        "    2800 0280  2400 0280  0800 0100 fffffffd"     # DATA { VERDICT { JUMP
        "      1800 0200 6d61726b2d666f722d6d617371756572616465 00")  # CHAIN } }


@pytest.mark.parametrize("seed", range(5))
def test_the_template_path_matches_attributes_built_one_by_one(seed):
    rng = random.Random(seed)
    for _ in range(50):
        ip = ".".join(str(rng.randrange(1, 255)) for _ in range(4))
        port = rng.randrange(1, 65536)
        chain = "endpoint-" + "x" * rng.randrange(1, 200)
        assert rule_expressions(f"ip saddr {ip} jump {chain}") == \
            ip_match(12, socket.inet_aton(ip)) + verdict(-3, chain)
        assert rule_expressions(f"meta l4proto tcp dnat to {ip}:{port}") == \
            expr("meta", be32(1, 1), be32(2, 16)) + cmp_eq(b"\x06") + dnat(ip, port)
        assert rule_expressions(f"numgen random mod 3 1 goto {chain}") == (
            expr("numgen", be32(1, 1), be32(2, 3), be32(3, 1), be32(4, 0))
            + cmp_eq(struct.pack("=I", 1)) + verdict(-4, chain))


def test_a_byte_aligned_prefix_loads_only_its_bytes_as_nft_does():
    # nft: [ payload load 2b @ network header + 12 => reg 1 ] [ cmp neq ... ]
    assert rule_expressions(
        "ip daddr 10.96.0.1 ip saddr != 192.168.0.0/16 jump mark-for-masquerade") == (
        ip_match(16, socket.inet_aton("10.96.0.1"))
        + ip_match(12, b"\xc0\xa8", op=1) + verdict(-3, "mark-for-masquerade"))


@pytest.mark.parametrize("rule", [
    "numgen random mod 2 vmap { 0 : goto a , 1 : goto b }",    # anonymous map
    'ip saddr 192.168.0.0/16 goto c comment "short-circuit pod traffic"',
    "fib saddr type local jump mark-for-masquerade",
    "ip saddr @affinity-x goto endpoint-x",
    "update @affinity-x { ip saddr }",
    "ip daddr 10.96.0.0/12 drop",                              # needs a mask
    "ip saddr != { 203.0.113.0/24 } drop",
    "ip daddr . meta l4proto . th dport vmap @service-ips",
    "ct state new jump firewall-check",
    "masquerade fully-random",
    "meta l4proto tcp dnat to 192.168.0.300:80",
    "meta l4proto icmp dnat to 192.168.0.3",
    "jump",
    "goto a b",
])
def test_shapes_left_to_nft_are_refused(rule):
    with pytest.raises(Unencodable):
        rule_expressions(rule)


# ----------------------------------------------------- plans to messages ---

def ruleset(options: ProxyOptions = LARGE):
    services = [
        service_dict("plain", "shop", cluster_ip="10.96.0.20",
                     ports=[{"name": "http", "port": 80}]),
        service_dict("sticky", "shop", cluster_ip="10.96.0.21",
                     ports=[{"name": "http", "port": 80}], affinity_timeout=60),
        service_dict("lonely", "shop", cluster_ip="10.96.0.22",
                     ports=[{"name": "http", "port": 80}]),
    ]
    slices = [slice_dict(name, "shop", endpoints=[
        endpoint(f"192.168.{i}.{j + 1}", NODE.name) for j in range(3)])
        for i, name in enumerate(("plain", "sticky"))]
    return compute_ruleset([service_from_k8s(s) for s in services],
                           [endpoint_slice_from_k8s(s) for s in slices], NODE, options)


def test_services_nft_must_write_are_left_out_whole():
    plan = plan_ruleset(ruleset())
    objects = dict(plan.services)
    ops, left = created_ops(list(objects.values()), plan, elements=True)
    # affinity (sets, `update @set`) and no endpoints (commented elements)
    assert left == [objects[("shop", "lonely")], objects[("shop", "sticky")]]
    written = [op for op in ops if isinstance(op, WriteChain) and op.rules]
    plain = objects[("shop", "plain")]
    assert [op.name for op in written] == [c.name for c in plain.chains]
    assert all(not op.refill for op in written)
    [cluster, service] = [op for op in ops if isinstance(op, AddElements)]
    assert cluster.items == (("10.96.0.20", None),)
    assert service.container == "service-ips" and service.items[0][0] == "10.96.0.20 . tcp . 80"


def test_small_clusters_keep_kube_proxys_vmap_in_nft_text():
    plan = plan_ruleset(ruleset(ProxyOptions()))
    _, left = created_ops(list(plan.services.values()), plan, elements=True)
    assert len(left) == 3                   # vmaps, affinity, comments


def test_a_refill_flushes_and_intact_chains_are_kept():
    plan = plan_ruleset(ruleset())
    plain = plan.services[("shop", "plain")]
    keep = {c.name for c in plain.chains if c.name.startswith("endpoint-")}
    ops, _ = created_ops([plain], plan, refill=True, keep=keep)
    [service] = [op for op in ops if isinstance(op, WriteChain) and op.rules]
    assert service.name.startswith("service-") and service.refill
    assert service.count == 2 + len(service.rules)
    assert not any(isinstance(op, AddElements) for op in ops)


def test_an_element_with_a_comment_is_not_encoded():
    with pytest.raises(Unencodable):
        element_bytes(Element("no-endpoint-services", "10.96.0.22 . tcp . 80",
                              "goto reject-chain", "shop/lonely:http"))
    encoded = element_bytes(Element("service-ips", "10.96.0.20 . tcp . 80",
                                    "goto service-X"))
    assert encoded == nested(1, nested(1, attr(1, hexbytes(
        "0a600014 06000000 00500000"))), nested(2, nested(
            2, be32(1, -4), strz(2, "service-X"))))


def test_a_partial_sync_is_one_batch_in_renders_order():
    before = plan_ruleset(ruleset())
    three = ruleset()
    changed = compute_ruleset(
        [service_from_k8s(service_dict("plain", "shop", cluster_ip="10.96.0.20",
                                       ports=[{"name": "http", "port": 80}]))],
        [endpoint_slice_from_k8s(slice_dict("plain", "shop", endpoints=[
            endpoint("192.168.0.1", NODE.name), endpoint("192.168.0.9", NODE.name)]))],
        NODE, LARGE, previous=three, changed=frozenset({("shop", "plain")}))
    key = ("shop", "plain")
    change = partial_change(plan_ruleset(changed, frozenset({key})),
                            {key: before.services[key]}, {key})
    commands = [op.nft_command("ip kube-proxy", i)
                for op in partial_ops(change) for i in range(op.count)]
    verbs = [" ".join(c.split()[:2]) for c in commands]
    assert verbs == ["add chain", "add rule", "add rule",     # the new endpoint
                     "add chain", "flush chain"] + ["add rule"] * 3 + [
                     "delete chain", "delete chain"]         # the two gone
    assert "192.168.0.9" in commands[0]
    assert all("192.168.0.9" not in c for c in commands[-2:])


def test_a_partial_sync_with_affinity_sets_is_left_to_nft():
    plan = plan_ruleset(ruleset())
    key = ("shop", "sticky")
    change = partial_change(plan, {}, {key})
    with pytest.raises(Unencodable):
        partial_ops(change)


# ---------------------------------------------------------------- batches ---

def test_a_big_batch_asks_one_ack_and_still_names_each_message():
    chain = write_chain(Chain("c", ("ip saddr 10.0.0.1 jump d", "goto d")),
                        refill=True)
    data, what = encode_batch([chain, DeleteChain("old")], "t", first_seq=10,
                              ack_every=False)
    messages = decode_messages(data)
    assert [m.seq for m in messages] == list(range(10, 17))  # begin .. end
    acked = [m.seq for m in messages if m.flags & NLM_F_ACK]
    assert acked == [15]                                    # the last only
    assert [what[s] for s in range(10, 16)] == [
        "commit", "add chain ip t c", "flush chain ip t c",
        "add rule ip t c ip saddr 10.0.0.1 jump d", "add rule ip t c goto d",
        "delete chain ip t old"]


def test_every_message_is_acked_when_asked_and_a_chains_last_is_reflagged():
    chain = write_chain(Chain("c", ("goto d",)))
    data, _ = encode_batch([chain], "t", first_seq=1, ack_every=False)
    messages = decode_messages(data)[1:-1]
    assert [bool(m.flags & NLM_F_ACK) for m in messages] == [False, True]
    assert messages[1].flags & 0xC00 == 0xC00               # CREATE | APPEND kept
    data, _ = encode_batch([chain], "t", first_seq=1)
    assert all(m.flags & NLM_F_ACK for m in decode_messages(data)[1:-1])


# ------------------------------------------------------------------ dumps ---

def dump_message(seq: int, kind: int, *attrs: bytes, flags: int = 0x2) -> bytes:
    body = struct.pack("=BBH", 2, 0, 0) + b"".join(attrs)
    return struct.pack("=IHHII", 16 + len(body), kind, flags, seq, 0) + body


def test_chain_and_set_dumps_are_read_for_our_table_only():
    table = b"kube-proxy\0"
    data = (dump_message(7, 0x0a03, strz(1, "kube-proxy"), attr(2, bytes(8)),
                         strz(3, "service-A"))
            + dump_message(7, 0x0a03, strz(1, "other"), attr(2, bytes(8)),
                           strz(3, "service-B"))
            + dump_message(7, 0x0a03, strz(1, "kube-proxy"), attr(2, bytes(8)),
                           strz(3, "endpoint-C"), flags=0x2 | NLM_F_DUMP_INTR)
            + dump_message(7, NLMSG_DONE, bytes(4)))
    names: list[str] = []
    assert dumped_names(data, 7, 4, table, names) == (True, True)
    assert names == ["service-A", "endpoint-C"]
    sets = (dump_message(8, 0x0a09, strz(1, "kube-proxy"), strz(2, "affinity-x"),
                         be32(3, 0x60))                      # dynamic, timeout
            + dump_message(8, 0x0a09, strz(1, "kube-proxy"), strz(2, "__map0"),
                           be32(3, 0x0b))                    # anonymous map
            + dump_message(8, 0x0a09, strz(1, "kube-proxy"), strz(2, "service-ips"),
                           be32(3, 0x09)))                   # a map
    names = []
    assert dumped_names(sets, 8, 10, table, names) == (False, False)
    assert names == ["affinity-x"]


def test_a_refused_dump_raises():
    error = struct.pack("=i", -1) + struct.pack("=IHHII", 20, 0x0a04, 0x301, 9, 0)
    data = struct.pack("=IHHII", 16 + len(error), NLMSG_ERROR, 0, 9, 0) + error
    with pytest.raises(NetlinkError) as info:
        dumped_names(data, 9, 4, b"kube-proxy\0", [])
    assert info.value.errno == 1
