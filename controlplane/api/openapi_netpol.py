"""OpenAPI v3 schemas of networking.k8s.io/v1 NetworkPolicy, so `kubectl explain` can
walk its fields (``kubectl explain netpol.spec.ingress.from.ipBlock``).

Other kinds are published as free-form objects (discovery.py); NetworkPolicy is
the one users write rule by rule, so its fields are described. Descriptions
are short and our own; structure, types and patch metadata follow the v1 API.
"""

from __future__ import annotations

NET = "io.k8s.api.networking.v1."
META = "io.k8s.apimachinery.pkg.apis.meta.v1."
INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"


def _ref(name: str, description: str) -> dict:
    return {"allOf": [{"$ref": f"#/components/schemas/{name}"}], "description": description}


def _array(items: dict, description: str, atomic: bool = True) -> dict:
    out = {"type": "array", "items": items, "description": description}
    if atomic:
        out["x-kubernetes-list-type"] = "atomic"
    return out


def _string(description: str, **extra) -> dict:
    return {"type": "string", "description": description, **extra}


def _object(description: str, properties: dict, required: tuple[str, ...] = ()) -> dict:
    out = {"type": "object", "description": description, "properties": properties}
    if required:
        out["required"] = list(required)
    return out


def _item(name: str) -> dict:
    return {"allOf": [{"$ref": f"#/components/schemas/{name}"}], "default": {}}


SELECTOR_HELP = ("A label query over a set of resources: matchLabels and matchExpressions "
                 "are ANDed; an empty selector matches everything.")

