"""TLS for HTTPS listeners: the listener's certificates, the right one per client.

The first certificate is the default; with more than one, the ALB picks by
the client's SNI name the certificate whose names (subject alternative
names, else the common name; wildcards allowed) cover it, and falls back to
the default, as AWS's smart certificate selection does.  What was chosen is
left on the connection's SSL object (`alb_sni`, `alb_cert`) for the access log.
"""
from __future__ import annotations

import ssl
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID

from base.alb_api import Certificate


def certificate_names(cert_file: str) -> tuple[str, ...]:
    """The DNS names a PEM certificate is for."""
    cert = x509.load_pem_x509_certificate(Path(cert_file).read_bytes())
    try:
        names = cert.extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        names = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    return tuple(str(n).lower() for n in names)


def covers(name: str, host: str) -> bool:
    """Is a host covered by a certificate name (a wildcard stands for one label)?"""
    host = host.lower()
    if name.startswith("*."):
        return host.endswith(name[1:]) and host.count(".") == name.count(".")
    return name == host


def _context(certificate: Certificate) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certificate.cert_file, certificate.key_file)
    return context


def server_context(certificates: tuple[Certificate, ...]) -> ssl.SSLContext:
    """The listener's SSL context (raises OSError/ssl.SSLError for bad files)."""
    choices = [(certificate_names(c.cert_file), _context(c), c.cert_file)
               for c in certificates]
    default = choices[0][1]

    def choose(connection, server_name, _context) -> None:
        connection.alb_sni = server_name
        connection.alb_cert = choices[0][2]
        if not server_name:
            return
        for names, context, cert_file in choices:
            if any(covers(name, server_name) for name in names):
                connection.context = context
                connection.alb_cert = cert_file
                return

    for _, context, _ in choices:
        context.sni_callback = choose
    return default
