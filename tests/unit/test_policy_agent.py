"""The policy agent's sync loop, without a kernel or an API server.

Fake informers deliver API-shaped events straight to the agent's handlers; a
recording backend keeps every rule set the agent applied.  Checked: what is
applied after pod, policy and namespace events; that an event changing
nothing this node enforces asks for no apply; that the periodic full resync
applies again; that a failed apply is retried even with the same rules.
"""
from __future__ import annotations

import pytest

from agents.policy.agent import PolicyAgent, PolicyAgentConfig
from agents.policy.backend import Rendered
from agents.policy.metrics import parse_metric

NODE = "ip-172-31-0-11"
OTHER = "ip-172-31-0-12"


class FakeInformer:
    def __init__(self, client, resource, handler):
        self.resource = resource
        self.handler = handler

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def wait_synced(self, timeout: float) -> bool:
        return True


class RecordingBackend:
    """render(rules) -> Rendered of repr(rules); apply records the rules."""

    def __init__(self):
        self.applied = []
        self.renders = 0              # the real backend reads the kernel's table here
        self.fail_next = False
        self._rules = {}

    def render(self, rules) -> Rendered:
        self.renders += 1
        text = repr(rules)
        self._rules[text] = rules
        return Rendered(text, text)

    def apply(self, rendered: Rendered) -> None:
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("refused")
        self.applied.append(self._rules[rendered.rules_text])


class CountingRunner:
    def __init__(self):
        self.requests = 0

    def request(self, full: bool = False) -> None:
        self.requests += 1


_rv = iter(range(100, 10_000))


def pod(name, node, ip, labels, ns="default", **status) -> dict:
    return {"metadata": {"name": name, "namespace": ns, "labels": labels,
                         "resourceVersion": str(next(_rv))},
            "spec": {"nodeName": node, "containers": [
                {"name": "app", "ports": [{"containerPort": 80, "protocol": "TCP"}]}]},
            "status": {"podIP": ip, "phase": "Running", **status}}


def namespace(name, labels=None) -> dict:
    return {"metadata": {"name": name, "labels": labels or {},
                         "resourceVersion": str(next(_rv))}}


def policy(name, selector, ingress=None, ns="default") -> dict:
    spec = {"podSelector": {"matchLabels": selector}, "policyTypes": ["Ingress"]}
    if ingress is not None:
        spec["ingress"] = ingress
    return {"metadata": {"name": name, "namespace": ns, "resourceVersion": str(next(_rv))},
            "spec": spec}


@pytest.fixture
def agent():
    backend = RecordingBackend()
    agent = PolicyAgent(None, PolicyAgentConfig(NODE, healthz=None, metrics=None),
                        backend, informer_factory=FakeInformer)
    agent.runner = CountingRunner()
    agent.send = lambda resource, kind, obj: agent.informers[resource].handler(kind, obj, None)
    for ns in ("default", "other"):
        agent.send("namespaces", "ADDED", namespace(ns))
    agent.send("pods", "ADDED", pod("web", NODE, "192.168.1.10", {"app": "web"}))
    agent.send("pods", "ADDED", pod("far", OTHER, "192.168.2.10", {"app": "far"}))
    agent.sync(full=True)
    return agent


def workload(rules, name):
    return next(w for w in rules.workloads if w.name == name)


def ingress_rules(rules, name) -> list:
    """The allow rules of every ingress policy chain of a workload."""
    chains = {c.name: c for c in rules.chains}
    return [r for c in workload(rules, name).ingress for r in chains[c].rules]


def test_first_sync_applies_local_workloads_open(agent):
    rules = agent.backend.applied[-1]
    assert [w.name for w in rules.workloads] == ["web"]        # only this node's pod
    assert workload(rules, "web").ingress is None              # no policy: not isolated
    assert "svclab_policy_workloads 1" in agent.metrics.render()


def test_a_deny_policy_then_an_allow_policy_are_applied(agent):
    agent.send("networkpolicies", "ADDED", policy("deny", {"app": "web"}))
    agent.sync(full=False)
    rules = agent.backend.applied[-1]
    assert workload(rules, "web").ingress is not None          # isolated...
    assert ingress_rules(rules, "web") == []                   # ...and nothing allowed
    from_far = [{"from": [{"podSelector": {"matchLabels": {"app": "far"}}}]}]
    agent.send("networkpolicies", "ADDED", policy("allow-far", {"app": "web"}, from_far))
    agent.sync(full=False)
    rules = agent.backend.applied[-1]
    assert len(workload(rules, "web").ingress) == 2            # both policies' chains
    assert [r.policy for r in ingress_rules(rules, "web")] == ["default/allow-far"]
    assert "192.168.2.10" in str(ingress_rules(rules, "web")[0].remote)
    assert len(agent.backend.applied) == 3


def test_an_event_that_changes_no_model_asks_for_nothing(agent):
    before = agent.runner.requests
    same = pod("web", NODE, "192.168.1.10", {"app": "web"},
               conditions=[{"type": "Ready", "status": "True"}])   # status noise only
    agent.send("pods", "MODIFIED", same)
    assert agent.runner.requests == before


