"""The L7 hop of `svclab trace` through an ALB: which listener and rule take the
request, what they do, and how the hop reads (pure, on a config as the ALB
controller writes it for two services behind one Ingress)."""
from __future__ import annotations

from base.alb_api import (
    FORWARD,
    Action,
    Alb,
    AlbConfig,
    Listener,
    Rule,
    Target,
    TargetGroup,
)
from probes.trace.l7 import AlbTarget, alb_hop, target_health
from probes.trace.report import Trace
from probes.trace.send import request_bytes

VIP = "203.0.113.49"
WEB = TargetGroup("k8s-default-web-aaaaaaaaaa", source="default/web:80", targets=(
    Target("172.31.0.11", 30885, "ip-172-31-0-11"), Target("172.31.0.12", 30885, "ip-172-31-0-12")))
API = TargetGroup("k8s-default-api-bbbbbbbbbb", source="default/api:80", targets=(
    Target("172.31.0.11", 31001, "ip-172-31-0-11"), Target("172.31.0.12", 31001, "ip-172-31-0-12")))
RULES = (
    Rule(1, ("shop.example.com",), ("/api", "/api/*"), Action(FORWARD, target_group=API.name),
         "default/shop rules[0].paths[0]"),
    Rule(2, ("shop.example.com",), ("/*",), Action(FORWARD, target_group=WEB.name),
         "default/shop rules[0].paths[1]"),
)
CONFIG = AlbConfig((Alb("k8s-default-shop-0123456789", "k8s-default-shop.elb.amazonaws.com",
                        "internet-facing", VIP, (Listener(80, "HTTP", rules=RULES),),
                        (WEB, API)),))
HEALTH = {(API.name, "172.31.0.11:31001"): ("healthy", True),
          (API.name, "172.31.0.12:31001"): ("unhealthy", False)}


def test_host_and_longest_path_rule_forwards_to_its_target_group():
    hop = alb_hop(CONFIG, VIP, 80, "Shop.Example.com:80", "/api/items?svclab-trace=x", HEALTH)
    assert (hop.host, hop.path, hop.priority, hop.action) == (
        "shop.example.com", "/api/items", 1, FORWARD)
    assert hop.target_group == API.name and hop.group_source == "default/api:80"
    assert hop.targets == (AlbTarget("ip-172-31-0-11", "172.31.0.11:31001", "healthy", True),
                           AlbTarget("ip-172-31-0-12", "172.31.0.12:31001", "unhealthy", False))
    assert alb_hop(CONFIG, VIP, 80, "shop.example.com", "/cart").target_group == WEB.name


def test_no_rule_matching_is_the_default_rules_404_and_other_ports_have_no_listener():
    hop = alb_hop(CONFIG, VIP, 80, "k8s-default-shop.elb.amazonaws.com", "/api")
    assert (hop.priority, hop.action, hop.answer) == (
        None, "fixed-response", "fixed response 404 (text/plain)")
    assert "no rule matched: the default rule" in hop.lines()[2]
    assert "the ALB answers itself: fixed response 404" in "\n".join(hop.lines())
    assert alb_hop(CONFIG, VIP, 443, "shop.example.com", "/").action == "no-listener"
    assert alb_hop(CONFIG, "203.0.113.48", 80, "shop.example.com", "/") is None


def test_the_hop_reads_rule_group_targets_and_the_chosen_one():
    hop = alb_hop(CONFIG, VIP, 80, "shop.example.com", "/api", HEALTH).with_chosen(
        "172.31.0.11:31001")
    assert hop.lines() == [
        "L7: ALB k8s-default-shop-0123456789 (internet-facing, k8s-default-shop.elb.amazonaws.com)",
        f"  listener {VIP}:80/HTTP, request Host shop.example.com path /api",
        "  rule priority 1 (host shop.example.com, path /api or /api/*) from "
        "default/shop rules[0].paths[0]",
        f"  -> target group {API.name} (default/api:80, instance, round_robin):",
        "     ip-172-31-0-11 172.31.0.11:31001 (healthy, in service)  <- chosen (capture)",
        "     ip-172-31-0-12 172.31.0.12:31001 (unhealthy, not in service)"]
    assert hop.summary().startswith(f"ALB k8s-default-shop-0123456789 listener {VIP}:80/HTTP: "
                                    "rule priority 1")
    # The trace prints the hop before the packets, and says what the pod was told.
    trace = Trace(lab="l", source="client", target="http://shop/api", proto="tcp",
                  dst=f"{VIP}:80", local="203.0.113.100:40000", outcome="open",
                  answer={"pod": "api-1", "podIP": "192.168.2.4", "client": "172.31.0.12:1",
                          "forwardedFor": "203.0.113.100"}, legs=(), l7=hop,
                  host_header="shop.example.com")
    lines = trace.describe().splitlines()
    assert lines[0].endswith("X-Forwarded-For 203.0.113.100")
    assert "Host shop.example.com" in lines[0] and lines[1].startswith("L7: ALB")
    assert trace.to_json()["l7"]["chosen"] == "172.31.0.11:31001"


def test_target_health_from_the_elb_agents_status():
    status = {"applicationLoadBalancers": [{"targetGroups": [{"name": API.name, "targets": [
        {"endpoint": "172.31.0.11:31001", "state": "healthy", "inService": True}]}]}],
        "loadBalancers": []}
    assert target_health(status) == {(API.name, "172.31.0.11:31001"): ("healthy", True)}
    assert target_health({}) == {}


def test_the_traced_request_carries_its_token_path_and_host():
    assert request_bytes("203.0.113.49", "svclab-trace-1") == (
        b"GET /?svclab-trace=svclab-trace-1 HTTP/1.0\r\nHost: 203.0.113.49\r\n\r\n")
    assert request_bytes("203.0.113.49", "t", "/api?x=1", "shop.example.com") == (
        b"GET /api?x=1&svclab-trace=t HTTP/1.0\r\nHost: shop.example.com\r\n\r\n")


def test_an_answer_from_the_alb_itself_shows_its_status_line():
    trace = Trace(lab="l", source="client", target="http://x/", proto="tcp", dst=f"{VIP}:80",
                  local="203.0.113.100:40000", outcome="open", legs=(),
                  answer={"raw": "HTTP/1.1 404 Not Found\r\nServer: awselb/2.0\r\n\r\n<html>"})
    assert trace.describe().splitlines()[0].endswith(
        "open, answered HTTP/1.1 404 Not Found by awselb/2.0")


def test_a_target_group_failing_open_and_no_chosen_target_are_said():
    sick = {(API.name, t.endpoint): ("unhealthy", True) for t in API.targets}
    lines = alb_hop(CONFIG, VIP, 80, "shop.example.com", "/api", sick).lines()
    assert lines[-1].startswith("  every target is unhealthy: the ALB fails open")
    lines = alb_hop(CONFIG, VIP, 80, "shop.example.com", "/api", HEALTH).lines()
    assert lines[-1] == ("  the capture shows no connection of the ALB to a target carrying "
                         "this request")
