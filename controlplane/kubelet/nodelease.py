"""The kubelet's node Lease: `kube-node-lease/<node>`, renewed while the kubelet lives.

As the kubelet's lease controller (component-helpers' lease controller):
the Lease is named after the node, held by it (`holderIdentity`), lasts
`leaseDurationSeconds` (40 s), is owned by the Node object and has its
`renewTime` (a MicroTime) moved forward every quarter of that (10 s).  The
lab scales both by its time factor.  A renewal first updates the Lease it
wrote last; when that fails (a conflict, the Lease deleted) it reads the
Lease again, creating it when it is missing, and updates that.  The Node's
Ready condition heartbeat (kubelet.py) is posted as before; the Lease is
what `kubectl get leases -n kube-node-lease` shows and what a node
controller may read.
"""
from __future__ import annotations

import datetime as dt
import logging
import math
import threading
from collections.abc import Callable

from base.jsoncopy import json_copy
from base.kube.client import ApiError, KubeClient

log = logging.getLogger("controlplane.kubelet")
LEASE_NAMESPACE = "kube-node-lease"
LEASE_DURATION_SECONDS = 40
RENEW_FRACTION = 0.25           # the kubelet's nodeLeaseRenewIntervalFraction
RETRY_SECONDS = 0.2             # after a failed renewal, try again soon
UPDATE_TRIES = 5


def micro_time(when: dt.datetime) -> str:
    """metav1.MicroTime as JSON: RFC 3339 with microseconds, UTC."""
    return when.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_lease(node_name: str, node_uid: str, duration_seconds: int, now: dt.datetime) -> dict:
    meta = {"name": node_name, "namespace": LEASE_NAMESPACE}
    if node_uid:
        meta["ownerReferences"] = [{"apiVersion": "v1", "kind": "Node", "name": node_name,
                                    "uid": node_uid}]
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta,
            "spec": {"holderIdentity": node_name, "leaseDurationSeconds": duration_seconds,
                     "renewTime": micro_time(now)}}


def renewed(lease: dict, node_name: str, node_uid: str, duration_seconds: int,
            now: dt.datetime) -> dict:
    """The Lease to write: renewTime now, holder and duration ours, owned by the Node."""
    lease = json_copy(lease)
    spec = lease.setdefault("spec", {})
    spec.update({"holderIdentity": node_name, "leaseDurationSeconds": duration_seconds,
                 "renewTime": micro_time(now)})
    meta = lease["metadata"]
    if node_uid and not any(r.get("kind") == "Node" for r in meta.get("ownerReferences") or []):
        meta["ownerReferences"] = (meta.get("ownerReferences") or []) + [
            {"apiVersion": "v1", "kind": "Node", "name": node_name, "uid": node_uid}]
    return lease


class NodeLease:
    """Renews one node's Lease on its own thread; `renew()` is one renewal."""

    def __init__(self, client: KubeClient, node_name: str, *, time_factor: float = 1.0,
                 clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc)):
        self.client = client
        self.node_name = node_name
        self.duration = max(1, math.ceil(LEASE_DURATION_SECONDS * time_factor))
        self.interval = LEASE_DURATION_SECONDS * RENEW_FRACTION * time_factor
        self.clock = clock
        self.node_uid = ""
        self._latest: dict | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, node_uid: str = "") -> None:
        self.node_uid = node_uid
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"kubelet-lease-{self.node_name}")
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        wait = 0.0
        while not self._stopping.wait(wait):
            try:
                self.renew()
                wait = self.interval
            except (ApiError, OSError) as err:     # the next try comes soon
                log.warning("node %s lease: %s", self.node_name, err)
                wait = min(self.interval, RETRY_SECONDS)

    def renew(self) -> dict:
        """Renew the Lease (creating it when missing); the Lease as stored."""
        if self._latest is not None:
            try:
                return self._write(self._latest)
            except ApiError as err:
                if not (err.conflict or err.not_found):
                    raise
        for attempt in range(UPDATE_TRIES):
            current = self.client.find("leases", self.node_name, LEASE_NAMESPACE)
            if current is None:
                try:
                    self._latest = self.client.create("leases", new_lease(
                        self.node_name, self.node_uid, self.duration, self.clock()))
                    return self._latest
                except ApiError as err:
                    if not err.conflict:
                        raise
                    continue                # someone made it meanwhile: read it again
            try:
                return self._write(current)
            except ApiError as err:
                if not (err.conflict or err.not_found) or attempt == UPDATE_TRIES - 1:
                    raise
        raise ApiError(409, "Conflict", f"lease {self.node_name}: gave up after "
                                        f"{UPDATE_TRIES} tries")

    def _write(self, lease: dict) -> dict:
        body = renewed(lease, self.node_name, self.node_uid, self.duration, self.clock())
        self._latest = self.client.update("leases", body)
        return self._latest
