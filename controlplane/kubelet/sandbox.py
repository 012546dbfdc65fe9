"""What the kubelet decides for a pod's sandbox and each container's process: pure.

As upstream (pkg/kubelet/kubelet_pods.go, pkg/kubelet/envvars):

- hostname: the pod's name, or spec.hostname, cut to 63 characters without
  a trailing '-' or '.'; with spec.subdomain the domain
  `<subdomain>.<namespace>.svc.<cluster domain>`; with setHostnameAsFQDN the
  kernel hostname is the FQDN (64 characters at most);
- service links: for every Service with a cluster IP, `{SVC}_SERVICE_HOST`,
  `{SVC}_SERVICE_PORT`, `{SVC}_SERVICE_PORT_{PORTNAME}` and Docker-link
  `{SVC}_PORT`, `{SVC}_PORT_{N}_{PROTO}[_PROTO|_PORT|_ADDR]` (names upper-cased,
  '-' -> '_'): the pod's namespace's Services unless enableServiceLinks is
  false, and `kubernetes` of the default namespace always;

A container's own variables are controlplane/kubelet/env.py's business, its
volumes controlplane/kubelet/volumes.py's.
"""
from __future__ import annotations

import re

from base.cri import ConsoleConfig, HostAlias, PodSandboxConfig
from base.errors import SvclabError

CLUSTER_DOMAIN = "cluster.local"
HOSTNAME_MAX = 63
FQDN_MAX = 64
MASTER_SERVICES = ("kubernetes",)
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class ContainerConfigError(SvclabError):
    """The kubelet cannot build what a container needs (CreateContainerConfigError)."""


# --- the sandbox ----------------------------------------------------------------------

def truncate_hostname(hostname: str) -> str:
    if len(hostname) <= HOSTNAME_MAX:
        return hostname
    return hostname[:HOSTNAME_MAX].rstrip("-.")


def _label(value: str, field: str) -> str:
    if len(value) > HOSTNAME_MAX or not DNS1123_LABEL.match(value):
        raise ContainerConfigError(f"pod {field} {value!r} is not a valid DNS label")
    return value


def sandbox_config(pod: dict, cluster_domain: str = CLUSTER_DOMAIN) -> PodSandboxConfig:
    meta, spec = pod["metadata"], pod.get("spec") or {}
    hostname = truncate_hostname(_label(spec["hostname"], "Hostname") if spec.get("hostname")
                                 else meta["name"])
    domain = ""
    if spec.get("subdomain"):
        domain = (f"{_label(spec['subdomain'], 'Subdomain')}.{meta['namespace']}.svc."
                  f"{cluster_domain}")
    kernel = ""
    if spec.get("setHostnameAsFQDN") and domain:
        kernel = f"{hostname}.{domain}"
        if len(kernel) > FQDN_MAX:
            raise ContainerConfigError(
                f"failed to construct FQDN from pod hostname and cluster domain, FQDN {kernel} "
                f"is too long ({FQDN_MAX} characters is the max, {len(kernel)} characters "
                "requested)")
    aliases = tuple(HostAlias(a.get("ip", ""), tuple(a.get("hostnames") or ()))
                    for a in spec.get("hostAliases") or [])
    return PodSandboxConfig(hostname=hostname, domain=domain, kernel_hostname=kernel,
                            uid=meta.get("uid", ""), host_aliases=aliases)


def console_config(container: dict) -> ConsoleConfig:
    return ConsoleConfig(stdin=bool(container.get("stdin")),
                         stdin_once=bool(container.get("stdinOnce")),
                         tty=bool(container.get("tty")))


# --- service links ----------------------------------------------------------------------

def env_name(name: str) -> str:
    return name.upper().replace("-", "_")


def service_link_vars(service: dict) -> list[tuple[str, str]]:
    """The variables one Service gives a container, in upstream's order."""
    spec = service.get("spec") or {}
    ip, ports = spec.get("clusterIP"), spec.get("ports") or []
    if not ip or ip == "None" or not ports:
        return []
    prefix = env_name(service["metadata"]["name"])
    found = [(f"{prefix}_SERVICE_HOST", ip), (f"{prefix}_SERVICE_PORT", str(ports[0]["port"]))]
    found += [(f"{prefix}_SERVICE_PORT_{env_name(p['name'])}", str(p["port"]))
              for p in ports if p.get("name")]
    address = f"[{ip}]" if ":" in ip else ip
    for index, port in enumerate(ports):
        protocol = (port.get("protocol") or "TCP").upper()
        url = f"{protocol.lower()}://{address}:{port['port']}"
        if index == 0:
            found.append((f"{prefix}_PORT", url))
        base = f"{prefix}_PORT_{port['port']}_{protocol}"
        found += [(base, url), (f"{base}_PROTO", protocol.lower()),
                  (f"{base}_PORT", str(port["port"])), (f"{base}_ADDR", ip)]
    return found


def service_env(services: list[dict], namespace: str, enable_links: bool) -> dict[str, str]:
    """The service variables a pod in namespace sees (services: all namespaces)."""
    chosen: dict[str, dict] = {}
    for service in sorted(services, key=lambda s: s["metadata"]["name"]):
        meta = service["metadata"]
        if meta.get("namespace") == "default" and meta["name"] in MASTER_SERVICES:
            chosen.setdefault(meta["name"], service)
        elif meta.get("namespace") == namespace and enable_links:
            chosen[meta["name"]] = service
    return dict(pair for name in sorted(chosen) for pair in service_link_vars(chosen[name]))
