"""Change tracking, partial renders and stale UDP flows."""

from __future__ import annotations

import pytest

import agents.proxy.iptables_backend as ib
from agents.proxy import (
    IptablesRestoreError,
    ModelError,
    NodeInfo,
    compute_ruleset,
    endpoint_slice_from_k8s,
    names,
    parse_iptables_save,
    render_iptables,
    service_from_k8s,
)
from agents.proxy.changes import ChangeTracker, StaleUDPFlow, stale_udp_flows
from agents.proxy.fixtures import endpoint, service_dict, slice_dict
from agents.proxy.iptables_backend import CommandResult, IptablesBackend
from agents.proxy.iptables_render import render
from agents.proxy.iptables_tracer import Tracer

NODE = NodeInfo("n1", ("172.31.0.11",))


def svc(name="web", **kw):
    return service_from_k8s(service_dict(name, "shop", **kw))


def es(service="web", ips=("192.168.1.10",), name=None, **kw):
    return endpoint_slice_from_k8s(slice_dict(
        service, "shop", name=name,
        endpoints=[endpoint(ip, "n1") for ip in ips], **kw))


def test_no_op_updates_are_dropped():
    t = ChangeTracker()
    assert t.on_service("ADDED", svc(cluster_ip="10.96.0.5"))
    assert t.take() == {("shop", "web")}
    d = service_dict("web", "shop", cluster_ip="10.96.0.5")
    d["metadata"]["resourceVersion"] = "99"          # irrelevant to rules
    d["metadata"]["annotations"] = {"note": "x"}
    assert not t.on_service("MODIFIED", service_from_k8s(d))
    assert t.take() == frozenset()
    assert t.on_service("MODIFIED", svc(cluster_ip="10.96.0.5",
                                        affinity_timeout=30))
    assert t.pending == {("shop", "web")}


def test_slice_events_mark_their_service():
    t = ChangeTracker()
    assert t.on_endpoint_slice("ADDED", es(name="web-a"))
    assert t.on_endpoint_slice("ADDED", es("db", name="db-a"))
    assert t.take() == {("shop", "web"), ("shop", "db")}
    assert not t.on_endpoint_slice("MODIFIED", es(name="web-a"))
    assert t.on_endpoint_slice("DELETED", es(name="web-a"))
    assert not t.on_endpoint_slice("DELETED", es(name="web-a"))
    assert t.take() == {("shop", "web")}
    assert [s.name for s in t.slices] == ["db-a"]
    assert not t.on_service("BOOKMARK", svc())
    with pytest.raises(ModelError):
        t.on_service("ERROR", svc())


def test_partial_render_rewrites_only_changed_services():
    services = [svc("web", cluster_ip="10.96.0.5"),
                svc("db", cluster_ip="10.96.0.6")]
    full_rs = compute_ruleset(services, [es(), es("db", ("192.168.1.20",))],
                              NODE)
    current = parse_iptables_save(render_iptables(full_rs))
    changed_rs = compute_ruleset(
        services, [es(ips=("192.168.1.11",)), es("db", ("192.168.1.20",))],
        NODE)
    partial = render(changed_rs, current, frozenset({("shop", "web")}))
    db_svc = names.cluster_chain("shop/db:http", "tcp")
    assert f":{db_svc} " not in partial.text          # untouched
    assert db_svc in partial.active_chains             # and not stale
    old_sep = names.endpoint_chain("shop/web:http", "tcp", "192.168.1.10:8080")
    assert f"-X {old_sep}" in partial.text.splitlines()
    # KUBE-SERVICES is rewritten whole: db's entry is still there.
    assert '"shop/db:http cluster IP"' in partial.text


