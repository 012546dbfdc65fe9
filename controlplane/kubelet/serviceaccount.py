"""A pod's service-account token, as the kubelet fetches and projects it.

Upstream the ServiceAccount admission plugin gives each pod a projected
volume (`kube-api-access-*`: a token for its service account bound to the
pod, the cluster's CA, the namespace) mounted read-only at
/var/run/secrets/kubernetes.io/serviceaccount, unless automountServiceAccountToken
is false on the pod or, when the pod does not say, on the service account
(or a container already mounts a volume of its own at that path).
svclab's API does not add that volume to the pod spec; the kubelet makes the
same decision and fetches the same token: a TokenRequest for 3607 s bound to
the pod (the API server extends such a token to a year, so no rotation is
needed), which dies with the pod or the service account.  In-cluster
clients (the official Python client's `load_incluster_config`, kubectl)
then find it where they look, and KUBERNETES_SERVICE_HOST/PORT from the
service links.
"""
from __future__ import annotations

from base.cri import ProjectedFiles
from base.kube.client import ApiError, KubeClient, path_for
from controlplane.kubelet.volumes import VolumeSetupError, mount_paths

MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
TOKEN_SECONDS = 3607          # what a kubelet asks for a pod's projected token


def service_account_name(pod: dict) -> str:
    spec = pod.get("spec") or {}
    return spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"


def automount(pod: dict, service_account: dict | None) -> bool:
    """The pod's automountServiceAccountToken, else the service account's, else true."""
    own = (pod.get("spec") or {}).get("automountServiceAccountToken")
    if own is not None:
        return bool(own)
    inherited = (service_account or {}).get("automountServiceAccountToken")
    return True if inherited is None else bool(inherited)


def token_request(pod: dict, seconds: int = TOKEN_SECONDS, audience: str = "") -> dict:
    meta = pod["metadata"]
    spec = {"expirationSeconds": seconds,
            "boundObjectRef": {"apiVersion": "v1", "kind": "Pod",
                               "name": meta["name"], "uid": meta.get("uid", "")}}
    if audience:
        spec["audiences"] = [audience]
    return {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}


def fetch_token(client: KubeClient, pod: dict, audience: str, seconds: int) -> str:
    """A token of the pod's service account bound to the pod (a projected
    serviceAccountToken source); ApiError or VolumeSetupError when it cannot be had."""
    namespace, name = pod["metadata"]["namespace"], service_account_name(pod)
    answer = client.request("POST", path_for("serviceaccounts", namespace, name, "token"),
                            body=token_request(pod, seconds, audience))
    token = (answer.get("status") or {}).get("token")
    if not token:
        raise VolumeSetupError("failed to fetch token: the answer has no status.token")
    return token


def projected_files(token: str, ca_pem: str, namespace: str) -> ProjectedFiles:
    return ProjectedFiles(MOUNT_PATH, (("ca.crt", ca_pem), ("namespace", namespace),
                                       ("token", token)))


def service_account_volumes(client: KubeClient, pod: dict) -> tuple[ProjectedFiles, ...]:
    """The pod's token volume (none if it opts out); VolumeSetupError when the token
    cannot be had now (its service account does not exist yet, say)."""
    if (pod.get("spec") or {}).get("automountServiceAccountToken") is False \
            or MOUNT_PATH in mount_paths(pod):
        return ()
    namespace, name = pod["metadata"]["namespace"], service_account_name(pod)
    try:
        account = client.get("serviceaccounts", name, namespace)
        if not automount(pod, account):
            return ()
        answer = client.request("POST", path_for("serviceaccounts", namespace, name, "token"),
                                body=token_request(pod))
    except ApiError as err:
        raise VolumeSetupError(f'MountVolume.SetUp failed for volume "kube-api-access" : '
                               f"failed to fetch token: {err.message}") from err
    token = (answer.get("status") or {}).get("token")
    if not token:
        raise VolumeSetupError('MountVolume.SetUp failed for volume "kube-api-access" : '
                               "failed to fetch token: the answer has no status.token")
    return (projected_files(token, client.credentials.ca_pem, namespace),)
