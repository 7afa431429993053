"""Reading the ``trialsieve aki`` CSV files: conversions, UTC times, and rejects with file/line."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trialsieve.kidney.aki_inputs import (
    REJECTS_TABLE,
    AkiInputError,
    connect,
    load_creatinine,
    load_patients,
    load_rrt,
    load_urine,
    load_weights,
)


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def rejects(con: duckdb.DuckDBPyConnection) -> list[tuple[int, str]]:
    rows = con.execute(f"SELECT * FROM {REJECTS_TABLE} ORDER BY line").fetchall()
    return [(int(r[1]), r[2]) for r in rows]


CREAT = """patient_id,time,value,unit
a,2024-01-01T00:00:00,80,umol/L
a,2024-01-03T00:00:00+02:00,1.2,mg/dL
a,2024-01-03,1.2,mg/dL
a,garbage,1.2,mg/dL
a,2024-01-04T00:00:00,1.2,mmol/L
a,2024-01-04T00:00:00,-1,umol/L
a,2024-01-04T00:00:00,5000,umol/L
a,2024-01-04T00:00:00,<0.3,mg/dL
,2024-01-04T00:00:00,1,mg/dL
a,2024-01-04T00:00:00,1

b,2024-01-05T00:00:00Z,90,\u00b5mol/L
b,2024-01-05 01:00:00,0.1,mg/dL
b,2024-01-05T02:00:00,9.9,umol/L
b,2024-01-05T03:00:00,33.94,mg/dL
b,2024-01-05T04:00:00,nan,umol/L
"""


def test_creatinine_conversion_offsets_and_every_reject_reason(tmp_path: Path) -> None:
    con = connect()
    load = load_creatinine(con, write(tmp_path, "c.csv", CREAT))
    assert (load.read, load.accepted, load.rejected) == (15, 3, 12)  # blank line 12 is no record
    ok = con.execute("SELECT rid, patient_id, t, scr, unit FROM creat ORDER BY rid").fetchall()
    assert ok[0] == (2, "a", datetime(2024, 1, 1), 80.0, "umol/L")
    assert ok[1][2] == datetime(2024, 1, 2, 22, 0)  # +02:00 converted to UTC
    assert ok[1][3] == pytest.approx(106.08)
    assert ok[2] == (13, "b", datetime(2024, 1, 5), 90.0, "umol/L")  # Z, µmol/L spelling
    assert rejects(con) == [
        (4, "time has no time of day: 2024-01-03"),
        (5, "unparseable time: garbage"),
        (6, "unknown unit: mmol/L (use mg/dL or umol/L)"),
        (7, "negative creatinine: -1"),
        (8, "implausible creatinine 5000.0 umol/L (outside 10-3000)"),
        (9, "value is not a number: <0.3"),
        (10, "missing patient_id"),
        (11, "wrong number of fields (3, header has 4)"),
        (14, "implausible creatinine 8.8 umol/L (outside 10-3000)"),
        (15, "implausible creatinine 9.9 umol/L (outside 10-3000)"),
        (16, "implausible creatinine 3000.3 umol/L (outside 10-3000)"),
        (17, "value is not a number: nan"),
    ]


def test_reject_lines_count_the_header_as_line_1(tmp_path: Path) -> None:
    con = connect()
    path = write(tmp_path, "c.csv", "patient_id,time,value,unit\nx,2024-01-01T00:00,1,furlong\n")
    load_creatinine(con, path)
    assert con.execute(f"SELECT file, line FROM {REJECTS_TABLE}").fetchall() == [(str(path), 2)]


def test_quoted_newline_reports_the_starting_line(tmp_path: Path) -> None:
    text = 'patient_id,time,value,unit\n"a\nb",2024-01-01T00:00,1,bad\nc,bad,1,mg/dL\n'
    con = connect()
    load_creatinine(con, write(tmp_path, "c.csv", text))
    assert [line for line, _ in rejects(con)] == [2, 4]


def test_header_is_case_insensitive_and_extra_columns_ignored(tmp_path: Path) -> None:
    text = "Unit,Value,extra,Time,PATIENT_ID\nmg/dL,1.0,zzz,2024-01-01T10:00:00,p\n"
    con = connect()
    load = load_creatinine(con, write(tmp_path, "c.csv", text))
    assert load.accepted == 1
    assert con.execute("SELECT scr FROM creat").fetchone() == (88.4,)


def test_missing_column_or_empty_file_is_a_file_error(tmp_path: Path) -> None:
    con = connect()
    with pytest.raises(AkiInputError, match="missing column"):
        load_creatinine(con, write(tmp_path, "c.csv", "patient_id,time,value\n"))
    with pytest.raises(AkiInputError, match="empty"):
        load_creatinine(con, write(tmp_path, "e.csv", ""))
    with pytest.raises(AkiInputError, match="empty"):
        load_creatinine(con, write(tmp_path, "bom.csv", "\ufeff"))


def test_a_file_that_is_not_utf8_is_a_file_error_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes(b"patient_id,time,value,unit\na,2024-01-01T00:00:00,1,mg/dL\n"
                     b"b,2024-01-01T00:00:00,1,\xb5mol/L\n")  # fmt: skip
    with pytest.raises(AkiInputError, match=r"latin1.csv, line 3: not UTF-8 text \(byte 0xb5\)"):
        load_creatinine(connect(), path)


def test_urine_rows(tmp_path: Path) -> None:
    text = """patient_id,start,end,volume_ml
