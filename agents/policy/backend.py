"""The policy agent's kernel side: applies one node's rules in one transaction.

iptables mode: reads the filter table (``iptables-save -t filter``) for the
``cali-`` chains installed now and the jumps from FORWARD to cali-FORWARD,
renders the node's rules against them (render_iptables deletes chains no
longer needed) and applies the text with ONE ``iptables-restore --noflush``.
The same transaction makes the jump to cali-FORWARD the first rule of
FORWARD, and the only one: kube-proxy's agent inserts its KUBE-* jumps at the
top of FORWARD when they are missing, and KUBE-FORWARD accepts
masquerade-marked and established packets, so policy must come first.

nftables mode: ``table ip svclab-netpol`` replaced whole in ONE ``nft -f``.

Both tools apply atomically (iptables-restore commits the filter table at
once; we write no other table), so a refused file leaves the previous rules
in force; the error names the failing line.  The nat table (where topo owns
cali-POSTROUTING and cali-nat-outgoing) is never read or written.  Commands
run through an injectable ``run`` callable, optionally inside a network
namespace (``ip netns exec NAME``).  `iptables-save` and `iptables-restore`
are called by those names: in a lab node they are whichever variant the
spec's iptablesBackend selected through the node's own /etc/alternatives
(topo/iptables_alt.py), the same the proxy agent and topo's rules use.  This
agent keeps no state between syncs beyond the rendered text, so nothing in it
depends on the variant.
"""
from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from agents.policy.errors import PolicyApplyError, PolicyCommandError
from agents.policy.render_iptables import render_iptables
from agents.policy.render_nft import TABLE, render_nft
from agents.proxy.iptables_backend import (
    CommandResult,
    Runner,
    context_around,
    failing_line,
)
from agents.proxy.nft_backend import failing_position

TOP_CHAIN = "cali-FORWARD"
CHAIN_PREFIX = "cali-"
JUMP_COMMENT = "cali:svclab-netpol"
JUMP_RULE = f'-m comment --comment "{JUMP_COMMENT}" -j {TOP_CHAIN}'


