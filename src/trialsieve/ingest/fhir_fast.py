"""Vectorised fast path for FHIR R4 Observation Bulk NDJSON files (issue 3, ingestion speed).

The whole file is handed to DuckDB as one column of lines; ``json_transform`` with an explicit
structure (never an inferred schema; code, category and referenceRange kept as JSON text, the
components too, transformed only for the records that have them) parses it in parallel, and SQL
flattens each Observation into rows (root value or one row per component,
as in ``FhirReader._observation``). Everything clinical is decided by the same Python functions as
the per-record path, evaluated once per *distinct* key instead of once per record:

- code concept + category -> (system, code, display, analyte, kind): ``fhir.obs_concept``;
- (analyte, Quantity unit/system/code) -> unit and factor: ``fhir.qty_unit`` and the unit table
  of ``trialsieve.units`` (a float factor is applied in SQL, a conversion function in Python);
- (analyte, unit, referenceRange) -> (ref_low, ref_high): ``fhir.ref_range``.

A record is stored by the fast path only when every part of it is decided without doubt: any
record the fast path cannot decide (malformed JSON, a JSON ``null``, another value[x] type, a
missing or odd time, an unknown or missing unit, an implausible value, an unusual number
spelling, another resource type...) is handed back, with its line, to the per-record code of
``FhirReader``, which stores it or rejects it with exactly the reason it always gave. The rows of
both paths are emitted together in line order, so the result equals the per-record path's.
Known difference (docs/STORE.md, "Fast path"): a JSON object that repeats a property name is
read with its first value here, its last by orjson.
"""

from __future__ import annotations

import gzip
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from trialsieve.ingest.sink import IngestSink
from trialsieve.store.schema import EVENTS_SCHEMA
from trialsieve.units import ANALYTES, UnitError, canonical_unit, conversion

#: explicit json_transform structure of the Observation fields the fast path reads; the rest of
#: a resource is ignored exactly as the per-record path ignores it
_QTY = '{"value":"JSON","unit":"JSON","system":"JSON","code":"JSON"}'
#: value[x] other than valueQuantity: a record with one of them is left to the per-record code
_OTHER_VALUES = ("valueCodeableConcept", "valueString", "valueBoolean", "valueInteger",
                 "valueRange", "valueRatio", "valueSampledData", "valueTime", "valueDateTime",
                 "valuePeriod")  # fmt: skip
_OTHER_JSON = "".join(f',"{k}":"JSON"' for k in _OTHER_VALUES)
_STRUCTURE = (
    '{"resourceType":"VARCHAR","id":"JSON","status":"JSON","subject":{"reference":"JSON"},'
    '"effectiveDateTime":"VARCHAR","category":"JSON","code":"JSON",'
    f'"valueQuantity":{_QTY},"referenceRange":"JSON"{_OTHER_JSON},"component":"JSON"}}'
)
#: components are transformed apart, only where a record has them (a list in the structure above
#: costs every line); one that does not fit leaves its record to the per-record code
_COMPONENTS = f'[{{"code":"JSON","valueQuantity":{_QTY},"referenceRange":"JSON"{_OTHER_JSON}}}]'
_NO_OTHER_COMP = " AND ".join(f"c.{k} IS NULL" for k in _OTHER_VALUES)
#: FHIR date / dateTime forms decided in SQL (others go to ``fhir_time.parse_fhir_datetime``):
#: YYYY-MM-DD, or with Thh:mm:ss[.f{1,6}][Z|+hh:mm|-hh:mm]
_TIME_RE = (
    r"[1-9][0-9]{3}-[0-9]{2}-[0-9]{2}(T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
    r"(?:\.[0-9]{1,6})?(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])?)?"
)
#: number spellings whose text equals Python's ``str`` of the parsed number (checked in tests)
_INT_RE = r"-?[1-9][0-9]*|0"
_DEC_RE = r"-?(0|[1-9][0-9]*)\.[0-9]+"

