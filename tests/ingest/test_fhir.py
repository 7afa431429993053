"""FHIR reader: the corrupted fixture, Bundles, and the open Synthea / Bulk samples."""

from __future__ import annotations

import datetime as dt
import gzip
import json
from pathlib import Path

import duckdb
import orjson
import pytest

from trialsieve.ingest.fhir_time import parse_fhir_datetime
from trialsieve.ingest.runner import run_ingest
from trialsieve.ingest.sink import IngestError
from trialsieve.store import open_store

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def _con(store: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    open_store(store, con)
    return con


def _rejects(store: Path) -> list[dict[str, str]]:
    return [json.loads(x) for x in (store / "rejects.jsonl").read_text().splitlines()]


def test_corrupt_fixture_gives_exactly_the_expected_rejects(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("WARNING"):
        s = run_ingest("fhir", FIXTURES / "fhir_corrupt", tmp_path, dataset="corrupt")
    assert s.balanced()
    got = sorted((r["locator"], r["reason"].split(":")[0]) for r in _rejects(tmp_path))
    assert got == [
        ("line 3", "malformed JSON"),
        ("line 4 (Observation/bad-unit)", "unknown unit"),
        ("line 5 (Observation/neg-crea)", "implausible value"),
        ("line 6 (Observation/ghost)", "unknown patient"),
    ]
    by_reason = {r["locator"]: r for r in _rejects(tmp_path)}
    assert "mg/furlong" in by_reason["line 4 (Observation/bad-unit)"]["reason"]
    # every reject names its file, the unknown patient included
    assert {r["file"] for r in _rejects(tmp_path)} == {"Observation.000.ndjson"}
    # the patient without birth date is stored, with a warning, and no guessed age
    con = _con(tmp_path)
    assert con.execute(
        "SELECT birth_date, sex FROM patients WHERE patient_id = 'pat-nobirth'"
    ).fetchall() == [(None, "male")]
    assert s.by_type["Patient"].warnings == 1
    assert "no birth date" in caplog.text and "pat-nobirth" in caplog.text
    obs = s.by_type["Observation"]
    assert (obs.read, obs.stored, obs.rejected_total) == (7, 3, 4)


def test_values_times_and_ranges(tmp_path: Path) -> None:
    run_ingest("fhir", FIXTURES / "fhir_corrupt", tmp_path, dataset="corrupt")
    con = _con(tmp_path)
    crea = con.execute(
        "SELECT value, unit, ref_low, ref_high, start_time, kind, source FROM events "
        "WHERE analyte = 'creatinine'"
    ).fetchall()
    # 08:30 at +01:00 is 07:30 UTC
    assert crea == [
        (106.0, "umol/L", 45.0, 90.0, dt.datetime(2024, 3, 1, 7, 30), "lab", "Observation/ok-crea")
    ]
    hb = con.execute(
        "SELECT value, unit, ref_low, ref_high, orig_value, orig_unit, start_time, end_time "
        "FROM events WHERE analyte = 'hemoglobin'"
    ).fetchone()
    assert hb == (112.0, "g/L", 120.0, 155.0, "11.2", "g/dL",
                  dt.datetime(2024, 3, 1), dt.datetime(2024, 3, 1, 12))  # fmt: skip


def test_blood_pressure_panel_becomes_two_vitals(tmp_path: Path) -> None:
    run_ingest("fhir", FIXTURES / "fhir_corrupt", tmp_path, dataset="corrupt")
    rows = (
        _con(tmp_path)
        .execute(
            "SELECT analyte, code, value, kind, source FROM events "
            "WHERE source = 'Observation/bp-1' ORDER BY analyte"
        )
        .fetchall()
    )
    assert rows == [
        ("dbp", "8462-4", 91.0, "vital", "Observation/bp-1"),
        ("sbp", "8480-6", 142.0, "vital", "Observation/bp-1"),
    ]


def _bp_panel(oid: str, panel: str, sbp: dict[str, object], dbp: dict[str, object]) -> bytes:
    loinc = "http://loinc.org"
    return orjson.dumps(
        {"resourceType": "Observation", "id": oid, "status": "final",
         "subject": {"reference": "Patient/pat-1"}, "effectiveDateTime": "2024-03-05",
         "code": {"coding": [{"system": loinc, "code": panel}]},
         "component": [
             {"code": {"coding": [{"system": loinc, "code": "8480-6"}]}, "valueQuantity": sbp},
             {"code": {"coding": [{"system": loinc, "code": "8462-4"}]}, "valueQuantity": dbp}]}
    )  # fmt: skip


def test_unitless_bp_components_are_mmhg_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """LOINC 8480-6/8462-4 are pressures in mm[Hg]: a unitless component in a BP panel is read
    as mm[Hg] and counted as a warning; outside a BP panel a missing unit stays a reject."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "Patient.ndjson").write_bytes(
        (FIXTURES / "fhir_corrupt/Patient.000.ndjson").read_bytes()
    )
    ucum = {"system": "http://unitsofmeasure.org"}
    (src / "Observation.ndjson").write_bytes(
        b"\n".join([
            _bp_panel("synthea", "55284-4", {"value": 111.5, **ucum}, {"value": 74.8, **ucum}),
            _bp_panel("loinc", "85354-9", {"value": 130}, {"value": 85, "unit": "mmHg"}),
            _bp_panel("other", "9279-1", {"value": 130}, {"value": 85}),
        ]) + b"\n"
    )  # fmt: skip
    with caplog.at_level("WARNING"):
        s = run_ingest("fhir", src, tmp_path / "store")
    obs = s.by_type["Observation"]
    assert (obs.read, obs.stored, obs.warnings) == (3, 2, 2)
    assert dict(obs.rejected) == {"unknown unit: sbp: missing unit": 1}
    assert "mm[Hg] assumed" in caplog.text and "line 1 (Observation/synthea)" in caplog.text
    rows = (
        _con(tmp_path / "store")
        .execute(
            "SELECT source, analyte, value, unit, orig_unit FROM events ORDER BY source, analyte"
        )
        .fetchall()
    )
    assert rows == [
        ("Observation/loinc", "dbp", 85.0, "mm[Hg]", "mmHg"),
        ("Observation/loinc", "sbp", 130.0, "mm[Hg]", None),
        ("Observation/synthea", "dbp", 74.8, "mm[Hg]", None),
        ("Observation/synthea", "sbp", 111.5, "mm[Hg]", None),
    ]


def test_a_quantity_with_a_comparator_keeps_it(tmp_path: Path) -> None:
    """valueQuantity.comparator ("<0.3 mg/dL", "eGFR >90"): the bound is the value (converted
    as any value), the comparator is kept in value_text and orig_value."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "Patient.ndjson").write_bytes(
        (FIXTURES / "fhir_corrupt/Patient.000.ndjson").read_bytes()
    )
    loinc = "http://loinc.org"

    def obs(oid: str, code: str, qty: dict[str, object]) -> bytes:
        return orjson.dumps(
            {"resourceType": "Observation", "id": oid, "status": "final",
             "subject": {"reference": "Patient/pat-1"}, "effectiveDateTime": "2024-03-05",
             "code": {"coding": [{"system": loinc, "code": code}]}, "valueQuantity": qty}
        )  # fmt: skip

    (src / "Observation.ndjson").write_bytes(
        b"\n".join([
            obs("lt", "2160-0", {"value": 0.3, "comparator": "<", "unit": "mg/dL"}),
            obs("gt", "33914-3", {"value": 90, "comparator": ">", "unit": "mL/min/{1.73_m2}"}),
            obs("exact", "2160-0", {"value": 1.2, "unit": "mg/dL"}),
        ]) + b"\n"
    )  # fmt: skip
    s = run_ingest("fhir", src, tmp_path / "store")
    assert s.by_type["Observation"].stored == 3 and s.balanced()
    rows = (
        _con(tmp_path / "store")
        .execute(
            "SELECT source, analyte, value, unit, value_text, orig_value, orig_unit FROM events "
            "ORDER BY source"
        )
        .fetchall()
    )
    assert rows == [
        ("Observation/exact", "creatinine", pytest.approx(1.2 * 88.4), "umol/L", None, "1.2",
         "mg/dL"),
        ("Observation/gt", "egfr_reported", 90.0, "mL/min/1.73m2", ">90", ">90",
         "mL/min/{1.73_m2}"),
        ("Observation/lt", "creatinine", pytest.approx(0.3 * 88.4), "umol/L", "<0.3", "<0.3",
         "mg/dL"),
    ]  # fmt: skip


def test_unknown_patient_rejects_name_file_and_entry(tmp_path: Path) -> None:
    src = tmp_path / "bundles"
    src.mkdir()
    (src / "b.json").write_bytes(
        _bundle([{"resourceType": "Condition", "id": "c9", "onsetDateTime": "2020-01-01",
                  "subject": {"reference": "urn:uuid:nobody"},
                  "code": {"coding": [{"system": "http://snomed.info/sct", "code": "1"}]}}])
    )  # fmt: skip
    s = run_ingest("fhir", src, tmp_path / "store")
    assert s.balanced()
    assert _rejects(tmp_path / "store") == [
        {"dataset": "bundles", "record_type": "Condition", "file": "b.json",
         "locator": "entry 0 (Condition/c9)", "reason": "unknown patient"}
    ]  # fmt: skip


def test_strict_mode_fails_on_first_error(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="malformed JSON"):
        run_ingest("fhir", FIXTURES / "fhir_corrupt", tmp_path, strict=True)
    assert not (tmp_path / "events").exists()


def test_strict_mode_validates_against_r4(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "Patient.ndjson").write_text(
        '{"resourceType":"Patient","id":"p","gender":"female","birthDate":"1980-01-01"}\n'
        '{"resourceType":"Patient","id":"q","active":"maybe"}\n'
    )
    with pytest.raises(IngestError, match="Patient/q: invalid FHIR R4"):
        run_ingest("fhir", src, tmp_path / "store", strict=True)


def _bundle(resources: list[dict[str, object]]) -> bytes:
    return orjson.dumps(
        {"resourceType": "Bundle", "type": "transaction",
         "entry": [{"fullUrl": f"urn:uuid:{r['id']}", "resource": r} for r in resources]}
    )  # fmt: skip


def test_bundle_conditions_medications_and_impossible_dates(tmp_path: Path) -> None:
    pid = "0b7e3c47-1111-4c3e-9a0e-000000000001"
    resources: list[dict[str, object]] = [
        {"resourceType": "Patient", "id": pid, "birthDate": "1955-07-01", "gender": "female"},
        {"resourceType": "Condition", "id": "c1", "subject": {"reference": f"urn:uuid:{pid}"},
         "code": {"coding": [{"system": "http://snomed.info/sct", "code": "431855005"},
                             {"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "N18.1"}]},
         "clinicalStatus": {"coding": [{"code": "active"}]}, "onsetDateTime": "2015-04-02"},
        {"resourceType": "Condition", "id": "c2", "subject": {"reference": f"urn:uuid:{pid}"},
         "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]},
         "verificationStatus": {"coding": [{"code": "refuted"}]}, "recordedDate": "2016-01-01"},
        {"resourceType": "Condition", "id": "c3", "subject": {"reference": f"urn:uuid:{pid}"},
         "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]},
         "onsetDateTime": "2016-02-30"},
        {"resourceType": "MedicationAdministration", "id": "m1", "status": "completed",
         "subject": {"reference": f"Patient/{pid}"},
         "medicationCodeableConcept": {"coding": [
             {"system": "http://www.whocc.no/atc", "code": "L01XX"},
             {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "1234"}]},
         "effectivePeriod": {"start": "2024-01-01T10:00:00Z", "end": "2024-01-01T11:00:00Z"},
         "dosage": {"route": {"coding": [{"display": "intravenous"}]},
                    "dose": {"value": 70, "unit": "10*6 cells"}}},
        {"resourceType": "MedicationRequest", "id": "m2", "status": "active",
         "subject": {"reference": f"urn:uuid:{pid}"}, "authoredOn": "2024-02-01",
         "medicationCodeableConcept": {"coding": [
             {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "860975"}]},
         "dispenseRequest": {"expectedSupplyDuration": {"value": 30, "code": "d"}}},
        {"resourceType": "Observation", "id": "o-no-time", "status": "final",
         "subject": {"reference": f"urn:uuid:{pid}"},
         "code": {"coding": [{"system": "http://loinc.org", "code": "2823-3"}]},
         "valueQuantity": {"value": 4.2, "unit": "mmol/L"}},
        {"resourceType": "Claim", "id": "cl1"},
    ]  # fmt: skip
    src = tmp_path / "bundles"
    src.mkdir()
    with gzip.open(src / "Jane_Doe.json.gz", "wb") as f:
        f.write(_bundle(resources))
    s = run_ingest("fhir", src, tmp_path / "store")
    assert s.balanced()
    reasons = {r["locator"]: r["reason"] for r in _rejects(tmp_path / "store")}
    assert reasons == {
        "entry 2 (Condition/c2)": "verificationStatus refuted",
        "entry 3 (Condition/c3)": "impossible date in onsetDateTime: '2016-02-30'",
        "entry 6 (Observation/o-no-time)": "missing time (effective[x])",
        "entry 7 (Claim/cl1)": "unsupported resource type Claim",
    }
    con = _con(tmp_path / "store")
    assert con.execute(
        "SELECT code_system, code, status FROM events WHERE kind='condition'"
    ).fetchall() == [("http://hl7.org/fhir/sid/icd-10-cm", "N18.1", "active")]
    meds = con.execute(
        "SELECT code_system, code, start_time, end_time, dose_value, route FROM events "
        "WHERE kind='medication' ORDER BY source"
    ).fetchall()
    assert meds == [
        ("http://www.nlm.nih.gov/research/umls/rxnorm", "1234", dt.datetime(2024, 1, 1, 10),
         dt.datetime(2024, 1, 1, 11), 70.0, "intravenous"),
        ("http://www.nlm.nih.gov/research/umls/rxnorm", "860975", dt.datetime(2024, 2, 1),
         dt.datetime(2024, 3, 2), None, None),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-01-01", dt.datetime(2024, 1, 1)),
        ("2024-01", dt.datetime(2024, 1, 1)),
        ("2024", dt.datetime(2024, 1, 1)),
        ("2024-06-30T23:30:00-02:00", dt.datetime(2024, 7, 1, 1, 30)),
        ("2024-06-30T10:00:00.123Z", dt.datetime(2024, 6, 30, 10, 0, 0, 123000)),
    ],
)
def test_parse_fhir_datetime(text: str, expected: dt.datetime) -> None:
    assert parse_fhir_datetime(text) == expected


def test_bulk_sample_accounts_for_every_record(shared_data: Path, tmp_path: Path) -> None:
    src = shared_data / "bulk_fhir_sample_10pt"
    lines: dict[str, int] = {}
    for f in src.glob("*.ndjson"):
        lines[f.name.split(".")[0]] = sum(1 for x in f.open("rb") if x.strip())
    s = run_ingest("fhir", src, tmp_path)
    assert s.balanced()
    assert s.read == sum(lines.values())
    for rtype in ("Patient", "Condition", "Procedure", "MedicationRequest", "Encounter"):
        assert s.by_type[rtype].read == lines[rtype]
        assert s.by_type[rtype].stored == lines[rtype]
    con = _con(tmp_path)
    assert con.execute("SELECT count(*) FROM patients").fetchone() == (lines["Patient"],)
    # re-ingest: same store
    before = con.execute("SELECT * FROM events ORDER BY event_id").fetchall()
    run_ingest("fhir", src, tmp_path)
    assert _con(tmp_path).execute("SELECT * FROM events ORDER BY event_id").fetchall() == before


def test_synthea_sample(shared_data: Path, tmp_path: Path) -> None:
    creat = pytest.importorskip("trialsieve.kidney.creatinine")
    src = shared_data / "synthea_r4_smart_sample" / "bundles"
    s = run_ingest("fhir", src, tmp_path, dataset="synthea")
    entries = 0
    for f in src.glob("*.json.gz"):
        entries += len(orjson.loads(gzip.open(f).read()).get("entry", []))
    assert s.balanced()
    assert s.read == entries
    # 343 Synthea BP panels (55284-4) have unitless components: stored as mm[Hg], with warnings
    obs = s.by_type["Observation"]
    assert obs.warnings == 343 and obs.rejected_total == 0
    # unsupported resource types are accounted for, one summary row per type
    assert s.by_type["Claim"].rejected == {
        "unsupported resource type Claim": s.by_type["Claim"].read
    }
    assert "unsupported resource type ExplanationOfBenefit" in s.table()
    con = _con(tmp_path)
    # creatinine (LOINC 38483-4, mg/dL in Synthea) comes out in umol/L with the kidney factor
    rows = con.execute(
        "SELECT value, unit, orig_value, orig_unit FROM events WHERE analyte = 'creatinine'"
    ).fetchall()
    assert len(rows) > 1000
    for value, unit, orig_value, orig_unit in rows:
        assert unit == "umol/L" and orig_unit == "mg/dL"
        assert value == pytest.approx(float(orig_value) * creat.UMOL_PER_MGDL)
    # blood-pressure panels become systolic/diastolic events sharing their source
    bp = con.execute(
        "SELECT count(*) FROM (SELECT source FROM events WHERE analyte IN ('sbp','dbp') "
        "GROUP BY source HAVING count(DISTINCT analyte) = 2)"
    ).fetchone()
    assert bp is not None and bp[0] > 1000
    assert con.execute(
        "SELECT count(*) FROM events WHERE analyte IN ('sbp','dbp') AND kind <> 'vital'"
    ).fetchone() == (0,)
