"""The ALB contract (base/alb_api.py): the JSON file round-trips, bad fields are
named, and Kubernetes paths become the ALB path patterns the AWS Load
Balancer Controller makes."""
from __future__ import annotations

import copy
import json

import pytest

from base.alb_api import (
    FIXED_RESPONSE,
    FORWARD,
    REDIRECT,
    Action,
    Alb,
    AlbConfig,
    AlbConfigError,
    Certificate,
    HealthCheck,
    Listener,
    Rule,
    Target,
    TargetGroup,
    alb_config_to_json,
    matcher_ranges,
    parse_alb_config,
    path_patterns,
    read_alb_config,
    write_alb_config,
)
from base.elb_api import ZoneNode


def sample() -> AlbConfig:
    web = TargetGroup("k8s-default-web-80", targets=(
        Target("192.168.1.5", 8080, "default/web-1", "us-east-1a"),
        Target("192.168.2.7", 8080, "default/web-2", "us-east-1b")),
        target_type="ip", health_check=HealthCheck(path="/healthz", interval=1.5,
                                                   timeout=0.5, matcher="200-299"),
        algorithm="least_outstanding_requests", source="default/web:80")
    api = TargetGroup("k8s-default-api-80", targets=(Target("172.31.0.11", 30080, "node-1"),))
    rules = (Rule(1, ("shop.example.com",), ("/api", "/api/*"),
                  Action(FORWARD, "k8s-default-api-80"), "default/shop rules[0].paths[0]"),
             Rule(2, ("*.example.com",), (), Action(FORWARD, "k8s-default-web-80")))
    return AlbConfig((Alb(
        name="k8s-default-shop-0123456789", hostname="k8s-default-shop-0123-1.us-east-1.elb"
        ".amazonaws.com", scheme="internet-facing", vip="203.0.113.20",
        zone_nodes=(ZoneNode("us-east-1a", "203.0.113.20", "172.31.0.5"),
                    ZoneNode("us-east-1b", "203.0.113.21", "172.31.16.5")),
        listeners=(Listener(80, "HTTP", Action(REDIRECT, status_code=301, protocol="HTTPS",
                                               port=443)),
                   Listener(443, "HTTPS", Action(FIXED_RESPONSE, status_code=404), rules,
                            (Certificate("/lab/alb/shop.crt", "/lab/alb/shop.key"),))),
        target_groups=(web, api), owner="ingress default/shop"),))


def test_the_file_round_trips(tmp_path):
    path = tmp_path / "alb.json"
    write_alb_config(path, sample())
    assert read_alb_config(path) == sample()
    assert read_alb_config(tmp_path / "absent.json") == AlbConfig()


def test_defaults_fill_what_the_controller_leaves_out():
    data = {"version": 1, "loadBalancers": [{
        "name": "a", "hostname": "a.example", "vip": "203.0.113.9",
        "listeners": [{"port": 80, "rules": [{"priority": 5, "paths": ["/x"],
                                              "action": {"type": "forward",
                                                         "targetGroup": "tg"}}]}],
        "targetGroups": [{"name": "tg", "targets": [{"address": "10.0.0.1", "port": 80}]}]}]}
    alb = parse_alb_config(data).load_balancers[0]
    assert alb.scheme == "internet-facing" and alb.idle_timeout == 60
    assert alb.listeners[0].default_action == Action(FIXED_RESPONSE, status_code=404)
    check = alb.target_groups[0].health_check
    assert (check.interval, check.timeout, check.healthy_threshold,
            check.unhealthy_threshold, check.matcher, check.port) == (15, 5, 2, 2, "200", None)
    assert alb.target_groups[0].algorithm == "round_robin"
    assert alb.nodes == (ZoneNode(None, "203.0.113.9", None),)


def _broken(change) -> dict:
    data = copy.deepcopy(alb_config_to_json(sample()))
    change(data["loadBalancers"][0])
    return data


