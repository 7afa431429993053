"""The simple CSV layout (docs/STORE.md): ``patients.csv`` + ``events.csv`` from any warehouse.

``patients.csv``: ``patient_id,birth_date,sex[,deceased_date]``
``events.csv``: ``patient_id,kind,code_system,code,display,start_time,end_time,value,unit,
value_text,ref_low,ref_high,dose_value,dose_unit,route,status`` plus optional ``analyte`` (when the
code is local) and ``record_id`` (a stable id of the row in the warehouse: a newer export then
updates the row instead of adding one; without it rows are identified by their line number).
Times are ISO 8601 (date only = 00:00 UTC; with an offset = converted to UTC; without = UTC).
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
from pathlib import Path
from typing import Any

import pyarrow as pa

from trialsieve.codes import analyte_for_code, canonical_system
from trialsieve.ingest.fhir_time import parse_fhir_datetime
from trialsieve.ingest.sink import IngestError, IngestSink
from trialsieve.store.schema import EVENT_KINDS, EVENTS_SCHEMA, PATIENTS_SCHEMA
from trialsieve.units import (
    ANALYTES,
    PlausibilityError,
    UnitError,
    canonical_unit,
    check_plausible,
    to_canonical,
)

PATIENT_COLUMNS = ("patient_id", "birth_date", "sex")
EVENT_COLUMNS = ("patient_id", "kind", "code_system", "code", "start_time")
_SEX = {"m": "male", "male": "male", "f": "female", "female": "female", "o": "other",
        "other": "other", "u": "unknown", "unknown": "unknown", "": "unknown"}  # fmt: skip
BATCH_ROWS = 50_000


class _Bad(Exception):
    pass


def _time(value: str, column: str) -> dt.datetime:
    try:
        return parse_fhir_datetime(value)
    except ValueError:
        raise _Bad(f"impossible date in {column}: {value!r}") from None


def _float(value: str, column: str) -> float | None:
    if value is None or value.strip() == "":
        return None
    try:
        return float(value)
    except ValueError:
        raise _Bad(f"not a number in {column}: {value!r}") from None


def _opt(row: dict[str, str], key: str) -> str | None:
    v = row.get(key)
    return v.strip() if v and v.strip() else None


def _check_header(path: Path, header: list[str] | None, required: tuple[str, ...]) -> None:
    missing = [c for c in required if c not in (header or [])]
    if missing:
        raise IngestError(f"{path}: line 1: missing column(s) {', '.join(missing)}")


def read(source: Path | str, sink: IngestSink) -> None:
    """Read ``patients.csv`` and ``events.csv`` from folder ``source`` into ``sink``."""
    source = Path(source)
    pfile, efile = source / "patients.csv", source / "events.csv"
    if not pfile.exists():
        raise IngestError(f"{source}: patients.csv not found (CSV layout, docs/STORE.md)")
    _read_patients(pfile, sink)
    if efile.exists():
        _read_events(efile, sink)


def _read_patients(path: Path, sink: IngestSink) -> None:
    rows: dict[str, list[Any]] = {f.name: [] for f in PATIENTS_SCHEMA if f.name != "dataset"}
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        _check_header(path, reader.fieldnames, PATIENT_COLUMNS)
        for line, row in enumerate(reader, 2):
            sink.count_read("patients.csv")
            loc = f"line {line}"
            try:
                pid = _opt(row, "patient_id")
                if not pid:
                    raise _Bad("missing patient_id")
                birth = _opt(row, "birth_date")
                bdate = _time(birth, "birth_date").date() if birth else None
                dead = _opt(row, "deceased_date")
                ddate = _time(dead, "deceased_date").date() if dead else None
                sex = _SEX.get((row.get("sex") or "").strip().lower())
                if sex is None:
                    raise _Bad(f"unknown sex {row.get('sex')!r}")
            except _Bad as e:
                sink.reject("patients.csv", path.name, loc, str(e))
                continue
            if bdate is None:
                sink.warn("patients.csv", path.name, loc, "no birth date: age unknown")
            for k, v in (("patient_id", pid), ("birth_date", bdate), ("sex", sex),
                         ("deceased_date", ddate), ("source", f"{path.name}:{line}")):  # fmt: skip
                rows[k].append(v)
    table = pa.table({k: pa.array(v, PATIENTS_SCHEMA.field(k).type) for k, v in rows.items()})
    sink.patients(table, "patients.csv")


def _event(row: dict[str, str], dataset: str, fname: str, line: int) -> dict[str, Any]:
    pid = _opt(row, "patient_id")
    if not pid:
        raise _Bad("missing patient_id")
    kind = (_opt(row, "kind") or "").lower()
    if kind not in EVENT_KINDS:
        raise _Bad(f"unknown kind {row.get('kind')!r} (one of {', '.join(EVENT_KINDS)})")
    start_s = _opt(row, "start_time")
    if not start_s:
        raise _Bad("missing time (start_time)")
    start = _time(start_s, "start_time")
    end_s = _opt(row, "end_time")
    end = _time(end_s, "end_time") if end_s else None
    if end is not None and end < start:
        raise _Bad(f"end_time {end_s} before start_time {start_s}")
    system_s, code = _opt(row, "code_system"), _opt(row, "code")
    system = canonical_system(system_s) if system_s else None
    analyte = _opt(row, "analyte") or (analyte_for_code(system, code) if system and code else None)
    if analyte is not None and analyte not in ANALYTES:
        raise _Bad(f"unknown analyte {analyte!r}")
    raw_value, raw_unit = _opt(row, "value"), _opt(row, "unit")
    value = _float(raw_value or "", "value")
    unit = raw_unit
    ref_low, ref_high = (
        _float(row.get("ref_low") or "", "ref_low"),
        _float(row.get("ref_high") or "", "ref_high"),
    )
    if analyte and value is not None:
        try:
            value = to_canonical(analyte, value, raw_unit)
            check_plausible(analyte, value)
            ref_low = None if ref_low is None else to_canonical(analyte, ref_low, raw_unit)
            ref_high = None if ref_high is None else to_canonical(analyte, ref_high, raw_unit)
        except UnitError as e:
            raise _Bad(f"unknown unit: {e}") from None
        except PlausibilityError as e:
            raise _Bad(f"implausible value: {e}") from None
        unit = canonical_unit(analyte)
    record_id = _opt(row, "record_id")
    event_id = (
        hashlib.md5(f"{dataset}|{fname}|{record_id}".encode()).hexdigest() if record_id else None
    )
    return {
        "event_id": event_id, "patient_id": pid, "kind": kind, "analyte": analyte,
        "code_system": system, "code": code, "display": _opt(row, "display"),
        "start_time": start, "end_time": end, "value": value, "unit": unit,
        "value_text": _opt(row, "value_text"), "orig_value": raw_value, "orig_unit": raw_unit,
        "ref_low": ref_low, "ref_high": ref_high,
        "dose_value": _float(row.get("dose_value") or "", "dose_value"),
        "dose_unit": _opt(row, "dose_unit"), "route": _opt(row, "route"),
        "status": _opt(row, "status"), "source": f"{fname}:{line}",
    }  # fmt: skip


def _read_events(path: Path, sink: IngestSink) -> None:
    dataset = str(getattr(sink, "dataset", ""))
    names = [f.name for f in EVENTS_SCHEMA if f.name != "dataset"]
    cols: dict[str, list[Any]] = {n: [] for n in names}

    def flush() -> None:
        if cols["patient_id"]:
            table = pa.table({n: pa.array(cols[n], EVENTS_SCHEMA.field(n).type) for n in names})
            sink.events(table, "events.csv")
            for v in cols.values():
                v.clear()

    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        _check_header(path, reader.fieldnames, EVENT_COLUMNS)
        for line, row in enumerate(reader, 2):
            sink.count_read("events.csv")
            try:
                ev = _event(row, dataset, path.name, line)
            except _Bad as e:
                sink.reject("events.csv", path.name, f"line {line}", str(e))
                continue
            for n in names:
                cols[n].append(ev.get(n))
            if len(cols["patient_id"]) >= BATCH_ROWS:
                flush()
    flush()
