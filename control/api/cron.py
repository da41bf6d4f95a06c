"""CronJob schedules: parsing and the times they fire, as upstream's CronJob controller reads them
(robfig/cron/v3's ParseStandard: five fields or an @-macro, evaluated in spec.timeZone, UTC by default).

    check_schedule("*/5 * * * *")                 -> None; CronError naming the problem otherwise
    next_time("*/5 * * * *", "UTC", after=t)       -> the first firing strictly after t (Unix seconds)
    unmet_times("*/5 * * * *", None, since, now)   -> (most recent missed firing or None, how many missed)

The cron arithmetic itself is croniter's; this module keeps Kubernetes' rules around it (no seconds field,
no TZ= prefix, IANA zones only).
"""

from __future__ import annotations

import datetime as dt
import zoneinfo

from croniter import CroniterError, croniter

__all__ = ["CronError", "check_schedule", "check_time_zone", "next_time", "unmet_times"]

# robfig/cron's descriptors (parser.go parseDescriptor); @every <duration> is not supported here.
MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
# The controller stops counting missed schedules past this many (upstream's "too many missed start times").
MAX_MISSED = 100


class CronError(ValueError):
    """A schedule or time zone that cannot be used; the message says why."""


def check_schedule(schedule: str) -> None:
    text = schedule.strip()
    if text.startswith(("TZ=", "CRON_TZ=")):
        raise CronError("cannot use TZ or CRON_TZ in schedule, use timeZone field instead")
    if text.startswith("@"):
        if text.lower() not in MACROS:
            raise CronError(f"unrecognized descriptor: {text} (use one of {', '.join(MACROS)} or five fields)")
        return
    fields = text.split()
    if len(fields) != 5:
        raise CronError(f"expected exactly 5 fields, found {len(fields)}: {text}")
    try:
        croniter(text)
    except (CroniterError, ValueError) as exc:
        raise CronError(str(exc)) from None


def check_time_zone(name: str) -> dt.tzinfo:
    """The zone of an IANA name (time.LoadLocation's rules: "Local" and "" are refused by validation)."""
    if not name or name == "Local" or name != name.strip():
        raise CronError(f"unknown time zone {name}")
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise CronError(f"unknown time zone {name}") from None


def _zone(time_zone: str | None) -> dt.tzinfo:
    return dt.UTC if not time_zone else check_time_zone(time_zone)


def _expr(schedule: str) -> str:
    text = schedule.strip().lower()
    return "0 0 * * *" if text == "@midnight" else schedule.strip()


def next_time(schedule: str, time_zone: str | None, after: float) -> float:
    start = dt.datetime.fromtimestamp(after, _zone(time_zone))
    return float(croniter(_expr(schedule), start).get_next(float))


def unmet_times(schedule: str, time_zone: str | None, since: float, now: float) -> tuple[float | None, int]:
    """The most recent firing in (since, now] and how many there were (counting stops after MAX_MISSED),
    upstream's mostRecentScheduleTime."""
    it = croniter(_expr(schedule), dt.datetime.fromtimestamp(since, _zone(time_zone)))
    latest: float | None = None
    count = 0
    while True:
        when = float(it.get_next(float))
        if when > now:
            return latest, count
        latest, count = when, count + 1
        if count > MAX_MISSED:
            # Jump close to now: only the most recent missed time matters, and a long outage must not spin.
            it = croniter(_expr(schedule), dt.datetime.fromtimestamp(now, _zone(time_zone)))
            prev = float(it.get_prev(float))
            return (prev if prev > since else latest), count
