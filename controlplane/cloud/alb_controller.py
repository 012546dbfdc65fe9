"""The ALB controller: an Application Load Balancer on the ELB host for every Ingress group.

It plays the AWS Load Balancer Controller (IngressClass ``alb``, controller
``ingress.k8s.aws/alb``) the way controlplane/cloud/controller.py plays
cloud-provider-aws for Services: informers over Ingresses, IngressClasses,
Services, EndpointSlices, Nodes and Secrets wake one worker thread, which
recomputes every ALB (pure: alb_groups, alb_model, alb_placement), writes
the HTTPS listeners' certificate files, replaces the ELB agent's ALB file
(base/alb_api.py) and the ALBs' public DNS records when they change, and
writes ``status.loadBalancer.ingress[0].hostname`` on every Ingress of a
group. Events on the Ingresses are the controller's: SuccessfullyReconciled
when a group's ALB changes, FailedBuildModel / FailedDeployModel (Warning)
when it cannot be built: a missing Service, port or TLS Secret, an
annotation the controller refuses. A group that fails keeps the ALB it had.
From the agent's status file it reports each target's health transition as
an Event on the Ingress (TargetHealthy / TargetUnhealthy, the lab's own), and
a target-type ip group whose pod IPs the VPC cannot reach gets a Warning
(PodIPsNotRoutable, the lab's own).
"""
from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path

from base.alb_api import AlbConfig, AlbConfigError, alb_config_to_json, read_alb_config
from base.alb_api import write_alb_config as write_albs
from base.elb_api import ElbConfigError, read_config, write_json_atomically
from base.kube.client import ApiError, KubeClient
from base.kube.informer import Informer, key_of
from controlplane.cloud import alb_placement as placement
from controlplane.cloud.alb_annotations import AlbProblem
from controlplane.cloud.alb_groups import CLASS_NAME, CONTROLLER, group_ingresses, ingress_key
from controlplane.cloud.alb_model import BuiltAlb, ClusterView, ModelSettings, build_alb
from controlplane.cloud.alb_reporting import TargetHealthReporter, write_certificates
from controlplane.cloud.worker import SyncWorker
from controlplane.cloud.zones import enabled_zones
from controlplane.events import NORMAL, WARNING, EventRecorder

log = logging.getLogger("controlplane.cloud.alb")
COMPONENT = "ingress"             # the AWS Load Balancer Controller's event source
FAILURES = ("FailedBuildModel", "FailedDeployModel")
WATCHED = ("ingresses", "ingressclasses", "services", "endpointslices", "nodes", "secrets")


def ensure_alb_ingress_class(client: KubeClient) -> bool:
    """Create the IngressClass `alb` (controller ingress.k8s.aws/alb) unless it exists,
    as the controller's Helm chart installs it (not the default class). True if created."""
    try:
        client.create("ingressclasses", {
            "apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
            "metadata": {"name": CLASS_NAME, "labels": {
                "app.kubernetes.io/name": "aws-load-balancer-controller"}},
            "spec": {"controller": CONTROLLER}})
    except ApiError as err:
        if err.conflict:
            return False
        raise
    return True


def dns_records_path_for(alb_config_path: Path) -> Path:
    """The ALBs' public DNS records, next to their config (the service controller
    merges them into the lab's public DNS)."""
    return alb_config_path.parent / "alb-dns.json"


