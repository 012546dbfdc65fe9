"""ServiceAccounts with the real kubectl: a `default` one in every namespace, tokens from
`kubectl create token` that authenticate as the account until it (or the pod a token
is bound to) is gone or the token expires, and the token the kubelet gives each pod."""
from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from base.kube.client import ApiError, Credentials, KubeClient
from base.waiting import wait_until
from controlplane.api import jws
from controlplane.kubelet.serviceaccount import MOUNT_PATH
from support.controller_harness import InProcessCluster

NS = "team-a"
SA_USER = f"system:serviceaccount:{NS}:default"
KUBECTL = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "kubectl"


@dataclass
class Kubectl:
    kubeconfig: Path
    cache_dir: Path
    cwd: Path

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(KUBECTL), "--kubeconfig", str(self.kubeconfig),
                               "--cache-dir", str(self.cache_dir), *args],
                              capture_output=True, text=True, timeout=30, cwd=self.cwd,
                              env={**os.environ, "HOME": str(self.cwd)})

    def __call__(self, *args: str) -> str:
        proc = self.run(*args)
        assert proc.returncode == 0, f"kubectl {' '.join(args)} failed:\n{proc.stderr}"
        return proc.stdout


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with InProcessCluster(tmp_path_factory.mktemp("sa")) as running:
        yield running


@pytest.fixture(scope="module")
def kubectl(cluster, tmp_path_factory) -> Kubectl:
    tmp = tmp_path_factory.mktemp("kubectl")
    return Kubectl(cluster.server.kubeconfig_path, tmp / "cache", tmp)


@pytest.fixture(scope="module")
def team(cluster, kubectl) -> str:
    kubectl("create", "namespace", NS)
    wait_until("the default ServiceAccount of team-a",
               lambda: cluster.get("serviceaccounts", "default", NS))
    return NS


def claims(token: str) -> dict:
    return json.loads(jws.b64url_decode(token.split(".")[1]))


def as_token(cluster, token: str) -> KubeClient:
    server = cluster.server
    return KubeClient(Credentials(server=f"https://{server.addresses[0]}",
                                  ca_pem=server.ca.cert_pem.decode(), token=token))


def status_of(client: KubeClient, namespace: str) -> int:
    try:
        client.list("pods", namespace)
    except ApiError as err:
        return err.status
    return 200


def token_kubeconfig(cluster, kubectl: Kubectl, token: str, name: str) -> str:
    path = kubectl.cwd / f"{name}.kubeconfig"
    cluster.server.write_kubeconfig(path, f"https://{cluster.server.addresses[0]}",
                                    token=token, user=name)
    return str(path)


def test_every_namespace_has_a_default_service_account(cluster, kubectl, team):
    for namespace in ("default", "kube-system", "kube-public", "kube-node-lease", team):
        wait_until(f"{namespace}/default", lambda n=namespace: cluster.get(
            "serviceaccounts", "default", n))
    table = kubectl("get", "sa", "-n", team)
    assert table.split("\n")[0].split() == ["NAME", "SECRETS", "AGE"]
    assert table.split("\n")[1].split()[:2] == ["default", "0"]


def test_a_deleted_default_service_account_comes_back_as_a_new_one(cluster, kubectl, team):
    kubectl("create", "namespace", "team-gone")
    old = wait_until("team-gone/default",
                     lambda: cluster.get("serviceaccounts", "default", "team-gone"))
    kubectl("delete", "sa", "default", "-n", "team-gone")
    new = wait_until("a new team-gone/default", lambda: (
        lambda sa: sa if sa and sa["metadata"]["uid"] != old["metadata"]["uid"] else None)(
            cluster.get("serviceaccounts", "default", "team-gone")))
    assert new["metadata"]["name"] == "default"


