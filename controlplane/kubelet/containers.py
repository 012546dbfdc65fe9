"""From a container spec to the process that runs it: pure decisions.

A container's argv is what Kubernetes would run: `command` + `args`, or the
image's ENTRYPOINT + `args`, or ENTRYPOINT + CMD (controlplane/kubelet/image_table.py
knows the images' ENTRYPOINT and CMD).  Then, by the image's kind:

- an image svclab emulates (serve_hostname, agnhost, echoserver, hello-app,
  node-hello): its own binary is svclab's program (agents/images/), any
  other command runs from the machine;
- nginx: the machine's nginx in the image's file layout (agents/images/nginx.py)
  -- or the built-in server, with a Warning, when nginx is not installed or
  the container declares ports the image's default configuration does not
  serve;
- a toolbox (busybox, alpine, dnsutils, netshoot, curl): the command runs
  with the machine's program of that name (busybox's applet where the
  machine has only busybox's); a program the image has and the machine
  lacks is a Warning naming its Debian package, and the container fails as
  a missing program does in Kubernetes;
- an image svclab does not know: the command runs if the machine has its
  program; otherwise the built-in workload server listens on every declared
  containerPort (TCP and UDP) plus the ports the image is known to serve
  (redis -> 6379, ...), port 80 when nothing is declared or known.

Each plan says in one line which emulation runs (`emulation`) and carries
the events the kubelet records for it.  What the machine has is asked of a
`Machine` (LocalMachine looks at this one).  Images get the fully qualified
names and digests a container runtime reports.
"""
from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from controlplane.kubelet.image_table import (
    BUILTIN,
    NGINX,
    SETUP_PACKAGES,
    TOOL_PACKAGES,
    ImageSpec,
    lookup,
)

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
CONTAINER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NORMAL, WARNING = "Normal", "Warning"
NGINX_CONFIG = "/etc/nginx"
SVCLAB_ROOT = str(Path(__file__).resolve().parents[2])

Event = tuple[str, str, str]            # (type, reason, message), as the kubelet records


@dataclass(frozen=True)
class ContainerPlan:
    name: str
    argv: tuple[str, ...]
    builtin: bool            # a svclab server: the container is started once `ports` listen
    ports: tuple[tuple[int, str], ...] = ()
    emulation: str = ""      # which emulation runs, in one line (for `kubectl describe`)
    events: tuple[Event, ...] = ()


class Machine(Protocol):
    def which(self, program: str) -> str | None: ...
    def busybox_applets(self) -> frozenset[str]: ...


class LocalMachine:
    """This machine's programs, as a container's PATH finds them."""

    def which(self, program: str) -> str | None:
        if "/" in program:
            return program if os.path.isfile(program) and os.access(program, os.X_OK) else None
        return shutil.which(program, path=CONTAINER_PATH)

    @functools.lru_cache(maxsize=1)   # noqa: B019 -- one instance, for the process's life
    def busybox_applets(self) -> frozenset[str]:
        busybox = self.which("busybox")
        if not busybox:
            return frozenset()
        try:
            listed = subprocess.run([busybox, "--list"], capture_output=True, text=True,
                                    timeout=5, check=False).stdout
        except (OSError, subprocess.TimeoutExpired):
            return frozenset()
        return frozenset(listed.split())


LOCAL = LocalMachine()


def image_name(image: str) -> str:
    """nginx:1.25 -> nginx; registry.k8s.io/e2e-test-images/agnhost:2.39 -> agnhost."""
    last = image.split("@", 1)[0].rsplit("/", 1)[-1]
    return last.split(":", 1)[0]


@functools.lru_cache(maxsize=1024)      # every status write asks again, per container
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


@functools.lru_cache(maxsize=1024)
def image_id(image: str) -> str:
    repo = qualified_image(image).split("@", 1)[0].rsplit(":", 1)[0]
    return f"{repo}@sha256:{hashlib.sha256(qualified_image(image).encode()).hexdigest()}"


def program_exists(program: str) -> bool:
    return LOCAL.which(program) is not None


def declared_ports(container: dict) -> list[tuple[int, str]]:
    ports = []
    for port in container.get("ports") or []:
        protocol = str(port.get("protocol", "TCP")).upper()
        if protocol in SUPPORTED_PROTOCOLS and port.get("containerPort"):
            ports.append((int(port["containerPort"]), protocol))
    return ports


def program_argv(python: str, module: str, *args: str) -> tuple[str, ...]:
    """How a pod runs one of svclab's stand-ins (agents/images/).  `python -S`:
    they need only the standard library and svclab's own modules, and skipping
    `site` (the virtual environment's .pth files) saves each pod's process
    about 5 MB."""
    boot = (f"import sys; sys.path.insert(0, {SVCLAB_ROOT!r}); "
            f"from {module} import main; sys.exit(main(sys.argv[1:]))")
    return (python, "-S", "-c", boot, *args)


def port_text(ports: Sequence[tuple[int, str]]) -> str:
    return ", ".join(f"{n}/{p}" for n, p in ports) or "no port"


