"""Server-side Table columns of StatefulSets, DaemonSets, ControllerRevisions,
ReplicationControllers, Jobs, CronJobs and Leases.

As pkg/printers/internalversion/printers.go prints them (wide: the server
always sends every column, kubectl hides priority-1 ones without -o wide),
so ``kubectl get sts|ds|rc|job|cj|lease`` reads like a real cluster.
"""

from __future__ import annotations

import datetime as dt

from controlplane.api.selectors import format_labels, selector_string
from controlplane.api.table_cells import AGE, NAME, _col, _containers, _since, age, human_duration

CONTAINERS, IMAGES, SELECTOR = _col("Containers", 1), _col("Images", 1), _col("Selector", 1)


def _parts(obj: dict) -> tuple[dict, dict]:
    return obj.get("spec") or {}, obj.get("status") or {}


def _statefulset(sts, now):
    spec, status = _parts(sts)
    names, images = _containers(spec.get("template"))
    return [sts["metadata"]["name"],
            f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 0)}", age(sts, now),
            names, images]


def _daemonset(ds, now):
    spec, status = _parts(ds)
    names, images = _containers(spec.get("template"))
    node_selector = ((spec.get("template") or {}).get("spec") or {}).get("nodeSelector")
    return [ds["metadata"]["name"], status.get("desiredNumberScheduled", 0),
            status.get("currentNumberScheduled", 0), status.get("numberReady", 0),
            status.get("updatedNumberScheduled", 0), status.get("numberAvailable", 0),
            format_labels(node_selector), age(ds, now), names, images,
            selector_string(spec.get("selector"))]


def _controllerrevision(rev, now):
    controller = "<none>"
    for ref in (rev.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            group = ref.get("apiVersion", "").rpartition("/")[0]
            kind = ref.get("kind", "").lower() + (f".{group}" if group else "")
            controller = f"{kind}/{ref.get('name', '')}"
            break
    return [rev["metadata"]["name"], controller, rev.get("revision", 0), age(rev, now)]


def _replicationcontroller(rc, now):
    spec, status = _parts(rc)
    names, images = _containers(spec.get("template"))
    return [rc["metadata"]["name"], spec.get("replicas", 0), status.get("replicas", 0),
            status.get("readyReplicas", 0), age(rc, now), names, images,
            format_labels(spec.get("selector"))]


def _condition(obj: dict, kind: str) -> bool:
    return any(c.get("type") == kind and c.get("status") == "True"
               for c in (obj.get("status") or {}).get("conditions") or [])


def job_status(job: dict) -> str:
    """printJob's STATUS column."""
    if _condition(job, "Complete"):
        return "Complete"
    if _condition(job, "Failed"):
        return "Failed"
    if (job.get("metadata") or {}).get("deletionTimestamp"):
        return "Terminating"
    for kind in ("Suspended", "FailureTarget", "SuccessCriteriaMet"):
        if _condition(job, kind):
            return kind
    return "Running"


def _stamp(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _job(job, now):
    spec, status = _parts(job)
    succeeded = status.get("succeeded", 0)
    if spec.get("completions") is not None:
        completions = f"{succeeded}/{spec['completions']}"
    elif (spec.get("parallelism") or 0) > 1:
        completions = f"{succeeded}/1 of {spec['parallelism']}"
    else:
        completions = f"{succeeded}/1"
    duration = ""
    if status.get("startTime") and status.get("completionTime"):
        duration = human_duration((_stamp(status["completionTime"])
                                   - _stamp(status["startTime"])).total_seconds())
    elif status.get("startTime"):
        duration = _since(status["startTime"], now)
    names, images = _containers(spec.get("template"))
    return [job["metadata"]["name"], job_status(job), completions, duration, age(job, now),
            names, images, selector_string(spec.get("selector"))]


def _cronjob(cj, now):
    spec, status = _parts(cj)
    job_spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    names, images = _containers(job_spec.get("template"))
    suspend = spec.get("suspend")
    last = _since(status["lastScheduleTime"], now) if status.get("lastScheduleTime") else "<none>"
    return [cj["metadata"]["name"], spec.get("schedule", ""), spec.get("timeZone") or "<none>",
            "<unset>" if suspend is None else str(bool(suspend)),
            len(status.get("active") or []), last, age(cj, now), names, images,
            selector_string(job_spec.get("selector"))]


def _lease(lease, now):
    return [lease["metadata"]["name"], (lease.get("spec") or {}).get("holderIdentity", ""),
            age(lease, now)]


TABLES = {
    "statefulsets": ([NAME, _col("Ready"), AGE, CONTAINERS, IMAGES], _statefulset),
    "daemonsets": ([NAME, _col("Desired", typ="integer"), _col("Current", typ="integer"),
                    _col("Ready", typ="integer"), _col("Up-to-date", typ="integer"),
                    _col("Available", typ="integer"), _col("Node Selector"), AGE, CONTAINERS,
                    IMAGES, SELECTOR], _daemonset),
    "controllerrevisions": ([NAME, _col("Controller"), _col("Revision"), AGE],
                            _controllerrevision),
    "replicationcontrollers": ([NAME, _col("Desired", typ="integer"),
                                _col("Current", typ="integer"), _col("Ready", typ="integer"),
                                AGE, CONTAINERS, IMAGES, SELECTOR], _replicationcontroller),
    "jobs": ([NAME, _col("Status"), _col("Completions"), _col("Duration"), AGE, CONTAINERS,
              IMAGES, SELECTOR], _job),
    "cronjobs": ([NAME, _col("Schedule"), _col("Timezone"), _col("Suspend", typ="boolean"),
                  _col("Active", typ="integer"), _col("Last Schedule"), AGE, CONTAINERS,
                  IMAGES, SELECTOR], _cronjob),
    "leases": ([NAME, _col("Holder"), AGE], _lease),
}
