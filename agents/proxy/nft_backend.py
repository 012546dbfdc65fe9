"""The nftables backend: applies the nft renderer's transactions to the kernel.

Same interface as IptablesBackend (``sync(ruleset, changed_services=None) ->
SyncReport``, ``cleanup()``).  A full sync lists the chains and sets of our
table (to find stale ones), renders every chain and map and applies it with
ONE ``nft -f -``; a partial sync (kube-proxy's) trusts what the last
successful sync applied and rewrites only the changed services' map
elements, chains and affinity sets, still in one transaction.  nft applies a
transaction atomically, so a failure leaves the old rules in place; the
error names the failing line of the input with context, and the next sync is
a full one.  Only ``table ip kube-proxy`` is ever named; commands run through
an injectable ``run`` callable, optionally inside a network namespace.
"""

from __future__ import annotations

import json
import re

from agents.proxy.errors import CommandError, ContextLine, RuleFileError
from agents.proxy.iptables_backend import (CommandResult, Runner, SyncReport,
                                           context_around, subprocess_runner)
from agents.proxy.nft_render import (FAMILY, TABLE, NftPlan, ServiceKey,
                                     ServiceObjects, TableState, plan_ruleset,
                                     render_transaction, stale_chains_of)
from agents.proxy.ruleset import RuleSet

_ERROR = re.compile(r"^(?:/dev/stdin|-):(\d+):(\d+)-(\d+): Error: (.*)$",
                    re.MULTILINE)

__all__ = ["CommandResult", "NftApplyError", "NftablesBackend",
           "failing_position", "parse_table_state"]


class NftApplyError(RuleFileError):
    """nft -f refused a transaction (nothing of it was applied).

    ``line`` is the 1-based failing line of the input (None when nft did not
    say), ``columns`` the (first, last) columns nft underlined, ``reason``
    nft's message, ``line_text`` the line and ``context`` lines around it.
    """

    def __init__(self, command: tuple[str, ...], exit_code: int | None,
                 stderr: str, line: int | None,
                 columns: tuple[int, int] | None, reason: str,
                 context: tuple[ContextLine, ...]) -> None:
        self.columns, self.reason = columns, reason
        super().__init__(command, exit_code, stderr, line, context,
                         f"nft -f failed: {reason}")


def failing_position(stderr: str) -> tuple[int | None,
                                           tuple[int, int] | None, str]:
    """(line, (col, col), message) of nft's first '/dev/stdin:L:C-C: Error'."""
    found = _ERROR.search(stderr)
    if not found:
        return None, None, stderr.strip().splitlines()[0] if stderr.strip() \
            else "unknown error"
    return (int(found.group(1)), (int(found.group(2)), int(found.group(3))),
            found.group(4).strip())


def parse_table_state(chains_json: str, sets_json: str) -> TableState:
    """Our table's chain and set names from `nft -j list chains/sets ip`."""
    def names(text: str, kind: str) -> frozenset[str]:
        try:
            items = json.loads(text or "{}").get("nftables", [])
        except json.JSONDecodeError as exc:
            raise CommandError(("nft", "-j", "list", kind), 0, text[:200],
                               "unparseable nft JSON") from exc
        return frozenset(
            i[kind]["name"] for i in items
            if kind in i and i[kind].get("table") == TABLE
            and i[kind].get("family") == FAMILY)
    return TableState(chains=names(chains_json, "chain"),
                      sets=names(sets_json, "set"))


class NftablesBackend:
    """Applies rule sets with nft -f, in a netns if given."""

    def __init__(self, run: Runner = subprocess_runner,
                 netns: str | None = None, *, binary: str = "nft",
                 timeout_s: float = 120.0) -> None:
        self._run = run
        self.netns = netns
        self.binary = binary
        self.timeout_s = timeout_s
        self._known: dict[ServiceKey, ServiceObjects] | None = None
        self._known_base: tuple | None = None

    def _argv(self, *command: str) -> tuple[str, ...]:
        prefix = ("ip", "netns", "exec", self.netns) if self.netns else ()
        return prefix + (self.binary,) + command

    def _checked(self, argv: tuple[str, ...]) -> str:
        result = self._run(argv, None, self.timeout_s)
        if result.returncode != 0:
            raise CommandError(argv, result.returncode, result.stderr)
        return result.stdout

    def read_state(self) -> TableState:
        """Names of the chains and sets in our table now (empty if none)."""
        return parse_table_state(
            self._checked(self._argv("-j", "list", "chains", FAMILY)),
            self._checked(self._argv("-j", "list", "sets", FAMILY)))

    def list_table(self) -> str:
        """`nft list table ip kube-proxy` ('' when the table does not exist)."""
        argv = self._argv("list", "table", FAMILY, TABLE)
        result = self._run(argv, None, self.timeout_s)
        if result.returncode != 0:
            if "No such file or directory" in result.stderr:
                return ""
            raise CommandError(argv, result.returncode, result.stderr)
        return result.stdout

    def apply(self, text: str) -> None:
        """Apply one transaction with nft -f -; raise NftApplyError on error."""
        argv = self._argv("-f", "-")
        result = self._run(argv, text, self.timeout_s)
        if result.returncode == 0:
            return
        line, columns, reason = failing_position(result.stderr)
        raise NftApplyError(argv, result.returncode, result.stderr, line,
                            columns, reason, context_around(text, line))

    def sync(self, ruleset: RuleSet,
             changed_services: frozenset[ServiceKey] | None = None
             ) -> SyncReport:
        """Apply ruleset in one nft transaction.

        Partial when changed_services ((namespace, name) pairs) is given, the
        last sync succeeded and the table's fixed part (node IPs, CIDRs,
        options) is unchanged; full otherwise.
        """
        partial = changed_services is not None and self._known is not None
        plan: NftPlan | None = None
        if partial:
            plan = plan_ruleset(ruleset, frozenset(changed_services))
            partial = plan.base == self._known_base
        if partial:
            text = render_transaction(plan, old=self._known,
                                      changed=changed_services)
        else:
            plan = plan_ruleset(ruleset)
            text = render_transaction(plan, self.read_state())
        known, self._known = self._known, None   # re-read after a failure
        if text.strip():
            self.apply(text)
        if partial:
            for key in changed_services:
                if key in plan.services:
                    known[key] = plan.services[key]
                else:
                    known.pop(key, None)
            self._known = known
        else:
            self._known = dict(plan.services)
        self._known_base = plan.base
        return SyncReport(lines=text.count("\n") if text.strip() else 0,
                          stale_chains=stale_chains_of(text),
                          inserted_jumps=0, partial=partial)

    def cleanup(self) -> None:
        """Delete table ip kube-proxy (and nothing else); a no-op if absent."""
        self._known = self._known_base = None
        self.apply(f"add table {FAMILY} {TABLE}\n"
                   f"delete table {FAMILY} {TABLE}\n")
