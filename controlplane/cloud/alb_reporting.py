"""The ALB controller's side effects besides the config file: certificate files and
target health Events.

Certificates: each HTTPS listener names PEM files (alb_model.CertFiles); they
are written into the controller's certificate folder (private key mode 0600)
before the config that names them, and files no ALB names any more are removed.
A file's name carries a hash of its content, so a renewed Secret is a new file
and the ELB agent reloads the listener.

Target health: the ELB agent's status file lists, per ALB and target group,
each target's health transitions; each one newer than the controller's start
becomes an Event on the Ingress whose backend the target group serves
(TargetHealthy / TargetUnhealthy, the lab's own, as the service controller
reports the Classic ELB's targets).
"""
from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

from controlplane.events import NORMAL, WARNING, EventRecorder


def write_certificates(folder: Path, certificates: Iterable) -> None:
    """Write each CertFiles whose files are missing or differ; remove the others."""
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    keep = set()
    for files in certificates:
        for path, data, mode in ((files.certificate.cert_file, files.cert_pem, 0o644),
                                 (files.certificate.key_file, files.key_pem, 0o600)):
            path = Path(path)
            keep.add(path.name)
            if path.exists() and path.read_bytes() == data:
                continue
            tmp = path.with_name(f".{path.name}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(tmp, path)
    for stale in folder.iterdir():
        if stale.name not in keep and not stale.name.startswith("."):
            stale.unlink(missing_ok=True)


class TargetHealthReporter:
    """Turns the agent's target transitions into Events on the Ingresses."""

    def __init__(self, recorder: EventRecorder, clock=time.time):
        self.recorder = recorder
        self.started = clock()
        self.seen: dict[tuple[str, str, str], float] = {}   # (ALB, group, endpoint) -> last

    def report(self, status: dict, placed: Iterable, builds: Mapping, ingresses) -> None:
        """status: the agent's; placed: the Albs written; builds: group -> BuiltAlb;
        ingresses: an informer (key -> Ingress)."""
        names = {alb.name for alb in placed}
        owners = {b.alb.name: b.target_group_owners for b in builds.values()}
        for alb in status.get("applicationLoadBalancers", []):
            if alb.get("name") not in names:
                continue
            for group in alb.get("targetGroups", []):
                owner = owners.get(alb["name"], {}).get(group.get("name"))
                ingress = ingresses.get(owner) if owner else None
                for target in group.get("targets", []):
                    self._target(alb["name"], group["name"], target, ingress)

    def _target(self, alb: str, group: str, target: dict, ingress: dict | None) -> None:
        key = (alb, group, target.get("endpoint", ""))
        seen = self.seen.get(key, self.started)
        for change in target.get("transitions", []):
            if change["at"] <= seen:
                continue
            seen = change["at"]
            if ingress is None:
                continue
            healthy = change["state"] == "healthy"
            who = f" ({target['name']})" if target.get("name") else ""
            self.recorder.event(ingress, NORMAL if healthy else WARNING,
                                "TargetHealthy" if healthy else "TargetUnhealthy",
                                f"ALB {alb} target {target.get('endpoint')}{who} in target "
                                f"group {group} is {change['state']}: {change['reason']}")
        self.seen[key] = seen
