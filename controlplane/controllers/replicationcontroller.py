"""The ReplicationController controller: a ReplicaSet with a map selector.

Old manifests and clients still create ReplicationControllers (core/v1).
Upstream runs the ReplicaSet controller for them with another kind, a
map selector and its own Event source; so does svclab: pods `<rc>-<5
chars>`, "Created pod: X" Events from `replication-controller`, status
replicas / fullyLabeledReplicas / readyReplicas / availableReplicas.
"""
from __future__ import annotations

from controlplane.controllers.objects import map_selector_matches
from controlplane.controllers.replicaset import ReplicaSetController


class ReplicationControllerController(ReplicaSetController):
    name = "replicationcontroller"
    component = "replication-controller"
    resource = "replicationcontrollers"
    owner_kind = "ReplicationController"
    selects = staticmethod(map_selector_matches)
    reports_terminating = False
    reads = ("replicationcontrollers", "pods")
