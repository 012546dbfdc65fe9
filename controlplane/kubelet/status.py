"""A pod's status as the kubelet reports it, built from what it knows: pure.

`ContainerRecord` is the kubelet's memory of one container (plan, process,
restarts, readiness); `pod_status` turns the records of a pod into the
status object kubectl shows: phase, IPs, conditions with stable transition
times, containerStatuses with state / lastState / ready / started /
restartCount / image / imageID / containerID.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from base.cri import ContainerHandle
from controlplane.kubelet.containers import ContainerPlan, image_id, qualified_image
from controlplane.kubelet.probes import ProbeTracker


@dataclass
class ContainerRecord:
    spec: dict
    plan: ContainerPlan | None = None
    handle: ContainerHandle | None = None
    started_at: str = ""
    started: bool = False                 # running and (built-in) listening
    start_deadline: float = 0.0           # stop waiting for the listener then
    restart_count: int = 0
    waiting_reason: str = "ContainerCreating"
    waiting_message: str = ""
    terminated: dict | None = None        # current state when not running
    last_terminated: dict | None = None
    backoff_until: float = 0.0
    backoff: float = 0.0
    config_retry: float = 0.0             # CreateContainerConfigError: try again then
    readiness: ProbeTracker | None = None
    liveness: ProbeTracker | None = None

    @property
    def running(self) -> bool:
        return self.handle is not None and self.terminated is None

    @property
    def ready(self) -> bool:
        if not self.running or not self.started:
            return False
        return self.readiness.result if self.readiness is not None else True


@dataclass
class PodRecord:
    host_ip: str = ""
    pod_ip: str = ""
    start_time: str = ""
    containers: list[ContainerRecord] = field(default_factory=list)
    transitions: dict = field(default_factory=dict)   # condition type -> (status, time)


def pod_phase(pod: dict, record: PodRecord) -> str:
    containers = record.containers
    if not record.pod_ip or not containers:
        return "Pending"
    if any(c.running for c in containers):
        return "Running"
    policy = (pod.get("spec") or {}).get("restartPolicy", "Always")
    if all(c.terminated is not None for c in containers) and policy != "Always":
        codes = [(c.terminated or {}).get("exitCode") for c in containers]
        if all(code == 0 for code in codes):
            return "Succeeded"
        if policy == "Never":
            return "Failed"
    if any(c.handle is not None for c in containers):
        return "Running"
    return "Pending"


def _state(container: ContainerRecord) -> dict:
    if container.running:
        return {"running": {"startedAt": container.started_at}}
    if container.terminated is not None and not container.waiting_reason:
        return {"terminated": dict(container.terminated)}
    waiting = {"reason": container.waiting_reason or "ContainerCreating"}
    if container.waiting_message:
        waiting["message"] = container.waiting_message
    return {"waiting": waiting}


def container_status(container: ContainerRecord) -> dict:
    image = container.spec.get("image", "")
    status = {"name": container.spec.get("name", ""), "state": _state(container),
              "lastState": ({"terminated": dict(container.last_terminated)}
                            if container.last_terminated else {}),
              "ready": container.ready, "restartCount": container.restart_count,
              "image": qualified_image(image), "imageID": "",
              "started": container.running and container.started}
    if container.handle is not None:
        status["imageID"] = image_id(image)
        status["containerID"] = container.handle.container_id
    return status


def pod_status(pod: dict, record: PodRecord, now: str) -> dict:
    containers = record.containers
    all_ready = bool(containers) and all(c.ready for c in containers)
    wanted = {
        "PodReadyToStartContainers": "True" if record.pod_ip else "False",
        "Initialized": "True",
        "Ready": "True" if all_ready else "False",
        "ContainersReady": "True" if all_ready else "False",
        "PodScheduled": "True",
    }
    conditions = []
    for kind, state in wanted.items():
        before = record.transitions.get(kind)
        if before is None or before[0] != state:
            record.transitions[kind] = (state, now)
        condition = {"type": kind, "status": state, "lastProbeTime": None,
                     "lastTransitionTime": record.transitions[kind][1]}
        if state == "False" and kind in ("Ready", "ContainersReady"):
            not_ready = [c.spec.get("name", "") for c in containers if not c.ready]
            condition["reason"] = "ContainersNotReady"
            condition["message"] = f"containers with unready status: [{' '.join(not_ready)}]"
        conditions.append(condition)
    status = {"phase": pod_phase(pod, record), "conditions": conditions,
              "hostIP": record.host_ip, "startTime": record.start_time,
              "containerStatuses": [container_status(c) for c in containers],
              "qosClass": (pod.get("status") or {}).get("qosClass", "BestEffort")}
    if record.host_ip:
        status["hostIPs"] = [{"ip": record.host_ip}]
    if record.pod_ip:
        status["podIP"] = record.pod_ip
        status["podIPs"] = [{"ip": record.pod_ip}]
    return status