def test_kubectl_create_token_gives_a_jwt_for_the_account(cluster, kubectl, team):
    token = kubectl("create", "token", "default", "-n", team).strip()
    seen = claims(token)
    account = cluster.get("serviceaccounts", "default", team)
    assert seen["sub"] == SA_USER
    assert seen["aud"] == ["https://kubernetes.default.svc.cluster.local"]
    assert seen["exp"] - seen["iat"] == 3600 and seen["nbf"] == seen["iat"]
    assert seen["kubernetes.io"]["serviceaccount"] == {"name": "default",
                                                       "uid": account["metadata"]["uid"]}
    ten = claims(kubectl("create", "token", "default", "-n", team, "--duration", "10m").strip())
    assert ten["exp"] - ten["iat"] == 600
    short = kubectl.run("create", "token", "default", "-n", team, "--duration", "1m")
    assert short.returncode == 1
    assert ("spec.expirationSeconds: Invalid value: 60: may not specify a duration less than "
            "10 minutes") in short.stderr
    missing = kubectl.run("create", "token", "nobody", "-n", team)
    assert 'serviceaccounts "nobody" not found' in missing.stderr


def test_the_token_authenticates_as_the_service_account(cluster, kubectl, team):
    token = kubectl("create", "token", "default", "-n", team).strip()
    config = token_kubeconfig(cluster, kubectl, token, "robot")
    who = json.loads(kubectl("--kubeconfig", config, "auth", "whoami", "-o", "json"))
    info = who["status"]["userInfo"]
    assert info["username"] == SA_USER
    assert set(info["groups"]) == {"system:serviceaccounts", f"system:serviceaccounts:{team}",
                                   "system:authenticated"}


@pytest.fixture(scope="module")
def reads_pods(kubectl, team) -> str:
    """The namespace's default ServiceAccount may list its pods (a Role and binding)."""
    kubectl("create", "role", "pod-reader", "--verb=list", "--resource=pods", "-n", team)
    kubectl("create", "rolebinding", "robot-reads", "--role=pod-reader",
            f"--serviceaccount={team}:default", "-n", team)
    return team


def test_the_account_gets_exactly_its_bindings(cluster, kubectl, team, reads_pods):
    robot = as_token(cluster, kubectl("create", "token", "default", "-n", team).strip())
    assert wait_until("the binding to take effect", lambda: status_of(robot, team) == 200)
    assert status_of(robot, "default") == 403
    config = token_kubeconfig(cluster, kubectl, robot.credentials.token, "robot")
    refused = kubectl.run("--kubeconfig", config, "get", "pods", "-n", "default")
    assert (f'User "{SA_USER}" cannot list resource "pods" in API group "" in the '
            'namespace "default"') in refused.stderr


def test_expired_and_foreign_tokens_get_401(cluster, team):
    account = cluster.get("serviceaccounts", "default", team)
    expired, _ = cluster.server.tokens.issue(account, seconds=600, now=time.time() - 3600)
    assert status_of(as_token(cluster, expired), team) == 401
    body = claims(expired)
    body["exp"] = int(time.time()) + 600
    head, _, sig = expired.split(".")
    forged = f"{head}.{jws.b64url(json.dumps(body).encode())}.{sig}"
    assert status_of(as_token(cluster, forged), team) == 401


def test_deleting_the_account_revokes_its_tokens(cluster, kubectl):
    kubectl("create", "namespace", "team-b")
    wait_until("team-b/default", lambda: cluster.get("serviceaccounts", "default", "team-b"))
    kubectl("create", "sa", "robot", "-n", "team-b")
    token = kubectl("create", "token", "robot", "-n", "team-b").strip()
    config = token_kubeconfig(cluster, kubectl, token, "robot-b")
    assert kubectl.run("--kubeconfig", config, "auth", "whoami").returncode == 0
    kubectl("delete", "sa", "robot", "-n", "team-b")
    gone = kubectl.run("--kubeconfig", config, "auth", "whoami")
    assert gone.returncode == 1 and "Unauthorized" in gone.stderr
    kubectl("create", "sa", "robot", "-n", "team-b")           # same name, another account
    assert kubectl.run("--kubeconfig", config, "auth", "whoami").returncode == 1


def pod(name: str, **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "web", "image": "nginx"}],
                     "terminationGracePeriodSeconds": 0, **spec}}


def volumes_of(cluster, name: str, namespace: str = NS):
    found = cluster.runtime.pods.get((namespace, name))
    return found["sandbox"].volumes if found else None


