"""OMOP CDM 5.4 reader: a CSV folder / zip (Eunomia layout), a DuckDB file, or PostgreSQL.

Sources (``trialsieve ingest --format omop SOURCE``):

- a folder of CSV files, one per table, upper- or lower-case names (``PERSON.csv``,
  ``measurement.csv``, optionally ``.csv.gz``), or the Eunomia ``.zip`` of such files;
- a DuckDB database file (attached read-only; the schema holding ``person`` is found);
- ``postgresql://user:pw@host:port/db?schema=cdm&vocabulary_schema=vocab`` (psycopg; each table
  is streamed with ``COPY ... TO STDOUT`` into a temporary CSV, then read like a folder).
  ``schema`` defaults to the first schema that has a ``person`` table, ``vocabulary_schema`` to
  ``schema``; all other URL parameters go to libpq.

Mapping (OMOP CDM 5.4, https://ohdsi.github.io/CommonDataModel/cdm54.html), also in
docs/STORE.md "OMOP mapping":

- person (+ death) -> patients: birth_datetime, else year/month/day of birth;
  gender_concept_id (else gender_source_value) -> sex; earliest death.death_date.
- measurement -> kind lab (vital for BP, weight, height, heart rate...): measurement_datetime,
  else measurement_date; value_as_number + unit -> canonical value; value_as_concept name ->
  value_text; range_low/high -> ref_low/ref_high. A value with an operator other than "="
  (operator_concept_id, e.g. "<0.3") is a bound: its value is the bound, value_text keeps the
  comparator ("<0.3"), orig_value the operator as named; an operator that names no comparator
  is a reject.
- observation -> kind observation: observation_datetime/_date; value_as_number,
  value_as_string or value_as_concept name.
- condition_occurrence -> condition (start..end; status = condition_status concept name).
- procedure_occurrence -> procedure (procedure..procedure_end).
- drug_exposure -> medication: start..end, else verbatim_end_date, else start + days_supply;
  route = route concept name (lower case), else route_source_value.
- visit_occurrence -> encounter (visit_start..visit_end).

Codes: one code per row. With a CONCEPT table, the standard concept's vocabulary code is stored
(LOINC, SNOMED, RxNorm, ICD-10-CM, ICD-9-CM, ICD-10-PCS, ICD-9-Proc, CPT4, ATC as their canonical
URIs), else the source concept's vocabulary code, else the concept id itself with
``code_system = https://athena.ohdsi.org/concept`` (also for vocabularies without a URI, e.g.
``Visit``). The OMOP concept id and the source value are always kept, recoverable, at the end of
``display``: ``"<concept name> [omop:<concept_id>; source:<source_value>]"``
(see ``omop_concept_of``). Records whose concept is 0 and that have no source concept and no
source value are rejected (``unmapped``).

Units: the unit concept's UCUM code (``unit_concept_id`` via CONCEPT), else ``unit_source_value``,
converted by ``trialsieve.units``; unknown units and implausible values are rejected.
Times without zone are taken as UTC. ``source`` = ``<table>/<id column>=<id>``
(``measurement/measurement_id=123``): stable across CSV, DuckDB and PostgreSQL copies of the same
database, so a newer export updates rows. Rows with a null or duplicate id are rejected.
The death table is merged into ``patients.deceased_date`` (earliest death_date per person).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import duckdb
from tqdm import tqdm

from trialsieve.codes import (
    ATC,
    CPT,
    ICD9CM,
    ICD9PROC,
    ICD10CM,
    ICD10PCS,
    LOINC,
    OMOP,
    RXNORM,
    SNOMED,
    analyte_for_code,
)
from trialsieve.ingest.sink import IngestError, IngestSink
from trialsieve.ingest.tabular import (
    VITAL_ANALYTES,
    Reject,
    RowBuffer,
    convert,
    convert_ref,
    parse_float,
    parse_time,
    text,
)
from trialsieve.sqltext import quote

#: OMOP vocabulary_id -> canonical code-system URI (trialsieve.codes)
VOCABULARY_SYSTEMS: dict[str, str] = {
    "LOINC": LOINC,
    "SNOMED": SNOMED,
    "RxNorm": RXNORM,
    "ICD10CM": ICD10CM,
    "ICD9CM": ICD9CM,
    "ICD10PCS": ICD10PCS,
    "ICD9Proc": ICD9PROC,
    "CPT4": CPT,
    "ATC": ATC,
}
#: LOINC vital-sign / body-measure codes stored with kind ``vital`` (LOINC vital signs panel
#: 85353-1 members and body measures)
VITAL_LOINC = frozenset(
    {"8480-6", "8462-4", "29463-7", "3141-9", "8302-2", "8867-4", "9279-1", "39156-5",
     "8310-5", "59408-5", "2708-6", "9843-4", "8287-5", "85354-9", "8478-0"}
)  # fmt: skip
#: OMOP gender concepts (Gender vocabulary)
_GENDER = {"8507": "male", "8532": "female", "8521": "other", "8551": "unknown"}
_GENDER_SRC = {"m": "male", "male": "male", "f": "female", "female": "female"}
TABLES = (
    "person",
    "death",
    "concept",
    "measurement",
    "observation",
    "condition_occurrence",
    "procedure_occurrence",
    "drug_exposure",
    "visit_occurrence",
)
_DISPLAY_RE = re.compile(r" \[omop:(\d+|-?\d+); source:(.*)\]$")


def omop_concept_of(display: str | None) -> tuple[int | None, str | None]:
    """(OMOP concept id, source value) recovered from a stored OMOP row's ``display``."""
    if not display:
        return None, None
    m = _DISPLAY_RE.search(display)
    if not m:
        return None, None
    return int(m.group(1)), (m.group(2) or None)


