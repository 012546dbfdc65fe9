"""Pure: one Ingress group and the objects behind it -> the ALB that serves it.

What the AWS Load Balancer Controller builds, as base/alb_api.py data:
- listeners: each Ingress's listen ports (HTTP:80 by default, HTTPS:443 when
  it brings a TLS Secret), merged over the group; an HTTPS listener's
  certificates are the group's TLS Secrets (the lab's stand-in for ACM and
  ``certificate-arn``), written as PEM files the ELB agent loads;
  ``ssl-redirect`` turns the HTTP listeners into redirects;
- rules, per listener, in the order the ALB evaluates them: the group's
  Ingresses in group order, each Ingress's rules as listed, and within a rule
  Exact paths first, then Prefix paths longest first, then
  ImplementationSpecific paths as listed (the controller's order since
  v2.4.3); conditions are the rule's host and the path's ALB patterns
  (base.alb_api.path_patterns); priorities count from 1;
- the default action: the one defaultBackend of the group, or a fixed 404;
- target groups, one per (Ingress, Service, port): ``instance`` targets are
  the cluster's Nodes (as the Classic ELB's, lbconfig.target_nodes) at the
  port's NodePort, ``ip`` targets the Service's ready endpoints at the pod
  port. Pod IPs outside the VPC are registered all the same, as the
  controller does, and a warning says the ALB cannot reach them (the lab's
  Calico-style pod network has no VPC routes: their health checks fail).
  Health checks are the annotations' (times multiplied by the lab's time
  factor).
A backend Service or port that does not exist, an annotation the controller
refuses, a missing TLS Secret: AlbProblem with the controller's words.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from base.alb_api import (
    FORWARD,
    HTTP,
    HTTPS,
    MAX_PATTERN,
    NOT_FOUND,
    REDIRECT,
    Action,
    Alb,
    AlbConfigError,
    Certificate,
    HealthCheck,
    Listener,
    Rule,
    Target,
    TargetGroup,
    path_patterns,
)
from controlplane.cloud import alb_annotations as notes
from controlplane.cloud.alb_annotations import AlbProblem
from controlplane.cloud.alb_groups import Group, ingress_key, sorted_members
from controlplane.cloud.alb_naming import dns_name, load_balancer_name, target_group_name
from controlplane.cloud.lbconfig import target_nodes

UNPLACED = "0.0.0.0"       # the ALB's address until the controller gives it one
PATH_CHARS = re.compile(r"^/[A-Za-z0-9_\-.$/~\"'@:+&*?=%]*$")
PATH_ORDER = {"Exact": 0, "Prefix": 1, "ImplementationSpecific": 2}


@dataclass(frozen=True)
class ClusterView:
    """What the model reads besides the Ingresses: keys are namespace/name."""

    services: Mapping[str, dict]
    endpoint_slices: Mapping[str, tuple[dict, ...]]     # by namespace/service
    nodes: tuple[dict, ...]
    secrets: Mapping[str, dict]


@dataclass(frozen=True)
class ModelSettings:
    cluster: str = "svclab"
    time_factor: float = 1.0
    cert_dir: Path = Path("/run/svclab/alb-certs")
    vpc_cidrs: tuple[str, ...] = ()     # pod IPs outside them: not routable (warning)


@dataclass(frozen=True)
class CertFiles:
    """A TLS Secret as the files an HTTPS listener loads."""

    certificate: Certificate
    cert_pem: bytes
    key_pem: bytes


@dataclass(frozen=True)
class BuiltAlb:
    alb: Alb                                    # vip UNPLACED until placed
    group: Group
    certificates: tuple[CertFiles, ...] = ()
    warnings: tuple[str, ...] = ()
    target_group_owners: Mapping[str, str] = field(default_factory=dict)  # tg -> ingress key


def build_alb(group: Group, view: ClusterView, settings: ModelSettings) -> BuiltAlb:
    """The ALB for one group; raises AlbProblem."""
    return _Build(group, view, settings).run()


class _Build:
    def __init__(self, group: Group, view: ClusterView, settings: ModelSettings):
        self.group, self.view, self.settings = group, view, settings
        self.groups: dict[tuple, TargetGroup] = {}
        self.owners: dict[str, str] = {}
        self.certs: dict[str, CertFiles] = {}
        self.warnings: list[str] = []

    def run(self) -> BuiltAlb:
        members = sorted_members(self.group)
        scheme = notes.scheme(members)
        name = load_balancer_name(self.settings.cluster, self.group.id, self.group.explicit,
                                  scheme, notes.exclusive(members, notes.LB_NAME,
                                                          "load balancer name"))
        ports = self._listen_ports(members)
        redirect = notes.ssl_redirect(members)
        if redirect is not None and ports.get(redirect, ("",))[0] != HTTPS:
            raise AlbProblem(f"listener {redirect} is not an HTTPS listener: ssl-redirect needs "
                             "one (alb.ingress.kubernetes.io/listen-ports)")
        listeners = []
        for port, (protocol, on_port, certs) in sorted(ports.items()):
            if protocol == HTTP and redirect is not None:
                listeners.append(Listener(port, HTTP, Action(REDIRECT, status_code=301,
                                                             protocol=HTTPS, port=redirect)))
                continue
            listeners.append(Listener(port, protocol, self._default_action(on_port),
                                      self._rules(on_port), certs))
        alb = Alb(name=name, hostname=dns_name(name, scheme), scheme=scheme, vip=UNPLACED,
                  listeners=tuple(listeners),
                  target_groups=tuple(sorted(self.groups.values(), key=lambda t: t.name)),
                  idle_timeout=notes.idle_timeout(members) * self.settings.time_factor,
                  source_ranges=notes.inbound_cidrs(members), owner=self.group.owner)
        return BuiltAlb(alb, self.group, tuple(self.certs.values()), tuple(self.warnings),
                        dict(self.owners))

    # --- listeners -------------------------------------------------------------------

    def _listen_ports(self, members: list[dict]) -> dict[int, tuple]:
        """port -> (protocol, the Ingresses on it, certificates)."""
        ports: dict[int, tuple] = {}
        for member in members:
            annotations = member["metadata"].get("annotations") or {}
            if notes.value(annotations, notes.CERTIFICATE_ARN) is not None:
                raise AlbProblem(f"ingress: {ingress_key(member)}: {notes.CERTIFICATE_ARN}: the "
                                 "lab has no ACM; give the Ingress a kubernetes.io/tls Secret "
                                 "in spec.tls instead")
            prefer_tls = any(e.get("secretName") for e in (member.get("spec") or {}).get("tls")
                             or [] if isinstance(e, dict))
            wanted = notes.listen_ports(member, prefer_tls)
            certs = self._certificates(member) if HTTPS in wanted.values() else ()
            for port, protocol in sorted(wanted.items()):
                known = ports.get(port)
                if known is not None and known[0] != protocol:
                    raise AlbProblem(f"conflicting protocol for listen port {port}: "
                                     f"{known[0]} | {protocol}")
                if protocol == HTTPS and not certs:
                    raise AlbProblem(f"ingress: {ingress_key(member)}: no certificate for the "
                                     f"HTTPS listener on port {port}: give the Ingress a "
                                     "kubernetes.io/tls Secret in spec.tls")
                on_port = (known[1] if known else ()) + (member,)
                have = known[2] if known else ()
                extra = tuple(c for c in certs if c not in have) if protocol == HTTPS else ()
                ports[port] = (protocol, on_port, have + extra)
        return ports

    def _certificates(self, member: dict) -> tuple[Certificate, ...]:
        namespace = member["metadata"]["namespace"]
        found = []
        for entry in (member.get("spec") or {}).get("tls") or []:
            secret_name = entry.get("secretName")
            if not secret_name:
                continue
            files = self._secret_files(namespace, secret_name, ingress_key(member))
            if files.certificate not in found:
                found.append(files.certificate)
        return tuple(found)

    def _secret_files(self, namespace: str, name: str, key: str) -> CertFiles:
        secret = self.view.secrets.get(f"{namespace}/{name}")
        if secret is None:
            raise AlbProblem(f'ingress: {key}: secrets "{name}" not found')
        data = secret.get("data") or {}
        try:
            cert, private = (base64.b64decode(data["tls.crt"], validate=True),
                             base64.b64decode(data["tls.key"], validate=True))
        except (KeyError, binascii.Error) as err:
            raise AlbProblem(f"ingress: {key}: secret {namespace}/{name} has no tls.crt and "
                             "tls.key (a kubernetes.io/tls Secret)") from err
        digest = hashlib.sha256(cert + private).hexdigest()[:12]
        stem = self.settings.cert_dir / f"{namespace}_{name}_{digest}"
        files = CertFiles(Certificate(f"{stem}.crt", f"{stem}.key"), cert, private)
        self.certs[files.certificate.cert_file] = files
        return files

    def _default_action(self, members: tuple[dict, ...]) -> Action:
        with_default = [m for m in members if (m.get("spec") or {}).get("defaultBackend")]
        if not with_default:
            return NOT_FOUND
        if len(with_default) > 1:
            keys = " ".join(ingress_key(m) for m in with_default)
            raise AlbProblem(f"multiple ingress defined default backend: [{keys}]")
        member = with_default[0]
        return self._forward(member, member["spec"]["defaultBackend"])

    def _rules(self, members: tuple[dict, ...]) -> tuple[Rule, ...]:
        rules = []
        for member in members:
            for i, rule in enumerate((member.get("spec") or {}).get("rules") or []):
                if not rule.get("http"):
                    continue
                paths = list(enumerate(rule["http"].get("paths") or []))
                paths.sort(key=lambda item: (PATH_ORDER.get(item[1].get("pathType"), 2),
                                             -len(item[1].get("path", ""))
                                             if item[1].get("pathType") == "Prefix" else 0))
                for j, path in paths:
                    rules.append(Rule(len(rules) + 1, (rule["host"],) if rule.get("host") else (),
                                      self._patterns(path, rule.get("host")),
                                      self._forward(member, path["backend"]),
                                      f"{ingress_key(member)} rules[{i}].paths[{j}]"))
        return tuple(rules)

    @staticmethod
    def _patterns(path: dict, host: str | None) -> tuple[str, ...]:
        text = path.get("path", "")
        if not text:
            return () if host else ("/*",)
        try:
            patterns = path_patterns(text, path.get("pathType", "ImplementationSpecific"))
        except AlbConfigError as err:
            raise AlbProblem(str(err).split(": ", 2)[-1]) from err
        for pattern in patterns:
            if not PATH_CHARS.match(pattern) or len(pattern) > MAX_PATTERN:
                raise AlbProblem(f"ValidationError: path pattern {pattern!r} is not valid: "
                                 f"characters A-Z a-z 0-9 _ - . $ / ~ \" ' @ : + & * ? = %, "
                                 f"at most {MAX_PATTERN}", deploy=True)
        return patterns

    # --- target groups -----------------------------------------------------------------

    def _forward(self, member: dict, backend: dict) -> Action:
        return Action(FORWARD, target_group=self._target_group(member, backend).name)

    def _target_group(self, member: dict, backend: dict) -> TargetGroup:
        key = ingress_key(member)
        namespace = member["metadata"]["namespace"]
        ref = backend.get("service")
        if ref is None:
            raise AlbProblem(f"ingress: {key}: the AWS Load Balancer Controller does not "
                             "support the resource field of backend")
        port = ref.get("port") or {}
        port_text = str(port.get("number") or port.get("name", ""))
        cache = (key, ref.get("name"), port_text)
        if cache in self.groups:
            return self.groups[cache]
        service = self.view.services.get(f"{namespace}/{ref.get('name')}")
        if service is None:
            raise AlbProblem(f'ingress: {key}: services "{ref.get("name")}" not found')
        service_port = _lookup_port(service, port.get("number") or port.get("name"))
        settings = notes.target_settings(service, member)
        if settings.target_type == "instance":
            targets, target_port = self._instance_targets(service, service_port)
        else:
            targets, target_port = self._ip_targets(service, service_port)
        name = target_group_name(self.settings.cluster, self.group.id, key, service, port_text,
                                 target_port, settings.target_type, settings.protocol)
        group = TargetGroup(
            name=name, protocol=settings.protocol, target_type=settings.target_type,
            targets=targets, algorithm=settings.algorithm,
            health_check=self._check(settings, service, service_port),
            source=f"{service['metadata']['namespace']}/{service['metadata']['name']}:"
                   f"{port_text}")
        self.groups[cache] = group
        self.owners[name] = key
        return group

    def _instance_targets(self, service: dict, port: dict) -> tuple[tuple[Target, ...], int]:
        meta = service["metadata"]
        if not port.get("nodePort"):
            raise AlbProblem(f"service {meta['namespace']}/{meta['name']}: port "
                             f"{port.get('port')} has no NodePort (type "
                             f"{(service.get('spec') or {}).get('type', 'ClusterIP')}): "
                             "target-type instance needs a NodePort or LoadBalancer Service; "
                             "or use alb.ingress.kubernetes.io/target-type: ip")
        node_port = int(port["nodePort"])
        return tuple(Target(t.address, node_port, t.node, t.zone)
                     for t in target_nodes(list(self.view.nodes))), node_port

    def _ip_targets(self, service: dict, port: dict) -> tuple[tuple[Target, ...], int]:
        meta = service["metadata"]
        key = f"{meta['namespace']}/{meta['name']}"
        found: dict[str, Target] = {}
        for eps in self.view.endpoint_slices.get(key, ()):
            numbers = [p.get("port") for p in eps.get("ports") or []
                       if (p.get("name") or "") == (port.get("name") or "") and p.get("port")]
            if not numbers:
                continue
            for endpoint in eps.get("endpoints") or []:
                if (endpoint.get("conditions") or {}).get("ready") is False:
                    continue
                ref = endpoint.get("targetRef") or {}
                who = f"{ref.get('namespace', meta['namespace'])}/{ref['name']}" \
                    if ref.get("name") else ""
                for address in endpoint.get("addresses") or []:
                    target = Target(address, int(numbers[0]), who, endpoint.get("zone"))
                    found.setdefault(target.endpoint, target)
        targets = tuple(sorted(found.values(), key=lambda t: (t.address, t.port)))
        outside = [t.address for t in targets if not self._routable(t.address)]
        if outside:
            self.warnings.append(
                f"target-type ip: pod IPs {', '.join(outside)} of service {key} are outside "
                f"the VPC ({', '.join(self.settings.vpc_cidrs)}); the load balancer cannot "
                "route to them (the pod network has no VPC routes) and their health checks "
                "will fail; use target-type instance")
        target_port = (port.get("targetPort") if isinstance(port.get("targetPort"), int)
                       else 1)
        return targets, target_port

    def _routable(self, address: str) -> bool:
        if not self.settings.vpc_cidrs:
            return True
        ip = ipaddress.ip_address(address)
        return any(ip in ipaddress.ip_network(c, strict=False) for c in self.settings.vpc_cidrs)

    def _check(self, settings: notes.TargetSettings, service: dict, port: dict) -> HealthCheck:
        check = settings.check
        tf = self.settings.time_factor
        return HealthCheck(protocol=check.protocol,
                           port=self._check_port(check.port, settings.target_type, service),
                           path=check.path, interval=check.interval * tf,
                           timeout=check.timeout * tf, healthy_threshold=check.healthy,
                           unhealthy_threshold=check.unhealthy, matcher=check.matcher)

    @staticmethod
    def _check_port(raw: str, target_type: str, service: dict) -> int | None:
        if raw == notes.TRAFFIC_PORT:
            return None
        if raw.isdigit():
            return int(raw)
        try:
            port = _lookup_port(service, raw)
        except AlbProblem as err:
            raise AlbProblem(f"failed to resolve healthCheckPort: {err.message}") from err
        if target_type == "instance":
            return int(port.get("nodePort") or 0) or None
        if isinstance(port.get("targetPort"), int):
            return port["targetPort"]
        raise AlbProblem("cannot use named healthCheckPort for IP TargetType when service's "
                         "targetPort is a named port")


def _lookup_port(service: dict, wanted) -> dict:
    for port in (service.get("spec") or {}).get("ports") or []:
        if (isinstance(wanted, int) and port.get("port") == wanted) or \
                (isinstance(wanted, str) and port.get("name") == wanted):
            return port
    meta = service["metadata"]
    raise AlbProblem(f"unable to find port {wanted} on service "
                     f"{meta['namespace']}/{meta['name']}")
