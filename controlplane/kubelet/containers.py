"""From a container spec to the process that runs it: pure decisions.

A container whose `command`/`args` name a program that exists on this
machine runs that program, as given, inside the pod (its environment is
the kubelet's business at start: controlplane/kubelet/sandbox.py).  Any other container
runs svclab's built-in workload server listening on every declared
containerPort (TCP and UDP), plus the ports its image is known to serve
(nginx -> 80, ...); port 80 when nothing is declared or known.  Images get
the fully qualified names and digests a container runtime reports.
"""
from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

DEFAULT_PORT = (80, "TCP")
KNOWN_IMAGE_PORTS: dict[str, tuple[tuple[int, str], ...]] = {
    "nginx": ((80, "TCP"),), "nginx-unprivileged": ((8080, "TCP"),),
    "httpd": ((80, "TCP"),), "apache": ((80, "TCP"),), "caddy": ((80, "TCP"),),
    "traefik": ((80, "TCP"),), "whoami": ((80, "TCP"),), "httpbin": ((80, "TCP"),),
    "http-echo": ((5678, "TCP"),), "echoserver": ((8080, "TCP"),),
    "agnhost": ((8080, "TCP"), (8081, "UDP")), "tomcat": ((8080, "TCP"),),
    "redis": ((6379, "TCP"),), "memcached": ((11211, "TCP"),), "mysql": ((3306, "TCP"),),
    "postgres": ((5432, "TCP"),), "mongo": ((27017, "TCP"),),
    "coredns": ((53, "UDP"), (53, "TCP"), (9153, "TCP")),
}
SUPPORTED_PROTOCOLS = ("TCP", "UDP")


@dataclass(frozen=True)
class ContainerPlan:
    name: str
    argv: tuple[str, ...]
    builtin: bool                            # the workload server (ports it will listen on)
    ports: tuple[tuple[int, str], ...] = ()


def image_name(image: str) -> str:
    """nginx:1.25 -> nginx; registry.k8s.io/e2e-test-images/agnhost:2.39 -> agnhost."""
    last = image.split("@", 1)[0].rsplit("/", 1)[-1]
    return last.split(":", 1)[0]


def qualified_image(image: str) -> str:
    """What containerd reports: docker.io/library/nginx:latest for `nginx`."""
    name, digest = (image.split("@", 1) + [""])[:2]
    first = name.split("/", 1)[0]
    if "/" not in name:
        name = f"docker.io/library/{name}"
    elif "." not in first and ":" not in first and first != "localhost":
        name = f"docker.io/{name}"
    if digest:
        return f"{name}@{digest}"
    if ":" not in name.rsplit("/", 1)[-1]:
        name += ":latest"
    return name


def image_id(image: str) -> str:
    repo = qualified_image(image).split("@", 1)[0].rsplit(":", 1)[0]
    return f"{repo}@sha256:{hashlib.sha256(qualified_image(image).encode()).hexdigest()}"


def program_exists(program: str) -> bool:
    if os.path.isabs(program):
        return os.path.isfile(program) and os.access(program, os.X_OK)
    return shutil.which(program) is not None


def declared_ports(container: dict) -> list[tuple[int, str]]:
    ports = []
    for port in container.get("ports") or []:
        protocol = str(port.get("protocol", "TCP")).upper()
        if protocol in SUPPORTED_PROTOCOLS and port.get("containerPort"):
            ports.append((int(port["containerPort"]), protocol))
    return ports


def plan_container(pod: dict, container: dict, pod_ip: str, python: str,
                   taken: set[tuple[int, str]],
                   builtins: Mapping[str, Sequence[str]] | None = None) -> ContainerPlan:
    """taken: ports earlier containers of the same pod already listen on.
    builtins: image name -> argv of a svclab program that stands in for it
    (e.g. coredns -> svclab's cluster DNS), given by the lab."""
    name = container.get("name", "")
    command = list(container.get("command") or [])
    args = list(container.get("args") or [])
    argv = command + args if command else args
    if argv and program_exists(argv[0]):
        return ContainerPlan(name, tuple(argv), False)
    stand_in = (builtins or {}).get(image_name(container.get("image", "")))
    if stand_in:
        ports = tuple(declared_ports(container))
        return ContainerPlan(name, tuple(stand_in), False, ports)
    wanted = declared_ports(container)
    wanted += KNOWN_IMAGE_PORTS.get(image_name(container.get("image", "")), ())
    ports = tuple(dict.fromkeys(p for p in wanted if p not in taken))
    if not wanted and DEFAULT_PORT not in taken:
        ports = (DEFAULT_PORT,)
    grace = int((pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30))
    server = [python, "-m", "agents.workload", "--pod-name", pod["metadata"]["name"],
              "--pod-ip", pod_ip, "--grace", str(grace)]
    for number, protocol in ports or ((0, "TCP"),):
        server += ["--port", f"{number}/{protocol}"]
    return ContainerPlan(name, tuple(server), True, ports)


def plan_pod_containers(pod: dict, pod_ip: str, python: str,
                        builtins: Mapping[str, Sequence[str]] | None = None
                        ) -> list[ContainerPlan]:
    taken: set[tuple[int, str]] = set()
    plans = []
    for container in (pod.get("spec") or {}).get("containers") or []:
        plan = plan_container(pod, container, pod_ip, python, taken, builtins)
        taken.update(plan.ports)
        plans.append(plan)
    return plans
