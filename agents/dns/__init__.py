"""svclab's cluster DNS: the records the Kubernetes DNS spec derives from Services,
EndpointSlices and Pods, served over UDP and TCP like CoreDNS in a kubeadm cluster.

zone.build_zone (pure) -> Zone (frozen) -> answer.answer (pure but for the
upstream callable) -> server.DnsServer (sockets). ZoneHolder swaps whole zones.
A Corefile (corefile.py, coreplugins.py, coreconfig.py: pure) configures the
plugin chain each port answers through (chain.py: log, errors, cache,
loadbalance, kubernetes, forward) and the running server (coredns.py:
listeners, health, ready, reload); docs/cluster-dns.md says what is emulated.
"""
from agents.dns.answer import answer, answer_packet
from agents.dns.errors import (
                               DnsAgentError,
                               DnsServerError,
                               MalformedQuery,
                               UpstreamError,
                               UpstreamTimeout,
                               ZoneError,
                               ZoneFileError,
)
from agents.dns.holder import ZoneHolder
from agents.dns.server import DnsServer
from agents.dns.upstream import UpstreamResolver
from agents.dns.zone import Record, Zone, build_static_zone, build_zone

__all__ = ["DnsAgentError", "DnsServer", "DnsServerError", "MalformedQuery", "Record",
           "UpstreamError", "UpstreamResolver", "UpstreamTimeout", "Zone", "ZoneError",
           "ZoneFileError", "ZoneHolder", "answer", "answer_packet", "build_static_zone",
           "build_zone"]
