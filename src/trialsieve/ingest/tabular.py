"""Shared helpers for the table-shaped readers (``ingest/omop.py``, ``ingest/mimic.py``).

Row buffers that flush Arrow batches into an ``IngestSink``, tolerant time/number parsing that
raises ``Reject`` with the reason, and unit conversion + plausibility through
``trialsieve.units`` (values outside the plausible range are rejected, never clipped).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pyarrow as pa

from trialsieve.ingest.fhir_time import parse_fhir_datetime
from trialsieve.ingest.sink import IngestSink
from trialsieve.store.schema import EVENTS_SCHEMA, PATIENTS_SCHEMA
from trialsieve.units import (
    PlausibilityError,
    UnitError,
    canonical_unit,
    check_plausible,
    to_canonical,
)

BATCH_ROWS = 50_000
#: analytes stored with kind ``vital`` rather than ``lab``
VITAL_ANALYTES = frozenset({"sbp", "dbp", "weight", "lvef"})


class Reject(Exception):
    """A source record that cannot be stored; the message is the reason."""


def text(value: Any) -> str | None:
    """A stripped string, or None for null / empty / whitespace."""
    if value is None:
        return None
    s = str(value).strip()
    return s or None


def parse_time(value: str | None, column: str) -> dt.datetime | None:
    """``YYYY-MM-DD[ HH:MM:SS]`` (or ISO 8601) -> naive UTC datetime; None when empty.

    Source timestamps without an offset (OMOP, MIMIC) are taken as UTC (docs/STORE.md).
    Raises Reject("impossible date ...") for values such as ``2023-02-30``.
    """
    s = text(value)
    if s is None:
        return None
    try:
        return parse_fhir_datetime(s)
    except (ValueError, TypeError):
        raise Reject(f"impossible date in {column}: {s!r}") from None


def parse_float(value: str | None) -> float | None:
    """A float, or None when empty or not a number (``NEG``, ``<0.3``, ``1-2``)."""
    s = text(value)
    if s is None:
        return None
    try:
        f = float(s)
    except ValueError:
        return None
    return f if f == f and f not in (float("inf"), float("-inf")) else None


def convert(analyte: str, value: float, unit: str | None) -> tuple[float, str]:
    """(value in the canonical unit, canonical unit); Reject on unknown unit / implausible."""
    try:
        v = to_canonical(analyte, value, unit)
    except UnitError as e:
        raise Reject(f"unknown unit: {e}") from None
    try:
        check_plausible(analyte, v)
    except PlausibilityError as e:
        raise Reject(f"implausible value: {e}") from None
    return v, canonical_unit(analyte)


def convert_ref(analyte: str, value: float | None, unit: str | None) -> float | None:
    """A reference-range bound in the canonical unit (None when absent or not convertible)."""
    if value is None:
        return None
    try:
        return to_canonical(analyte, value, unit)
    except UnitError:
        return None


class RowBuffer:
    """Rows of one record type, flushed to the sink as Arrow batches of ``BATCH_ROWS``."""

    def __init__(self, sink: IngestSink, record_type: str, *, patients: bool = False) -> None:
        schema = PATIENTS_SCHEMA if patients else EVENTS_SCHEMA
        self.sink = sink
        self.record_type = record_type
        self.is_patients = patients
        self.fields = [f for f in schema if f.name != "dataset"]
        self.names = [f.name for f in self.fields]
        self.rows: list[tuple[Any, ...]] = []

    def add(self, row: dict[str, Any]) -> None:
        """Queue one row (missing keys are null); flush when the batch is full."""
        self.rows.append(tuple(map(row.get, self.names)))
        if len(self.rows) >= BATCH_ROWS:
            self.flush()

    def flush(self) -> None:
        """Send queued rows to the sink."""
        if not self.rows:
            return
        columns = list(zip(*self.rows, strict=True))
        table = pa.table(
            {f.name: pa.array(c, f.type) for c, f in zip(columns, self.fields, strict=True)}
        )
        self.rows = []
        if self.is_patients:
            self.sink.patients(table, self.record_type)
        else:
            self.sink.events(table, self.record_type)
