"""`svclab lb status`: the rendering of what the ELB agent reports."""
from __future__ import annotations

from agents.elb.health import TargetHealth
from agents.elb.status import lb_status
from base.elb_api import HealthCheck, Listener, LoadBalancer, Target
from labd.lb_status import render_lb_status

CHECK = HealthCheck("HTTP", 32100, "/healthz", interval=1.0, timeout=1.0,
                    healthy_threshold=3, unhealthy_threshold=3)
LB = LoadBalancer("default/web", "uid", "a1-0123456789abcdef.elb.us-east-1.amazonaws.com",
                  "nlb", "203.0.113.11", (Listener(80, "TCP", 31000),),
                  (Target("ip-172-31-0-11", "172.31.0.11"),
                   Target("ip-172-31-0-12", "172.31.0.12")), CHECK, ("203.0.113.0/24",))


def test_render_shows_each_target_state_and_the_detection_time():
    up = TargetHealth("ip-172-31-0-11", "172.31.0.11")
    for i in range(3):
        up = up.observe(True, "ok", 1_700_000_000.0 + i, CHECK)
    down = TargetHealth("ip-172-31-0-12", "172.31.0.12")
    for i in range(3):
        down = down.observe(False, "http-503", 1_700_000_000.0 + i, CHECK)
    row = lb_status(LB, {"172.31.0.11": up, "172.31.0.12": down}, ("172.31.0.11",), {}, {})
    text = render_lb_status([row])
    lines = text.splitlines()
    assert lines[0] == ("default/web  NLB  "
                        "a1-0123456789abcdef.elb.us-east-1.amazonaws.com")
    assert "VIP 203.0.113.11  listeners 80/TCP->31000  sources 203.0.113.0/24" in lines[1]
    assert "HTTP:32100/healthz every 1 s" in lines[2] and "within 3 s" in lines[2]
    assert lines[3].split()[:5] == ["NODE", "ADDRESS", "STATE", "IN-SERVICE", "OK/FAIL"]
    assert lines[4].split()[:5] == ["ip-172-31-0-11", "172.31.0.11", "healthy", "yes", "3/0"]
    assert lines[5].split()[:5] == ["ip-172-31-0-12", "172.31.0.12", "unhealthy", "no", "0/3"]
    assert "http-503" in lines[5] and lines[5].endswith("-> unhealthy")


def test_render_without_load_balancers():
    assert render_lb_status([]) == "No load balancers.\n"
