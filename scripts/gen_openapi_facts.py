"""What the ``kubernetes`` client's models do not carry, for scripts/gen_openapi.py.

The Python client keeps each field's name, type, requiredness and description, but
not: which package a type lives in when its name is unique, int64 vs int32,
Quantity / MicroTime / FieldsV1 / RawExtension (flattened to strings and dicts),
list and map semantics (``x-kubernetes-list-type``, merge keys), and enums. These
tables restore them as facts of the Kubernetes API (keys are
``DefinitionShortName.jsonField``); texts are not taken from upstream.
"""

from __future__ import annotations

META = "io.k8s.apimachinery.pkg.apis.meta.v1."
QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
MICROTIME = META + "MicroTime"

META_MODELS = ("ObjectMeta", "ListMeta", "LabelSelector", "LabelSelectorRequirement",
               "OwnerReference", "ManagedFieldsEntry", "Condition", "Status", "StatusDetails",
               "StatusCause", "DeleteOptions", "Preconditions", "WatchEvent", "APIResource",
               "APIResourceList", "ShardInfo")
NAMES = {f"V1{name}": META + name for name in META_MODELS}
# Job's schedulingConfiguration uses the scheduling group's alpha Workload types.
NAMES.update({f"V1alpha3WorkloadPodGroup{name}":
              f"io.k8s.api.scheduling.v1alpha3.WorkloadPodGroup{name}"
              for name in ("DisruptionMode", "ResourceClaim", "SchedulingConstraints",
                           "SchedulingPolicy", "GangSchedulingPolicy")})

# Fields whose client type is a plain string or dict but whose API type is a named one.
_QUANTITY_FIELDS = (
    "ResourceRequirements.limits", "ResourceRequirements.requests",
    "VolumeResourceRequirements.limits", "VolumeResourceRequirements.requests",
    "EmptyDirVolumeSource.sizeLimit", "ResourceFieldSelector.divisor", "PodSpec.overhead",
    "NodeStatus.allocatable", "NodeStatus.capacity", "ContainerStatus.allocatedResources",
    "PodStatus.allocatedResources", "PersistentVolumeClaimStatus.allocatedResources",
    "PersistentVolumeClaimStatus.capacity", "NodeAllocatableMappedResources.quantity",
    "NodeAllocatableOverheadResources.perContainer",
    "NodeAllocatableOverheadResources.perPod")
TYPES: dict[str, str] = {
    **dict.fromkeys(_QUANTITY_FIELDS, QUANTITY),
    **dict.fromkeys(("Event.eventTime", "EventSeries.lastObservedTime", "LeaseSpec.acquireTime",
                     "LeaseSpec.renewTime"), MICROTIME),
    "ManagedFieldsEntry.fieldsV1": META + "FieldsV1",
    "ControllerRevision.data": "io.k8s.apimachinery.pkg.runtime.RawExtension",
    "WatchEvent.object": "io.k8s.apimachinery.pkg.runtime.RawExtension",
}

# Integers are int32 unless listed here.
INT64 = dict.fromkeys((
    "ControllerRevision.revision", "DaemonSetStatus.observedGeneration",
    "DeploymentStatus.observedGeneration", "ReplicaSetStatus.observedGeneration",
    "StatefulSetStatus.observedGeneration", "ReplicationControllerStatus.observedGeneration",
    "PodStatus.observedGeneration", "PodCondition.observedGeneration",
    "Condition.observedGeneration", "CronJobSpec.startingDeadlineSeconds",
    "JobSpec.activeDeadlineSeconds", "ContainerImage.sizeBytes", "PodSecurityContext.fsGroup",
    "PodSecurityContext.runAsGroup", "PodSecurityContext.runAsUser",
    "PodSecurityContext.supplementalGroups", "SecurityContext.runAsGroup",
    "SecurityContext.runAsUser", "LinuxContainerUser.uid", "LinuxContainerUser.gid",
    "LinuxContainerUser.supplementalGroups", "PodSpec.activeDeadlineSeconds",
    "PodSpec.terminationGracePeriodSeconds", "Probe.terminationGracePeriodSeconds",
    "ServiceAccountTokenProjection.expirationSeconds", "SleepAction.seconds",
    "Toleration.tolerationSeconds", "NodeSwapStatus.capacity",
    "DeleteOptions.gracePeriodSeconds", "ListMeta.remainingItemCount",
    "ObjectMeta.deletionGracePeriodSeconds", "ObjectMeta.generation",
), "int64")

