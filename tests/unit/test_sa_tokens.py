"""Service-account JWTs (no root, no server): RS256 signing and verifying, the claims
Kubernetes puts in them, and what makes the API server refuse one."""
from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from controlplane.api import jws
from controlplane.api.errors import StatusError
from controlplane.api.tokens import (
    EXTENDED_EXPIRATION,
    ServiceAccountTokens,
    validate_token_request,
)

NOW = 1_800_000_000
ISSUER = "https://kubernetes.default.svc.cluster.local"


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def part(token: str, index: int) -> dict:
    return json.loads(jws.b64url_decode(token.split(".")[index]))


def test_a_signed_token_verifies_with_its_key_and_carries_the_kid(key):
    token = jws.encode({"sub": "x", "n": 1}, key)
    assert jws.looks_like_jwt(token)
    assert jws.decode(token, key.public_key()) == {"sub": "x", "n": 1}
    assert part(token, 0) == {"alg": "RS256", "kid": jws.key_id(key.public_key())}
    assert "=" not in token


def test_tampered_foreign_or_unsigned_tokens_do_not_verify(key):
    token = jws.encode({"sub": "system:serviceaccount:a:b"}, key)
    head, _, sig = token.split(".")
    forged = jws.b64url(json.dumps({"sub": "system:serviceaccount:kube-system:admin"}).encode())
    assert jws.decode(f"{head}.{forged}.{sig}", key.public_key()) is None
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert jws.decode(jws.encode({"sub": "x"}, other), key.public_key()) is None
    none_alg = jws.b64url(json.dumps({"alg": "none"}).encode())
    assert jws.decode(f"{none_alg}.{forged}.", key.public_key()) is None
    assert jws.decode("not.a.jwt", key.public_key()) is None
    assert jws.decode("two.parts", key.public_key()) is None


class Objects:
    """A tiny store: (plural, namespace, name) -> object."""

    def __init__(self):
        self.items: dict[tuple[str, str, str], dict] = {}

    def add(self, plural: str, namespace: str, name: str, uid: str, **meta) -> dict:
        obj = {"metadata": {"name": name, "namespace": namespace, "uid": uid, **meta}}
        if plural == "pods":
            obj["spec"] = {"nodeName": "ip-172-31-0-11"}
        self.items[(plural, namespace, name)] = obj
        return obj

    def get(self, plural: str, namespace: str, name: str) -> dict | None:
        return self.items.get((plural, namespace, name))


@pytest.fixture
def world(tmp_path, key):
    objects = Objects()
    signing = jws.SigningKey(tmp_path / "sa.key")
    signing._key = key                      # skip generating one per test
    clock = {"now": float(NOW)}
    tokens = ServiceAccountTokens(signing, objects.get, clock=lambda: clock["now"])
    sa = objects.add("serviceaccounts", "team", "robot", "sa-uid-1")
    return tokens, objects, sa, clock


def test_claims_are_kubernetes_and_the_token_authenticates_as_the_account(world):
    tokens, _, sa, _ = world
    token, expiry = tokens.issue(sa, seconds=600)
    claims = part(token, 1)
    assert claims["iss"] == ISSUER and claims["aud"] == [ISSUER]
    assert claims["sub"] == "system:serviceaccount:team:robot"
    assert (claims["iat"], claims["nbf"], claims["exp"]) == (NOW, NOW, NOW + 600)
    assert claims["kubernetes.io"] == {"namespace": "team",
                                       "serviceaccount": {"name": "robot", "uid": "sa-uid-1"}}
    assert expiry == NOW + 600 and claims["jti"]
    user = tokens.authenticate(token)
    assert user.name == "system:serviceaccount:team:robot"
    assert user.groups == ("system:serviceaccounts", "system:serviceaccounts:team",
                           "system:authenticated")
    assert user.uid == "sa-uid-1"


def test_expired_or_not_yet_valid_tokens_are_refused(world):
    tokens, _, sa, clock = world
    token, _ = tokens.issue(sa, seconds=600)
    clock["now"] = NOW + 600 + 61               # past exp and the minute of leeway
    assert tokens.authenticate(token) is None
    clock["now"] = NOW - 120                    # before nbf
    assert tokens.authenticate(token) is None


def test_a_deleted_or_recreated_service_account_revokes_its_tokens(world):
    tokens, objects, sa, _ = world
    token, _ = tokens.issue(sa)
    assert tokens.authenticate(token) is not None          # verified once, then remembered
    del objects.items[("serviceaccounts", "team", "robot")]
    assert tokens.authenticate(token) is None
    objects.add("serviceaccounts", "team", "robot", "sa-uid-2")     # same name, new object
    assert tokens.authenticate(token) is None


