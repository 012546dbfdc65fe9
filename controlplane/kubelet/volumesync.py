"""One pod's volumes over its life: set up before its sandbox, kept in sync after.

What upstream's volume manager does for a pod (pkg/kubelet/volumemanager):
before the sandbox exists every volume must be set up, or the pod waits in
ContainerCreating with a `FailedMount` event per volume (repeated with a
growing back-off, as the kubelet's operation executor retries); afterwards
the API-data volumes (configMap, secret, downwardAPI, projected) are set up
again every sync period and whenever a ConfigMap or Secret changes, and a
volume whose content changed is rewritten in one step (base/cri.py
PodRuntime.update_volume).  upstream's sync period is a minute; the lab's is
VOLUME_SYNC_SECONDS.  A mount of a sub path binds the file the volume held
when the pod started and so does not follow, as upstream.
Projected service account tokens are fetched once and again at 80 % of
their lifetime, as the kubelet's token manager does.
"""
from __future__ import annotations

import logging
import time

from base.cri import PodRuntimeError, PodVolume
from base.kube.client import ApiError
from controlplane.events import WARNING
from controlplane.kubelet.serviceaccount import fetch_token
from controlplane.kubelet.volumes import (
    VolumePlan,
    VolumeSetupError,
    has_api_data,
    token_requests,
)

log = logging.getLogger("controlplane.kubelet")
VOLUME_SYNC_SECONDS = 1.0
EVENT_BACKOFF_START = 1.0      # a repeated FailedMount waits this long, doubling
EVENT_BACKOFF_MAX = 120.0
TOKEN_REFRESH = 0.8            # share of a token's lifetime after which it is fetched again


class PodVolumes:
    def __init__(self, worker):
        self.worker = worker
        self.kubelet = worker.kubelet
        self.written: dict[str, PodVolume] = {}
        self._tokens: dict[tuple[str, int], tuple[str, float]] = {}   # -> (token, refresh at)
        self._dirty = False
        self._next_sync = 0.0
        self._events: dict[tuple, tuple[float, float]] = {}           # -> (next at, back-off)
        self._noted: set[str] = set()

    def config_changed(self) -> None:
        self._dirty = True

    @property
    def syncs_periodically(self) -> bool:
        """Whether a volume follows the API (its files are compared once a period)."""
        return has_api_data(self.worker.pod)

    # --- before the sandbox ----------------------------------------------------

    def set_up(self) -> VolumePlan:
        """The plan to create the sandbox with; VolumeSetupError (after the events)
        while any volume cannot be set up."""
        plan = self._plan()
        self._note(plan)
        if plan.failures:
            self._fail(plan.failures)
            raise VolumeSetupError(plan.failures[0])
        self.written = {v.name: v for v in plan.volumes}
        self._next_sync = time.monotonic() + VOLUME_SYNC_SECONDS
        return plan

    # --- while the pod runs ------------------------------------------------------

    def sync(self, now: float) -> None:
        """Rewrite the volumes whose sources changed (once per period or on a change)."""
        pod = self.worker.pod
        if not has_api_data(pod) or not (self._dirty or now >= self._next_sync):
            return
        self._dirty = False
        self._next_sync = now + VOLUME_SYNC_SECONDS
        try:
            plan = self._plan()
        except (ApiError, OSError, VolumeSetupError) as err:
            log.warning("%s/%s: volumes not synced: %s", self.worker.namespace,
                        self.worker.name, err)
            return
        if plan.failures:
            self._fail(plan.failures)       # the files stay as they were
        for volume in plan.volumes:
            if volume.kind != "files" or self.written.get(volume.name) == volume:
                continue
            try:
                self.worker.runtime.update_volume(self.worker.namespace, self.worker.name,
                                                  volume)
            except PodRuntimeError as err:
                log.warning("%s/%s: volume %s not updated: %s", self.worker.namespace,
                            self.worker.name, volume.name, err)
                continue
            self.written[volume.name] = volume

    # --- internals ---------------------------------------------------------------

    def _plan(self) -> VolumePlan:
        tokens, errors = self._fetch_tokens(time.monotonic())
        return self.kubelet.volume_plan(self.worker.pod, tokens, errors)

    def _fetch_tokens(self, now: float) -> tuple[dict, dict]:
        tokens, errors = {}, {}
        for key in token_requests(self.worker.pod):
            cached = self._tokens.get(key)
            if cached is None or now >= cached[1]:
                audience, seconds = key
                try:
                    token = fetch_token(self.worker.client, self.worker.pod, audience, seconds)
                except ApiError as err:
                    if cached is None:
                        errors[key] = err.message
                        continue
                    token = cached[0]        # keep the old one until a new one comes
                else:
                    cached = (token, now + seconds * TOKEN_REFRESH)
                    self._tokens[key] = cached
            tokens[key] = cached[0]
        return tokens, errors

    def warn(self, reason: str, message: str) -> None:
        """A Warning event for the pod, repeated with a growing back-off as the
        kubelet's retries repeat it."""
        now = time.monotonic()
        due, backoff = self._events.get((reason, message), (0.0, EVENT_BACKOFF_START / 2))
        if now < due:
            return
        backoff = min(EVENT_BACKOFF_MAX, backoff * 2)
        self._events[(reason, message)] = (now + backoff, backoff)
        self.kubelet.recorder.event(self.worker.pod, WARNING, reason, message)

    def _fail(self, failures: tuple[str, ...]) -> None:
        for message in failures:
            self.warn("FailedMount", message)

    def _note(self, plan: VolumePlan) -> None:
        for note in plan.notes:
            if note not in self._noted:
                self._noted.add(note)
                self.kubelet.recorder.event(self.worker.pod, WARNING, "VolumeNotEmulated", note)
