"""exec over the WebSocket channel protocols other clients speak: base64, the
unversioned channel.k8s.io, and v5's resize and close signal, message by message."""

from __future__ import annotations

import base64
import json
from urllib.parse import urlencode

import pytest
import websocket

from support.fake_streams import make_pod


@pytest.fixture
def fake(fake, client):
    """The fake node side with a running pod `p`."""
    make_pod(client, fake, "p")
    return fake


def connect(server, protocol: str, command: list[str], **flags: str) -> websocket.WebSocket:
    query = urlencode([("command", c) for c in command] + sorted(flags.items()))
    state = server.state_dir
    return websocket.create_connection(
        f"wss://{server.addresses[0]}/api/v1/namespaces/default/pods/p/exec?{query}",
        subprotocols=[protocol], timeout=20,
        sslopt={"ca_certs": str(server.ca_cert_path), "certfile": str(state / "admin.crt"),
                "keyfile": str(state / "admin.key")})


def messages(ws: websocket.WebSocket) -> list[tuple[int, bytes]]:
    """Every data message until the server closes: (opcode, payload)."""
    out = []
    while True:
        opcode, data = ws.recv_data()
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            return out
        out.append((opcode, data))


def test_base64_channels_are_text_frames(api_server, fake):
    ws = connect(api_server, "v4.base64.channel.k8s.io", ["sh", "-c", "head -n 1; exit 5"],
                 stdin="true", stdout="true", stderr="true")
    assert ws.subprotocol == "v4.base64.channel.k8s.io"
    ws.send("0" + base64.b64encode(b"first line\nsecond\n").decode())
    got = messages(ws)
    assert all(opcode == websocket.ABNF.OPCODE_TEXT for opcode, _ in got)
    by_channel: dict[str, bytes] = {}
    for _, data in got:
        by_channel[chr(data[0])] = by_channel.get(chr(data[0]), b"") + base64.b64decode(data[1:])
    assert by_channel["1"] == b"first line\n"
    status = json.loads(by_channel["3"])
    assert status["details"]["causes"] == [{"reason": "ExitCode", "message": "5"}]


def test_unversioned_channels_report_only_a_failure_as_text(api_server, fake):
    ws = connect(api_server, "channel.k8s.io", ["sh", "-c", "exit 2"], stdout="1")
    errors = [data[1:] for _, data in messages(ws) if data[0] == 3]
    assert errors == [b"command terminated with non-zero exit code: "
                      b"command terminated with exit code 2"]
    ws = connect(api_server, "channel.k8s.io", ["true"], stdout="1")
    assert [data for _, data in messages(ws) if data[0] == 3 and data[1:]] == []


def test_v5_resizes_the_terminal_and_closes_stdin(api_server, fake):
    ws = connect(api_server, "v5.channel.k8s.io",
                 ["sh", "-c", "read go; stty size; cat >/dev/null; echo stdin closed"],
                 stdin="true", stdout="true", tty="true")
    ws.send_binary(b"\x04" + json.dumps({"Width": 33, "Height": 11}).encode())
    ws.send_binary(b"\x00go\n")
    seen = b""
    while b"11 33" not in seen:
        _, data = ws.recv_data()
        seen += data[1:] if data[:1] == b"\x01" else b""
    ws.send_binary(b"\xff\x00")          # the close signal for stdin: the terminal's EOF
    rest = messages(ws)
    output = b"".join(data[1:] for _, data in rest if data[0] == 1)
    assert b"stdin closed" in output
    assert json.loads(next(data[1:] for _, data in rest if data[0] == 3)) == {
        "metadata": {}, "status": "Success"}


def test_an_unknown_subprotocol_is_refused(api_server, fake):
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        connect(api_server, "v9.channel.k8s.io", ["true"], stdout="1")
    assert refused.value.status_code == 400
