"""Server-side Table columns of Ingresses and IngressClasses.

As pkg/printers/internalversion/printers.go prints them (printIngress,
printIngressClass), so ``kubectl get ing`` shows NAME CLASS HOSTS ADDRESS
PORTS AGE and ``kubectl get ingressclass`` NAME CONTROLLER PARAMETERS AGE.
The server prints wide: an ALB's long host name shows in full.
"""

from __future__ import annotations

from controlplane.api.table_cells import AGE, NAME, _col, age

MAX_HOSTS = 3


def format_hosts(rules: list) -> str:
    """Up to three hosts, then "+ N more..." once a rule follows the third host, N
    counting rules beyond three (kubectl's formatHosts, quirks included)."""
    hosts, more = [], False
    for rule in rules:
        if len(hosts) == MAX_HOSTS:
            more = True
        if not more and isinstance(rule, dict) and rule.get("host"):
            hosts.append(rule["host"])
    if not hosts:
        return "*"
    return ",".join(hosts) + (f" + {len(rules) - MAX_HOSTS} more..." if more else "")


def ingress_address(status: dict) -> str:
    """The load balancer's IPs or host names, sorted and unique."""
    points = ((status or {}).get("loadBalancer") or {}).get("ingress") or []
    found = {p.get("ip") or p.get("hostname") for p in points if isinstance(p, dict)}
    return ",".join(sorted(a for a in found if a))


def _ingress(ing, now):
    spec = ing.get("spec") or {}
    return [ing["metadata"]["name"], spec.get("ingressClassName") or "<none>",
            format_hosts(spec.get("rules") or []), ingress_address(ing.get("status")),
            "80, 443" if spec.get("tls") else "80", age(ing, now)]


def _ingressclass(ic, now):
    params = (ic.get("spec") or {}).get("parameters")
    text = "<none>"
    if isinstance(params, dict):
        text = params.get("kind", "")
        if params.get("apiGroup") is not None:
            text += "." + params["apiGroup"]
        text += "/" + params.get("name", "")
    return [ic["metadata"]["name"], (ic.get("spec") or {}).get("controller", ""), text,
            age(ic, now)]


TABLES = {
    "ingresses": ([NAME, _col("Class"), _col("Hosts"), _col("Address"), _col("Ports"), AGE],
                  _ingress),
    "ingressclasses": ([NAME, _col("Controller"), _col("Parameters"), AGE], _ingressclass),
}
