"""What each known image becomes in a pod: the kubelet's plan, per image.

The machine is a fake here (which programs exist, which busybox applets), so
each test says exactly what the lab has and what the plan makes of it.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from controlplane.kubelet.containers import SVCLAB_ROOT, ContainerPlan, plan_pod_containers
from controlplane.kubelet.image_table import IMAGES, SETUP_PACKAGES, TOOL_PACKAGES, repository

PY = "/opt/venv/bin/python"
POD_IP = "192.168.1.5"
EVERYTHING = {"sh": "/usr/bin/sh", "sleep": "/usr/bin/sleep", "wget": "/usr/bin/wget",
              "nslookup": "/usr/bin/nslookup", "dig": "/usr/bin/dig", "curl": "/usr/bin/curl",
              "nc": "/usr/bin/nc", "busybox": "/usr/bin/busybox", "nginx": "/usr/sbin/nginx",
              "zsh": "/usr/bin/zsh", "/bin/sh": "/bin/sh"}


class FakeMachine:
    def __init__(self, programs: dict[str, str] | None = None,
                 applets: frozenset[str] = frozenset({"sh", "wget", "nslookup", "httpd"})):
        self.programs = EVERYTHING if programs is None else programs
        self.applets = applets

    def which(self, program: str) -> str | None:
        return self.programs.get(program)

    def busybox_applets(self) -> frozenset[str]:
        return self.applets if "busybox" in self.programs else frozenset()


def plan(container: dict, machine: FakeMachine | None = None, **spec) -> ContainerPlan:
    pod = {"metadata": {"name": "web-1", "namespace": "default"},
           "spec": {"containers": [{"name": "c", **container}], **spec}}
    [only] = plan_pod_containers(pod, POD_IP, PY, machine=machine or FakeMachine())
    return only


def program_of(argv: tuple[str, ...]) -> tuple[str, list[str]]:
    """(module, its arguments) of a stand-in's argv: python -S -c BOOT ARGS..."""
    assert argv[:3] == (PY, "-S", "-c"), argv
    assert f"sys.path.insert(0, {SVCLAB_ROOT!r})" in argv[3]
    return re.search(r"from (\S+) import main", argv[3]).group(1), list(argv[4:])


@pytest.mark.parametrize("image, expected", [
    ("registry.k8s.io/serve_hostname", ("serve_hostname", "")),
    ("k8s.gcr.io/echoserver:1.4", ("echoserver", "1.4")),
    ("gcr.io/google_containers/echoserver:1.10", ("echoserver", "1.10")),
    ("registry.k8s.io/e2e-test-images/agnhost:2.39", ("e2e-test-images/agnhost", "2.39")),
    ("docker.io/library/nginx:1.27", ("nginx", "1.27")),
    ("nginx@sha256:" + "0" * 64, ("nginx", "")),
    ("localhost:5000/nginx", ("localhost:5000/nginx", "")),
    ("gcr.io/google-samples/hello-app:2.0", ("gcr.io/google-samples/hello-app", "2.0")),
])
def test_images_are_matched_by_repository_under_their_registry_aliases(image, expected):
    assert repository(image) == expected


def test_serve_hostname_is_emulated_on_9376_and_follows_its_flags():
    got = plan({"image": "registry.k8s.io/serve_hostname:1.1"})
    assert program_of(got.argv) == ("agents.images.serve_hostname",
                                     ["--image", "registry.k8s.io/serve_hostname:1.1", "--",
                                      "/serve_hostname"])
    assert got.builtin and got.ports == ((9376, "TCP"),)
    assert "emulated by svclab (agents.images.serve_hostname), 9376/TCP" in got.emulation
    udp = plan({"image": "gcr.io/google_containers/serve_hostname",
                "args": ["-udp", "--http=false", "--port", "9000"]})
    assert udp.ports == ((9000, "UDP"),)
    assert program_of(udp.argv)[1][-4:] == ["-udp", "--http=false", "--port", "9000"]