a,2024-01-01T00:00:00,2024-01-01T01:00:00,0
a,2024-01-01T01:00:00,2024-01-01T01:00:00,10
a,2024-01-01T02:00:00,2024-01-01T01:00:00,10
a,2024-01-01T02:00:00,2024-01-01T03:00:00,-5
a,2024-01-01T03:00:00,2024-01-01T04:00:00,
a,2024-01-01T03:00:00,2024-01-01T04:00:00,12000
a,2024-01-01T03:00:00,soon,50
"""
    con = connect()
    load = load_urine(con, write(tmp_path, "u.csv", text))
    assert (load.read, load.accepted, load.rejected) == (7, 1, 6)
    assert con.execute('SELECT uid, start, "end", volume_ml FROM urine').fetchall() == [
        (2, datetime(2024, 1, 1, 0), datetime(2024, 1, 1, 1), 0.0)  # charted 0 mL is kept
    ]
    assert [r for _, r in rejects(con)] == [
        "end is not after start",
        "end is not after start",
        "negative urine volume: -5",
        "missing volume_ml",
        "implausible urine volume (over 10000 mL): 12000",
        "unparseable end: soon",
    ]


def test_weights_rrt_patients(tmp_path: Path) -> None:
    con = connect()
    w_text = (
        "patient_id,time,weight_kg\na,2024-01-01,70\na,2024-01-02T00:00,0\na,2024-01-02T00:00,abc\n"
    )
    w = load_weights(con, write(tmp_path, "w.csv", w_text))
    assert (w.accepted, w.rejected) == (1, 2)
    assert con.execute("SELECT t, weight_kg FROM weights").fetchall() == [
        (datetime(2024, 1, 1), 70.0)
    ]
    r_text = "patient_id,start\na,2024-01-03T10:00:00+01:00\nb,2024-01-03\n"
    r = load_rrt(con, write(tmp_path, "r.csv", r_text))
    assert (r.accepted, r.rejected) == (1, 1)
    assert con.execute('SELECT start, "end" FROM rrt').fetchall() == [
        (datetime(2024, 1, 3, 9), None)
    ]
    r2_text = "patient_id,start,end\na,2024-01-03T10:00,2024-01-02T10:00\na,2024-01-03T10:00,\n"
    r2 = load_rrt(con, write(tmp_path, "r2.csv", r2_text), table="rrt2")
    assert (r2.accepted, r2.rejected) == (1, 1)
    p_text = (
        "patient_id,birth_date,sex\na,1950-02-03,F\nb,1960-01-01,x\n"
        "a,1951-01-01,male\nc,soon,male\n"
    )
    p = load_patients(con, write(tmp_path, "p.csv", p_text))
    assert (p.accepted, p.rejected) == (1, 3)
    assert con.execute("SELECT * FROM patients").fetchall() == [("a", date(1950, 2, 3), "female")]
    reasons = [x for _, x in rejects(con)]
    assert "implausible weight (outside 1-500 kg): 0" in reasons
    assert "start has no time of day: 2024-01-03" in reasons
    assert "end is before start" in reasons
    assert "unknown sex: x (use male/female)" in reasons
    assert "duplicate patient_id (first at line 2)" in reasons
    assert "unparseable birth_date: soon" in reasons


# --- the three ways of reading a file give the same tables and rejects ---------------------

HEADERS = {
    "creatinine": "patient_id,time,value,unit",
    "urine": "patient_id,start,end,volume_ml",
    "weights": "patient_id,time,weight_kg",
    "rrt": "patient_id,start,end",
    "patients": "patient_id,birth_date,sex",
}
LOADERS = {
    "creatinine": (load_creatinine, "creat"),
    "urine": (load_urine, "urine"),
    "weights": (load_weights, "weights"),
    "rrt": (load_rrt, "rrt"),
    "patients": (load_patients, "patients"),
}
FIELDS = [
    "a", " b ", "", "  ", "2024-01-01T10:00", "2024-01-01T12:00:00+02:00", "2024-01-02 08:00Z",
    "2024-01-01", "1.2", "80", "-3", "nan", "mg/dL", "umol/L", "µmol/L", "m", "F", "x",
]  # fmt: skip


def load_by(
    way: str, kind: str, path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[object, list[tuple[object, ...]], list[tuple[object, ...]]]:
    """Load ``path`` forcing one way: 'auto', 'lines' (no read_csv) or 'csv' (Python csv and
    TRIM always: the reference)."""
    from trialsieve.kidney import aki_inputs

    loader, table = LOADERS[kind]
    with monkeypatch.context() as m:
        if way == "csv":
            m.setattr(aki_inputs, "_plain_lines", lambda data, path: False)
            m.setattr(aki_inputs, "_needs_trim", lambda data: True)
        elif way == "lines":
            m.setattr(aki_inputs, "_uniform_line_ends", lambda data: False)
        con = connect()
        load = loader(con, path)
    rows = con.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall()
    rej = con.execute(f"SELECT file, line, reason FROM {REJECTS_TABLE} ORDER BY line").fetchall()
    con.close()
    return load, rows, rej


def assert_same_three_ways(kind: str, path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ref = load_by("csv", kind, path, monkeypatch)
    assert load_by("lines", kind, path, monkeypatch) == ref
    assert load_by("auto", kind, path, monkeypatch) == ref


@pytest.mark.parametrize("kind", sorted(HEADERS))
@pytest.mark.parametrize(
    "body",
    [
        "a,2024-01-01T10:00,1.2,mg/dL\nb,2024-01-01,80,umol/L\n",  # clean: read_csv
        "a,2024-01-01T10:00,1.2,mg/dL\r\nb,x,80,umol/L\r\n",  # CRLF
        "a,2024-01-01T10:00,1.2,mg/dL\n\nb,x,80\n  \nc,,,\n",  # blank lines, ragged
        "a,2024-01-01T10:00,1.2,mg/dL,extra\nb,2024-01-01T10:00,1.2,mg/dL",  # too many, no EOL
        '"a\nb",2024-01-01T10:00,1,bad\nc,bad,1,mg/dL\n',  # quoted newline: csv
        # clean but for one thing, which read_csv would not see (typed read ahead dropped)
        "a,2024-01-01T10:00:00Z,1.2,mg/dL\n\nb,2024-01-01T11:00:00Z,x,umol/L\n",  # blank
        "\na,2024-01-01T10:00:00Z,1.2,mg/dL\n",  # blank line right after the header
        "a,2024-01-01T10:00:00Z,1.2,mg/dL\r\n\r\nb,2024-01-01T11:00:00Z,x,umol/L\r\n",
        "a,2024-01-01T10:00:00Z,1.2,mg/dL\nb,2024-01-01T11:00:00Z,9,umol/L\n\n",  # at the end
        "a,2024-01-01T10:00:00Z,1.2,mg/dL,\n",  # trailing comma
        "a,2024-01-01T10:00:00Z,1.2,mg/dL\r\nb,2024-01-01T11:00:00Z,9,umol/L\n",  # mixed ends
        '"a",2024-01-01T10:00:00Z,1.2,mg/dL\n',  # quotes
        "a,2024-01-01T10:00:00Z,1.2, mg/dL\n",  # a space: trimmed
        "a,2024-01-01T10:00:00Z,2024-01-01T11:00:00Z,50\n\nb,2024-01-01T11:00:00Z,x,-1\n",
        '"a",2024-01-01T10:00:00Z,2024-01-01T11:00:00Z,50\n',  # urine-shaped, quotes
    ],
)
def test_three_ways_agree_on_examples(
    kind: str, body: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "f.csv", HEADERS[kind] + "\n" + body)
    assert_same_three_ways(kind, path, monkeypatch)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    kind=st.sampled_from(sorted(HEADERS)),
    ragged=st.booleans(),
    eol=st.sampled_from(["\n", "\r\n"]),
    final_eol=st.booleans(),
    data=st.data(),
)
def test_three_ways_agree_on_generated_files(
    kind: str,
    ragged: bool,
    eol: str,
    final_eol: bool,
    data: st.DataObject,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Files with exactly the header's field count (DuckDB read_csv) or ragged/blank lines."""
    n = HEADERS[kind].count(",") + 1
    sizes = (1, n + 1) if ragged else (n, n)
    line = st.lists(st.sampled_from(FIELDS), min_size=sizes[0], max_size=sizes[1]).map(",".join)
    lines = data.draw(st.lists(line, max_size=8))
    text = eol.join([HEADERS[kind], *lines]) + (eol if final_eol else "")
    path = tmp_path / "g.csv"
    path.write_bytes(text.encode("utf-8"))
    assert_same_three_ways(kind, path, monkeypatch)


