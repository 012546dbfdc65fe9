"""What process a container becomes, and how probes count."""
from __future__ import annotations

from controlplane.kubelet.containers import image_id, plan_pod_containers, qualified_image
from controlplane.kubelet.probes import ProbeTracker

PY = "/usr/bin/python3"


def pod(*containers: dict, grace: int = 30) -> dict:
    return {"metadata": {"name": "web-1", "namespace": "default"},
            "spec": {"terminationGracePeriodSeconds": grace, "containers": list(containers)}}


def test_a_command_that_exists_runs_as_given():
    [plan] = plan_pod_containers(pod({"name": "c", "image": "python:3.11",
                                      "command": ["python3", "-m", "http.server", "8000"]}),
                                 "192.168.1.5", PY)
    assert plan.argv == ("python3", "-m", "http.server", "8000") and not plan.builtin
    [plan] = plan_pod_containers(pod({"name": "c", "image": "busybox",
                                      "args": ["sleep", "3600"],
                                      "env": [{"name": "A", "value": "1"}]}), "192.168.1.5", PY)
    assert plan.argv == ("sleep", "3600")     # env is given apart (kubelet/sandbox.py)


def test_other_containers_run_the_workload_server_on_their_ports():
    [plan] = plan_pod_containers(pod({"name": "c", "image": "svclab/workload"}, grace=5),
                                 "192.168.1.5", PY)
    assert plan.builtin and plan.ports == ((80, "TCP"),)
    assert plan.argv == (PY, "-m", "agents.workload", "--pod-name", "web-1", "--pod-ip",
                         "192.168.1.5", "--grace", "5", "--port", "80/TCP")
    [plan] = plan_pod_containers(pod({"name": "c", "image": "myapp:1", "ports": [
        {"containerPort": 8000}, {"containerPort": 53, "protocol": "UDP"},
        {"containerPort": 9, "protocol": "SCTP"}]}), "192.168.1.5", PY)
    assert plan.ports == ((8000, "TCP"), (53, "UDP"))
    [plan] = plan_pod_containers(pod({"name": "c", "image": "registry.example/team/app"}),
                                 "192.168.1.5", PY)
    assert plan.ports == ((80, "TCP"),)          # nothing declared, nothing known: 80


def test_known_images_add_their_ports_and_containers_do_not_clash():
    first, second = plan_pod_containers(pod(
        {"name": "web", "image": "nginx:1.27", "ports": [{"containerPort": 8000}]},
        {"name": "cache", "image": "redis", "ports": [{"containerPort": 8000}]}),
        "192.168.1.5", PY)
    assert first.ports == ((8000, "TCP"), (80, "TCP"))
    assert second.ports == ((6379, "TCP"),)


def test_images_are_reported_fully_qualified():
    assert qualified_image("nginx") == "docker.io/library/nginx:latest"
    assert qualified_image("bitnami/redis:7") == "docker.io/bitnami/redis:7"
    assert qualified_image("registry.k8s.io/pause:3.9") == "registry.k8s.io/pause:3.9"
    assert image_id("nginx").startswith("docker.io/library/nginx@sha256:")


def test_probe_thresholds_and_schedule():
    tracker = ProbeTracker({"initialDelaySeconds": 2, "periodSeconds": 1,
                            "successThreshold": 2, "failureThreshold": 2}, started=100.0)
    assert not tracker.due(101.0) and tracker.due(102.0)
    assert not tracker.record(True, 102.0) and not tracker.result      # 1 of 2 successes
    assert tracker.record(True, 103.0) and tracker.result               # ready
    assert not tracker.record(False, 104.0) and tracker.result          # 1 of 2 failures
    assert tracker.record(False, 105.0) and not tracker.result          # not ready
    assert tracker.next_due == 106.0


def test_a_stand_in_image_gets_the_containers_args_after_its_entrypoint():
    stand_in = ["/usr/bin/python3", "-m", "agents.dns.cluster"]
    coredns = {"name": "coredns", "image": "registry.k8s.io/coredns/coredns:v1.12.0",
               "args": ["-conf", "/etc/coredns/Corefile"]}
    [plan] = plan_pod_containers(pod(coredns), "192.168.0.2", PY, builtins={"coredns": stand_in})
    assert plan.argv == (*stand_in, "-conf", "/etc/coredns/Corefile")
