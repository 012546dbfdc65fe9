"""One pod's life on a node, in its own thread: start, tend, probe, terminate.

The worker sets up the pod's volumes (controlplane/kubelet/volumesync.py),
creates the pod's host (and so its IP), starts each container,
restarts dead ones per restartPolicy with a bounded back-off, runs
readiness and liveness probes, and writes the pod's status whenever what
kubectl would show changes.  When the API marks the pod for deletion it
sends SIGTERM, keeps the pod (serving, probing) until its containers exit or
the grace period ends, kills what is left, removes the host and finishes
the deletion with gracePeriodSeconds=0.
"""
from __future__ import annotations

import dataclasses
import http.client
import logging
import signal
import threading
import time

from base.cri import PodRuntimeError
from base.kube.client import ApiError
from controlplane.controllers.objects import is_terminating, now_rfc3339
from controlplane.events import NORMAL, WARNING, container_path
from controlplane.kubelet.containers import plan_pod_containers
from controlplane.kubelet.dns import pod_dns
from controlplane.kubelet.env import expand_command
from controlplane.kubelet.probes import ProbeTracker, run_probe
from controlplane.kubelet.sandbox import ContainerConfigError, console_config, sandbox_config
from controlplane.kubelet.serviceaccount import VolumeSetupError, service_account_volumes
from controlplane.kubelet.status import ContainerRecord, PodRecord, pod_status
from controlplane.kubelet.volumesync import VOLUME_SYNC_SECONDS, PodVolumes

log = logging.getLogger("controlplane.kubelet")
TICK = 0.1
RESYNC = 10.0              # a settled pod looks again this often (the kubelet's sync period)
LISTEN_WAIT = 5.0          # longest wait for the built-in server's listeners
BACKOFF_START = 1.0
BACKOFF_MAX = 10.0
SETUP_RETRY = 1.0
STATUS_RETRY = 0.5         # a status write that failed (the tick's period before RESYNC)
CONFIG_RETRY = 1.0         # a container whose environment cannot be built yet


