"""The resolver the kubelet gives a pod (its /etc/resolv.conf): pure.

As upstream's kubelet (pkg/kubelet/network/dns) decides it from the pod's
spec.dnsPolicy, spec.hostNetwork and spec.dnsConfig:

- ClusterFirst (the default): the cluster DNS (the kubelet's clusterDNS),
  the search path `<namespace>.svc.<domain> svc.<domain> <domain>` followed
  by the node's own search domains, `options ndots:5`.  A hostNetwork pod
  gets the node's resolver instead, as with Default.
- ClusterFirstWithHostNet: ClusterFirst, hostNetwork or not.
- Default: the node's resolver (its resolv.conf) as it is.
- None: nothing but spec.dnsConfig.

spec.dnsConfig is then merged in: its nameservers and searches appended
(duplicates dropped), its options override those of the same name.  What
a resolver cannot use is cut, with a warning the kubelet turns into a
`DNSConfigForming` event: beyond 3 nameservers, 32 search paths or 2,048
characters of search list.
"""
from __future__ import annotations

from dataclasses import dataclass

from base.cri import DnsConfig

MAX_NAMESERVERS = 3
MAX_SEARCH_PATHS = 32
MAX_SEARCH_CHARS = 2048
CLUSTER_NDOTS = "ndots:5"


@dataclass(frozen=True)
class KubeletDns:
    """The kubelet's DNS settings: clusterDNS, clusterDomain and its node's resolver."""

    cluster_dns: tuple[str, ...]
    cluster_domain: str
    node: DnsConfig


def pod_dns(pod: dict, kubelet: KubeletDns) -> tuple[DnsConfig, list[str]]:
    """The pod's resolver, and the warnings of what had to be cut from it."""
    meta, spec = pod["metadata"], pod.get("spec") or {}
    policy = spec.get("dnsPolicy") or "ClusterFirst"
    host_network = bool(spec.get("hostNetwork"))
    if policy == "None":
        base = DnsConfig()
    elif policy == "Default" or (policy == "ClusterFirst" and host_network) \
            or not kubelet.cluster_dns:
        base = kubelet.node
    else:                                    # ClusterFirst, ClusterFirstWithHostNet
        domain = kubelet.cluster_domain
        cluster_search = (f"{meta['namespace']}.svc.{domain}", f"svc.{domain}", domain)
        base = DnsConfig(servers=kubelet.cluster_dns,
                         searches=_unique(cluster_search + kubelet.node.searches),
                         options=(CLUSTER_NDOTS,))
    extra = spec.get("dnsConfig") or {}
    merged = DnsConfig(
        servers=_unique(base.servers + tuple(extra.get("nameservers") or ())),
        searches=_unique(base.searches + tuple(extra.get("searches") or ())),
        options=_merge_options(base.options, extra.get("options") or ()))
    return _fit(merged)


def _unique(values: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))


def _merge_options(base: tuple[str, ...], extra) -> tuple[str, ...]:
    """`name[:value]` options; the pod's replace the base's of the same name."""
    merged = {option.split(":", 1)[0]: option for option in base}
    for option in extra:
        name, value = option.get("name", ""), option.get("value")
        merged[name] = f"{name}:{value}" if value is not None else name
    return tuple(merged.values())


def _fit(config: DnsConfig) -> tuple[DnsConfig, list[str]]:
    warnings = []
    servers, searches = config.servers, config.searches
    if len(servers) > MAX_NAMESERVERS:
        servers = servers[:MAX_NAMESERVERS]
        warnings.append("Nameserver limits were exceeded, some nameservers have been "
                        f"omitted, the applied nameserver line is: {' '.join(servers)}")
    kept: list[str] = []
    for search in searches[:MAX_SEARCH_PATHS]:
        if len(" ".join([*kept, search])) > MAX_SEARCH_CHARS:
            break
        kept.append(search)
    if len(kept) < len(searches):
        warnings.append("Search Line limits were exceeded, some search paths have been "
                        f"omitted, the applied search line is: {' '.join(kept)}")
    return DnsConfig(servers, tuple(kept), config.options), warnings
