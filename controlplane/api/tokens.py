"""Service-account tokens: the TokenRequest subresource and the token authenticator.

As kube-apiserver does it (pkg/serviceaccount, the serviceaccounts/token REST):

- ``POST /api/v1/namespaces/NS/serviceaccounts/NAME/token`` takes an
  authentication.k8s.io/v1 TokenRequest (audiences, expirationSeconds — default
  1 h, at least 10 min —, an optional boundObjectRef to a Pod or Node) and
  answers it with status.token, a JWT signed by the API server
  (controlplane/api/jws.py), and status.expirationTimestamp.  The claims are
  Kubernetes': iss, sub ``system:serviceaccount:NS:NAME``, aud, exp, iat, nbf,
  jti and ``kubernetes.io`` {namespace, serviceaccount {name, uid}, pod and node
  {name, uid} when bound}.  A pod-bound request for 3607 s — what a kubelet
  asks for a pod's projected token — is extended to a year with a
  ``warnafter`` claim (--service-account-extend-token-expiration, on by default).
- A bearer token that is such a JWT authenticates as the service account when
  its signature, issuer, audience and times hold and the objects it names
  still exist with the same uids: deleting the service account (or the pod a
  token is bound to) revokes it.  The user is ``system:serviceaccount:NS:NAME``
  in the groups system:serviceaccounts, system:serviceaccounts:NS and
  system:authenticated, with the service account's uid and the binding in its
  extra (authentication.kubernetes.io/pod-name, ...).
"""
from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Callable

from controlplane.api import errors, jws
from controlplane.api.auth import User

DEFAULT_EXPIRATION = 3600
MIN_EXPIRATION = 600
MAX_EXPIRATION = 1 << 32
KUBELET_EXPIRATION = 3607               # token.WarnOnlyBoundTokenExpirationSeconds
EXTENDED_EXPIRATION = 365 * 24 * 3600   # token.ExpirationExtensionSeconds
LEEWAY = 60                             # seconds of clock skew allowed on exp and nbf
SA_PREFIX = "system:serviceaccount:"
SA_GROUP = "system:serviceaccounts"
AUTHENTICATED = "system:authenticated"
EXTRA = "authentication.kubernetes.io/"
BINDABLE = {"Pod": "pods", "Node": "nodes", "Secret": "secrets"}
VERIFIED_CACHE = 4096      # tokens whose signature was checked once (the objects each time)

Lookup = Callable[[str, str, str], "dict | None"]     # (plural, namespace, name) -> object


def service_account_user(namespace: str, name: str) -> str:
    return f"{SA_PREFIX}{namespace}:{name}"


def service_account_groups(namespace: str) -> tuple[str, ...]:
    return (SA_GROUP, f"{SA_GROUP}:{namespace}", AUTHENTICATED)


def rfc3339(epoch: float) -> str:
    return dt.datetime.fromtimestamp(int(epoch), dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(text: str) -> float:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=dt.timezone.utc).timestamp()


def _ref(obj: dict) -> dict:
    return {"name": obj["metadata"]["name"], "uid": obj["metadata"].get("uid", "")}


def validate_token_request(body: dict) -> list[errors.FieldError]:
    """ValidateTokenRequest, on the JSON form (spec defaulted already)."""
    errs = []
    spec = body.get("spec")
    seconds = spec.get("expirationSeconds")
    if isinstance(seconds, bool) or not isinstance(seconds, int):
        errs.append(errors.invalid(seconds, "spec.expirationSeconds", "must be an integer"))
    elif seconds < MIN_EXPIRATION:
        errs.append(errors.invalid(seconds, "spec.expirationSeconds",
                                   "may not specify a duration less than 10 minutes"))
    elif seconds > MAX_EXPIRATION:
        errs.append(errors.invalid(seconds, "spec.expirationSeconds",
                                   "may not specify a duration larger than 2^32 seconds"))
    audiences = spec.get("audiences")
    if not isinstance(audiences, list) or not all(isinstance(a, str) and a for a in audiences):
        errs.append(errors.invalid(audiences, "spec.audiences",
                                   "must be a list of non-empty strings"))
    ref = spec.get("boundObjectRef")
    if ref is not None and not isinstance(ref, dict):
        errs.append(errors.invalid(ref, "spec.boundObjectRef", "must be an object"))
    elif ref is not None and not ref.get("name"):
        errs.append(errors.required("spec.boundObjectRef.name"))
    return errs