_NO_OTHER_ROOT = " AND ".join(f"{k} IS NULL" for k in _OTHER_VALUES)
#: a comma before a closing bracket (whitespace between), also inside strings: conservative
_TRAILING_COMMA = r"regexp_matches(line, ',\s*[}\]]')"
#: orjson refuses nesting 1,024 deep: a line with that many opening brackets (so at least twice
#: as many bytes) might be that deep (counted only on long lines)
_MAYBE_TOO_DEEP = (
    "(strlen(line) >= 2048 AND "
    "strlen(line) - strlen(replace(replace(line, '[', ''), '{', '')) >= 1024)"
)


def _json_str(col: str) -> str:
    """SQL: the string value of JSON text ``col``, NULL when it is not a JSON string.

    A JSON string without a backslash is its own value between the quotes (no escapes to
    decode), so the common case is a substring instead of a second JSON parse.
    """
    return (
        f"CASE WHEN starts_with({col}, '\"') AND NOT contains({col}, '\\') THEN {col}[2:-2]"
        f" WHEN json_type({col}) = 'VARCHAR' THEN {col} ->> '$' END"
    )


_OK_SQL = "rec_ok AND pid IS NOT NULL AND pid <> '' AND start_time IS NOT NULL"

#: one json_transform per line, its struct unnested into columns (so that it is evaluated once)
_FLAT_SQL = rf"""
WITH parsed AS (
  -- a line with "null" anywhere is left to the per-record code (absent and null differ
  -- for ``key in resource``), and so are those DuckDB's JSON parser accepts but orjson rejects
  -- as malformed: a comma before a closing bracket, nesting deeper than orjson's limit; a
  -- Quantity comparator ("<0.3": a bound, its text kept in value_text) is decided there too
  SELECT line_no, contains(line, '"component"') AS comp_text,
    unnest(TRY(json_transform(line, '{_STRUCTURE}')))
  FROM lines WHERE NOT blank AND NOT contains(line, 'null') AND NOT {_TRAILING_COMMA}
    AND NOT {_MAYBE_TOO_DEEP} AND NOT contains(line, '"comparator"')
), f AS (
  SELECT *,
    {_json_str("id")} AS id_s,
    {_json_str("status")} AS status_s,
    {_json_str("subject.reference")} AS ref,
    effectiveDateTime AS t,
    CASE WHEN component IS NOT NULL THEN TRY(json_transform(component, '{_COMPONENTS}')) END
      AS comp_list
  FROM parsed
), g AS MATERIALIZED (
  SELECT line_no, id_s AS id, status_s AS status, category, code, valueQuantity,
    referenceRange, comp_list AS component,
    CASE WHEN starts_with(ref, 'urn:uuid:') THEN ref[10:]
         WHEN contains(ref, '/') THEN split_part(ref, '/', -1)
         ELSE ref END AS pid,
    -- session TimeZone is UTC: a date is 00:00 UTC, no offset = UTC, an offset -> UTC
    CASE WHEN regexp_full_match(t, '{_TIME_RE}') THEN TRY_CAST(t AS TIMESTAMPTZ)::TIMESTAMP END
      AS start_time,
    resourceType = 'Observation' AND id_s IS NOT NULL AND id_s <> ''
      AND (status IS NULL OR status_s <> 'entered-in-error')
      AND (NOT comp_text OR comp_list IS NOT NULL) AND {_NO_OTHER_ROOT} AS rec_ok
  FROM f
), r AS (
  -- the root row (when it has a value or no components)
  SELECT line_no, 0::BIGINT AS sub, id, status, pid, start_time, category::VARCHAR AS cat,
    code::VARCHAR AS code, valueQuantity AS vq, referenceRange::VARCHAR AS rr, false AS bad
  FROM g WHERE {_OK_SQL}
    AND (valueQuantity IS NOT NULL OR coalesce(len(component), 0) = 0)
  UNION ALL
  -- one row per component with a value; one with another value[x] marks its record "bad"
  SELECT line_no, sub, id, status, pid, start_time, cat, c.code::VARCHAR AS code,
    c.valueQuantity AS vq, c.referenceRange::VARCHAR AS rr, NOT ({_NO_OTHER_COMP}) AS bad
  FROM (SELECT line_no, id, status, pid, start_time, category::VARCHAR AS cat,
          unnest(component) AS c, generate_subscripts(component, 1)::BIGINT AS sub
        FROM g WHERE {_OK_SQL} AND len(component) > 0)
  WHERE c.valueQuantity IS NOT NULL OR NOT ({_NO_OTHER_COMP})
)
SELECT line_no, sub, id, status, pid, start_time, cat, code, vq IS NOT NULL AS has_q, bad,
  json_type(vq.value) AS vtype, vq.value::VARCHAR AS vtext, vq.unit::VARCHAR AS u,
  vq.system::VARCHAR AS s, vq.code::VARCHAR AS c, CASE WHEN vq IS NOT NULL THEN rr END AS rr,
  hash(cat, code, vq IS NOT NULL, vq.unit::VARCHAR, vq.system::VARCHAR, vq.code::VARCHAR,
       CASE WHEN vq IS NOT NULL THEN rr END) AS kh
FROM r
"""

