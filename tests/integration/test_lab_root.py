"""topo/labroot.py: a lab's folder gets a tmpfs of its own where the machine's
run folder is on disk, and leaves nothing in the mount table when removed."""
from __future__ import annotations

import os
import uuid

import pytest

from topo.cleanup import clean_lab
from topo.labroot import filesystem_of, make_lab_root, own_tmpfs, remove_lab_root
from topo.state import LabPaths

pytestmark = pytest.mark.root


def _mount_table() -> list[tuple[str, str, str]]:
    with open("/proc/self/mountinfo") as handle:
        rows = [line.split() for line in handle]
    return [(r[4], r[r.index("-") + 1], r[r.index("-") + 2]) for r in rows]


@pytest.fixture
def run_dir(tmp_path, monkeypatch):
    if os.geteuid() != 0:
        pytest.fail("this test needs root (mount)")
    monkeypatch.setenv("SVCLAB_RUN_DIR", str(tmp_path / "run"))
    return tmp_path / "run"


def test_a_lab_folder_on_disk_gets_its_own_tmpfs_and_loses_it_with_the_folder(run_dir):
    before = _mount_table()
    paths = LabPaths(f"root-{uuid.uuid4().hex[:6]}")
    on_disk = filesystem_of(run_dir.parent) not in ("tmpfs", "ramfs")
    assert make_lab_root(paths) is on_disk
    assert oct(paths.root.stat().st_mode & 0o777) == "0o700"
    if on_disk:
        assert (str(paths.root), "tmpfs", f"svclab-{paths.name}") in _mount_table()
        assert own_tmpfs(paths)
        assert filesystem_of(paths.root / "state.json") == "tmpfs"
    (paths.root / "hosts").mkdir()
    (paths.root / "hosts" / "resolv.conf").write_text("nameserver 10.96.0.10\n")
    with open(paths.root / "lab.log", "ab"):      # held open, as an agent holds the log
        remove_lab_root(paths)
    assert not paths.root.exists()
    assert _mount_table() == before


def test_clean_of_a_lab_left_with_its_tmpfs_removes_it(run_dir):
    before = _mount_table()
    paths = LabPaths(f"root-{uuid.uuid4().hex[:6]}")
    make_lab_root(paths)
    (paths.root / "lab.log").write_text("the daemon died here\n")
    report = clean_lab(paths.name)
    assert report.state_removed and not paths.root.exists()
    assert _mount_table() == before


def test_another_tmpfs_on_the_folder_is_not_taken_for_the_labs(run_dir):
    paths = LabPaths(f"root-{uuid.uuid4().hex[:6]}")
    paths.root.mkdir(parents=True)
    assert not own_tmpfs(paths)                   # no mount at all
    os.makedirs(run_dir / "other")
    assert filesystem_of(run_dir / "other") == filesystem_of(run_dir.parent)
    remove_lab_root(paths)
    assert not paths.root.exists()
