"""The ``trialsieve aki`` input files, read into DuckDB tables with row-level validation.

Files (issue 2, section 3): ``c.csv`` = ``patient_id,time,value,unit`` (creatinine, unit mg/dL or
umol/L), ``u.csv`` = ``patient_id,start,end,volume_ml``, ``w.csv`` = ``patient_id,time,weight_kg``,
``r.csv`` = ``patient_id,start[,end]`` (renal replacement therapy), ``p.csv`` =
``patient_id,birth_date,sex``. Column names are matched case-insensitively; extra columns are
ignored; a missing required column is a file error (:class:`AkiInputError`).

Every data record is either loaded or rejected, never dropped: a reject has the file, its line
(1-based, the header is line 1, so the first data record is line 2; a record with a quoted
newline is reported at the line where it starts) and a reason. Blank lines are not records.

The CSV text is split by Python's :mod:`csv` (exact line numbers, ragged rows kept) in chunks;
all checks are vectorised SQL over the chunked text columns (``TRY_CAST`` + ``CASE``).

Times: ISO-8601. Without an offset a time is UTC; with an offset (``+02:00``, ``Z``) it is
converted to UTC. Creatinine, urine and RRT times need a time of day (a date alone cannot be
placed in a 48-hour window); a weight with a date only is taken at 00:00 UTC (conservative for
"most recent weight at or before the period").

Plausibility limits (rejects): creatinine 10-3000 µmol/L after conversion (issue 2 §3; 1 mg/dL =
88.4 µmol/L, :mod:`trialsieve.kidney.creatinine`), urine volume 0-10 000 mL per period, weight
1-500 kg, a urine period must end after it starts, an RRT end must not precede its start.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import duckdb
import pyarrow as pa

from trialsieve.kidney.creatinine import UMOL_PER_MGDL, UNIT_SPELLINGS

REJECTS_TABLE: Final[str] = "aki_rejects"
CREAT_MIN_UMOL_L: Final[float] = 10.0
CREAT_MAX_UMOL_L: Final[float] = 3000.0
URINE_MAX_ML: Final[float] = 10_000.0
WEIGHT_MIN_KG: Final[float] = 1.0
WEIGHT_MAX_KG: Final[float] = 500.0
_CHUNK: Final[int] = 100_000


class AkiInputError(ValueError):
    """A whole input file cannot be used (missing, or a required column is absent)."""


@dataclass(frozen=True)
class FileLoad:
    """Counts of one loaded file: ``read = accepted + rejected``."""

    kind: str
    path: Path
    table: str
    read: int
    accepted: int
    rejected: int


#: kind -> (required columns, optional columns)
LAYOUTS: Final[dict[str, tuple[tuple[str, ...], tuple[str, ...]]]] = {
    "creatinine": (("patient_id", "time", "value", "unit"), ()),
    "urine": (("patient_id", "start", "end", "volume_ml"), ()),
    "weights": (("patient_id", "time", "weight_kg"), ()),
    "rrt": (("patient_id", "start"), ("end",)),
    "patients": (("patient_id", "birth_date", "sex"), ()),
}


def connect() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the session time zone set to UTC."""
    con = duckdb.connect()
    con.execute("SET TimeZone='UTC'")
    return con


def _ensure_rejects(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        f"CREATE TABLE IF NOT EXISTS {REJECTS_TABLE} (file VARCHAR, line BIGINT, reason VARCHAR)"
    )


