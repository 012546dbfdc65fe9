"""Pure: which rule of a listener a request matches, as an ALB evaluates them.

Rules are evaluated in priority order, lowest first; the first whose every
condition matches wins, and the listener's default action applies when none
does.  Within a condition the values are ORed, between conditions ANDed.
Host patterns match the Host header without its port, case-insensitively;
path patterns match the path (no query string), case-sensitively.  In both,
`*` matches any run of characters (also none) and `?` exactly one.

Ordering Ingress rules into priorities (host-exact before wildcard, longest
path first, Exact before Prefix) is the controller's work, done before the
config reaches the agent (controlplane/cloud/alb*.py, see docs/alb.md).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from base.alb_api import Action, Listener, Rule

DEFAULT_PRIORITY = 0        # what the access log shows for the default rule


@lru_cache(maxsize=4096)
def pattern_regex(pattern: str, ignore_case: bool) -> re.Pattern:
    """An ALB wildcard pattern as a regular expression matching whole strings."""
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(f"{body}\\Z", re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL)


def host_matches(pattern: str, host: str) -> bool:
    return pattern_regex(pattern, True).match(host) is not None


def path_matches(pattern: str, path: str) -> bool:
    return pattern_regex(pattern, False).match(path) is not None


def rule_matches(rule: Rule, host: str, path: str) -> bool:
    if rule.hosts and not any(host_matches(p, host) for p in rule.hosts):
        return False
    return not rule.paths or any(path_matches(p, path) for p in rule.paths)


@dataclass(frozen=True)
class Match:
    """The outcome of routing: the rule (None: the default rule) and its action."""

    rule: Rule | None
    action: Action

    @property
    def priority(self) -> int:
        return self.rule.priority if self.rule else DEFAULT_PRIORITY


def route(listener: Listener, host: str, path: str) -> Match:
    """The first rule (by priority) that matches, else the default action."""
    for rule in sorted(listener.rules, key=lambda r: r.priority):
        if rule_matches(rule, host, path):
            return Match(rule, rule.action)
    return Match(None, listener.default_action)


def split_host(host_header: str | None) -> str:
    """The host name of a Host header: lower case, without its port."""
    if not host_header:
        return ""
    host = host_header.strip()
    if host.startswith("["):                    # [v6]:port
        return host[:host.find("]") + 1].lower()
    return host.rsplit(":", 1)[0].lower() if host.count(":") == 1 else host.lower()