BAD = {
    "scheme": (lambda a: a.update(scheme="public"), "loadBalancers[0].scheme"),
    "vip": (lambda a: a.update(vip="203.0.113.300"), "loadBalancers[0].vip"),
    "first zone vip": (lambda a: a.update(vip="203.0.113.21"), "loadBalancers[0].vip"),
    "protocol": (lambda a: a["listeners"][0].update(protocol="TCP"),
                 "loadBalancers[0].listeners[0].protocol"),
    "https without cert": (lambda a: a["listeners"][1].update(certificates=[]),
                           "loadBalancers[0].listeners[1].certificates"),
    "duplicate port": (lambda a: a["listeners"][1].update(port=80), "loadBalancers[0].listeners"),
    "priority": (lambda a: a["listeners"][1]["rules"][0].update(priority=0),
                 "loadBalancers[0].listeners[1].rules[0].priority"),
    "duplicate priority": (lambda a: a["listeners"][1]["rules"][1].update(priority=1),
                           "loadBalancers[0].listeners[1].rules"),
    "host": (lambda a: a["listeners"][1]["rules"][0].update(hosts=["shop example.com"]),
             "loadBalancers[0].listeners[1].rules[0].hosts[0]"),
    "path": (lambda a: a["listeners"][1]["rules"][0].update(paths=["api"]),
             "loadBalancers[0].listeners[1].rules[0].paths[0]"),
    "unknown group": (lambda a: a["listeners"][1]["rules"][0]["action"].update(
        targetGroup="nope"), "loadBalancers[0].listeners[1].rules[0].action.targetGroup"),
    "action": (lambda a: a["listeners"][1]["rules"][0]["action"].update(type="drop"),
               "loadBalancers[0].listeners[1].rules[0].action.type"),
    "redirect code": (lambda a: a["listeners"][0]["defaultAction"].update(statusCode=307),
                      "loadBalancers[0].listeners[0].defaultAction.statusCode"),
    "algorithm": (lambda a: a["targetGroups"][0].update(algorithm="random"),
                  "loadBalancers[0].targetGroups[0].algorithm"),
    "matcher": (lambda a: a["targetGroups"][0]["healthCheck"].update(matcher="2xx"),
                "loadBalancers[0].targetGroups[0].healthCheck.matcher"),
    "matcher range": (lambda a: a["targetGroups"][0]["healthCheck"].update(matcher="500"),
                      "loadBalancers[0].targetGroups[0].healthCheck.matcher"),
    "interval": (lambda a: a["targetGroups"][0]["healthCheck"].update(interval=0),
                 "loadBalancers[0].targetGroups[0].healthCheck.interval"),
    "threshold": (lambda a: a["targetGroups"][0]["healthCheck"].update(healthyThreshold=11),
                  "loadBalancers[0].targetGroups[0].healthCheck.healthyThreshold"),
    "target port": (lambda a: a["targetGroups"][0]["targets"][0].update(port=0),
                    "loadBalancers[0].targetGroups[0].targets[0].port"),
    "duplicate target": (lambda a: a["targetGroups"][0]["targets"].append(
        dict(a["targetGroups"][0]["targets"][0])), "loadBalancers[0].targetGroups[0].targets"),
    "duplicate group": (lambda a: a["targetGroups"].append(dict(a["targetGroups"][0])),
                        "loadBalancers[0].targetGroups"),
    "source range": (lambda a: a.update(sourceRanges=["10.0.0.0/33"]),
                     "loadBalancers[0].sourceRanges[0]"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_a_bad_field_is_named(name):
    change, field = BAD[name]
    with pytest.raises(AlbConfigError) as caught:
        parse_alb_config(_broken(change))
    assert caught.value.field == field
    assert str(caught.value).startswith(f"alb config: {field}: ")


def test_two_albs_cannot_share_an_address_or_a_name():
    data = alb_config_to_json(sample())
    second = copy.deepcopy(data["loadBalancers"][0])
    second["name"], second["hostname"] = "other", "other.example"
    data["loadBalancers"].append(second)
    with pytest.raises(AlbConfigError, match="duplicate vip"):
        parse_alb_config(data)


def test_a_file_that_is_not_json_is_reported(tmp_path):
    path = tmp_path / "alb.json"
    path.write_text("{")
    with pytest.raises(AlbConfigError, match="not valid JSON"):
        read_alb_config(path)
    path.write_text(json.dumps({"version": 2}))
    with pytest.raises(AlbConfigError, match="version"):
        read_alb_config(path)


@pytest.mark.parametrize("path, path_type, patterns", [
    ("/", "Prefix", ("/*",)),
    ("/api", "Prefix", ("/api", "/api/*")),
    ("/api/", "Prefix", ("/api", "/api/*")),
    ("/api", "Exact", ("/api",)),
    ("/api/", "Exact", ("/api/",)),
    ("/img/*.png", "ImplementationSpecific", ("/img/*.png",)),
])
def test_kubernetes_paths_become_alb_patterns(path, path_type, patterns):
    assert path_patterns(path, path_type) == patterns


@pytest.mark.parametrize("path, path_type", [("/a*", "Prefix"), ("/a?", "Exact"),
                                             ("/a", "Regex")])
def test_what_the_controller_refuses(path, path_type):
    with pytest.raises(AlbConfigError):
        path_patterns(path, path_type)


def test_matcher_codes():
    assert matcher_ranges("200,202-299") == ((200, 200), (202, 299))
    check = HealthCheck(matcher="200,301-302")
    assert [check.accepts(c) for c in (200, 201, 301, 302, 404)] == \
        [True, False, True, True, False]
