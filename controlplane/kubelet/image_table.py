"""The container images svclab knows, as data: what each one runs, and how
the lab stands in for it (docs/images.md is this table in prose).

There is no registry in the lab and no image is pulled: a pod's image is a
name the kubelet looks up here.  Four kinds of stand-in:

- PROGRAM: one of svclab's programs (agents/images/) speaks as the image's
  binary does on the wire (serve_hostname, agnhost, echoserver, hello-app);
- NGINX: the machine's real nginx, in the image's file layout;
- TOOLS: the image is a toolbox (busybox, alpine, dnsutils, netshoot, curl):
  its command runs with the machine's programs of the same names, installed
  from Debian packages by `make setup`;
- BUILTIN: svclab's built-in workload server on the pod's containerPorts
  (also what every image missing from this table gets).

An image is matched by its repository, without tag or digest, after the
aliases registries go by (k8s.gcr.io and gcr.io/google_containers are
registry.k8s.io; docker.io/library/ is Docker Hub's default).
"""
from __future__ import annotations

from dataclasses import dataclass

PROGRAM, NGINX, TOOLS, BUILTIN = "program", "nginx", "tools", "builtin"

# Longest first: registry.k8s.io/e2e-test-images/agnhost -> e2e-test-images/agnhost.
REGISTRY_ALIASES = ("index.docker.io/library/", "docker.io/library/", "index.docker.io/",
                    "docker.io/", "registry.k8s.io/", "k8s.gcr.io/",
                    "gcr.io/google_containers/", "gcr.io/google-containers/",
                    "us.gcr.io/k8s-artifacts-prod/")

# The Debian package each tool comes from (what `make setup` installs, or would).
TOOL_PACKAGES = {
    "sh": "dash", "bash": "bash", "zsh": "zsh", "ash": "busybox", "busybox": "busybox",
    "wget": "wget", "curl": "curl", "nslookup": "bind9-dnsutils", "dig": "bind9-dnsutils",
    "host": "bind9-dnsutils", "nsupdate": "bind9-dnsutils", "nc": "netcat-openbsd",
    "ping": "iputils-ping", "ps": "procps", "top": "procps", "ip": "iproute2",
    "ss": "iproute2", "tc": "iproute2", "tcpdump": "tcpdump", "nginx": "nginx",
    "iperf": "iperf", "iperf3": "iperf3", "traceroute": "traceroute", "telnet": "telnet",
    "netstat": "net-tools", "ifconfig": "net-tools", "route": "net-tools", "arp": "net-tools",
    "socat": "socat", "nmap": "nmap", "mtr": "mtr-tiny", "jq": "jq", "openssl": "openssl",
    "drill": "ldnsutils", "iptables": "iptables", "nft": "nftables",
    "conntrack": "conntrack", "arping": "arping", "tracepath": "iputils-tracepath",
    "python3": "python3", "vim": "vim", "strace": "strace", "ethtool": "ethtool",
    "ipvsadm": "ipvsadm", "httpie": "httpie", "grpcurl": "", "fortio": "",
    "ping6": "iputils-ping", "hostname": "hostname", "httpd": "busybox", "udhcpc": "busybox",
    "vi": "busybox",
}

# The packages scripts/setup.sh installs (`make setup`); a test keeps the two equal.
SETUP_PACKAGES = ("mininet", "iptables", "nftables", "iproute2", "tcpdump", "iputils-ping",
                  "conntrack", "bridge-utils", "net-tools", "util-linux", "procps", "curl",
                  "wget", "bind9-dnsutils", "netcat-openbsd", "busybox", "zsh", "nginx",
                  "python3", "python3-venv", "python3-pip")

# What a busybox-based image has (the applets pages use; any applet of the
# machine's own busybox also counts).
BUSYBOX_TOOLS = ("sh", "ash", "wget", "nslookup", "nc", "ping", "ping6", "traceroute",
                 "telnet", "ps", "top", "ip", "ifconfig", "route", "netstat", "arp",
                 "hostname", "httpd", "udhcpc", "vi", "busybox")
DEBIAN_BASE = ("sh", "bash")
NETSHOOT_TOOLS = ("zsh", "bash", "sh", "curl", "wget", "dig", "nslookup", "host", "nc",
                  "ping", "ps", "ip", "ss", "tcpdump", "iperf", "iperf3", "traceroute",
                  "telnet", "netstat", "ifconfig", "socat", "nmap", "mtr", "jq", "openssl",
                  "drill", "iptables", "nft", "conntrack", "arping", "tracepath", "ethtool",
                  "ipvsadm", "strace", "vim", "grpcurl", "fortio", "httpie")


@dataclass(frozen=True)
class ImageSpec:
    title: str                          # how docs and events name it
    repositories: tuple[str, ...]       # normalised repositories it answers to
    kind: str                           # PROGRAM, NGINX, TOOLS or BUILTIN
    entrypoint: tuple[str, ...] = ()    # the image's ENTRYPOINT
    cmd: tuple[str, ...] = ()           # the image's CMD
    programs: tuple[str, ...] = ()      # its own binaries, which `module` stands for
    module: str = ""                    # agents.images.<...> (PROGRAM, NGINX)
    ports: tuple[tuple[int, str], ...] = ()   # what its default process listens on
    tools: tuple[str, ...] = ()         # programs it has that the machine provides
    busybox: bool = False               # its tools are busybox applets
    flags_to: str = ""                  # its entrypoint script hands args that start
    #                                     with "-" to this program (curlimages/curl)
    note: str = ""                      # one line for the README's table


