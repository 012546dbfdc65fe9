"""The clusterrole-aggregation controller: an aggregated ClusterRole's rules follow the
ClusterRoles its selectors match.

As kube-controller-manager's: any ClusterRole change queues every ClusterRole
that has an ``aggregationRule``; reconciling one computes its rules
(controlplane/api/rbac/aggregation.py, pure) from the informer's cache and
writes them when they differ. Writing rules needs ``escalate`` on
clusterroles, which system:controller:clusterrole-aggregation-controller has.
"""
from __future__ import annotations

from base.kube.client import ApiError
from controlplane.api.rbac.aggregation import aggregated_rules
from controlplane.controllers.base import Controller


class ClusterRoleAggregationController(Controller):
    name = "clusterrole-aggregation"

    def __init__(self, client, informers, recorder=None):
        super().__init__(client, informers, recorder)
        self.watch("clusterroles", self._on_clusterrole)

    def _on_clusterrole(self, kind: str, obj: dict, old: dict | None) -> None:
        for role in self.cached("clusterroles"):
            if role.get("aggregationRule"):
                self.queue.add(role["metadata"]["name"])
        if kind != "DELETED" and obj.get("aggregationRule"):
            self.queue.add(obj["metadata"]["name"])

    def reconcile(self, key: str) -> None:
        role = self.get_cached("clusterroles", key)
        if role is None:
            return
        rules = aggregated_rules(role, self.cached("clusterroles"))
        if rules is None or rules == (role.get("rules") or []):
            return
        try:
            self.client.update("clusterroles", {**role, "rules": rules})
        except ApiError as err:
            if not err.not_found:       # deleted meanwhile: nothing to aggregate into
                raise