def test_backend_partial_sync_skips_save_until_a_failure(monkeypatch):
    calls = []

    def run(argv, text, timeout_s):
        calls.append(argv[0])
        if argv[0] == "iptables-save":
            return CommandResult(0, "", "")
        if "bogus" in text:
            return CommandResult(2, "", "line 2 failed")
        return CommandResult(0, "", "")

    backend = IptablesBackend(run=run)
    rs = compute_ruleset([svc(cluster_ip="10.96.0.5")], [es()], NODE)
    assert not backend.sync(rs, frozenset()).partial      # first: full
    assert calls.count("iptables-save") == 2
    report = backend.sync(rs, frozenset({("shop", "web")}))
    assert report.partial and calls.count("iptables-save") == 2
    assert report.inserted_jumps == 0                      # known present

    def broken_render(*args, **kwargs):
        out = render(*args, **kwargs)
        return type(out)(out.text.replace("*filter\n", "*filter\nbogus\n"),
                         out.active_chains)
    monkeypatch.setattr(ib, "render", broken_render)
    with pytest.raises(IptablesRestoreError):
        backend.sync(rs, frozenset())
    monkeypatch.setattr(ib, "render", render)
    assert not backend.sync(rs, frozenset()).partial      # full again
    assert calls.count("iptables-save") == 4


def udp_service(ips, name="dns"):
    s = service_from_k8s(service_dict(
        name, "kube-system", cluster_ip="10.96.0.10", type="NodePort",
        ports=[{"name": "dns", "port": 53, "protocol": "UDP",
                "nodePort": 30053}]))
    e = endpoint_slice_from_k8s(slice_dict(
        name, "kube-system", ports=[{"name": "dns", "port": 53,
                                     "protocol": "UDP"}],
        endpoints=[endpoint(ip, "n1") for ip in ips]))
    return compute_ruleset([s], [e], NODE)


def test_stale_udp_flows_when_an_endpoint_goes():
    flows = stale_udp_flows(udp_service(["192.168.1.3", "192.168.1.4"]),
                            udp_service(["192.168.1.4"]))
    assert flows == (StaleUDPFlow(None, 30053, "192.168.1.3"),
                     StaleUDPFlow("10.96.0.10", 53, "192.168.1.3"))
    assert flows[1].conntrack_argv() == (
        "conntrack", "-D", "-p", "udp", "--orig-dst", "10.96.0.10",
        "--orig-port-dst", "53", "--dst-nat", "192.168.1.3")


def test_stale_udp_flows_when_a_service_gets_endpoints_again():
    flows = stale_udp_flows(udp_service([]), udp_service(["192.168.1.4"]))
    assert StaleUDPFlow("10.96.0.10", 53, None) in flows
    assert stale_udp_flows(udp_service(["192.168.1.4"]),
                           udp_service(["192.168.1.4"])) == ()


def test_partial_render_applied_on_top_traces_like_full():
    services = [svc("web", cluster_ip="10.96.0.5"),
                svc("db", cluster_ip="10.96.0.6")]
    before = compute_ruleset(services, [es(ips=("192.168.1.10",)),
                                        es("db", ("192.168.1.20",))], NODE)
    after = compute_ruleset(services, [es(ips=("192.168.1.11", "192.168.1.12")),
                                       es("db", ("192.168.1.20",))], NODE)
    applied = render_iptables(before)
    partial = render(after, parse_iptables_save(applied),
                     frozenset({("shop", "web")})).text
    # The tracer applies restore texts in sequence, like --noflush does.
    stacked = Tracer(applied + partial, NODE.node_ips)
    reference = Tracer(render_iptables(after), NODE.node_ips)
    for dst in ("10.96.0.5", "10.96.0.6"):
        assert stacked.trace("192.168.1.5", dst, 80) == \
            reference.trace("192.168.1.5", dst, 80)


def test_objects_of_gives_only_the_asked_services_and_their_slices():
    tracker = ChangeTracker()
    for name in ("a", "b", "c"):
        tracker.on_service("ADDED", service_from_k8s(service_dict(name, "ns")))
        tracker.on_endpoint_slice("ADDED", endpoint_slice_from_k8s(slice_dict(
            name, "ns", endpoints=[endpoint("192.168.0.1", "n1")])))
    services, slices = tracker.objects_of(frozenset({("ns", "b"),
                                                     ("ns", "gone")}))
    assert [s.name for s in services] == ["b"]
    assert [s.service_name for s in slices] == ["b"]