@dataclass(frozen=True)
class _Spec:
    """How one OMOP event table maps to the store (column names of CDM 5.4)."""

    table: str
    kind: str
    concept: str
    source_value: str
    source_concept: str
    start: tuple[str, str]
    end: tuple[str, str] | None = None
    extra: dict[str, str] = field(default_factory=dict)  # output alias -> column


_SPECS = (
    _Spec("measurement", "lab", "measurement_concept_id", "measurement_source_value",
          "measurement_source_concept_id", ("measurement_datetime", "measurement_date"),
          extra={"v_num": "value_as_number", "v_concept": "value_as_concept_id",
                 "unit_concept": "unit_concept_id", "unit_src": "unit_source_value",
                 "r_low": "range_low", "r_high": "range_high",
                 "v_src": "value_source_value", "operator": "operator_concept_id"}),
    _Spec("observation", "observation", "observation_concept_id", "observation_source_value",
          "observation_source_concept_id", ("observation_datetime", "observation_date"),
          extra={"v_num": "value_as_number", "v_str": "value_as_string",
                 "v_concept": "value_as_concept_id", "unit_concept": "unit_concept_id",
                 "unit_src": "unit_source_value"}),
    _Spec("condition_occurrence", "condition", "condition_concept_id", "condition_source_value",
          "condition_source_concept_id", ("condition_start_datetime", "condition_start_date"),
          ("condition_end_datetime", "condition_end_date"),
          extra={"status_concept": "condition_status_concept_id"}),
    _Spec("procedure_occurrence", "procedure", "procedure_concept_id", "procedure_source_value",
          "procedure_source_concept_id", ("procedure_datetime", "procedure_date"),
          ("procedure_end_datetime", "procedure_end_date")),
    _Spec("drug_exposure", "medication", "drug_concept_id", "drug_source_value",
          "drug_source_concept_id", ("drug_exposure_start_datetime", "drug_exposure_start_date"),
          ("drug_exposure_end_datetime", "drug_exposure_end_date"),
          extra={"verbatim_end": "verbatim_end_date", "days_supply": "days_supply",
                 "route_concept": "route_concept_id", "route_src": "route_source_value",
                 "dose_unit_src": "dose_unit_source_value", "quantity": "quantity"}),
    _Spec("visit_occurrence", "encounter", "visit_concept_id", "visit_source_value",
          "visit_source_concept_id", ("visit_start_datetime", "visit_start_date"),
          ("visit_end_datetime", "visit_end_date")),
)  # fmt: skip
#: extra columns whose value is a concept id to be resolved to its name
_CONCEPT_EXTRAS = ("v_concept", "status_concept", "route_concept", "operator")
#: measurement.operator_concept_id, standard "Meas Value Operator" concepts (OMOP vocabulary),
#: for a database without its CONCEPT table; "=" (4172703) is an exact value
_OPERATORS = {"4171756": "<", "4171754": "<=", "4172703": "=", "4171755": ">=", "4172704": ">"}
_EQUALS = "4172703"
#: operator concept names read as comparators (the symbol screen.bounds reads in value_text)
_OPERATOR_NAMES = {"<": "<", "<=": "<=", "≤": "<=", "=": "=", ">=": ">=", "≥": ">=", ">": ">"}


