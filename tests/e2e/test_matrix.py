"""The reachability suite: the standard matrix over a representative set of
Services, in both proxy modes, every cell as Kubernetes semantics predict.

Each mode gets its own lab with, created through `svclab kubectl`: a `web`
Deployment (80/TCP, 5353/UDP) behind a ClusterIP (TCP and UDP), a NodePort,
a Classic LoadBalancer, a headless Service, a ClientIP-affinity Service and
an ExternalName; a one-replica `solo` Deployment pinned to ip-172-31-0-12
behind an externalTrafficPolicy Local NodePort and an internalTrafficPolicy
Local ClusterIP; and a NodePort Service whose selector matches nothing.
"""
from __future__ import annotations

import functools
import json

import pytest

import labtools
from labd.lb_status import lb_status
from labtools import admin_client, running_lab, svclab
from probes.matrix.probe import run_matrix

wait_for = functools.partial(labtools.wait_for, timeout=30.0, every=0.2)

pytestmark = [pytest.mark.root, pytest.mark.e2e]

N12 = "ip-172-31-0-12"


def deployment(name: str, replicas: int, node: str | None = None) -> dict:
    pod_spec = {"containers": [{"name": "app", "image": "nginx", "ports": [
        {"containerPort": 80, "protocol": "TCP"},
        {"containerPort": 5353, "protocol": "UDP"}]}]}
    if node:
        pod_spec["nodeSelector"] = {"kubernetes.io/hostname": node}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": pod_spec}}}


def service(name: str, app: str, kind: str = "ClusterIP", udp: bool = False, **spec) -> dict:
    ports = [{"name": "http", "port": 80, "targetPort": 80, "protocol": "TCP"}]
    if udp:
        ports.append({"name": "echo", "port": 53, "targetPort": 5353, "protocol": "UDP"})
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"type": kind, "selector": {"app": app}, "ports": ports, **spec}}


MANIFESTS = [
    deployment("web", 2), deployment("solo", 1, node=N12),
    service("web-cip", "web", udp=True),
    service("web-np", "web", "NodePort", udp=True),
    service("web-lb", "web", "LoadBalancer"),
    service("web-headless", "web", clusterIP="None"),
    service("web-sticky", "web", sessionAffinity="ClientIP"),
    service("solo-etp", "solo", "NodePort", externalTrafficPolicy="Local"),
    service("solo-itp", "solo", internalTrafficPolicy="Local"),
    service("nothing", "nothing-matches", "NodePort"),
    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "db"},
     "spec": {"type": "ExternalName", "externalName": "db.example.com"}},
]


def ready_endpoints(api, service_name: str) -> int:
    slices, _ = api.list("endpointslices", "default",
                         label_selector=f"kubernetes.io/service-name={service_name}")
    return sum(1 for s in slices for e in s.get("endpoints") or []
               if (e.get("conditions") or {}).get("ready"))


def lb_ready(lab_name: str, key: str, nodes: int) -> bool:
    rows = [r for r in lb_status(lab_name) if r["key"] == key]
    return bool(rows) and sum(t["state"] == "healthy" for t in rows[0]["targets"]) == nodes


@pytest.fixture(scope="module", params=["iptables", "nftables"])
def lab(request):
    with running_lab("--proxy-mode", request.param, prefix="mx") as running:
        running.mode = request.param
        svclab("kubectl", "--name", running.name, "apply", "-f", "-",
               input="\n---\n".join(json.dumps(m) for m in MANIFESTS))
        api = admin_client(running.name)
        wait_for("web endpoints", lambda: ready_endpoints(api, "web-cip") == 2)
        wait_for("solo endpoint", lambda: ready_endpoints(api, "solo-etp") == 1)
        wait_for("headless endpoints", lambda: ready_endpoints(api, "web-headless") == 2)

        def hostname():
            svc = api.get("services", "web-lb", "default")
            return (svc.get("status", {}).get("loadBalancer", {}).get("ingress") or [{}])[0]
        wait_for("LB hostname", lambda: hostname().get("hostname"))
        wait_for("LB targets healthy", lambda: lb_ready(running.name, "default/web-lb", 2))
        yield running


def test_every_cell_of_the_matrix_is_as_expected(lab):
    matrix = run_matrix(lab.name, "default")
    print(f"\n[{lab.mode}]\n" + matrix.render())
    assert matrix.ok, matrix.render()
    kinds = {(c.target.split()[0], c.expected) for c in matrix.cells}
    # The suite really covers what it claims: each semantic shows up in the cells.
    assert ("svc/nothing", "rejected") in kinds
    assert ("svc/solo-etp", "dropped") in kinds and ("svc/solo-etp", "open") in kinds
    assert ("svc/solo-itp", "dropped") in kinds and ("svc/solo-itp", "open") in kinds
    assert any(c.target.startswith("svc/web-lb ") and ".elb.amazonaws.com" in c.target
               and c.source == "client" and c.ok for c in matrix.cells)
    assert any(c.proto == "udp" and c.observed == "open" for c in matrix.cells)
    assert not any(c.target.startswith(("svc/db ", "svc/web-headless ")) for c in matrix.cells)
    assert any("ExternalName" in n for n in matrix.notes)
    assert any("headless" in n for n in matrix.notes)


def test_matrix_json_says_which_cells_were_checked(lab):
    document = run_matrix(lab.name, "default").to_json()
    assert document["ok"] is True and document["unexpected"] == 0
    cell = next(c for c in document["cells"]
                if c["source"] == "client" and c["target"].startswith("svc/web-cip "))
    assert cell["expected"] == cell["observed"] == "dropped"
    assert "igw" in cell["why"]
