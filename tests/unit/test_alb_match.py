"""Rule evaluation as an ALB does it (agents/elb/alb/match.py): priority order,
host and path wildcards, the default rule, Kubernetes pathTypes through the
controller's mapping (base.alb_api.path_patterns)."""
from __future__ import annotations

import pytest

from agents.elb.alb.match import host_matches, path_matches, route, split_host
from base.alb_api import FIXED_RESPONSE, FORWARD, Action, Listener, Rule, path_patterns


def forward(group: str) -> Action:
    return Action(FORWARD, group)


LISTENER = Listener(80, "HTTP", Action(FIXED_RESPONSE, status_code=404), rules=(
    # deliberately out of order: priority decides, not position
    Rule(30, ("*.example.com",), (), forward("wildcard")),
    Rule(10, ("shop.example.com",), path_patterns("/api", "Prefix"), forward("api")),
    Rule(20, ("shop.example.com",), path_patterns("/", "Prefix"), forward("shop")),
    Rule(5, ("shop.example.com",), path_patterns("/api/v1", "Exact"), forward("exact")),
    Rule(40, (), ("/img/*.png", "/favicon.ic?"), forward("static")),
))


@pytest.mark.parametrize("host, path, group", [
    ("shop.example.com", "/api/v1", "exact"),
    ("shop.example.com", "/api/v1/", "api"),         # Exact does not take the slash
    ("shop.example.com", "/api", "api"),
    ("shop.example.com", "/api/", "api"),
    ("shop.example.com", "/api/v2/items", "api"),
    ("shop.example.com", "/apiary", "shop"),         # Prefix is by path element
    ("shop.example.com", "/", "shop"),
    ("SHOP.Example.COM", "/api", "api"),             # host: case-insensitive
    ("shop.example.com", "/API", "shop"),            # path: case-sensitive
    ("blog.example.com", "/api", "wildcard"),
    ("a.b.example.com", "/", "wildcard"),            # * spans dots in ALB patterns
    ("example.com", "/img/logo.png", "static"),
    ("example.com", "/favicon.ico", "static"),
    ("example.com", "/favicon.icon", None),
    ("example.com", "/img/logo.gif", None),
])
def test_the_first_matching_rule_by_priority_wins(host, path, group):
    match = route(LISTENER, host, path)
    if group is None:
        assert match.rule is None and match.priority == 0
        assert match.action.status_code == 404
    else:
        assert match.action.target_group == group


def test_a_rule_without_conditions_matches_everything():
    listener = Listener(80, "HTTP", rules=(Rule(1, (), (), forward("all")),))
    assert route(listener, "", "/anything").action.target_group == "all"


def test_conditions_are_anded_and_values_ored():
    rule = Rule(1, ("a.example", "b.example"), ("/x", "/y"), forward("g"))
    listener = Listener(80, "HTTP", rules=(rule,))
    assert route(listener, "b.example", "/y").rule == rule
    assert route(listener, "c.example", "/y").rule is None
    assert route(listener, "a.example", "/z").rule is None


@pytest.mark.parametrize("pattern, value, expected", [
    ("*.example.com", "www.example.com", True),
    ("*.example.com", "example.com", False),
    ("www.example.???", "www.example.com", True),
    ("www.example.???", "www.example.co", False),
    ("a.b", "axb", False),                            # dots are literal
])
def test_host_patterns(pattern, value, expected):
    assert host_matches(pattern, value) is expected


@pytest.mark.parametrize("pattern, value, expected", [
    ("/*", "/", True),
    ("/api/*", "/api", False),
    ("/a+b", "/a+b", True),                           # regex characters are literal
    ("/a+b", "/aab", False),
    ("/x", "/x\n", False),
])
def test_path_patterns(pattern, value, expected):
    assert path_matches(pattern, value) is expected


@pytest.mark.parametrize("header, host", [
    ("Shop.Example.com:8080", "shop.example.com"), ("example.com", "example.com"),
    ("[::1]:80", "[::1]"), (None, ""), ("", "")])
def test_the_host_is_matched_without_its_port(header, host):
    assert split_host(header) == host
