"""Decoding the Kubernetes protobuf bodies ``kubectl create <kind>`` sends.

Wire format: magic ``k8s\\x00`` + ``runtime.Unknown`` {1: TypeMeta{1 apiVersion,
2 kind}, 2: raw object message, 3: contentEncoding, 4: contentType}. Object
messages follow k8s.io/api generated.proto field numbers; only the messages
kubectl fills are described here, other fields are skipped. Zero values of
non-pointer Go fields are dropped, as JSON's omitempty would.
"""

from __future__ import annotations

import base64

from controlplane.api.errors import bad_request

MAGIC = b"k8s\x00"

# message -> field number -> (json name, type, repeated, keep_zero)
# types: str, int, bool, map (map<string,string>), intstr, time, qmap (map<string,Quantity>),
# or a message name
S = "str"
SCHEMAS: dict[str, dict[int, tuple]] = {
    "TypeMeta": {1: ("apiVersion", S, False, False), 2: ("kind", S, False, False)},
    "Unknown": {1: ("typeMeta", "TypeMeta", False, False), 2: ("raw", "bytes", False, False),
                3: ("contentEncoding", S, False, False), 4: ("contentType", S, False, False)},
    "ObjectMeta": {1: ("name", S, False, False), 2: ("generateName", S, False, False),
                   3: ("namespace", S, False, False), 6: ("resourceVersion", S, False, False),
                   11: ("labels", "map", False, False), 12: ("annotations", "map", False, False),
                   13: ("ownerReferences", "OwnerReference", True, False),
                   14: ("finalizers", S, True, False)},
    "OwnerReference": {1: ("kind", S, False, False), 3: ("name", S, False, False),
                       4: ("uid", S, False, False), 5: ("apiVersion", S, False, False),
                       6: ("controller", "bool", False, True),
                       7: ("blockOwnerDeletion", "bool", False, True)},
    "Namespace": {1: ("metadata", "ObjectMeta", False, False),
                  2: ("spec", "NamespaceSpec", False, False)},
    "NamespaceSpec": {1: ("finalizers", S, True, False)},
    "Service": {1: ("metadata", "ObjectMeta", False, False),
                2: ("spec", "ServiceSpec", False, False)},
    "ServiceSpec": {1: ("ports", "ServicePort", True, False), 2: ("selector", "map", False, False),
                    3: ("clusterIP", S, False, False), 4: ("type", S, False, False),
                    5: ("externalIPs", S, True, False), 7: ("sessionAffinity", S, False, False),
                    8: ("loadBalancerIP", S, False, False),
                    9: ("loadBalancerSourceRanges", S, True, False),
                    10: ("externalName", S, False, False),
                    11: ("externalTrafficPolicy", S, False, False),
                    12: ("healthCheckNodePort", "int", False, False),
                    13: ("publishNotReadyAddresses", "bool", False, False),
                    18: ("clusterIPs", S, True, False), 19: ("ipFamilies", S, True, False),
                    17: ("ipFamilyPolicy", S, False, False),
                    20: ("allocateLoadBalancerNodePorts", "bool", False, True),
                    21: ("loadBalancerClass", S, False, False),
                    22: ("internalTrafficPolicy", S, False, False)},
    "ServicePort": {1: ("name", S, False, False), 2: ("protocol", S, False, False),
                    3: ("port", "int", False, False),
                    4: ("targetPort", "intstr", False, False), 5: ("nodePort", "int", False, False),
                    6: ("appProtocol", S, False, False)},
    "IntOrString": {1: ("type", "int", False, True), 2: ("intVal", "int", False, True),
                    3: ("strVal", S, False, True)},
    "Deployment": {1: ("metadata", "ObjectMeta", False, False),
                   2: ("spec", "DeploymentSpec", False, False)},
    "DeploymentSpec": {1: ("replicas", "int", False, True),
                       2: ("selector", "LabelSelector", False, False),
                       3: ("template", "PodTemplateSpec", False, False),
                       4: ("strategy", "DeploymentStrategy", False, False),
                       5: ("minReadySeconds", "int", False, False),
                       6: ("revisionHistoryLimit", "int", False, True),
                       7: ("paused", "bool", False, False),
                       9: ("progressDeadlineSeconds", "int", False, True)},
    "DeploymentStrategy": {1: ("type", S, False, False),
                           2: ("rollingUpdate", "RollingUpdateDeployment", False, False)},
    "RollingUpdateDeployment": {1: ("maxUnavailable", "intstr", False, False),
                                2: ("maxSurge", "intstr", False, False)},
    "LabelSelector": {1: ("matchLabels", "map", False, False),
                      2: ("matchExpressions", "LabelSelectorRequirement", True, False)},
    "LabelSelectorRequirement": {1: ("key", S, False, False), 2: ("operator", S, False, False),
                                 3: ("values", S, True, False)},
    "PodTemplateSpec": {1: ("metadata", "ObjectMeta", False, False),
                        2: ("spec", "PodSpec", False, False)},
    "PodSpec": {2: ("containers", "Container", True, False), 3: ("restartPolicy", S, False, False),
                4: ("terminationGracePeriodSeconds", "int", False, True),
                6: ("dnsPolicy", S, False, False), 7: ("nodeSelector", "map", False, False),
                8: ("serviceAccountName", S, False, False),
                10: ("nodeName", S, False, False), 11: ("hostNetwork", "bool", False, False),
                16: ("hostname", S, False, False), 17: ("subdomain", S, False, False),
                19: ("schedulerName", S, False, False),
                20: ("initContainers", "Container", True, False)},
    "Container": {1: ("name", S, False, False), 2: ("image", S, False, False),
                  3: ("command", S, True, False), 4: ("args", S, True, False),
                  5: ("workingDir", S, False, False),
                  6: ("ports", "ContainerPort", True, False), 7: ("env", "EnvVar", True, False),
                  8: ("resources", "ResourceRequirements", False, False),
                  13: ("terminationMessagePath", S, False, False),
                  14: ("imagePullPolicy", S, False, False),
                  16: ("stdin", "bool", False, False), 17: ("stdinOnce", "bool", False, False),
                  18: ("tty", "bool", False, False),
                  20: ("terminationMessagePolicy", S, False, False)},
    "ContainerPort": {1: ("name", S, False, False), 2: ("hostPort", "int", False, False),
                      3: ("containerPort", "int", False, False), 4: ("protocol", S, False, False),
                      5: ("hostIP", S, False, False)},
    "EnvVar": {1: ("name", S, False, False), 2: ("value", S, False, False)},
    "ResourceRequirements": {1: ("limits", "qmap", False, False),
                             2: ("requests", "qmap", False, False)},
    # core/v1 ConfigMap and Secret (`kubectl create configmap|secret ...`); "bmap" is a
    # map<string, bytes>, base64 in JSON
    "ConfigMap": {1: ("metadata", "ObjectMeta", False, False), 2: ("data", "map", False, False),
                  3: ("binaryData", "bmap", False, False), 4: ("immutable", "bool", False, True)},
    "Secret": {1: ("metadata", "ObjectMeta", False, False), 2: ("data", "bmap", False, False),
               3: ("type", S, False, False), 4: ("stringData", "map", False, False),
               5: ("immutable", "bool", False, True)},
    # batch/v1 (`kubectl create job|cronjob`, `kubectl create job --from=cronjob/X`)
    "Job": {1: ("metadata", "ObjectMeta", False, False), 2: ("spec", "JobSpec", False, False)},
    "JobSpec": {1: ("parallelism", "int", False, True), 2: ("completions", "int", False, True),
                3: ("activeDeadlineSeconds", "int", False, True),
                4: ("selector", "LabelSelector", False, False),
                5: ("manualSelector", "bool", False, True),
                6: ("template", "PodTemplateSpec", False, False),
                7: ("backoffLimit", "int", False, True),
                8: ("ttlSecondsAfterFinished", "int", False, True),
                9: ("completionMode", S, False, True), 10: ("suspend", "bool", False, True),
                12: ("backoffLimitPerIndex", "int", False, True),
                13: ("maxFailedIndexes", "int", False, True),
                14: ("podReplacementPolicy", S, False, True)},
    "CronJob": {1: ("metadata", "ObjectMeta", False, False),
                2: ("spec", "CronJobSpec", False, False)},
    "CronJobSpec": {1: ("schedule", S, False, False), 8: ("timeZone", S, False, True),
                    2: ("startingDeadlineSeconds", "int", False, True),
                    3: ("concurrencyPolicy", S, False, False), 4: ("suspend", "bool", False, True),
                    5: ("jobTemplate", "JobTemplateSpec", False, False),
                    6: ("successfulJobsHistoryLimit", "int", False, True),
                    7: ("failedJobsHistoryLimit", "int", False, True)},
    "JobTemplateSpec": {1: ("metadata", "ObjectMeta", False, False),
                        2: ("spec", "JobSpec", False, False)},
    # networking.k8s.io/v1 (`kubectl create ingress|ingressclass`); IngressRule's field 2
    # is an inline IngressRuleValue: its `http` sits on the rule in JSON ("inline").
    "Ingress": {1: ("metadata", "ObjectMeta", False, False),
                2: ("spec", "IngressSpec", False, False)},
    "IngressSpec": {1: ("defaultBackend", "IngressBackend", False, False),
                    2: ("tls", "IngressTLS", True, False), 3: ("rules", "IngressRule", True, False),
                    4: ("ingressClassName", S, False, True)},
    "IngressBackend": {3: ("resource", "TypedLocalObjectReference", False, False),
                       4: ("service", "IngressServiceBackend", False, False)},
    "TypedLocalObjectReference": {1: ("apiGroup", S, False, True), 2: ("kind", S, False, False),
                                  3: ("name", S, False, False)},
    "IngressServiceBackend": {1: ("name", S, False, False),
                              2: ("port", "ServiceBackendPort", False, False)},
    "ServiceBackendPort": {1: ("name", S, False, False), 2: ("number", "int", False, False)},
    "IngressTLS": {1: ("hosts", S, True, False), 2: ("secretName", S, False, False)},
    "IngressRule": {1: ("host", S, False, False), 2: ("", "IngressRuleValue", False, False)},
    "IngressRuleValue": {1: ("http", "HTTPIngressRuleValue", False, False)},
    "HTTPIngressRuleValue": {1: ("paths", "HTTPIngressPath", True, False)},
    "HTTPIngressPath": {1: ("path", S, False, False), 3: ("pathType", S, False, True),
                        2: ("backend", "IngressBackend", False, False)},
    "IngressClass": {1: ("metadata", "ObjectMeta", False, False),
                     2: ("spec", "IngressClassSpec", False, False)},
    "IngressClassSpec": {1: ("controller", S, False, False),
                         2: ("parameters", "IngressClassParametersReference", False, False)},
    "IngressClassParametersReference": {1: ("apiGroup", S, False, True),
                                        2: ("kind", S, False, False),
                                        3: ("name", S, False, False),
                                        4: ("scope", S, False, True),
                                        5: ("namespace", S, False, True)},
    "ServiceAccount": {1: ("metadata", "ObjectMeta", False, False),
                       4: ("automountServiceAccountToken", "bool", False, True)},
    # authentication.k8s.io/v1 (`kubectl create token`)
    "TokenRequest": {1: ("metadata", "ObjectMeta", False, False),
                     2: ("spec", "TokenRequestSpec", False, False)},
    "TokenRequestSpec": {1: ("audiences", S, True, False),
                         3: ("boundObjectRef", "BoundObjectReference", False, False),
                         4: ("expirationSeconds", "int", False, True)},
    "BoundObjectReference": {1: ("kind", S, False, False), 2: ("apiVersion", S, False, False),
                             3: ("name", S, False, False), 4: ("uid", S, False, False)},
    # rbac.authorization.k8s.io/v1 (`kubectl create role|clusterrole|rolebinding|...`)
    "Role": {1: ("metadata", "ObjectMeta", False, False), 2: ("rules", "PolicyRule", True, False)},
    "ClusterRole": {1: ("metadata", "ObjectMeta", False, False),
                    2: ("rules", "PolicyRule", True, False),
                    3: ("aggregationRule", "AggregationRule", False, False)},
    "AggregationRule": {1: ("clusterRoleSelectors", "LabelSelector", True, False)},
    "PolicyRule": {1: ("verbs", S, True, False), 2: ("apiGroups", S, True, False),
                   3: ("resources", S, True, False), 4: ("resourceNames", S, True, False),
                   5: ("nonResourceURLs", S, True, False)},
    "RoleBinding": {1: ("metadata", "ObjectMeta", False, False),
                    2: ("subjects", "Subject", True, False),
                    3: ("roleRef", "RoleRef", False, False)},
    "Subject": {1: ("kind", S, False, False), 2: ("apiGroup", S, False, False),
                3: ("name", S, False, False), 4: ("namespace", S, False, False)},
    "RoleRef": {1: ("apiGroup", S, False, False), 2: ("kind", S, False, False),
                3: ("name", S, False, False)},
    # authorization.k8s.io/v1 and authentication.k8s.io/v1 reviews (`kubectl auth ...`)
    "SelfSubjectAccessReview": {1: ("metadata", "ObjectMeta", False, False),
                                2: ("spec", "SelfSubjectAccessReviewSpec", False, False)},
    "SelfSubjectAccessReviewSpec": {
        1: ("resourceAttributes", "ResourceAttributes", False, False),
        2: ("nonResourceAttributes", "NonResourceAttributes", False, False)},
    "ResourceAttributes": {1: ("namespace", S, False, False), 2: ("verb", S, False, False),
                           3: ("group", S, False, False), 4: ("version", S, False, False),
                           5: ("resource", S, False, False), 6: ("subresource", S, False, False),
                           7: ("name", S, False, False)},
    "NonResourceAttributes": {1: ("path", S, False, False), 2: ("verb", S, False, False)},
    "SelfSubjectRulesReview": {1: ("metadata", "ObjectMeta", False, False),
                               2: ("spec", "SelfSubjectRulesReviewSpec", False, False)},
    "SelfSubjectRulesReviewSpec": {1: ("namespace", S, False, False)},
    "SubjectAccessReview": {1: ("metadata", "ObjectMeta", False, False),
                            2: ("spec", "SubjectAccessReviewSpec", False, False)},
    "SubjectAccessReviewSpec": {
        1: ("resourceAttributes", "ResourceAttributes", False, False),
        2: ("nonResourceAttributes", "NonResourceAttributes", False, False),
        3: ("user", S, False, False), 4: ("groups", S, True, False), 6: ("uid", S, False, False)},
    "SelfSubjectReview": {1: ("metadata", "ObjectMeta", False, False)},
}

