"""The nginx images: the real nginx from Debian, in the file layout of the image.

    python -m agents.images.nginx [--image IMAGE] -- ARGV...

Run as a container's process inside its pod, this lays out what the nginx
image has and the machine does not, then execs ARGV (the image's default is
`/docker-entrypoint.sh nginx -g "daemon off;"`; the entrypoint's part is
this module's, so it is dropped):

- /etc/nginx: the image's main configuration (one worker process, the `main`
  access log format, `include /etc/nginx/conf.d/*.conf`), its default site in
  conf.d/default.conf (port 80, /usr/share/nginx/html), the machine's
  mime.types and *_params;
- /usr/share/nginx/html: the machine's welcome page ("Welcome to nginx!");
- /var/log/nginx: access.log -> /dev/stdout and error.log -> /dev/stderr, so
  nginx's log lines are the container's log (`kubectl logs`);
- /var/lib/nginx (Debian's temporary files) empty and the pod's own;
- /etc/passwd and /etc/group with the image's `nginx` user (uid 101).

Everything is a mount in the pod's own mount namespace, made once per pod
(restarts reuse it) from a tmpfs at /run/svclab-image.  A volume the pod
mounts there wins, as over an image's files: a folder that is itself a
volume (/usr/share/nginx/html) is left alone, and volumes inside one
(/etc/nginx/conf.d, /etc/nginx/ssl, a subPath /etc/nginx/nginx.conf) are
carried into the new layout.  (The runtime mounts volumes before any
container starts; where a mount point had to be added to a machine folder,
/etc/nginx for /etc/nginx/ssl, it shows that folder as a tmpfs copy: the
copy is the machine's, not a volume, and is laid over like the folder.)
So a pod's ConfigMap at /etc/nginx/conf.d replaces the default site, as in
Kubernetes.

The default site also answers svclab's own questions (docs/images.md):
`/hostname`, `/clientip`, and the JSON identity svclab's probes ask for
(User-Agent `svclab-...`, or `svclab trace`'s `?svclab-trace=` query) --
everything else is nginx's own.
"""
from __future__ import annotations

import ctypes
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from agents.images.flags import split_launch

STAGE = "/run/svclab-image"
MIRROR_SOURCE = "svclab-pod-dir"     # topo/pod_volumes.py's copy of a machine folder
READY = f"{STAGE}/nginx.ready"
STAGE_SIZE = "16m"
MS_NOSUID, MS_NODEV, MS_BIND, MS_REC = 2, 4, 4096, 16384
DEFAULT_ARGV = ("nginx", "-g", "daemon off;")
ENTRYPOINTS = ("/docker-entrypoint.sh", "docker-entrypoint.sh")
NGINX_UID = 101
COPIED = ("mime.types", "fastcgi_params", "fastcgi.conf", "scgi_params", "uwsgi_params",
          "koi-utf", "koi-win", "win-utf")

MAIN_CONF = """\
# The nginx image's main configuration, laid out by svclab for this pod
# (agents/images/nginx.py).  Mount a ConfigMap at /etc/nginx/nginx.conf or
# /etc/nginx/conf.d to change it, as with the real image.
user nginx;
worker_processes 1;
pid /var/run/nginx.pid;
error_log /var/log/nginx/error.log notice;

events {
    worker_connections 1024;
}

http {
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    log_format main '$remote_addr - $remote_user [$time_local] "$request" '
                    '$status $body_bytes_sent "$http_referer" '
                    '"$http_user_agent" "$http_x_forwarded_for"';
    access_log /var/log/nginx/access.log main;
    sendfile on;
    keepalive_timeout 65;
    include /etc/nginx/conf.d/*.conf;
}
"""