def test_a_pod_gets_a_token_bound_to_it(cluster, kubectl, team, reads_pods):
    cluster.client.create("pods", pod("web-1"), team)
    volumes = wait_until("web-1's sandbox", lambda: volumes_of(cluster, "web-1"))
    assert [v.path for v in volumes] == [MOUNT_PATH]
    files = dict(volumes[0].files)
    assert sorted(files) == ["ca.crt", "namespace", "token"]
    assert files["namespace"] == team
    assert files["ca.crt"] == cluster.server.ca.cert_pem.decode()
    seen = claims(files["token"])
    live = cluster.get("pods", "web-1", team)
    assert seen["sub"] == SA_USER
    assert seen["kubernetes.io"]["pod"] == {"name": "web-1", "uid": live["metadata"]["uid"]}
    assert live["spec"]["serviceAccountName"] == "default"
    in_pod = as_token(cluster, files["token"])
    assert status_of(in_pod, team) == 200          # reads_pods's binding
    cluster.client.delete("pods", "web-1", team, grace_period=0)
    wait_until("web-1 gone", lambda: cluster.get("pods", "web-1", team) is None)
    assert status_of(in_pod, team) == 401


def test_automount_false_on_the_pod_or_its_account_gives_no_token(cluster, kubectl, team):
    cluster.client.create("pods", pod("quiet", automountServiceAccountToken=False), team)
    assert wait_until("quiet's sandbox", lambda: volumes_of(cluster, "quiet") is not None)
    assert volumes_of(cluster, "quiet") == ()
    cluster.client.create("serviceaccounts", {"metadata": {"name": "shy"},
                                              "automountServiceAccountToken": False}, team)
    cluster.client.create("pods", pod("shy-pod", serviceAccountName="shy"), team)
    assert wait_until("shy-pod's sandbox", lambda: volumes_of(cluster, "shy-pod") is not None)
    assert volumes_of(cluster, "shy-pod") == ()
    cluster.client.create("pods", pod("bold", serviceAccountName="shy",
                                      automountServiceAccountToken=True), team)
    assert wait_until("bold's sandbox", lambda: volumes_of(cluster, "bold"))


def test_a_pod_waits_for_its_service_account(cluster, kubectl, team):
    cluster.client.create("pods", pod("early", serviceAccountName="later"), team)
    wait_until("a FailedMount event", lambda: "FailedMount" in kubectl(
        "get", "events", "-n", team, "--field-selector", "involvedObject.name=early"))
    assert volumes_of(cluster, "early") is None
    described = kubectl("describe", "pod", "early", "-n", team)
    assert 'serviceaccounts "later" not found' in described
    cluster.client.create("serviceaccounts", {"metadata": {"name": "later"}}, team)
    volumes = wait_until("early's sandbox", lambda: volumes_of(cluster, "early"), timeout=10)
    assert claims(dict(volumes[0].files)["token"])["sub"] == f"system:serviceaccount:{NS}:later"


def test_kubectl_binds_a_token_to_a_pod_that_dies_with_it(cluster, kubectl, team,
                                                           reads_pods):
    cluster.client.create("pods", pod("target"), team)
    uid = wait_until("target", lambda: cluster.get("pods", "target", team))["metadata"]["uid"]
    token = kubectl("create", "token", "default", "-n", team, "--bound-object-kind", "Pod",
                    "--bound-object-name", "target").strip()
    assert claims(token)["kubernetes.io"]["pod"] == {"name": "target", "uid": uid}
    bound = as_token(cluster, token)
    assert status_of(bound, team) == 200
    stale = kubectl.run("create", "token", "default", "-n", team, "--bound-object-kind", "Pod",
                        "--bound-object-name", "target", "--bound-object-uid", "not-its-uid")
    assert stale.returncode == 1 and "does not match the UID in record" in stale.stderr
    cluster.client.delete("pods", "target", team, grace_period=0)
    wait_until("target gone", lambda: cluster.get("pods", "target", team) is None)
    assert status_of(bound, team) == 401