# The client marks these required sets differently from the API (checked against
# Kubernetes' published OpenAPI): definition -> the API's required fields.
REQUIRED = {
    **dict.fromkeys(("Deployment", "DaemonSet", "ReplicaSet", "StatefulSet", "CronJob"), ()),
    **dict.fromkeys(("DeploymentCondition", "DaemonSetCondition", "ReplicaSetCondition",
                     "StatefulSetCondition"), ("type", "status")),
    "ControllerRevision": ("revision",),
    "RoleRef": ("apiGroup", "kind", "name"),
}

# Single references lose their description in the client; these are the usual ones.
DESCRIPTIONS = {
    "metadata": "Standard object's metadata: name, namespace, labels, annotations, "
                "owner references and the fields the server sets.",
    "metadata:ListMeta": "Standard list metadata: the list's resourceVersion and, when the "
                         "list is chunked, the continue token.",
    "spec": "The desired state of this object, as the user wrote it.",
    "status": "The most recently observed state, written by the system; read-only.",
}

_ATOMIC = {"x-kubernetes-list-type": "atomic"}
_SET = {"x-kubernetes-list-type": "set"}
_ATOMIC_MAP = {"x-kubernetes-map-type": "atomic"}


def _merge(key: str, strategy: str = "merge", map_keys: tuple[str, ...] = ()) -> dict:
    out = {"x-kubernetes-patch-merge-key": key, "x-kubernetes-patch-strategy": strategy}
    if map_keys:
        out.update({"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": list(map_keys)})
    return out


_CONDITIONS = _merge("type", map_keys=("type",))
_CONTAINER_LISTS = {
    "env": _merge("name"), "ports": _merge("containerPort", map_keys=("containerPort",
                                                                      "protocol")),
    "volumeMounts": _merge("mountPath"), "volumeDevices": _merge("devicePath"),
    "resizePolicy": _ATOMIC,
}

