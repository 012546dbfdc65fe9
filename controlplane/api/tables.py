"""Server-side printing: ``meta.k8s.io/v1`` Table objects with kubectl's columns.

Mirrors pkg/printers/internalversion/printers.go for the types served, so
``kubectl get`` reads like a real cluster. Pure functions of the objects and
the current time.
"""

from __future__ import annotations

import datetime as dt

from controlplane.api import events, tables_networking, tables_workloads
from controlplane.api.selectors import format_labels, selector_string
from controlplane.api.table_cells import (
    AGE,
    NAME,
    _col,
    _containers,
    _since,
    age,
    human_duration,
)

__all__ = ["age", "human_duration", "to_table", "TABLES"]

PARTIAL = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1"}


def _lb_ingress(svc: dict, wide: bool) -> str:
    ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    text = ",".join(i.get("ip") or i.get("hostname", "") for i in ingress
                    if i.get("ip") or i.get("hostname"))
    if not wide and len(text) > 16:
        text = text[:13] + "..."
    return text


def service_external_ip(svc: dict, wide: bool = False) -> str:
    spec = svc.get("spec") or {}
    external = spec.get("externalIPs") or []
    stype = spec.get("type")
    if stype in ("ClusterIP", "NodePort"):
        return ",".join(external) if external else "<none>"
    if stype == "LoadBalancer":
        lb = _lb_ingress(svc, wide)
        parts = (lb.split(",") if lb else []) + external
        return ",".join(parts) if parts else "<pending>"
    if stype == "ExternalName":
        return spec.get("externalName", "")
    return "<unknown>"


def service_ports(spec: dict) -> str:
    pieces = []
    for p in spec.get("ports") or []:
        if p.get("nodePort"):
            pieces.append(f"{p.get('port')}:{p['nodePort']}/{p.get('protocol', 'TCP')}")
        else:
            pieces.append(f"{p.get('port')}/{p.get('protocol', 'TCP')}")
    return ",".join(pieces) if pieces else "<none>"


def _service(svc, now):
    spec = svc.get("spec") or {}
    return [svc["metadata"]["name"], spec.get("type", ""), spec.get("clusterIP") or "<none>",
            # The API server prints tables wide (kubectl picks columns), so an
            # ELB's long hostname shows in full, as on EKS.
            service_external_ip(svc, wide=True), service_ports(spec), age(svc, now),
            format_labels(spec.get("selector"))]


def format_endpoints(ep: dict) -> str:
    subsets = ep.get("subsets") or []
    if not subsets:
        return "<none>"
    out, count, limit = [], 0, 3
    for ss in subsets:
        addresses = ss.get("addresses") or []
        ports = ss.get("ports") or []
        if not ports:
            count += len(addresses)
            out += [a.get("ip", "") for a in addresses]
            continue
        for port in ports:
            count += len(addresses)
            out += [f"{a.get('ip', '')}:{port.get('port')}" for a in addresses]
    text = ",".join(out[:limit])
    return f"{text} + {count - limit} more..." if count > limit else text


def _endpoints(ep, now):
    return [ep["metadata"]["name"], format_endpoints(ep), age(ep, now)]


def pod_status_reason(pod: dict) -> str:
    status = pod.get("status") or {}
    reason = status.get("reason") or status.get("phase") or ""
    running = False
    for cs in reversed(status.get("containerStatuses") or []):
        state = cs.get("state") or {}
        if (state.get("waiting") or {}).get("reason"):
            reason = state["waiting"]["reason"]
        elif "terminated" in state:
            term = state["terminated"]
            reason = term.get("reason") or (f"Signal:{term['signal']}" if term.get("signal")
                                             else f"ExitCode:{term.get('exitCode', 0)}")
        elif "running" in state and cs.get("ready"):
            running = True
    if reason == "Completed" and running:
        reason = "Running"
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        reason = "Unknown" if status.get("reason") == "NodeLost" else "Terminating"
    return reason


def _pod(pod, now):
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    statuses = status.get("containerStatuses") or []
    ready = sum(1 for c in statuses if c.get("ready"))
    restarts = sum(int(c.get("restartCount", 0)) for c in statuses)
    gates = spec.get("readinessGates") or []
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    gates_text = (f"{sum(1 for g in gates if conditions.get(g.get('conditionType')) == 'True')}"
                  f"/{len(gates)}" if gates else "<none>")
    ips = ([p.get("ip") for p in status.get("podIPs") or []]
           or ([status["podIP"]] if status.get("podIP") else []))
    return [pod["metadata"]["name"], f"{ready}/{len(spec.get('containers') or [])}",
            pod_status_reason(pod), str(restarts), age(pod, now), ips[0] if ips else "<none>",
            spec.get("nodeName") or "<none>", status.get("nominatedNodeName") or "<none>",
            gates_text]


