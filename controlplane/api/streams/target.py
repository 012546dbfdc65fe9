"""What a pod streaming request names, checked as the API server checks it.

Query parameters are parsed the way Go parses them (booleans as
``strconv.ParseBool``, repeated ``command``/``ports`` values kept in
order), and the pod and container are resolved with the API server's own
texts: ``pods "p" not found``, ``container c is not valid for pod p``,
``a container name must be specified for pod p, choose one of: [a b]``,
``pod p does not have a host assigned``.  What only the node can tell (is
the container running, does anything listen on the port) is left to
``base.cri.PodStreams``.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from base.cri import StreamTargetError
from controlplane.api import errors
from controlplane.api.registry import Registry
from controlplane.api.resources import BY_PLURAL

_TRUE = ("1", "t", "T", "true", "TRUE", "True")
_FALSE = ("0", "f", "F", "false", "FALSE", "False")
CODE_OF_REASON = {"BadRequest": 400, "NotFound": 404, "Forbidden": 403, "Conflict": 409,
                  "InternalError": 500, "ServiceUnavailable": 503, "Timeout": 504}


def query_all(target: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(target).query, keep_blank_values=True)


def go_bool(query: dict[str, list[str]], name: str, default: bool = False) -> bool:
    values = query.get(name)
    if not values:
        return default
    value = values[-1]
    if value in _TRUE:
        return True
    if value in _FALSE or value == "":
        return False
    raise errors.bad_request(f"{name}: invalid boolean {value!r} (use true or false)")


def go_int(query: dict[str, list[str]], name: str, minimum: int) -> int | None:
    values = query.get(name)
    if not values or values[-1] == "":
        return None
    try:
        value = int(values[-1])
    except ValueError as exc:
        raise errors.bad_request(f"{name}: invalid integer {values[-1]!r}") from exc
    if value < minimum:
        raise errors.bad_request(f"{name}: must be greater than or equal to {minimum}, "
                                 f"got {value}")
    return value


@dataclass(frozen=True)
class ExecOptions:
    """PodExecOptions / PodAttachOptions."""

    container: str
    command: tuple[str, ...]
    stdin: bool
    stdout: bool
    stderr: bool
    tty: bool


def exec_options(query: dict[str, list[str]], attach: bool) -> ExecOptions:
    command = tuple(query.get("command", []))
    tty = go_bool(query, "tty")
    opts = ExecOptions(container=(query.get("container") or [""])[-1], command=command,
                       stdin=go_bool(query, "stdin"), stdout=go_bool(query, "stdout", True),
                       stderr=go_bool(query, "stderr", True), tty=tty)
    if tty and opts.stderr:   # a terminal merges stderr into stdout, as the kubelet does
        opts = ExecOptions(opts.container, command, opts.stdin, opts.stdout, False, True)
    if not attach and not command:
        raise errors.bad_request("you must specify at least one command for the container")
    if not (opts.stdin or opts.stdout or opts.stderr):
        raise errors.bad_request("you must specify at least 1 of stdin, stdout, stderr")
    return opts


def forwarded_ports(query: dict[str, list[str]]) -> list[int]:
    """The ``ports`` query parameter (repeated and/or comma separated)."""
    ports = []
    for value in query.get("ports", []):
        if not value:
            raise errors.bad_request('query parameter "ports" cannot be empty')
        for part in value.split(","):
            try:
                port = int(part)
            except ValueError as exc:
                raise errors.bad_request(f'unable to parse "{value}" as a port') from exc
            if not 0 < port < 65536:
                raise errors.bad_request(f'port "{part}" must be between 1 and 65535')
            ports.append(port)
    return ports


def get_pod(registry: Registry, namespace: str, name: str) -> dict:
    return registry.get(BY_PLURAL["pods"], namespace, name)


def container_names(pod: dict) -> list[str]:
    spec = pod.get("spec") or {}
    return [c["name"] for key in ("initContainers", "containers")
            for c in spec.get(key) or [] if c.get("name")]


def pick_container(pod: dict, requested: str) -> str:
    """The container a request addresses (the only one when none is named)."""
    name = pod["metadata"]["name"]
    if requested:
        if requested not in container_names(pod):
            raise errors.bad_request(f"container {requested} is not valid for pod {name}")
        return requested
    regular = [c["name"] for c in (pod.get("spec") or {}).get("containers") or []]
    if len(regular) == 1:
        return regular[0]
    if not regular:
        raise errors.bad_request(f"a container name must be specified for pod {name}")
    raise errors.bad_request(f"a container name must be specified for pod {name}, "
                             f"choose one of: [{' '.join(container_names(pod))}]")


def require_host(pod: dict) -> str:
    node = (pod.get("spec") or {}).get("nodeName")
    if not node:
        raise errors.bad_request(f"pod {pod['metadata']['name']} does not have a host assigned")
    return node


def require_streams(streams):
    if streams is None:
        raise errors.StatusError(503, "ServiceUnavailable",
                                 "pod streaming is not available: this API server has no "
                                 "node side to reach pods (no PodStreams attached)")
    return streams


def target_error(exc: StreamTargetError) -> errors.StatusError:
    """A StreamTargetError from the node side as the Status the client gets."""
    return errors.StatusError(CODE_OF_REASON.get(exc.reason, 500), exc.reason, exc.message)
