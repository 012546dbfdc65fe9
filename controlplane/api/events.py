"""Events: one storage, two views, as kube-apiserver serves them.

Kubernetes keeps every Event once, in the core/v1 shape, and serves it both
as ``v1`` ``Event`` (involvedObject, message, source, count, first/last
timestamps) and as ``events.k8s.io/v1`` ``Event`` (regarding, note,
deprecatedSource, deprecatedCount, ...).  The conversion is a renaming of
fields (pkg/apis/events/v1/conversion.go), so it is data here:
:data:`RENAMED` pairs, applied one way or the other.

Also here, as pure functions: the fields an Event can be selected by
(pkg/apis/core selection: ``involvedObject.*``, ``reason``, ``source``,
``type``, ``reportingComponent``, ``metadata.*``) and the events.k8s.io
names for them, the validation rules only events.k8s.io requests must
pass, and :func:`new_event`, the Event a legacy recorder writes.  Events
expire after ``DEFAULT_TTL`` (kube-apiserver's ``--event-ttl``, 1 h); the
store drops them lazily (see ``store.py``).
"""

from __future__ import annotations

import datetime as dt

from base.jsoncopy import json_copy
from controlplane.api.errors import FieldError, bad_request, invalid, required
from controlplane.api.validation import is_qualified_name, validate_metadata

GROUP = "events.k8s.io"
VIEW_API_VERSION = f"{GROUP}/v1"
DEFAULT_TTL = 3600.0
TYPES = ("Normal", "Warning")

# Fields with the same name in both shapes, then (core name, events.k8s.io name).
SHARED = ("metadata", "eventTime", "series", "reportingInstance", "action", "reason", "related",
          "type")
RENAMED = (("involvedObject", "regarding"), ("message", "note"), ("source", "deprecatedSource"),
           ("firstTimestamp", "deprecatedFirstTimestamp"),
           ("lastTimestamp", "deprecatedLastTimestamp"), ("count", "deprecatedCount"),
           ("reportingComponent", "reportingController"))
REFERENCE_FIELDS = ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion",
                    "fieldPath")

# Field selector labels (AddFieldLabelConversionsForEvent): core/v1 accepts these ...
CORE_FIELD_LABELS = frozenset(
    [f"involvedObject.{f}" for f in REFERENCE_FIELDS]
    + ["reason", "reportingComponent", "source", "type", "metadata.namespace", "metadata.name"])
# ... and events.k8s.io/v1 these, each the name of a core label.
VIEW_FIELD_LABELS = {**{f"regarding.{f}": f"involvedObject.{f}" for f in REFERENCE_FIELDS},
                     "reportingController": "reportingComponent", "reason": "reason",
                     "source": "source", "type": "type", "metadata.namespace": "metadata.namespace",
                     "metadata.name": "metadata.name"}

REPORTING_INSTANCE_LIMIT = ACTION_LIMIT = REASON_LIMIT = 128
NOTE_LIMIT = 1024


def is_view(api_version: str | None) -> bool:
    return api_version == VIEW_API_VERSION


def _rename(obj: dict, pairs, api_version: str) -> dict:
    out = {"kind": "Event", "apiVersion": api_version}
    for key in SHARED:
        if key in obj:
            out[key] = json_copy(obj[key])
    for src, dst in pairs:
        if src in obj:
            out[dst] = json_copy(obj[src])
    return out


def to_view(core: dict) -> dict:
    """A stored (core/v1) Event as events.k8s.io/v1 shows it."""
    return _rename(core, RENAMED, VIEW_API_VERSION)


def to_core(view: dict) -> dict:
    """An events.k8s.io/v1 Event in the storage (core/v1) shape; unknown fields are dropped,
    as decoding into the Go type drops them."""
    return _rename(view, [(b, a) for a, b in RENAMED], "v1")


def as_core(event: dict) -> dict:
    """Either shape -> the core shape (the table printer and selectors read that one)."""
    return to_core(event) if is_view(event.get("apiVersion")) else event


# ---- field selectors --------------------------------------------------------

def storage_label(view: bool, label: str) -> str:
    """The core label a field selector label stands for; 400 when Events cannot be selected
    by it (the apiserver's "field label not supported")."""
    if view:
        if label in VIEW_FIELD_LABELS:
            return VIEW_FIELD_LABELS[label]
    elif label in CORE_FIELD_LABELS:
        return label
    raise bad_request(f"field label not supported: {label}")