# ----------------------------------------------------------------------------------------------
# opening a source
@dataclass
class _Db:
    """A DuckDB connection with one relation (SQL text) per OMOP table found."""

    con: duckdb.DuckDBPyConnection
    relations: dict[str, str]
    label: str
    columns: dict[str, set[str]] = field(default_factory=dict)

    def has(self, table: str) -> bool:
        return table in self.relations

    def cols(self, table: str) -> set[str]:
        if table not in self.columns:
            desc = self.con.execute(f"DESCRIBE SELECT * FROM {self.relations[table]}").fetchall()
            self.columns[table] = {str(r[0]).lower() for r in desc}
        return self.columns[table]


def _ident(s: str) -> str:
    return '"' + s.replace('"', '""') + '"'


def _csv_relation(path: Path) -> str:
    return (
        f"read_csv({quote(str(path))}, header=true, all_varchar=true, "
        "quote='\"', escape='\"', strict_mode=false)"
    )


def _csv_tables(folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        name = p.name.lower()
        for ext in (".csv", ".csv.gz"):
            if name.endswith(ext) and name[: -len(ext)] in TABLES:
                found.setdefault(name[: -len(ext)], p)
    return found


def is_postgres_url(source: Path | str) -> bool:
    """True for ``postgresql://`` / ``postgres://`` (also after ``Path()`` collapsed ``//``)."""
    return re.match(r"^postgres(ql)?:/", str(source)) is not None


@contextlib.contextmanager
def open_omop(source: Path | str) -> Iterator[_Db]:
    """Open an OMOP source (folder, zip, DuckDB file, PostgreSQL URL) as DuckDB relations."""
    con = duckdb.connect()
    try:
        if is_postgres_url(source):
            with tempfile.TemporaryDirectory(prefix="trialsieve-omop-") as tmp:
                _dump_postgres(str(source), Path(tmp))
                yield _folder_db(con, Path(tmp), "postgresql")
            return
        path = Path(source)
        if path.is_dir():
            yield _folder_db(con, path, path.name)
        elif zipfile.is_zipfile(path):
            with tempfile.TemporaryDirectory(prefix="trialsieve-omop-") as tmp:
                _extract_zip(path, Path(tmp))
                yield _folder_db(con, Path(tmp), path.name)
        elif path.is_file():
            yield _duckdb_file_db(con, path)
        else:
            raise IngestError(f"{source}: not an OMOP folder, zip, DuckDB file or PostgreSQL URL")
    finally:
        con.close()


def _folder_db(con: duckdb.DuckDBPyConnection, folder: Path, label: str) -> _Db:
    tables = _csv_tables(folder)
    if "person" not in tables:
        raise IngestError(f"{label}: no person.csv / PERSON.csv (OMOP CDM CSV layout)")
    rel = {t: _csv_relation(p) for t, p in tables.items()}
    return _Db(con, rel, label)


def _extract_zip(path: Path, dest: Path) -> None:
    with zipfile.ZipFile(path) as z:
        for info in z.infolist():
            name = Path(info.filename).name
            low = name.lower()
            if info.is_dir() or "__macosx" in info.filename.lower() or name.startswith("._"):
                continue
            stem = low[:-7] if low.endswith(".csv.gz") else low[:-4] if low.endswith(".csv") else ""
            if stem in TABLES:
                with z.open(info) as src, (dest / name).open("wb") as out:
                    while chunk := src.read(1 << 20):
                        out.write(chunk)


def _duckdb_file_db(con: duckdb.DuckDBPyConnection, path: Path) -> _Db:
    try:
        con.execute(f"ATTACH {quote(str(path))} AS omop_src (READ_ONLY)")
    except duckdb.Error as e:
        raise IngestError(f"{path}: not a DuckDB database: {e}") from None
    rows = con.execute(
        "SELECT table_schema, table_name FROM information_schema.tables "
        "WHERE table_catalog = 'omop_src'"
    ).fetchall()
    schemas = [s for s, t in rows if t.lower() == "person"]
    if not schemas:
        raise IngestError(f"{path}: no person table in the DuckDB database")
    schema = "main" if "main" in schemas else sorted(schemas)[0]
    rel: dict[str, str] = {}
    for s, t in sorted(rows, key=lambda st: st[0] != schema):  # the person schema first
        if t.lower() in TABLES and (s == schema or t.lower() == "concept"):
            rel.setdefault(t.lower(), f"omop_src.{_ident(s)}.{_ident(t)}")
    return _Db(con, rel, path.name)


def _dump_postgres(url: str, dest: Path) -> None:
    """Stream the OMOP tables of a PostgreSQL database into CSV files with COPY."""
    import psycopg  # only needed for PostgreSQL sources

    url = re.sub(r"^postgres(ql)?:/+", "postgresql://", url)
    parts = urlsplit(url)
    params = dict(parse_qsl(parts.query))
    schema = params.pop("schema", None)
    vocab = params.pop("vocabulary_schema", None)
    conninfo = urlunsplit(parts._replace(query=urlencode(params)))
    try:
        conn = psycopg.connect(conninfo)
    except psycopg.Error as e:
        raise IngestError(f"PostgreSQL: cannot connect: {e}") from None
    with conn:
        found = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
        ).fetchall()
        if schema is None:
            candidates = sorted(s for s, t in found if t.lower() == "person")
            if not candidates:
                raise IngestError("PostgreSQL: no person table (give ?schema=...)")
            schema = candidates[0]
        vocab = vocab or schema
        for s, t in found:
            low = t.lower()
            want = vocab if low == "concept" else schema
            if low in TABLES and s == want:
                sql = f"COPY (SELECT * FROM {_ident(s)}.{_ident(t)}) TO STDOUT WITH (FORMAT csv, HEADER true)"  # noqa: E501
                with (dest / f"{low}.csv").open("wb") as out, conn.cursor() as cur:
                    with cur.copy(sql) as copy:
                        for chunk in copy:
                            out.write(bytes(chunk))