# List and map semantics and strategic-merge-patch keys, as the API declares them.
# Server-side apply and kubectl's client-side apply read these; a merge key must agree
# with controlplane/api/patch.py (tests/unit/test_openapi_schemas.py checks it).
EXTENSIONS: dict[str, dict] = {
    **{f"{kind}Status.conditions": _CONDITIONS
       for kind in ("Deployment", "DaemonSet", "ReplicaSet", "StatefulSet", "Namespace",
                    "Node", "Pod", "ReplicationController", "Service",
                    "PersistentVolumeClaim")},
    "JobStatus.conditions": {**_merge("type"), **_ATOMIC},
    "DeploymentSpec.strategy": {"x-kubernetes-patch-strategy": "retainKeys"},
    "CronJobStatus.active": _ATOMIC, "PodFailurePolicy.rules": _ATOMIC,
    "PodFailurePolicyOnExitCodesRequirement.values": _SET,
    "PodFailurePolicyRule.onPodConditions": _ATOMIC,
    "UncountedTerminatedPods.failed": _SET, "UncountedTerminatedPods.succeeded": _SET,
    **{f"{c}.{f}": ext for c in ("Container", "EphemeralContainer")
       for f, ext in _CONTAINER_LISTS.items()},
    "LoadBalancerIngress.ports": _ATOMIC,
    "NodeStatus.addresses": _merge("type"),
    "PodSpec.containers": _merge("name"), "PodSpec.initContainers": _merge("name"),
    "PodSpec.ephemeralContainers": _merge("name"), "PodSpec.hostAliases": _merge("ip"),
    "PodSpec.imagePullSecrets": _merge("name"), "PodSpec.nodeSelector": _ATOMIC_MAP,
    "PodSpec.resourceClaims": _merge("name", "merge,retainKeys", ("name",)),
    "PodSpec.topologySpreadConstraints": _merge("topologyKey", map_keys=(
        "topologyKey", "whenUnsatisfiable")),
    "PodSpec.volumes": _merge("name", "merge,retainKeys"),
    "PodStatus.podIPs": _merge("ip"), "PodStatus.hostIPs": _merge("ip"),
    "ReplicationControllerSpec.selector": _ATOMIC_MAP,
    "ResourceRequirements.claims": {"x-kubernetes-list-type": "map",
                                    "x-kubernetes-list-map-keys": ["name"]},
    "ServiceSpec.clusterIPs": _ATOMIC, "ServiceSpec.ipFamilies": _ATOMIC,
    "ServiceSpec.ports": _merge("port", map_keys=("port", "protocol")),
    "ServiceSpec.selector": _ATOMIC_MAP, "TopologySpreadConstraint.matchLabelKeys": _ATOMIC,
    "ObjectMeta.finalizers": {**_SET, "x-kubernetes-patch-strategy": "merge"},
    "ObjectMeta.ownerReferences": _merge("uid"),
    "EndpointSlice.endpoints": _ATOMIC, "EndpointSlice.ports": _ATOMIC,
    "Endpoint.addresses": _SET, "EndpointHints.forZones": _ATOMIC,
    "EndpointHints.forNodes": _ATOMIC, "EndpointSubset.addresses": _ATOMIC,
    "EndpointSubset.notReadyAddresses": _ATOMIC, "EndpointSubset.ports": _ATOMIC,
    "Endpoints.subsets": _ATOMIC,
    "NetworkPolicySpec.ingress": _ATOMIC, "NetworkPolicySpec.egress": _ATOMIC,
    "NetworkPolicySpec.policyTypes": _ATOMIC, "NetworkPolicyIngressRule.from": _ATOMIC,
    "NetworkPolicyIngressRule.ports": _ATOMIC, "NetworkPolicyEgressRule.to": _ATOMIC,
    "NetworkPolicyEgressRule.ports": _ATOMIC, "IPBlock.except": _ATOMIC,
    "Role.rules": _ATOMIC, "ClusterRole.rules": _ATOMIC,
    "RoleBinding.subjects": _ATOMIC, "ClusterRoleBinding.subjects": _ATOMIC,
    "PolicyRule.verbs": _ATOMIC, "PolicyRule.apiGroups": _ATOMIC,
    "PolicyRule.resources": _ATOMIC, "PolicyRule.resourceNames": _ATOMIC,
    "PolicyRule.nonResourceURLs": _ATOMIC, "AggregationRule.clusterRoleSelectors": _ATOMIC,
    "LabelSelector.matchExpressions": _ATOMIC, "LabelSelectorRequirement.values": _ATOMIC,
    "IngressSpec.rules": _ATOMIC, "IngressSpec.tls": _ATOMIC, "IngressTLS.hosts": _ATOMIC,
    "HTTPIngressRuleValue.paths": _ATOMIC, "IngressLoadBalancerStatus.ingress": _ATOMIC,
    "IngressLoadBalancerIngress.ports": _ATOMIC,
    # whole-object semantics of small reference types
    **dict.fromkeys(("ConfigMapKeySelector", "SecretKeySelector", "LocalObjectReference",
                     "ObjectFieldSelector", "ResourceFieldSelector", "ObjectReference",
                     "TypedLocalObjectReference", "NodeSelector", "NodeSelectorTerm",
                     "LabelSelector", "OwnerReference", "EndpointAddress",
                     "ServiceBackendPort"), _ATOMIC_MAP),
}
# Not declared although the API declares them: controlplane/api/patch.py does not merge
# these lists by key yet, and kubectl would then send partial lists that replace the
# whole (see the report of issue 16): ServiceAccount.secrets (name),
# PodSpec.schedulingGates (name), NodeSpec.podCIDRs (merged primitive list).

