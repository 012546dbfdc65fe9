"""What the kubelet gives a pod's sandbox and containers: hostname, service links, env."""
from __future__ import annotations

import pytest

from base.cri import HostAlias
from controlplane.kubelet.env import container_env, expand, expand_command
from controlplane.kubelet.sandbox import (
    ContainerConfigError,
    console_config,
    sandbox_config,
    service_env,
)


def pod(name: str = "web-1", namespace: str = "shop", **spec) -> dict:
    return {"metadata": {"name": name, "namespace": namespace, "uid": "u-1",
                         "labels": {"app": "web"}, "annotations": {"team": "net"}},
            "spec": {"nodeName": "ip-172-31-0-11", "serviceAccountName": "default",
                     "containers": [{"name": "c"}], **spec}}


def service(name: str, namespace: str, ip: str, *ports: dict) -> dict:
    return {"metadata": {"name": name, "namespace": namespace},
            "spec": {"clusterIP": ip, "ports": list(ports)}}


KUBERNETES = service("kubernetes", "default", "10.96.0.1",
                     {"name": "https", "port": 443, "protocol": "TCP"})
SERVICES = [
    KUBERNETES,
    service("web-db", "shop", "10.101.0.7", {"port": 5432}),
    service("dns", "shop", "10.101.0.9", {"name": "dns", "port": 53, "protocol": "UDP"},
            {"name": "dns-tcp", "port": 53, "protocol": "TCP"}),
    service("headless", "shop", "None", {"port": 80}),
    service("elsewhere", "other", "10.101.0.3", {"port": 80}),
]


def test_hostname_is_the_pod_name_or_spec_hostname_with_the_subdomain_domain():
    assert sandbox_config(pod()).hostname == "web-1"
    assert sandbox_config(pod()).domain == "" and sandbox_config(pod()).uid == "u-1"
    config = sandbox_config(pod(hostname="db-0", subdomain="db"))
    assert (config.hostname, config.domain) == ("db-0", "db.shop.svc.cluster.local")
    assert config.uts_hostname == "db-0"
    fqdn = sandbox_config(pod(hostname="db-0", subdomain="db", setHostnameAsFQDN=True))
    assert fqdn.uts_hostname == "db-0.db.shop.svc.cluster.local"
    assert sandbox_config(pod(hostAliases=[{"ip": "10.1.2.3", "hostnames": ["a", "b"]}])
                          ).host_aliases == (HostAlias("10.1.2.3", ("a", "b")),)


def test_a_long_pod_name_is_cut_to_63_characters_without_a_trailing_dash():
    name = "x" * 62 + "-abcdef"
    assert sandbox_config(pod(name)).hostname == "x" * 62


def test_invalid_hostnames_and_too_long_fqdns_are_refused():
    with pytest.raises(ContainerConfigError, match="pod Hostname 'Bad_Name' is not a valid DNS"):
        sandbox_config(pod(hostname="Bad_Name"))
    with pytest.raises(ContainerConfigError, match=r"FQDN .* is too long \(64 characters is "
                                                   r"the max, 71 characters requested\)"):
        sandbox_config(pod(hostname="h" * 46, subdomain="s", setHostnameAsFQDN=True))


def test_service_links_follow_upstream_names_and_order():
    env = service_env(SERVICES, "shop", enable_links=True)
    assert list(env.items())[:4] == [
        ("DNS_SERVICE_HOST", "10.101.0.9"), ("DNS_SERVICE_PORT", "53"),
        ("DNS_SERVICE_PORT_DNS", "53"), ("DNS_SERVICE_PORT_DNS_TCP", "53")]
    assert env["DNS_PORT"] == "udp://10.101.0.9:53"
    assert env["DNS_PORT_53_UDP"] == "udp://10.101.0.9:53"
    assert env["DNS_PORT_53_UDP_PROTO"] == "udp" and env["DNS_PORT_53_TCP_PROTO"] == "tcp"
    assert env["DNS_PORT_53_TCP_ADDR"] == "10.101.0.9" and env["DNS_PORT_53_TCP_PORT"] == "53"
    assert env["WEB_DB_SERVICE_HOST"] == "10.101.0.7" and env["WEB_DB_SERVICE_PORT"] == "5432"
    assert env["WEB_DB_PORT_5432_TCP"] == "tcp://10.101.0.7:5432"
    assert {k: v for k, v in env.items() if k.startswith("KUBERNETES")} == {
        "KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443",
        "KUBERNETES_SERVICE_PORT_HTTPS": "443", "KUBERNETES_PORT": "tcp://10.96.0.1:443",
        "KUBERNETES_PORT_443_TCP": "tcp://10.96.0.1:443", "KUBERNETES_PORT_443_TCP_PROTO": "tcp",
        "KUBERNETES_PORT_443_TCP_PORT": "443", "KUBERNETES_PORT_443_TCP_ADDR": "10.96.0.1"}
    assert not any(k.startswith(("HEADLESS", "ELSEWHERE")) for k in env)


