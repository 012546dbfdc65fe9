"""The ALB controller's pure parts: which Ingresses are ours and how they group, the rule
order the ALB evaluates (Exact, longest Prefix, ImplementationSpecific; group order),
listeners, target groups (instance and ip targets), annotations, names, and the JSON the
ELB agent reads (it must parse)."""
from __future__ import annotations

import base64
import dataclasses
from pathlib import Path

import pytest

from base.alb_api import (
    FIXED_RESPONSE,
    FORWARD,
    HTTPS,
    INTERNAL,
    INTERNET_FACING,
    LEAST_OUTSTANDING,
    REDIRECT,
    alb_config_to_json,
    parse_alb_config,
)
from base.alb_api import AlbConfig as Config
from controlplane.cloud import alb_annotations as notes
from controlplane.cloud.alb_annotations import AlbProblem
from controlplane.cloud.alb_groups import group_ingresses, is_ours
from controlplane.cloud.alb_model import ClusterView, ModelSettings, build_alb
from controlplane.cloud.alb_naming import dns_name, load_balancer_name

ALB = {"alb": {"metadata": {"name": "alb"}, "spec": {"controller": "ingress.k8s.aws/alb"}},
       "nginx": {"metadata": {"name": "nginx"}, "spec": {"controller": "k8s.io/ingress-nginx"}}}
EXCLUDE = "node.kubernetes.io/exclude-from-external-load-balancers"


def node(name: str, ip: str, *labels: str) -> dict:
    return {"metadata": {"name": name, "labels": dict.fromkeys(labels, "")},
            "status": {"addresses": [{"type": "InternalIP", "address": ip}]}}


NODES = (node("ip-172-31-0-10", "172.31.0.10", EXCLUDE), node("ip-172-31-0-11", "172.31.0.11"),
         node("ip-172-31-0-12", "172.31.0.12"))


def service(name: str, *ports: dict, kind: str = "NodePort", annotations=None) -> dict:
    return {"metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}",
                         "annotations": annotations or {}},
            "spec": {"type": kind, "ports": list(ports)}}


def port(number: int, node_port: int | None = None, name: str = "", target=8080) -> dict:
    out = {"port": number, "targetPort": target, "protocol": "TCP"}
    if name:
        out["name"] = name
    if node_port:
        out["nodePort"] = node_port
    return out


def backend(svc: str, number: int | str = 80) -> dict:
    key = "number" if isinstance(number, int) else "name"
    return {"service": {"name": svc, "port": {key: number}}}


def path(value: str, kind: str, svc: str = "web") -> dict:
    return {"path": value, "pathType": kind, "backend": backend(svc)}


def ingress(name: str, rules=(), annotations=None, namespace="default", **spec) -> dict:
    return {"metadata": {"name": name, "namespace": namespace,
                         "annotations": {"kubernetes.io/ingress.class": "alb",
                                         **(annotations or {})}},
            "spec": {"rules": list(rules), **spec}}


SERVICES = {"default/web": service("web", port(80, 30080, "http")),
            "default/api": service("api", port(80, 30081, "http")),
            "default/db": service("db", port(80), kind="ClusterIP")}
VIEW = ClusterView(SERVICES, {}, NODES, {})
SETTINGS = ModelSettings(time_factor=0.1, cert_dir=Path("/tmp/certs"),
                         vpc_cidrs=("172.31.0.0/20",))


def build(*ingresses: dict, view: ClusterView = VIEW):
    groups, problems = group_ingresses(ingresses, ALB)
    assert not problems and len(groups) == 1
    return build_alb(groups[0], view, SETTINGS)