def test_agnhost_runs_its_subcommand_and_listens_where_it_says():
    netexec = plan({"image": "registry.k8s.io/e2e-test-images/agnhost:2.39",
                    "args": ["netexec", "--http-port=8080", "--udp-port=8081"]})
    module, args = program_of(netexec.argv)
    assert module == "agents.images.agnhost"
    assert args[2:] == ["--", "/agnhost", "netexec", "--http-port=8080", "--udp-port=8081"]
    assert netexec.ports == ((8080, "TCP"), (8081, "UDP"))
    no_udp = plan({"image": "registry.k8s.io/e2e-test-images/agnhost:2.40",
                   "command": ["/agnhost", "netexec", "--http-port", "9090", "--udp-port=-1"]})
    assert no_udp.ports == ((9090, "TCP"),)
    serve = plan({"image": "registry.k8s.io/e2e-test-images/agnhost:2.39",
                  "args": ["serve-hostname", "--tcp", "--http=false", "--port=9376"]})
    assert serve.ports == ((9376, "TCP"),)
    default = plan({"image": "registry.k8s.io/e2e-test-images/agnhost:2.39"})
    assert program_of(default.argv)[1][2:] == ["--", "/agnhost", "pause"]
    assert default.ports == ()
    shell = plan({"image": "registry.k8s.io/e2e-test-images/agnhost:2.39",
                  "command": ["sh", "-c", "sleep 1"]})
    assert shell.argv == ("sh", "-c", "sleep 1") and not shell.builtin


def test_echoserver_and_the_google_samples_serve_their_ports():
    echo = plan({"image": "registry.k8s.io/echoserver:1.4"})
    assert program_of(echo.argv)[0] == "agents.images.echoserver"
    assert echo.ports == ((8080, "TCP"),)
    hello = plan({"image": "gcr.io/google-samples/hello-app:1.0",
                  "env": [{"name": "PORT", "value": "9090"}]})
    assert program_of(hello.argv) == ("agents.images.hello",
                                      ["--image", "gcr.io/google-samples/hello-app:1.0", "--",
                                       "/hello-app"])
    assert hello.ports == ((9090, "TCP"),)
    node = plan({"image": "gcr.io/google-samples/node-hello:1.0"})
    assert program_of(node.argv)[1][-2:] == ["node", "server.js"]
    assert node.ports == ((8080, "TCP"),)


def test_toolboxes_run_their_command_with_the_machines_programs():
    box = plan({"image": "busybox:1.36", "command": ["wget", "-qO-", "web"]})
    assert box.argv == ("wget", "-qO-", "web") and not box.builtin and box.ports == ()
    assert box.emulation == "busybox:1.36: wget runs from this machine (/usr/bin/wget)"
    absolute = plan({"image": "alpine", "command": ["/usr/bin/nslookup", "web"]})
    assert absolute.argv == ("nslookup", "web")        # the image's path, the machine's tool
    applet = plan({"image": "busybox", "command": ["httpd", "-f", "-p", "8080"]})
    assert applet.argv == ("busybox", "httpd", "-f", "-p", "8080")
    dns = plan({"image": "registry.k8s.io/e2e-test-images/jessie-dnsutils:1.3",
                "command": ["sleep", "infinity"]})
    assert dns.argv == ("sleep", "infinity")


def test_a_toolbox_without_a_command_runs_its_default_shell():
    assert plan({"image": "busybox"}).argv == ("sh",)
    assert plan({"image": "alpine:3.20"}).argv == ("/bin/sh",)
    assert plan({"image": "nicolaka/netshoot"}).argv == ("zsh",)
    assert plan({"image": "busybox", "args": ["sleep", "10"]}).argv == ("sleep", "10")


def test_curl_image_hands_flags_to_curl_as_its_entrypoint_does():
    assert plan({"image": "curlimages/curl", "args": ["-s", "http://web"]}).argv == \
        ("curl", "-s", "http://web")
    assert plan({"image": "curlimages/curl:8.5.0", "args": ["sh", "-c", "true"]}).argv == \
        ("sh", "-c", "true")
    assert plan({"image": "curlimages/curl"}).argv == ("curl",)
    assert plan({"image": "curlimages/curl", "command": ["sleep", "5"]}).argv == ("sleep", "5")


def test_a_tool_the_image_has_and_the_machine_lacks_fails_with_a_warning():
    machine = FakeMachine({"sh": "/usr/bin/sh"})            # no nslookup, no busybox
    got = plan({"image": "busybox", "command": ["nslookup", "web"]}, machine)
    module, args = program_of(got.argv)
    assert (module, args) == ("agents.images.missing",
                              ["--program", "nslookup", "--package", "bind9-dnsutils"])
    assert not got.builtin
    assert got.events == (("Warning", "Failed", 'Error: the image has "nslookup" but this '
                           "machine does not: install the Debian package bind9-dnsutils "
                           "(make setup)"),)
    nmap = plan({"image": "nicolaka/netshoot", "command": ["nmap", "web"]}, machine)
    assert "install the Debian package nmap (apt-get install nmap)" in nmap.events[0][2]
    unknown = plan({"image": "busybox", "command": ["frobnicate"]}, machine)
    assert program_of(unknown.argv)[1] == ["--program", "frobnicate"]
    assert unknown.events[0][2] == 'Error: "frobnicate" is neither in the image nor on this ' \
                                   "machine"