DEFAULT_SITE = """\
# The nginx image's default site: the welcome page on port 80.
server {
    listen 80;
%(ipv6)s    server_name localhost;

    # svclab's own answers (docs/images.md): the pod's name, the client the
    # pod saw, and the JSON identity svclab's probes ask for.
    location = /hostname {
        default_type text/plain;
        return 200 $hostname;
    }
    location = /clientip {
        default_type text/plain;
        return 200 "$remote_addr:$remote_port";
    }
    set $svclab_asks "";
    if ($http_user_agent ~ "^svclab-") {
        set $svclab_asks 1;
    }
    if ($args ~ "(^|&)svclab-trace=") {
        set $svclab_asks 1;
    }
    if ($svclab_asks) {
        return 200 '{"pod": "$hostname", "podIP": "$server_addr", "port": $server_port,
 "client": "$remote_addr:$remote_port", "proto": "tcp",
 "forwardedFor": "$http_x_forwarded_for", "forwardedProto": "$http_x_forwarded_proto",
 "forwardedPort": "$http_x_forwarded_port"}
';
    }

    location / {
        root /usr/share/nginx/html;
        index index.html index.htm;
    }
    error_page 500 502 503 504 /50x.html;
    location = /50x.html {
        root /usr/share/nginx/html;
    }
}
"""

ERROR_PAGE = """\
<!DOCTYPE html>
<html>
<head><title>Error</title></head>
<body>
<h1>An error occurred.</h1>
<p>The page you asked for is not available right now; try again later.</p>
</body>
</html>
"""


class OverlayError(OSError):
    """A mount the layout needs failed (the path and the kernel's reason)."""


@dataclass(frozen=True)
class Cover:
    """One folder or file of the image, laid over the machine's at target."""

    target: str            # where the pod sees it
    source: str            # what is mounted there (under the stage)