def test_without_policies_only_this_nodes_pods_ask_for_a_sync(agent):
    # A thousand pods starting elsewhere must not make every node's agent sync.
    before = agent.runner.requests
    agent.send("pods", "ADDED", pod("far2", OTHER, "192.168.2.11", {"app": "far"}))
    agent.send("pods", "MODIFIED", pod("far", OTHER, "192.168.2.10", {"app": "farther"}))
    agent.send("namespaces", "MODIFIED", namespace("other", {"team": "a"}))
    assert agent.runner.requests == before
    agent.send("pods", "ADDED", pod("web2", NODE, "192.168.1.11", {"app": "web"}))
    assert agent.runner.requests == before + 1
    moved_away = pod("web2", OTHER, "192.168.1.11", {"app": "web"})   # its old node counts
    agent.send("pods", "MODIFIED", moved_away)
    assert agent.runner.requests == before + 2
    agent.sync(full=False)
    assert [w.name for w in agent.backend.applied[-1].workloads] == ["web"]


def test_a_pod_no_policy_isolates_reads_and_writes_nothing(agent):
    # Without a policy a new local pod has no rule of its own: the sync neither
    # reads the kernel's table nor applies, as felix leaves an open pod alone.
    renders = agent.backend.renders
    agent.send("pods", "ADDED", pod("web2", NODE, "192.168.1.11", {"app": "web"}))
    agent.sync(full=False)
    assert (agent.backend.renders, len(agent.backend.applied)) == (renders, 1)
    assert parse_metric(agent.metrics.render(), "svclab_policy_workloads") == 2
    agent.send("networkpolicies", "ADDED", policy("deny", {"app": "web"}))
    agent.sync(full=False)
    agent.send("pods", "ADDED", pod("web3", NODE, "192.168.1.12", {"app": "web"}))
    agent.sync(full=False)                  # an isolated pod: its chains are written
    assert [w.name for w in agent.backend.applied[-1].enforced().workloads] == [
        "web", "web2", "web3"]


def test_with_a_policy_pods_elsewhere_ask_for_a_sync_and_reach_the_rules(agent):
    from_far = [{"from": [{"podSelector": {"matchLabels": {"app": "far"}}}]}]
    agent.send("networkpolicies", "ADDED", policy("allow-far", {"app": "web"}, from_far))
    # The cache kept the pod that arrived while no policy asked for syncs.
    agent.send("pods", "ADDED", pod("far2", OTHER, "192.168.2.11", {"app": "far"}))
    before = agent.runner.requests
    agent.send("pods", "ADDED", pod("far3", OTHER, "192.168.2.12", {"app": "far"}))
    assert agent.runner.requests == before + 1
    agent.sync(full=False)
    (rule,) = ingress_rules(agent.backend.applied[-1], "web")
    assert rule.remote == ("192.168.2.10/31", "192.168.2.12/32")   # .10, .11 and .12


def test_unchanged_rules_are_not_applied_again_but_a_full_resync_is(agent):
    # A remote pod no policy refers to changes labels: the model changes, this
    # node's rules do not.
    agent.send("pods", "MODIFIED", pod("far", OTHER, "192.168.2.10", {"app": "farther"}))
    agent.sync(full=False)
    assert len(agent.backend.applied) == 1
    assert parse_metric(agent.metrics.render(), "svclab_policy_syncs_unchanged_total") == 1
    agent.sync(full=True)                                      # periodic resync: repair
    assert len(agent.backend.applied) == 2


def test_a_namespace_label_change_reaches_the_rules(agent):
    allow_team = [{"from": [{"namespaceSelector": {"matchLabels": {"team": "a"}}}]}]
    agent.send("networkpolicies", "ADDED", policy("team-a", {"app": "web"}, allow_team))
    agent.send("pods", "ADDED", pod("client", OTHER, "192.168.2.20", {}, ns="other"))
    agent.sync(full=False)
    assert "192.168.2.20" not in str(ingress_rules(agent.backend.applied[-1], "web"))
    agent.send("namespaces", "MODIFIED", namespace("other", {"team": "a"}))
    agent.sync(full=False)
    assert "192.168.2.20" in str(ingress_rules(agent.backend.applied[-1], "web"))


def test_deleting_the_policy_opens_the_pod_again(agent):
    deny = policy("deny", {"app": "web"})
    agent.send("networkpolicies", "ADDED", deny)
    agent.sync(full=False)
    agent.send("networkpolicies", "DELETED", deny)
    agent.sync(full=False)
    assert workload(agent.backend.applied[-1], "web").ingress is None
    assert parse_metric(agent.metrics.render(), "svclab_policy_policies") == 0


def test_a_failed_apply_is_retried_with_the_same_rules(agent):
    agent.send("networkpolicies", "ADDED", policy("deny", {"app": "web"}))
    agent.backend.fail_next = True
    with pytest.raises(RuntimeError):
        agent.sync(full=False)
    assert parse_metric(agent.metrics.render(), "svclab_policy_sync_errors_total") == 1
    agent.sync(full=False)        # same rules as the failed attempt: applied anyway
    assert workload(agent.backend.applied[-1], "web").ingress is not None


def test_a_malformed_policy_is_counted_and_ignored(agent):
    bad = policy("bad", {"app": "web"})
    bad["spec"]["policyTypes"] = ["Sideways"]
    agent.send("networkpolicies", "ADDED", bad)
    agent.sync(full=False)
    assert parse_metric(agent.metrics.render(), "svclab_policy_ignored_objects_total") == 1
    assert len(agent.backend.applied) == 1                     # nothing new to apply


def test_applied_resource_version_follows_the_snapshot(agent):
    p = policy("deny", {"app": "web"})
    agent.send("networkpolicies", "ADDED", p)
    agent.sync(full=False)
    assert agent.metrics.applied_resource_version == int(p["metadata"]["resourceVersion"])