def subprocess_runner(argv: Sequence[str], input_text: str | None,
                      timeout_s: float) -> CommandResult:
    """Run argv with input_text on stdin; PolicyCommandError if it cannot run."""
    try:
        done = subprocess.run(list(argv), input=input_text, text=True,
                              capture_output=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr if isinstance(exc.stderr, str) else ""
        raise PolicyCommandError(tuple(argv), None, stderr,
                                 f"timed out after {timeout_s} s") from exc
    except OSError as exc:
        raise PolicyCommandError(tuple(argv), None, str(exc), "could not start") from exc
    return CommandResult(done.returncode, done.stdout, done.stderr)


@dataclass(frozen=True)
class Rendered:
    """What one apply would write.

    ``rules_text`` is the renderer's output for the node's rules alone (equal
    texts mean equal rules: the agent skips the apply); ``repair`` lines fix
    what the live state lacks beyond that (the FORWARD jump); ``text`` is the
    whole input of the one command.
    """

    rules_text: str
    text: str
    repair: tuple[str, ...] = ()

    @property
    def lines(self) -> int:
        return self.text.count("\n")


@dataclass(frozen=True)
class FilterState:
    """Our part of the filter table as iptables-save shows it."""

    chains: frozenset[str]             # cali-* chains
    jumps: tuple[str, ...]             # FORWARD rules jumping to cali-FORWARD (specs)
    jump_first: bool                   # FORWARD's rule 1 is such a jump


def parse_filter(saved: str) -> FilterState:
    """The cali- chains and FORWARD jumps of `iptables-save -t filter` output."""
    chains: set[str] = set()
    jumps: list[str] = []
    first_forward: str | None = None
    for line in saved.splitlines():
        if line.startswith(":" + CHAIN_PREFIX):
            chains.add(line[1:].split()[0])
        elif line.startswith("-A FORWARD "):
            spec = line[len("-A FORWARD "):]
            if first_forward is None:
                first_forward = spec
            if spec.split()[-2:] == ["-j", TOP_CHAIN]:
                jumps.append(spec)
    return FilterState(frozenset(chains), tuple(jumps),
                       first_forward is not None and first_forward in jumps)


def jump_repair(state: FilterState) -> tuple[str, ...]:
    """restore lines making the jump to cali-FORWARD rule 1 of FORWARD, once."""
    if len(state.jumps) == 1 and state.jump_first:
        return ()
    return tuple(f"-D FORWARD {spec}" for spec in state.jumps) + (f"-I FORWARD 1 {JUMP_RULE}",)


def _with_lines(text: str, extra: Sequence[str]) -> str:
    """text with extra lines placed just before its last COMMIT."""
    if not extra:
        return text
    lines = text.rstrip("\n").split("\n")
    at = max((i for i, line in enumerate(lines) if line.strip() == "COMMIT"), default=None)
    if at is None:
        raise ValueError("iptables-restore text without COMMIT")
    return "\n".join(lines[:at] + list(extra) + lines[at:]) + "\n"


class _Commands:
    def __init__(self, run: Runner, netns: str | None, timeout_s: float):
        self._run = run
        self.netns = netns
        self.timeout_s = timeout_s

    def argv(self, *command: str) -> tuple[str, ...]:
        return (("ip", "netns", "exec", self.netns) if self.netns else ()) + command

    def checked(self, argv: tuple[str, ...], input_text: str | None = None) -> str:
        result = self._run(argv, input_text, self.timeout_s)
        if result.returncode != 0:
            raise PolicyCommandError(argv, result.returncode, result.stderr)
        return result.stdout


class PolicyIptablesBackend(_Commands):
    """Policy rules in the filter table, with iptables-restore --noflush."""

    mode = "iptables"

    def __init__(self, run: Runner = subprocess_runner, netns: str | None = None, *,
                 timeout_s: float = 120.0, lock_wait_s: int = 5) -> None:
        super().__init__(run, netns, timeout_s)
        self.lock_wait_s = lock_wait_s

    def read_state(self) -> FilterState:
        return parse_filter(self.checked(self.argv("iptables-save", "-t", "filter")))

    def restore_argv(self) -> tuple[str, ...]:
        return self.argv("iptables-restore", "--noflush", "-w", str(self.lock_wait_s))

    def render(self, rules) -> Rendered:
        """The node's rules against what is installed now (reads the filter table)."""
        state = self.read_state()
        rules_text = render_iptables(rules, state.chains)
        repair = jump_repair(state)
        return Rendered(rules_text, _with_lines(rules_text, repair), repair)

    def apply(self, rendered: Rendered) -> None:
        argv = self.restore_argv()
        result = self._run(argv, rendered.text, self.timeout_s)
        if result.returncode != 0:
            line = failing_line(result.stderr)
            raise PolicyApplyError(argv, result.returncode, result.stderr, line,
                                   context_around(rendered.text, line), "iptables-restore")

    def cleanup(self) -> None:
        """Remove the FORWARD jumps and every cali- chain of the filter table."""
        state = self.read_state()
        if not state.chains and not state.jumps:
            return
        lines = ["*filter"] + [f"-D FORWARD {spec}" for spec in state.jumps]
        ordered = sorted(state.chains)
        lines += [f":{chain} - [0:0]" for chain in ordered]     # flush: no references left
        lines += [f"-X {chain}" for chain in ordered]
        self.checked(self.restore_argv(), "\n".join(lines + ["COMMIT"]) + "\n")


class PolicyNftBackend(_Commands):
    """Policy rules in their own table, ``ip svclab-netpol``, with nft -f."""

    mode = "nftables"

    def __init__(self, run: Runner = subprocess_runner, netns: str | None = None, *,
                 timeout_s: float = 120.0) -> None:
        super().__init__(run, netns, timeout_s)

    def render(self, rules) -> Rendered:
        text = render_nft(rules)
        return Rendered(text, text)

    def apply(self, rendered: Rendered) -> None:
        self._nft_file(rendered.text)

    def _nft_file(self, text: str) -> None:
        argv = self.argv("nft", "-f", "-")
        result = self._run(argv, text, self.timeout_s)
        if result.returncode != 0:
            line, _columns, _reason = failing_position(result.stderr)
            raise PolicyApplyError(argv, result.returncode, result.stderr, line,
                                   context_around(text, line), "nft -f")

    def cleanup(self) -> None:
        """Delete table ip svclab-netpol (nothing else); a no-op if absent."""
        self._nft_file(f"add table ip {TABLE}\ndelete table ip {TABLE}\n")


def backend_for(mode: str, run: Runner = subprocess_runner, netns: str | None = None):
    """The backend of a proxy mode: iptables or nftables."""
    if mode == "iptables":
        return PolicyIptablesBackend(run, netns)
    if mode == "nftables":
        return PolicyNftBackend(run, netns)
    raise ValueError(f"unknown mode {mode!r}: iptables or nftables")
