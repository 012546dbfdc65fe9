"""The pure parts of the pod streaming protocols: channel framing, Status, parameters."""

from __future__ import annotations

import json

import pytest

from controlplane.api.errors import StatusError
from controlplane.api.streams import channels, target
from controlplane.api.streams.channels import ChannelError, ResizeDecoder
from controlplane.api.streams.websocket import accept_headers, negotiate

V5 = channels.EXEC_PROTOCOLS["v5.channel.k8s.io"]
V4 = channels.EXEC_PROTOCOLS["v4.channel.k8s.io"]
B64 = channels.EXEC_PROTOCOLS["v4.base64.channel.k8s.io"]


def test_binary_channels_prefix_one_byte():
    assert channels.encode(V4, 1, b"out") == (b"\x01out", False)
    assert channels.decode(V4, b"\x00in") == (0, b"in")
    assert channels.decode(V4, b"\x04") == (4, b"")


def test_base64_channels_prefix_an_ascii_digit():
    assert channels.encode(B64, 2, b"err\n") == (b"2ZXJyCg==", True)
    assert channels.decode(B64, b"0aGk=") == (0, b"hi")
    with pytest.raises(ChannelError, match="invalid base64"):
        channels.decode(B64, b"0!!")


def test_v5_close_signal_names_one_channel():
    assert channels.decode(V5, b"\xff\x00") == (channels.CLOSE_SIGNAL, b"\x00")
    with pytest.raises(ChannelError, match="one channel"):
        channels.decode(V5, b"\xff\x00\x01")
    assert channels.decode(V4, b"\xff\x00") == (255, b"\x00")    # v4 has no such signal
    with pytest.raises(ChannelError, match="no channel byte"):
        channels.decode(V4, b"")


def test_exit_status_is_what_client_go_decodes_into_an_exit_code():
    status = json.loads(channels.status_payload(True, channels.exit_status(42)))
    assert status["status"] == "Failure"
    assert status["reason"] == "NonZeroExitCode"
    assert status["details"]["causes"] == [{"reason": "ExitCode", "message": "42"}]
    assert json.loads(channels.status_payload(True, channels.success_status())) == {
        "metadata": {}, "status": "Success"}


def test_old_protocols_carry_only_the_error_text():
    assert channels.status_payload(False, channels.success_status()) == b""
    failed = channels.status_payload(False, channels.error_status("InternalError", 500, "boom"))
    assert failed == b"boom"


def test_resize_objects_may_span_and_share_messages():
    decoder = ResizeDecoder()
    assert decoder.feed(b'{"Width":80,') == []
    assert decoder.feed(b'"Height":24}{"width":100,"height":30}\n{"Wid') == [(80, 24), (100, 30)]
    assert decoder.feed(b'th":1,"Height":2}') == [(1, 2)]
    with pytest.raises(ChannelError, match="Width and Height"):
        ResizeDecoder().feed(b'{"Width":-1,"Height":2}')
    with pytest.raises(ChannelError, match="not a JSON object"):
        ResizeDecoder().feed(b"x" * 5000)


def test_websocket_handshake_answers_rfc_6455s_sample_key():
    headers = {"sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==", "sec-websocket-version": "13"}
    answer = dict(accept_headers(headers, "v5.channel.k8s.io"))
    assert answer["Sec-WebSocket-Accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert answer["Sec-WebSocket-Protocol"] == "v5.channel.k8s.io"
    with pytest.raises(StatusError, match="Sec-WebSocket-Version must be 13"):
        accept_headers({**headers, "sec-websocket-version": "8"}, "")


def test_subprotocol_is_the_clients_first_supported_choice():
    supported = tuple(channels.EXEC_PROTOCOLS)
    assert negotiate(["v5.channel.k8s.io", "v4.channel.k8s.io"], supported) == "v5.channel.k8s.io"
    assert negotiate(["x", "v4.channel.k8s.io"], supported) == "v4.channel.k8s.io"
    assert negotiate([], supported) == ""
    with pytest.raises(StatusError, match="not supported"):
        negotiate(["v4.channel.k8s.io"], tuple(channels.PORTFORWARD_PROTOCOLS)[1:])


def test_exec_options_follow_the_kubelets_rules():
    query = target.query_all("/x?command=sh&command=-c&command=echo+hi&stdin=true&tty=1"
                             "&stderr=True")
    opts = target.exec_options(query, attach=False)
    assert opts.command == ("sh", "-c", "echo hi")
    assert (opts.stdin, opts.stdout, opts.stderr, opts.tty) == (True, True, False, True)
    with pytest.raises(StatusError, match="at least one command"):
        target.exec_options(target.query_all("/x?stdout=1"), attach=False)
    with pytest.raises(StatusError, match="at least 1 of stdin, stdout, stderr"):
        target.exec_options(target.query_all("/x?stdout=0&stderr=false"), attach=True)
    with pytest.raises(StatusError, match="tty: invalid boolean 'yes'"):
        target.exec_options(target.query_all("/x?command=a&tty=yes"), attach=False)


def test_forwarded_ports_are_repeated_or_comma_separated():
    assert target.forwarded_ports(target.query_all("/x?ports=80,81&ports=8080")) == [80, 81, 8080]
    for bad, message in (("0", "between 1 and 65535"), ("http", "unable to parse"),
                         ("", "cannot be empty")):
        with pytest.raises(StatusError, match=message):
            target.forwarded_ports({"ports": [bad]})


def pod(*containers: str, init: tuple[str, ...] = ()) -> dict:
    return {"metadata": {"name": "p"},
            "spec": {"containers": [{"name": c} for c in containers],
                     "initContainers": [{"name": c} for c in init]}}


def test_the_container_is_picked_as_the_api_server_does():
    assert target.pick_container(pod("web"), "") == "web"
    assert target.pick_container(pod("web", init=("setup",)), "setup") == "setup"
    with pytest.raises(StatusError, match=r"^container nope is not valid for pod p$"):
        target.pick_container(pod("web"), "nope")
    with pytest.raises(StatusError) as refused:
        target.pick_container(pod("web", "side", init=("setup",)), "")
    assert refused.value.message == ("a container name must be specified for pod p, "
                                     "choose one of: [setup web side]")
    with pytest.raises(StatusError, match="does not have a host assigned"):
        target.require_host(pod("web"))