KIND_MESSAGES = {"Namespace": "Namespace", "ConfigMap": "ConfigMap", "Secret": "Secret",
                 "Job": "Job", "CronJob": "CronJob", "Ingress": "Ingress",
                 "IngressClass": "IngressClass",
                 "Service": "Service", "Deployment": "Deployment",
                 "ServiceAccount": "ServiceAccount", "TokenRequest": "TokenRequest",
                 **{kind: kind for kind in ("Role", "ClusterRole", "RoleBinding",
                                            "ClusterRoleBinding", "SelfSubjectAccessReview",
                                            "SelfSubjectRulesReview", "SubjectAccessReview",
                                            "SelfSubjectReview")}}
SCHEMAS["ClusterRoleBinding"] = SCHEMAS["RoleBinding"]


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise bad_request("truncated protobuf varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def fields(data: bytes) -> list[tuple[int, int, object]]:
    """Raw (field number, wire type, value) triples of one message."""
    out, pos = [], 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            length, pos = _varint(data, pos)
            value, pos = data[pos:pos + length], pos + length
        elif wire == 1:
            value, pos = data[pos:pos + 8], pos + 8
        elif wire == 5:
            value, pos = data[pos:pos + 4], pos + 4
        else:
            raise bad_request(f"unsupported protobuf wire type {wire}")
        out.append((number, wire, value))
    return out


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _map_entry(raw: bytes) -> tuple[str, object]:
    key, value = "", b""
    for number, _, val in fields(raw):
        if number == 1:
            key = val.decode()
        elif number == 2:
            value = val
    return key, value


def _is_zero(value) -> bool:
    return value in ("", 0, False, None) or value == {} or value == []


def decode_message(data: bytes, message: str) -> dict:
    schema = SCHEMAS[message]
    out: dict = {}
    for number, _, raw in fields(data):
        if number not in schema:
            continue
        name, typ, repeated, keep_zero = schema[number]
        if typ == S:
            value = raw.decode()
        elif typ == "bytes":
            value = raw
        elif typ == "int":
            value = _signed(raw)
        elif typ == "bool":
            value = bool(raw)
        elif typ == "map":
            key, val = _map_entry(raw)
            out.setdefault(name, {})[key] = val.decode() if isinstance(val, bytes) else val
            continue
        elif typ == "bmap":
            key, val = _map_entry(raw)
            out.setdefault(name, {})[key] = base64.b64encode(val).decode()
            continue
        elif typ == "qmap":
            key, val = _map_entry(raw)
            quantity = {n: v for n, _, v in fields(val)}
            out.setdefault(name, {})[key] = quantity.get(1, b"").decode()
            continue
        elif typ == "intstr":
            parts = decode_message(raw, "IntOrString")
            value = parts.get("strVal", "") if parts.get("type", 0) == 1 else parts.get("intVal", 0)
        else:
            value = decode_message(raw, typ)
        if not name:                     # an inline (embedded) message: its fields here
            out.update(value)
            continue
        if repeated:
            out.setdefault(name, []).append(value)
        elif keep_zero or not _is_zero(value):
            out[name] = value
    return out


def decode_object(body: bytes) -> dict:
    """Decode a ``k8s\\x00`` envelope into the JSON form of the object."""
    if not body.startswith(MAGIC):
        raise bad_request("protobuf body does not start with the k8s magic prefix")
    envelope = decode_message(body[len(MAGIC):], "Unknown")
    type_meta = envelope.get("typeMeta", {})
    kind = type_meta.get("kind", "")
    message = KIND_MESSAGES.get(kind)
    if message is None:
        raise bad_request(f"protobuf decoding of kind {kind!r} is not supported; send JSON")
    obj = decode_message(envelope.get("raw", b""), message)
    return {"kind": kind, "apiVersion": type_meta.get("apiVersion", ""), **obj}
