"""`svclab capture`: tcpdump inside chosen lab hosts, one pcap per host.

`with Capture(lab, [("web-1", None), ("ip-172-31-0-11", None)], out_dir):`
starts one tcpdump in each host's namespaces (never the host's own: the
namespace is checked before start and the running tcpdump's namespace is
checked again once it listens), returns only when every tcpdump is really
capturing ("listening on" on its stderr), and on exit stops them with SIGINT
(bounded wait, then SIGKILL), reads tcpdump's packet counts and writes
capture.json beside the pcaps: each host's lab name, kind, namespace, node and
interfaces (addresses, and the veth peer from the lab's link plan).

tcpdump writes the pcap to its stdout, a file this process opened: the file
lands where the caller asked whatever the host's mount namespace looks like,
and tcpdump's privilege drop cannot make it unwritable.
"""
from __future__ import annotations

import datetime
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from base.errors import CommandError, LabError, LabTimeout, UsageError
from probes.capture.meta import (
    HostCapture,
    PacketStats,
    host_label,
    lab_links,
    parse_ip_addr,
    parse_link_type,
    parse_tcpdump_stats,
    pcap_name,
    peers_of,
    render_capture_json,
)
from topo.netns import HOST_CWD, MNEXEC, ensure_lab_namespace, netns_inode, run_in
from topo.plan import plan_lab
from topo.spec import load_spec
from topo.state import HostRecord, LabPaths, LabState, read_state

TCPDUMP = "tcpdump"
READY_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
BUFFER_KIB = 16384         # kernel ring per tcpdump: bursts of ~100k small packets fit
# tcpdump (without --immediate-mode, so libpcap uses TPACKET_V3 blocks that pack
# packets tightly) sees a packet at the latest when the kernel retires its
# block: tcpdump's 1000 ms timeout.  Stopping waits that long after the
# traffic, then until no pcap grows, so SIGINT never cuts off queued packets.
# (--immediate-mode would use TPACKET_V2, whose frames are sized by the 256 KiB
# snap length on `any`: a few dozen frames, and bursts are dropped.)
BLOCK_RETIRE_S = 1.0
QUIET_S = 0.15
CAPTURE_JSON = "capture.json"


class CaptureError(LabError):
    """A tcpdump that did not start or stop as it should; carries argv, exit code, stderr."""

    def __init__(self, message: str, argv: Sequence[str] = (), returncode: int | None = None,
                 stderr: str = ""):
        detail = f"\n{stderr.strip()}" if stderr.strip() else ""
        super().__init__(message + detail)
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr


class CaptureFilterError(CaptureError, UsageError):
    """tcpdump rejected the --filter expression (exit code 2)."""


class CaptureInterfaceError(CaptureError, UsageError):
    """The --interface does not exist in a chosen host (exit code 2)."""