def image_argv(spec: ImageSpec, command: list[str], args: list[str]) -> list[str]:
    """What the container runtime would exec, as Kubernetes combines command and args
    with the image's ENTRYPOINT and CMD (and the image's entrypoint script's rule)."""
    if command:
        argv = command + args
    else:
        argv = list(spec.entrypoint) + (args or list(spec.cmd))
    if spec.flags_to and argv and argv[0] in spec.entrypoint:
        rest = argv[1:]
        argv = [spec.flags_to, *rest] if not rest or rest[0].startswith("-") else rest
    return argv


def flag_value(args: Sequence[str], name: str, default):
    """A Go/pflag flag's value in args (`-port=1`, `--port 1`, bare `--tcp`)."""
    for index, arg in enumerate(args):
        for form in (f"--{name}", f"-{name}"):
            if arg == form:
                if isinstance(default, bool):
                    return True
                return args[index + 1] if index + 1 < len(args) else default
            if arg.startswith(form + "="):
                value = arg.split("=", 1)[1]
                return value.lower() in ("1", "t", "true") if isinstance(default, bool) \
                    else value
    return default


def _int(value, default: int) -> int:
    return int(value) if str(value).lstrip("-").isdigit() else default


def serve_hostname_ports(args: Sequence[str]) -> tuple[tuple[int, str], ...]:
    port = _int(flag_value(args, "port", "9376"), 9376)
    tcp = flag_value(args, "tcp", False) or flag_value(args, "http", True)
    return tuple(p for p, on in (((port, "TCP"), tcp), ((port, "UDP"),
                                                       flag_value(args, "udp", False))) if on)


def program_ports(spec: ImageSpec, argv: Sequence[str], container: dict
                  ) -> tuple[tuple[int, str], ...]:
    """Where an emulated image's program will listen, from its args."""
    args = list(argv[1:])
    if spec.title == "serve_hostname":
        return serve_hostname_ports(args)
    if spec.title == "agnhost":
        sub = next((a for a in args if not a.startswith("-")), "")
        rest = args[args.index(sub) + 1:] if sub else []
        if sub == "netexec":
            udp = _int(flag_value(rest, "udp-port", "8081"), 8081)
            return ((_int(flag_value(rest, "http-port", "8080"), 8080), "TCP"),
                    *(((udp, "UDP"),) if udp != -1 else ()))
        return serve_hostname_ports(rest) if sub == "serve-hostname" else ()
    if spec.title == "hello-app":
        env = {e.get("name"): e.get("value") for e in container.get("env") or []}
        return ((_int(env.get("PORT") or "8080", 8080), "TCP"),)
    return spec.ports


def builtin_plan(pod: dict, container: dict, pod_ip: str, python: str,
                 taken: set[tuple[int, str]], why: str = "",
                 events: tuple[Event, ...] = ()) -> ContainerPlan:
    """svclab's built-in workload server on the container's ports."""
    image = container.get("image", "")
    wanted = declared_ports(container)
    wanted += KNOWN_IMAGE_PORTS.get(image_name(image), ())
    ports = tuple(dict.fromkeys(p for p in wanted if p not in taken))
    if not wanted and DEFAULT_PORT not in taken:
        ports = (DEFAULT_PORT,)
    grace = int((pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30))
    server = [python, "-m", "agents.workload", "--pod-name", pod["metadata"]["name"],
              "--pod-ip", pod_ip, "--grace", str(grace)]
    for number, protocol in ports or ((0, "TCP"),):
        server += ["--port", f"{number}/{protocol}"]
    emulation = (f"{image}: {why or 'not an image svclab emulates'}: svclab's built-in "
                 f"workload server (agents.workload) serves {port_text(ports)}")
    return ContainerPlan(container.get("name", ""), tuple(server), True, ports, emulation,
                         events)


def missing_plan(name: str, image: str, program: str, package: str, python: str
                 ) -> ContainerPlan:
    """A container whose program the lab cannot run: it fails, and says why."""
    if package:
        how = "make setup" if package in SETUP_PACKAGES else f"apt-get install {package}"
        why = (f'the image has "{program}" but this machine does not: install the Debian '
               f"package {package} ({how})")
    else:
        why = f'"{program}" is neither in the image nor on this machine'
    argv = program_argv(python, "agents.images.missing", "--program", program,
                        *(("--package", package) if package else ()))
    return ContainerPlan(name, argv, False, (), f"{image}: {why}",
                         ((WARNING, "Failed", f"Error: {why}"),))


def machine_plan(spec: ImageSpec, name: str, image: str, argv: list[str], python: str,
                 machine: Machine) -> ContainerPlan:
    """The command of a known image, run with the machine's programs."""
    program = argv[0]
    base = program.rsplit("/", 1)[-1]
    found = machine.which(program) or ("/" in program and machine.which(base))
    if found:
        run = argv if machine.which(program) else [base, *argv[1:]]
        return ContainerPlan(name, tuple(run), False, (),
                             f"{image}: {program} runs from this machine ({found})")
    if spec.busybox and base in machine.busybox_applets():
        return ContainerPlan(name, ("busybox", base, *argv[1:]), False, (),
                             f"{image}: {program} runs as this machine's busybox {base}")
    package = TOOL_PACKAGES.get(base, "") if base in spec.tools else ""
    if base in spec.tools and spec.busybox and not package:
        package = "busybox"
    return missing_plan(name, image, base, package, python)


