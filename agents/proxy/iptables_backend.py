"""The iptables backend: the only part of the proxy that touches the kernel.

A full sync reads our current chains with iptables-save (nat and filter),
renders the RuleSet against them and applies the text with ONE
``iptables-restore --noflush``; a partial sync (kube-proxy's) skips the
iptables-save and rewrites only the chains of services that changed, which
matters because iptables-nft's --noflush restore slows down with every
chain present.  iptables-restore commits table by table,
so when it fails on a later table after committing an earlier one, the
backend puts the committed tables back to the state it read before (our
chains only) and then raises IptablesRestoreError naming the failing line.
Commands run through an injectable ``run`` callable, optionally inside a
network namespace (``ip netns exec NAME``).

With iptables-nft the rules live in nf_tables, so the ruleset generation
(NFT_MSG_GETGEN) tells whether anybody committed since our last restore:
``unchanged()`` lets the agent skip its periodic resync.  The generation
is read just before and after each restore (iptables-nft commits once per
table that changed, so the count is not known in advance); a commit by
someone else during our own restore goes unnoticed until the next change
of the generation.  iptables-legacy has no generation: never skipped.
Which one runs is asked of the binary itself (``variant()``), never guessed
from its name: in a lab node `iptables-restore` is whichever the spec's
``iptablesBackend`` selected through the node's own /etc/alternatives, and a
generation skip under legacy would never see a change (legacy commits do not
move nf_tables' generation).
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from agents.proxy.errors import ContextLine, IptablesRestoreError, ProxyCommandError
from agents.proxy.iptables_render import NAT_CHAINS, render
from agents.proxy.iptables_state import (
    IptablesState,
    parse_iptables_save,
    render_cleanup,
    render_rollback,
    state_after,
)
from agents.proxy.nfnetlink import NfNetlink
from agents.proxy.ruleset import RuleSet

CONTEXT_LINES = 3
_LINE_PATTERNS = (re.compile(r"Error occurred at line:\s*(\d+)"),
                  re.compile(r"line\s+(\d+)\s+failed"))


@dataclass(frozen=True)
class CommandResult:
    """What a finished command returned."""

    returncode: int
    stdout: str
    stderr: str


Runner = Callable[[Sequence[str], "str | None", float], CommandResult]


def subprocess_runner(argv: Sequence[str], input_text: str | None,
                      timeout_s: float) -> CommandResult:
    """Run argv with input_text on stdin; raise ProxyCommandError on timeout."""
    try:
        done = subprocess.run(list(argv), input=input_text, text=True,
                              capture_output=True, timeout=timeout_s,
                              check=False)
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr if isinstance(exc.stderr, str) else ""
        raise ProxyCommandError(tuple(argv), None, stderr,
                           f"timed out after {timeout_s} s") from exc
    except OSError as exc:
        raise ProxyCommandError(tuple(argv), None, str(exc),
                           "could not start") from exc
    return CommandResult(done.returncode, done.stdout, done.stderr)


@dataclass(frozen=True)
class SyncReport:
    """What one sync applied."""

    lines: int
    stale_chains: tuple[str, ...]
    inserted_jumps: int
    partial: bool = False


def failing_line(stderr: str) -> int | None:
    """The input line iptables-restore blamed (legacy and nft wording)."""
    for pattern in _LINE_PATTERNS:
        found = pattern.search(stderr)
        if found:
            return int(found.group(1))
    return None


def context_around(text: str, line: int | None,
                   radius: int = CONTEXT_LINES) -> tuple[ContextLine, ...]:
    if line is None:
        return ()
    lines = text.splitlines()
    first = max(1, line - radius)
    last = min(len(lines), line + radius)
    return tuple(ContextLine(n, lines[n - 1]) for n in range(first, last + 1))


def tables_committed_before(text: str, line: int | None) -> tuple[str, ...]:
    """Tables whose COMMIT precedes line (all tables if line is unknown)."""
    done: list[str] = []
    table = ""
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if stripped.startswith("*"):
            table = stripped[1:]
        elif stripped == "COMMIT" and (line is None or number < line):
            done.append(table)
    return tuple(done)


class IptablesBackend:
    """Applies rule sets with iptables-restore, in a netns if given.

    ``netlink`` reads the ruleset generation (default: a socket in
    ``netns`` when ``run`` is the real runner and the restore binary is
    not a legacy one; None: no generation, every resync runs).
    """

    def __init__(self, run: Runner = subprocess_runner,
                 netns: str | None = None, *,
                 restore_binary: str = "iptables-restore",
                 save_binary: str = "iptables-save",
                 timeout_s: float = 120.0, lock_wait_s: int = 5,
                 netlink: NfNetlink | None = None) -> None:
        self._run = run
        self.netns = netns
        self.restore_binary = restore_binary
        self.save_binary = save_binary
        self.timeout_s = timeout_s
        self.lock_wait_s = lock_wait_s
        self._known: IptablesState | None = None
        self.netlink = netlink if netlink is not None else (
            NfNetlink(netns, timeout_s)
            if run is subprocess_runner and "legacy" not in restore_binary
            else None)
        self._nf_tables: bool | None = None   # iptables-nft? asked once
        self._generation: int | None = None

    def variant(self) -> str:
        """Which iptables the restore binary is, by its own word (`--version`
        says "(nf_tables)" or "(legacy)"), asked once: the name alone does not
        tell, as a node's alternatives may point `iptables-restore` at either
        (topo/iptables_alt.py)."""
        if self._nf_tables is None:
            version = self._run(self._argv(self.restore_binary, "--version"),
                                None, self.timeout_s)
            self._nf_tables = "nf_tables" in version.stdout + version.stderr
        return "nf_tables" if self._nf_tables else "legacy"

    def _generation_now(self) -> int | None:
        """The ruleset generation, if the rules live in nf_tables."""
        if self.netlink is None:
            return None
        return self.netlink.generation() if self.variant() == "nf_tables" else None

    def unchanged(self) -> bool:
        """True when nobody committed to nf_tables since our last restore."""
        return (self._known is not None and self._generation is not None
                and self._generation_now() == self._generation)

    def _argv(self, *command: str) -> tuple[str, ...]:
        prefix = ("ip", "netns", "exec", self.netns) if self.netns else ()
        return prefix + command

    def _checked(self, argv: tuple[str, ...], input_text: str | None) -> str:
        result = self._run(argv, input_text, self.timeout_s)
        if result.returncode != 0:
            raise ProxyCommandError(argv, result.returncode, result.stderr)
        return result.stdout

    def save(self, table: str) -> str:
        """iptables-save output of one table."""
        return self._checked(self._argv(self.save_binary, "-t", table), None)

    def read_state(self) -> IptablesState:
        """Our chains and jumps as they are now (nat and filter)."""
        return parse_iptables_save(
            self.save("nat") + "\n" + self.save("filter"))

    def restore_argv(self) -> tuple[str, ...]:
        return self._argv(self.restore_binary, "--noflush",
                          "-w", str(self.lock_wait_s))

    def apply(self, text: str, state: IptablesState) -> None:
        """Apply rendered text in one restore; roll back and raise on error.

        state must be what was read before text was rendered: it is what
        committed tables are put back to when a later table fails.
        """
        argv = self.restore_argv()
        result = self._run(argv, text, self.timeout_s)
        if result.returncode == 0:
            return
        line = failing_line(result.stderr)
        committed = tables_committed_before(text, line)
        stderr = result.stderr
        rolled_back: tuple[str, ...] = ()
        restorable = tuple(t for t in committed if t in state.complete)
        if len(restorable) < len(committed):
            stderr += ("\ncannot roll back tables whose previous content is"
                       " unknown: " + ",".join(sorted(set(committed)
                                                      - set(restorable))))
        if restorable:
            undo = render_rollback(state, text, restorable)
            undone = self._run(argv, undo, self.timeout_s)
            if undone.returncode == 0:
                rolled_back = restorable
            else:
                stderr += ("\nrollback of tables " + ",".join(restorable)
                           + " failed too: " + undone.stderr)
        raise IptablesRestoreError(argv, result.returncode, stderr, line,
                                   context_around(text, line), rolled_back)

    def sync(self, ruleset: RuleSet,
             changed_services: frozenset[tuple[str, str]] | None = None
             ) -> SyncReport:
        """Apply ruleset in one restore.

        A full sync (changed_services None, or no successful sync yet, or
        the last one failed) reads the state with iptables-save and rewrites
        every chain.  A partial sync trusts the state left by the last
        successful sync and rewrites only the chains of changed_services
        ((namespace, name) pairs) plus the top-level chains.
        """
        partial = changed_services is not None and self._known is not None
        ours, self._generation = self._generation, None
        before = self._generation_now()
        state = self._known if partial else self.read_state()
        rendered = render(ruleset, state,
                          changed_services if partial else None)
        self._known = None            # whatever happens, re-read next time
        self.apply(rendered.text, state)
        if before is not None and (not partial or ours == before):
            self._generation = self._generation_now()
        self._known = state_after(state, rendered.text,
                                  rendered.active_chains | set(NAT_CHAINS))
        lines = rendered.text.splitlines()
        return SyncReport(
            lines=len(lines), partial=partial,
            stale_chains=tuple(line[3:] for line in lines
                               if line.startswith("-X ")),
            inserted_jumps=sum(1 for line in lines if line.startswith("-I ")))

    def cleanup(self) -> None:
        """Remove every KUBE-* chain and our jumps; leave the rest alone."""
        self._known = self._generation = None
        state = self.read_state()
        text = render_cleanup(state)
        if text:
            self._checked(self.restore_argv(), text)