def test_without_service_links_only_the_kubernetes_service_is_given():
    env = service_env(SERVICES, "shop", enable_links=False)
    assert {k.split("_")[0] for k in env} == {"KUBERNETES"}
    assert service_env(SERVICES, "default", enable_links=True) == env


def test_expansion_rules():
    known = {"A": "1", "B": "two"}
    assert expand("$(A)-$(B)", known) == "1-two"
    assert expand("$$(A) costs $$5", known) == "$(A) costs $5"
    assert expand("$(MISSING) and $(A", known) == "$(MISSING) and $(A"
    assert expand("cost: $5, end$", known) == "cost: $5, end$"
    assert expand("$(B)", {}, known) == "two"


def test_container_env_in_order_with_field_refs_and_expansion():
    container = {"name": "c", "env": [
        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "HOST", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
        {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
        {"name": "URL", "value": "http://$(IP):$(WEB_DB_SERVICE_PORT)/$(LATER)"},
        {"name": "LATER", "value": "x"},
        {"name": "KUBERNETES_SERVICE_PORT", "value": "8443"},
    ]}
    links = service_env(SERVICES, "shop", True)
    env = container_env(pod(), container, "192.168.1.5", "172.31.0.11", links)
    assert list(env)[:9] == ["POD", "NS", "IP", "NODE", "HOST", "APP", "URL", "LATER",
                             "KUBERNETES_SERVICE_PORT"]
    assert [env[k] for k in ("POD", "NS", "IP", "NODE", "HOST", "APP")] == [
        "web-1", "shop", "192.168.1.5", "ip-172-31-0-11", "172.31.0.11", "web"]
    assert env["URL"] == "http://192.168.1.5:5432/$(LATER)"
    assert env["KUBERNETES_SERVICE_PORT"] == "8443"          # declared wins over the link
    assert env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"
    assert expand_command(["echo", "$(POD)", "$$(POD)"], env) == ["echo", "web-1", "$(POD)"]


def test_missing_config_sources_fail_unless_optional():
    ref = {"name": "settings", "key": "k"}
    with pytest.raises(ContainerConfigError, match='configmap "settings" not found'):
        container_env(pod(), {"env": [{"name": "X", "valueFrom": {"configMapKeyRef": ref}}]},
                      "192.168.1.5", "", {})
    with pytest.raises(ContainerConfigError, match='secret "creds" not found'):
        container_env(pod(), {"envFrom": [{"secretRef": {"name": "creds"}}]}, "", "", {})
    optional = {"env": [{"name": "X", "valueFrom": {"secretKeyRef": {**ref, "optional": True}}}]}
    assert container_env(pod(), optional, "", "", {}) == {}
    with pytest.raises(ContainerConfigError, match="unsupported fieldPath: status.phase"):
        container_env(pod(), {"env": [{"name": "X", "valueFrom": {"fieldRef": {
            "fieldPath": "status.phase"}}}]}, "", "", {})


def test_console_config_from_the_container_spec():
    spec = {"stdin": True, "stdinOnce": True, "tty": True}
    assert console_config(spec) == console_config(dict(spec))
    assert (console_config(spec).stdin, console_config(spec).stdin_once,
            console_config(spec).tty) == (True, True, True)
    assert not console_config({}).stdin and not console_config({}).tty
