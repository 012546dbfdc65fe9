"""Typed errors of the node proxy agent.

Every failure the proxy library can raise derives from ProxyError, so the
agent (and only the agent or the CLI) decides how to report it.  Errors that
come from running a command carry the command, exit code and stderr; errors
from iptables-restore also carry the failing line of the rule file with
context, which is what an operator needs to fix a broken rule set.
"""

from __future__ import annotations

import errno as errno_module
import os
from dataclasses import dataclass

from base.errors import CommandError, SvclabError


class ProxyError(SvclabError):
    """Base class of every error raised by agents.proxy."""


class ModelError(ProxyError):
    """A Kubernetes object could not be turned into the proxy's input model."""


class TracerError(ProxyError):
    """A packet tracer could not follow the rules it was given: a rule or
    command it does not understand (it never skips one), one that nft would
    refuse, a jump to a missing chain, or chains nested too deep (a loop)."""


@dataclass(frozen=True)
class ContextLine:
    """One line of a rule file shown around a failure (1-based number)."""

    number: int
    text: str


class ProxyCommandError(ProxyError, CommandError):
    """A command the backend ran failed (non-zero exit, or None on a timeout).

    svclab's CommandError (argv, returncode, stderr) that is also a
    ProxyError, so the agent can catch everything of its own at once.
    """

    def __init__(self, command: tuple[str, ...], returncode: int | None,
                 stderr: str, message: str = "") -> None:
        self.argv = tuple(command)
        self.returncode = returncode
        self.stdout = ""
        self.stderr = stderr
        self.where = "proxy agent"
        text = message or "command failed"
        SvclabError.__init__(
            self, f"{text}: {' '.join(self.argv)} (exit code {returncode}): "
            f"{stderr.strip()}")


class RuleFileError(ProxyCommandError):
    """A rule file (iptables-restore or nft -f input) was refused.

    ``line`` is the 1-based number of the failing line of the input (None
    when the tool did not say), ``line_text`` its text and ``context`` a few
    lines around it, shown with the failing line marked.
    """

    def __init__(self, command: tuple[str, ...], returncode: int | None,
                 stderr: str, line: int | None,
                 context: tuple[ContextLine, ...], summary: str) -> None:
        self.line = line
        self.context = context
        self.line_text = next(
            (c.text for c in context if c.number == line), None)
        shown = "\n".join(
            f"{'>' if c.number == line else ' '} {c.number:6d}  {c.text}"
            for c in context)
        where = f"line {line}" if line is not None else "unknown line"
        super().__init__(command, returncode, stderr,
                         f"{summary} at {where}"
                         + (f"\n{shown}\n" if shown else ""))


class IptablesRestoreError(RuleFileError):
    """iptables-restore refused the rendered rule set.

    ``rolled_back`` names the tables that iptables-restore had already
    committed before failing and that were put back to their previous
    content (empty when nothing had been committed).
    """

    def __init__(self, command: tuple[str, ...], returncode: int | None,
                 stderr: str, line: int | None,
                 context: tuple[ContextLine, ...],
                 rolled_back: tuple[str, ...] = ()) -> None:
        self.rolled_back = rolled_back
        super().__init__(command, returncode, stderr, line, context,
                         "iptables-restore failed")


class NetlinkError(ProxyError):
    """The kernel refused an nf_tables netlink message (or the socket failed).

    ``operation`` says what the message does, in nft's words (e.g. "delete
    chain ip kube-proxy service-..."; "commit" for the transaction itself),
    ``errno`` the kernel's error number (0 if none) and ``detail`` its
    extended-ack text or the OS error.  Nothing of a refused batch is applied.
    """

    def __init__(self, operation: str, errno: int, detail: str) -> None:
        self.operation, self.errno, self.detail = operation, errno, detail
        name = errno_module.errorcode.get(errno, str(errno))
        super().__init__(f"nf_tables refused {operation}: {name}"
                         + (f" ({os.strerror(errno)})" if errno else "")
                         + (f": {detail}" if detail else ""))
