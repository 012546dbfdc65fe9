"""The controllers' client in the daemon (controlplane/api/inprocess.py): the API
server handles its requests in process, with the answers a client over HTTPS
gets."""

from __future__ import annotations

import threading
import time

import pytest

from base.kube.client import ApiError, Credentials, KubeClient
from controlplane import identities as ids
from controlplane.api.inprocess import InProcessClient
from labd.credentials import in_process_client

SERVICE = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
           "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}


@pytest.fixture
def local(api_server):
    return in_process_client(api_server, ids.ADMIN)


@pytest.fixture
def remote(api_server):
    return KubeClient.from_kubeconfig(str(api_server.kubeconfig_path))


def test_answers_are_those_over_https(local, remote):
    created = local.create("services", SERVICE, "default")
    assert created["spec"]["clusterIP"] and created["metadata"]["uid"]
    assert local.get("services", "web", "default") == remote.get("services", "web", "default")
    items, rv = local.list("services", "default", label_selector="nothing=here")
    assert items == [] and int(rv) > 0
    patched = local.patch("services", "web", {"metadata": {"labels": {"tier": "front"}}},
                          "default")
    assert patched["metadata"]["labels"] == {"tier": "front"}
    assert remote.get("services", "web", "default")["metadata"]["labels"] == {"tier": "front"}


def test_errors_carry_the_status_reason_and_message(local):
    with pytest.raises(ApiError) as err:
        local.get("services", "absent", "default")
    assert (err.value.status, err.value.reason) == (404, "NotFound")
    assert 'services "absent" not found' in err.value.message
    local.create("services", SERVICE, "default")
    with pytest.raises(ApiError) as err:
        local.create("services", SERVICE, "default")
    assert (err.value.status, err.value.reason) == (409, "AlreadyExists")
    bad = {**SERVICE, "metadata": {"name": "Not_A_Name"}}
    with pytest.raises(ApiError) as err:
        local.create("services", bad, "default")
    assert err.value.status == 422 and "Not_A_Name" in err.value.message


def test_a_token_the_server_does_not_know_is_refused(api_server):
    client = InProcessClient(api_server, Credentials(
        server=f"https://{api_server.addresses[0]}", ca_pem=api_server.ca.cert_pem.decode(),
        token="not-a-token"))
    with pytest.raises(ApiError) as err:
        client.list("services")
    assert err.value.status == 401


def test_a_changed_answer_does_not_change_the_stored_object(local):
    local.create("services", SERVICE, "default")
    got = local.get("services", "web", "default")
    got["spec"]["ports"][0]["port"] = 9999
    got["metadata"]["labels"] = {"changed": "yes"}
    again = local.get("services", "web", "default")
    assert again["spec"]["ports"][0]["port"] == 80 and "labels" not in again["metadata"]


def test_a_watch_sees_changes_in_order_and_close_ends_it(local):
    _, rv = local.list("services", "default")
    watch = local.watch("services", rv, "default", timeout_seconds=60)
    seen: list[tuple[str, str]] = []
    ended = threading.Event()

    def read() -> None:
        for kind, obj in watch:
            if kind != "BOOKMARK":
                seen.append((kind, obj["metadata"]["name"]))
        ended.set()
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    local.create("services", SERVICE, "default")
    local.patch("services", "web", {"metadata": {"labels": {"a": "b"}}}, "default")
    local.delete("services", "web", "default")
    deadline = time.monotonic() + 10
    while len(seen) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert seen == [("ADDED", "web"), ("MODIFIED", "web"), ("DELETED", "web")]
    watch.close()
    assert ended.wait(5), "the watch went on after close()"


def test_a_watch_the_role_does_not_allow_is_forbidden(api_server):
    proxy = in_process_client(api_server, ids.KUBE_PROXY)
    with pytest.raises(ApiError) as err:
        proxy.watch("secrets", "0", "default")
    assert err.value.status == 403 and 'cannot watch resource "secrets"' in err.value.message


def test_a_stopped_server_refuses_as_its_closed_port_would(api_server):
    client = in_process_client(api_server, ids.ADMIN)
    api_server.stop()
    with pytest.raises(ConnectionRefusedError):
        client.list("services")
    with pytest.raises(ConnectionRefusedError):
        client.watch("services", "0")
