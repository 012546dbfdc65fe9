"""Mutating admission that reads other objects: the default IngressClass.

kube-apiserver's DefaultIngressClass plugin gives a new Ingress that names no
class (neither ``spec.ingressClassName`` nor the deprecated
``kubernetes.io/ingress.class`` annotation) the name of the IngressClass
annotated ``ingressclass.kubernetes.io/is-default-class: "true"``; when several
are, the newest wins (ties: the first name). Only on create, never on updates
or the status subresource. Behaves as
plugin/pkg/admission/network/defaultingressclass. Runs after defaulting and
before validation, under the store lock, like every registry step.
"""

from __future__ import annotations

from base.jsoncopy import json_copy

DEFAULT_CLASS_ANNOTATION = "ingressclass.kubernetes.io/is-default-class"
CLASS_ANNOTATION = "kubernetes.io/ingress.class"


def default_class(classes: list[dict]) -> str | None:
    """The default IngressClass's name among ``classes``, or None."""
    defaults = [c for c in classes
                if ((c.get("metadata") or {}).get("annotations") or {})
                .get(DEFAULT_CLASS_ANNOTATION) == "true"]
    if not defaults:
        return None
    # RFC 3339 seconds sort as text; newest first, then by name.
    newest = max(c["metadata"].get("creationTimestamp", "") for c in defaults)
    return min(c["metadata"]["name"] for c in defaults
               if c["metadata"].get("creationTimestamp", "") == newest)


def default_ingress_class(ingress: dict, classes: list[dict]) -> dict:
    """The Ingress with the default class filled in where it names none."""
    spec = ingress.get("spec")
    annotations = (ingress.get("metadata") or {}).get("annotations") or {}
    if not isinstance(spec, dict) or spec.get("ingressClassName") is not None \
            or CLASS_ANNOTATION in annotations:
        return ingress
    name = default_class(classes)
    if name is None:
        return ingress
    ingress = json_copy(ingress)
    ingress["spec"]["ingressClassName"] = name
    return ingress


def admit_ingress(ingress: dict, store) -> dict:
    """The registry's create-time admission step for Ingresses (``store``: the API's)."""
    classes, _ = store.list("ingressclasses", None, read_only=True)
    return default_ingress_class(ingress, classes)