def test_which_way_a_file_is_read() -> None:
    from trialsieve.kidney.aki_inputs import (
        _needs_trim,
        _plain_lines,
        _trailing_comma,
        _uniform_line_ends,
    )

    p = Path("c.csv")
    assert _plain_lines(b"h,i\na,b\r\n", p)
    assert not _plain_lines(b'h,i\n"a",b\n', p)  # quotes: Python csv
    assert not _plain_lines(b"h,i\na,b\rc,d\n", p)  # lone CR ends a line for csv
    assert not _plain_lines(b"h,i\na,b\n", Path("c*.csv"))  # a DuckDB glob
    assert _uniform_line_ends(b"h,i\na,b\nc,d")
    assert _uniform_line_ends(b"h,i\r\n\r\na,b\r\n")
    assert not _uniform_line_ends(b"h,i\na,b\r\nc,d\n")  # mixed line ends
    assert _trailing_comma(b"h,i\na,b,\nc,d\n")
    assert _trailing_comma(b"h,i\r\na,b,\r\n")
    assert _trailing_comma(b"h,i\na,b,")
    assert not _trailing_comma(b"h,i\na,b\r\n")
    assert not _needs_trim(b"h,i\na,b\n")
    assert _needs_trim(b"h,i\na ,b\n")
    assert _needs_trim("h,i\na\u3000,b\n".encode())  # DuckDB's TRIM strips U+3000


