"""StatefulSet DNS: `web-0.nginx.<ns>.svc` from the endpoint hostname the controller sets.

The endpoints controller's slices (endpoints.py) are fed to the cluster DNS
zone (agents/dns), as the lab does through the API: pods of a StatefulSet
have spec.hostname and spec.subdomain = the headless Service's name.
"""
from __future__ import annotations

from dnslib import QTYPE, RCODE, DNSRecord

from agents.dns import answer, build_zone
from controlplane.controllers import endpoints as ep
from controlplane.controllers.statefulset import statefulset_pod

SERVICE = {"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": "nginx", "namespace": "default", "uid": "svc-uid"},
           "spec": {"clusterIP": "None", "selector": {"app": "nginx"},
                    "ports": [{"name": "web", "port": 80, "protocol": "TCP"}]}}
STATEFULSET = {"apiVersion": "apps/v1", "kind": "StatefulSet",
               "metadata": {"name": "web", "namespace": "default", "uid": "sts-uid"},
               "spec": {"serviceName": "nginx", "selector": {"matchLabels": {"app": "nginx"}},
                        "template": {"metadata": {"labels": {"app": "nginx"}},
                                     "spec": {"containers": [{"name": "nginx", "image": "nginx",
                                                              "ports": [{"containerPort": 80,
                                                                         "name": "web"}]}]}}}}


def web_pod(ordinal: int, ip: str, ready=True, terminating=False) -> dict:
    pod = statefulset_pod(STATEFULSET, ordinal, ("web-abc", STATEFULSET["spec"]["template"]))
    pod["metadata"]["uid"] = f"uid-{ordinal}-{ip}"
    pod["spec"]["nodeName"] = "ip-172-31-0-11"
    pod["status"] = {"phase": "Running", "podIP": ip, "conditions": [
        {"type": "Ready", "status": "True" if ready else "False"}]}
    if terminating:
        pod["metadata"]["deletionTimestamp"] = "2026-12-05T12:00:00Z"
    return pod


def zone_for(pods: list[dict], service: dict = SERVICE):
    chunks = ep.slice_chunks(ep.desired_slice_groups(service, pods))
    slices = []
    for i, (ports, endpoints) in enumerate(chunks):
        body = ep.slice_body(service, ports, endpoints, ep.SLICE_CONTROLLER)
        body["metadata"]["name"] = f"nginx-{i}"
        slices.append(body)
    return build_zone(services=[service], slices=slices)


def a_records(zone, name: str) -> list[str]:
    reply = answer(zone, DNSRecord.question(name, "A"))
    assert reply.header.rcode == RCODE.NOERROR, f"{name}: {RCODE[reply.header.rcode]}"
    return sorted(str(rr.rdata) for rr in reply.rr if QTYPE[rr.rtype] == "A")


def test_slice_endpoints_carry_the_pod_hostname_under_its_governing_service():
    [(_, endpoints)] = ep.slice_chunks(ep.desired_slice_groups(
        SERVICE, [web_pod(0, "192.168.1.5"), web_pod(1, "192.168.2.7")]))
    assert [e.get("hostname") for e in endpoints] == ["web-0", "web-1"]
    [subset] = ep.compute_subsets(SERVICE, [web_pod(0, "192.168.1.5")])
    assert subset["addresses"][0]["hostname"] == "web-0"


def test_no_hostname_for_another_service_or_a_pod_without_subdomain():
    other = {**SERVICE, "metadata": {**SERVICE["metadata"], "name": "other"}}
    pod = web_pod(0, "192.168.1.5")
    assert "hostname" not in ep.slice_endpoint(other, pod)
    del pod["spec"]["subdomain"]
    assert "hostname" not in ep.slice_endpoint(SERVICE, pod)


def test_each_pod_resolves_by_its_stable_name_and_the_service_lists_all_ready():
    zone = zone_for([web_pod(0, "192.168.1.5"), web_pod(1, "192.168.2.7"),
                     web_pod(2, "192.168.1.9", ready=False)])
    assert a_records(zone, "web-0.nginx.default.svc.cluster.local.") == ["192.168.1.5"]
    assert a_records(zone, "WEB-1.nginx.default.svc.cluster.local.") == ["192.168.2.7"]
    assert a_records(zone, "nginx.default.svc.cluster.local.") == ["192.168.1.5", "192.168.2.7"]
    reply = answer(zone, DNSRecord.question("web-2.nginx.default.svc.cluster.local.", "A"))
    assert reply.header.rcode == RCODE.NXDOMAIN                 # not ready: not published
    reverse = answer(zone, DNSRecord.question("5.1.168.192.in-addr.arpa.", "PTR"))
    assert [str(rr.rdata) for rr in reverse.rr] == ["web-0.nginx.default.svc.cluster.local."]
    srv = answer(zone, DNSRecord.question("_web._tcp.nginx.default.svc.cluster.local.", "SRV"))
    assert sorted(str(rr.rdata).split()[-1] for rr in srv.rr) == [
        "web-0.nginx.default.svc.cluster.local.", "web-1.nginx.default.svc.cluster.local."]


def test_a_recreated_pod_keeps_its_name_and_the_name_follows_its_new_ip():
    before = zone_for([web_pod(0, "192.168.1.5"), web_pod(1, "192.168.2.7")])
    assert a_records(before, "web-0.nginx.default.svc.cluster.local.") == ["192.168.1.5"]
    going = zone_for([web_pod(0, "192.168.1.5", ready=False, terminating=True),
                      web_pod(1, "192.168.2.7")])
    reply = answer(going, DNSRecord.question("web-0.nginx.default.svc.cluster.local.", "A"))
    assert reply.header.rcode == RCODE.NXDOMAIN
    after = zone_for([web_pod(0, "192.168.2.12"), web_pod(1, "192.168.2.7")])
    assert a_records(after, "web-0.nginx.default.svc.cluster.local.") == ["192.168.2.12"]
    assert a_records(after, "nginx.default.svc.cluster.local.") == ["192.168.2.12",
                                                                     "192.168.2.7"]
