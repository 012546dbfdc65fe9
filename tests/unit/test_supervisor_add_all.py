"""labd/supervisor.py: programs started together are recorded together, in one
state write after the last, and one that fails to start leaves the ones before
it recorded (a lab's cleanup goes by the records)."""
from __future__ import annotations

import pytest

from base.errors import LabError
from labd.supervisor import Supervisor
from topo.state import ProcessRecord


class FakeLab:
    def __init__(self, fail_on: str | None = None):
        self.fail_on = fail_on
        self.records: list[ProcessRecord] = []
        self.unsaved = 0
        self.writes: list[int] = []       # how many records each state write held

    def spawn(self, host, argv, role="", *, save=True):
        if role == self.fail_on:
            raise LabError(f"host {host} is gone")
        record = ProcessRecord(host, 1000 + len(self.records), 1, list(argv), role)
        self.records.append(record)
        if save:
            self.save_state()
        return record

    def save_state(self):
        self.writes.append(len(self.records))


def programs(*nodes):
    return [(f"proxy/{n}", f"h-{n}", ["python", "-m", "agents.proxy", "--node", n])
            for n in nodes]


def test_programs_started_together_are_written_once():
    lab = FakeLab()
    changes = []
    supervisor = Supervisor(lab, on_change=lambda: changes.append(len(lab.records)))
    added = supervisor.add_all(programs("a", "b", "c"))
    assert [p.key for p in added] == ["proxy/a", "proxy/b", "proxy/c"]
    assert lab.writes == [3] and changes == [3]
    assert supervisor.summary() == {f"proxy/{n}": {"pid": 1000 + i, "restarts": 0}
                                    for i, n in enumerate("abc")}


def test_a_failed_start_keeps_the_ones_before_it_recorded():
    lab = FakeLab(fail_on="proxy/b")
    supervisor = Supervisor(lab)
    with pytest.raises(LabError, match="h-b is gone"):
        supervisor.add_all(programs("a", "b", "c"))
    assert lab.writes == [1]
    assert list(supervisor.programs) == ["proxy/a"]
