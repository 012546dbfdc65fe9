"""Field checks shared by the load balancers' config files.

base/elb_api.py (Classic and NLB) and base/alb_api.py (ALBs) validate the
same kinds of fields; each binds these checks to its own error class (which
takes the field's path and a message), so a bad file names its own kind.
"""
from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

ErrorFactory = Callable[[str, str], Exception]


def choice(value: Any, path: str, allowed: tuple[str, ...], *, error: ErrorFactory) -> str:
    if value not in allowed:
        raise error(path, f"unsupported value {value!r}; allowed: {', '.join(allowed)}")
    return value


def ipv4(value: Any, path: str, *, error: ErrorFactory) -> str:
    try:
        return str(ipaddress.IPv4Address(str(value)))
    except ValueError as err:
        raise error(path, f"invalid IPv4 address {value!r}") from err


def port(value: Any, path: str, *, error: ErrorFactory) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 65535:
        raise error(path, f"invalid port {value!r}; allowed: 1-65535")
    return value


def positive(value: Any, path: str, *, error: ErrorFactory) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
        raise error(path, f"invalid value {value!r}; allowed: a number > 0")
    return float(value)


def read_json_config(path: Path, empty: Any, parse: Callable[[Any], Any], *,
                     error: ErrorFactory) -> Any:
    """A config file parsed, `empty` when there is no file yet."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return empty
    try:
        return parse(json.loads(text))
    except ValueError as err:
        raise error("file", f"{path} is not valid JSON: {err}") from err
