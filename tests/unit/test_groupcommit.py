"""base/groupcommit.py: callers share writes, and none returns before its change is written."""
from __future__ import annotations

import threading
import time

import pytest

from base.groupcommit import GroupCommit
from base.waiting import wait_until


class Disk:
    """A state (a counter callers bump) and what the last write held."""

    def __init__(self, seconds: float = 0.0, cpu_seconds: float = 0.0):
        self.lock = threading.Lock()
        self.version = 0
        self.on_disk = 0
        self.writes = 0
        self.seconds = seconds              # waited (as for a busy machine)
        self.cpu_seconds = cpu_seconds      # worked (as to encode the state)

    def change(self) -> int:
        with self.lock:
            self.version += 1
            return self.version

    def write(self) -> None:
        with self.lock:
            snapshot = self.version
        time.sleep(self.seconds)
        began = time.thread_time()
        while time.thread_time() - began < self.cpu_seconds:
            pass
        self.on_disk = snapshot
        self.writes += 1


def test_a_lone_caller_writes_at_once():
    disk = Disk()
    commit = GroupCommit(disk.write)
    disk.change()
    began = time.monotonic()
    commit()
    assert disk.on_disk == 1 and disk.writes == 1
    assert time.monotonic() - began < 0.5


def test_callers_share_writes_and_each_returns_after_its_change_is_written():
    disk = Disk(seconds=0.02)
    commit = GroupCommit(disk.write)
    late: list[tuple[int, int]] = []

    def caller():
        mine = disk.change()
        commit()
        if disk.on_disk < mine:
            late.append((mine, disk.on_disk))

    threads = [threading.Thread(target=caller) for _ in range(200)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert late == []
    assert disk.on_disk == 200
    assert commit.commits == disk.writes


def test_every_caller_that_arrives_during_a_write_shares_the_next_one():
    disk = Disk()
    release = threading.Event()
    held = []

    def write():
        if not held:                  # the first write waits until everyone has asked
            held.append(True)
            release.wait(10)
        disk.write()

    commit = GroupCommit(write, spacing=0.0)

    def caller():
        disk.change()
        commit()

    first = threading.Thread(target=caller)
    first.start()
    wait_until("the first write to start", lambda: held, timeout=10)
    others = [threading.Thread(target=caller) for _ in range(199)]
    for thread in others:
        thread.start()
    wait_until("199 callers waiting", lambda: commit._asked == 200, timeout=10)
    release.set()
    for thread in [first, *others]:
        thread.join(10)
    assert disk.writes == 2           # the first caller's write, then one for the 199
    assert disk.on_disk == 200


def test_writes_are_spaced_by_their_own_cost():
    disk = Disk(cpu_seconds=0.05)
    commit = GroupCommit(disk.write, spacing=2.0)
    disk.change()
    commit()
    disk.change()
    began = time.monotonic()
    commit()                    # waits ~2 x 50 ms of CPU after the first write ended
    assert time.monotonic() - began >= 0.09 + 0.05


def test_a_write_slowed_by_waiting_does_not_hold_the_next_one_back():
    # A write that took long because its thread waited (a busy process) is
    # not a costly one: spacing it by its wall time made a thousand pods'
    # kubelets wait seconds for the next write.
    disk = Disk(seconds=0.3)
    commit = GroupCommit(disk.write, spacing=4.0)
    disk.change()
    commit()
    disk.change()
    began = time.monotonic()
    commit()
    assert time.monotonic() - began < 0.3 + 0.25     # its own 0.3 s, not 4 x 0.3 s more


def test_a_failed_write_raises_for_its_caller_and_the_next_caller_writes_again():
    disk = Disk()
    failures = [OSError("disk full")]

    def write():
        if failures:
            raise failures.pop()
        disk.write()

    commit = GroupCommit(write)
    disk.change()
    with pytest.raises(OSError, match="disk full"):
        commit()
    assert disk.writes == 0
    commit()
    assert disk.on_disk == 1 and disk.writes == 1


def test_a_caller_waits_at_most_its_timeout():
    release = threading.Event()
    commit = GroupCommit(lambda: release.wait(10), timeout=0.2)
    leader = threading.Thread(target=commit)
    leader.start()
    time.sleep(0.05)
    began = time.monotonic()
    with pytest.raises(TimeoutError, match="no state commit within 0.2 s"):
        commit()
    assert time.monotonic() - began < 1.0
    release.set()
    leader.join(5)