def node_status(node: dict) -> str:
    parts = []
    for cond in (node.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            parts = ["Ready" if cond.get("status") == "True" else "NotReady"]
    parts = parts or ["Unknown"]
    if (node.get("spec") or {}).get("unschedulable"):
        parts.append("SchedulingDisabled")
    return ",".join(parts)


def node_roles(node: dict) -> str:
    roles = set()
    for key, value in ((node.get("metadata") or {}).get("labels") or {}).items():
        if key.startswith("node-role.kubernetes.io/"):
            role = key.split("/", 1)[1]
            if role:
                roles.add(role)
        elif key == "kubernetes.io/role" and value:
            roles.add(value)
    return ",".join(sorted(roles)) if roles else "<none>"


def _node_address(node: dict, kind: str) -> str:
    for addr in (node.get("status") or {}).get("addresses") or []:
        if addr.get("type") == kind:
            return addr.get("address", "")
    return "<none>"


def _node(node, now):
    info = (node.get("status") or {}).get("nodeInfo") or {}
    return [node["metadata"]["name"], node_status(node), node_roles(node), age(node, now),
            info.get("kubeletVersion", ""), _node_address(node, "InternalIP"),
            _node_address(node, "ExternalIP"),
            info.get("osImage") or "<unknown>", info.get("kernelVersion") or "<unknown>",
            info.get("containerRuntimeVersion") or "<unknown>"]


def _deployment(dep, now):
    spec, status = dep.get("spec") or {}, dep.get("status") or {}
    names, images = _containers(spec.get("template"))
    return [dep["metadata"]["name"], f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 0)}",
            status.get("updatedReplicas", 0), status.get("availableReplicas", 0), age(dep, now),
            names, images, selector_string(spec.get("selector"))]


def _replicaset(rs, now):
    spec, status = rs.get("spec") or {}, rs.get("status") or {}
    names, images = _containers(spec.get("template"))
    return [rs["metadata"]["name"], spec.get("replicas", 0), status.get("replicas", 0),
            status.get("readyReplicas", 0), age(rs, now), names, images,
            selector_string(spec.get("selector"))]


def _namespace(ns, now):
    return [ns["metadata"]["name"], (ns.get("status") or {}).get("phase", ""), age(ns, now)]


def _endpointslice(es, now):
    ports = es.get("ports")
    if ports is None or not ports:
        port_text = "<unset>"
    else:
        port_text = ",".join(str(p["port"]) if p.get("port") is not None else "<unset>"
                             for p in ports)
    addrs = [a for ep in es.get("endpoints") or [] for a in ep.get("addresses") or []]
    ep_text = (",".join(addrs[:3]) + (f" + {len(addrs) - 3} more..." if len(addrs) > 3 else "")
               if addrs else "<unset>")
    return [es["metadata"]["name"], es.get("addressType", ""), port_text, ep_text, age(es, now)]


def _networkpolicy(np, now):
    """printNetworkPolicy: no wide columns."""
    selector = (np.get("spec") or {}).get("podSelector")
    return [np["metadata"]["name"], selector_string(selector), age(np, now)]


def _created_at(obj, now):
    """The default table convertor (Roles, ClusterRoles): name and creation time, RFC 3339."""
    return [obj["metadata"]["name"], obj["metadata"].get("creationTimestamp", "")]


def _binding(binding, now):
    """printRoleBinding / printClusterRoleBinding, wide; subjects as rbac.SubjectsStrings."""
    users, groups, sas = [], [], []
    for subject in binding.get("subjects") or []:
        kind, name = subject.get("kind"), subject.get("name", "")
        if kind == "User":
            users.append(name)
        elif kind == "Group":
            groups.append(name)
        elif kind == "ServiceAccount":
            sas.append(f"{subject.get('namespace', '')}/{name}")
    ref = binding.get("roleRef") or {}
    return [binding["metadata"]["name"], f"{ref.get('kind', '')}/{ref.get('name', '')}",
            age(binding, now), ", ".join(users), ", ".join(groups), ", ".join(sas)]


def _serviceaccount(sa, now):
    return [sa["metadata"]["name"], len(sa.get("secrets") or []), age(sa, now)]


def _configmap(cm, now):
    return [cm["metadata"]["name"], len(cm.get("data") or {}) + len(cm.get("binaryData") or {}),
            age(cm, now)]


def _secret(secret, now):
    return [secret["metadata"]["name"], secret.get("type", ""), len(secret.get("data") or {}),
            age(secret, now)]


