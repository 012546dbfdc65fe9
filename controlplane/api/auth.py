"""Authentication: client certificates signed by the lab CA, or bearer tokens.

Like kube-apiserver's x509, static-token and service-account authenticators:
the certificate's CN is the user and its O attributes are the groups; a
minted token stands for the user it was minted for; a bearer token that is
a JWT is a service-account token, checked by ``service_accounts``
(controlplane/api/tokens.py: signature, expiry, and the service account and
bound pod still existing).  What a user may do is the authorizer's business.
"""

from __future__ import annotations

import datetime as dt
import hmac
import secrets
import threading
from dataclasses import dataclass
from typing import Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()   # (key, values), as UserInfo.Extra


class TokenAuthenticator(Protocol):
    def authenticate(self, token: str) -> User | None: ...


class Authenticator:
    """Checks credentials; thread-safe; tokens can be minted at run time."""

    def __init__(self, ca_cert_pem: bytes,
                 service_accounts: TokenAuthenticator | None = None) -> None:
        self._ca = x509.load_pem_x509_certificate(ca_cert_pem)
        self._tokens: dict[str, User] = {}
        self._lock = threading.Lock()
        self.service_accounts = service_accounts

    def mint_token(self, user: str, groups: tuple[str, ...] = ()) -> str:
        token = secrets.token_urlsafe(32)
        self.add_token(token, User(user, tuple(groups)))
        return token

    def add_token(self, token: str, user: User) -> None:
        with self._lock:
            self._tokens[token] = user

    def _by_token(self, token: str) -> User | None:
        with self._lock:
            items = list(self._tokens.items())
        found = None
        for known, user in items:  # constant-time compare against each
            if hmac.compare_digest(known.encode(), token.encode()):
                found = user
        return found

    def _by_certificate(self, der: bytes) -> User | None:
        try:
            cert = x509.load_der_x509_certificate(der)
            cert.verify_directly_issued_by(self._ca)
        except (ValueError, TypeError, InvalidSignature):
            return None
        now = dt.datetime.now(dt.timezone.utc)
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            return None
        cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        if not cns:
            return None
        groups = tuple(a.value
                       for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME))
        return User(str(cns[0].value), tuple(map(str, groups)))

    def authenticate(self, peer_der: bytes | None, authorization: str | None) -> User | None:
        """Return the user, or None when the request carries no valid credential."""
        if authorization:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                token = token.strip()
                user = self._by_token(token)
                if user is None and self.service_accounts is not None:
                    user = self.service_accounts.authenticate(token)
                return user  # a wrong token is a failure even with a certificate
        if peer_der:
            return self._by_certificate(peer_der)
        return None