def test_long_clean_file_keeps_line_numbers(tmp_path: Path) -> None:
    """Many DuckDB vectors: every reject keeps its own line (row order is file order)."""
    bad = {2 + i for i in range(5, 60_000, 997)}
    rows = [
        f"p{i % 300},2024-01-01T10:00:00Z,{-i if i + 2 in bad else 80 + i % 50},umol/L"
        for i in range(60_000)
    ]
    path = write(tmp_path, "c.csv", "patient_id,time,value,unit\n" + "\n".join(rows) + "\n")
    con = connect()
    load = load_creatinine(con, path)
    assert (load.read, load.rejected) == (60_000, len(bad))
    assert rejects(con) == [(n, f"negative creatinine: -{n - 2}") for n in sorted(bad)]
    mismatched = con.execute(
        "SELECT COUNT(*) FROM creat WHERE scr <> 80 + (rid - 2) % 50 "
        "OR patient_id <> 'p' || CAST((rid - 2) % 300 AS VARCHAR)"
    ).fetchone()
    assert mismatched == (0,)


#: times of the canonical shape (read with the cheaper TIMESTAMP cast) and near misses (read
#: through TIMESTAMPTZ, offsets applied): both must give what TIMESTAMPTZ alone gives
_TIME_EDGES = (
    "2024-01-01T00:00:00Z",
    "2024-02-29T23:59:59Z",
    "2024-01-01T24:00:00Z",
    "2023-02-29T10:00:00Z",
    "2024-01-01T10:00:60Z",
    "2024-13-01T10:00:00Z",
    "2024-01-01T10:00:00+02:00",
    "2024-01-01T10:00:00 Z",
    "2024-01-01T10:00:00 +01Z",
    "2024-01-01T10:00:00 BCZ",
    "2024-01-01T10:00:00.5Z",
    "2024-01-01 10:00:00Z",
    "2024-01-01T10:00Z",
    "2024-01-01T10:00:00ZZ",
    "2024-01-01Z",
)


