"""The official Python client's exec and port-forward (kubernetes.stream) against the API server."""

from __future__ import annotations

import pytest
from kubernetes import client as k8s
from kubernetes import config
from kubernetes.stream import portforward, stream

from base.kube.client import KubeClient
from support.fake_streams import EchoServer, make_pod


@pytest.fixture
def v1(api_server, fake) -> k8s.CoreV1Api:
    make_pod(KubeClient.from_kubeconfig(str(api_server.kubeconfig_path)), fake, "p")
    configuration = k8s.Configuration()
    config.load_kube_config(str(api_server.kubeconfig_path), client_configuration=configuration)
    return k8s.CoreV1Api(k8s.ApiClient(configuration))


def exec_stream(v1, command: list[str], protocol: str | None = None, **kwargs):
    headers = {"sec-websocket-protocol": protocol} if protocol else None
    return stream(v1.connect_get_namespaced_pod_exec, "p", "default", command=command,
                  stdout=True, stderr=True, tty=False, _preload_content=False,
                  _headers=headers, **kwargs)


def test_exec_reads_stdout_stderr_and_the_exit_code(v1):
    resp = exec_stream(v1, ["sh", "-c", "echo out; echo err >&2; exit 3"],
                       protocol="v4.channel.k8s.io", stdin=False)
    resp.run_forever(timeout=30)
    assert resp.subprotocol == "v4.channel.k8s.io"
    assert (resp.read_stdout(), resp.read_stderr()) == ("out\n", "err\n")
    assert resp.returncode == 3


def test_exec_closing_stdin_ends_cat(v1):
    resp = exec_stream(v1, ["sh", "-c", "cat; echo done >&2"], stdin=True)
    assert resp.subprotocol == "v5.channel.k8s.io"     # the client's first choice
    resp.write_stdin("hello\n")
    resp.write_stdin(b"bytes too\n")
    resp.close_channel(0)
    resp.run_forever(timeout=30)
    assert resp.read_stdout() == "hello\nbytes too\n"
    assert resp.read_stderr() == "done\n"
    assert resp.returncode == 0


def test_exec_preloaded_returns_the_output(v1):
    out = stream(v1.connect_get_namespaced_pod_exec, "p", "default",
                 command=["sh", "-c", "echo preloaded"], stdout=True, stderr=True, stdin=False,
                 tty=False)
    assert out == "preloaded\n"


def test_portforward_forwards_each_port_and_reports_a_refused_one(v1, fake):
    echo = EchoServer(b"eighty")
    fake.listen("default", "p", 80, echo.address)
    try:
        forward = portforward(v1.connect_get_namespaced_pod_portforward, "p", "default",
                              ports="80,81")
        sock = forward.socket(80)
        sock.settimeout(20)
        sock.sendall(b"ping\n")
        assert sock.recv(1024) == b"eighty:ping\n"
        refused = forward.socket(81)
        refused.settimeout(20)
        assert refused.recv(1024) == b""
        assert forward.error(81).startswith("error forwarding port 81 to pod ")
        assert "dial tcp4 127.0.0.1:81: connect: connection refused" in forward.error(81)
        assert forward.error(80) is None
        sock.close()
        forward.close()
    finally:
        echo.close()


def test_exec_in_a_missing_pod_fails_the_handshake_with_404(v1):
    with pytest.raises(k8s.ApiException) as refused:
        stream(v1.connect_get_namespaced_pod_exec, "nope", "default", command=["true"],
               stdout=True, stderr=True, stdin=False, tty=False)
    assert "404" in str(refused.value)
