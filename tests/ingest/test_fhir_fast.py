"""The Observation NDJSON fast path gives exactly what the per-record path gives.

Each file is read twice into fresh stores, ``fast_path=True`` and ``fast_path=False``; the events,
the rejects (reasons, files, lines, order) and the summary counts and warnings must be equal.
The fixtures mix clean records (decided by the fast path) with every kind of record it must hand
back (odd dates, units, numbers, value types, nulls, malformed lines...).
"""

from __future__ import annotations

import gzip
import random
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import orjson
import pytest

from trialsieve.ingest import fhir, fhir_fast
from trialsieve.store.writer import IngestSummary, StoreWriter
from trialsieve.units import ANALYTES, conversion

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"


def _read(src: Path, store: Path, *, fast: bool) -> tuple[IngestSummary, list[Any], bytes]:
    writer = StoreWriter(store, "x")
    fhir.read(src, writer, fast_path=fast)
    summary = writer.close()
    con = duckdb.connect()
    events = con.execute(
        f"SELECT * FROM read_parquet('{store}/events/x.parquet') ORDER BY event_id"
    ).fetchall()
    return summary, events, (store / "rejects.jsonl").read_bytes()


def _counts(s: IngestSummary) -> dict[str, tuple[int, int, dict[str, int], int]]:
    return {k: (c.read, c.stored, dict(c.rejected), c.warnings) for k, c in s.by_type.items()}


def _assert_same(src: Path, tmp_path: Path) -> tuple[IngestSummary, list[Any]]:
    fast = _read(src, tmp_path / "fast", fast=True)
    slow = _read(src, tmp_path / "slow", fast=False)
    assert fast[1] == slow[1]
    assert fast[2] == slow[2]
    assert _counts(fast[0]) == _counts(slow[0])
    assert fast[0].balanced()
    con = duckdb.connect()
    # a missing value is NULL, never NaN
    assert con.execute(
        f"SELECT count(*) FROM read_parquet('{tmp_path}/fast/events/x.parquet') WHERE isnan(value)"
    ).fetchone() == (0,)
    return fast[0], fast[1]


def _obs(i: int, **kw: Any) -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": "Observation", "id": f"o{i}", "status": "final",
        "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2024-03-01T08:30:00Z",
        "code": {"coding": [{"system": LOINC, "code": "2160-0", "display": "Creatinine"}]},
        "valueQuantity": {"value": 1.1, "unit": "mg/dL", "system": UCUM, "code": "mg/dL"},
    }  # fmt: skip
    res.update(kw)
    return {k: v for k, v in res.items() if v is not _DROP}


_DROP = object()


def _bp(i: int, sys_q: dict[str, Any], dia_q: dict[str, Any], panel: str = "85354-9") -> Any:
    return _obs(
        i, valueQuantity=_DROP,
        category=[{"coding": [{"code": "vital-signs"}]}],
        code={"coding": [{"system": LOINC, "code": panel}]},
        component=[{"code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
                    "valueQuantity": sys_q},
                   {"code": {"coding": [{"system": LOINC, "code": "8462-4"}]},
                    "valueQuantity": dia_q}],
    )  # fmt: skip