_KEYS = ("cat", "code", "has_q", "u", "s", "c", "rr")
#: join on the full key, or on its hash when the distinct keys have distinct hashes
_FULL_JOIN = " AND ".join(f"m.{k} IS NOT DISTINCT FROM flat.{k}" for k in _KEYS)
_HASH_JOIN = "m.kh = flat.kh"
#: tests switch the hash join off to check that both joins give the same rows
USE_HASH_JOIN = True

_ROWS_SQL = f"""
WITH v AS (
  SELECT flat.line_no, flat.sub, flat.id, flat.status, flat.pid, flat.start_time, flat.has_q,
    flat.bad, flat.vtype, flat.vtext, m.*
  FROM flat JOIN keymap m ON {{join}}
), w AS (
  SELECT *,
    CASE WHEN vtype IN ('UBIGINT', 'BIGINT') AND regexp_full_match(vtext, '{_INT_RE}') THEN vtext
         WHEN vtype = 'DOUBLE' AND regexp_full_match(vtext, '{_DEC_RE}')
              AND (vtext::DOUBLE = 0 OR abs(vtext::DOUBLE) BETWEEN 1e-4 AND 9.99e15) THEN vtext
    END AS orig_value,
    TRY_CAST(vtext AS DOUBLE) AS fval
  FROM v
), x AS (
  SELECT *,
    CASE WHEN NOT has_q THEN NULL
         WHEN analyte IS NULL THEN fval
         WHEN NOT fn THEN fval * factor END AS value
  FROM w
)
SELECT line_no, sub, pid AS patient_id, kind, analyte, code_system, code_out AS code, display,
  start_time, value, unit_out AS unit, orig_value,
  CASE WHEN has_q THEN q_unit END AS orig_unit, ref_low, ref_high, status,
  'Observation/' || id AS source,
  'line ' || line_no || ' (Observation/' || id || ')' AS origin_locator,
  has_q AND analyte IS NOT NULL AND fn AS needs_fn, fval,
  coalesce(ok AND NOT bad AND (NOT has_q OR (orig_value IS NOT NULL AND fval IS NOT NULL
                                 AND (analyte IS NULL OR fn
                                      OR (NOT isnan(value) AND value >= lo AND value <= hi)))),
           false) AS good
FROM x
ORDER BY line_no, sub
"""


def convert_many(conv: float | Callable[[float], float], values: np.ndarray) -> np.ndarray:
    """``units.to_canonical`` over an array, giving the very same doubles as value by value.

    A float factor is one IEEE multiplication either way; a conversion function is called per
    value (numpy's ``**`` differs from Python's in the last bit, so functions are not vectorised).
    """
    if isinstance(conv, float):
        return values * conv
    # once per distinct value (by bit pattern, so that -0.0 and 0.0 or NaNs stay apart)
    bits, inverse = np.unique(
        np.ascontiguousarray(values, dtype=np.float64).view(np.int64), return_inverse=True
    )
    out = np.array([conv(v) for v in bits.view(np.float64).tolist()], dtype=np.float64)
    return out[inverse.reshape(-1)]


def _loads(text: str | None) -> Any:
    return None if text is None else orjson.loads(text)