def test_which_ingresses_are_ours():
    named = {"metadata": {"name": "a", "namespace": "d"}, "spec": {"ingressClassName": "alb"}}
    assert is_ours(named, ALB)
    assert not is_ours({**named, "spec": {"ingressClassName": "nginx"}}, ALB)
    assert not is_ours({**named, "spec": {"ingressClassName": "missing"}}, ALB)
    assert not is_ours({**named, "spec": {}}, ALB)
    # The annotation wins over the field, either way.
    assert not is_ours({"metadata": {**named["metadata"], "annotations": {
        "kubernetes.io/ingress.class": "nginx"}}, "spec": named["spec"]}, ALB)
    assert is_ours(ingress("b"), ALB)
    deleting = ingress("c")
    deleting["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert not is_ours(deleting, ALB)


def test_rules_are_ordered_exact_then_longest_prefix_then_as_listed():
    ing = ingress("shop", [{"host": "shop.example.com", "http": {"paths": [
        path("/", "Prefix"), path("/static/*", "ImplementationSpecific"),
        path("/api", "Prefix", "api"), path("/api/v2/", "Prefix", "api"),
        path("/healthz", "Exact"), path("/a*", "ImplementationSpecific")]}},
        {"http": {"paths": [path("/", "Prefix")]}}])
    (listener,) = build(ing).alb.listeners
    assert (listener.port, listener.protocol) == (80, "HTTP")
    assert [(r.priority, r.hosts, r.paths, r.source) for r in listener.rules] == [
        (1, ("shop.example.com",), ("/healthz",), "default/shop rules[0].paths[4]"),
        (2, ("shop.example.com",), ("/api/v2", "/api/v2/*"), "default/shop rules[0].paths[3]"),
        (3, ("shop.example.com",), ("/api", "/api/*"), "default/shop rules[0].paths[2]"),
        (4, ("shop.example.com",), ("/*",), "default/shop rules[0].paths[0]"),
        (5, ("shop.example.com",), ("/static/*",), "default/shop rules[0].paths[1]"),
        (6, ("shop.example.com",), ("/a*",), "default/shop rules[0].paths[5]"),
        (7, (), ("/*",), "default/shop rules[1].paths[0]")]
    assert listener.default_action.type == FIXED_RESPONSE
    assert listener.default_action.status_code == 404


def test_a_group_merges_ingresses_in_group_order_then_name():
    group = {notes.GROUP_NAME: "team-a"}
    late = ingress("aaa", [{"host": "a.example.com", "http": {"paths": [path("/", "Prefix")]}}],
                   {**group, notes.GROUP_ORDER: "10"})
    first = ingress("zzz", [{"host": "z.example.com", "http": {"paths": [path("/", "Prefix")]}}],
                    group)
    second = ingress("mmm", [{"host": "m.example.com", "http": {
        "paths": [path("/", "Prefix", "api")]}}], group)
    built = build(late, first, second)
    assert [r.hosts for r in built.alb.listeners[0].rules] == [
        ("m.example.com",), ("z.example.com",), ("a.example.com",)]
    assert built.alb.owner == "group team-a"
    assert built.alb.name.startswith("k8s-teama-") and len(built.alb.name) == len("k8s-teama-") + 10
    assert len(built.alb.target_groups) == 3       # one per (Ingress, Service, port)
    assert sorted(built.target_group_owners.values()) == [
        "default/aaa", "default/mmm", "default/zzz"]


def test_default_backend_and_conflicts():
    alone = build(ingress("web", defaultBackend=backend("web", "http")))
    listener = alone.alb.listeners[0]
    assert listener.rules == () and listener.default_action.type == FORWARD
    (tg,) = alone.alb.target_groups
    assert listener.default_action.target_group == tg.name
    group = {notes.GROUP_NAME: "g"}
    with pytest.raises(AlbProblem, match=r"multiple ingress defined default backend: "
                                         r"\[default/a default/b\]"):
        build(ingress("a", annotations=group, defaultBackend=backend("web")),
              ingress("b", annotations=group, defaultBackend=backend("api")))
    with pytest.raises(AlbProblem, match=r"conflicting scheme: \[internal internet-facing\]"):
        build(ingress("a", annotations={**group, notes.SCHEME: INTERNET_FACING},
                      defaultBackend=backend("web")),
              ingress("b", annotations={**group, notes.SCHEME: INTERNAL}))


@pytest.mark.parametrize("spec, message", [
    ({"defaultBackend": backend("nope")}, 'ingress: default/x: services "nope" not found'),
    ({"defaultBackend": backend("web", "grpc")}, "unable to find port grpc on service default/web"),
    ({"defaultBackend": backend("web", 81)}, "unable to find port 81 on service default/web"),
    ({"defaultBackend": backend("db")}, "service default/db: port 80 has no NodePort (type "
                                        "ClusterIP): target-type instance needs"),
    ({"defaultBackend": {"resource": {"kind": "Bucket", "name": "b"}}},
     "does not support the resource field of backend"),
    ({"rules": [{"http": {"paths": [path("/a*", "Prefix")]}}]},
     "prefix path shouldn't contain wildcards: /a*"),
    ({"tls": [{"hosts": ["x.example.com"], "secretName": "x-tls"}],
      "defaultBackend": backend("web")}, 'ingress: default/x: secrets "x-tls" not found'),
])
def test_what_cannot_be_built_says_why(spec, message):
    with pytest.raises(AlbProblem) as caught:
        build(ingress("x", **spec))
    assert message in caught.value.message


def test_instance_targets_are_the_nodes_at_the_node_port():
    (tg,) = build(ingress("web", defaultBackend=backend("web"))).alb.target_groups
    assert tg.target_type == "instance"
    assert [(t.address, t.port, t.name) for t in tg.targets] == [
        ("172.31.0.11", 30080, "ip-172-31-0-11"), ("172.31.0.12", 30080, "ip-172-31-0-12")]
    assert tg.source == "default/web:80"
    # AWS's defaults (15 s, 5 s, 2/2, "200") times the lab's time factor 0.1.
    check = tg.health_check
    assert (check.path, check.port, check.interval, check.timeout, check.healthy_threshold,
            check.unhealthy_threshold, check.matcher) == ("/", None, 1.5, 0.5, 2, 2, "200")


def endpoint_slice(svc: str, *endpoints: tuple, port_name: str = "http") -> dict:
    return {"metadata": {"name": f"{svc}-x", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": svc}},
            "ports": [{"name": port_name, "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": [ip], "conditions": {"ready": ready},
                           "targetRef": {"kind": "Pod", "name": pod, "namespace": "default"}}
                          for ip, pod, ready in endpoints]}


def test_ip_targets_are_ready_pods_and_unroutable_ones_warn():
    view = ClusterView(SERVICES, {"default/web": (endpoint_slice(
        "web", ("192.168.1.5", "web-a", True), ("192.168.2.7", "web-b", True),
        ("192.168.2.9", "web-c", False)),)}, NODES, {})
    ing = ingress("web", annotations={notes.TARGET_TYPE: "ip", notes.CHECK_PATH: "/healthz",
                                      notes.TG_ATTRIBUTES:
                                      "load_balancing.algorithm.type=least_outstanding_requests"},
                  defaultBackend=backend("web"))
    built = build(ing, view=view)
    (tg,) = built.alb.target_groups
    assert [(t.address, t.port, t.name) for t in tg.targets] == [
        ("192.168.1.5", 8080, "default/web-a"), ("192.168.2.7", 8080, "default/web-b")]
    assert tg.algorithm == LEAST_OUTSTANDING and tg.health_check.path == "/healthz"
    (warning,) = built.warnings
    assert "pod IPs 192.168.1.5, 192.168.2.7 of service default/web are outside the VPC " \
           "(172.31.0.0/20)" in warning


def test_service_annotations_win_over_the_ingress():
    services = {**SERVICES, "default/web": service("web", port(80, 30080, "http"), annotations={
        notes.CHECK_PATH: "/from-service", notes.CHECK_INTERVAL: "30"})}
    ing = ingress("web", annotations={notes.CHECK_PATH: "/from-ingress",
                                      notes.UNHEALTHY: "3"}, defaultBackend=backend("web"))
    (tg,) = build(ing, view=ClusterView(services, {}, NODES, {})).alb.target_groups
    check = tg.health_check
    assert (check.path, check.interval, check.unhealthy_threshold) == ("/from-service", 3.0, 3)


@pytest.mark.parametrize("annotations, message, deploy", [
    ({notes.SCHEME: "public"}, "unknown scheme: public", False),
    ({notes.TARGET_TYPE: "pod"}, "unknown targetType: pod", False),
    ({notes.LISTEN_PORTS: "80"}, "failed to parse listen-ports configuration: `80`", False),
    ({notes.LISTEN_PORTS: '[{"TCP": 80}]'}, "listen protocol must be within [HTTP, HTTPS]: TCP",
     False),
    ({notes.LISTEN_PORTS: '[{"HTTP": 0}]'}, "listen port must be within [1, 65535]: 0", False),
    ({notes.CHECK_INTERVAL: "often"}, 'strconv.ParseInt: parsing "often": invalid syntax', False),
    ({notes.CHECK_INTERVAL: "4"}, "health check interval must be 5-300, got 4", True),
    ({notes.CHECK_TIMEOUT: "20"}, "Health check interval must be greater than the timeout", True),
    ({notes.SUCCESS_CODES: "200-599"}, "success codes must be HTTP codes 200-499", True),
    ({notes.GROUP_ORDER: "1001"}, "explicit Ingress group order must be within [-1000:1000]",
     False),
    ({notes.SSL_REDIRECT: "443"}, "listener 443 is not an HTTPS listener", False),
    ({notes.CERTIFICATE_ARN: "arn:aws:acm:us-east-1:1:certificate/x"}, "the lab has no ACM",
     False),
])
def test_annotations_the_controller_refuses(annotations, message, deploy):
    with pytest.raises(AlbProblem) as caught:
        build(ingress("x", annotations=annotations, defaultBackend=backend("web")))
    assert message in caught.value.message and caught.value.deploy is deploy


def test_invalid_group_name_is_reported_per_ingress():
    bad = ingress("x", annotations={notes.GROUP_NAME: "Team_A"})
    groups, problems = group_ingresses([bad, ingress("y")], ALB)
    assert [g.id for g in groups] == ["default/y"]
    assert "invalid ingress group" in problems[0][1].message


def tls_secret(name: str) -> dict:
    pem = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    return {"metadata": {"name": name, "namespace": "default"},
            "type": "kubernetes.io/tls",
            "data": {"tls.crt": base64.b64encode(pem).decode(),
                     "tls.key": base64.b64encode(b"key").decode()}}


def test_tls_secret_makes_an_https_listener_and_ssl_redirect():
    view = ClusterView(SERVICES, {}, NODES, {"default/shop-tls": tls_secret("shop-tls")})
    tls = [{"hosts": ["shop.example.com"], "secretName": "shop-tls"}]
    rules = [{"host": "shop.example.com", "http": {"paths": [path("/", "Prefix")]}}]
    built = build(ingress("shop", rules, tls=tls), view=view)
    (listener,) = built.alb.listeners
    assert (listener.port, listener.protocol) == (443, HTTPS) and len(listener.rules) == 1
    (cert,) = built.certificates
    assert listener.certificates == (cert.certificate,)
    assert cert.certificate.cert_file.startswith("/tmp/certs/default_shop-tls_")
    assert cert.key_pem == b"key"
    both = build(ingress("shop", rules, {notes.LISTEN_PORTS: '[{"HTTP": 80}, {"HTTPS": 443}]',
                                         notes.SSL_REDIRECT: "443"}, tls=tls), view=view)
    http, https = both.alb.listeners
    assert http.rules == () and http.default_action.type == REDIRECT
    assert (http.default_action.port, http.default_action.status_code) == (443, 301)
    assert len(https.rules) == 1


def test_names_as_aws_forms_them():
    name = load_balancer_name("svclab", "default/shop-frontend", False, INTERNET_FACING)
    assert name.startswith("k8s-default-shopfron-") and len(name) == 31
    assert load_balancer_name("svclab", "default/shop-frontend", False, INTERNAL) != name
    assert load_balancer_name("c", "g", True, INTERNAL, custom="mine") == "mine"
    with pytest.raises(AlbProblem, match="cannot be longer than 32 characters"):
        load_balancer_name("c", "g", True, INTERNAL, custom="x" * 33)
    host = dns_name(name, INTERNET_FACING)
    assert host.startswith(name + "-") and host.endswith(".us-east-1.elb.amazonaws.com")
    assert len(host.split(".")[0]) == len(name) + 11          # "-" and ten digits
    assert dns_name(name, INTERNAL) == "internal-" + host
    assert dns_name(name, INTERNET_FACING) == host            # stable


def test_the_config_written_parses_as_the_agent_reads_it():
    view = ClusterView(SERVICES, {}, NODES, {"default/shop-tls": tls_secret("shop-tls")})
    ing = ingress("shop", [{"host": "*.example.com", "http": {"paths": [
        path("/", "Prefix"), path("/api", "Exact", "api")]}}],
        {notes.LISTEN_PORTS: '[{"HTTP": 80}, {"HTTPS": 443}]'},
        tls=[{"hosts": ["*.example.com"], "secretName": "shop-tls"}])
    alb = build(ing, view=view).alb
    placed = dataclasses.replace(alb, vip="203.0.113.49")
    config = Config((placed,))
    assert parse_alb_config(alb_config_to_json(config)) == config