def _chunks(path: Path, kind: str) -> Iterator[pa.Table]:
    """Yield the records of ``path`` as text columns: line, n_fields, then the layout columns."""
    required, optional = LAYOUTS[kind]
    wanted = required + optional
    try:
        fh = path.open(newline="", encoding="utf-8-sig")
    except OSError as e:
        raise AkiInputError(f"{kind} file {path}: {e.strerror}") from e
    with fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            raise AkiInputError(f"{kind} file {path} is empty (need a header: {','.join(wanted)})")
        names = [h.strip().lower() for h in header]
        missing = [c for c in required if c not in names]
        if missing:
            raise AkiInputError(
                f"{kind} file {path}: missing column(s) {', '.join(missing)} "
                f"(header must have {','.join(required)})"
            )
        idx = {c: names.index(c) for c in wanted if c in names}
        cols: dict[str, list[str | None]] = {c: [] for c in wanted}
        lines: list[int] = []
        nfields: list[int] = []
        prev_end = reader.line_num
        for row in reader:
            start_line = prev_end + 1
            prev_end = reader.line_num
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            lines.append(start_line)
            nfields.append(len(row))
            for c in wanted:
                i = idx.get(c)
                cols[c].append(row[i] if i is not None and i < len(row) else None)
            if len(lines) >= _CHUNK:
                yield _to_arrow(lines, nfields, cols, len(names))
                lines, nfields = [], []
                cols = {c: [] for c in wanted}
        yield _to_arrow(lines, nfields, cols, len(names))


def _to_arrow(
    lines: list[int], nfields: list[int], cols: dict[str, list[str | None]], n_header: int
) -> pa.Table:
    data: dict[str, pa.Array] = {
        "line": pa.array(lines, type=pa.int64()),
        "n_fields": pa.array(nfields, type=pa.int64()),
        "n_header": pa.array([n_header] * len(lines), type=pa.int64()),
    }
    for c, values in cols.items():
        data[c] = pa.array(values, type=pa.string())
    return pa.table(data)


def _load_raw(con: duckdb.DuckDBPyConnection, path: Path, kind: str) -> str:
    """Load the text of ``path`` into a table ``raw_<kind>``; return its name.

    Sets the session time zone of ``con`` to UTC: offset-less times are UTC (module docstring).
    """
    con.execute("SET TimeZone='UTC'")
    required, optional = LAYOUTS[kind]
    raw = f"raw_{kind}"
    col_defs = ", ".join(f'"{c}" VARCHAR' for c in required + optional)
    con.execute(
        f"CREATE OR REPLACE TABLE {raw} (line BIGINT, n_fields BIGINT, n_header BIGINT, {col_defs})"
    )
    for chunk in _chunks(path, kind):
        if chunk.num_rows:
            con.register("_aki_chunk", chunk)
            con.execute(f"INSERT INTO {raw} BY NAME SELECT * FROM _aki_chunk")
            con.unregister("_aki_chunk")
    return raw


def _blank(col: str) -> str:
    return f"(NULLIF(TRIM({col}), '') IS NULL)"


def _ts(col: str) -> str:
    """ISO-8601 text -> naive UTC TIMESTAMP (NULL when unparseable); session TimeZone is UTC."""
    return f"TRY_CAST(TRY_CAST(TRIM({col}) AS TIMESTAMPTZ) AS TIMESTAMP)"


def _has_clock(col: str) -> str:
    return (
        f"regexp_matches(TRIM({col}), '^[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}[T ][0-9]{{2}}:[0-9]{{2}}')"
    )


def _num(col: str) -> str:
    return f"TRY_CAST(TRIM({col}) AS DOUBLE)"


def _finite(col: str) -> str:
    return f"({_num(col)} IS NOT NULL AND isfinite({_num(col)}))"


def _ragged() -> str:
    return (
        "CASE WHEN n_fields <> n_header THEN CONCAT('wrong number of fields (', "
        "CAST(n_fields AS VARCHAR), ', header has ', CAST(n_header AS VARCHAR), ')') END"
    )


