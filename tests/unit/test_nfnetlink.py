"""The nf_tables netlink messages svclab writes itself, byte for byte.

No socket, no root: the expected bytes are written out by hand from the
kernel's uapi (nlmsghdr, nfgenmsg, nlattr, NFTA_* numbers), so the encoder
is checked against the layout rather than against itself; answers the
kernel sends (ACKs, errors with extended-ack text, NEWGEN) are decoded.
"""

from __future__ import annotations

import struct

import pytest

from agents.proxy.errors import NetlinkError, ProxyError
from agents.proxy.nfnetlink import (
    DeleteChain,
    DeleteElements,
    DeleteSet,
    decode_messages,
    encode_batch,
    encode_key,
    error_of,
    generation_of,
    getgen_message,
    removals_as_text,
)

ADDR_PROTO_PORT = "ipv4_addr . inet_proto . inet_service"


def hexbytes(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", "").replace("\n", ""))


def test_concatenated_keys_pad_every_field_to_four_bytes():
    assert encode_key("10.96.0.1 . tcp . 80", ADDR_PROTO_PORT) == hexbytes(
        "0a600001 06000000 00500000")
    assert encode_key("udp . 30080", "inet_proto . inet_service") == \
        hexbytes("11000000 75800000")
    assert encode_key("10.96.0.1", "ipv4_addr") == hexbytes("0a600001")
    assert encode_key("192.168.1.2 . sctp . 5000", ADDR_PROTO_PORT) == \
        hexbytes("c0a80102 84000000 13880000")


def test_a_key_of_the_wrong_shape_is_refused():
    with pytest.raises(ValueError):
        encode_key("10.96.0.1 . tcp", ADDR_PROTO_PORT)


def test_a_batch_is_begin_messages_end():
    data, what = encode_batch([DeleteChain("c")], "t", first_seq=7)
    begin = hexbytes("14000000 1000 0100 07000000 00000000  00 00 000a")
    delchain = hexbytes(
        "24000000 050a 0500 08000000 00000000"   # len 36, DELCHAIN, REQ|ACK
        "02 00 0000"                             # nfgenmsg: AF_INET(2)
        "0600 0100 74000000"                     # NFTA_CHAIN_TABLE "t"
        "0600 0300 63000000")                    # NFTA_CHAIN_NAME "c"
    end = hexbytes("14000000 1100 0100 09000000 00000000  00 00 000a")
    assert data == begin + delchain + end
    assert what == {7: "commit", 8: "delete chain ip t c"}


def test_delete_elements_nests_list_element_key_and_value():
    data, _ = encode_batch([DeleteElements(
        "service-ips", ("10.96.0.1 . tcp . 80",), ADDR_PROTO_PORT)],
        "kube-proxy", first_seq=1)
    msg = decode_messages(data)[1]
    assert (msg.type, msg.flags, msg.seq) == (0x0a0e, 0x5, 2)  # DELSETELEM
    assert msg.payload == hexbytes(
        "02 00 0000"
        "0f00 0100 6b7562652d70726f787900 00"    # LIST_TABLE "kube-proxy"
        "1000 0200 736572766963652d69707300"     # LIST_SET "service-ips"
        "1c00 0380"                              # LIST_ELEMENTS (nested)
        "1800 0180"                              #  LIST_ELEM
        "1400 0180"                              #   SET_ELEM_KEY
        "1000 0100 0a600001 06000000 00500000")  #    DATA_VALUE, 12 bytes


def test_delete_set_and_getgen_messages():
    data, what = encode_batch([DeleteSet("affinity-x")], "t", first_seq=3)
    msg = decode_messages(data)[1]
    assert msg.type == 0x0a0b                                   # DELSET
    assert msg.payload == hexbytes("02 00 0000 0600 0100 74000000"
                                   "0f00 0200 616666696e6974792d7800 00")
    assert what[4] == "delete set ip t affinity-x"
    assert getgen_message(5) == hexbytes(
        "14000000 100a 0100 05000000 00000000 00 00 0000")     # GETGEN


def test_acks_errors_and_generation_are_decoded():
    acked = struct.pack("=IHHII", 16, 0x0a05, 5, 8, 0)
    ack = struct.pack("=IHHII", 36, 2, 0x100, 8, 1234) + \
        struct.pack("=i", 0) + acked
    text = b"Device or resource busy\0"
    tlv = struct.pack("=HH", 4 + len(text), 1) + text + b"\0" * (
        -len(text) % 4)
    refused = struct.pack("=IHHII", 36 + len(tlv), 2, 0x300, 9, 1234) + \
        struct.pack("=i", -16) + struct.pack("=IHHII", 16, 0x0a05, 5, 9, 0) \
        + tlv
    newgen = struct.pack("=IHHII", 28, 0x0a0f, 0, 5, 0) + \
        hexbytes("00 00 0000  0800 0100 00012345")
    ack_msg, err_msg, gen_msg = decode_messages(ack + refused + newgen)
    assert error_of(ack_msg) == (0, 8, "")
    assert error_of(err_msg) == (16, 9, "Device or resource busy")
    assert generation_of(gen_msg) == 0x12345


def test_a_truncated_answer_is_an_error():
    with pytest.raises(ValueError):
        decode_messages(struct.pack("=IHHII", 40, 2, 0, 1, 0))


def test_netlink_errors_name_the_message_and_errno():
    err = NetlinkError("delete chain ip kube-proxy x", 16, "")
    assert isinstance(err, ProxyError)
    assert str(err) == ("nf_tables refused delete chain ip kube-proxy x: "
                        "EBUSY (Device or resource busy)")
    assert (err.operation, err.errno) == ("delete chain ip kube-proxy x", 16)


def test_removals_as_nft_text_flush_chains_before_deleting_them():
    text = removals_as_text([
        DeleteElements("cluster-ips", ("10.96.0.1", "10.96.0.2"), "ipv4_addr"),
        DeleteChain("service-x"), DeleteSet("affinity-y")], "ip kube-proxy")
    assert text.splitlines() == [
        "delete element ip kube-proxy cluster-ips { 10.96.0.1 , 10.96.0.2 }",
        "flush chain ip kube-proxy service-x",
        "delete chain ip kube-proxy service-x",
        "delete set ip kube-proxy affinity-y"]