_MAP_FIELDS = (
    ("ok", pa.bool_()), ("code_system", pa.string()), ("code_out", pa.string()),
    ("display", pa.string()), ("analyte", pa.string()), ("kind", pa.string()),
    ("q_unit", pa.string()), ("unit_out", pa.string()), ("factor", pa.float64()),
    ("fn", pa.bool_()), ("lo", pa.float64()), ("hi", pa.float64()),
    ("ref_low", pa.float64()), ("ref_high", pa.float64()),
)  # fmt: skip


def _decide(
    cat: str | None, code: str | None, has_q: bool, u: str | None, s: str | None,
    c: str | None, rr: str | None,
) -> tuple[Any, ...]:  # fmt: skip
    """One distinct key -> the mapped columns of ``_MAP_FIELDS`` (``ok`` False: hand back).

    Uses the per-record path's own functions, so a decided key maps as that path would.
    """
    from trialsieve.ingest.fhir import obs_category, obs_concept, qty_unit, ref_range

    bad = (False,) + (None,) * (len(_MAP_FIELDS) - 1)
    try:
        system, code_out, display, analyte, kind = obs_concept(
            obs_category(_loads(cat)), _loads(code)
        )
        if not all(x is None or isinstance(x, str) for x in (system, code_out, display)):
            return bad
        q_unit = unit_out = None
        factor, fn, lo, hi, ref_low, ref_high = None, False, None, None, None, None
        if has_q:
            q = {k: _loads(v) for k, v in (("unit", u), ("system", s), ("code", c)) if v}
            q_unit = qty_unit(q)
            if not (q_unit is None or isinstance(q_unit, str)):
                return bad
            unit_out = q_unit
            if analyte:
                conv = conversion(analyte, q_unit)
                factor, fn = (conv, False) if isinstance(conv, float) else (None, True)
                unit_out = canonical_unit(analyte)
                lo, hi = ANALYTES[analyte].plausible
            ref_low, ref_high = ref_range(analyte, _loads(rr) or [], q_unit)
            if not all(x is None or isinstance(x, float) for x in (ref_low, ref_high)):
                return bad
    except (UnitError, KeyError, TypeError, ValueError, AttributeError, IndexError):
        return bad
    return (True, system, code_out, display, analyte, kind, q_unit, unit_out, factor, fn, lo,
            hi, ref_low, ref_high)  # fmt: skip


def _key_map(keys: list[tuple[Any, ...]]) -> pa.Table:
    """Distinct (category, code, has_q, unit, system, code, referenceRange, hash) -> decisions."""
    rows = [(*k, *_decide(*k[:-1])) for k in keys]
    fields = [(k, pa.bool_() if k == "has_q" else pa.string()) for k in _KEYS]
    fields += [("kh", pa.uint64())]
    fields += list(_MAP_FIELDS)
    cols = list(zip(*rows, strict=True)) if rows else [()] * len(fields)
    return pa.table({n: pa.array(c, t) for (n, t), c in zip(fields, cols, strict=True)})


def _lines(data: bytes | memoryview, first_line: int = 1) -> tuple[pa.Table, np.ndarray]:
    """(line_no, line, blank) table over ``data`` without copying, and the line offsets.

    Line ``first_line + i`` is ``data[off[i]:off[i + 1]]`` including its newline, as Python's
    binary file iteration yields it.
    """
    buf = np.frombuffer(data, np.uint8)
    nl = np.flatnonzero(buf == 10)
    starts = np.concatenate(([0], nl + 1)).astype(np.int64)
    if starts[-1] == len(data):
        starts = starts[:-1]
    offsets = np.concatenate((starts, [len(data)])).astype(np.int64)
    n = len(starts)
    text = pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data))
    # blank (skipped, not counted) = only the whitespace bytes.strip() removes; a line starting
    # with "{" is not blank, the few others are checked one by one
    blank = np.zeros(n, dtype=bool)
    for i in np.flatnonzero(buf[starts] != ord("{")) if len(data) else []:
        blank[i] = not bytes(data[offsets[i] : offsets[i + 1]]).strip()
    line_no = np.arange(first_line, first_line + n, dtype=np.int64)
    return pa.table({"line_no": line_no, "line": text, "blank": blank}), offsets


#: bytes of NDJSON handed to DuckDB at a time (whole lines): bounds the fast path's memory
CHUNK_BYTES = 128 * 2**20