def _q(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _unit_sql(col: str) -> str:
    key = f"LOWER(REPLACE(TRIM({col}), ' ', ''))"
    whens = " ".join(f"WHEN {_q(k)} THEN {_q(v)}" for k, v in UNIT_SPELLINGS.items())
    return f"(CASE {key} {whens} END)"


def _time_reason(col: str, label: str, *, need_clock: bool = True) -> str:
    clock = (
        f" WHEN NOT {_has_clock(col)} THEN '{label} has no time of day: ' || TRIM({col})"
        if need_clock
        else ""
    )
    return (
        f"WHEN {_blank(col)} THEN 'missing {label}' "
        f"WHEN {_ts(col)} IS NULL THEN 'unparseable {label}: ' || TRIM({col}){clock}"
    )


def _finish(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    kind: str,
    table: str,
    checked_sql: str,
    select_ok: str,
) -> FileLoad:
    """Split ``checked_sql`` (rows with a ``reason``) into ``table`` and the rejects table."""
    _ensure_rejects(con)
    con.execute(f"CREATE OR REPLACE TEMP TABLE _checked AS {checked_sql}")
    con.execute(
        f"CREATE OR REPLACE TABLE {table} AS {select_ok} FROM _checked WHERE reason IS NULL"
    )
    con.execute(
        f"INSERT INTO {REJECTS_TABLE} SELECT ?, line, reason FROM _checked "
        "WHERE reason IS NOT NULL ORDER BY line",
        [str(path)],
    )
    row = con.execute(
        "SELECT COUNT(*), COUNT(*) FILTER (WHERE reason IS NULL) FROM _checked"
    ).fetchone()
    assert row is not None
    con.execute("DROP TABLE _checked")
    read, ok = int(row[0]), int(row[1])
    return FileLoad(kind, path, table, read, ok, read - ok)


def load_creatinine(con: duckdb.DuckDBPyConnection, path: Path, table: str = "creat") -> FileLoad:
    """``c.csv`` -> ``table`` (rid = line, patient_id, t, scr µmol/L, value, unit as given)."""
    raw = _load_raw(con, path, "creatinine")
    unit = _unit_sql("unit")
    v = _num("value")
    scr = f"(CASE {unit} WHEN 'mg/dL' THEN {v} * {UMOL_PER_MGDL!r} ELSE {v} END)"
    checked = f"""
SELECT line, TRIM(patient_id) AS patient_id, {_ts("time")} AS t, {scr} AS scr,
  {_num("value")} AS value, {unit} AS unit,
  CASE WHEN n_fields <> n_header THEN {_ragged()}
       WHEN {_blank("patient_id")} THEN 'missing patient_id'
       {_time_reason("time", "time")}
       WHEN {_blank("unit")} THEN 'missing unit'
       WHEN {unit} IS NULL THEN 'unknown unit: ' || TRIM(unit) || ' (use mg/dL or umol/L)'
       WHEN {_blank("value")} THEN 'missing value'
       WHEN NOT {_finite("value")} THEN 'value is not a number: ' || TRIM(value)
       WHEN {_num("value")} < 0 THEN 'negative creatinine: ' || TRIM(value)
       WHEN {scr} < {CREAT_MIN_UMOL_L!r} OR {scr} > {CREAT_MAX_UMOL_L!r}
         THEN 'implausible creatinine ' || CAST(ROUND({scr}, 1) AS VARCHAR)
              || ' umol/L (outside 10-3000)'
  END AS reason
FROM {raw}"""
    return _finish(
        con,
        path,
        "creatinine",
        table,
        checked,
        "SELECT line AS rid, patient_id, t, scr, value, unit",
    )


def load_urine(con: duckdb.DuckDBPyConnection, path: Path, table: str = "urine") -> FileLoad:
    """``u.csv`` -> ``table`` (uid = line, patient_id, start, "end", volume_ml)."""
    raw = _load_raw(con, path, "urine")
    vol = _num("volume_ml")
    checked = f"""
SELECT line, TRIM(patient_id) AS patient_id, {_ts("start")} AS start, {_ts('"end"')} AS "end",
  {vol} AS volume_ml,
  CASE WHEN n_fields <> n_header THEN {_ragged()}
       WHEN {_blank("patient_id")} THEN 'missing patient_id'
       {_time_reason("start", "start")}
       {_time_reason('"end"', "end")}
       WHEN {_ts('"end"')} <= {_ts("start")} THEN 'end is not after start'
       WHEN {_blank("volume_ml")} THEN 'missing volume_ml'
       WHEN NOT {_finite("volume_ml")} THEN 'volume_ml is not a number: ' || TRIM(volume_ml)
       WHEN {vol} < 0 THEN 'negative urine volume: ' || TRIM(volume_ml)
       WHEN {vol} > {URINE_MAX_ML!r} THEN 'implausible urine volume (over 10000 mL): '
            || TRIM(volume_ml)
  END AS reason
FROM {raw}"""
    return _finish(
        con,
        path,
        "urine",
        table,
        checked,
        'SELECT line AS uid, patient_id, start, "end", volume_ml',
    )


def load_weights(con: duckdb.DuckDBPyConnection, path: Path, table: str = "weights") -> FileLoad:
    """``w.csv`` -> ``table`` (patient_id, t, weight_kg)."""
    raw = _load_raw(con, path, "weights")
    kg = _num("weight_kg")
    checked = f"""
SELECT line, TRIM(patient_id) AS patient_id, {_ts("time")} AS t, {kg} AS weight_kg,
  CASE WHEN n_fields <> n_header THEN {_ragged()}
       WHEN {_blank("patient_id")} THEN 'missing patient_id'
       {_time_reason("time", "time", need_clock=False)}
       WHEN {_blank("weight_kg")} THEN 'missing weight_kg'
       WHEN NOT {_finite("weight_kg")} THEN 'weight_kg is not a number: ' || TRIM(weight_kg)
       WHEN {kg} < {WEIGHT_MIN_KG!r} OR {kg} > {WEIGHT_MAX_KG!r}
         THEN 'implausible weight (outside 1-500 kg): ' || TRIM(weight_kg)
  END AS reason
FROM {raw}"""
    return _finish(con, path, "weights", table, checked, "SELECT patient_id, t, weight_kg")


def load_rrt(con: duckdb.DuckDBPyConnection, path: Path, table: str = "rrt") -> FileLoad:
    """``r.csv`` -> ``table`` (patient_id, start, "end" NULL = ongoing)."""
    raw = _load_raw(con, path, "rrt")
    checked = f"""
SELECT line, TRIM(patient_id) AS patient_id, {_ts("start")} AS start, {_ts('"end"')} AS "end",
  CASE WHEN n_fields <> n_header THEN {_ragged()}
       WHEN {_blank("patient_id")} THEN 'missing patient_id'
       {_time_reason("start", "start")}
       WHEN NOT {_blank('"end"')} AND {_ts('"end"')} IS NULL
         THEN 'unparseable end: ' || TRIM("end")
       WHEN NOT {_blank('"end"')} AND NOT {_has_clock('"end"')}
         THEN 'end has no time of day: ' || TRIM("end")
       WHEN {_ts('"end"')} < {_ts("start")} THEN 'end is before start'
  END AS reason
FROM {raw}"""
    return _finish(con, path, "rrt", table, checked, 'SELECT patient_id, start, "end"')


def load_patients(con: duckdb.DuckDBPyConnection, path: Path, table: str = "patients") -> FileLoad:
    """``p.csv`` -> ``table`` (patient_id, birth_date DATE, sex 'male'/'female').

    Sex accepts male/female/m/f in any case. A second row for the same patient is rejected.
    """
    raw = _load_raw(con, path, "patients")
    sex = "(CASE LOWER(TRIM(sex)) WHEN 'male' THEN 'male' WHEN 'm' THEN 'male' "
    sex += "WHEN 'female' THEN 'female' WHEN 'f' THEN 'female' END)"
    bd = "TRY_CAST(TRIM(birth_date) AS DATE)"
    checked = f"""
SELECT line, TRIM(patient_id) AS patient_id, {bd} AS birth_date, {sex} AS sex,
  CASE WHEN n_fields <> n_header THEN {_ragged()}
       WHEN {_blank("patient_id")} THEN 'missing patient_id'
       WHEN {_blank("birth_date")} THEN 'missing birth_date'
       WHEN {bd} IS NULL THEN 'unparseable birth_date: ' || TRIM(birth_date)
       WHEN {sex} IS NULL THEN 'unknown sex: ' || COALESCE(TRIM(sex), '') || ' (use male/female)'
       WHEN ROW_NUMBER() OVER (PARTITION BY TRIM(patient_id) ORDER BY line) > 1
         THEN 'duplicate patient_id (first at line '
              || CAST(MIN(line) OVER (PARTITION BY TRIM(patient_id)) AS VARCHAR) || ')'
  END AS reason
FROM {raw}"""
    return _finish(con, path, "patients", table, checked, "SELECT patient_id, birth_date, sex")
