"""The cloud controller: provisions the lab's ELB for every LoadBalancer Service.

It plays cloud-provider-aws's service controller.  Services and Nodes come
from informers; on any change one worker thread recomputes the whole ELB
config (pure, controlplane/cloud/lbconfig.py), replaces the agent's config file,
publishes each LB's hostname in the public DNS records, and writes
`status.loadBalancer.ingress[0].hostname` so `kubectl get svc` shows it as on
EKS.  Services that stop being LoadBalancers lose listeners, name and status;
deleted ones simply drop out of the config.  Each change is reported on the
Service with the Events of Kubernetes' service controller (EnsuringLoadBalancer
and EnsuredLoadBalancer, UpdatedLoadBalancer when only the nodes change,
DeletingLoadBalancer and DeletedLoadBalancer, SyncLoadBalancerFailed).  It also
reads the agent's status file and reports every target health transition as an
Event on the Service (TargetHealthy / TargetUnhealthy, the lab's own).

In a lab with zones (zone_enis: zone -> the ELB's ENI address there) every
load balancer gets a node, and a VIP, in each zone where the cluster has
Nodes (controlplane/cloud/zones.py); its DNS name answers the nodes the
agent reports with a healthy target to send to (all of them when none has),
rewritten as soon as the agent's status changes.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path

from base.alb_api import AlbConfigError, read_alb_config
from base.elb_api import (
    ElbConfig,
    ElbConfigError,
    LoadBalancer,
    config_to_json,
    read_config,
    write_config,
    write_json_atomically,
)
from base.kube.client import ApiError, KubeClient
from base.kube.informer import Informer
from controlplane.cloud.alb_controller import dns_records_path_for
from controlplane.cloud.hostnames import is_elb_hostname
from controlplane.cloud.lbconfig import LoadBalancerProblem, compute_load_balancer, is_ours
from controlplane.cloud.worker import SyncWorker
from controlplane.cloud.zones import (
    allocate_node_vips,
    enabled_zones,
    place,
    published_addresses,
)
from controlplane.events import NORMAL, WARNING, EventRecorder, reference

ALB_CONFIG_FILE = "alb.json"      # next to the ELB config: the ALB controller writes it
log = logging.getLogger("controlplane.cloud")
COMPONENT = "service-controller"
UNALLOCATED = "0.0.0.0"


def status_path_for(config_path: Path) -> Path:
    """The agent writes its status next to its config (topo/elb.py's layout)."""
    return config_path.parent / "status.json"


class CloudController(SyncWorker):
    """cloud-provider-aws's service controller: LoadBalancer Services in, ELBs out."""

    def __init__(self, client: KubeClient, elb_config_path: Path, outside_dns_path: Path,
                 static_dns: dict[str, list[str]], vip_pool: list[str], time_factor: float,
                 zone_enis: Mapping[str, str] | None = None):
        self.client = client
        self.config_path = Path(elb_config_path)
        self.status_path = status_path_for(self.config_path)
        self.outside_dns_path = Path(outside_dns_path)
        self.static_dns = {k: list(v) for k, v in static_dns.items()}
        self.vip_pool = list(vip_pool)
        self.time_factor = time_factor
        self.zone_enis = dict(zone_enis or {})         # zone -> ENI address, spec order
        self.services = Informer(client, "services", self._changed)
        self.nodes = Informer(client, "nodes", self._changed)
        super().__init__(EventRecorder(client, COMPONENT), [self.services, self.nodes])
        self._vips: dict[tuple, str] = {}               # (uid, zone or None) -> VIP
        self._written_config: dict | None = None
        self._written_dns: dict | None = None
        self._provisioned: dict[str, tuple[dict, LoadBalancer]] = {}   # uid -> (ref, LB)
        self._provisioned_lbs: tuple[LoadBalancer, ...] = ()
        self._seen_transitions: dict[tuple[str, str], float] = {}
        self._started = time.time()

    # --- lifecycle -------------------------------------------------------------

    def resume(self) -> None:
        try:
            existing = read_config(self.config_path)
        except ElbConfigError as err:
            log.warning("ignoring unreadable ELB config: %s", err)
            existing = ElbConfig()
        self._vips = {(lb.uid, node.zone): node.vip for lb in existing.load_balancers
                      for node in lb.nodes}

    def report(self) -> None:
        status = self.read_status()
        self.report_target_health(status)
        self.publish_dns(status)

    # --- the sync ----------------------------------------------------------------

    def sync(self) -> None:
        services = self.services.items()
        nodes = self.nodes.items()
        ours = sorted((s for s in services if is_ours(s) and
                       not s["metadata"].get("deletionTimestamp")),
                      key=lambda s: (s["metadata"].get("creationTimestamp", ""),
                                     s["metadata"]["namespace"], s["metadata"]["name"]))
        valid = []
        for service in ours:        # validate first: a broken Service takes no VIP
            try:
                valid.append(compute_load_balancer(service, nodes, UNALLOCATED,
                                                   self.time_factor))
            except LoadBalancerProblem as problem:
                self._failed(service, str(problem))
        zones = enabled_zones(nodes, self.zone_enis) or (None,)
        alb_vips = self._alb_vips()
        self._vips = allocate_node_vips([(lb.uid, zones) for lb in valid], self._vips,
                                        [vip for vip in self.vip_pool if vip not in alb_vips])
        by_uid = {s["metadata"]["uid"]: s for s in ours}
        lbs, provisioned = [], {}
        for lb in valid:
            placed = place(lb, zones, self._vips, self.zone_enis)
            if placed is None:
                self._failed(by_uid[lb.uid], self._exhausted(len(zones)))
                continue
            if len(placed.vips) < len(zones):
                missing = [z for z in zones if z not in {n.zone for n in placed.nodes}]
                self._failed(by_uid[lb.uid], f"no free ELB address for its node in "
                                             f"{', '.join(missing)}: all "
                                             f"{len(self.vip_pool)} VIPs of the lab's pool "
                                             "are in use")
            lbs.append(placed)
            provisioned[placed.uid] = placed
        after = self._announce(by_uid, provisioned)
        config = ElbConfig(tuple(lbs))
        as_json = config_to_json(config)
        if as_json != self._written_config:
            write_config(self.config_path, config)
            self._written_config = as_json
        self._provisioned_lbs = tuple(lbs)
        self.publish_dns(self.read_status())
        for service in services:
            self._sync_status(service, provisioned.get(service["metadata"]["uid"]))
        for ref, event_type, reason, message in after:
            self.recorder.event(ref, event_type, reason, message)
        self._provisioned = {uid: (reference(by_uid[uid]), lb) for uid, lb in provisioned.items()}
        self.syncs += 1

    def _announce(self, by_uid: dict[str, dict], provisioned: dict[str, LoadBalancer]) -> list:
        """Record what this sync starts; return the Events to record once it is done."""
        after = []
        for uid, lb in provisioned.items():
            ref = reference(by_uid[uid])
            before = self._provisioned.get(uid)
            if before is None or _without_targets(before[1]) != _without_targets(lb):
                self.recorder.event(ref, NORMAL, "EnsuringLoadBalancer", "Ensuring load balancer")
                after.append((ref, NORMAL, "EnsuredLoadBalancer", "Ensured load balancer"))
            elif before[1].targets != lb.targets:
                after.append((ref, NORMAL, "UpdatedLoadBalancer",
                              "Updated load balancer with new hosts"))
        for uid, (ref, _) in self._provisioned.items():
            if uid not in provisioned:
                self.recorder.event(ref, NORMAL, "DeletingLoadBalancer", "Deleting load balancer")
                after.append((ref, NORMAL, "DeletedLoadBalancer", "Deleted load balancer"))
        return after

    def _exhausted(self, needed: int) -> str:
        free = len(set(self.vip_pool) - set(self._vips.values()))
        if needed == 1:
            return (f"no free ELB address: all {len(self.vip_pool)} VIPs of the lab's pool "
                    "are in use")
        return (f"no free ELB address: a load balancer in {needed} zones needs {needed} "
                f"VIPs, {free} of the lab's {len(self.vip_pool)} are free")

    def _failed(self, service: dict, problem: str) -> None:
        self.recorder.event(service, WARNING, "SyncLoadBalancerFailed",
                            f"Error syncing load balancer: failed to ensure load balancer: "
                            f"{problem}")

    def _sync_status(self, service: dict, lb) -> None:
        meta = service["metadata"]
        current = (service.get("status") or {}).get("loadBalancer") or {}
        if lb is not None:
            wanted = {"ingress": [{"hostname": lb.hostname}]}
            if current != wanted:
                self._patch_status(service, wanted)
            return
        hostnames = [i.get("hostname", "") for i in current.get("ingress") or []]
        if any(is_elb_hostname(h) for h in hostnames) and not (
                is_ours(service) and not meta.get("deletionTimestamp")):
            self._patch_status(service, {})

    def _patch_status(self, service: dict, load_balancer: dict) -> None:
        meta = service["metadata"]
        try:
            self.client.patch("services", meta["name"],
                              {"status": {"loadBalancer": load_balancer or {"ingress": None}}},
                              namespace=meta["namespace"], subresource="status")
        except ApiError as err:
            if not err.not_found:      # deleted meanwhile: nothing to say
                raise

    # --- target health ---------------------------------------------------------------

    def read_status(self) -> dict:
        """The ELB agent's status ({} before it wrote one, or if it is unreadable)."""
        try:
            return json.loads(self.status_path.read_text())
        except FileNotFoundError:
            return {}
        except ValueError as err:       # written atomically: only a foreign file is broken
            log.warning("unreadable ELB status %s: %s", self.status_path, err)
            return {}

    def set_static_dns(self, records: dict[str, list[str]]) -> None:
        """New static records (a node joined or left); written with the load
        balancers' on the next turn of the loop."""
        self.static_dns = {k: list(v) for k, v in records.items()}
        self._written_dns = None

    def publish_dns(self, status: dict) -> None:
        """Public DNS: the static records, the ALB controller's records
        (alb-dns.json next to the ELB config) and each load balancer's answer."""
        reported = {lb.get("key"): lb for lb in status.get("loadBalancers", [])}
        records = {**self.static_dns, **self._alb_records(), **{
            lb.hostname: list(published_addresses(lb, reported.get(lb.key)))
            for lb in self._provisioned_lbs}}
        if records != self._written_dns:
            write_json_atomically(self.outside_dns_path, records)
            self._written_dns = records

    def _alb_records(self) -> dict[str, list[str]]:
        path = dns_records_path_for(self.config_path.with_name(ALB_CONFIG_FILE))
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            return {}
        except ValueError as err:
            log.warning("unreadable ALB DNS records in %s: %s", path, err)
            return {}

    def _alb_vips(self) -> set[str]:
        """Addresses the ALB controller holds (it allocates from the pool's top)."""
        try:
            config = read_alb_config(self.config_path.with_name(ALB_CONFIG_FILE))
        except AlbConfigError as err:
            log.warning("unreadable ALB config: %s", err)
            return set()
        return {vip for alb in config.load_balancers for vip in alb.vips}

    def report_target_health(self, status: dict | None = None) -> None:
        """Each new target transition in the agent's status -> an Event on the Service."""
        status = self.read_status() if status is None else status
        for lb in status.get("loadBalancers", []):
            service = self.services.get(lb["key"])
            if service is None or service["metadata"]["uid"] != lb.get("uid"):
                continue
            for target in lb.get("targets", []):
                key = (lb["uid"], target["address"])
                seen = self._seen_transitions.get(key, self._started)
                for change in target.get("transitions", []):
                    if change["at"] <= seen:
                        continue
                    seen = change["at"]
                    healthy = change["state"] == "healthy"
                    self.recorder.event(service, NORMAL if healthy else WARNING,
                                        "TargetHealthy" if healthy else "TargetUnhealthy",
                                        f"ELB target {target['node']} ({target['address']}) is "
                                        f"{change['state']}: {change['reason']}")
                self._seen_transitions[key] = seen


def _without_targets(lb: LoadBalancer) -> LoadBalancer:
    """What the Service decides of its load balancer (the nodes decide the targets)."""
    return dataclasses.replace(lb, targets=())
