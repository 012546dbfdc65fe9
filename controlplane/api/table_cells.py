"""The cells every server-side Table shares: ages, column definitions, container lists.

Pure functions (of the objects and the current time) used by ``tables.py``
and ``tables_workloads.py``.
"""

from __future__ import annotations

import datetime as dt


def human_duration(seconds: float) -> str:
    """k8s.io/apimachinery/pkg/util/duration.HumanDuration."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        rest = s % 60
        return f"{minutes}m" if rest == 0 else f"{minutes}m{rest}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h" if rest == 0 else f"{hours}h{rest}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d" if rest == 0 else f"{hours // 24}d{rest}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        rest = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if rest == 0 else f"{hours // 24 // 365}y{rest}d"
    return f"{hours // 24 // 365}y"


def age(obj: dict, now: dt.datetime) -> str:
    ts = (obj.get("metadata") or {}).get("creationTimestamp")
    if not ts:
        return "<unknown>"
    created = dt.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)
    return human_duration((now - created).total_seconds())


def _col(name: str, priority: int = 0, fmt: str = "", typ: str = "string") -> dict:
    return {"name": name, "type": typ, "format": fmt, "description": "", "priority": priority}


NAME = _col("Name", fmt="name")
AGE = _col("Age")


def _containers(template: dict) -> tuple[str, str]:
    containers = ((template or {}).get("spec") or {}).get("containers") or []
    return (",".join(c.get("name", "") for c in containers),
            ",".join(c.get("image", "") for c in containers))


def _since(stamp: str | None, now: dt.datetime) -> str:
    """translateTimestampSince / translateMicroTimestampSince ('<unknown>' when unset)."""
    if not stamp:
        return "<unknown>"
    when = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return human_duration((now - when).total_seconds())
