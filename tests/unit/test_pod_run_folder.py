"""A pod's own /run (no root): where the kubelet's projected token lands, which of
the machine's /run a pod keeps, and the pod plan carrying the kubelet's volumes.
(The /run itself, as a pod sees it: tests/integration/test_pod_sandbox.py.)"""
from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from base.cri import PodSandboxConfig, ProjectedFiles
from base.errors import LabError
from controlplane.kubelet.serviceaccount import MOUNT_PATH, projected_files
from topo.plan import plan_pod
from topo.pod_sandbox import kept_under_run, write_projected
from topo.spec import load_spec


def test_projected_files_are_written_one_folder_per_volume(tmp_path):
    volume = projected_files("eyJtoken", "-----BEGIN CERTIFICATE-----\n", "team")
    placed = write_projected(tmp_path / "volumes", (volume,))
    assert placed == ((str(tmp_path / "volumes" / "0"),
                       "/run/secrets/kubernetes.io/serviceaccount"),)
    folder = Path(placed[0][0])
    assert sorted(p.name for p in folder.iterdir()) == ["ca.crt", "namespace", "token"]
    assert (folder / "token").read_text() == "eyJtoken"
    assert (folder / "namespace").read_text() == "team"


def test_only_folders_under_run_can_be_projected(tmp_path):
    with pytest.raises(LabError, match="/etc/app"):
        write_projected(tmp_path, (ProjectedFiles("/etc/app", (("a", "b"),)),))


def test_the_lab_state_folder_is_kept_only_when_it_lives_under_run(tmp_path):
    assert kept_under_run(Path("/run/svclab/lab1/hosts/p1")) == ("/run/svclab",)
    assert kept_under_run(tmp_path) == ()


def test_the_pod_plan_carries_the_kubelets_volumes():
    spec = load_spec(None)
    volume = projected_files("t", "ca", "default")
    plan = plan_pod(spec, 1, "p7", "web", "default", ipaddress.ip_address("192.168.1.7"),
                    PodSandboxConfig(hostname="web", volumes=(volume,)))
    assert plan.pod.volumes == (volume,)
    assert volume.path == MOUNT_PATH