def _cases() -> list[bytes]:
    mmhg = {"value": 120, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"}
    q = {"value": 80, "unit": "umol/L"}
    objs: list[Any] = [
        _obs(1),
        _obs(2, effectiveDateTime="2024-03-01"),
        _obs(3, effectiveDateTime="2024-06-30T23:30:00-02:00"),
        _obs(4, effectiveDateTime="2024-06-30T10:00:00.123Z"),
        _obs(5, effectiveDateTime="2024-06-30T10:00:00.1234+05:30"),
        _obs(6, effectiveDateTime="2024-06-30T10:00:00"),
        _obs(7, effectiveDateTime="2024-06"),
        _obs(8, effectiveDateTime="2023-02-30"),
        _obs(9, effectiveDateTime="2023-02-28T24:00:00Z"),
        _obs(10, effectiveDateTime=_DROP, effectivePeriod={"start": "2024-01-01",
                                                           "end": "2024-01-02"}),
        _obs(11, effectiveDateTime=_DROP),
        _obs(12, valueQuantity={"value": 1.3, "unit": "mg/furlong"}),
        _obs(13, valueQuantity={"value": -80, "unit": "umol/L"}),
        _obs(14, valueQuantity={"value": 95, "unit": "umol/L"},
             subject={"reference": "Patient/ghost"}),
        _obs(15, valueQuantity={"value": 1.5}),
        _obs(16, valueQuantity={"value": "1.3", "unit": "mg/dL"}),
        _obs(17, valueQuantity={"value": 1e2, "unit": "umol/L"}),
        _obs(18, valueQuantity={"value": 123456789.125, "unit": "umol/L"}),
        _obs(19, valueQuantity={"unit": "umol/L"}),
        _obs(20, valueQuantity={"value": 48, "unit": "mmol/mol"},
             code={"coding": [{"system": LOINC, "code": "4548-4"}]}),
        _obs(21, valueQuantity={"value": 7.1, "unit": "%"},
             code={"coding": [{"system": "urn:oid:9.9", "code": "x"},
                              {"system": LOINC, "code": "4548-4", "display": "HbA1c"}]}),
        _obs(22, code={"coding": [{"system": LOINC, "code": "39156-5"}], "text": "BMI"},
             valueQuantity={"value": 27.3, "unit": "kg/m2"},
             referenceRange=[{"low": {"value": 18.5}, "high": {"value": 25}}]),
        _obs(23, referenceRange=[{"low": {"value": 0.6, "unit": "mg/dL"},
                                  "high": {"value": 1.2, "unit": "mg/dL"}}]),
        _obs(24, referenceRange=[{"low": {"value": 0.6, "unit": "mg/furlong"}}]),
        _obs(25, referenceRange=[{"text": "normal"}]),
        _obs(26, referenceRange={"low": {"value": 1}}),
        _obs(27, valueQuantity=_DROP, valueString="positive"),
        _obs(28, valueQuantity=_DROP, valueCodeableConcept={"coding": [{"display": "neg"}]}),
        _obs(29, valueQuantity=_DROP, valueInteger=3),
        _obs(30, valueQuantity=_DROP, valueBoolean=True),
        _obs(31, valueQuantity=_DROP, dataAbsentReason={"text": "not done"}),
        _obs(32, status="entered-in-error"),
        _obs(33, status=None),
        _obs(34, status=_DROP),
        _obs(35, id=_DROP),
        _obs(36, id=""),
        _obs(37, subject={"reference": "urn:uuid:0b7e3c47-1"}),
        _obs(38, subject={"reference": "https://fhir.example/Patient/p1"}),
        _obs(39, subject=_DROP, patient={"reference": "Patient/p1"}),
        _obs(40, subject={"display": "no reference"}),
        _obs(41, subject={"reference": 7}),
        _obs(42, category=[{"coding": [{"code": "laboratory"}]}],
             code={"coding": [{"system": LOINC, "code": "1-8"}]},
             valueQuantity={"value": 2, "unit": "U"}),
        _obs(43, category=[{"coding": [{}]}, {"coding": [{"code": "vital-signs"}]}],
             code={"coding": [{"system": LOINC, "code": "29463-7"}]},
             valueQuantity={"value": 180, "unit": "[lb_av]", "system": UCUM, "code": "[lb_av]"}),
        _bp(44, mmhg, dict(mmhg, value=80)),
        _bp(45, {"value": 111.67607750361314, "system": UCUM},
            {"value": 74.84257431892625, "system": UCUM}, panel="55284-4"),
        _bp(46, {"value": 130}, {"value": 85}, panel="9279-1"),
        _obs(47, valueQuantity=_DROP, component=[
            {"code": {"coding": [{"system": LOINC, "code": "8480-6"}]}, "valueQuantity": mmhg},
            {"code": {"coding": [{"system": LOINC, "code": "x"}]}, "valueString": "ok"}]),
        _obs(48, component=[]),
        _obs(49, valueQuantity=_DROP, component=[{"code": {"text": "no value"}}]),
        _obs(50, code={"coding": [{"system": LOINC, "code": "9187-6"}]},
             valueQuantity={"value": 1.2, "unit": "L"}),
        _obs(51, valueQuantity=q, extension=[{"url": "x", "valueString": "y"}]),
        _obs(52, resourceType="Patient"),
        _obs(53, resourceType="Claim"),
        _obs(54, valueQuantity={"value": 0.0001, "unit": "mmol/L"}),
        _obs(55, valueQuantity={"value": 2e-05, "unit": "mmol/L"}),
        _obs(1, valueQuantity={"value": 2.2, "unit": "mg/dL"}),  # same id again: the last wins
        _obs(56, code={"coding": [{"system": LOINC, "code": "42595-9"}]},
             valueQuantity={"value": 3.2, "unit": "log10IU/mL"}),
        _obs(57, code="2160-0"),
        _obs(58, valueQuantity="1.2 mg/dL"),
        _obs(59, effectiveDateTime=20240301),
    ]  # fmt: skip
    lines = [orjson.dumps(o) for o in objs]
    lines[50] = lines[50].replace(b'"status":"final",', b'"status": "final" ,')
    lines += [
        b"",
        b"   \t",
        b'{"resourceType":"Observation","id":"broken", "status":',
        b"[1, 2]",
        b'"just a string"',
        b'{"resourceType":"Observation","id":"dup-key","id":"other","status":"final"}',
        _obs(60).__repr__().encode(),  # not JSON
        orjson.dumps(_obs(61)).replace(b"1.1", b"1.10"),
        orjson.dumps(_obs(62)).replace(b"1.1", b"11E-1"),
        orjson.dumps(_obs(63)).replace(b'"p1"', b'"p\\u00e9"'),
        # strings with escapes, non-ASCII or of another JSON type in id / status / reference
        orjson.dumps(_obs(65)).replace(b'"o65"', b'"o\\"65"'),
        orjson.dumps(_obs(66)).replace(b'"o66"', b'"o\\u0036\\u0036"'),
        orjson.dumps(_obs(67, id="o67\u00e9")),
        orjson.dumps(_obs(68)).replace(b'"final"', b'"fin\\u0061l"'),
        orjson.dumps(_obs(69, status="entered-in-error")).replace(b"-error", b"-err\\u006fr"),
        orjson.dumps(_obs(72, subject={"reference": "Patient/p\\1"})),
        orjson.dumps(_obs(73)).replace(b'"Patient/p1"', b'"Patient\\/p1"'),
        orjson.dumps(_obs(74, id='"')),
        # a status that is not a code string: rejected with a reason, the run goes on
        orjson.dumps(_obs(75, status=5)),
        orjson.dumps(_obs(76, status=["final"])),
        orjson.dumps(_obs(77, status={"code": "final"})),
        # trailing commas: DuckDB's JSON parser accepts them, orjson (and JSON) does not
        orjson.dumps(_obs(78))[:-1] + b",}",
        orjson.dumps(_obs(79)).replace(b"}]}", b"}, ]}"),
        orjson.dumps(_obs(80, note=[{"text": "a,]"}])),  # in a string: handed back, stored
        # nesting: orjson's limit is 1,024 levels, DuckDB's parser has none
        orjson.dumps(_obs(81))[:-1] + b',"extension":' + b"[" * 1024 + b"]" * 1024 + b"}",
        orjson.dumps(_obs(82))[:-1] + b',"extension":' + b"[" * 1023 + b"]" * 1023 + b"}",
        orjson.dumps(_obs(83, extension=[[[]]] * 400)),  # many brackets, shallow: stored
        # a comparator: a bound, stored as text by the per-record code
        orjson.dumps(_obs(84, valueQuantity={"value": 0.3, "comparator": "<", "unit": "mg/dL"})),
        orjson.dumps(
            _bp(
                85, {"value": 300, "comparator": ">", "unit": "mmHg"}, {"value": 80, "unit": "mmHg"}
            )
        ),
    ]
    return lines


def _write(folder: Path, lines: list[bytes], *, gz: bool = False, end: bytes = b"\n") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    pats = [{"resourceType": "Patient", "id": p, "birthDate": "1960-01-01", "gender": "female"}
            for p in ("p1", "0b7e3c47-1", "pé")]  # fmt: skip
    (folder / "Patient.000.ndjson").write_bytes(b"\n".join(map(orjson.dumps, pats)) + b"\n")
    data = b"\n".join(lines) + end
    if gz:
        with gzip.open(folder / "Observation.000.ndjson.gz", "wb") as f:
            f.write(data)
    else:
        (folder / "Observation.000.ndjson").write_bytes(data)


@pytest.mark.parametrize("hash_join", [True, False])
def test_edge_cases_same_as_per_record_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hash_join: bool
) -> None:
    monkeypatch.setattr(fhir_fast, "USE_HASH_JOIN", hash_join)
    _write(tmp_path / "src", _cases())
    summary, events = _assert_same(tmp_path / "src", tmp_path)
    obs = summary.by_type["Observation"]
    assert obs.rejected_total > 10 and obs.stored > 30
    assert obs.warnings == 1  # the unitless 55284-4 panel (o45)
    # the fast path decided the clean records itself (it hands back only what it cannot decide)
    table, _ = fhir_fast._lines(b"\n".join(_cases()) + b"\n")
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    assert fhir_fast._run_sql(con, table)[1] > 20
    rejects = (tmp_path / "fast" / "rejects.jsonl").read_bytes().splitlines()
    # locator "line N (Observation/id)": the line and the resource
    reasons = {r["locator"].split("(")[-1][:-1]: r["reason"] for r in map(orjson.loads, rejects)}
    assert {k: v for k, v in reasons.items() if "status" in v and "error" not in v} == {
        "Observation/o75": "status is not a code string: int",
        "Observation/o76": "status is not a code string: list",
        "Observation/o77": "status is not a code string: dict",
    }


