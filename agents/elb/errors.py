"""Typed errors of the ELB agent: bad configuration, and kernel commands that failed."""
from __future__ import annotations

from base.errors import CommandError, SvclabError


class ElbError(SvclabError):
    """Base of every error the ELB agent raises on purpose."""


class ElbCommandError(ElbError, CommandError):
    """iptables-restore or ip failed; for rule files carries the failing line."""

    def __init__(self, argv, returncode: int, stderr: str, rules: str = "",
                 line: int | None = None):
        context = ""
        if rules and line:
            lines = rules.splitlines()
            low, high = max(0, line - 3), min(len(lines), line + 2)
            context = "\n".join(f"{'>' if i + 1 == line else ' '}{i + 1:5d} {lines[i]}"
                                for i in range(low, high))
        CommandError.__init__(self, argv, returncode, "", stderr + (
            f"\n{context}" if context else ""), where="elb")
        self.rules = rules
        self.line = line