SCHEMAS = {
    NET + "NetworkPolicy": {
        **_object("A NetworkPolicy says which traffic the selected pods may receive (ingress) "
                  "and send (egress). Pods selected by no policy allow everything.", {
                      "apiVersion": _string("The versioned schema of this object."),
                      "kind": _string("The REST resource this object represents."),
                      "metadata": _ref(META + "ObjectMeta", "Standard object's metadata."),
                      "spec": _ref(NET + "NetworkPolicySpec",
                                   "What the policy selects and which traffic it allows."),
                  }),
        "x-kubernetes-group-version-kind": [{"group": "networking.k8s.io", "version": "v1",
                                             "kind": "NetworkPolicy"}],
    },
    NET + "NetworkPolicySpec": _object("The selected pods, the rules and the directions.", {
        "podSelector": _ref(META + "LabelSelector",
                            "The pods of this namespace the policy applies to; an empty "
                            "selector selects every pod of the namespace."),
        "ingress": _array(_item(NET + "NetworkPolicyIngressRule"),
                          "Rules for traffic to the selected pods; traffic matching any rule "
                          "is allowed. Empty: the policy allows no ingress."),
        "egress": _array(_item(NET + "NetworkPolicyEgressRule"),
                         "Rules for traffic from the selected pods; traffic matching any rule "
                         "is allowed. Empty: the policy allows no egress."),
        "policyTypes": _array(_string("Ingress or Egress.", enum=["Egress", "Ingress"]),
                              "The directions the policy isolates (Ingress, Egress). Default: "
                              "Ingress, plus Egress when egress rules are given."),
    }),
    NET + "NetworkPolicyIngressRule": _object(
        "Traffic allowed to the selected pods: from any of the peers to any of the ports.", {
            "from": _array(_item(NET + "NetworkPolicyPeer"),
                           "Sources allowed; empty or absent: any source."),
            "ports": _array(_item(NET + "NetworkPolicyPort"),
                            "Destination ports allowed; empty or absent: any port."),
        }),
    NET + "NetworkPolicyEgressRule": _object(
        "Traffic allowed from the selected pods: to any of the peers on any of the ports.", {
            "to": _array(_item(NET + "NetworkPolicyPeer"),
                         "Destinations allowed; empty or absent: any destination."),
            "ports": _array(_item(NET + "NetworkPolicyPort"),
                            "Destination ports allowed; empty or absent: any port."),
        }),
    NET + "NetworkPolicyPeer": _object(
        "One peer: an ipBlock, or pods chosen by podSelector and/or namespaceSelector.", {
            "podSelector": _ref(META + "LabelSelector",
                                "Pods of the policy's namespace, or of the namespaces "
                                "namespaceSelector picks when both are set."),
            "namespaceSelector": _ref(META + "LabelSelector",
                                      "Namespaces whose pods (all, or those podSelector "
                                      "picks) are peers."),
            "ipBlock": _ref(NET + "IPBlock", "A CIDR range, minus exceptions; may not be "
                                             "combined with selectors."),
        }),
    NET + "IPBlock": _object("An IP range as a CIDR with optional excluded sub-ranges.", {
        "cidr": _string("The range, e.g. 192.168.1.0/24 or 2001:db8::/64.", default=""),
        "except": _array(_string("A CIDR inside cidr.", default=""),
                         "Ranges excluded; each strictly inside cidr."),
    }, ("cidr",)),
    NET + "NetworkPolicyPort": _object("A destination port, or port range, and protocol.", {
        "protocol": _string("TCP, UDP or SCTP. Default: TCP.", enum=["SCTP", "TCP", "UDP"]),
        "port": _ref(INT_OR_STRING, "A port number, or a named container port. Absent: "
                                    "every port."),
        "endPort": {"type": "integer", "format": "int32",
                    "description": "With a numeric port: the last port of the range "
                                   "port..endPort (inclusive)."},
    }),
    INT_OR_STRING: {"oneOf": [{"type": "integer"}, {"type": "string"}],
                    "format": "int-or-string"},
    META + "LabelSelector": {
        **_object(SELECTOR_HELP, {
            "matchLabels": {"type": "object", "additionalProperties": {"type": "string",
                                                                        "default": ""},
                            "description": "key=value pairs, each one a requirement."},
            "matchExpressions": _array(_item(META + "LabelSelectorRequirement"),
                                       "Requirements on label keys and values."),
        }),
        "x-kubernetes-map-type": "atomic",
    },
    META + "LabelSelectorRequirement": _object(
        "A key, an operator and values.", {
            "key": _string("The label key.", default=""),
            "operator": _string("In, NotIn, Exists or DoesNotExist.", default=""),
            "values": _array(_string("A label value.", default=""),
                             "Values for In and NotIn; empty for Exists and DoesNotExist."),
        }, ("key", "operator")),
    META + "ObjectMeta": {
        **_object("Name, namespace, labels and the other metadata every object has.", {
            "name": _string("The object's name, unique in its namespace."),
            "generateName": _string("A prefix the server completes when name is empty."),
            "namespace": _string("The namespace the object lives in."),
            "labels": {"type": "object", "additionalProperties": {"type": "string",
                                                                   "default": ""},
                       "description": "Labels, for selectors."},
            "annotations": {"type": "object", "additionalProperties": {"type": "string",
                                                                        "default": ""},
                            "description": "Free-form data for tools."},
            "finalizers": {"type": "array", "items": {"type": "string", "default": ""},
                           "description": "What must happen before deletion completes.",
                           "x-kubernetes-list-type": "set",
                           "x-kubernetes-patch-strategy": "merge"},
            "ownerReferences": {"type": "array", "items": {"type": "object"},
                                "description": "The objects this one depends on.",
                                "x-kubernetes-patch-merge-key": "uid",
                                "x-kubernetes-patch-strategy": "merge"},
            "uid": _string("Set by the server, unique in time and space."),
            "resourceVersion": _string("Set by the server: the object's version."),
            "generation": {"type": "integer", "format": "int64",
                           "description": "Set by the server: bumps when spec changes."},
            "creationTimestamp": _string("Set by the server.", format="date-time"),
            "deletionTimestamp": _string("Set by the server on deletion.", format="date-time"),
            "managedFields": {"type": "array", "items": {"type": "object"},
                              "description": "Which manager set which fields."},
        }),
        "x-kubernetes-preserve-unknown-fields": True,
    },
}