@pytest.mark.parametrize("chunk", [fhir_fast.CHUNK_BYTES, 1000, 7])
def test_gzip_chunks_and_no_final_newline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    """Files are read in chunks of whole lines; line numbers run on across chunks."""
    monkeypatch.setattr(fhir_fast, "CHUNK_BYTES", chunk)
    _write(tmp_path / "src", _cases(), gz=True, end=b"")
    _assert_same(tmp_path / "src", tmp_path)


def test_truncated_gzip_keeps_the_complete_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fhir_fast, "CHUNK_BYTES", 2000)
    _write(tmp_path / "src", _random_lines(random.Random(4), 400), gz=True)
    gz = tmp_path / "src" / "Observation.000.ndjson.gz"
    gz.write_bytes(gz.read_bytes()[: gz.stat().st_size // 2])
    summary, _, rejects = _read(tmp_path / "src", tmp_path / "store", fast=True)
    assert summary.balanced()
    last = orjson.loads(rejects.splitlines()[-1])
    assert last["reason"].startswith("unreadable file") and last["locator"].startswith("after line")
    assert 0 < summary.by_type["Observation"].stored < 400


def test_a_line_that_is_not_utf8(tmp_path: Path) -> None:
    """Its chunk goes the per-record way: that line is rejected, the others stored."""
    lines = [orjson.dumps(_obs(1)), "é".encode("latin-1") + orjson.dumps(_obs(2))]
    _write(tmp_path / "src", [*lines, orjson.dumps(_obs(3))])
    summary, _ = _assert_same(tmp_path / "src", tmp_path)
    assert summary.by_type["Observation"].stored == 2
    assert summary.by_type["Observation"].rejected_total == 1


def test_corrupt_fixture_same_as_per_record_path(tmp_path: Path) -> None:
    _assert_same(FIXTURES / "fhir_corrupt", tmp_path)


def _random_lines(rng: random.Random, n: int) -> list[bytes]:
    labs = [
        ("2160-0", ["mg/dL", "umol/L", "mg/L", "mmol/L"], 0.1, 12.0),
        ("4548-4", ["%", "mmol/mol"], 3.0, 120.0),
        ("718-7", ["g/dL", "g/L", "mmol/L"], 5, 200),
        ("33914-3", ["mL/min/{1.73_m2}", "mL/min"], 1, 140),
        ("2823-3", ["mmol/L", "meq/L"], 1, 9),
        ("14959-1", ["mg/g", "mg/mmol"], 0, 3000),
        ("8310-5", ["Cel", "[degF]"], 30, 105),
    ]
    out = []
    for i in range(n):
        code, units, lo, hi = rng.choice(labs)
        unit = rng.choice(units)
        value: Any = rng.uniform(lo, hi)
        value = rng.choice([value, round(value, 2), round(value), int(value * 1000) / 1000])
        t = (f"20{rng.randint(10, 30)}-{rng.randint(1, 12):02d}-{rng.randint(1, 31):02d}"
             + rng.choice(["", "T08:15:00Z", "T23:59:59.5+01:00", "T00:00:00-05:00"]))  # fmt: skip
        qty = {"value": value, "unit": unit, "system": UCUM, "code": unit}
        res = _obs(i, effectiveDateTime=t, valueQuantity=qty,
                   code={"coding": [{"system": LOINC, "code": code}]})  # fmt: skip
        if i % 7 == 0:
            res["referenceRange"] = [{"low": {"value": lo}, "high": {"value": hi}}]
        if i % 11 == 0:
            res = _bp(i, {"value": rng.randint(60, 340), "unit": "mmHg"},
                      {"value": rng.randint(2, 140), "unit": "mm[Hg]"})  # fmt: skip
        out.append(orjson.dumps(res))
    return out


@pytest.mark.parametrize("seed", [1, 2])
def test_random_labs_same_as_per_record_path(tmp_path: Path, seed: int) -> None:
    _write(tmp_path / "src", _random_lines(random.Random(seed), 3000))
    summary, _ = _assert_same(tmp_path / "src", tmp_path)
    obs = summary.by_type["Observation"]
    assert obs.read == 3000 and obs.rejected_total > 0  # impossible dates, implausible values


def test_fast_path_decides_the_common_shapes(tmp_path: Path) -> None:
    """Every record the per-record path stores is decided in SQL; only rejects are handed back."""
    lines = _random_lines(random.Random(3), 500)
    table, _ = fhir_fast._lines(b"\n".join(lines) + b"\n")
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    _, n_fast, back = fhir_fast._run_sql(con, table)
    _write(tmp_path / "src", lines)
    summary, _, rejects = _read(tmp_path / "src", tmp_path / "store", fast=False)
    rejected_lines = sorted(
        int(r["locator"].split()[1]) for r in map(orjson.loads, rejects.splitlines())
    )
    assert 0 < len(rejected_lines) < 150
    assert back == rejected_lines
    assert n_fast == 500 - len(rejected_lines) == summary.by_type["Observation"].stored


def test_vectorisedconversions_equal_scalar_ones() -> None:
    rng = np.random.default_rng(5)
    values = np.concatenate([rng.uniform(0, 200, 500), rng.uniform(0, 5, 500), [0.0, 1.0, 7.5]])
    for name, analyte in ANALYTES.items():
        for unit in analyte.factors:
            conv = conversion(name, unit)
            got = fhir_fast.convert_many(conv, values)
            want = [v * conv if isinstance(conv, float) else conv(float(v)) for v in values]
            assert got.tolist() == want, (name, unit)
