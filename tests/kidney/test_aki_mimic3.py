"""The AKI engine on the real MIMIC-III demo creatinine series, against a naive reference.

The reference below is written independently of :mod:`trialsieve.kidney.aki`: plain Python loops
over each patient's results, exact decimal arithmetic (``Decimal``, no floating-point tolerance),
the rules of issue 2 §3 read literally (KDIGO 2012 Table 2; NHS England PSA 2014). The MIMIC
extraction is also independent: :mod:`csv` + :mod:`gzip` here, DuckDB ``read_csv`` for the engine.

Data: ``../shared/data/mimic3_demo`` (MIMIC-III Clinical Database Demo v1.4, ODbL).
Creatinine = LABEVENTS ITEMID 50912 (mg/dL, D_LABITEMS LOINC 2160-0); LABEVENTS has HADM_ID only,
joined to ``admissions_pyhealth.csv.gz`` for SUBJECT_ID; rows without HADM_ID (outpatient) cannot be
attributed and are left out, as are non-numeric values ("LESS THAN 0.4") and values outside the
plausibility range the CLI uses (10-3000 µmol/L: the demo has 0.0 and 138 mg/dL).
"""

from __future__ import annotations

import csv
import gzip
import statistics
from collections import defaultdict
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path

import duckdb
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from trialsieve.kidney.aki import stage_creatinine

FACTOR = Decimal("88.4")
H48 = timedelta(hours=48)
D7 = timedelta(days=7)
D365 = timedelta(days=365)

Series = list[tuple[datetime, Decimal]]


# --- the naive reference ------------------------------------------------------------------


def naive_kdigo(series: Series, i: int) -> int:
    """KDIGO stage of result ``i`` of one patient's series (any order), exact decimals."""
    t, c = series[i]
    w48 = [v for s, v in series if t - H48 <= s < t]
    w7 = [v for s, v in series if t - D7 <= s < t]
    w8 = [v for s, v in series if t - D365 <= s < t - D7]
    absolute = bool(w48) and c - min(w48) >= Decimal("26.5")
    base = min(w7) if w7 else (statistics.median(w8) if w8 else None)
    ratio_stage = 0
    if base is not None:
        for k, st_ in ((Decimal("1.5"), 1), (Decimal("2.0"), 2), (Decimal("3.0"), 3)):
            if c >= k * base:
                ratio_stage = st_
    stage = max(1 if absolute else 0, ratio_stage)
    if c >= Decimal("353.6") and (absolute or ratio_stage >= 1):
        stage = 3
    return stage


def naive_nhs(series: Series, i: int) -> int:
    """NHS England stage of result ``i``, exact decimals."""
    t, c = series[i]
    if not [v for s, v in series if t - D365 <= s < t]:
        return 0
    w7 = [v for s, v in series if t - D7 <= s < t]
    w8 = [v for s, v in series if t - D365 <= s < t - D7]
    refs = ([min(w7)] if w7 else []) + ([statistics.median(w8)] if w8 else [])

    def ratio_at_least(k: str) -> bool:
        return any(c >= Decimal(k) * rv for rv in refs)

    if ratio_at_least("1.5"):
        if ratio_at_least("3") or c > Decimal("354"):
            return 3
        return 2 if ratio_at_least("2") else 1
    w48 = [v for s, v in series if t - H48 <= s < t]
    if w48 and c - min(w48) > Decimal("26"):
        return 1
    return 0


# --- MIMIC-III demo --------------------------------------------------------------------------


def read_mimic_python(folder: Path) -> dict[str, Series]:
    subject_of: dict[str, str] = {}
    with gzip.open(folder / "admissions_pyhealth.csv.gz", "rt", newline="") as fh:
        for row in csv.DictReader(fh):
            subject_of[row["hadm_id"]] = row["subject_id"]
    out: dict[str, Series] = defaultdict(list)
    with (folder / "LABEVENTS_trimmed_from_gehealthcare.csv").open(newline="") as fh:
        for row in csv.DictReader(fh):
            if row["ITEMID"] != "50912" or row["HADM_ID"] not in subject_of:
                continue
            try:
                umol = Decimal(row["VALUE"].strip()) * FACTOR
            except InvalidOperation:
                continue
            if not Decimal(10) <= umol <= Decimal(3000):
                continue
            t = datetime.fromisoformat(row["CHARTTIME"])
            out[subject_of[row["HADM_ID"]]].append((t, umol))
    return out


