"""Typed errors of the policy agent's kernel side.

The backend runs iptables-save, iptables-restore and nft; when one fails the
error carries the command, its exit code and stderr, and for a refused rule
file the failing line with a few lines around it, as the proxy agent's
errors do (agents/proxy/errors.py; ContextLine is shared with it).  Only the
agent loop or the CLI decides how to report them.
"""
from __future__ import annotations

from agents.proxy.errors import ContextLine
from base.errors import CommandError, SvclabError

__all__ = ["ContextLine", "PolicyApplyError", "PolicyCommandError", "PolicyError"]


class PolicyError(SvclabError):
    """Base class of every error raised by the policy agent's backends."""


class PolicyCommandError(PolicyError, CommandError):
    """A command the backend ran failed (non-zero exit, or None on a timeout)."""

    def __init__(self, command: tuple[str, ...], returncode: int | None,
                 stderr: str, message: str = "") -> None:
        self.argv = tuple(command)
        self.returncode = returncode
        self.stdout = ""
        self.stderr = stderr
        self.where = "policy agent"
        SvclabError.__init__(
            self, f"{message or 'command failed'}: {' '.join(self.argv)} "
            f"(exit code {returncode}): {stderr.strip()}")


class PolicyApplyError(PolicyCommandError):
    """iptables-restore or nft -f refused the rendered policy rules; nothing of
    them was applied (both tools apply the filter table / the transaction
    atomically), so the rules of the previous sync are still in force.

    ``line`` is the 1-based failing line of the input (None when the tool did
    not say), ``line_text`` its text, ``context`` the lines around it.
    """

    def __init__(self, command: tuple[str, ...], returncode: int | None,
                 stderr: str, line: int | None,
                 context: tuple[ContextLine, ...], tool: str) -> None:
        self.line = line
        self.context = context
        self.line_text = next((c.text for c in context if c.number == line), None)
        shown = "\n".join(f"{'>' if c.number == line else ' '} {c.number:6d}  {c.text}"
                          for c in context)
        where = f"line {line}" if line is not None else "unknown line"
        super().__init__(command, returncode, stderr,
                         f"{tool} failed at {where}" + (f"\n{shown}\n" if shown else ""))
