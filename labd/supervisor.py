"""Keeps the lab's per-host agents running, and says when it had to restart one.

Each supervised program runs inside a lab host (started with LabNetwork.spawn, so its
PID is recorded).  If it dies, the supervisor starts it again after a short
back-off and counts the restart; `svclab status` shows the counts.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from topo.cleanup import stop_processes
from topo.network import LabNetwork
from topo.state import ProcessRecord

log = logging.getLogger("svclab.supervisor")
CHECK_INTERVAL = 0.2
MAX_BACKOFF = 5.0


@dataclass
class Program:
    key: str               # e.g. "proxy/ip-172-31-0-11"
    host: str              # Mininet host name
    argv: list[str]
    record: ProcessRecord | None = None
    restarts: int = 0
    backoff: float = field(default=0.2)


class Supervisor:
    """Starts programs in hosts and restarts them when they die."""

    def __init__(self, lab: LabNetwork, on_change=None):
        self.lab = lab
        self.programs: dict[str, Program] = {}
        self.on_change = on_change or (lambda: None)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Supervisor:
        self._thread = threading.Thread(target=self._watch, name="supervisor", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def add(self, key: str, host: str, argv: list[str]) -> Program:
        return self.add_all([(key, host, argv)])[0]

    def add_all(self, programs: list[tuple[str, str, list[str]]]) -> list[Program]:
        """Start (key, host, argv) programs; the state is written once, after the
        last (a hundred agents had written it two hundred times)."""
        added = []
        try:
            for key, host, argv in programs:
                program = Program(key, host, argv)
                program.record = self.lab.spawn(host, argv, role=key, save=False)
                self.programs[key] = program
                added.append(program)
        finally:
            self.lab.save_state()
            self.on_change()
        return added

    def remove(self, key: str, timeout: float = 5.0) -> None:
        """Stop a program for good (its node is leaving): by its recorded PID."""
        program = self.programs.pop(key, None)
        if program is None:
            return
        if program.record is not None:
            stop_processes([program.record.proc], timeout=timeout)
            self.lab.forget_process(program.record)
        self.on_change()

    def summary(self) -> dict[str, dict]:
        return {k: {"pid": p.record.pid if p.record else None, "restarts": p.restarts}
                for k, p in self.programs.items()}

    def _watch(self) -> None:
        while not self._stopping.wait(CHECK_INTERVAL):
            for program in list(self.programs.values()):
                if program.record is not None and not program.record.proc.alive():
                    self._restart(program)

    def _restart(self, program: Program) -> None:
        log.warning("%s (pid %d) died; restarting in %.1f s", program.key,
                    program.record.pid, program.backoff)
        if self._stopping.wait(program.backoff) or self.programs.get(program.key) is not program:
            return      # the lab is stopping, or the program was removed
        self.lab.forget_process(program.record)
        program.record = self.lab.spawn(program.host, program.argv, role=program.key)
        program.restarts += 1
        program.backoff = min(program.backoff * 2, MAX_BACKOFF)
        self.on_change()
