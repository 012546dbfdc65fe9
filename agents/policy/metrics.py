"""What the policy agent reports on /metrics (Prometheus text).

Felix-like figures for one node: a histogram of sync durations (compute,
render and apply), how many syncs applied rules and how many found nothing
to change, errors, the policies, local workloads and rules in force, and the
highest resourceVersion of the API objects the last applied rules were
computed from (a benchmark waits for it to pass a policy's version).
The agent's HTTP faces (agents/proxy/health.HttpFaces) serve `render()` and
read `last_success` for /healthz.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from agents.proxy.health import BUCKETS


@dataclass
class PolicyMetrics:
    durations: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    duration_sum: float = 0.0
    syncs: int = 0
    applies: int = 0
    skipped: int = 0
    errors: int = 0
    ignored_objects: int = 0          # objects the model could not take (logged)
    last_success: float = 0.0         # epoch of the last successful sync
    applied_resource_version: int = 0
    policies: int = 0
    workloads: int = 0
    rules: dict[str, int] = field(default_factory=dict)   # NodeRules.counts()
    lines: int = 0                    # lines of the last applied text

    def observe(self, seconds: float) -> None:
        self.syncs += 1
        self.duration_sum += seconds
        for i, bound in enumerate(BUCKETS):
            if seconds <= bound:
                self.durations[i] += 1
                return
        self.durations[-1] += 1

    def render(self) -> str:
        name = "svclab_policy_sync_duration_seconds"
        lines = [f"# TYPE {name} histogram"]
        total = 0
        for bound, count in zip(BUCKETS, self.durations):
            total += count
            lines.append(f'{name}_bucket{{le="{bound}"}} {total}')
        lines += [f'{name}_bucket{{le="+Inf"}} {self.syncs}',
                  f"{name}_sum {self.duration_sum:.6f}", f"{name}_count {self.syncs}"]
        for metric, kind, value in (
                ("svclab_policy_applies_total", "counter", self.applies),
                ("svclab_policy_syncs_unchanged_total", "counter", self.skipped),
                ("svclab_policy_sync_errors_total", "counter", self.errors),
                ("svclab_policy_ignored_objects_total", "counter", self.ignored_objects),
                ("svclab_policy_last_sync_timestamp_seconds", "gauge",
                 f"{self.last_success:.3f}"),
                ("svclab_policy_applied_resource_version", "gauge",
                 self.applied_resource_version),
                ("svclab_policy_policies", "gauge", self.policies),
                ("svclab_policy_workloads", "gauge", self.workloads),
                ("svclab_policy_applied_lines", "gauge", self.lines)):
            lines += [f"# TYPE {metric} {kind}", f"{metric} {value}"]
        lines.append("# TYPE svclab_policy_rules gauge")
        lines += [f'svclab_policy_rules{{kind="{k}"}} {v}' for k, v in sorted(self.rules.items())]
        return "\n".join(lines) + "\n"


def parse_metric(text: str, name: str) -> float | None:
    """The value of an unlabelled metric in Prometheus text (None if absent)."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None
