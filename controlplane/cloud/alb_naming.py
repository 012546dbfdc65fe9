"""Pure: the names the AWS Load Balancer Controller gives an ALB and its target groups.

An Ingress alone is an implicit group named after it; ``group.name`` makes an
explicit one. The load balancer is ``k8s-<namespace:8>-<name:8>-<hash:10>``
(implicit) or ``k8s-<group:17>-<hash:10>`` (explicit), the hash a SHA-256 of
the cluster name, the group and the scheme, so a scheme change makes another
load balancer as on AWS; ``load-balancer-name`` overrides it (32 characters
at most). AWS then forms the DNS name ``<name>-<10 digits>.<region>.elb.
amazonaws.com``, ``internal-`` in front for an internal one; the digits are
AWS's and here a hash of the name, so the same group always gets the same
host name. Target groups are ``k8s-<namespace:8>-<service:8>-<hash:10>``, the
hash over what makes them distinct (Ingress, Service uid, port, target type,
protocol). Behaves as the controller's model_build_load_balancer.go and
model_build_target_group.go.
"""
from __future__ import annotations

import hashlib
import re

from base.alb_api import INTERNAL
from controlplane.cloud.alb_annotations import AlbProblem
from controlplane.cloud.hostnames import REGION

NOT_ALNUM = re.compile(r"[^A-Za-z0-9]")
MAX_NAME = 32


def _sha(*parts: str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode())
    return digest.hexdigest()


def load_balancer_name(cluster: str, group: str, explicit: bool, scheme: str,
                       custom: str | None = None) -> str:
    """The ALB's name (``load-balancer-name`` if given)."""
    if custom is not None:
        if len(custom) > MAX_NAME:
            raise AlbProblem("load balancer name cannot be longer than 32 characters")
        return custom
    digest = _sha(cluster, group, scheme)
    if explicit:
        return f"k8s-{NOT_ALNUM.sub('', group)[:17]}-{digest[:10]}"
    namespace, _, name = group.partition("/")
    return f"k8s-{NOT_ALNUM.sub('', namespace)[:8]}-{NOT_ALNUM.sub('', name)[:8]}-{digest[:10]}"


def dns_name(name: str, scheme: str, region: str = REGION) -> str:
    """The ALB's DNS name as AWS forms it."""
    digits = int(_sha(f"alb/{name}")[:16], 16) % 10**10
    prefix = "internal-" if scheme == INTERNAL else ""
    return f"{prefix}{name}-{digits:010d}.{region}.elb.amazonaws.com".lower()


def target_group_name(cluster: str, group: str, ingress_key: str, service: dict, port: str,
                      target_port: int, target_type: str, protocol: str) -> str:
    """A target group per (Ingress, Service, port) and its settings."""
    meta = service["metadata"]
    namespace, _, name = ingress_key.partition("/")
    digest = _sha(cluster, group, namespace, name, meta.get("uid", ""), port,
                  str(target_port), target_type, protocol, "HTTP1")
    return (f"k8s-{NOT_ALNUM.sub('', meta['namespace'])[:8]}-"
            f"{NOT_ALNUM.sub('', meta['name'])[:8]}-{digest[:10]}")