# ----------------------------------------------------------------------------------------------
def _col(db: _Db, table: str, column: str, alias: str | None = None) -> str:
    expr = f"CAST(t.{_ident(column)} AS VARCHAR)" if column in db.cols(table) else "NULL::VARCHAR"
    return f"{expr} AS {_ident(alias or column)}"


def _concept_rel(db: _Db) -> str:
    if db.has("concept") and {"concept_id", "vocabulary_id", "concept_code"} <= db.cols("concept"):
        return (
            "(SELECT trim(CAST(concept_id AS VARCHAR)) AS cid, CAST(vocabulary_id AS VARCHAR) AS "
            "vocab, CAST(concept_code AS VARCHAR) AS code, CAST(concept_name AS VARCHAR) AS name "
            f"FROM {db.relations['concept']})"
        )
    return "(SELECT NULL::VARCHAR AS cid, NULL AS vocab, NULL AS code, NULL AS name WHERE false)"


def read(source: Path | str, sink: IngestSink) -> None:
    """Read OMOP CDM 5.4 ``source`` (folder, zip, DuckDB file, PostgreSQL URL) into ``sink``."""
    with open_omop(source) as db:
        db.con.execute(f"CREATE TEMP TABLE concept_map AS SELECT * FROM {_concept_rel(db)}")
        _read_person(db, sink)
        for spec in _SPECS:
            if db.has(spec.table):
                _read_table(db, spec, sink)


