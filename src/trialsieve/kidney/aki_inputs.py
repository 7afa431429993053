"""The ``trialsieve aki`` input files, read into DuckDB with row-level validation (each file's
accepted rows become a view, its rejected rows go to the rejects table).

Files (issue 2, section 3): ``c.csv`` = ``patient_id,time,value,unit`` (creatinine, unit mg/dL or
umol/L), ``u.csv`` = ``patient_id,start,end,volume_ml``, ``w.csv`` = ``patient_id,time,weight_kg``,
``r.csv`` = ``patient_id,start[,end]`` (renal replacement therapy), ``p.csv`` =
``patient_id,birth_date,sex``. Column names are matched case-insensitively; extra columns are
ignored; a missing required column, or a file that is not UTF-8 text, is a file error
(:class:`AkiInputError`, naming the file and, for bad text, the line).

Every data record is either loaded or rejected, never dropped: a reject has the file, its line
(1-based, the header is line 1, so the first data record is line 2; a record with a quoted
newline is reported at the line where it starts) and a reason. Blank lines are not records.

Reading (one of three ways, chosen per file, all giving the same rows and line numbers as Python's
:mod:`csv`, which is the reference): a file without quote characters, NUL or lone carriage returns
and without blank lines (found by its record count) is read by DuckDB ``read_csv`` (as text, strict
field count, read in parallel into a table in file order: positions are its ``rowid``); such a file
with blank or ragged lines is split into lines and fields by DuckDB (``read_text`` +
``string_split``); any other file (quoted fields, quoted newlines) goes through Python's :mod:`csv`
in chunks. All checks are vectorised SQL over the text columns (``TRY_CAST`` + ``CASE``), each
value parsed once. The fast path of the first way: a clean creatinine or urine file is read with
its times (canonical UTC shape) and numbers parsed by ``read_csv`` itself, and read again as text
when any record is rejected, so that every reason quotes the value as written (:func:`_load`; the
parsers are the same, tested value by value). The typed read starts before the file's byte scan
(:func:`_read_ahead`), so that the scan of the file loaded on another cursor runs beside it.

Times: ISO-8601. Without an offset a time is UTC; with an offset (``+02:00``, ``Z``) it is
converted to UTC. Creatinine, urine and RRT times need a time of day (a date alone cannot be
placed in a 48-hour window); a weight with a date only is taken at 00:00 UTC (conservative for
"most recent weight at or before the period").

Plausibility limits (rejects): creatinine 10-3000 µmol/L after conversion (issue 2 §3; 1 mg/dL =
88.4 µmol/L, :mod:`trialsieve.kidney.creatinine`), urine volume 0-10 000 mL per period, weight
1-500 kg, a urine period must end after it starts, an RRT end must not precede its start.
"""

from __future__ import annotations

import codecs
import csv
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

import duckdb

if TYPE_CHECKING:
    import pyarrow as pa

from trialsieve.kidney.creatinine import UMOL_PER_MGDL, UNIT_SPELLINGS
from trialsieve.sqltext import quote

REJECTS_TABLE: Final[str] = "aki_rejects"
CREAT_MIN_UMOL_L: Final[float] = 10.0
CREAT_MAX_UMOL_L: Final[float] = 3000.0
URINE_MAX_ML: Final[float] = 10_000.0
WEIGHT_MIN_KG: Final[float] = 1.0
WEIGHT_MAX_KG: Final[float] = 500.0
_CHUNK: Final[int] = 100_000
#: temporary table of the physical lines of the file being loaded (line, text)
_LINES: Final[str] = "_aki_lines"
#: ISO-8601 UTC text without fractions or offset other than Z (a ``strptime`` format)
_CANONICAL_UTC: Final[str] = "%Y-%m-%dT%H:%M:%SZ"


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
    """An in-memory DuckDB connection with the session time zone set to UTC (and insertion
    order preserved, DuckDB's default: the loaders and ``trialsieve aki`` rely on it; no
    progress bar, which DuckDB would otherwise draw on the terminal for queries over 2 s), and
    the rejects table. Its cursors may load files at the same time (each loader's tables and
    views are the database's; only the scratch tables of a load are the cursor's own), after
    :func:`session` on each."""
    con = duckdb.connect()
    con.execute("SET preserve_insertion_order = true")
    con.execute("SET enable_progress_bar = false")
    _ensure_rejects(con)
    return session(con)