BINDING_COLUMNS = [NAME, _col("Role"), AGE, _col("Users", 1), _col("Groups", 1),
                   _col("ServiceAccounts", 1)]


def event_source(ev: dict) -> str:
    """formatEventSource: component (or reportingController), then ", host" if any."""
    source = ev.get("source") or {}
    component = source.get("component") or ev.get("reportingComponent", "")
    host = source.get("host") or ev.get("reportingInstance", "")
    return f"{component}, {host}" if host else component


def _event(ev, now):
    """printEvent, wide (the server sends every column; kubectl hides priority 1 ones)."""
    ev = events.as_core(ev)
    first = _since(ev.get("firstTimestamp") or ev.get("eventTime"), now)
    last = _since(ev["lastTimestamp"], now) if ev.get("lastTimestamp") else first
    count = ev.get("count") or 1
    if ev.get("series"):
        last = _since(ev["series"].get("lastObservedTime"), now)
        count = ev["series"].get("count", count)
    inv = ev.get("involvedObject") or {}
    kind = (inv.get("kind") or "").lower()
    target = f"{kind}/{inv['name']}" if inv.get("name") else kind
    return [last, ev.get("type", ""), ev.get("reason", ""), target, inv.get("fieldPath", ""),
            event_source(ev), (ev.get("message") or "").strip(), first, int(count),
            ev["metadata"]["name"]]


TABLES = {
    "services": ([NAME, _col("Type"), _col("Cluster-IP"), _col("External-IP"), _col("Port(s)"),
                  AGE, _col("Selector", 1)], _service),
    "endpoints": ([NAME, _col("Endpoints"), AGE], _endpoints),
    "pods": ([NAME, _col("Ready"), _col("Status"), _col("Restarts", typ="string"), AGE,
              _col("IP", 1), _col("Node", 1), _col("Nominated Node", 1),
              _col("Readiness Gates", 1)], _pod),
    "nodes": ([NAME, _col("Status"), _col("Roles"), AGE, _col("Version"), _col("Internal-IP", 1),
               _col("External-IP", 1), _col("OS-Image", 1), _col("Kernel-Version", 1),
               _col("Container-Runtime", 1)], _node),
    "deployments": ([NAME, _col("Ready"), _col("Up-to-date", typ="integer"),
                     _col("Available", typ="integer"), AGE, _col("Containers", 1),
                     _col("Images", 1), _col("Selector", 1)], _deployment),
    "replicasets": ([NAME, _col("Desired", typ="integer"), _col("Current", typ="integer"),
                     _col("Ready", typ="integer"), AGE, _col("Containers", 1), _col("Images", 1),
                     _col("Selector", 1)], _replicaset),
    "namespaces": ([NAME, _col("Status"), AGE], _namespace),
    "endpointslices": ([NAME, _col("AddressType"), _col("Ports"), _col("Endpoints"), AGE],
                       _endpointslice),
    "networkpolicies": ([NAME, _col("Pod-Selector"), AGE], _networkpolicy),
    "roles": ([NAME, _col("Created At", typ="date")], _created_at),
    "clusterroles": ([NAME, _col("Created At", typ="date")], _created_at),
    "rolebindings": (BINDING_COLUMNS, _binding),
    "clusterrolebindings": (BINDING_COLUMNS, _binding),
    "serviceaccounts": ([NAME, _col("Secrets"), AGE], _serviceaccount),
    "configmaps": ([NAME, _col("Data"), AGE], _configmap),
    "secrets": ([NAME, _col("Type"), _col("Data"), AGE], _secret),
    **tables_workloads.TABLES,
    **tables_networking.TABLES,
    "events": ([_col("Last Seen"), _col("Type"), _col("Reason"), _col("Object"),
                _col("Subobject", 1), _col("Source", 1), _col("Message"), _col("First Seen", 1),
                _col("Count", 1), _col("Name", 1, "name")], _event),
}


def _row_object(obj: dict, include: str) -> dict | None:
    if include == "None":
        return None
    if include == "Object":
        return obj
    return {**PARTIAL, "metadata": obj.get("metadata", {})}


def to_table(plural: str, objects: list[dict], resource_version: str,
             include: str = "Metadata", now: dt.datetime | None = None,
             headers: bool = True) -> dict:
    now = now or dt.datetime.now(dt.timezone.utc)
    columns, printer = TABLES[plural]
    rows = []
    for obj in objects:
        row = {"cells": printer(obj, now)}
        embedded = _row_object(obj, include)
        if embedded is not None:
            row["object"] = embedded
        rows.append(row)
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1",
            "metadata": {"resourceVersion": resource_version},
            "columnDefinitions": columns if headers else [], "rows": rows}