def read_observations(path: Path, reader: Any, sink: IngestSink) -> bool:
    """Read one Observation NDJSON file through the fast path; False when it cannot be used.

    ``reader`` is the ``fhir.FhirReader`` of the run (the fast path is off in strict mode).
    Counts, rows and rejects go to ``sink`` exactly as the per-record path would send them. The
    file is read in chunks of whole lines (``CHUNK_BYTES``). A file that cannot be read from the
    start (corrupt gzip) is left to the per-record path; one that breaks later (truncated gzip)
    has its complete lines read and one "unreadable file" reject after the last of them.
    """
    from trialsieve.ingest.fhir import _type_from_name

    if reader.strict:
        return False
    file, fallback_type = path.name, _type_from_name(path)
    first_line, carry = 1, b""
    with gzip.open(path, "rb") if path.name.endswith(".gz") else path.open("rb") as f:
        while True:
            try:
                block = f.read(CHUNK_BYTES)
            except (OSError, EOFError) as e:
                if first_line == 1:
                    return False  # nothing emitted yet: the per-record path reports it
                cut = carry.rfind(b"\n") + 1
                if cut:
                    first_line += _read_chunk(carry[:cut], first_line, file, fallback_type, sink)
                sink.count_read(fallback_type)
                sink.reject(fallback_type, file, f"after line {first_line - 1}",
                            f"unreadable file: {e}")  # fmt: skip
                return True
            if not block:
                if carry:  # last line without newline
                    _read_chunk(carry, first_line, file, fallback_type, sink)
                return True
            data = carry + block if carry else block
            cut = data.rfind(b"\n") + 1
            if cut == 0:
                carry = data
                continue
            carry = data[cut:]
            chunk = memoryview(data)[:cut]  # no copy
            first_line += _read_chunk(chunk, first_line, file, fallback_type, sink)


def _read_chunk(
    data: bytes | memoryview, first_line: int, file: str, fallback_type: str, sink: IngestSink
) -> int:
    """Read whole NDJSON lines starting at line ``first_line``; returns the number of lines."""
    from trialsieve.ingest.fhir import ORIGIN_COLUMNS, FhirReader

    lines, offsets = _lines(data, first_line)
    try:
        if len(data) and np.frombuffer(data, np.uint8).max() >= 0x80:  # ASCII is UTF-8
            str(data, "utf-8")  # the per-record path rejects a line that is not UTF-8
        con = duckdb.connect()
        try:
            con.execute("SET TimeZone = 'UTC'")
            fast, n_fast, fallback = _run_sql(con, lines)
        finally:
            con.close()
    except UnicodeDecodeError:  # every line of the chunk goes the per-record way
        blank = lines.column("blank").to_numpy(zero_copy_only=False)
        fast, n_fast = pa.table({}), 0
        fallback = (np.flatnonzero(~blank) + first_line).tolist()
    if n_fast:
        sink.count_read("Observation", n_fast)
    # records handed back: the per-record path, in line order, rows kept beside their line
    back = FhirReader(sink, strict=False)
    back.batch_rows = sys.maxsize
    back_lines: list[int] = []
    for line_no in fallback:
        i = line_no - first_line
        raw = data[offsets[i] : offsets[i + 1]]
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            sink.count_read(fallback_type)
            sink.reject(fallback_type, file, f"line {line_no}", f"malformed JSON: {e}")
            continue
        buf = back.events.get("Observation")
        before = buf.n if buf is not None else 0
        back.resource(obj, file, f"line {line_no}", fallback_type)
        buf = back.events.get("Observation")
        back_lines.extend([line_no] * ((buf.n if buf is not None else 0) - before))
    slow = back.events.pop("Observation", None)
    fields = [f for f in EVENTS_SCHEMA if f.name != "dataset"]
    fields += [pa.field(n, pa.string()) for n in ORIGIN_COLUMNS]
    schema = pa.schema(fields)
    parts = []
    if fast.num_rows:
        fast = fast.append_column("origin_file", pa.repeat(pa.scalar(file), fast.num_rows))
        cols = [
            fast.column(f.name).cast(f.type)
            if f.name in fast.column_names
            else pa.nulls(fast.num_rows, f.type)
            for f in schema
        ]
        parts.append(
            pa.Table.from_arrays(
                [*cols, fast.column("line_no"), fast.column("sub").cast(pa.int64())],
                names=[*schema.names, "line_no", "sub"],
            )
        )
    if slow is not None and slow.n:
        t = slow.table().cast(schema)
        t = t.append_column("line_no", pa.array(back_lines, pa.int64()))
        t = t.append_column("sub", pa.array(np.arange(t.num_rows, dtype=np.int64)))
        parts.append(t)
    if len(parts) == 2:  # records of both paths: back into line order
        merged = pa.concat_tables([p.cast(parts[0].schema) for p in parts])
        parts = [merged.sort_by([("line_no", "ascending"), ("sub", "ascending")])]
    if parts:
        sink.events(parts[0].select(schema.names), "Observation")
    back.flush()  # any other resource type found in the chunk
    return lines.num_rows