def _batches(db: _Db, sql: str, desc: str) -> Iterator[dict[str, Any]]:
    reader = db.con.sql(sql).to_arrow_reader(10_000)
    with tqdm(desc=desc, unit="row", disable=None, leave=False) as bar:
        for batch in reader:
            bar.update(batch.num_rows)
            yield from batch.to_pylist()


def _read_person(db: _Db, sink: IngestSink) -> None:
    cols = [
        _col(db, "person", c)
        for c in ("person_id", "gender_concept_id", "gender_source_value", "year_of_birth",
                  "month_of_birth", "day_of_birth", "birth_datetime")
    ]  # fmt: skip
    death = "NULL::VARCHAR"
    join = ""
    if db.has("death") and {"person_id", "death_date"} <= db.cols("death"):
        join = (
            "LEFT JOIN (SELECT trim(CAST(person_id AS VARCHAR)) AS dpid, "
            "min(CAST(death_date AS VARCHAR)) AS death_date "
            f"FROM {db.relations['death']} GROUP BY 1) d "
            "ON d.dpid = trim(CAST(t.person_id AS VARCHAR))"
        )
        death = "d.death_date"
    sql = (
        f"SELECT * EXCLUDE (ord), row_number() OVER (PARTITION BY trim(person_id) ORDER BY ord) "
        f"AS rn FROM (SELECT {', '.join(cols)}, {death} AS death_date, row_number() OVER () AS ord "
        f"FROM {db.relations['person']} t {join})"
    )
    rows = RowBuffer(sink, "person", patients=True)
    for r in _batches(db, sql, "OMOP person"):
        sink.count_read("person")
        pid = text(r["person_id"])
        loc = f"person_id={pid}"
        try:
            if pid is None:
                raise Reject("missing person_id")
            if r["rn"] > 1:
                raise Reject("duplicate person_id")
            birth, warn = _birth(r)
            d = parse_time(r["death_date"], "death.death_date")
        except Reject as e:
            sink.reject("person", "person", loc, str(e))
            continue
        if warn:
            sink.warn("person", "person", loc, warn)
        sex = _GENDER.get(text(r["gender_concept_id"]) or "") or _GENDER_SRC.get(
            (text(r["gender_source_value"]) or "").lower(), "unknown"
        )
        rows.add({"patient_id": pid, "birth_date": birth, "sex": sex,
                  "deceased_date": d.date() if d else None,
                  "source": f"person/person_id={pid}"})  # fmt: skip
    rows.flush()


def _birth(r: dict[str, Any]) -> tuple[dt.date | None, str | None]:
    """Birth date and an optional warning: birth_datetime, else year/month/day of birth."""
    bdt = parse_time(r["birth_datetime"], "birth_datetime")
    if bdt is not None:
        return bdt.date(), None
    year = parse_float(r["year_of_birth"])
    if year is None:
        return None, "no year_of_birth: age unknown"
    month, day = parse_float(r["month_of_birth"]), parse_float(r["day_of_birth"])
    try:
        if month is None or day is None:
            return dt.date(int(year), int(month or 1), 1), (
                "no day/month of birth: birth_date set to the first day of the known period"
            )
        return dt.date(int(year), int(month), int(day)), None
    except ValueError:
        raise Reject(f"impossible birth date {year:g}-{month}-{day}") from None


