"""Defaulting, as Kubernetes' SetDefaults_* functions do for the v1 types.

Each function takes an object dict and returns a new, defaulted dict (the
input is not changed). Only fields kubectl shows or the lab uses are covered.
"""

from __future__ import annotations

from base.jsoncopy import json_copy
from controlplane.api import defaults_volumes, validation_config


def _image_pull_policy(image: str) -> str:
    last = image.rsplit("/", 1)[-1]
    if "@" in last:
        return "IfNotPresent"
    tag = last.split(":", 1)[1] if ":" in last else ""
    return "Always" if tag in ("", "latest") else "IfNotPresent"


def _container(c: dict) -> None:
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    c.setdefault("imagePullPolicy", _image_pull_policy(c.get("image", "")))
    c.setdefault("resources", {})
    for port in c.get("ports") or []:
        port.setdefault("protocol", "TCP")
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        p = c.get(probe)
        if isinstance(p, dict):
            for key, value in (("timeoutSeconds", 1), ("periodSeconds", 10),
                               ("successThreshold", 1), ("failureThreshold", 3)):
                p.setdefault(key, value)


def pod_spec(spec: dict) -> None:
    """In-place defaults of a PodSpec (used by pods and pod templates)."""
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        if isinstance(c, dict):
            _container(c)
    defaults_volumes.volumes(spec)
    defaults_volumes.env(spec)


def service(obj: dict) -> dict:
    obj = json_copy(obj)
    spec = obj.setdefault("spec", {})
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    if spec["sessionAffinity"] == "ClientIP":
        cfg = spec.setdefault("sessionAffinityConfig", {}).setdefault("clientIP", {})
        cfg.setdefault("timeoutSeconds", 10800)
    for port in spec.get("ports") or []:
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")
            if port.get("targetPort") in (None, 0, ""):
                port["targetPort"] = port.get("port")
    stype = spec["type"]
    # As SetDefaults_Service: every externally accessible service (NodePort,
    # LoadBalancer, or any type with externalIPs) gets a policy.
    if stype in ("NodePort", "LoadBalancer") or spec.get("externalIPs"):
        spec.setdefault("externalTrafficPolicy", "Cluster")
    if stype == "LoadBalancer":
        spec.setdefault("allocateLoadBalancerNodePorts", True)
    if stype != "ExternalName":
        spec.setdefault("internalTrafficPolicy", "Cluster")
    obj.setdefault("status", {}).setdefault("loadBalancer", {})
    return obj


def service_ip_families(obj: dict) -> dict:
    """After allocation: clusterIPs / ipFamilies / ipFamilyPolicy like a single-stack cluster."""
    obj = json_copy(obj)
    spec = obj["spec"]
    if spec.get("type") == "ExternalName":
        for key in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"):
            spec.pop(key, None)
        return obj
    if spec.get("clusterIP"):
        spec["clusterIPs"] = [spec["clusterIP"]]
    spec.setdefault("ipFamilies", ["IPv4"])
    spec.setdefault("ipFamilyPolicy", "SingleStack")
    return obj


def deployment(obj: dict) -> dict:
    obj = json_copy(obj)
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    strategy = spec.setdefault("strategy", {})
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        ru = strategy.setdefault("rollingUpdate", {})
        ru.setdefault("maxUnavailable", "25%")
        ru.setdefault("maxSurge", "25%")
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    template = spec.setdefault("template", {})
    template.setdefault("metadata", {})
    pod_spec(template.setdefault("spec", {}))
    obj.setdefault("status", {})
    return obj


def replicaset(obj: dict) -> dict:
    obj = json_copy(obj)
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    template = spec.setdefault("template", {})
    template.setdefault("metadata", {})
    pod_spec(template.setdefault("spec", {}))
    obj.setdefault("status", {"replicas": 0})
    return obj


def pod(obj: dict) -> dict:
    obj = json_copy(obj)
    spec = obj.setdefault("spec", {})
    pod_spec(spec)
    spec.setdefault("enableServiceLinks", True)
    # The ServiceAccount admission plugin (pods only, not templates): "default", mirrored in
    # the deprecated serviceAccount field kubectl shows.
    spec.setdefault("serviceAccountName", spec.get("serviceAccount") or "default")
    spec["serviceAccount"] = spec["serviceAccountName"]
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    spec.setdefault("priority", 0)
    tolerations = spec.setdefault("tolerations", [])
    keys = {t.get("key") for t in tolerations if isinstance(t, dict)}
    for key in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"):
        if key not in keys:
            tolerations.append({"key": key, "operator": "Exists", "effect": "NoExecute",
                                "tolerationSeconds": 300})
    status = obj.setdefault("status", {})
    status.setdefault("phase", "Pending")
    status.setdefault("qosClass", "BestEffort")
    return obj


def namespace(obj: dict) -> dict:
    obj = json_copy(obj)
    obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
    obj.setdefault("status", {}).setdefault("phase", "Active")
    labels = obj["metadata"].setdefault("labels", {})
    labels["kubernetes.io/metadata.name"] = obj["metadata"]["name"]
    return obj