_PROTOCOLS = ("SCTP", "TCP", "UDP")
_EFFECTS = ("NoExecute", "NoSchedule", "PreferNoSchedule")
_PULL = ("Always", "IfNotPresent", "Never")
_MESSAGE = ("FallbackToLogsOnError", "File")
ENUMS: dict[str, tuple[str, ...]] = {
    "Container.imagePullPolicy": _PULL, "EphemeralContainer.imagePullPolicy": _PULL,
    "Container.terminationMessagePolicy": _MESSAGE,
    "EphemeralContainer.terminationMessagePolicy": _MESSAGE,
    "ContainerPort.protocol": _PROTOCOLS, "ServicePort.protocol": _PROTOCOLS,
    "EndpointPort.protocol": _PROTOCOLS, "PortStatus.protocol": _PROTOCOLS,
    "NetworkPolicyPort.protocol": _PROTOCOLS, "NetworkPolicySpec.policyTypes":
        ("Egress", "Ingress"),
    "EndpointSlice.addressType": ("FQDN", "IPv4", "IPv6"),
    "CronJobSpec.concurrencyPolicy": ("Allow", "Forbid", "Replace"),
    "JobSpec.completionMode": ("Indexed", "NonIndexed"),
    "JobSpec.podReplacementPolicy": ("Failed", "TerminatingOrFailed"),
    "PodFailurePolicyOnExitCodesRequirement.operator": ("In", "NotIn"),
    "PodFailurePolicyRule.action": ("Count", "FailIndex", "FailJob", "Ignore"),
    "HTTPGetAction.scheme": ("HTTP", "HTTPS"),
    "HostPathVolumeSource.type": ("", "BlockDevice", "CharDevice", "Directory",
                                  "DirectoryOrCreate", "File", "FileOrCreate", "Socket"),
    "NamespaceStatus.phase": ("Active", "Terminating"),
    "NodeSelectorRequirement.operator": ("DoesNotExist", "Exists", "Gt", "In", "Lt", "NotIn"),
    "NodeStatus.phase": ("Pending", "Running", "Terminated"),
    "PersistentVolumeClaimSpec.volumeMode": ("Block", "Filesystem"),
    "PodSecurityContext.fsGroupChangePolicy": ("Always", "OnRootMismatch"),
    "PodSecurityContext.supplementalGroupsPolicy": ("Merge", "Strict"),
    "PodSpec.dnsPolicy": ("ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"),
    "PodSpec.preemptionPolicy": ("Never", "PreemptLowerPriority"),
    "PodSpec.restartPolicy": ("Always", "Never", "OnFailure"),
    "PodStatus.phase": ("Failed", "Pending", "Running", "Succeeded", "Unknown"),
    "PodStatus.qosClass": ("BestEffort", "Burstable", "Guaranteed"),
    "SeccompProfile.type": ("Localhost", "RuntimeDefault", "Unconfined"),
    "AppArmorProfile.type": ("Localhost", "RuntimeDefault", "Unconfined"),
    "SecurityContext.procMount": ("Default", "Unmasked"),
    "ServiceSpec.externalTrafficPolicy": ("Cluster", "Local"),
    "ServiceSpec.internalTrafficPolicy": ("Cluster", "Local"),
    "ServiceSpec.ipFamilyPolicy": ("PreferDualStack", "RequireDualStack", "SingleStack"),
    "ServiceSpec.ipFamilies": ("IPv4", "IPv6"),
    "ServiceSpec.sessionAffinity": ("ClientIP", "None"),
    "ServiceSpec.type": ("ClusterIP", "ExternalName", "LoadBalancer", "NodePort"),
    "Taint.effect": _EFFECTS, "Toleration.effect": _EFFECTS,
    "Toleration.operator": ("Equal", "Exists"),
    "TopologySpreadConstraint.nodeAffinityPolicy": ("Honor", "Ignore"),
    "TopologySpreadConstraint.nodeTaintsPolicy": ("Honor", "Ignore"),
    "TopologySpreadConstraint.whenUnsatisfiable": ("DoNotSchedule", "ScheduleAnyway"),
    "VolumeMount.mountPropagation": ("Bidirectional", "HostToContainer", "None"),
    "HTTPIngressPath.pathType": ("Exact", "ImplementationSpecific", "Prefix"),
}

APIMACHINERY = {
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": {
        "description": "An integer or a string: a port number or a port name, a count or a "
                       "percentage (\"25%\").",
        "format": "int-or-string", "oneOf": [{"type": "integer"}, {"type": "string"}]},
    QUANTITY: {
        "description": "A fixed-point amount with an optional suffix: binary (Ki, Mi, Gi, "
                       "...), decimal (k, M, G, ...) or milli (m), e.g. 500m, 128Mi, 2.",
        "oneOf": [{"type": "integer"}, {"type": "number"}, {"type": "string"}],
        "format": "quantity"},
    META + "Time": {
        "description": "A point in time, serialised as RFC 3339 with one-second precision "
                       "(2006-01-02T15:04:05Z).",
        "type": "string", "format": "date-time"},
    MICROTIME: {
        "description": "A point in time with microsecond precision, serialised as RFC 3339 "
                       "(2006-01-02T15:04:05.000000Z).",
        "type": "string", "format": "date-time"},
    META + "FieldsV1": {
        "description": "A set of field paths in the fieldsV1 format of server-side apply: "
                       "nested objects whose keys are f:<name>, k:<key>, v:<value> or i:<n>.",
        "type": "object"},
    "io.k8s.apimachinery.pkg.runtime.RawExtension": {
        "description": "An embedded object, kept as the JSON it was written in.",
        "type": "object"},
}
