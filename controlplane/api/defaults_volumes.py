"""Defaulting of pod volumes and env, as SetDefaults_Volume and the source defaults do.

A volume without a source is an emptyDir; secret, configMap, downwardAPI and
projected volumes get file mode 0644; a projected service account token lives
an hour; a downward API field reference is to v1. Called for pods and pod
templates by ``defaults.pod_spec``; in place.
"""

from __future__ import annotations

FILE_MODE = 420                  # 0644, every projected file's default mode


def _field_ref(ref) -> None:
    if isinstance(ref, dict):
        ref.setdefault("apiVersion", "v1")


def volumes(spec: dict) -> None:
    """In place: SetDefaults_Volume (no source means emptyDir) and the file modes and
    token lifetimes of secret, configMap, downwardAPI and projected volumes."""
    for vol in spec.get("volumes") or []:
        if not isinstance(vol, dict):
            continue
        if len([k for k in vol if k != "name"]) == 0:
            vol["emptyDir"] = {}
        for kind in ("secret", "configMap", "downwardAPI", "projected"):
            if isinstance(vol.get(kind), dict):
                vol[kind].setdefault("defaultMode", FILE_MODE)
        for item in (vol.get("downwardAPI") or {}).get("items") or []:
            if isinstance(item, dict):
                _field_ref(item.get("fieldRef"))
        for source in (vol.get("projected") or {}).get("sources") or []:
            if not isinstance(source, dict):
                continue
            if isinstance(source.get("serviceAccountToken"), dict):
                source["serviceAccountToken"].setdefault("expirationSeconds", 3600)
            for item in (source.get("downwardAPI") or {}).get("items") or []:
                if isinstance(item, dict):
                    _field_ref(item.get("fieldRef"))


def env(spec: dict) -> None:
    """In place: env valueFrom.fieldRef.apiVersion defaults to v1
    (SetDefaults_ObjectFieldSelector)."""
    for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        for var in (c.get("env") or []) if isinstance(c, dict) else []:
            if isinstance(var, dict) and isinstance(var.get("valueFrom"), dict):
                _field_ref(var["valueFrom"].get("fieldRef"))