def _event_sql(db: _Db, spec: _Spec) -> str:
    t = spec.table
    id_col = f"{t}_id"
    cols = [
        _col(db, t, id_col, "id"),
        _col(db, t, "person_id"),
        _col(db, t, spec.concept, "concept_id"),
        _col(db, t, spec.source_value, "source_value"),
        _col(db, t, spec.source_concept, "source_concept_id"),
        _col(db, t, spec.start[0], "start_dt"),
        _col(db, t, spec.start[1], "start_d"),
    ]
    if spec.end:
        cols += [_col(db, t, spec.end[0], "end_dt"), _col(db, t, spec.end[1], "end_d")]
    cols += [_col(db, t, c, a) for a, c in spec.extra.items()]
    inner = f"SELECT {', '.join(cols)}, row_number() OVER () AS ord FROM {db.relations[t]} t"
    joins = [
        "LEFT JOIN concept_map c ON c.cid = trim(e.concept_id)",
        "LEFT JOIN concept_map sc ON sc.cid = trim(e.source_concept_id)",
    ]
    out = ["e.*", "c.vocab AS c_vocab", "c.code AS c_code", "c.name AS c_name",
           "sc.vocab AS sc_vocab", "sc.code AS sc_code", "sc.name AS sc_name"]  # fmt: skip
    if "unit_concept" in spec.extra:
        joins.append("LEFT JOIN concept_map u ON u.cid = trim(e.unit_concept)")
        out.append("u.code AS unit_code")
    for i, a in enumerate(x for x in _CONCEPT_EXTRAS if x in spec.extra):
        joins.append(f"LEFT JOIN concept_map x{i} ON x{i}.cid = trim(e.{a}) AND e.{a} <> '0'")
        out.append(f"x{i}.name AS {a}_name")
    return (
        f"SELECT {', '.join(out)}, "
        "row_number() OVER (PARTITION BY trim(e.id) ORDER BY e.ord) AS rn "
        f"FROM ({inner}) e {' '.join(joins)}"
    )


def _nonzero(v: str | None) -> str | None:
    s = text(v)
    return None if s is None or s == "0" else s


def _code(r: dict[str, Any]) -> tuple[str, str, str | None, str]:
    """(code_system, code, concept name, omop concept id) following the module's rule."""
    cid, scid = _nonzero(r["concept_id"]), _nonzero(r["source_concept_id"])
    if cid and r["c_vocab"] in VOCABULARY_SYSTEMS and r["c_code"]:
        return VOCABULARY_SYSTEMS[r["c_vocab"]], r["c_code"], r["c_name"], cid
    if scid and r["sc_vocab"] in VOCABULARY_SYSTEMS and r["sc_code"]:
        return VOCABULARY_SYSTEMS[r["sc_vocab"]], r["sc_code"], r["sc_name"], scid
    if cid:
        return OMOP, cid, r["c_name"], cid
    if scid:
        return OMOP, scid, r["sc_name"], scid
    if text(r["source_value"]):
        return OMOP, "0", None, "0"
    raise Reject("unmapped: concept 0, no source concept and no source value")


def _read_table(db: _Db, spec: _Spec, sink: IngestSink) -> None:
    rt = spec.table
    rows = RowBuffer(sink, rt)
    for r in _batches(db, _event_sql(db, spec), f"OMOP {rt}"):
        sink.count_read(rt)
        rid = text(r["id"])
        loc = f"{rt}_id={rid}"
        try:
            if rid is None:
                raise Reject(f"missing {rt}_id")
            if r["rn"] > 1:
                raise Reject(f"duplicate {rt}_id")
            ev = _event(spec, r)
        except Reject as e:
            sink.reject(rt, rt, loc, str(e))
            continue
        ev["source"] = f"{rt}/{rt}_id={rid}"
        rows.add(ev)
    rows.flush()