class PodWorker:
    def __init__(self, kubelet, pod: dict):
        self.kubelet = kubelet
        self.runtime = kubelet.runtime
        self.client = kubelet.client
        self.pod = pod
        meta = pod["metadata"]
        self.namespace, self.name, self.uid = meta["namespace"], meta["name"], meta["uid"]
        self.record = PodRecord(host_ip=kubelet.host_ip, start_time=now_rfc3339(),
                                containers=[ContainerRecord(spec=c) for c in
                                            pod["spec"].get("containers") or []])
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._gone = False
        self._terminating = False
        self._created = False
        self._posted: dict | None = None
        self.volumes = PodVolumes(self)
        self.thread = threading.Thread(target=self._run, daemon=True,
                                       name=f"pod-{self.namespace}/{self.name}")

    # --- from the kubelet ------------------------------------------------------

    def start(self) -> None:
        self.thread.start()

    def update(self, pod: dict) -> None:
        self.pod = pod
        if self._posted is not None and _ready(pod.get("status")) != _ready(self._posted):
            # Someone else changed what we said (the node lifecycle controller
            # marks pods of an unreachable node not ready): say it again.
            self._posted = None
        self._wake.set()

    def config_changed(self) -> None:
        """A ConfigMap or Secret changed: volumes and waiting containers look again."""
        self.volumes.config_changed()
        self._wake.set()

    def relist(self) -> None:
        """From the kubelet's relist (its PLEG): wake the worker when a container it
        holds for running has ended, so a settled pod needs no timer of its own."""
        for container in self.record.containers:
            if container.running and not self.runtime.container_state(container.handle).running:
                self._wake.set()
                return

    def mark_gone(self) -> None:
        self._gone = True
        self._wake.set()

    def request_stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def stop(self, timeout: float) -> None:
        self.request_stop()
        self.thread.join(timeout)

    # --- the life of the pod ----------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stop.is_set() and not self._gone and not self._created:
                if is_terminating(self.pod):
                    break
                try:
                    self._create()
                except (PodRuntimeError, ApiError, ContainerConfigError) as err:
                    log.warning("%s/%s: cannot start yet: %s", self.namespace, self.name, err)
                    self._sleep(SETUP_RETRY)
                except Exception:   # a kubelet retries a failed sync, whatever failed
                    log.exception("%s/%s: starting the pod failed; trying again in %g s",
                                  self.namespace, self.name, SETUP_RETRY)
                    self._sleep(SETUP_RETRY)
            while not self._stop.is_set():
                if self._gone:
                    self._teardown()
                    return
                if is_terminating(self.pod):
                    self._terminate()
                    return
                try:
                    self._tick()
                    wait = self._next_wait()
                except (ApiError, OSError, http.client.HTTPException) as err:
                    # an unreachable or refusing API: the status is written again soon
                    log.warning("%s/%s: %s", self.namespace, self.name, err)
                    wait = STATUS_RETRY
                except Exception:   # as above: the pod's worker lives on
                    log.exception("%s/%s: syncing the pod failed", self.namespace, self.name)
                    wait = SETUP_RETRY
                self._sleep(wait)
        finally:
            self.kubelet.worker_done(self)

    def _sleep(self, seconds: float) -> None:
        self._wake.wait(seconds)
        self._wake.clear()

    def _create(self) -> None:
        self._post_status()        # Pending, ContainerCreating
        sandbox = sandbox_config(self.pod, self.kubelet.cluster_domain)
        dns = None
        if self.kubelet.dns is not None:
            dns, warnings = pod_dns(self.pod, self.kubelet.dns)
            for warning in warnings:
                self.kubelet.recorder.event(self.pod, WARNING, "DNSConfigForming", warning)
        try:
            volumes = service_account_volumes(self.client, self.pod)
        except VolumeSetupError as err:
            self.kubelet.recorder.event(self.pod, WARNING, "FailedMount", str(err))
            raise
        plan = self.volumes.set_up()
        try:
            self.record.pod_ip = self.runtime.create_pod(
                self.namespace, self.name, self.kubelet.node_name,
                dataclasses.replace(sandbox, volumes=volumes, pod_volumes=plan.volumes,
                                    mounts=plan.mounts, dns=dns))
        except PodRuntimeError as err:
            self.volumes.warn("FailedCreatePodSandBox", f"Failed to create pod sandbox: {err}")
            raise
        plans = plan_pod_containers(self.pod, self.record.pod_ip, self.kubelet.python,
                                    self.kubelet.builtin_images)
        for container, plan in zip(self.record.containers, plans):
            container.plan = plan
            self._start_container(container, time.monotonic())
        self._created = True
        self._tick()

    def _start_container(self, container: ContainerRecord, now: float) -> None:
        # No registry in the lab: every image is "present" (a stand-in), never pulled.
        self._event(container, NORMAL, "Pulled", f'Container image "{container.spec.get("image")}"'
                    " already present on machine and can be accessed by the pod")
        try:
            env = self.kubelet.container_env(self.pod, container.spec, self.record.pod_ip)
        except ContainerConfigError as err:
            container.waiting_reason, container.waiting_message = ("CreateContainerConfigError",
                                                                   str(err))
            self._event(container, WARNING, "Failed", f"Error: {err}")
            container.config_retry = now + CONFIG_RETRY
            return
        container.config_retry = 0.0
        container.handle = self.runtime.start_container(
            self.namespace, self.name, container.spec.get("name", ""),
            expand_command(list(container.plan.argv), env), env, console_config(container.spec))
        self._event(container, NORMAL, "Created", "Container created")
        self._event(container, NORMAL, "Started", "Container started")
        if container.plan.emulation:        # what `kubectl describe pod` tells about the image
            self._event(container, NORMAL, "Emulated", container.plan.emulation)
        for event_type, reason, message in container.plan.events:
            self._event(container, event_type, reason, message)
        container.started_at = now_rfc3339()
        container.terminated = None
        container.waiting_reason = container.waiting_message = ""
        container.started = not container.plan.builtin
        container.start_deadline = now + LISTEN_WAIT
        probe = container.spec.get("readinessProbe")
        container.readiness = ProbeTracker(probe, now) if probe else None
        live = container.spec.get("livenessProbe")
        container.liveness = ProbeTracker(live, now, result=True) if live else None

    def _tick(self) -> None:
        now = time.monotonic()
        if not self._terminating:
            self.volumes.sync(now)
        for container in self.record.containers:
            self._tend(container, now)
        self._probe(now)
        self._post_status()

    def _tend(self, container: ContainerRecord, now: float) -> None:
        if container.config_retry:
            if now >= container.config_retry and not self._terminating:
                self._start_container(container, now)
            return
        if container.handle is None:
            return
        if container.running:
            state = self.runtime.container_state(container.handle)
            if state.running:
                if not container.started:
                    container.started = now >= container.start_deadline or all(
                        self.runtime.listening(container.handle, port, protocol)
                        for port, protocol in container.plan.ports)
                return
            self._exited(container, state.exit_code, now)
        elif container.backoff_until and now >= container.backoff_until \
                and not self._terminating:
            container.last_terminated = container.terminated
            container.restart_count += 1
            container.backoff_until = 0.0
            self._start_container(container, now)

    def _exited(self, container: ContainerRecord, code: int | None, now: float) -> None:
        code = 137 if code is None else code
        container.terminated = {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
                                "startedAt": container.started_at, "finishedAt": now_rfc3339(),
                                "containerID": container.handle.container_id}
        container.started = False
        policy = self.pod["spec"].get("restartPolicy", "Always")
        if self._terminating or policy == "Never" or (policy == "OnFailure" and code == 0):
            container.waiting_reason = ""
            return
        container.backoff = min(BACKOFF_MAX, container.backoff * 2 or BACKOFF_START)
        container.backoff_until = now + container.backoff
        container.waiting_reason = "CrashLoopBackOff"
        self._event(container, WARNING, "BackOff", "Back-off restarting failed container "
                    f"{container.spec.get('name', '')} in pod "
                    f"{self.name}_{self.namespace}({self.uid})")
        container.waiting_message = (f"back-off {container.backoff:g}s restarting failed "
                                     f"container={container.spec.get('name', '')} "
                                     f"pod={self.name}_{self.namespace}({self.uid})")

    def _probe(self, now: float) -> None:
        for container in self.record.containers:
            if not (container.running and container.started):
                continue
            for tracker in (container.readiness, container.liveness):
                if tracker is None or not tracker.due(now):
                    continue
                ok, message = run_probe(self.runtime, tracker.probe, container.spec,
                                        node=self.kubelet.node_name, pod_ip=self.record.pod_ip,
                                        namespace=self.namespace, pod=self.name)
                tracker.record(ok, time.monotonic(), message)
                if not ok:
                    kind = "Readiness" if tracker is container.readiness else "Liveness"
                    self._event(container, WARNING, "Unhealthy", f"{kind} probe failed: {message}")
            if container.liveness is not None and not container.liveness.result \
                    and not self._terminating:
                self._event(container, NORMAL, "Killing", f"Container {container.spec.get('name')}"
                            " failed liveness probe, will be restarted")
                self.runtime.signal_container(container.handle, signal.SIGKILL)

    def _next_wait(self) -> float:
        """Soon while a container starts or backs off; else when a probe or a volume
        sync is due; else RESYNC: a pod change, a config change and the kubelet's
        relist (a container ended) wake the worker before that."""
        now = time.monotonic()
        waits = [TICK if any((c.running and not c.started) or c.backoff_until or c.config_retry
                             for c in self.record.containers) else RESYNC]
        if self.volumes.syncs_periodically:
            waits.append(VOLUME_SYNC_SECONDS)
        for container in self.record.containers:
            for tracker in (container.readiness, container.liveness):
                if tracker is not None:
                    waits.append(max(0.01, tracker.next_due - now))
        return min(waits)

    def _post_status(self) -> None:
        status = pod_status(self.pod, self.record, now_rfc3339())
        if status == self._posted:
            return
        try:
            self.client.patch("pods", self.name, {"status": status}, self.namespace,
                              subresource="status")
            self._posted = status
        except ApiError as err:
            if err.not_found:
                self._gone = True
                return
            raise

    # --- the end ---------------------------------------------------------------

    def _grace(self) -> float:
        meta, spec = self.pod["metadata"], self.pod["spec"]
        grace = meta.get("deletionGracePeriodSeconds")
        return float(spec.get("terminationGracePeriodSeconds", 30) if grace is None else grace)

    def _terminate(self) -> None:
        self._terminating = True
        began = time.monotonic()
        for container in self.record.containers:
            if container.running:
                self._event(container, NORMAL, "Killing",
                            f"Stopping container {container.spec.get('name', '')}")
                self.runtime.signal_container(container.handle, signal.SIGTERM)
        while not self._stop.is_set() and not self._gone:
            if time.monotonic() >= began + self._grace():
                break
            try:
                self._tick()
            except ApiError as err:
                log.warning("%s/%s: status while terminating: %s", self.namespace, self.name, err)
            if not any(c.running for c in self.record.containers):
                break
            self._sleep(TICK)
        if self._stop.is_set():
            return
        self._teardown()
        self._finish_deletion()

    def _finish_deletion(self) -> None:
        """DELETE with gracePeriodSeconds=0, retried until it is done: a node cut off
        from the API server finishes its pods' deletion once it is back, as the
        kubelet's status manager does, instead of leaving them Terminating."""
        while not self._stop.is_set() and not self._gone:
            try:
                self.client.delete("pods", self.name, self.namespace, grace_period=0)
                return
            except ApiError as err:
                if err.not_found:
                    return
                failure = str(err)
            except (OSError, http.client.HTTPException) as err:
                failure = f"{type(err).__name__}: {err}"
            log.warning("%s/%s: cannot finish the deletion yet: %s", self.namespace,
                        self.name, failure)
            self._sleep(SETUP_RETRY)

    def _event(self, container: ContainerRecord, event_type: str, reason: str, text: str) -> None:
        self.kubelet.recorder.event(self.pod, event_type, reason, text,
                                    field_path=container_path(container.spec.get("name", "")))

    def _teardown(self) -> None:
        for container in self.record.containers:
            if container.running:
                self.runtime.signal_container(container.handle, signal.SIGKILL)
        self.runtime.remove_pod(self.namespace, self.name)


def _ready(status: dict | None) -> str | None:
    return next((c.get("status") for c in (status or {}).get("conditions") or []
                 if c.get("type") == "Ready"), None)