def selectable_fields(event: dict) -> dict[str, str]:
    """EventToSelectableFields, plus the events.k8s.io names of the same values (so a
    selector in either vocabulary matches the stored object)."""
    event = as_core(event)
    meta = event.get("metadata") or {}
    ref = event.get("involvedObject") or {}
    source = (event.get("source") or {}).get("component") or event.get("reportingComponent", "")
    fields = {"metadata.name": meta.get("name", ""),
              "metadata.namespace": meta.get("namespace", ""),
              "reason": event.get("reason", ""), "type": event.get("type", ""),
              "reportingComponent": event.get("reportingComponent", ""), "source": source}
    for name in REFERENCE_FIELDS:
        value = str(ref.get(name, "") or "")
        fields[f"involvedObject.{name}"] = fields[f"regarding.{name}"] = value
    fields["reportingController"] = fields["reportingComponent"]
    return fields


# ---- validation ---------------------------------------------------------------

def validate(event: dict) -> list[FieldError]:
    """legacyValidateEvent: every Event, whichever API wrote it (core shape)."""
    errs = validate_metadata(event, "subdomain", True)
    namespace = (event.get("metadata") or {}).get("namespace", "")
    ref = event.get("involvedObject") or {}
    ref_ns = ref.get("namespace", "")
    mismatch = invalid(ref_ns, "involvedObject.namespace", "does not match event.namespace")
    if not event.get("eventTime"):
        if (ref_ns and namespace != ref_ns) or (not ref_ns and namespace not in ("", "default")):
            errs.append(mismatch)
    else:
        if not ref_ns and namespace not in ("default", "kube-system"):
            errs.append(mismatch)
        controller = event.get("reportingComponent") or ""
        if not controller:
            errs.append(required("reportingController"))
        errs += [invalid(controller, "reportingController", m)
                 for m in is_qualified_name(controller)]
        for field, limit in (("reportingInstance", REPORTING_INSTANCE_LIMIT),
                             ("action", ACTION_LIMIT), ("reason", REASON_LIMIT)):
            value = event.get(field) or ""
            if not value:
                errs.append(required(field))
            elif len(value) > limit:
                errs.append(invalid("", field, f"can have at most {limit} characters"))
        if len(event.get("message") or "") > NOTE_LIMIT:
            errs.append(invalid("", "message", f"can have at most {NOTE_LIMIT} characters"))
    return errs


def _series_errors(event: dict) -> list[FieldError]:
    series = event.get("series")
    if series is None:
        return []
    errs = []
    if int(series.get("count") or 0) < 2:
        errs.append(invalid("", "series.count", "should be at least 2"))
    if not series.get("lastObservedTime"):
        errs.append(required("series.lastObservedTime"))
    return errs


def validate_view_create(event: dict) -> list[FieldError]:
    """ValidateEventCreate's strict rules for events.k8s.io/v1 (on the core shape)."""
    errs = _series_errors(event)
    if not event.get("eventTime"):
        errs.append(required("eventTime"))
    if event.get("type") not in TYPES:
        errs.append(invalid("", "type", f"has invalid value: {event.get('type', '')}"))
    for field in ("firstTimestamp", "lastTimestamp", "count"):
        if event.get(field):
            errs.append(invalid("", field, "needs to be unset"))
    if any((event.get("source") or {}).values()):
        errs.append(invalid("", "source", "needs to be unset"))
    return errs


IMMUTABLE = ("involvedObject", "reason", "message", "source", "firstTimestamp", "lastTimestamp",
             "count", "type", "eventTime", "action", "related", "reportingComponent",
             "reportingInstance")


def validate_view_update(new: dict, old: dict) -> list[FieldError]:
    """ValidateEventUpdate for events.k8s.io/v1: only the series may change."""
    errs = _series_errors(new) if new.get("series") != old.get("series") else []
    return errs + [invalid(new.get(f), f, "field is immutable") for f in IMMUTABLE
                   if new.get(f) != old.get(f)]


# ---- what a legacy recorder writes ------------------------------------------------

def rfc3339(when: dt.datetime) -> str:
    return when.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_event(ref: dict, event_type: str, reason: str, message: str, component: str,
              host: str, when: dt.datetime, nanos: int | None = None) -> dict:
    """The Event client-go's recorder makes (makeEvent + its source and reporting fields):
    named ``<object>.<unix nanoseconds in hex>``, in the object's namespace ("default" for
    cluster-scoped objects), count 1."""
    stamp = rfc3339(when)
    nanos = int(when.timestamp() * 1_000_000) * 1000 if nanos is None else nanos
    source = {"component": component, **({"host": host} if host else {})}
    return {"apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{ref.get('name', '')}.{nanos:x}",
                         "namespace": ref.get("namespace") or "default"},
            "involvedObject": dict(ref), "reason": reason, "message": message,
            "source": source, "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
            "type": event_type, "reportingComponent": component, "reportingInstance": host}