def test_canonical_utc_times_parse_as_with_offsets(tmp_path: Path) -> None:
    rows = "".join(f"a,{t},80,umol/L\n" for t in _TIME_EDGES)
    con = connect()
    load_creatinine(con, write(tmp_path, "c.csv", "patient_id,time,value,unit\n" + rows))
    got = dict(con.execute("SELECT rid, t FROM creat").fetchall())
    why = dict(rejects(con))
    for line, text in enumerate(_TIME_EDGES, start=2):
        want = con.execute(
            "SELECT TRY_CAST(TRY_CAST(? AS TIMESTAMPTZ) AS TIMESTAMP)", [text]
        ).fetchone()
        assert want is not None
        if want[0] is None:
            assert why[line] == f"unparseable time: {text}", text
        elif line in why:  # parsed, but without a time of day
            assert why[line].startswith("time has no time of day"), text
        else:
            assert got[line] == want[0], text
    assert got[2] == datetime(2024, 1, 1) and got[3] == datetime(2024, 2, 29, 23, 59, 59)
    assert got[8] == datetime(2024, 1, 1, 8, 0)  # +02:00 applied


# --- the fast path: a clean file read with its times and numbers parsed by read_csv ---------

#: number texts: read_csv's DOUBLE parse must give what TRY_CAST gives (or fail, so that the
#: file is read as text)
_NUMBER_EDGES = (
    "1.2", "80", ".5", "5.", "+3", "-0", "1e2", "1E2", "1e+2", "-.5e-1", "1e400", "1e-400",
    "1_000", "1__0", "_1", "1_", "0x10", "inf", "-inf", "nan", "NaN", "Infinity", "1.5e",
    "1.2.3", "00012", "0.0000000000000000000001", "123456789012345678901234567890", "1d2",
    "e5", "+.e1", "\u0661\u0662",
)  # fmt: skip


