"""A container or exec process killed before it leads its own process group (its
`setsid --ctty` has not run yet) dies all the same: killpg finds no group then."""
from __future__ import annotations

import os
import signal
import subprocess

from base.waiting import wait_until
from topo.sessions import Child


def test_a_process_not_yet_leading_its_group_is_killed_alone():
    popen = subprocess.Popen(["sleep", "30"])          # still in our process group
    assert os.getpgid(popen.pid) == os.getpgrp()
    child = Child(popen)
    try:
        child.kill_group(signal.SIGKILL)
        assert child.wait(5)
        assert child.code == 128 + signal.SIGKILL
    finally:
        if popen.poll() is None:
            popen.kill()
        child.close()


def test_a_group_leader_takes_its_group_with_it():
    popen = subprocess.Popen(["sh", "-c", "sleep 30 & echo $!; wait"], start_new_session=True,
                             stdout=subprocess.PIPE, text=True)
    member = int(popen.stdout.readline())
    child = Child(popen)
    try:
        child.kill_group(signal.SIGKILL)
        assert child.wait(5)
        assert child.code == 128 + signal.SIGKILL
        assert wait_until("the group's other member gone", lambda: _gone(member), timeout=5)
    finally:
        popen.stdout.close()
        child.close()


def _gone(pid: int) -> bool:
    """Exited (a zombie waiting for whoever adopted it counts)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True
