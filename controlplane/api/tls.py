"""TLS server context that *requests* a client certificate but lets any through.

kube-apiserver asks for a client certificate and checks it in its
authenticator, so a certificate from a foreign CA yields HTTP 401, not a TLS
alert. Python's ``ssl`` has no verify callback, so this module installs an
accept-all OpenSSL verify callback through ctypes on the context's SSL_CTX;
:mod:`controlplane.api.auth` then verifies the presented certificate itself.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import ssl
import sys

from controlplane.api.errors import ApiServerError

SSL_VERIFY_PEER = 0x01
_VERIFY_CB = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_void_p)


class TlsSetupError(ApiServerError):
    """The OpenSSL hook needed for certificate authentication is unavailable."""


@_VERIFY_CB
def _accept_any(preverify_ok: int, store_ctx: int) -> int:  # OpenSSL's signature: args unused
    return 1


def _libssl() -> ctypes.CDLL:
    import _ssl  # the extension module already linked against libssl
    for candidate in (_ssl.__file__, ctypes.util.find_library("ssl"), "libssl.so.3"):
        if not candidate:
            continue
        try:
            lib = ctypes.CDLL(candidate)
            lib.SSL_CTX_set_verify  # noqa: B018 - probe for the symbol
            return lib
        except (OSError, AttributeError):
            continue
    raise TlsSetupError("cannot find libssl's SSL_CTX_set_verify")


def server_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """An HTTPS server context requesting (not requiring) client certificates."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert_file, key_file)
    ctx.set_alpn_protocols(["http/1.1"])
    ctx.verify_mode = ssl.CERT_OPTIONAL
    lib = _libssl()
    lib.SSL_CTX_set_verify.argtypes = [ctypes.c_void_p, ctypes.c_int, _VERIFY_CB]
    lib.SSL_CTX_set_verify.restype = None
    lib.SSL_CTX_get_verify_mode.argtypes = [ctypes.c_void_p]
    lib.SSL_CTX_get_verify_mode.restype = ctypes.c_int
    # PySSLContext starts with PyObject_HEAD followed by the SSL_CTX pointer.
    ssl_ctx = ctypes.c_void_p.from_address(id(ctx) + sys.getsizeof(object())).value
    if not ssl_ctx or lib.SSL_CTX_get_verify_mode(ssl_ctx) != SSL_VERIFY_PEER:
        raise TlsSetupError("unexpected SSLContext layout; cannot install verify callback")
    lib.SSL_CTX_set_verify(ssl_ctx, SSL_VERIFY_PEER, _accept_any)
    return ctx