def _event(spec: _Spec, r: dict[str, Any]) -> dict[str, Any]:
    pid = text(r["person_id"])
    if pid is None:
        raise Reject("missing person_id")
    system, code, name, cid = _code(r)
    source_value = text(r["source_value"]) or ""
    display = f"{name or source_value or code} [omop:{cid}; source:{source_value}]"
    start = parse_time(r["start_dt"], spec.start[0]) or parse_time(r["start_d"], spec.start[1])
    if start is None:
        raise Reject(f"missing time ({spec.start[1]})")
    end = None
    if spec.end:
        end = parse_time(r["end_dt"], spec.end[0]) or parse_time(r["end_d"], spec.end[1])
    analyte = analyte_for_code(system, code) or analyte_for_code(OMOP, cid)
    kind = spec.kind
    ev: dict[str, Any] = {"patient_id": pid, "code_system": system, "code": code,
                          "display": display, "analyte": analyte}  # fmt: skip
    if spec.table in ("measurement", "observation"):
        _value(ev, r, analyte)
        if spec.table == "measurement" and (
            analyte in VITAL_ANALYTES or (system == LOINC and code in VITAL_LOINC)
        ):
            kind = "vital"
    elif spec.table == "drug_exposure":
        if end is None:
            end = parse_time(r["verbatim_end"], "verbatim_end_date")
        days = parse_float(r["days_supply"])
        if end is None and days is not None and days > 0:
            end = start + dt.timedelta(days=days)
        route = r.get("route_concept_name") or text(r["route_src"])
        ev["route"] = route.lower() if route else None
        ev["dose_unit"] = text(r["dose_unit_src"])
    elif spec.table == "condition_occurrence":
        ev["status"] = r.get("status_concept_name")
    if end is not None and end < start:
        raise Reject(f"end before start ({end:%Y-%m-%d %H:%M} < {start:%Y-%m-%d %H:%M})")
    ev.update(kind=kind, start_time=start, end_time=end)
    return ev


def _value(ev: dict[str, Any], r: dict[str, Any], analyte: str | None) -> None:
    """Numeric / coded / text value of a measurement or observation row, in place."""
    raw = text(r.get("v_num"))
    num = parse_float(raw)
    unit = text(r.get("unit_code")) if _nonzero(r.get("unit_concept")) else None
    unit = unit or text(r.get("unit_src"))
    ev["orig_value"] = raw or text(r.get("v_src")) or text(r.get("v_str"))
    ev["orig_unit"] = text(r.get("unit_src")) or unit
    ev["value_text"] = text(r.get("v_str")) or r.get("v_concept_name")
    if num is None:
        return
    op = _nonzero(r.get("operator"))
    if op is not None and op != _EQUALS:
        # "<0.3": a bound. Rules read the bound as the value and the comparator from
        # value_text; orig_value keeps the operator as the source names it
        name = text(r.get("operator_name"))
        symbol = (_OPERATOR_NAMES.get(name) if name else None) or _OPERATORS.get(op)
        if symbol is None:  # a number beyond an unknown bound cannot be read as either
            raise Reject(
                f"unknown value operator: operator_concept_id {op}" + (f" ({name})" if name else "")
            )
        if symbol != "=":
            ev["value_text"] = f"{symbol}{raw}"
            ev["orig_value"] = f"{name or symbol}{raw}"
    if analyte:
        ev["value"], ev["unit"] = convert(analyte, num, unit)
        ev["ref_low"] = convert_ref(analyte, parse_float(r.get("r_low")), unit)
        ev["ref_high"] = convert_ref(analyte, parse_float(r.get("r_high")), unit)
    else:
        ev["value"], ev["unit"] = num, unit
        ev["ref_low"], ev["ref_high"] = parse_float(r.get("r_low")), parse_float(r.get("r_high"))