IMAGES: tuple[ImageSpec, ...] = (
    ImageSpec("nginx", ("nginx", "nginx-slim", "e2e-test-images/nginx",
                        "bprashanth/nginxhttps"), NGINX,
              entrypoint=("/docker-entrypoint.sh",), cmd=("nginx", "-g", "daemon off;"),
              programs=("/docker-entrypoint.sh", "docker-entrypoint.sh", "nginx",
                        "/usr/sbin/nginx", "nginx-debug"),
              module="agents.images.nginx", ports=((80, "TCP"),), tools=DEBIAN_BASE,
              note="the machine's nginx: welcome page on 80, access log on stdout, "
                   "ConfigMaps and Secrets at /etc/nginx/* honoured"),
    ImageSpec("serve_hostname", ("serve_hostname",), PROGRAM,
              entrypoint=("/serve_hostname",), programs=("/serve_hostname", "serve_hostname"),
              module="agents.images.serve_hostname", ports=((9376, "TCP"),),
              tools=BUSYBOX_TOOLS, busybox=True,
              note="the pod's hostname over HTTP on 9376 (--tcp, --udp, --port)"),
    ImageSpec("agnhost", ("e2e-test-images/agnhost", "gcr.io/kubernetes-e2e-test-images/agnhost"),
              PROGRAM, entrypoint=("/agnhost",), cmd=("pause",),
              programs=("/agnhost", "agnhost", "/agnhost-2", "agnhost-2"),
              module="agents.images.agnhost",
              tools=("sh", "bash", "dig", "nslookup", "host", "curl", "nc", "ip", "ss",
                     "iperf"),
              note="netexec (HTTP 8080, UDP 8081), serve-hostname, pause, connect, "
                   "dns-suffix, dns-server-list, etc-hosts"),
    ImageSpec("echoserver", ("echoserver",), PROGRAM, cmd=("/usr/local/bin/run.sh",),
              programs=("/usr/local/bin/run.sh", "run.sh", "nginx", "/usr/sbin/nginx"),
              module="agents.images.echoserver", ports=((8080, "TCP"),), tools=DEBIAN_BASE,
              note="the request echoed as text on 8080 (CLIENT VALUES ... for 1.4 and "
                   "older, Hostname/Request Information for later tags)"),
    ImageSpec("hello-app", ("gcr.io/google-samples/hello-app",
                            "us-docker.pkg.dev/google-samples/containers/gke/hello-app"),
              PROGRAM, cmd=("/hello-app",), programs=("/hello-app", "hello-app"),
              module="agents.images.hello", ports=((8080, "TCP"),),
              note="Hello, world! / Version: 1.0.0 or 2.0.0 / Hostname: on $PORT (8080)"),
    ImageSpec("node-hello", ("gcr.io/google-samples/node-hello",), PROGRAM,
              cmd=("node", "server.js"), programs=("node", "/usr/local/bin/node"),
              module="agents.images.hello", ports=((8080, "TCP"),),
              note="Hello Kubernetes! on 8080"),
    ImageSpec("busybox", ("busybox", "e2e-test-images/busybox"), TOOLS, cmd=("sh",),
              tools=BUSYBOX_TOOLS, busybox=True,
              note="sh, wget, nslookup, nc, ping ... from the machine; no command: sh, "
                   "which exits at once without a terminal"),
    ImageSpec("busyboxplus", ("radial/busyboxplus",), TOOLS, cmd=("/bin/sh",),
              tools=(*BUSYBOX_TOOLS, "curl"), busybox=True, note="busybox with curl"),
    ImageSpec("alpine", ("alpine",), TOOLS, cmd=("/bin/sh",), tools=BUSYBOX_TOOLS,
              busybox=True, note="busybox's tools under Alpine's names"),
    ImageSpec("jessie-dnsutils", ("e2e-test-images/jessie-dnsutils",
                                  "gcr.io/kubernetes-e2e-test-images/jessie-dnsutils"),
              TOOLS, cmd=("/bin/sh",),
              tools=(*DEBIAN_BASE, "dig", "nslookup", "host", "nsupdate"),
              note="dig, nslookup, host (bind9-dnsutils)"),
    ImageSpec("dnsutils", ("gcr.io/kubernetes-e2e-test-images/dnsutils",
                           "e2e-test-images/dnsutils"), TOOLS, cmd=("/bin/sh",),
              tools=(*BUSYBOX_TOOLS, "dig", "nslookup", "host"), busybox=True,
              note="Alpine with dig, nslookup, host"),
    ImageSpec("netshoot", ("nicolaka/netshoot",), TOOLS, cmd=("zsh",), tools=NETSHOOT_TOOLS,
              note="the machine's networking tools; no command: zsh"),
    ImageSpec("curl", ("curlimages/curl",), TOOLS, entrypoint=("/entrypoint.sh",),
              cmd=("curl",), tools=(*BUSYBOX_TOOLS, "curl"), busybox=True, flags_to="curl",
              note="args that start with - go to curl, as the image's entrypoint does"),
    ImageSpec("svclab workload", ("svclab/workload",), BUILTIN,
              note="svclab's own image: the built-in workload server, named explicitly"),
)


def repository(image: str) -> tuple[str, str]:
    """(normalised repository, tag) of an image reference; tag "" when none."""
    name = image.split("@", 1)[0].strip()
    last = name.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else ""
    repo = (name[:-len(tag) - 1] if tag else name).lower()
    for alias in REGISTRY_ALIASES:
        if repo.startswith(alias):
            repo = repo[len(alias):]
            break
    return repo, tag


_BY_REPOSITORY = {repo: spec for spec in IMAGES for repo in spec.repositories}


def lookup(image: str) -> ImageSpec | None:
    """The image's entry, or None for an image svclab does not know."""
    return _BY_REPOSITORY.get(repository(image)[0])