def unescape_mount_path(text: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as \\ooo."""
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and text[i + 1:i + 4].isdigit():
            out.append(chr(int(text[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


@dataclass(frozen=True)
class Mount:
    point: str             # where it is mounted
    root: str              # what of its file system is shown there
    source: str            # the mount's source (a tmpfs's name)


def mount_table(mountinfo: str) -> list[Mount]:
    """The mounts of /proc/self/mountinfo, in mount order."""
    table = []
    for line in mountinfo.splitlines():
        fields = line.split()
        if " - " not in line or len(fields) < 5:
            continue
        after = line.split(" - ", 1)[1].split()
        table.append(Mount(unescape_mount_path(fields[4]), unescape_mount_path(fields[3]),
                           after[1] if len(after) > 1 else ""))
    return table


def is_volume(mount: Mount) -> bool:
    """A pod's volume, not the pod's view of the machine's own files: the runtime
    shows a machine folder it had to add a mount point to as a tmpfs copy
    (MIRROR_SOURCE) whose entries are bound from the same paths."""
    return mount.source != MIRROR_SOURCE and mount.root != mount.point


def volumes_at(target: str, table: list[Mount]) -> tuple[bool, list[str]]:
    """(target is itself a volume, the volumes strictly inside it, outermost first)."""
    top: dict[str, Mount] = {}
    for mount in table:                     # the last mount at a point is the one seen
        top[mount.point] = mount
    inside = sorted((p for p, m in top.items()
                     if p.startswith(target.rstrip("/") + "/") and is_volume(m)),
                    key=lambda p: p.count("/"))
    return target in top and is_volume(top[target]), inside


def free_id(text: str, wanted: int) -> int:
    """wanted (the image's uid/gid) unless a passwd/group text uses it: then the
    first free one above it (only a name shows in `ps`, and names are per pod)."""
    used = {int(f[2]) for f in (line.split(":") for line in text.splitlines())
            if len(f) > 2 and f[2].isdigit()}
    while wanted in used:
        wanted += 1
    return wanted


def with_user(passwd: str, group: str, name: str, wanted: int) -> tuple[str, str]:
    """passwd and group texts with the image's user and group added (if missing)."""
    def add(text: str, line: str) -> str:
        if any(entry.split(":", 1)[0] == name for entry in text.splitlines()):
            return text
        return text + ("" if text.endswith("\n") or not text else "\n") + line + "\n"
    uid, gid = free_id(passwd, wanted), free_id(group, wanted)
    return (add(passwd, f"{name}:x:{uid}:{gid}:{name} user:/nonexistent:/bin/false"),
            add(group, f"{name}:x:{gid}:"))


COVERED = (("/etc/nginx", "etc-nginx"), ("/usr/share/nginx/html", "html"),
           ("/var/log/nginx", "log"), ("/var/lib/nginx", "lib"), ("/etc/passwd", "passwd"),
           ("/etc/group", "group"))


def plan_covers(stage: str, machine_has: set[str]) -> list[Cover]:
    """The image's paths to lay over the machine's (only where the machine has them:
    a mount needs a target, and svclab creates nothing on the machine)."""
    return [Cover(target, f"{stage}/{name}") for target, name in COVERED
            if target in machine_has]


# --- side effects: the pod's mount namespace ------------------------------------------

_libc = None


def _mount(source: str, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    if _libc.mount(source.encode(), target.encode(), fstype.encode() if fstype else None,
                   ctypes.c_ulong(flags), data.encode() if data else None) != 0:
        errno = ctypes.get_errno()
        raise OverlayError(errno, f"mount {source} on {target}: {os.strerror(errno)}")


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def _fill_stage(stage: Path) -> None:
    etc = stage / "etc-nginx"
    (etc / "conf.d").mkdir(parents=True, exist_ok=True)
    for name in COPIED:
        if os.path.isfile(f"/etc/nginx/{name}"):
            shutil.copyfile(f"/etc/nginx/{name}", etc / name)
    if os.path.isdir("/usr/lib/nginx/modules"):
        (etc / "modules").symlink_to("/usr/lib/nginx/modules")
    _write(etc / "nginx.conf", MAIN_CONF)
    ipv6 = "    listen [::]:80;\n" if os.path.exists("/proc/net/if_inet6") else ""
    _write(etc / "conf.d" / "default.conf", DEFAULT_SITE % {"ipv6": ipv6})
    html = stage / "html"
    html.mkdir(parents=True, exist_ok=True)
    if os.path.isfile("/usr/share/nginx/html/index.html"):
        shutil.copyfile("/usr/share/nginx/html/index.html", html / "index.html")
    _write(html / "50x.html", ERROR_PAGE)
    (stage / "log").mkdir(exist_ok=True)
    (stage / "log" / "access.log").symlink_to("/dev/stdout")
    (stage / "log" / "error.log").symlink_to("/dev/stderr")
    (stage / "lib").mkdir(exist_ok=True)
    passwd, group = with_user(Path("/etc/passwd").read_text(), Path("/etc/group").read_text(),
                              "nginx", NGINX_UID)
    _write(stage / "passwd", passwd)
    _write(stage / "group", group)


def _lay(cover: Cover, table: list[Mount]) -> None:
    whole, inside = volumes_at(cover.target, table)
    if whole:
        return                                  # a volume there: it wins
    for point in inside:
        stub = Path(cover.source + point[len(cover.target):])
        if os.path.isdir(point):
            stub.mkdir(parents=True, exist_ok=True)
        else:
            stub.parent.mkdir(parents=True, exist_ok=True)
            stub.touch()
        _mount(point, str(stub), None, MS_BIND | MS_REC)
    _mount(cover.source, cover.target, None, MS_BIND | MS_REC)


def lay_out_image() -> None:
    """Make the pod look like the nginx image (once per pod)."""
    if os.path.exists(READY):
        return
    os.makedirs(STAGE, exist_ok=True)
    _mount("svclab-image", STAGE, "tmpfs", MS_NOSUID | MS_NODEV,
           f"mode=755,size={STAGE_SIZE}")
    stage = Path(STAGE) / "nginx"
    _fill_stage(stage)
    present = {target for target, _ in COVERED if os.path.exists(target)}
    with open("/proc/self/mountinfo") as mountinfo:
        table = mount_table(mountinfo.read())
    for cover in plan_covers(str(stage), present):
        _lay(cover, table)
    Path(READY).touch()


def image_argv(argv: list[str]) -> list[str]:
    """What runs once the layout is there: the entrypoint's arguments, or the default."""
    if argv and argv[0] in ENTRYPOINTS:
        argv = argv[1:]
    return list(argv) or list(DEFAULT_ARGV)


def main(argv: list[str] | None = None) -> int:
    launch = split_launch(sys.argv[1:] if argv is None else argv)
    try:
        lay_out_image()
    except OSError as err:
        print(f"svclab nginx image: cannot lay out the image's files: {err}", file=sys.stderr)
        return 1
    run = image_argv(list(launch.argv))
    try:
        os.execvp(run[0], run)
    except OSError as err:
        print(f'exec: "{run[0]}": {err.strerror}', file=sys.stderr)
        return 127


if __name__ == "__main__":
    sys.exit(main())