def nginx_plan(spec: ImageSpec, pod: dict, container: dict, argv: list[str], pod_ip: str,
               python: str, taken: set[tuple[int, str]], machine: Machine) -> ContainerPlan:
    name, image = container.get("name", ""), container.get("image", "")
    nginx = machine.which("nginx")
    if not nginx:
        why = ("nginx is not installed on this machine (Debian package nginx: run make "
               "setup)")
        return builtin_plan(pod, container, pod_ip, python, taken, why,
                            ((WARNING, "EmulationFallback", f"{why}; svclab's built-in "
                                                            "server runs in its place"),))
    configured = any(str(m.get("mountPath", "")).rstrip("/") == NGINX_CONFIG or
                     str(m.get("mountPath", "")).startswith(NGINX_CONFIG + "/")
                     for m in container.get("volumeMounts") or [])
    runs_nginx = argv[0] in spec.programs
    declared = declared_ports(container)
    extra = [p for p in declared if p not in spec.ports]
    if runs_nginx and not configured and extra:
        why = (f"nginx's default configuration serves {port_text(spec.ports)} only and the "
               f"container declares {port_text(extra)}")
        return builtin_plan(pod, container, pod_ip, python, taken, why,
                            ((WARNING, "EmulationFallback",
                              f"{why}: svclab's built-in server serves the declared ports "
                              "instead (mount a configuration at /etc/nginx/conf.d to run "
                              "nginx)"),))
    if not runs_nginx and not machine.which(argv[0]):
        return machine_plan(spec, name, image, argv, python, machine)
    ports = spec.ports if runs_nginx and not configured else \
        tuple(p for p in declared if p[1] == "TCP")
    launch = program_argv(python, spec.module, "--image", image, "--", *argv)
    what = "this machine's nginx" if runs_nginx else f"{argv[0]} from this machine"
    return ContainerPlan(name, launch, True, ports,
                         f"{image}: {what} ({nginx}) in the nginx image's file layout "
                         f"({spec.module}), {port_text(ports)}")


def plan_container(pod: dict, container: dict, pod_ip: str, python: str,
                   taken: set[tuple[int, str]],
                   builtins: Mapping[str, Sequence[str]] | None = None,
                   machine: Machine = LOCAL) -> ContainerPlan:
    """taken: ports earlier containers of the same pod already listen on.
    builtins: image name -> argv of a svclab program that stands in for it
    (e.g. coredns -> svclab's cluster DNS), given by the lab."""
    name, image = container.get("name", ""), container.get("image", "")
    command = list(container.get("command") or [])
    args = list(container.get("args") or [])
    spec = lookup(image)
    if spec is None or spec.kind == BUILTIN:
        argv = command + args if command else args
        if argv and machine.which(argv[0]):
            return ContainerPlan(name, tuple(argv), False, (),
                                 f"{image}: {argv[0]} runs from this machine")
        stand_in = (builtins or {}).get(image_name(image))
        if stand_in and spec is None:
            ports = tuple(declared_ports(container))
            # The image's entrypoint is the stand-in; the container's args follow
            # it as they would the real one's (coredns: -conf /etc/coredns/Corefile).
            return ContainerPlan(name, tuple(stand_in) + (() if command else tuple(args)),
                                 False, ports,
                                 f"{image}: svclab's own {image_name(image)} "
                                 f"({' '.join(stand_in[1:3])})")
        return builtin_plan(pod, container, pod_ip, python, taken,
                            "svclab's own image" if spec else "")
    argv = image_argv(spec, command, args)
    if not argv:
        return builtin_plan(pod, container, pod_ip, python, taken, "nothing to run")
    if spec.kind == NGINX:
        return nginx_plan(spec, pod, container, argv, pod_ip, python, taken, machine)
    if argv[0] in spec.programs:
        ports = program_ports(spec, argv, container)
        launch = program_argv(python, spec.module, "--image", image, "--", *argv)
        return ContainerPlan(name, launch, True, ports,
                             f"{image}: emulated by svclab ({spec.module}), "
                             f"{port_text(ports)}")
    return machine_plan(spec, name, image, argv, python, machine)


def plan_pod_containers(pod: dict, pod_ip: str, python: str,
                        builtins: Mapping[str, Sequence[str]] | None = None,
                        machine: Machine = LOCAL) -> list[ContainerPlan]:
    taken: set[tuple[int, str]] = set()
    plans = []
    for container in (pod.get("spec") or {}).get("containers") or []:
        plan = plan_container(pod, container, pod_ip, python, taken, builtins, machine)
        taken.update(plan.ports)
        plans.append(plan)
    return plans
