"""Standard cron schedules as the CronJob validation and controller read them: robfig/cron's
error messages for what it refuses, and the next activation for what it accepts."""
from __future__ import annotations

import datetime as dt

import pytest

from controlplane.api import cron

UTC = dt.timezone.utc


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize("spec, message", [
    ("", "empty spec string"),
    ("every minute", "expected exactly 5 fields, found 2: [every minute]"),
    ("* * * * * *", "expected exactly 5 fields, found 6: [* * * * * *]"),
    ("61 * * * *", "end of range (61) above maximum (59): 61"),
    ("* * 0 * *", "beginning of range (0) below minimum (1): 0"),
    ("5-1 * * * *", "beginning of range (5) beyond end of range (1): 5-1"),
    ("*/0 * * * *", "step of range should be a positive number: */0"),
    ("x * * * *", 'failed to parse int from x: strconv.Atoi: parsing "x": invalid syntax'),
    ("1-2-3 * * * *", "too many hyphens: 1-2-3"),
    ("*/2/3 * * * *", "too many slashes: */2/3"),
    ("* * * * 7", "end of range (7) above maximum (6): 7"),
    ("@fortnightly", "unrecognized descriptor: @fortnightly"),
    ("TZ=Mars/Base * * * * *", "provided bad location Mars/Base: unknown time zone Mars/Base"),
])
def test_refused_schedules_carry_the_parser_message(spec, message):
    with pytest.raises(cron.CronError) as err:
        cron.parse(spec)
    assert str(err.value) == message


@pytest.mark.parametrize("spec, after, expected", [
    ("* * * * *", "2025-03-01T10:00:30", "2025-03-01T10:01:00"),
    ("*/15 * * * *", "2025-03-01T10:16:00", "2025-03-01T10:30:00"),
    ("0 9 * * mon-fri", "2025-03-01T10:00:00", "2025-03-03T09:00:00"),   # Saturday -> Monday
    ("30 2 1 jan *", "2025-03-01T00:00:00", "2026-01-01T02:30:00"),
    ("0 0 13 * 5", "2025-06-01T00:00:00", "2025-06-06T00:00:00"),       # dom OR dow
    ("@hourly", "2025-03-01T10:59:59", "2025-03-01T11:00:00"),
    ("@daily", "2025-12-31T23:00:00", "2026-01-01T00:00:00"),
    ("0 12 29 2 *", "2025-03-01T00:00:00", "2028-02-29T12:00:00"),
])
def test_next_activation(spec, after, expected):
    assert cron.parse(spec).next(at(after)) == at(expected)


def test_every_and_zone_prefix():
    assert cron.parse("@every 1h30m").next(at("2025-01-01T00:00:00")) == at("2025-01-01T01:30:00")
    assert cron.parse("CRON_TZ=Europe/Paris 0 6 * * *").zone == "Europe/Paris"
