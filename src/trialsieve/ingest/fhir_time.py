"""FHIR date/dateTime/instant strings -> naive UTC datetimes (FHIR R4 datatypes, section 2.24)."""

from __future__ import annotations

import datetime as dt
import re

_PARTIAL = re.compile(r"^(\d{4})(?:-(\d{2}))?$")


def parse_fhir_datetime(value: str) -> dt.datetime:
    """Parse a FHIR date / dateTime / instant into a naive datetime meaning UTC.

    A date-only value is 00:00 UTC of that day; ``YYYY`` / ``YYYY-MM`` are the first day of the
    year / month; a dateTime with an offset is converted to UTC; one without an offset (not valid
    FHIR, but seen) is taken as UTC. Raises ValueError for an impossible date (``2023-02-30``).
    """
    s = value.strip()
    if len(s) == 10:
        return dt.datetime(int(s[0:4]), int(s[5:7]), int(s[8:10]))
    m = _PARTIAL.match(s)
    if m:
        return dt.datetime(int(m.group(1)), int(m.group(2) or 1), 1)
    t = dt.datetime.fromisoformat(s)
    if t.tzinfo is not None:
        t = t.astimezone(dt.UTC).replace(tzinfo=None)
    return t


def parse_fhir_date(value: str) -> dt.date:
    """A FHIR date (or the date part of a dateTime, converted to UTC)."""
    return parse_fhir_datetime(value).date()