class _Tcpdump:
    """One tcpdump process in one host, and the thread that reads its stderr."""

    def __init__(self, record: HostRecord, argv: list[str], pcap: Path):
        self.record = record
        self.argv = argv
        self.pcap = pcap
        self.stderr_lines: list[str] = []
        self.listening = threading.Event()
        self.exited = threading.Event()
        with open(pcap, "wb") as sink:
            self.proc = subprocess.Popen([MNEXEC, "-a", str(record.pid), *argv],
                                         stdin=subprocess.DEVNULL, stdout=sink,
                                         stderr=subprocess.PIPE, text=True, cwd=HOST_CWD)
        self.reader = threading.Thread(target=self._read_stderr, daemon=True,
                                       name=f"tcpdump-{record.host}")
        self.reader.start()

    def _read_stderr(self) -> None:
        for line in self.proc.stderr:
            self.stderr_lines.append(line)
            if "listening on" in line:
                self.listening.set()
        self.exited.set()

    @property
    def stderr(self) -> str:
        return "".join(self.stderr_lines)

    def stop(self, timeout: float) -> None:
        """SIGINT (tcpdump flushes and prints its counts), SIGKILL if it lingers."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=timeout)
        self.reader.join(timeout=timeout)
        self.proc.stderr.close()


class Capture:
    """Context manager: tcpdump in each chosen host while the block runs.

    hosts: (name, namespace) pairs as users name them (namespace only for
    pods; None = default).  After the block, `hosts` holds a HostCapture per
    host (with tcpdump's counts) and `counts` maps host label -> packets
    captured.
    """

    def __init__(self, lab: str, hosts: Sequence[tuple[str, str | None]], out_dir: str | Path,
                 filter: str | None = None, interfaces: str = "any", *,
                 ready_timeout: float = READY_TIMEOUT, stop_timeout: float = STOP_TIMEOUT):
        if not hosts:
            raise UsageError("--on: at least one host to capture on")
        if not interfaces or interfaces.startswith("-") or any(c.isspace() for c in interfaces):
            raise UsageError(f"--interface: {interfaces!r} is not an interface name or 'any'")
        self.lab = lab
        self.wanted = list(hosts)
        self.out_dir = Path(out_dir)
        self.filter = filter.strip() if filter and filter.strip() else None
        if self.filter and self.filter.startswith("-"):
            raise UsageError(f"--filter: {self.filter!r} is not a pcap filter expression")
        self.interface = interfaces
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        self.hosts: list[HostCapture] = []
        self._running: list[tuple[_Tcpdump, HostCapture]] = []
        self._started = ""

    @property
    def counts(self) -> dict[str, int | None]:
        return {h.label: h.packets.captured for h in self.hosts}

    @property
    def manifest(self) -> Path:
        return self.out_dir / CAPTURE_JSON

    def __enter__(self) -> Capture:
        state = read_state(LabPaths(self.lab))
        records = self._resolve(state)
        if self.filter:
            self._check_filter(records[0])
        self.out_dir.mkdir(parents=True, exist_ok=True)
        described = self._describe_hosts(state, records)
        self._started = _now()
        try:
            for record, host in zip(records, described):
                self._start(record, host)
            self._wait_listening()
        except BaseException:
            self._stop_all(failed=True)
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._stop_all()

    # -- internals -------------------------------------------------------

    def _resolve(self, state: LabState) -> list[HostRecord]:
        records, seen = [], set()
        for name, namespace in self.wanted:
            record = state.find_host(name, namespace)
            if record.kind == "bridge":
                raise UsageError(f"--on: {name!r} is a bridge; capture on a host attached to it")
            if not record.proc.alive():
                raise LabError(f"host {name!r} of lab {self.lab!r} is not running")
            if record.host not in seen:
                seen.add(record.host)
                records.append(record)
        return records

    def _check_filter(self, record: HostRecord) -> None:
        """Compile the filter once (`tcpdump -d`, nothing captured) so a typo is a usage error."""
        argv = [TCPDUMP, "-i", self.interface, "-d", "--", self.filter]
        try:
            run_in(record.pid, argv, timeout=10, where=record.name)
        except CommandError as err:
            if "No such device" in err.stderr:
                raise CaptureInterfaceError(
                    f"--interface: {self.interface!r} does not exist in {record.name}", argv,
                    err.returncode, err.stderr) from err
            raise CaptureFilterError(f"--filter: tcpdump rejected {self.filter!r}", argv,
                                     err.returncode, err.stderr) from err

    def _describe_hosts(self, state: LabState, records: list[HostRecord]) -> list[HostCapture]:
        links = lab_links(plan_lab(load_spec(LabPaths(self.lab).spec)).links, state)
        described = []
        for record in records:
            text = run_in(record.pid, ["ip", "-j", "addr"], timeout=10, where=record.name)
            label = host_label(record)
            described.append(HostCapture(
                label=label, host=record.host, kind=record.kind, namespace=record.namespace,
                node=_node_of(record), pcap=pcap_name(label),
                interfaces=parse_ip_addr(text, peers_of(record.host, links, state))))
        return described

    def _start(self, record: HostRecord, host: HostCapture) -> None:
        ensure_lab_namespace(record.pid)
        argv = [TCPDUMP, "-i", self.interface, "-n", "-U", "-B", str(BUFFER_KIB), "-w", "-"]
        if self.filter:
            argv += ["--", self.filter]
        self._running.append((_Tcpdump(record, argv, self.out_dir / host.pcap), host))

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        for dump, _ in self._running:
            while not dump.listening.is_set():
                if dump.exited.is_set() or dump.proc.poll() is not None:
                    dump.reader.join(timeout=self.stop_timeout)
                    self._raise_start_failure(dump)
                if time.monotonic() >= deadline:
                    raise LabTimeout(f"tcpdump in {dump.record.name} did not start listening "
                                     f"within {self.ready_timeout} s: {dump.stderr.strip()}")
                dump.listening.wait(0.05)
            # Belt and braces: the running tcpdump must sit in the lab host's namespace.
            if netns_inode(dump.proc.pid) != dump.record.netns:
                raise CaptureError(f"tcpdump for {dump.record.name} runs outside the host's "
                                   "network namespace; stopped", dump.argv)

    def _settle(self) -> None:
        """Let every tcpdump write out what the kernel still holds (bounded wait)."""
        time.sleep(BLOCK_RETIRE_S + QUIET_S)
        deadline = time.monotonic() + self.stop_timeout
        sizes = None
        while time.monotonic() < deadline:
            now_sizes = [_size(dump.pcap) for dump, _ in self._running]
            if now_sizes == sizes:
                return
            sizes = now_sizes
            time.sleep(QUIET_S)

    def _raise_start_failure(self, dump: _Tcpdump) -> None:
        stderr = dump.stderr
        returncode = dump.proc.wait(timeout=self.stop_timeout)
        if "No such device" in stderr:
            raise CaptureInterfaceError(
                f"--interface: {self.interface!r} does not exist in {dump.record.name}",
                dump.argv, returncode, stderr)
        raise CaptureError(f"tcpdump in {dump.record.name} exited with {returncode} "
                           "before it listened", dump.argv, returncode, stderr)

    def _stop_all(self, failed: bool = False) -> None:
        """Stop every tcpdump; write capture.json, or on a failed start remove the pcaps."""
        if not self._running:
            return
        if not failed:
            self._settle()
        for dump, _ in self._running:
            if dump.proc.poll() is None:
                dump.proc.send_signal(signal.SIGINT)
        for dump, _ in self._running:
            dump.stop(self.stop_timeout)
        self.hosts = [HostCapture(
            label=host.label, host=host.host, kind=host.kind, namespace=host.namespace,
            node=host.node, pcap=host.pcap, interfaces=host.interfaces,
            link_type=parse_link_type(dump.stderr), packets=parse_tcpdump_stats(dump.stderr))
            for dump, host in self._running]
        if failed:
            for dump, _ in self._running:
                dump.pcap.unlink(missing_ok=True)
            self._running = []
            return
        self._running = []
        self.manifest.write_text(render_capture_json(
            self.lab, self.filter, self.interface, self._started, _now(), self.hosts))


def capture_for(seconds: float, lab: str, hosts: Sequence[tuple[str, str | None]],
                out_dir: str | Path, filter: str | None = None,
                interfaces: str = "any") -> list[HostCapture]:
    """Capture for a fixed time; returns each host's HostCapture (with packet counts)."""
    if seconds <= 0:
        raise UsageError(f"--duration: must be > 0, got {seconds}")
    with Capture(lab, hosts, out_dir, filter, interfaces) as capture:
        time.sleep(seconds)
    return capture.hosts


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


__all__ = ["Capture", "CaptureError", "CaptureFilterError", "CaptureInterfaceError",
           "HostCapture", "PacketStats", "capture_for", "CAPTURE_JSON"]


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return -1


def _node_of(record: HostRecord) -> str | None:
    """The node a host runs on: a pod's node, a node itself, else None."""
    if record.kind == "pod":
        return record.node
    return record.name if record.kind == "node" else None
