"""topo/pod_volumes.py in a throwaway mount namespace (root): volumes appear at their
paths in that namespace only, new folders are made there and never on the machine, a
read-only volume takes a nested mount, an update swaps the files and a sub path keeps
what it had, as in Kubernetes."""
from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

import pytest

from base.cri import PodVolume, VolumeFile, VolumeMount
from topo.pod_volumes import encode_plan, set_up_in_pod, update_volume

pytestmark = pytest.mark.root
TAG = uuid.uuid4().hex[:8]
TOP = f"/svtest-{TAG}"                         # a folder at the top: the root is covered
DEEP = f"/usr/share/svtest-{TAG}/html"         # parents missing under an existing folder
CONFIG = f"/etc/svtest-{TAG}"
FILE = f"/etc/svtest-{TAG}.conf"
# What hosts.py gives every pod before its volumes: a tmpfs of its own on /run.
POD_RUN = "mount -t tmpfs -o mode=755,size=4m svclab-pod-run /run"


@pytest.fixture
def holder():
    """A process in a private mount namespace of its own, standing for a pod host."""
    proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sleep", "120"])
    try:
        deadline = time.monotonic() + 5
        while os.readlink(f"/proc/{proc.pid}/ns/mnt") == os.readlink("/proc/self/ns/mnt"):
            assert time.monotonic() < deadline, "unshare did not make a namespace"
            time.sleep(0.01)
        subprocess.run(["nsenter", f"--target={proc.pid}", "--mount", "sh", "-ec", POD_RUN],
                       check=True, timeout=10)
        yield proc.pid
    finally:
        proc.kill()
        proc.wait(5)


def popen_in(pid):
    def start(host, argv, *, record, **popen_args):
        assert not record
        return subprocess.Popen(["nsenter", f"--target={pid}", "--mount", "--", *argv],
                                **popen_args), None
    return start


def inside(pid: int, script: str) -> str:
    return subprocess.run(["nsenter", f"--target={pid}", "--mount", "sh", "-c", script],
                          capture_output=True, text=True, timeout=10).stdout


VOLUMES = (PodVolume("config", "files", "kubernetes.io~configmap",
                     (VolumeFile("app.conf", b"v1\n"), VolumeFile("dir/x", b"x", 0o600))),
           PodVolume("cache", "emptyDir", "kubernetes.io~empty-dir"))
MOUNTS = (VolumeMount("config", CONFIG, read_only=True),
          VolumeMount("cache", f"{CONFIG}/nested"),
          VolumeMount("config", FILE, sub_path="app.conf", read_only=True),
          VolumeMount("cache", TOP), VolumeMount("cache", DEEP))


def test_volumes_appear_in_the_namespace_only_and_follow_updates(holder):
    hosts_before = inside(holder, "cat /etc/hosts")
    set_up_in_pod(popen_in(holder), "pod", sys.executable, encode_plan(VOLUMES, MOUNTS))
    assert inside(holder, f"cat {CONFIG}/app.conf {FILE}") == "v1\nv1\n"
    assert inside(holder, f"stat -L -c %a {CONFIG}/dir/x") == "600\n"
    assert inside(holder, f"touch {CONFIG}/new 2>&1 || echo refused").endswith("refused\n")
    assert inside(holder, f"echo hi > {TOP}/f && cat {DEEP}/f {CONFIG}/nested/f") == "hi\nhi\n"
    assert inside(holder, "cat /etc/hosts") == hosts_before       # the covered /etc is whole
    assert inside(holder, "ls /usr/share | wc -l").strip() == str(len(
        os.listdir("/usr/share")) + 1)
    for path in (TOP, CONFIG, FILE, os.path.dirname(DEEP)):
        assert not os.path.exists(path), f"{path} appeared on the machine"

    assert update_volume(holder, "kubernetes.io~configmap/config", [("app.conf", b"v2\n", 0o644)])
    assert inside(holder, f"cat {CONFIG}/app.conf {FILE}") == "v2\nv1\n"   # a sub path stays
    assert inside(holder, f"ls {CONFIG}").split() == ["app.conf", "nested"]