class ServiceAccountTokens:
    """Issues and checks service-account JWTs; `lookup` reads the store."""

    def __init__(self, key: jws.SigningKey, lookup: Lookup, cluster_domain: str = "cluster.local",
                 clock: Callable[[], float] = time.time):
        self.key = key
        self.lookup = lookup
        self.issuer = f"https://kubernetes.default.svc.{cluster_domain}"
        self.api_audiences = (self.issuer,)      # --api-audiences defaults to the issuer
        self.clock = clock
        self._verified: dict[str, dict] = {}    # token -> its claims, signature checked

    # --- issuing ---------------------------------------------------------------

    def issue(self, service_account: dict, *, audiences: tuple[str, ...] = (),
              seconds: int = DEFAULT_EXPIRATION, pod: dict | None = None,
              node: dict | None = None, now: float | None = None) -> tuple[str, float]:
        """A signed token for service_account (optionally bound); (token, expiry epoch as
        requested — a kubelet's pod token really lasts a year, see the module doc)."""
        now = int(self.clock() if now is None else now)
        audiences = tuple(audiences) or self.api_audiences
        meta = service_account["metadata"]
        private: dict = {"namespace": meta["namespace"], "serviceaccount": _ref(service_account)}
        if pod is not None:
            private["pod"] = _ref(pod)
        if node is not None:
            private["node"] = _ref(node)
        lifetime = seconds
        if (pod is not None and seconds == KUBELET_EXPIRATION
                and set(audiences) <= set(self.api_audiences)):
            lifetime = EXTENDED_EXPIRATION
            private["warnafter"] = now + seconds
        claims = {"aud": list(audiences), "exp": now + lifetime, "iat": now,
                  "iss": self.issuer, "jti": str(uuid.uuid4()), "kubernetes.io": private,
                  "nbf": now, "sub": service_account_user(meta["namespace"], meta["name"])}
        return jws.encode(claims, self.key.private_key), float(now + seconds)

    def token_request(self, namespace: str, name: str, body) -> dict:
        """Serve POST .../serviceaccounts/NAME/token; raises StatusError."""
        if not isinstance(body, dict):
            raise errors.bad_request("the body of the request must be a JSON object")
        kind, version = body.get("kind"), body.get("apiVersion")
        if kind and kind != "TokenRequest" or version and version != "authentication.k8s.io/v1":
            raise errors.bad_request(f"the body must be an authentication.k8s.io/v1 TokenRequest,"
                                     f" got {version}, Kind={kind}")
        spec = dict(body.get("spec") or {})
        spec.setdefault("expirationSeconds", DEFAULT_EXPIRATION)
        spec["audiences"] = list(spec.get("audiences") or self.api_audiences)
        request = {"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
                   "metadata": {"name": name, "namespace": namespace,
                                "creationTimestamp": None},
                   "spec": spec}
        errs = validate_token_request(request)
        if errs:
            raise errors.invalid_object("TokenRequest", "authentication.k8s.io", name, errs)
        service_account = self.lookup("serviceaccounts", namespace, name)
        if service_account is None:
            raise errors.not_found("serviceaccounts", "", name)
        pod = node = None
        ref = spec.get("boundObjectRef")
        if ref:
            bound = self._bound_object(namespace, ref)
            if ref.get("kind") == "Pod":
                pod = bound
                node_name = (pod.get("spec") or {}).get("nodeName")
                node = self.lookup("nodes", "", node_name) if node_name else None
            else:
                node = bound
        token, expiry = self.issue(service_account, audiences=tuple(spec["audiences"]),
                                   seconds=spec["expirationSeconds"], pod=pod, node=node)
        request["status"] = {"token": token, "expirationTimestamp": rfc3339(expiry)}
        return request

    def _bound_object(self, namespace: str, ref: dict) -> dict:
        kind, version = ref.get("kind", ""), ref.get("apiVersion", "v1")
        if kind not in BINDABLE or version != "v1":
            raise errors.bad_request(f"cannot bind token to object of type {version}, "
                                     f"Kind={kind}")
        plural = BINDABLE[kind]
        obj = self.lookup(plural, "" if kind == "Node" else namespace, ref["name"])
        if obj is None:
            raise errors.not_found(plural, "", ref["name"])
        uid = obj["metadata"].get("uid", "")
        if ref.get("uid") and ref["uid"] != uid:
            raise errors.StatusError(409, "Conflict", (
                f"the UID in the bound object reference ({ref['uid']}) does not match the UID "
                f"in record. The object might have been deleted and then recreated"))
        return obj

    # --- authenticating --------------------------------------------------------

    def authenticate(self, token: str) -> User | None:
        """The service account a valid token speaks for, or None."""
        if not jws.looks_like_jwt(token):
            return None
        claims = self._verified.get(token)
        if claims is None:
            public = self.key.public_key_if_made()
            claims = jws.decode(token, public) if public is not None else None
            if claims is None:
                return None
            if len(self._verified) >= VERIFIED_CACHE:
                self._verified.clear()
            self._verified[token] = claims
        if claims.get("iss") != self.issuer:
            return None
        audiences = claims.get("aud")
        audiences = [audiences] if isinstance(audiences, str) else audiences or []
        if not set(audiences) & set(self.api_audiences):
            return None
        now = self.clock()
        exp, nbf = claims.get("exp"), claims.get("nbf", 0)
        if not isinstance(exp, (int, float)) or not isinstance(nbf, (int, float)):
            return None
        if now > exp + LEEWAY or now < nbf - LEEWAY:
            return None
        return self._live_subject(claims, now)

    def _live_subject(self, claims: dict, now: float) -> User | None:
        private = claims.get("kubernetes.io")
        if not isinstance(private, dict):
            return None
        namespace = private.get("namespace", "")
        account = private.get("serviceaccount") or {}
        if claims.get("sub") != service_account_user(namespace, account.get("name", "")):
            return None
        service_account = self.lookup("serviceaccounts", namespace, account.get("name", ""))
        if not self._same(service_account, account, now):
            return None
        extra = []
        pod = private.get("pod")
        if pod is not None:
            if not self._same(self.lookup("pods", namespace, pod.get("name", "")), pod, now):
                return None
            extra += [(EXTRA + "pod-name", (pod["name"],)), (EXTRA + "pod-uid", (pod["uid"],))]
        node = private.get("node")
        if node is not None:
            if pod is None and not self._same(self.lookup("nodes", "", node.get("name", "")),
                                              node, now):
                return None        # a node-bound token dies with its node
            extra += [(EXTRA + "node-name", (node.get("name", ""),)),
                      (EXTRA + "node-uid", (node.get("uid", ""),))]
        if claims.get("jti"):
            extra.append((EXTRA + "credential-id", (f"JTI={claims['jti']}",)))
        return User(claims["sub"], service_account_groups(namespace),
                    uid=account.get("uid", ""), extra=tuple(extra))

    @staticmethod
    def _same(obj: dict | None, ref: dict, now: float) -> bool:
        """obj exists, is the one ref names (uid), and is not deleted already."""
        if obj is None or obj["metadata"].get("uid") != ref.get("uid"):
            return False
        deleted = obj["metadata"].get("deletionTimestamp")
        return not deleted or _parse_time(deleted) > now
