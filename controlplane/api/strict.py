"""Strict field validation (``fieldValidation=Strict``, kubectl's default): unknown fields
are errors.

Every served kind is checked against its OpenAPI schema (generated from the
Kubernetes API's own, ``openapi_schemas.py``), free-form maps (labels,
annotations, a ConfigMap's data, a Service's selector) excepted. The
hand-written tables below are the fallback when that data file is missing:
they describe the objects users write by hand (metadata, Service,
Deployment/ReplicaSet and their pod templates, Namespace, NetworkPolicy down
to its label selectors, the RBAC kinds and ServiceAccount).
The message matches the apiserver's:
``strict decoding error: unknown field "spec.ports[0].targetport"``.
"""

from __future__ import annotations

from controlplane.api import openapi_schemas
from controlplane.api.errors import StatusError

ANY = None   # a leaf or a free-form value


def _fields(*names: str, **nested) -> dict:
    out = dict.fromkeys(names, ANY)
    out.update(nested)
    return out


class ListOf:
    def __init__(self, schema: dict) -> None:
        self.schema = schema


METADATA = _fields("name", "generateName", "namespace", "labels", "annotations", "uid",
                   "resourceVersion", "generation", "creationTimestamp", "deletionTimestamp",
                   "deletionGracePeriodSeconds", "ownerReferences", "finalizers", "managedFields",
                   "selfLink")
SERVICE_PORT = _fields("name", "protocol", "appProtocol", "port", "targetPort", "nodePort")
SERVICE_SPEC = _fields("selector", "clusterIP", "clusterIPs", "type", "externalIPs",
                       "sessionAffinity", "loadBalancerIP", "loadBalancerSourceRanges",
                       "externalName", "externalTrafficPolicy", "healthCheckNodePort",
                       "publishNotReadyAddresses", "sessionAffinityConfig", "ipFamilies",
                       "ipFamilyPolicy", "allocateLoadBalancerNodePorts", "loadBalancerClass",
                       "internalTrafficPolicy", "trafficDistribution", ports=ListOf(SERVICE_PORT))
CONTAINER_PORT = _fields("name", "hostPort", "containerPort", "protocol", "hostIP")
CONTAINER = _fields("name", "image", "command", "args", "workingDir", "env", "envFrom",
                    "resources", "resizePolicy", "restartPolicy", "volumeMounts", "volumeDevices",
                    "livenessProbe", "readinessProbe", "startupProbe", "lifecycle",
                    "terminationMessagePath", "terminationMessagePolicy", "imagePullPolicy",
                    "securityContext", "stdin", "stdinOnce", "tty", "restartPolicyRules",
                    ports=ListOf(CONTAINER_PORT))
POD_SPEC = _fields("volumes", "restartPolicy", "terminationGracePeriodSeconds",
                   "activeDeadlineSeconds", "dnsPolicy", "nodeSelector", "serviceAccountName",
                   "serviceAccount", "automountServiceAccountToken", "nodeName", "hostNetwork",
                   "hostPID", "hostIPC", "shareProcessNamespace", "securityContext",
                   "imagePullSecrets", "hostname", "subdomain", "affinity", "schedulerName",
                   "tolerations", "hostAliases", "priorityClassName", "priority", "dnsConfig",
                   "readinessGates", "runtimeClassName", "enableServiceLinks", "preemptionPolicy",
                   "overhead", "topologySpreadConstraints", "setHostnameAsFQDN", "os", "hostUsers",
                   "schedulingGates", "resourceClaims", "resources", "ephemeralContainers",
                   containers=ListOf(CONTAINER), initContainers=ListOf(CONTAINER))
TEMPLATE = _fields(metadata=METADATA, spec=POD_SPEC)
DEPLOYMENT_SPEC = _fields("replicas", "selector", "strategy", "minReadySeconds",
                          "revisionHistoryLimit", "paused", "progressDeadlineSeconds",
                          template=TEMPLATE)
REPLICASET_SPEC = _fields("replicas", "selector", "minReadySeconds", template=TEMPLATE)
LABEL_SELECTOR = _fields("matchLabels",
                         matchExpressions=ListOf(_fields("key", "operator", "values")))
NETPOL_PORT = _fields("protocol", "port", "endPort")
NETPOL_PEER = _fields(podSelector=LABEL_SELECTOR, namespaceSelector=LABEL_SELECTOR,
                      ipBlock=_fields("cidr", "except"))