def session(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """``con`` (a connection or a cursor, which starts with the default time zone) with its
    session time zone set to UTC: offset-less times are UTC."""
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
        _check_header(names, path, kind)
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
    import pyarrow as pa  # only files with quoted fields come this way

    data: dict[str, pa.Array] = {
        "line": pa.array(lines, type=pa.int64()),
        "n_fields": pa.array(nfields, type=pa.int64()),
        "n_header": pa.array([n_header] * len(lines), type=pa.int64()),
    }
    for c, values in cols.items():
        data[c] = pa.array(values, type=pa.string())
    return pa.table(data)


def _read_bytes(path: Path, kind: str) -> bytes:
    """The bytes of ``path``, checked to be UTF-8 text (a file that is not is an input error
    naming its first bad line; the ASCII check is a fast pass that avoids decoding)."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise AkiInputError(f"{kind} file {path}: {e.strerror}") from e
    if not data.isascii():
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as e:
            line = data.count(b"\n", 0, e.start) + 1
            raise AkiInputError(
                f"{kind} file {path}, line {line}: not UTF-8 text (byte {data[e.start]:#04x})"
            ) from e
    return data


def _header(data: bytes) -> str:
    """The first line of ``data`` as text (``utf-8-sig``: a byte-order mark is dropped)."""
    end = data.find(b"\n")
    return data[: len(data) if end < 0 else end].decode("utf-8-sig").removesuffix("\r")


def _plain_lines(data: bytes, path: Path) -> bool:
    """True when every record of ``data`` is one physical line split at commas.

    That holds without quote characters (no quoted comma or newline), without a lone carriage
    return (Python's reader ends a line there too) and without NUL. The file name must not be a
    DuckDB glob pattern (``read_text`` expands globs).
    """
    return (
        b'"' not in data
        and b"\x00" not in data
        and (b"\r" not in data or data.count(b"\r") == data.count(b"\r\n"))
        and not _is_glob(path)
    )


def _is_glob(path: Path) -> bool:
    """True when DuckDB would read ``path`` as a glob pattern (``read_csv``, ``read_text``)."""
    return any(ch in str(path) for ch in "*?[")


#: every character for which Python's ``str.isspace`` is true (``csv`` blank-line rule)
_PY_SPACE: Final[str] = "".join(
    f"\\x{{{c:x}}}"
    for c in range(0x3001)
    if chr(c).isspace()  # none above U+3000
)


def _create_raw(con: duckdb.DuckDBPyConnection, raw: str, kind: str) -> None:
    required, optional = LAYOUTS[kind]
    col_defs = ", ".join(f'"{c}" VARCHAR' for c in required + optional)
    con.execute(
        f"CREATE OR REPLACE TABLE {raw} (line BIGINT, n_fields BIGINT, n_header BIGINT, {col_defs})"
    )


def _plain_raw_sql(kind: str, names: list[str]) -> str:
    """A SELECT giving the ``raw_<kind>`` rows of a file that :func:`_plain_lines` accepts.

    Line n of the file is element n of its text split at ``\\n`` (a ``\\r`` before it is
    dropped): the same records, fields, blank-line skips and line numbers as :mod:`csv`.
    """
    required, optional = LAYOUTS[kind]
    cols = []
    for c in required + optional:
        if c in names:
            cols.append(f'f[{names.index(c) + 1}] AS "{c}"')
        else:
            cols.append(f'CAST(NULL AS VARCHAR) AS "{c}"')
    blank = f"(NOT contains(text, ',') AND regexp_full_match(text, '[{_PY_SPACE}]*'))"
    return f"""SELECT CAST(line AS BIGINT) AS line, CAST(len(f) AS BIGINT) AS n_fields,
  CAST({len(names)} AS BIGINT) AS n_header, {", ".join(cols)}
FROM (
  SELECT line, string_split(rtrim(text, chr(13)), ',') AS f
  FROM {_LINES} WHERE line > 1 AND NOT {blank}
)"""


def _has(data: bytes, needle: bytes) -> bool:
    """``needle in data``, searched from the end: CPython's reverse search is about twice as
    fast as ``in`` for the two- and three-byte needles below on CSV text (10 against 18 ms per
    20 MB)."""
    return data.rfind(needle) >= 0


def _uniform_line_ends(data: bytes) -> bool:
    """True when the lines of ``data`` all end alike (all ``\\n`` or all ``\\r\\n``): DuckDB's
    ``read_csv`` reads one line end per file. For data without a lone carriage return
    (:func:`_plain_lines`: every ``\\r`` starts a ``\\r\\n``), so one-byte counts suffice.
    (Blank lines, which the reader skips, are found by the record count, :func:`_csv_rel`.)"""
    return b"\r" not in data or data.count(b"\r") == data.count(b"\n")


def _trailing_comma(data: bytes) -> bool:
    """True when a line ends with a comma: DuckDB's ``read_csv`` ignores a trailing delimiter
    ("a,b,c," read as 3 fields; Python's csv sees 4)."""
    return (
        _has(data, b",\n")
        or (b"\r" in data and _has(data, b",\r\n"))
        or data[-3:].rstrip(b"\r\n").endswith(b",")
    )


def _records_after_header(data: bytes) -> int:
    """Number of lines after the header (a last line without a newline counts)."""
    return data.count(b"\n") - (1 if data.endswith(b"\n") else 0)


def _csv_raw(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    kind: str,
    names: list[str],
    expected: int,
    raw: str,
) -> str | None:
    """:func:`_read_csv` as text then :func:`_csv_rel`: the relation of the file's rows, or
    None."""
    if not _read_csv(con, path, names, raw, {}):
        return None
    return _csv_rel(con, kind, names, expected, raw)


def _read_csv(
    con: duckdb.DuckDBPyConnection, path: Path, names: list[str], raw: str, typed: dict[str, str]
) -> bool:
    """Read a file with DuckDB's ``read_csv`` into the table ``raw``; False (and no table) when
    the reader raises (ragged row, bad UTF-8, long line, and with ``typed``
    a value that does not parse).

    Every line after the header must be one record with exactly ``len(names)`` fields (strict
    mode raises otherwise). The file is read in parallel in file order (insertion order is
    preserved, :func:`connect`), so a record's position is the table's ``rowid``.

    ``typed`` (layout column -> DuckDB type, :data:`_TYPED`) has the reader parse those columns
    itself, times in the canonical UTC shape only (:data:`_CANONICAL_UTC`, the shape
    :func:`_trimmed` parses with ``try_strptime``); the others stay text.
    """
    n = len(names)
    col_type = {names.index(c): t for c, t in typed.items()}
    types = ", ".join(f"'c{i}': '{col_type.get(i, 'VARCHAR')}'" for i in range(n))
    stamp = f", timestampformat = {quote(_CANONICAL_UTC)}" if typed else ""
    con.execute("SET preserve_insertion_order = true")
    try:
        con.execute(
            f"""CREATE OR REPLACE TABLE {raw} AS SELECT *
FROM read_csv(?, header = false, skip = 1, delim = ',', quote = '', escape = '',
  auto_detect = false, columns = {{{types}}}, strict_mode = true, null_padding = false{stamp})""",
            [str(path)],
        )
    except duckdb.Error:
        con.execute(f"DROP TABLE IF EXISTS {raw}")
        return False
    return True


def _csv_rel(
    con: duckdb.DuckDBPyConnection, kind: str, names: list[str], expected: int, raw: str
) -> str | None:
    """The relation of the rows :func:`_read_csv` read, line = position + 2; None (and the
    table dropped) when it holds another number of records than ``expected``: the reader skips
    blank lines, which would shift the line numbers (such a file is split into lines)."""
    required, optional = LAYOUTS[kind]
    n = len(names)
    row = con.execute(f"SELECT COUNT(*), MIN(rowid), MAX(rowid) FROM {raw}").fetchone()
    if row is None or row[0] != expected or (expected and (row[1], row[2]) != (0, expected - 1)):
        con.execute(f"DROP TABLE {raw}")
        return None
    cols = [
        f"c{names.index(c)} AS {_id(c)}" if c in names else f"CAST(NULL AS VARCHAR) AS {_id(c)}"
        for c in required + optional
    ]
    return f"""(SELECT CAST(rowid + 2 AS BIGINT) AS line,
  CAST({n} AS BIGINT) AS n_fields, CAST({n} AS BIGINT) AS n_header, {", ".join(cols)}
FROM {raw})"""


def _names(header: str) -> list[str]:
    """The column names of a header line (matched case-insensitively, spaces ignored)."""
    return [h.strip().lower() for h in header.split(",")]


def _typed_columns(kind: str, names: list[str]) -> dict[str, str]:
    """The columns of :data:`_TYPED` for ``kind`` that the header names."""
    return {c: t for c, t in _TYPED.get(kind, {}).items() if c in names}


def _read_ahead(con: duckdb.DuckDBPyConnection, path: Path, kind: str, raw: str) -> dict[str, str]:
    """Start the typed read of a creatinine or urine file before its bytes are checked; the
    typed columns it read with (empty when it did not read).

    ``read_csv`` runs without the GIL, so the other file's byte checks (:func:`_load_raw`,
    Python) run meanwhile instead of before it. The read is kept only if the checks then choose
    it; otherwise :func:`_load_raw` drops it. Only the header line is read here.
    """
    if not _TYPED.get(kind) or _is_glob(path):
        return {}
    try:
        with path.open("rb") as f:
            first = f.readline()
        names = _names(_header(first))
    except (OSError, UnicodeDecodeError):
        return {}
    typed = _typed_columns(kind, names)
    required, _ = LAYOUTS[kind]
    if not typed or any(c not in names for c in required):
        return {}
    return typed if _read_csv(con, path, names, raw, typed) else {}


@dataclass(frozen=True)
class _Raw:
    """The records of a file as a relation (from :func:`_load_raw`)."""

    rel: str
    #: whether values need TRIM (see :func:`_needs_trim`)
    trim: bool
    #: the layout columns already parsed by the reader (:data:`_TYPED`); the others are text
    typed: frozenset[str] = frozenset()
    #: for a typed read: the same file read again with every column as text (the file's checks
    #: are not repeated: a file ``read_csv`` read typed, it reads as text)
    as_text: Callable[[], _Raw] | None = None
    #: the database table ``rel`` reads, when it reads one (not the cursor's lines table)
    table: str | None = None


#: the fast path of a clean file (:func:`_load`): read_csv parses these columns itself (times
#: of the canonical UTC shape only); the other columns and files stay text
_TYPED: Final[dict[str, dict[str, str]]] = {
    "creatinine": {"time": "TIMESTAMP", "value": "DOUBLE"},
    "urine": {"start": "TIMESTAMP", "end": "TIMESTAMP", "volume_ml": "DOUBLE"},
}


def _needs_trim(data: bytes) -> bool:
    """False when DuckDB's TRIM cannot change any value: ASCII text without a space."""
    return not (data.isascii() and b" " not in data)


def _check_header(names: list[str], path: Path, kind: str) -> None:
    required, _ = LAYOUTS[kind]
    missing = [c for c in required if c not in names]
    if missing:
        raise AkiInputError(
            f"{kind} file {path}: missing column(s) {', '.join(missing)} "
            f"(header must have {','.join(required)})"
        )


def _load_raw(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    kind: str,
    *,
    typed: bool = False,
    raw: str | None = None,
) -> _Raw:
    """The records of ``path`` as a relation, and whether values need trimming.

    Columns: line, n_fields, n_header, then the layout columns as text. Plain files
    (:func:`_plain_lines`, the usual case) are read by DuckDB: with ``read_csv`` into the table
    ``raw`` (default ``raw_<kind>``) when :func:`_csv_raw` succeeds, else split into lines (a
    subquery over the cursor's lines table); others (quoted fields, lone carriage returns) go
    through Python's :mod:`csv` in chunks into the table ``raw``. All give the same rows (an
    empty field may be NULL instead of ''; every check treats both as blank). Trimming is
    skipped for an ASCII file without a space (TRIM would change nothing). Sets the session time
    zone of ``con`` to UTC: offset-less times are UTC (module docstring).

    With ``typed``, a file that ``read_csv`` can read and that needs no trimming is read with
    the columns of :data:`_TYPED` parsed by the reader (:attr:`_Raw.typed`); when a value does
    not parse, the file is read as text. That typed read starts before the byte checks
    (:func:`_read_ahead`) and is dropped when they choose another way.
    """
    session(con)
    raw = raw or f"raw_{kind}"
    ahead = _read_ahead(con, path, kind, raw) if typed else {}
    try:
        data = _read_bytes(path, kind)
    except AkiInputError:
        con.execute(f"DROP TABLE IF EXISTS {raw}")
        raise
    header = _header(data)
    if data in (b"", codecs.BOM_UTF8):
        required, optional = LAYOUTS[kind]
        wanted = required + optional
        raise AkiInputError(f"{kind} file {path} is empty (need a header: {','.join(wanted)})")
    trim = _needs_trim(data)
    names = _names(header)
    types = _typed_columns(kind, names) if typed and not trim else {}
    plain = _plain_lines(data, path)
    # files with a trailing comma or mixed line ends take the line-splitting path below
    by_csv = plain and _uniform_line_ends(data) and not _trailing_comma(data)
    if ahead and (ahead != types or not by_csv):
        con.execute(f"DROP TABLE {raw}")  # the checks chose another way
        ahead = {}
    if plain:
        _check_header(names, path, kind)
        if by_csv:
            expected = _records_after_header(data)
            if types and (ahead or _read_csv(con, path, names, raw, types)):
                # a count that differs (blank lines) differs as text too: split into lines
                rel = _csv_rel(con, kind, names, expected, raw)
                if rel is not None:

                    def as_text() -> _Raw:
                        # read_csv read every field typed, so it reads them as text (no
                        # trimming: only a file that needs none is read typed); were it ever
                        # to fail, the bytes decide the way
                        text = _csv_raw(con, path, kind, names, expected, raw)
                        if text is None:
                            return _load_raw(con, path, kind, raw=raw)
                        return _Raw(text, trim=False, table=raw)

                    return _Raw(rel, trim, frozenset(types), as_text, raw)
            elif (rel := _csv_raw(con, path, kind, names, expected, raw)) is not None:
                return _Raw(rel, trim, table=raw)
        # one thread splits the text into lines; the checks then run in parallel over the table
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {_LINES} AS "
            "SELECT unnest(l) AS text, generate_subscripts(l, 1) AS line "
            "FROM (SELECT string_split(content, chr(10)) AS l FROM read_text(?))",
            [str(path)],
        )
        return _Raw(f"({_plain_raw_sql(kind, names)})", trim)
    _create_raw(con, raw, kind)
    for chunk in _chunks(path, kind):
        if chunk.num_rows:
            con.register("_aki_chunk", chunk)
            con.execute(f"INSERT INTO {raw} BY NAME SELECT * FROM _aki_chunk")
            con.unregister("_aki_chunk")
    return _Raw(raw, trim, table=raw)


def _load(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    kind: str,
    table: str,
    checked_sql: Callable[[_Raw], str],
    select_ok: str,
) -> FileLoad:
    """Read ``path`` (:func:`_load_raw`), check its records (``checked_sql(raw)``: rows with a
    ``reason`` when rejected) and make ``table`` a view of its accepted rows (``select_ok``);
    copy the rejected rows to the rejects table.

    A file read with its values parsed by the reader (the fast path below) and without rejects
    keeps its table ``_raw_<table>``, and ``table`` reads it through the checks, which are then
    cheap projections: cheaper than storing every row once more. Otherwise the checked rows are
    stored once, in the table ``_checked_<table>`` (the text checks parse times and numbers:
    once, for every later scan).

    The file is first read with its times and numbers parsed by the reader (:data:`_TYPED`, the
    fast path); when the checks then reject any record, it is read again as text, so that every
    reason quotes the value as written. Either way the accepted rows are the same values: the
    reader parses exactly the texts that :func:`_trimmed` parses, to the same values (tested
    value by value in ``tests/kidney/test_aki_inputs.py``).
    """
    raw = _load_raw(con, path, kind, typed=True, raw=f"_raw_{table}")
    _ensure_rejects(con)
    checked = f"_checked_{table}"
    if raw.as_text is not None:
        rows = checked_sql(raw)
        read, ok = _counts(con, f"({rows})")
        if ok == read:
            con.execute(f"CREATE OR REPLACE VIEW {table} AS {select_ok} FROM ({rows})")
            con.execute(f"DROP TABLE IF EXISTS {checked}")  # an earlier load's
            return FileLoad(kind, path, table, read, ok, 0)
        raw = raw.as_text()
    con.execute(f"CREATE OR REPLACE TABLE {checked} AS {checked_sql(raw)}")
    read, ok = _counts(con, checked)
    con.execute(
        f"CREATE OR REPLACE VIEW {table} AS {select_ok} FROM {checked} WHERE reason IS NULL"
    )
    if ok < read:
        con.execute(
            f"INSERT INTO {REJECTS_TABLE} SELECT ?, line, reason FROM {checked} "
            "WHERE reason IS NOT NULL ORDER BY line",
            [str(path)],
        )
    con.execute(f"DROP TABLE IF EXISTS {_LINES}")
    if raw.table is not None:
        con.execute(f"DROP TABLE {raw.table}")
    return FileLoad(kind, path, table, read, ok, read - ok)


def _counts(con: duckdb.DuckDBPyConnection, checked: str) -> tuple[int, int]:
    """(records, accepted records) of checked rows (a table or a parenthesised query)."""
    row = con.execute(
        f"SELECT COUNT(*), COUNT(*) FILTER (WHERE reason IS NULL) FROM {checked}"
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def _id(col: str) -> str:
    return f'"{col}"'


def _trimmed(
    raw: _Raw, kind: str, *, times: tuple[str, ...] = (), nums: tuple[str, ...] = ()
) -> str:
    """``raw`` (from :func:`_load_raw`) with every layout column trimmed, plus ``<col>_t``
    (UTC TIMESTAMP) for ``times`` and ``<col>_n`` (DOUBLE) for ``nums``, each parsed once (NULL
    when unparseable).

    ISO-8601 text -> TIMESTAMPTZ (an offset is applied) -> naive UTC: the session TimeZone is UTC.
    Text of the shape ``YYYY-MM-DDTHH:MM:SSZ`` (``<col>_k``, the usual export) is UTC with no
    offset to apply: ``try_strptime`` parses it directly (the same value, a cheaper parse), and
    only the other texts take the TIMESTAMPTZ cast.

    A column the reader parsed (``raw.typed``) is its own ``_k``/``_t``/``_n`` value; its text
    column is then a stand-in, NULL where the value is (a blank field) and ``'?'`` elsewhere:
    only its blankness matters, since a fast-path file with any reject is read again as text
    (:func:`_load`), so no reason ever quotes the stand-in.
    """
    required, optional = LAYOUTS[kind]
    rel, trim = raw.rel, raw.trim
    fn = "TRIM" if trim else ""
    trims = ", ".join(
        f"CASE WHEN {_id(c)} IS NOT NULL THEN '?' END AS {_id(c)}, {_id(c)} AS {_id(c + '_v')}"
        if c in raw.typed
        else f"{fn}({_id(c)}) AS {_id(c)}"
        for c in required + optional
    )
    canon = [
        f"{_id(c + '_v')} AS {_id(c + '_k')}"
        if c in raw.typed
        else f"try_strptime({_id(c)}, {quote(_CANONICAL_UTC)}) AS {_id(c + '_k')}"
        for c in times
    ]
    parsed = [
        f"CASE WHEN {_id(c + '_k')} IS NOT NULL THEN {_id(c + '_k')} "
        f"ELSE TRY_CAST(TRY_CAST({_id(c)} AS TIMESTAMPTZ) AS TIMESTAMP) END AS {_id(c + '_t')}"
        for c in times
    ]
    parsed += [
        f"{_id(c + '_v')} AS {_id(c + '_n')}" if c in raw.typed
        else f"TRY_CAST({_id(c)} AS DOUBLE) AS {_id(c + '_n')}"
        for c in nums
    ]  # fmt: skip
    extra = (", " + ", ".join(parsed)) if parsed else ""
    inner = f"(SELECT line, n_fields, n_header, {trims} FROM {rel})"
    if canon:
        inner = f"(SELECT *, {', '.join(canon)} FROM {inner})"
    return f"(SELECT *{extra} FROM {inner})"


def _blank(col: str) -> str:
    return f"({_id(col)} IS NULL OR {_id(col)} = '')"


def _has_clock(col: str) -> str:
    """A time of day is given (a time column of :func:`_trimmed`: canonical text has one)."""
    return (
        f"({_id(col + '_k')} IS NOT NULL OR "
        f"regexp_matches({_id(col)}, '^[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}[T ][0-9]{{2}}:[0-9]{{2}}'))"
    )


def _finite(col: str) -> str:
    n = _id(col + "_n")
    return f"({n} IS NOT NULL AND isfinite({n}))"


def _ragged() -> str:
    return (
        "CASE WHEN n_fields <> n_header THEN CONCAT('wrong number of fields (', "
        "CAST(n_fields AS VARCHAR), ', header has ', CAST(n_header AS VARCHAR), ')') END"
    )


def _unit_sql(col: str) -> str:
    key = f"LOWER(REPLACE({_id(col)}, ' ', ''))"
    whens = " ".join(f"WHEN {quote(k)} THEN {quote(v)}" for k, v in UNIT_SPELLINGS.items())
    # the canonical spellings map to themselves: matched first, without LOWER/REPLACE
    canon = " ".join(
        f"WHEN {quote(v)} THEN {quote(v)}" for v in sorted(set(UNIT_SPELLINGS.values()))
    )
    return f"(CASE {_id(col)} {canon} ELSE (CASE {key} {whens} END) END)"


def _time_reason(col: str, label: str, *, need_clock: bool = True) -> str:
    clock = (
        f" WHEN NOT {_has_clock(col)} THEN '{label} has no time of day: ' || {_id(col)}"
        if need_clock
        else ""
    )
    return (
        f"WHEN {_blank(col)} THEN 'missing {label}' "
        f"WHEN {_id(col + '_t')} IS NULL THEN 'unparseable {label}: ' || {_id(col)}{clock}"
    )


def load_creatinine(con: duckdb.DuckDBPyConnection, path: Path, table: str = "creat") -> FileLoad:
    """``c.csv`` -> ``table`` (rid = line, patient_id, t, scr µmol/L, value, unit as given)."""
    scr = f"(CASE unit_c WHEN 'mg/dL' THEN value_n * {UMOL_PER_MGDL!r} ELSE value_n END)"

    def checked(raw: _Raw) -> str:
        src = _trimmed(raw, "creatinine", times=("time",), nums=("value",))
        return f"""
SELECT line, patient_id, time_t AS t, scr, value_n AS value, unit_c AS unit,
  CASE WHEN n_fields <> n_header THEN {_ragged()}
       WHEN {_blank("patient_id")} THEN 'missing patient_id'
       {_time_reason("time", "time")}
       WHEN {_blank("unit")} THEN 'missing unit'
       WHEN unit_c IS NULL THEN 'unknown unit: ' || unit || ' (use mg/dL or umol/L)'
       WHEN {_blank("value")} THEN 'missing value'
       WHEN NOT {_finite("value")} THEN 'value is not a number: ' || value
       WHEN value_n < 0 THEN 'negative creatinine: ' || value
       WHEN scr < {CREAT_MIN_UMOL_L!r} OR scr > {CREAT_MAX_UMOL_L!r}
         THEN 'implausible creatinine ' || CAST(ROUND(scr, 1) AS VARCHAR)
              || ' umol/L (outside 10-3000)'
  END AS reason
FROM (SELECT *, {scr} AS scr FROM (SELECT *, {_unit_sql("unit")} AS unit_c FROM {src}))"""

    return _load(
        con,
        path,
        "creatinine",
        table,
        checked,
        "SELECT line AS rid, patient_id, t, scr, value, unit",
    )


def load_urine(con: duckdb.DuckDBPyConnection, path: Path, table: str = "urine") -> FileLoad:
    """``u.csv`` -> ``table`` (uid = line, patient_id, start, "end", volume_ml)."""

    def checked(raw: _Raw) -> str:
        src = _trimmed(raw, "urine", times=("start", "end"), nums=("volume_ml",))
        return f"""
SELECT line, patient_id, start_t AS start, end_t AS "end", volume_ml_n AS volume_ml,
  CASE WHEN n_fields <> n_header THEN {_ragged()}
       WHEN {_blank("patient_id")} THEN 'missing patient_id'
       {_time_reason("start", "start")}
       {_time_reason("end", "end")}
       WHEN end_t <= start_t THEN 'end is not after start'
       WHEN {_blank("volume_ml")} THEN 'missing volume_ml'
       WHEN NOT {_finite("volume_ml")} THEN 'volume_ml is not a number: ' || volume_ml
       WHEN volume_ml_n < 0 THEN 'negative urine volume: ' || volume_ml
       WHEN volume_ml_n > {URINE_MAX_ML!r} THEN 'implausible urine volume (over 10000 mL): '
            || volume_ml
  END AS reason
FROM {src}"""

    return _load(
        con,
        path,
        "urine",
        table,
        checked,
        'SELECT line AS uid, patient_id, start, "end", volume_ml',
    )


def load_weights(con: duckdb.DuckDBPyConnection, path: Path, table: str = "weights") -> FileLoad:
    """``w.csv`` -> ``table`` (patient_id, t, weight_kg)."""

    def checked(raw: _Raw) -> str:
        src = _trimmed(raw, "weights", times=("time",), nums=("weight_kg",))
        return f"""
SELECT line, patient_id, time_t AS t, weight_kg_n AS weight_kg,
  CASE WHEN n_fields <> n_header THEN {_ragged()}
       WHEN {_blank("patient_id")} THEN 'missing patient_id'
       {_time_reason("time", "time", need_clock=False)}
       WHEN {_blank("weight_kg")} THEN 'missing weight_kg'
       WHEN NOT {_finite("weight_kg")} THEN 'weight_kg is not a number: ' || weight_kg
       WHEN weight_kg_n < {WEIGHT_MIN_KG!r} OR weight_kg_n > {WEIGHT_MAX_KG!r}
         THEN 'implausible weight (outside 1-500 kg): ' || weight_kg
  END AS reason
FROM {src}"""

    return _load(con, path, "weights", table, checked, "SELECT patient_id, t, weight_kg")


def load_rrt(con: duckdb.DuckDBPyConnection, path: Path, table: str = "rrt") -> FileLoad:
    """``r.csv`` -> ``table`` (patient_id, start, "end" NULL = ongoing)."""

    def checked(raw: _Raw) -> str:
        src = _trimmed(raw, "rrt", times=("start", "end"))
        return f"""
SELECT line, patient_id, start_t AS start, end_t AS "end",
  CASE WHEN n_fields <> n_header THEN {_ragged()}
       WHEN {_blank("patient_id")} THEN 'missing patient_id'
       {_time_reason("start", "start")}
       WHEN NOT {_blank("end")} AND end_t IS NULL
         THEN 'unparseable end: ' || "end"
       WHEN NOT {_blank("end")} AND NOT {_has_clock("end")}
         THEN 'end has no time of day: ' || "end"
       WHEN end_t < start_t THEN 'end is before start'
  END AS reason
FROM {src}"""

    return _load(con, path, "rrt", table, checked, 'SELECT patient_id, start, "end"')


def load_patients(con: duckdb.DuckDBPyConnection, path: Path, table: str = "patients") -> FileLoad:
    """``p.csv`` -> ``table`` (patient_id, birth_date DATE, sex 'male'/'female').

    Sex accepts male/female/m/f in any case. A second row for the same patient is rejected.
    """
    sex = "(CASE LOWER(sex) WHEN 'male' THEN 'male' WHEN 'm' THEN 'male' "
    sex += "WHEN 'female' THEN 'female' WHEN 'f' THEN 'female' END)"

    def checked(raw: _Raw) -> str:
        src = _trimmed(raw, "patients")
        return f"""
SELECT line, patient_id, bd AS birth_date, sex_c AS sex,
  CASE WHEN n_fields <> n_header THEN {_ragged()}
       WHEN {_blank("patient_id")} THEN 'missing patient_id'
       WHEN {_blank("birth_date")} THEN 'missing birth_date'
       WHEN bd IS NULL THEN 'unparseable birth_date: ' || birth_date
       WHEN sex_c IS NULL THEN 'unknown sex: ' || COALESCE(sex, '') || ' (use male/female)'
       WHEN ROW_NUMBER() OVER (PARTITION BY patient_id ORDER BY line) > 1
         THEN 'duplicate patient_id (first at line '
              || CAST(MIN(line) OVER (PARTITION BY patient_id) AS VARCHAR) || ')'
  END AS reason
FROM (SELECT *, TRY_CAST(birth_date AS DATE) AS bd, {sex} AS sex_c FROM {src})"""

    return _load(con, path, "patients", table, checked, "SELECT patient_id, birth_date, sex")