def _equal(col: pa.ChunkedArray, value: str | None) -> pa.ChunkedArray:
    """Boolean, never null: ``col`` holds ``value`` (None matches nulls)."""
    if value is None:
        return pc.is_null(col)
    return pc.fill_null(pc.equal(col, value), False)


def _run_sql(con: duckdb.DuckDBPyConnection, lines: pa.Table) -> tuple[pa.Table, int, list[int]]:
    """(rows of the records decided here with line_no/sub, their count, lines handed back)."""
    con.register("lines", lines)
    flat = con.sql(_FLAT_SQL).to_arrow_table()
    con.register("flat", flat)
    keys = con.execute("SELECT DISTINCT " + ", ".join(_KEYS) + ", kh FROM flat").fetchall()
    con.register("keymap", _key_map(keys))
    unique_hashes = USE_HASH_JOIN and len({k[-1] for k in keys}) == len(keys)
    rows = con.sql(
        _ROWS_SQL.replace("{join}", _HASH_JOIN if unique_hashes else _FULL_JOIN)
    ).to_arrow_table()
    # conversions that are functions (e.g. creatinine mg/dL, HbA1c mmol/mol): Python, per row
    value = rows.column("value").to_numpy(zero_copy_only=False)
    null = rows.column("value").is_null().to_numpy(zero_copy_only=False)
    good = rows.column("good").to_numpy(zero_copy_only=False).copy()
    need = rows.column("needs_fn").to_numpy(zero_copy_only=False) & good
    null = null & ~need
    if need.any():
        value = value.copy()
        groups = rows.filter(pa.array(need)).group_by(["analyte", "orig_unit"]).aggregate([])
        analyte_col, unit_col = rows.column("analyte"), rows.column("orig_unit")
        fval = rows.column("fval").to_numpy(zero_copy_only=False)
        for analyte, unit in zip(groups.column("analyte").to_pylist(),
                                 groups.column("orig_unit").to_pylist(), strict=True):  # fmt: skip
            same = pc.and_(_equal(analyte_col, analyte), _equal(unit_col, unit))
            idx = np.flatnonzero(need & same.to_numpy(zero_copy_only=False))
            v = convert_many(conversion(analyte, unit), fval[idx])
            low, high = ANALYTES[analyte].plausible
            value[idx] = v
            good[idx] = ~np.isnan(v) & (v >= low) & (v <= high)
    first_line = lines.column("line_no")[0].as_py() if lines.num_rows else 1
    at = rows.column("line_no").to_numpy() - first_line  # 0-based line index in the chunk
    bad_line = np.zeros(lines.num_rows, dtype=bool)
    bad_line[at[~good]] = True
    has_row = np.zeros(lines.num_rows, dtype=bool)
    has_row[at] = True
    clean = has_row & ~bad_line
    keep = clean[at]
    rows = rows.set_column(
        rows.schema.get_field_index("value"), "value", pa.array(value, mask=null)
    )
    # still in line order (ORDER BY of _ROWS_SQL)
    fast = rows if keep.all() else rows.filter(pa.array(keep))
    blank = lines.column("blank").to_numpy(zero_copy_only=False)
    fallback = (np.flatnonzero(~blank & ~clean) + first_line).tolist()
    return fast, int(clean.sum()), fallback
