"""The bundled demo cohort: deterministic, complete, standard codes, canonical units."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from trialsieve import codes
from trialsieve.demo.cohort import (
    ARCHETYPES,
    DEMO_AS_OF,
    build_demo_store,
    generate,
    scr_for_egfr,
)
from trialsieve.kidney.creatinine import UMOL_PER_MGDL
from trialsieve.kidney.egfr import egfr
from trialsieve.store import open_store
from trialsieve.units import canonical_unit

N = 120


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("demo") / "store"
    summary = build_demo_store(path, n_patients=N)
    assert summary.balanced() and summary.rejected == 0
    assert summary.patients_in_store == N
    return path


def _con(store: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    open_store(store, con)
    return con


def _sorted_events(store: Path) -> pa.Table:
    t = pq.read_table(store / "events" / "demo.parquet")
    return t.sort_by([("event_id", "ascending")])


def test_same_seed_identical_store(store: Path, tmp_path: Path):
    again = tmp_path / "again"
    build_demo_store(again, n_patients=N)
    assert _sorted_events(again).equals(_sorted_events(store))
    assert pq.read_table(again / "patients.parquet").equals(
        pq.read_table(store / "patients.parquet")
    )
    other = tmp_path / "other"
    build_demo_store(other, n_patients=N, seed=7)
    assert not _sorted_events(other).equals(_sorted_events(store))


def test_every_archetype_present_first_and_counts(store: Path):
    _, _, archetype = generate(N)
    assert len(archetype) == N
    names = [archetype[f"demo-p{i:04d}"] for i in range(1, len(ARCHETYPES) + 1)]
    assert names == [a.name for a in ARCHETYPES]
    con = _con(store)
    assert con.execute("SELECT count(*), count(DISTINCT patient_id) FROM patients").fetchone() == (
        N,
        N,
    )
    # every patient has events except none; every event belongs to a stored patient
    orphans = con.execute(
        "SELECT count(*) FROM events WHERE patient_id NOT IN (SELECT patient_id FROM patients)"
    ).fetchone()
    assert orphans == (0,)


def test_birth_dates_known_except_deliberate_unknowns(store: Path):
    _, _, archetype = generate(N)
    unknown_arch = {a.name for a in ARCHETYPES if a.unknown_birth_date}
    con = _con(store)
    rows = con.execute("SELECT patient_id, birth_date, sex FROM patients").fetchall()
    for pid, birth, sex in rows:
        assert (birth is None) == (archetype[pid] in unknown_arch), pid
        assert sex in ("male", "female")
    assert any(b is None for _, b, _ in rows)


def test_times_before_as_of_except_running_drugs(store: Path):
    con = _con(store)
    late = con.execute("SELECT count(*) FROM events WHERE start_time > ?", [DEMO_AS_OF]).fetchone()
    assert late == (0,)


def test_standard_codes_and_canonical_units(store: Path):
    con = _con(store)
    systems = dict(
        con.execute("SELECT kind, list(DISTINCT code_system) FROM events GROUP BY kind").fetchall()
    )
    assert systems["condition"] == [codes.ICD10CM]
    assert set(systems["procedure"]) <= {codes.CPT, codes.ICD10PCS}
    assert systems["medication"] == [codes.ATC]
    for kind in ("lab", "vital", "output"):
        assert systems[kind] == [codes.LOINC]
    icd = [r[0] for r in con.execute(
        "SELECT DISTINCT code FROM events WHERE kind = 'condition'").fetchall()]  # fmt: skip
    assert all(re.fullmatch(r"[A-Z]\d{2}(\.[0-9A-Z]{1,4})?", c) for c in icd), icd
    atc = [r[0] for r in con.execute(
        "SELECT DISTINCT code FROM events WHERE kind = 'medication'").fetchall()]  # fmt: skip
    assert all(re.fullmatch(r"[A-Z]\d{2}[A-Z]{2}\d{2}", c) for c in atc), atc
    rows = con.execute(
        "SELECT DISTINCT code_system, code, analyte, unit FROM events WHERE value IS NOT NULL"
    ).fetchall()
    for system, code, analyte, unit in rows:
        assert codes.analyte_for_code(system, code) == analyte
        assert unit == canonical_unit(analyte)


def test_scr_for_egfr_inverts_ckd_epi_2021():
    for target, age, female in ((45.0, 60.0, True), (20.0, 70.0, False), (90.0, 30.0, False)):
        scr = scr_for_egfr(target, age, female)
        got = float(egfr("ckd-epi-2021", scr / UMOL_PER_MGDL, age, female)[()])
        assert got == pytest.approx(target, abs=0.1)


def test_clinical_pictures(store: Path):
    _, _, archetype = generate(N)
    by_name = {}
    for pid, a in archetype.items():
        by_name.setdefault(a, pid)
    con = _con(store)

    def series(pid: str, analyte: str) -> list[float]:
        return [r[0] for r in con.execute(
            "SELECT value FROM events WHERE patient_id = ? AND analyte = ? ORDER BY start_time",
            [pid, analyte]).fetchall()]  # fmt: skip

    severe = series(by_name["aki-severe"], "creatinine")
    assert severe[-1] / min(severe[-5:]) > 2.0  # more than two-fold within the admission
    mild = series(by_name["aki-mild"], "creatinine")
    assert 1.4 < mild[-1] / min(mild[-4:]) < 1.6
    assert series(by_name["aki-no-baseline"], "creatinine").__len__() == 5
    assert series(by_name["aki-missing-labs"], "platelets") == []
    oliguric_urine = series(by_name["aki-oliguric"], "urine_volume")
    assert len(oliguric_urine) == 24
    dkd = by_name["dkd"]
    assert min(series(dkd, "urine_protein_24h")) >= 3.5
    assert series(dkd, "uacr")[-1] > 1000
    assert series(by_name["dkd-hba1c-9.0"], "hba1c") == [9.0]
    assert series(by_name["dkd-missing-hba1c"], "hba1c") == []
    pred = con.execute(
        "SELECT date_diff('day', start_time, end_time) FROM events "
        "WHERE patient_id = ? AND code = 'H02AB07'",
        [by_name["aki-prednisone-8d"]],
    ).fetchall()
    assert pred == [(8,)]


# codes that must fall in some concept set of the bundled protocols (one per exclusion archetype)
EXPECTED_IN_CONCEPT_SETS = [
    (codes.ICD10CM, "C34.90"), (codes.ICD10CM, "C18.7"), (codes.ICD10CM, "Z94.0"),
    (codes.ICD10CM, "B18.1"), (codes.ICD10CM, "B18.2"), (codes.ICD10CM, "B20"),
    (codes.ICD10CM, "A15.0"), (codes.ICD10CM, "I63.9"), (codes.ICD10CM, "I61.9"),
    (codes.ICD10CM, "Z33.1"), (codes.ICD10CM, "O09.90"), (codes.ICD10CM, "N05.9"),
    (codes.ICD10CM, "M32.14"),
    (codes.ICD10CM, "M31.31"), (codes.ICD10CM, "N13.9"), (codes.ICD10CM, "K72.10"),
    (codes.ICD10CM, "I48.0"), (codes.ICD10CM, "Q61.2"), (codes.ICD10CM, "I26.99"),
    (codes.ICD10CM, "E11.22"), (codes.ICD10CM, "I12.9"), (codes.ICD10CM, "N02.8"),
    (codes.ICD10CM, "I47.2"), (codes.ICD10CM, "Z94.84"), (codes.ICD10CM, "Z85.3"),
    (codes.ICD10CM, "I20.0"), (codes.ICD10CM, "Q21.1"), (codes.ICD10CM, "I63.81"),
    (codes.ICD10CM, "J18.9"), (codes.ICD10CM, "F11.20"), (codes.ICD10CM, "F32.9"),
    (codes.ICD10CM, "D68.9"), (codes.ICD10CM, "E10.22"), (codes.ICD10CM, "E11.65"),
    (codes.CPT, "90935"), (codes.ICD10PCS, "5A1D70Z"), (codes.ICD10PCS, "5A1955Z"),
    (codes.ICD10PCS, "30233N1"), (codes.CPT, "50200"),
    (codes.ATC, "H02AB06"), (codes.ATC, "H02AB07"), (codes.ATC, "L04AD02"),
    (codes.ATC, "L04AA06"), (codes.ATC, "J01DD04"),
]  # fmt: skip


def test_codes_fall_in_protocol_concept_sets():
    loader = pytest.importorskip("trialsieve.protocols.loader")
    concepts = pytest.importorskip("trialsieve.screen.concepts")
    protocols = loader.load_bundled()
    if not protocols:
        pytest.skip("no bundled protocol files yet")
    con = duckdb.connect()
    con.execute("CREATE TABLE e (code_system VARCHAR, code VARCHAR, analyte VARCHAR)")
    con.executemany("INSERT INTO e VALUES (?, ?, NULL)", EXPECTED_IN_CONCEPT_SETS)
    matched: set[tuple[str, str]] = set()
    for p in protocols:
        for cs in p.concept_sets.values():
            pred = concepts.concept_predicate(cs, "e")
            matched.update(con.execute(f"SELECT code_system, code FROM e WHERE {pred}").fetchall())
    missing = [c for c in EXPECTED_IN_CONCEPT_SETS if c not in matched]
    assert not missing, f"demo codes in no concept set: {missing}"