def test_other_audiences_are_not_for_the_api_server(world):
    tokens, _, sa, _ = world
    token, _ = tokens.issue(sa, audiences=("vault",))
    assert part(token, 1)["aud"] == ["vault"]
    assert tokens.authenticate(token) is None


def test_a_pod_bound_token_lives_as_long_as_its_pod(world):
    tokens, objects, sa, clock = world
    pod = objects.add("pods", "team", "web-1", "pod-uid-1")
    node = objects.add("nodes", "", "ip-172-31-0-11", "node-uid")
    token, _ = tokens.issue(sa, pod=pod, node=node)
    private = part(token, 1)["kubernetes.io"]
    assert private["pod"] == {"name": "web-1", "uid": "pod-uid-1"}
    assert private["node"] == {"name": "ip-172-31-0-11", "uid": "node-uid"}
    extra = dict(tokens.authenticate(token).extra)
    assert extra["authentication.kubernetes.io/pod-name"] == ("web-1",)
    assert extra["authentication.kubernetes.io/node-name"] == ("ip-172-31-0-11",)
    pod["metadata"]["deletionTimestamp"] = "2027-01-15T08:00:00Z"   # still in its grace period
    clock["now"] = NOW - 1
    assert tokens.authenticate(token) is not None
    clock["now"] = NOW + 10 ** 7                                    # after it
    assert tokens.authenticate(token) is None
    clock["now"] = NOW
    objects.add("pods", "team", "web-1", "pod-uid-2")               # recreated under its name
    assert tokens.authenticate(token) is None


def test_the_kubelets_3607_seconds_pod_token_is_extended_to_a_year(world):
    tokens, objects, sa, _ = world
    pod = objects.add("pods", "team", "web-1", "pod-uid-1")
    token, expiry = tokens.issue(sa, pod=pod, seconds=3607)
    claims = part(token, 1)
    assert claims["exp"] - claims["iat"] == EXTENDED_EXPIRATION
    assert claims["kubernetes.io"]["warnafter"] == NOW + 3607
    assert expiry == NOW + 3607                 # what status.expirationTimestamp reports
    unbound, _ = tokens.issue(sa, seconds=3607)
    assert part(unbound, 1)["exp"] == NOW + 3607


def test_token_request_defaults_binds_and_checks_the_bound_object(world):
    tokens, objects, sa, _ = world
    answer = tokens.token_request("team", "robot", {"spec": {}})
    assert answer["kind"] == "TokenRequest" and answer["spec"]["expirationSeconds"] == 3600
    assert answer["spec"]["audiences"] == [ISSUER]
    assert answer["status"]["expirationTimestamp"] == "2027-01-15T09:00:00Z"
    with pytest.raises(StatusError) as err:
        tokens.token_request("team", "nobody", {"spec": {}})
    assert err.value.code == 404
    ref = {"kind": "Pod", "apiVersion": "v1", "name": "web-1"}
    with pytest.raises(StatusError) as err:
        tokens.token_request("team", "robot", {"spec": {"boundObjectRef": ref}})
    assert err.value.code == 404
    objects.add("pods", "team", "web-1", "pod-uid-1")
    bound = tokens.token_request("team", "robot", {"spec": {"boundObjectRef": ref}})
    assert part(bound["status"]["token"], 1)["kubernetes.io"]["pod"]["uid"] == "pod-uid-1"
    with pytest.raises(StatusError) as err:
        tokens.token_request("team", "robot", {"spec": {"boundObjectRef": {**ref,
                                                                           "uid": "old"}}})
    assert err.value.code == 409
    with pytest.raises(StatusError) as err:
        tokens.token_request("team", "robot", {"spec": {"boundObjectRef": {
            "kind": "Service", "apiVersion": "v1", "name": "web"}}})
    assert err.value.code == 400


@pytest.mark.parametrize(("spec", "field", "detail"), [
    ({"expirationSeconds": 599}, "spec.expirationSeconds",
     "may not specify a duration less than 10 minutes"),
    ({"expirationSeconds": 2 ** 32 + 1}, "spec.expirationSeconds",
     "may not specify a duration larger than 2^32 seconds"),
    ({"expirationSeconds": "1h"}, "spec.expirationSeconds", "must be an integer"),
    ({"audiences": [""]}, "spec.audiences", "must be a list of non-empty strings"),
    ({"boundObjectRef": {"kind": "Pod"}}, "spec.boundObjectRef.name", ""),
])
def test_bad_token_requests_name_the_field(spec, field, detail):
    body = {"spec": {"expirationSeconds": 3600, "audiences": ["a"], **spec}}
    errs = validate_token_request(body)
    assert [e.field for e in errs] == [field]
    assert detail in str(errs[0])
