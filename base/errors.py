"""Typed errors shared by every svclab layer.

Library code raises these; only the CLI (svclab.cli) turns them into messages
and exit codes.  Each error knows the exit code it maps to, so the CLI has one
error boundary instead of a ladder of except clauses.
"""
from __future__ import annotations


class SvclabError(Exception):
    """Base of every error svclab raises on purpose."""

    exit_code = 1


class UsageError(SvclabError):
    """Bad command-line usage or bad input (exit code 2)."""

    exit_code = 2


class SpecError(UsageError):
    """A cluster spec that does not validate; names the failing field."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class CommandError(SvclabError):
    """A command that failed: carries the command, exit code and output."""

    def __init__(self, argv, returncode: int, stdout: str = "", stderr: str = "",
                 where: str = ""):
        self.argv = [str(a) for a in argv]
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.where = where
        place = f" in {where}" if where else ""
        detail = (stderr or stdout).strip()
        super().__init__(
            f"command failed{place} (exit {returncode}): {' '.join(self.argv)}"
            + (f"\n{detail}" if detail else ""))


class LabError(SvclabError):
    """The lab is not in the state the request needs (not running, busy, ...)."""


class LabTimeout(LabError):
    """A wait on the lab ran out of time."""
