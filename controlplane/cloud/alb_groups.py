"""Pure: which Ingresses are the ALB controller's, and how they group into load balancers.

An Ingress is ours when its ``kubernetes.io/ingress.class`` annotation says
``alb`` (the annotation wins over the field, as in the AWS Load Balancer
Controller), or else when ``spec.ingressClassName`` names an IngressClass
whose controller is ``ingress.k8s.aws/alb``. An Ingress naming a class that
does not exist, or none at all, is left alone. One being deleted has left its
group. Each group becomes one ALB: an Ingress alone (implicit group) or every
Ingress with the same ``alb.ingress.kubernetes.io/group.name``, ordered by
``group.order`` (-1000..1000, 0 by default) and then by namespace/name, the
order their rules are evaluated in. Behaves as the controller's
group_loader.go.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from controlplane.cloud.alb_annotations import AlbProblem, group_of, group_order

CONTROLLER = "ingress.k8s.aws/alb"
CLASS_ANNOTATION = "kubernetes.io/ingress.class"
CLASS_NAME = "alb"


def ingress_key(ingress: dict) -> str:
    meta = ingress["metadata"]
    return f"{meta['namespace']}/{meta['name']}"


def is_ours(ingress: dict, classes: Mapping[str, dict]) -> bool:
    meta = ingress["metadata"]
    if meta.get("deletionTimestamp"):
        return False
    annotations = meta.get("annotations") or {}
    if CLASS_ANNOTATION in annotations:
        return annotations[CLASS_ANNOTATION] == CLASS_NAME
    name = (ingress.get("spec") or {}).get("ingressClassName")
    klass = classes.get(name) if name else None
    return klass is not None and (klass.get("spec") or {}).get("controller") == CONTROLLER


@dataclass(frozen=True)
class Group:
    id: str                     # "namespace/name" (implicit) or the group's name
    explicit: bool
    members: tuple[dict, ...]   # in creation order of the input; sort with sorted_members

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(ingress_key(m) for m in self.members)

    @property
    def owner(self) -> str:
        return f"group {self.id}" if self.explicit else f"ingress {self.id}"


def group_ingresses(ingresses: Iterable[dict], classes: Mapping[str, dict]
                    ) -> tuple[list[Group], list[tuple[dict, AlbProblem]]]:
    """Our Ingresses by group (sorted by id), and those whose group name is invalid."""
    found: dict[tuple[str, bool], list[dict]] = {}
    problems = []
    for ingress in ingresses:
        if not is_ours(ingress, classes):
            continue
        try:
            found.setdefault(group_of(ingress), []).append(ingress)
        except AlbProblem as problem:
            problems.append((ingress, problem))
    groups = [Group(gid, explicit, tuple(members))
              for (gid, explicit), members in sorted(found.items())]
    return groups, problems


def sorted_members(group: Group) -> list[dict]:
    """The group's Ingresses in rule order; raises AlbProblem for a bad group.order."""
    return sorted(group.members, key=lambda m: (group_order(m), ingress_key(m)))