def endpointslice(obj: dict) -> dict:
    obj = json_copy(obj)
    for port in obj.get("ports") or []:
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")
    for ep in obj.get("endpoints") or []:
        if isinstance(ep, dict):
            ep.setdefault("conditions", {})
    return obj


def endpoints(obj: dict) -> dict:
    obj = json_copy(obj)
    for subset in obj.get("subsets") or []:
        for port in (subset or {}).get("ports") or []:
            if isinstance(port, dict):
                port.setdefault("protocol", "TCP")
    return obj


def _drop_empty(obj: dict, *keys: str) -> None:
    """Go's omitempty: an empty list or map of these fields is not kept."""
    for key in keys:
        if key in obj and obj[key] in ([], {}):
            del obj[key]


def _netpol_selector(selector) -> None:
    if isinstance(selector, dict):
        _drop_empty(selector, "matchLabels", "matchExpressions")
        for expr in selector.get("matchExpressions") or []:
            if isinstance(expr, dict):
                _drop_empty(expr, "values")


def networkpolicy(obj: dict) -> dict:
    """SetDefaults_NetworkPolicy and SetDefaults_NetworkPolicyPort, on the object as the
    v1 Go type round-trips it: no status (v1 has none), podSelector always present,
    empty lists omitted."""
    obj = json_copy(obj)
    obj.pop("status", None)
    spec = obj.setdefault("spec", {})
    if not isinstance(spec, dict):
        return obj
    spec.setdefault("podSelector", {})
    _netpol_selector(spec["podSelector"])
    for direction, peers in (("ingress", "from"), ("egress", "to")):
        for rule in spec.get(direction) or []:
            if not isinstance(rule, dict):
                continue
            for port in rule.get("ports") or []:
                if isinstance(port, dict):
                    port.setdefault("protocol", "TCP")
            for peer in rule.get(peers) or []:
                if isinstance(peer, dict):
                    _netpol_selector(peer.get("podSelector"))
                    _netpol_selector(peer.get("namespaceSelector"))
                    if isinstance(peer.get("ipBlock"), dict):
                        _drop_empty(peer["ipBlock"], "except")
            _drop_empty(rule, "ports", peers)
    _drop_empty(spec, "ingress", "egress", "policyTypes")
    if not spec.get("policyTypes"):
        spec["policyTypes"] = ["Ingress"] + (["Egress"] if spec.get("egress") else [])
    return obj


def identity(obj: dict) -> dict:
    return json_copy(obj)


RBAC_GROUP = "rbac.authorization.k8s.io"


def rbac_role(obj: dict) -> dict:
    """Role / ClusterRole as the v1 Go type round-trips it: no status, empty rule lists
    other than verbs omitted."""
    obj = json_copy(obj)
    obj.pop("status", None)
    for rule in obj.get("rules") or []:
        if isinstance(rule, dict):
            _drop_empty(rule, "apiGroups", "resources", "resourceNames", "nonResourceURLs")
    return obj


def rbac_binding(obj: dict) -> dict:
    """SetDefaults_RoleBinding / _ClusterRoleBinding and SetDefaults_Subject: roleRef's and
    User/Group subjects' apiGroup default to rbac.authorization.k8s.io."""
    obj = json_copy(obj)
    obj.pop("status", None)
    ref = obj.get("roleRef")
    if isinstance(ref, dict) and not ref.get("apiGroup"):
        ref["apiGroup"] = RBAC_GROUP
    for subject in obj.get("subjects") or []:
        if isinstance(subject, dict) and not subject.get("apiGroup") \
                and subject.get("kind") in ("User", "Group"):
            subject["apiGroup"] = RBAC_GROUP
    _drop_empty(obj, "subjects")
    return obj


def serviceaccount(obj: dict) -> dict:
    obj = json_copy(obj)
    obj.pop("status", None)
    return obj


def configmap(obj: dict) -> dict:
    """No status; binaryData decoded (a 400 when it is not base64) and kept canonical."""
    obj = validation_config.decode_configmap(obj)
    obj.pop("status", None)
    return obj


def secret(obj: dict) -> dict:
    """No status; stringData folded into data; type Opaque unless set."""
    obj = validation_config.decode_secret(obj)
    obj.pop("status", None)
    return obj


def ingress(obj: dict) -> dict:
    """networking.k8s.io/v1 Ingress has no defaults of its own (v1 requires pathType);
    its status always shows ``loadBalancer: {}``, as the Go struct serialises."""
    obj = json_copy(obj)
    status = obj.get("status")
    if status is None or isinstance(status, dict):
        obj["status"] = {"loadBalancer": {}, **(status or {})}
    return obj


def ingressclass(obj: dict) -> dict:
    """SetDefaults_IngressClass: a parameters reference is cluster-scoped unless it says
    otherwise. No status (IngressClass has none)."""
    obj = json_copy(obj)
    obj.pop("status", None)
    params = (obj.get("spec") or {}).get("parameters") if isinstance(obj.get("spec"),
                                                                      dict) else None
    if isinstance(params, dict) and params.get("scope") is None:
        params["scope"] = "Cluster"
    return obj
