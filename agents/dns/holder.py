"""ZoneHolder: the one place a running server gets its current Zone from.

The API-watching glue (later) and the --zone-file CLI call `update(...)` with
whichever object lists changed; the holder rebuilds a new frozen Zone from the
latest lists and swaps one reference. Readers call `holder.zone` and keep that
Zone for the whole query, so every answer comes from a single consistent zone.
"""
from __future__ import annotations

import threading

from agents.dns.zone import DEFAULT_DOMAIN, DEFAULT_SERVICE_CIDR, DEFAULT_TTL, Zone, build_zone


class ZoneHolder:
    """Holds the latest object lists and the Zone built from them."""

    def __init__(self, domain: str = DEFAULT_DOMAIN, *, service_cidr: str = DEFAULT_SERVICE_CIDR,
                 ttl: int = DEFAULT_TTL, pod_mode: str = "insecure",
                 services=(), slices=(), pods=()):
        self._options = dict(domain=domain, service_cidr=service_cidr, ttl=ttl, pod_mode=pod_mode)
        self._lock = threading.Lock()
        self._services, self._slices, self._pods = list(services), list(slices), list(pods)
        self._serial = 1
        self._zone = build_zone(self._services, self._slices, self._pods,
                                serial=self._serial, **self._options)

    @property
    def zone(self) -> Zone:
        return self._zone

    @property
    def options(self) -> dict:
        return dict(self._options)

    def reconfigure(self, **options) -> Zone:
        """New zone options (domain, ttl, pod_mode, reverse, fallthrough, service_cidr):
        the same objects, rebuilt and swapped; a bad option leaves everything as it was."""
        with self._lock:
            merged = {**self._options, **options}
            zone = build_zone(self._services, self._slices, self._pods,
                              serial=self._serial + 1, **merged)
            self._options = merged
            self._serial += 1
            self._zone = zone
            return zone

    def update(self, *, services=None, slices=None, pods=None) -> Zone:
        """Replace the given lists (None keeps the current one), rebuild, swap; return the new Zone.

        A ZoneError from a bad object leaves the current zone in place and propagates.
        """
        with self._lock:
            new_services = self._services if services is None else list(services)
            new_slices = self._slices if slices is None else list(slices)
            new_pods = self._pods if pods is None else list(pods)
            zone = build_zone(new_services, new_slices, new_pods,
                              serial=self._serial + 1, **self._options)
            self._services, self._slices, self._pods = new_services, new_slices, new_pods
            self._serial += 1
            self._zone = zone
            return zone
