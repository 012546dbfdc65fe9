"""Nobody gets in without credentials: 401 for no token, a wrong token or a
foreign CA's certificate."""

from __future__ import annotations

import http.client
import json
import ssl
import stat

import pytest
import yaml

from controlplane.api import certs

SERVICE = json.dumps({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "intruder"},
                      "spec": {"ports": [{"port": 80}]}})


def request(server, method: str, path: str, *, token: str | None = None,
            cert: certs.KeyPair | None = None, body: str | None = None,
            tmp_path=None) -> tuple[int, dict]:
    ctx = ssl.create_default_context(cafile=str(server.ca_cert_path))
    if cert is not None:
        (tmp_path / "c.crt").write_bytes(cert.cert_pem)
        (tmp_path / "c.key").write_bytes(cert.key_pem)
        ctx.load_cert_chain(str(tmp_path / "c.crt"), str(tmp_path / "c.key"))
    host, port = server.addresses[0].split(":")
    conn = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=10)
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"{}")
    finally:
        conn.close()


SERVICES = "/api/v1/namespaces/default/services"


@pytest.mark.parametrize("credential",
                         ["none", "wrong-token", "foreign-ca-cert", "self-signed-as-admin"])
def test_requests_without_valid_credentials_get_401_and_store_nothing(api_server, tmp_path,
                                                                      credential):
    token, cert = None, None
    if credential == "wrong-token":
        token = "not-a-token"
    elif credential == "foreign-ca-cert":
        cert = certs.make_client_cert(certs.make_ca("other-ca"), "kubernetes-admin",
                                      ("system:masters",))
    elif credential == "self-signed-as-admin":
        # a CA cert is self-signed; not issued by the lab CA
        cert = certs.make_ca("kubernetes-admin")
    before = api_server.store.resource_version
    for method, path, body in (("GET", SERVICES, None), ("POST", SERVICES, SERVICE),
                               ("DELETE", SERVICES + "/kubernetes", None)):
        code, status = request(api_server, method, path, token=token, cert=cert, body=body,
                               tmp_path=tmp_path)
        assert code == 401
        assert (status["kind"], status["reason"], status["code"]) == ("Status", "Unauthorized", 401)
    assert api_server.store.resource_version == before
    assert api_server.store.get("services", "default", "intruder") is None
    assert api_server.store.get("services", "default", "kubernetes") is not None


def test_lab_client_cert_and_minted_token_are_accepted(api_server, tmp_path):
    code, _ = request(api_server, "GET", SERVICES, cert=api_server.admin, tmp_path=tmp_path)
    assert code == 200
    token = api_server.mint_token("svclab-agent:ip-172-31-0-11", ("system:masters",))
    code, created = request(api_server, "POST", SERVICES, token=token, body=SERVICE)
    assert code == 201 and created["metadata"]["name"] == "intruder"


def test_an_authenticated_user_without_bindings_is_forbidden_not_unauthorized(api_server):
    token = api_server.mint_token("svclab-agent:ip-172-31-0-11")
    code, status = request(api_server, "POST", SERVICES, token=token, body=SERVICE)
    assert code == 403 and status["reason"] == "Forbidden"
    assert status["message"] == ('services is forbidden: User "svclab-agent:ip-172-31-0-11" '
                                 'cannot create resource "services" in API group "" in the '
                                 'namespace "default"')
    assert api_server.store.get("services", "default", "intruder") is None


def test_kubectl_with_wrong_token_is_unauthorized(api_server, kubectl, tmp_path):
    path = api_server.write_kubeconfig(tmp_path / "bad.kubeconfig",
                                       f"https://{api_server.addresses[0]}", token="wrong")
    proc = kubectl.run("--kubeconfig", str(path), "get", "svc")
    assert proc.returncode == 1
    assert "You must be logged in to the server" in proc.stderr


def test_kubectl_with_minted_token_kubeconfig_works(api_server, kubectl, tmp_path):
    token = api_server.mint_token("agent", ("system:masters",))
    path = api_server.write_kubeconfig(tmp_path / "agent.kubeconfig",
                                       f"https://{api_server.addresses[0]}",
                                       token=token, user="agent")
    proc = kubectl.run("--kubeconfig", str(path), "get", "svc", "kubernetes", "-o", "name")
    assert proc.returncode == 0 and proc.stdout.strip() == "service/kubernetes"
    plain = api_server.write_kubeconfig(tmp_path / "plain.kubeconfig",
                                        f"https://{api_server.addresses[0]}",
                                        token=api_server.mint_token("agent"), user="agent")
    proc = kubectl.run("--kubeconfig", str(plain), "get", "svc", "kubernetes", "-o", "name")
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        'Error from server (Forbidden): services "kubernetes" is forbidden: User "agent" '
        'cannot get resource "services" in API group "" in the namespace "default"')


def test_keys_and_kubeconfig_are_owner_only(api_server):
    state = api_server.state_dir
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    for name in ("kubeconfig", "ca.key", "apiserver.key", "admin.key", "admin.token"):
        assert stat.S_IMODE((state / name).stat().st_mode) == 0o600, name
    config = yaml.safe_load(api_server.kubeconfig_path.read_text())
    assert config["clusters"][0]["cluster"]["server"] == f"https://{api_server.addresses[0]}"


def test_server_certificate_names_the_control_plane(api_server):
    from cryptography import x509
    cert = x509.load_pem_x509_certificate((api_server.state_dir / "apiserver.crt").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    ips = {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    assert {"127.0.0.1", "172.31.0.10", "10.96.0.1"} <= ips
    assert ({"kubernetes", "kubernetes.default.svc.cluster.local"}
            <= set(san.get_values_for_type(x509.DNSName)))