def test_nginx_runs_the_machines_nginx_in_the_images_layout():
    got = plan({"image": "nginx", "ports": [{"containerPort": 80}]})
    assert program_of(got.argv) == ("agents.images.nginx",
                                     ["--image", "nginx", "--", "/docker-entrypoint.sh", "nginx",
                                      "-g", "daemon off;"])
    assert got.builtin and got.ports == ((80, "TCP"),) and got.events == ()
    assert "this machine's nginx (/usr/sbin/nginx) in the nginx image's file layout" in \
        got.emulation
    slim = plan({"image": "registry.k8s.io/nginx-slim:0.21",
                 "command": ["nginx", "-g", "daemon off;"]})
    assert program_of(slim.argv)[1][2:] == ["--", "nginx", "-g", "daemon off;"]


def test_nginx_with_a_mounted_configuration_waits_for_its_declared_ports():
    got = plan({"image": "nginx", "ports": [{"containerPort": 80}, {"containerPort": 443}],
                "volumeMounts": [{"name": "conf", "mountPath": "/etc/nginx/conf.d"},
                                 {"name": "certs", "mountPath": "/etc/nginx/ssl"}]})
    assert program_of(got.argv)[0] == "agents.images.nginx"
    assert got.ports == ((80, "TCP"), (443, "TCP")) and got.events == ()


def test_nginx_falls_back_to_the_builtin_server_with_a_warning():
    missing = plan({"image": "nginx:1.27"}, FakeMachine({"sh": "/usr/bin/sh"}))
    assert missing.argv[1:3] == ("-m", "agents.workload") and missing.ports == ((80, "TCP"),)
    assert missing.events == (("Warning", "EmulationFallback",
                               "nginx is not installed on this machine (Debian package nginx: "
                               "run make setup); svclab's built-in server runs in its place"),)
    other = plan({"image": "nginx", "ports": [{"containerPort": 8000},
                                              {"containerPort": 5353, "protocol": "UDP"}]})
    assert other.argv[1:3] == ("-m", "agents.workload")
    assert other.ports == ((8000, "TCP"), (5353, "UDP"), (80, "TCP"))
    assert other.events[0][:2] == ("Warning", "EmulationFallback")
    assert "declares 8000/TCP, 5353/UDP" in other.events[0][2]


def test_unknown_images_keep_the_builtin_server_or_their_command():
    got = plan({"image": "registry.example/team/app:3", "ports": [{"containerPort": 8000}]})
    assert got.argv[1:3] == ("-m", "agents.workload") and got.ports == ((8000, "TCP"),)
    assert "not an image svclab emulates" in got.emulation
    run = plan({"image": "registry.example/team/app:3", "command": ["sleep", "60"]})
    assert run.argv == ("sleep", "60")
    named = plan({"image": "svclab/workload"})
    assert named.argv[1:3] == ("-m", "agents.workload") and named.ports == ((80, "TCP"),)


def test_the_table_is_consistent():
    repositories = [r for spec in IMAGES for r in spec.repositories]
    assert len(repositories) == len(set(repositories))
    for spec in IMAGES:
        if spec.kind in ("program", "nginx"):
            assert spec.module.startswith("agents.images.") and spec.programs, spec.title
            module = Path(SVCLAB_ROOT, *spec.module.split(".")).with_suffix(".py")
            assert module.is_file(), module
        for tool in spec.tools:
            assert tool in TOOL_PACKAGES, (spec.title, tool)


def test_setup_installs_the_packages_the_table_says_it_does():
    script = Path(SVCLAB_ROOT, "scripts", "setup.sh").read_text()
    listed = re.search(r'PACKAGES="([^"]*)"', script).group(1).replace("\\\n", " ").split()
    assert tuple(listed) == SETUP_PACKAGES
    for tool in ("wget", "nslookup", "dig", "curl", "nc", "ping", "ps", "busybox", "nginx"):
        assert TOOL_PACKAGES[tool] in SETUP_PACKAGES, tool