class AlbController(SyncWorker):
    """The AWS Load Balancer Controller's part: Ingresses in, ALBs out."""

    label = "ALB controller"

    def __init__(self, client: KubeClient, alb_config_path: Path, vip_pool: list[str],
                 time_factor: float, *, elb_config_path: Path | None = None,
                 zone_enis: Mapping[str, str] | None = None,
                 vpc_subnets: Mapping[str | None, str] | None = None,
                 cluster_name: str = "svclab"):
        self.client = client
        self.config_path = Path(alb_config_path)
        self.elb_config_path = Path(elb_config_path or self.config_path.with_name("config.json"))
        self.status_path = self.elb_config_path.with_name("status.json")
        self.dns_path = dns_records_path_for(self.config_path)
        self.vip_pool = list(vip_pool)
        self.zone_enis = dict(zone_enis or {})
        subnets = dict(vpc_subnets or {})
        self.internal_pools = placement.internal_pools(subnets)
        self.settings = ModelSettings(cluster=cluster_name, time_factor=time_factor,
                                      cert_dir=self.config_path.parent / "alb-certs",
                                      vpc_cidrs=tuple(subnets.values()))
        self.informers = {r: Informer(client, r, self._changed) for r in WATCHED}
        super().__init__(EventRecorder(client, COMPONENT), list(self.informers.values()))
        self.health = TargetHealthReporter(self.recorder)
        self._vips: dict[placement.Key, str] = {}
        self._good: dict[str, BuiltAlb] = {}        # group id -> its last good build
        self._placed: dict[str, object] = {}        # group id -> the placed Alb
        # (ingress key, reason) -> the Warnings of the last sync / of this one
        self._said: dict[tuple[str, str], set[str]] = {}
        self._pending: dict[tuple[str, str], set[str]] = {}
        self._written: tuple[dict | None, dict | None] = (None, None)

    # --- lifecycle -------------------------------------------------------------

    def resume(self) -> None:
        try:
            previous = read_alb_config(self.config_path)
        except AlbConfigError as err:
            log.warning("ignoring unreadable ALB config: %s", err)
            previous = AlbConfig()
        self._vips = {(alb.name, node.zone): node.vip
                      for alb in previous.load_balancers for node in alb.nodes}

    def report(self) -> None:
        self.health.report(self._read_status(), self._placed.values(),
                           self._good, self.informers["ingresses"])

    # --- the sync ----------------------------------------------------------------

    def sync(self) -> None:
        self._pending = {}
        cache = {r: self.informers[r].items() for r in WATCHED}
        classes = {c["metadata"]["name"]: c for c in cache["ingressclasses"]}
        groups, bad = group_ingresses(cache["ingresses"], classes)
        for ingress, problem in bad:
            self._warn([ingress_key(ingress)], "FailedLoadGroupID", problem.message)
        view = _view(cache)
        built: dict[str, BuiltAlb] = {}
        succeeded = set()
        for group in groups:
            try:
                built[group.id] = _build(group, view, self.settings)
                succeeded.add(group.id)
            except AlbProblem as problem:
                reason, verb = (("FailedDeployModel", "deploy") if problem.deploy
                                else ("FailedBuildModel", "build"))
                self._warn(group.keys, reason, f"Failed {verb} model due to {problem.message}")
                if group.id in self._good:           # keeps the ALB it had
                    built[group.id] = self._good[group.id]
                continue
            for warning in built[group.id].warnings:
                self._warn(group.keys, "PodIPsNotRoutable", warning)
        placed = self._place(built)
        write_certificates(self.settings.cert_dir,
                           [c for g in placed for c in built[g].certificates])
        self._write(AlbConfig(tuple(placed[g] for g in sorted(placed))))
        self._announce(built, placed, succeeded)
        self._flush_warnings()
        self._sync_statuses(cache["ingresses"], built, placed)
        self._good = {g: b for g, b in built.items() if g in placed}
        self._placed = placed
        self.syncs += 1

    def _place(self, built: dict[str, BuiltAlb]) -> dict[str, object]:
        zones = enabled_zones(self.informers["nodes"].items(), self.zone_enis) or (None,)
        albs = [b.alb for _, b in sorted(built.items())]
        self._vips = placement.allocate(albs, zones, self._vips, self.vip_pool,
                                        self._classic_vips(), self.internal_pools)
        placed = {}
        for gid, b in sorted(built.items()):
            alb = placement.place(b.alb, zones, self._vips, self.zone_enis)
            if alb is None:
                where = "the VPC's internal" if b.alb.scheme == "internal" else "the ELB's public"
                self._warn(b.group.keys, "FailedDeployModel",
                           f"Failed deploy model due to no free address in {where} pool for "
                           f"load balancer {b.alb.name}")
                continue
            placed[gid] = alb
        return placed

    def _classic_vips(self) -> set[str]:
        try:
            config = read_config(self.elb_config_path)
        except ElbConfigError:
            return set()
        return {vip for lb in config.load_balancers for vip in lb.vips}

    def _write(self, config: AlbConfig) -> None:
        as_json = alb_config_to_json(config)
        records = {alb.hostname: list(alb.vips) for alb in config.load_balancers}
        if as_json != self._written[0]:
            write_albs(self.config_path, config)
        if records != self._written[1]:
            write_json_atomically(self.dns_path, records)
        self._written = (as_json, records)

    def _announce(self, built: dict[str, BuiltAlb], placed: dict[str, object],
                  succeeded: set[str]) -> None:
        """SuccessfullyReconciled on a group's Ingresses when its ALB changed, or when
        it builds again after a failure."""
        for gid in sorted(succeeded & set(placed)):
            keys = built[gid].group.keys
            failed = [k for k in keys for r in FAILURES if (k, r) in self._said]
            if self._placed.get(gid) == placed[gid] and not failed:
                continue
            for key in keys:
                self._event(key, NORMAL, "SuccessfullyReconciled", "Successfully reconciled")

    def _sync_statuses(self, ingresses: list[dict], built: dict[str, BuiltAlb],
                       placed: dict[str, object]) -> None:
        hostname = {key: placed[g].hostname for g, b in built.items() if g in placed
                    for key in b.group.keys}
        ours = {a.hostname for a in placed.values()} | {
            a.hostname for a in self._placed.values()}
        for ingress in ingresses:
            key = ingress_key(ingress)
            current = ((ingress.get("status") or {}).get("loadBalancer") or {}).get("ingress")
            if key in hostname:
                wanted = [{"hostname": hostname[key]}]
                if current != wanted:
                    self._patch_status(ingress, {"ingress": wanted})
            elif current and any(p.get("hostname") in ours for p in current):
                self._patch_status(ingress, {"ingress": None})

    def _patch_status(self, ingress: dict, load_balancer: dict) -> None:
        meta = ingress["metadata"]
        try:
            self.client.patch("ingresses", meta["name"], {"status": {"loadBalancer":
                                                                     load_balancer}},
                              namespace=meta["namespace"], subresource="status")
        except ApiError as err:
            if not err.not_found:
                raise

    # --- events ------------------------------------------------------------------

    def _warn(self, keys, reason: str, message: str) -> None:
        """A Warning for each Ingress, sent at the end of the sync (_flush_warnings)."""
        for key in keys:
            self._pending.setdefault((key, reason), set()).add(message)

    def _flush_warnings(self) -> None:
        """Send the Warnings the last sync did not have: a resync repeats none, one that
        went away and comes back is sent again."""
        for (key, reason), messages in sorted(self._pending.items()):
            for message in sorted(messages - self._said.get((key, reason), set())):
                self._event(key, WARNING, reason, message)
        self._said = self._pending

    def _event(self, key: str, event_type: str, reason: str, message: str) -> None:
        ingress = self.informers["ingresses"].get(key)
        if ingress is not None:
            self.recorder.event(ingress, event_type, reason, message)

    def _read_status(self) -> dict:
        try:
            return json.loads(self.status_path.read_text())
        except FileNotFoundError:
            return {}
        except ValueError as err:
            log.warning("unreadable ELB status %s: %s", self.status_path, err)
            return {}


def _build(group, view: ClusterView, settings: ModelSettings) -> BuiltAlb:
    """build_alb; an object shaped as the model did not expect is the group's problem
    (an Event on its Ingresses), not the end of the controller's thread."""
    try:
        return build_alb(group, view, settings)
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise AlbProblem(f"cannot read the group's objects: {type(err).__name__}: {err}") \
            from err


def _view(cache: dict[str, list[dict]]) -> ClusterView:
    slices: dict[str, list[dict]] = {}
    for eps in cache["endpointslices"]:
        service = (eps["metadata"].get("labels") or {}).get("kubernetes.io/service-name")
        if service:
            slices.setdefault(f"{eps['metadata']['namespace']}/{service}", []).append(eps)
    return ClusterView(services={key_of(s): s for s in cache["services"]},
                       endpoint_slices={k: tuple(v) for k, v in slices.items()},
                       nodes=tuple(cache["nodes"]),
                       secrets={key_of(s): s for s in cache["secrets"]})