NETPOL_SPEC = _fields("policyTypes", podSelector=LABEL_SELECTOR,
                      ingress=ListOf(_fields(ports=ListOf(NETPOL_PORT),
                                             **{"from": ListOf(NETPOL_PEER)})),
                      egress=ListOf(_fields(ports=ListOf(NETPOL_PORT), to=ListOf(NETPOL_PEER))))

POLICY_RULE = _fields("verbs", "apiGroups", "resources", "resourceNames", "nonResourceURLs")
SUBJECT = _fields("kind", "apiGroup", "name", "namespace")
ROLE_REF = _fields("apiGroup", "kind", "name")
OBJECT_REFERENCE = _fields("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion",
                           "fieldPath")

SCHEMAS = {
    "Service": _fields("kind", "apiVersion", "status", metadata=METADATA, spec=SERVICE_SPEC),
    "Deployment": _fields("kind", "apiVersion", "status", metadata=METADATA,
                          spec=DEPLOYMENT_SPEC),
    "ReplicaSet": _fields("kind", "apiVersion", "status", metadata=METADATA,
                          spec=REPLICASET_SPEC),
    "Namespace": _fields("kind", "apiVersion", "spec", "status", metadata=METADATA),
    # networking.k8s.io/v1 NetworkPolicy has no status field (since Kubernetes 1.28).
    "NetworkPolicy": _fields("kind", "apiVersion", metadata=METADATA, spec=NETPOL_SPEC),
    "Role": _fields("kind", "apiVersion", metadata=METADATA, rules=ListOf(POLICY_RULE)),
    "ClusterRole": _fields("kind", "apiVersion", metadata=METADATA, rules=ListOf(POLICY_RULE),
                           aggregationRule=_fields(
                               clusterRoleSelectors=ListOf(LABEL_SELECTOR))),
    "RoleBinding": _fields("kind", "apiVersion", metadata=METADATA, roleRef=ROLE_REF,
                           subjects=ListOf(SUBJECT)),
    "ClusterRoleBinding": _fields("kind", "apiVersion", metadata=METADATA, roleRef=ROLE_REF,
                                  subjects=ListOf(SUBJECT)),
    "ServiceAccount": _fields("kind", "apiVersion", "automountServiceAccountToken",
                              metadata=METADATA, secrets=ListOf(OBJECT_REFERENCE),
                              imagePullSecrets=ListOf(_fields("name"))),
}


def unknown_fields(value, schema, path: str = "") -> list[str]:
    if isinstance(schema, ListOf):
        if not isinstance(value, list):
            return []
        return [u for i, item in enumerate(value)
                for u in unknown_fields(item, schema.schema, f"{path}[{i}]")]
    if schema is ANY or not isinstance(value, dict):
        return []
    out = []
    for key, item in value.items():
        where = f"{path}.{key}" if path else key
        if key not in schema:
            out.append(where)
        else:
            out += unknown_fields(item, schema[key], where)
    return out


def _unknown(obj: dict, kind: str, api_version: str) -> list[str]:
    """The unknown fields' paths, by the generated schema if there is one for the kind."""
    group, _, version = api_version.rpartition("/")
    try:
        found = openapi_schemas.unknown_fields(obj, group, version, kind)
    except (OSError, ValueError, KeyError):      # the data file missing or unreadable
        found = None
    if found is not None:
        return found
    schema = SCHEMAS.get(kind)
    return [] if schema is None else unknown_fields(obj, schema)


def check_strict(obj: dict, kind: str, api_version: str) -> None:
    """Raise 400 BadRequest listing unknown fields, as the apiserver's strict decoder does."""
    unknown = _unknown(obj, kind, api_version)
    if unknown:
        listed = ", ".join(f'unknown field "{u}"' for u in unknown)
        raise StatusError(400, "BadRequest",
                          f'{kind} in version "{api_version.split("/")[-1]}" cannot be '
                          f"handled as a {kind}: strict decoding error: {listed}")


def check_strict_apply(obj: dict, kind: str, api_version: str, namespace: str,
                       name: str) -> None:
    """Server-side apply's version of the check (the typed-patch error)."""
    unknown = _unknown(obj, kind, api_version)
    if unknown:
        group, _, version = api_version.rpartition("/")
        where = f"{namespace}/{name}" if namespace else name
        raise StatusError(400, "BadRequest",
                          f"failed to create typed patch object ({group}/{version}, Kind={kind}) "
                          f"{where}: .{unknown[0]}: field not declared in schema")