def _load_text_and_fast(
    tmp_path: Path, kind: str, body: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[tuple[object, ...], tuple[object, ...], bool]:
    """(rows, rejects) as the loader reads the file, the same read as text only, and whether
    read_csv parsed the file's typed columns (the fast path's first read; a reject then sends
    the file to the text read)."""
    from trialsieve.kidney import aki_inputs

    path = write(tmp_path, f"{kind}.csv", HEADERS[kind] + "\n" + body)
    loader, table = LOADERS[kind]
    got = []
    fast = False
    for typed in (True, False):
        with monkeypatch.context() as m:
            if not typed:
                m.setattr(aki_inputs, "_TYPED", {})
            con = connect()
            loader(con, path)
            got.append((
                con.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall(),
                con.execute(f"SELECT line, reason FROM {REJECTS_TABLE} ORDER BY line").fetchall(),
            ))  # fmt: skip
            if typed:
                fast = bool(aki_inputs._load_raw(con, path, kind, typed=True).typed)
            con.close()
    return got[0], got[1], fast


def _parses(sql: str, text: str) -> bool:
    con = duckdb.connect()
    return con.execute(f"SELECT {sql} IS NOT NULL", [text]).fetchone() == (True,)


@pytest.mark.parametrize("text", _NUMBER_EDGES)
def test_fast_path_numbers_parse_as_text(
    text: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = f"a,2024-01-01T10:00:00Z,{text},umol/L\n"
    fast_read, text_read, fast = _load_text_and_fast(tmp_path, "creatinine", body, monkeypatch)
    assert fast_read == text_read
    # read_csv parses exactly the texts that TRY_CAST parses
    assert fast == _parses("TRY_CAST(? AS DOUBLE)", text)
    ub = f"a,2024-01-01T10:00:00Z,2024-01-01T11:00:00Z,{text}\n"
    fast_read, text_read, fast = _load_text_and_fast(tmp_path, "urine", ub, monkeypatch)
    assert fast_read == text_read
    assert fast == _parses("TRY_CAST(? AS DOUBLE)", text)


@pytest.mark.parametrize("text", _TIME_EDGES)
def test_fast_path_times_parse_as_text(
    text: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    canonical = _parses("try_strptime(?, '%Y-%m-%dT%H:%M:%SZ')", text)
    body = f"a,{text},80,umol/L\nb,2024-03-01T00:00:00Z,1.1,mg/dL\n"
    fast_read, text_read, fast = _load_text_and_fast(tmp_path, "creatinine", body, monkeypatch)
    assert fast_read == text_read
    assert fast == canonical
    ub = f"a,{text},2024-12-01T00:00:00Z,10\na,2024-01-01T00:00:00Z,{text},10\n"
    fast_read, text_read, fast = _load_text_and_fast(tmp_path, "urine", ub, monkeypatch)
    assert fast_read == text_read
    assert fast == canonical


def test_fast_path_keeps_a_clean_file_and_rereads_one_with_a_reject(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trialsieve.kidney import aki_inputs

    clean = "a,2024-01-01T10:00:00Z,1.2,mg/dL\na,2024-01-02T10:00:00Z,80,umol/L\n"
    (rows, rej), text_read, fast = _load_text_and_fast(tmp_path, "creatinine", clean, monkeypatch)
    assert fast and rej == [] and (rows, rej) == text_read
    assert rows == [
        (2, "a", datetime(2024, 1, 1, 10), pytest.approx(106.08), 1.2, "mg/dL"),
        (3, "a", datetime(2024, 1, 2, 10), 80.0, 80.0, "umol/L"),
    ]
    # every value parses, one is rejected: the reason quotes the text as written
    path = write(
        tmp_path,
        "c.csv",
        HEADERS["creatinine"] + "\n" + clean + "b,2024-01-03T10:00:00Z,1e4,umol/L\n",
    )
    con = connect()
    assert aki_inputs._load_raw(con, path, "creatinine", typed=True).typed == {"time", "value"}
    load = load_creatinine(con, path)
    assert (load.accepted, load.rejected) == (2, 1)
    assert rejects(con) == [(4, "implausible creatinine 10000.0 umol/L (outside 10-3000)")]
    # a blank value reads as NULL on the fast path: rejected and quoted from the text
    path = write(tmp_path, "c2.csv", HEADERS["creatinine"] + "\na,2024-01-01T10:00:00Z,,mg/dL\n")
    con = connect()
    load_creatinine(con, path)
    assert rejects(con) == [(2, "missing value")]
    # values with spaces keep the text path (read_csv would not trim them)
    spaced = write(
        tmp_path, "c3.csv", HEADERS["creatinine"] + "\na ,2024-01-01T10:00:00Z,1,mg/dL\n"
    )
    assert not aki_inputs._load_raw(connect(), spaced, "creatinine", typed=True).typed
    # a blank line: read_csv would skip it, which its record count shows; the file is split
    # into lines instead, so the line numbers stay the file's
    body = "a,2024-01-01T10:00:00Z,1,mg/dL\n\nb,2024-01-01T10:00:00Z,x,mg/dL\n"
    blank = write(tmp_path, "c4.csv", HEADERS["creatinine"] + "\n" + body)
    con = connect()
    assert not aki_inputs._load_raw(con, blank, "creatinine", typed=True).typed
    load = load_creatinine(con, blank)
    assert (load.read, load.accepted) == (2, 1)
    assert [line for line, _ in rejects(con)] == [4]


def test_two_files_of_a_kind_load_into_two_tables(tmp_path: Path) -> None:
    """A clean fast-path file's table reads the file's own rows (kept per table), so a second
    file of the same kind loaded into another table leaves the first as it was."""
    one = write(tmp_path, "c1.csv", HEADERS["creatinine"] + "\na,2024-01-01T10:00:00Z,1.2,mg/dL\n")
    two = write(tmp_path, "c2.csv", HEADERS["creatinine"] + "\nb,2024-01-02T10:00:00Z,80,umol/L\n")
    con = connect()
    load_creatinine(con, one, table="c1")
    load_creatinine(con, two, table="c2")
    assert con.execute("SELECT patient_id, value FROM c1").fetchall() == [("a", 1.2)]
    assert con.execute("SELECT patient_id, value FROM c2").fetchall() == [("b", 80.0)]
    # loading again into the first table replaces its rows, whichever way each load took
    load_creatinine(con, two, table="c1")
    assert con.execute("SELECT patient_id FROM c1").fetchall() == [("b",)]
    bad = write(
        tmp_path,
        "c3.csv",
        HEADERS["creatinine"] + "\nc,2024-01-03T10:00:00Z,1,mg/dL\nd,x,1,mg/dL\n",
    )
    assert load_creatinine(con, bad, table="c1").rejected == 1  # stored checked
    assert con.execute("SELECT patient_id FROM c1").fetchall() == [("c",)]
    load_creatinine(con, one, table="c1")  # clean again: a view over its read
    assert con.execute("SELECT patient_id FROM c1").fetchall() == [("a",)]
