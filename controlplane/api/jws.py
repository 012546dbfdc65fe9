"""Compact JSON Web Tokens signed with RS256: the format of service-account tokens.

The API server signs service-account tokens with an RSA key (kube-apiserver's
--service-account-signing-key-file; kubeadm's sa.key) and checks them with the
public half.  A token is three base64url parts without padding: the header
{"alg": "RS256", "kid": ...}, the claims, and the RSASSA-PKCS1-v1_5 SHA-256
signature of the first two.  The key id is what Kubernetes derives from the
public key: the unpadded base64url SHA-256 of its DER SubjectPublicKeyInfo.

Pure functions over bytes and dicts; only :class:`SigningKey.load_or_create`
touches the disk.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

KEY_BITS = 2048
ALGORITHM = "RS256"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def key_id(public_key: rsa.RSAPublicKey) -> str:
    der = public_key.public_bytes(serialization.Encoding.DER,
                                  serialization.PublicFormat.SubjectPublicKeyInfo)
    return b64url(hashlib.sha256(der).digest())


def encode(claims: dict, private_key: rsa.RSAPrivateKey) -> str:
    """The signed compact JWT of claims."""
    header = {"alg": ALGORITHM, "kid": key_id(private_key.public_key())}
    signing_input = ".".join(b64url(json.dumps(part, separators=(",", ":")).encode())
                             for part in (header, claims))
    signature = private_key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64url(signature)}"


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2 and token.startswith("eyJ")


def decode(token: str, public_key: rsa.RSAPublicKey) -> dict | None:
    """The claims of a token signed by public_key's private half with RS256, or None
    (malformed, another algorithm or key, a bad signature). Times are not checked here."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        header = json.loads(b64url_decode(parts[0]))
        claims = json.loads(b64url_decode(parts[1]))
        signature = b64url_decode(parts[2])
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(header, dict) or header.get("alg") != ALGORITHM:
        return None
    if not isinstance(claims, dict):
        return None
    try:
        public_key.verify(signature, f"{parts[0]}.{parts[1]}".encode(), padding.PKCS1v15(),
                          hashes.SHA256())
    except InvalidSignature:
        return None
    return claims


class SigningKey:
    """The service-account signing key, made on first use (an RSA key takes ~0.1 s,
    and most API servers of the test suite never sign a token)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._key: rsa.RSAPrivateKey | None = None
        self._lock = threading.Lock()

    @property
    def private_key(self) -> rsa.RSAPrivateKey:
        with self._lock:
            if self._key is None:
                self._key = self.load_or_create()
            return self._key

    def public_key_if_made(self) -> rsa.RSAPublicKey | None:
        """The public key, or None while there is no key yet (no token can be valid)."""
        with self._lock:
            if self._key is None and self.path.exists():
                self._key = self.load_or_create()
            return self._key.public_key() if self._key is not None else None

    def load_or_create(self) -> rsa.RSAPrivateKey:
        if self.path.exists():
            key = serialization.load_pem_private_key(self.path.read_bytes(), password=None)
            if isinstance(key, rsa.RSAPrivateKey):
                return key
        key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(pem)
        os.replace(tmp, self.path)
        return key
