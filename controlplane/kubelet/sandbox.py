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
- a container's environment: its `env` in order, `$(VAR)` expanded from the
  variables declared before it and the service variables (`$$` is a literal
  `$`, an unknown reference stays as written), `valueFrom.fieldRef` resolved
  from the pod; then the remaining service variables.  `command` and `args`
  are expanded from the final environment.

ConfigMaps and Secrets do not exist in svclab's API: a reference to one
fails as a missing one does (CreateContainerConfigError), unless optional.
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
LABEL_REF = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")


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


# --- a container's environment ------------------------------------------------------------

def expand(text: str, *sources: dict[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion: `$$` is `$`; unknown references stay."""
    out, i = [], 0
    while i < len(text):
        char = text[i]
        if char != "$" or i + 1 == len(text):
            out.append(char)
            i += 1
            continue
        following = text[i + 1]
        if following == "$":
            out.append("$")
            i += 2
        elif following == "(":
            end = text.find(")", i + 2)
            if end < 0:
                out.append("$(")
                i += 2
                continue
            name = text[i + 2:end]
            out.append(next((s[name] for s in sources if name in s), f"$({name})"))
            i = end + 1
        else:
            out.append("$" + following)
            i += 2
    return "".join(out)


def field_value(path: str, pod: dict, pod_ip: str, host_ip: str) -> str:
    """A downward API fieldRef's value, as the kubelet resolves it."""
    meta, spec = pod["metadata"], pod.get("spec") or {}
    simple = {"metadata.name": meta.get("name", ""),
              "metadata.namespace": meta.get("namespace", ""),
              "metadata.uid": meta.get("uid", ""),
              "spec.nodeName": spec.get("nodeName", ""),
              "spec.serviceAccountName": spec.get("serviceAccountName", ""),
              "status.podIP": pod_ip, "status.podIPs": pod_ip,
              "status.hostIP": host_ip, "status.hostIPs": host_ip}
    if path in simple:
        return simple[path]
    match = LABEL_REF.match(path)
    if match:
        return (meta.get(match.group(1)) or {}).get(match.group(2), "")
    if path in ("metadata.labels", "metadata.annotations"):
        pairs = (meta.get(path.split(".")[1]) or {}).items()
        return "\n".join(f'{key}="{value}"' for key, value in sorted(pairs))
    raise ContainerConfigError(f"unsupported fieldPath: {path}")


def _missing(kind: str, ref: dict) -> ContainerConfigError:
    """What the kubelet says of a ConfigMap or Secret it cannot find (kind: configmap, secret)."""
    return ContainerConfigError(f'{kind} "{ref.get("name", "")}" not found')


def container_env(pod: dict, container: dict, pod_ip: str, host_ip: str,
                  services: dict[str, str]) -> dict[str, str]:
    """The container's variables, in order: its own (expanded), then the service links."""
    declared: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        ref = source.get("configMapRef") or source.get("secretRef") or {}
        if not ref.get("optional"):
            raise _missing("configmap" if "configMapRef" in source else "secret", ref)
    for var in container.get("env") or []:
        name, value, source = var.get("name", ""), var.get("value", ""), var.get("valueFrom")
        if value:
            value = expand(value, declared, services)
        elif source:
            if "fieldRef" in source:
                value = field_value(source["fieldRef"].get("fieldPath", ""), pod, pod_ip,
                                    host_ip)
            elif "configMapKeyRef" in source or "secretKeyRef" in source:
                ref = source.get("configMapKeyRef") or source.get("secretKeyRef")
                if ref.get("optional"):
                    continue
                raise _missing("configmap" if "configMapKeyRef" in source else "secret", ref)
            else:
                raise ContainerConfigError(f"env {name}: valueFrom "
                                           f"{', '.join(source)} is not supported by svclab "
                                           "(fieldRef is)")
        declared[name] = value
    return {**declared, **{k: v for k, v in services.items() if k not in declared}}


def expand_command(argv: list[str], env: dict[str, str]) -> list[str]:
    return [expand(arg, env) for arg in argv]
