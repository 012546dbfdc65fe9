"""Standard cron schedules, parsed as the CronJob validation and controller parse them.

Kubernetes parses ``spec.schedule`` with robfig/cron's standard parser:
five fields (minute, hour, day of month, month, day of week), each a
comma-separated list of ``*``, ``?``, ``N``, ``N-M``, any of them ``/step``,
months and weekdays also by name; or a descriptor (``@hourly`` ...,
``@every 1h30m``); optionally prefixed by ``TZ=zone`` / ``CRON_TZ=zone``.
:func:`parse` raises :class:`CronError` with the parser's own message (the
422's detail), and :meth:`Schedule.next` gives the next activation, for the
CronJob controller. Pure; times are timezone-aware datetimes.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

MONTHS = {m: i + 1 for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"))}
DAYS = {d: i for i, d in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
# name, min, max, names
FIELDS = (("minute", 0, 59, None), ("hour", 0, 23, None), ("dom", 1, 31, None),
          ("month", 1, 12, MONTHS), ("dow", 0, 6, DAYS))
DESCRIPTORS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
               "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
               "@hourly": "0 * * * *"}
_DURATION = re.compile(r"((\d+(\.\d+)?)(ns|us|µs|ms|s|m|h))+")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


class CronError(ValueError):
    """A schedule the parser refuses; the message is robfig/cron's."""


@dataclass(frozen=True)
class Schedule:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    dom_star: bool = False
    dow_star: bool = False
    every: float = 0.0                  # seconds, for "@every"
    zone: str = ""                      # from a TZ= prefix

    def _day_matches(self, when: dt.datetime) -> bool:
        dom = when.day in self.days
        dow = (when.isoweekday() % 7) in self.weekdays
        if self.dom_star or self.dow_star:
            return dom and dow
        return dom or dow

    def next(self, after: dt.datetime) -> dt.datetime | None:
        """The first activation strictly after ``after`` (None if none within 5 years)."""
        if self.every:
            step = max(1, round(self.every))
            return after.replace(microsecond=0) + dt.timedelta(seconds=step)
        when = after.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
        limit = when + dt.timedelta(days=366 * 5)
        while when < limit:
            if when.month not in self.months:
                month = when.month % 12 + 1
                when = when.replace(year=when.year + (month == 1), month=month, day=1,
                                    hour=0, minute=0)
                continue
            if not self._day_matches(when):
                when = (when + dt.timedelta(days=1)).replace(hour=0, minute=0)
                continue
            if when.hour not in self.hours:
                when = (when + dt.timedelta(hours=1)).replace(minute=0)
                continue
            if when.minute not in self.minutes:
                when += dt.timedelta(minutes=1)
                continue
            return when
        return None


def _int(text: str) -> int:
    if not re.fullmatch(r"[+-]?\d+", text):
        raise CronError(f'failed to parse int from {text}: strconv.Atoi: parsing "{text}": '
                        "invalid syntax")
    value = int(text)
    if value < 0:
        raise CronError(f"negative number ({value}) not allowed: {text}")
    return value


def _int_or_name(text: str, names) -> int:
    if names and text.lower() in names:
        return names[text.lower()]
    return _int(text)


def _range(expr: str, low: int, high: int, names) -> tuple[set[int], bool]:
    """One comma-separated part: its values and whether it was a plain star."""
    range_step = expr.split("/")
    low_high = range_step[0].split("-")
    star = False
    if low_high[0] in ("*", "?"):
        start, end, star = low, high, True
    else:
        start = _int_or_name(low_high[0], names)
        if len(low_high) == 1:
            end = start
        elif len(low_high) == 2:
            end = _int_or_name(low_high[1], names)
        else:
            raise CronError(f"too many hyphens: {expr}")
    if len(range_step) == 1:
        step = 1
    elif len(range_step) == 2:
        step = _int(range_step[1])
        if len(low_high) == 1:
            end = high
        if step > 1:
            star = False
    else:
        raise CronError(f"too many slashes: {expr}")
    if start < low:
        raise CronError(f"beginning of range ({start}) below minimum ({low}): {expr}")
    if end > high:
        raise CronError(f"end of range ({end}) above maximum ({high}): {expr}")
    if start > end:
        raise CronError(f"beginning of range ({start}) beyond end of range ({end}): {expr}")
    if step == 0:
        raise CronError(f"step of range should be a positive number: {expr}")
    return set(range(start, end + 1, step)), star


def _field(text: str, low: int, high: int, names) -> tuple[frozenset[int], bool]:
    values: set[int] = set()
    star = False
    for expr in (p for p in text.split(",") if p):
        part, is_star = _range(expr, low, high, names)
        values |= part
        star = star or is_star
    return frozenset(values), star


def parse(spec: str) -> Schedule:
    """Parse a standard cron spec; CronError with the parser's message if invalid."""
    if not spec:
        raise CronError("empty spec string")
    zone = ""
    if spec.startswith(("TZ=", "CRON_TZ=")):
        space = spec.find(" ")
        zone = spec[spec.index("=") + 1:space if space >= 0 else len(spec)]
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise CronError(f"provided bad location {zone}: unknown time zone {zone}") from exc
        spec = spec[space:].strip() if space >= 0 else ""
    if spec.startswith("@"):
        if spec in DESCRIPTORS:
            return _replace_zone(parse(DESCRIPTORS[spec]), zone)
        if spec.startswith("@every "):
            text = spec[len("@every "):]
            if not _DURATION.fullmatch(text):
                raise CronError(f'failed to parse duration {spec}: time: invalid duration "{text}"')
            seconds = sum(float(n) * _UNITS[u]
                          for n, _, u in re.findall(r"(\d+(\.\d+)?)(ns|us|µs|ms|s|m|h)", text))
            return Schedule(frozenset(), frozenset(), frozenset(), frozenset(), frozenset(),
                            every=seconds, zone=zone)
        raise CronError(f"unrecognized descriptor: {spec}")
    fields = spec.split()
    if len(fields) != 5:
        raise CronError(f"expected exactly 5 fields, found {len(fields)}: [{' '.join(fields)}]")
    parsed = [_field(text, low, high, names)
              for text, (_, low, high, names) in zip(fields, FIELDS)]
    return Schedule(parsed[0][0], parsed[1][0], parsed[2][0], parsed[3][0], parsed[4][0],
                    dom_star=parsed[2][1], dow_star=parsed[4][1], zone=zone)


def _replace_zone(schedule: Schedule, zone: str) -> Schedule:
    return Schedule(schedule.minutes, schedule.hours, schedule.days, schedule.months,
                    schedule.weekdays, schedule.dom_star, schedule.dow_star, zone=zone)
