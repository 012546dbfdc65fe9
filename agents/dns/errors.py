"""Typed errors of the cluster DNS agent, rooted in svclab's SvclabError.

Callers catch one base (DnsAgentError) or the specific failure; the CLI maps
them to exit codes (UsageError subclasses exit 2).
"""
from __future__ import annotations

from base.errors import SvclabError, UsageError


class DnsAgentError(SvclabError):
    """Base of every error the DNS agent raises on purpose."""


class ZoneError(UsageError, DnsAgentError):
    """An API object the zone cannot be built from; names the object and field."""

    def __init__(self, kind: str, name: str, message: str):
        super().__init__(f"{kind} {name}: {message}")
        self.kind = kind
        self.name = name


class ZoneFileError(UsageError, DnsAgentError):
    """A --zone-file that cannot be read or is not the expected JSON."""


class MalformedQuery(DnsAgentError):
    """A packet that is not a DNS query we can answer; `header` is set when FORMERR is possible."""

    def __init__(self, message: str, header: bytes | None = None, rcode: int = 1):
        super().__init__(message)
        self.header = header
        self.rcode = rcode          # FORMERR (1) unless said otherwise, e.g. NOTIMP (4)


class UpstreamError(DnsAgentError):
    """The upstream resolver could not be asked or answered nonsense."""

    def __init__(self, upstream: tuple, message: str):
        super().__init__(f"upstream {upstream[0]}:{upstream[1]}: {message}")
        self.upstream = upstream


class UpstreamTimeout(UpstreamError):
    """The upstream resolver did not answer in time."""


class UpstreamNeeded(DnsAgentError):
    """Raised by the in-loop placeholder upstream: this query must be answered off the loop."""


class DnsServerError(DnsAgentError):
    """The server could not start (bind failed) or stop in time."""