def engine_mimic(con: duckdb.DuckDBPyConnection, folder: Path) -> None:
    lab = str(folder / "LABEVENTS_trimmed_from_gehealthcare.csv")
    adm = str(folder / "admissions_pyhealth.csv.gz")
    con.execute(
        f"""CREATE TABLE creat AS
        SELECT ROW_NUMBER() OVER () AS rid, patient_id, t, scr FROM (
          SELECT a.subject_id AS patient_id, CAST(l.CHARTTIME AS TIMESTAMP) AS t,
                 TRY_CAST(l.VALUE AS DOUBLE) * 88.4 AS scr
          FROM read_csv('{lab}', all_varchar = true) l
          JOIN read_csv('{adm}', all_varchar = true) a ON a.hadm_id = l.HADM_ID
          WHERE l.ITEMID = '50912'
        ) WHERE scr BETWEEN 10 AND 3000"""
    )


def test_mimic3_demo_kdigo_count_matches_naive_reference(shared_data: Path) -> None:
    folder = shared_data / "mimic3_demo"
    con = duckdb.connect()
    con.execute("SET TimeZone='UTC'")
    engine_mimic(con, folder)
    staged = stage_creatinine(con, "creat")
    rows = staged.select("patient_id, t, scr, kdigo_stage, nhs_stage").fetchall()

    ref = read_mimic_python(folder)
    assert len(rows) == sum(len(s) for s in ref.values()) > 1500

    # per-patient maximum, both ways
    ref_max = {p: max(naive_kdigo(s, i) for i in range(len(s))) for p, s in ref.items()}
    ref_count = sum(1 for m in ref_max.values() if m >= 1)
    row = con.execute(
        "SELECT COUNT(*) FROM (SELECT patient_id FROM staged GROUP BY patient_id "
        "HAVING MAX(kdigo_stage) >= 1)"
    ).fetchone()
    assert row is not None
    engine_count = int(row[0])
    print(f"\nMIMIC-III demo: patients with KDIGO stage >= 1: engine {engine_count}, "
          f"naive reference {ref_count} (of {len(ref)} patients with creatinine)")  # fmt: skip
    assert engine_count == ref_count
    assert 0 < engine_count < len(ref)

    # and every single result, KDIGO and NHS, to the exact stage
    ref_rows = sorted(
        (p, t, naive_kdigo(s, i), naive_nhs(s, i))
        for p, s in ref.items()
        for i, (t, _) in enumerate(s)
    )
    eng_rows = sorted((p, t, k, n) for p, t, _, k, n in rows)
    assert eng_rows == ref_rows


# --- random series against the reference ---------------------------------------------------

_T0 = datetime(2030, 1, 1)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b"]),
            st.integers(min_value=0, max_value=400 * 24),  # hours over 400 days
            st.integers(min_value=3, max_value=60),  # tenths of mg/dL
        ),
        min_size=1,
        max_size=60,
    ).map(lambda xs: [(p, h // 6 * 6 if h % 5 == 0 else h, v) for p, h, v in xs])
)
def test_random_series_match_the_reference(series: list[tuple[str, int, int]]) -> None:
    con = duckdb.connect()
    con.register(
        "c_in",
        pa.table(
            {
                "rid": pa.array(range(len(series)), type=pa.int64()),
                "patient_id": [p for p, _, _ in series],
                "t": pa.array(
                    [_T0 + timedelta(hours=h) for _, h, _ in series], type=pa.timestamp("us")
                ),  # fmt: skip
                "scr": [float(Decimal(v) / 10 * FACTOR) for _, _, v in series],
            }
        ),
    )
    rel = stage_creatinine(con, "c_in")
    got = [(r[0], r[1]) for r in rel.select("kdigo_stage, nhs_stage").fetchall()]
    by_patient: dict[str, Series] = defaultdict(list)
    for p, h, v in series:
        by_patient[p].append((_T0 + timedelta(hours=h), Decimal(v) / 10 * FACTOR))
    pos: dict[str, int] = defaultdict(int)
    expected = []
    for p, _, _ in series:
        i = pos[p]
        pos[p] += 1
        expected.append((naive_kdigo(by_patient[p], i), naive_nhs(by_patient[p], i)))
    assert got == expected
