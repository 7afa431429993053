"""``trialsieve screen`` end to end (issue 4, "Tests"): a FHIR fixture and the Synthea sample.

The fixture ``tests/fixtures/fhir_screen`` holds three patients: ``scr-aki`` (creatinine 80 ->
200 umol/L within 24 h, platelets normal: potentially eligible for NCT04194671 at 2024-03-05),
``scr-dkd`` (T2DM, UACR in mg/mmol, creatinine in mg/dL) and ``scr-empty`` (no data).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner, Result

from trialsieve.cli.screen import command
from trialsieve.ingest.runner import run_ingest
from trialsieve.protocols.loader import load_bundled
from trialsieve.store.reader import open_store

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "fhir_screen"
TRIALS = [p.id for p in load_bundled(None)]
SYNTHEA_AS_OF = "2020-01-01"


def _read(out: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in out.read_bytes().splitlines() if line.strip()]


def _run(args: list[str]) -> Result:
    return CliRunner().invoke(command, args, catch_exceptions=False)


def _funnels(text: str) -> dict[str, dict[str, Any]]:
    """Parse the printed funnels: trial -> screened, excluded per step, needs data, eligible."""
    out: dict[str, dict[str, Any]] = {}
    cur: dict[str, Any] = {}
    for line in text.splitlines():
        if m := re.match(r"^(NCT\d{8})\s", line):
            cur = out.setdefault(m.group(1), {"excluded": {}})
        elif m := re.match(r"^\s+screened\s+(\d+)", line):
            cur["screened"] = int(m.group(1))
        elif m := re.match(r"^\s+- ((?:inc|exc)-\d+)\s+(\d+) excluded", line):
            cur["excluded"][m.group(1)] = int(m.group(2))
        elif m := re.match(r"^\s+needs data\s+(\d+)", line):
            cur["needs_data"] = int(m.group(1))
        elif m := re.match(r"^\s+potentially eligible\s+(\d+)", line):
            cur["potentially_eligible"] = int(m.group(1))
    return out


# ---- (a) a small FHIR folder ----------------------------------------------------------------
@pytest.fixture(scope="module")
def fixture_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Result, Path, Path]:
    tmp = tmp_path_factory.mktemp("cli_fhir")
    out, html = tmp / "results.jsonl", tmp / "report.html"
    args = ["--fhir", str(FIXTURE), "--as-of", "2024-03-05T00:00:00Z", "--out", str(out)]
    return _run([*args, "--html", str(html)]), out, html


def test_fhir_fixture_results(fixture_run: tuple[Result, Path, Path]) -> None:
    res, out, _ = fixture_run
    assert res.exit_code == 0, res.output
    recs = _read(out)
    # one line per patient and trial
    assert len(recs) == 3 * len(TRIALS)
    assert {(r["patient_id"], r["trial_id"]) for r in recs} == {
        (p, t) for p in ("scr-aki", "scr-dkd", "scr-empty") for t in TRIALS
    }
    by = {(r["trial_id"], r["patient_id"]): r for r in recs}
    # 80 -> 200 umol/L in 24 h is "more than two-fold within 48 hours"; platelets 210 x10^9/L
    aki = by[("NCT04194671", "scr-aki")]
    assert aki["status"] == "potentially_eligible"
    inc1 = next(c for c in aki["criteria"] if c["id"] == "inc-1")
    assert inc1["verdict"] == "met"
    assert {e["source"] for e in inc1["evidence"]} <= {
        "Observation/aki-crea-1",
        "Observation/aki-crea-2",
    }
    assert inc1["evidence"]
    # born 1955-07-01: 68, outside 18-65
    assert by[("NCT04194671", "scr-dkd")]["status"] == "ineligible"
    # no data at all: the AKI criterion is unknown (open world)
    assert by[("NCT04194671", "scr-empty")]["status"] == "needs_data"
    # UACR 150 mg/mmol = 1326 mg/g > 1000 (stored canonical); no 24-h protein -> unknown
    dkd = {c["id"]: c for c in by[("NCT06969807", "scr-dkd")]["criteria"]}
    assert dkd["inc-2"]["verdict"] == "met"
    assert dkd["inc-7"]["verdict"] == "met"
    assert dkd["inc-4"]["verdict"] == "unknown"


def test_fhir_fixture_funnel_printed(fixture_run: tuple[Result, Path, Path]) -> None:
    res, out, _ = fixture_run
    funnels = _funnels(res.output)
    assert set(funnels) == set(TRIALS)
    recs = _read(out)
    for trial, f in funnels.items():
        status = Counter(r["status"] for r in recs if r["trial_id"] == trial)
        assert f["screened"] == 3
        assert sum(f["excluded"].values()) == status["ineligible"]
        assert f["needs_data"] == status["needs_data"]
        assert f["potentially_eligible"] == status["potentially_eligible"]
    assert funnels["NCT04194671"]["excluded"] == {"inc-2": 1}


def test_fhir_fixture_html_self_contained(fixture_run: tuple[Result, Path, Path]) -> None:
    _, _, html = fixture_run
    text = html.read_text(encoding="utf-8")
    assert "<html" in text.lower() and "scr-aki" in text
    for trial in TRIALS:
        assert trial in text
    # no external resources (hospital intranets block CDNs): every link is an in-page anchor
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", text, re.IGNORECASE)
    assert not re.search(r"<link\b[^>]*\bhref=[\"'](?!#)", text, re.IGNORECASE)
    assert not re.search(r"<script\b[^>]*\bsrc=", text, re.IGNORECASE)


# ---- (b) the Synthea sample ------------------------------------------------------------------
@pytest.fixture(scope="module")
def synthea_store(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = tmp_path_factory.mktemp("synthea") / "store"
    run_ingest("fhir", shared_data / "synthea_r4_smart_sample" / "bundles", store)
    return store


@pytest.fixture(scope="module")
def synthea_run(
    synthea_store: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Result, list[dict[str, Any]]]:
    out = tmp_path_factory.mktemp("synthea_out") / "results.jsonl"
    res = _run(["--store", str(synthea_store), "--as-of", SYNTHEA_AS_OF, "--out", str(out)])
    assert res.exit_code == 0, res.output
    return res, _read(out)


def test_synthea_records_have_all_criteria_in_order(
    synthea_run: tuple[Result, list[dict[str, Any]]],
) -> None:
    _, recs = synthea_run
    protos = {p.id: p for p in load_bundled(None)}
    assert recs and {r["trial_id"] for r in recs} == set(protos)
    n_patients = len({r["patient_id"] for r in recs})
    assert len(recs) == n_patients * len(protos)
    for r in recs:
        proto = protos[r["trial_id"]]
        assert [c["id"] for c in r["criteria"]] == [c.id for c in proto.criteria]
        assert r["status"] in {"ineligible", "needs_data", "potentially_eligible"}
        for c, pc in zip(r["criteria"], proto.criteria, strict=True):
            assert c["verdict"] in {"met", "not_met", "unknown", "manual"}
            if pc.rule is None:  # a manual criterion is never decided by the engine
                assert c["verdict"] == "manual"


def test_synthea_met_evidence_exists_in_store(
    synthea_store: Path, synthea_run: tuple[Result, list[dict[str, Any]]]
) -> None:
    """Every met automatic criterion cites >= 1 row that is in the store (events; age: patient)."""
    _, recs = synthea_run
    con = duckdb.connect()
    open_store(synthea_store, con)
    known = {s for (s,) in con.execute("SELECT DISTINCT source FROM events").fetchall()}
    people = {s for (s,) in con.execute("SELECT source FROM patients").fetchall()}
    either = known | people
    # per trial: (is automatic, decided by the age node) for each criterion in protocol order
    auto = {
        p.id: [
            (c.rule is not None, isinstance(c.rule, dict) and "age" in c.rule) for c in p.criteria
        ]
        for p in load_bundled(None)
    }
    checked = 0
    for r in recs:
        for c, (is_rule, is_age) in zip(r["criteria"], auto[r["trial_id"]], strict=True):
            if not is_rule or c["verdict"] != "met":
                continue
            sources = {e["source"] for e in c["evidence"] or []}
            assert sources & (either if is_age else known), (r["trial_id"], c["id"], sources)
            assert sources <= either, (r["trial_id"], c["id"], sources - either)
            checked += 1
    assert checked > 100  # the sample has many met criteria (T2DM, ages, cancers...)


def test_synthea_funnel_adds_up(synthea_run: tuple[Result, list[dict[str, Any]]]) -> None:
    res, recs = synthea_run
    funnels = _funnels(res.output)
    assert set(funnels) == set(TRIALS)
    for trial, f in funnels.items():
        status = Counter(r["status"] for r in recs if r["trial_id"] == trial)
        assert (
            f["screened"]
            == sum(f["excluded"].values()) + f["needs_data"] + f["potentially_eligible"]
        )
        assert f["screened"] == sum(status.values())
        assert sum(f["excluded"].values()) == status["ineligible"]
        assert f["needs_data"] == status["needs_data"]
        assert f["potentially_eligible"] == status["potentially_eligible"]


# ---- (c) --patient gives the record of the full run -------------------------------------------
def test_patient_option_matches_full_run(
    synthea_store: Path,
    synthea_run: tuple[Result, list[dict[str, Any]]],
    tmp_path: Path,
) -> None:
    _, recs = synthea_run
    # a patient with something decided: a met automatic criterion in some trial
    pid = next(
        r["patient_id"]
        for r in recs
        if r["status"] != "ineligible" or any(c["verdict"] == "met" for c in r["criteria"])
    )
    out = tmp_path / "one.jsonl"
    args = ["--store", str(synthea_store), "--as-of", SYNTHEA_AS_OF, "--out", str(out)]
    res = _run([*args, "--patient", pid])
    assert res.exit_code == 0, res.output
    one = _read(out)
    assert [r["patient_id"] for r in one] == [pid] * len(TRIALS)
    full = {r["trial_id"]: r for r in recs if r["patient_id"] == pid}
    for r in one:
        assert r == full[r["trial_id"]]


def test_parquet_results_and_explain_lookup(
    synthea_store: Path,
    synthea_run: tuple[Result, list[dict[str, Any]]],
    tmp_path: Path,
) -> None:
    """``--out x.parquet`` holds the records of results.jsonl (the protocol texts once, in the
    file metadata); ``trialsieve explain`` finds a patient's records (evidence included) in it
    and prints them for the coordinator."""
    from trialsieve.cli.explain import command as explain
    from trialsieve.screen.results_file import ResultsLookup

    _, recs = synthea_run
    out = tmp_path / "results.parquet"
    res = _run(["--store", str(synthea_store), "--as-of", SYNTHEA_AS_OF, "--out", str(out)])
    assert res.exit_code == 0, res.output
    table = pq.read_table(out)
    assert table.column_names == [
        "patient_id", "trial_id", "status", "verdicts", "i", "reason", "evidence"
    ]  # fmt: skip
    rows = table.to_pylist()
    records = [r for r in rows if r["i"] is None]
    items = [r for r in rows if r["i"] is not None]
    # each kind sorted by patient, then trial (and position): found by patient-id ranges
    assert [(r["patient_id"], r["trial_id"]) for r in records] == sorted(
        (r["patient_id"], r["trial_id"]) for r in recs
    )
    assert [(r["patient_id"], r["trial_id"], r["i"]) for r in items] == sorted(
        (r["patient_id"], r["trial_id"], r["i"]) for r in items
    )
    # one verdict letter per criterion; an item only for each criterion the data decided (a
    # default verdict's reason is stored once, in the metadata, and put back on lookup)
    full = {(r["patient_id"], r["trial_id"]): r for r in recs}
    for row in records:
        assert row["reason"] is None and row["evidence"] is None
        assert row["verdicts"] == "".join(
            {"met": "m", "not_met": "n", "unknown": "u", "manual": "c"}[c["verdict"]]
            for c in full[row["patient_id"], row["trial_id"]]["criteria"]
        )
    for it in items:
        assert it["status"] is None and it["verdicts"] is None
        c = full[it["patient_id"], it["trial_id"]]["criteria"][it["i"]]
        assert (it["reason"], it["evidence"]) == (c["reason"], c["evidence"])
    # ... and no row group mixes the two kinds
    meta = pq.ParquetFile(out).metadata
    for g in range(meta.num_row_groups):
        nulls = meta.row_group(g).column(4).statistics.null_count
        assert nulls in (0, meta.row_group(g).num_rows)
    n_criteria = sum(len(r["criteria"]) for r in recs)
    assert 0 < len(items) < n_criteria / 2
    lookup = ResultsLookup(out)
    for pid in sorted({r["patient_id"] for r in recs}):
        assert lookup.patient(pid) == [r for r in recs if r["patient_id"] == pid]
    # only the trials asked for, from the Parquet file and from results.jsonl alike
    jsonl = tmp_path / "r.jsonl"
    jsonl.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in recs))
    rec = recs[-1]
    one = [rec["trial_id"]]
    for results in (out, jsonl):
        assert ResultsLookup(results).patient(rec["patient_id"], one) == [rec]
    rec = next(r for r in recs if any(c["evidence"] for c in r["criteria"]))
    pid = rec["patient_id"]
    res = CliRunner().invoke(explain, ["--results", str(out), "--patient", pid, "--json"])
    assert res.exit_code == 0, res.output
    got = [orjson.loads(line) for line in res.output.splitlines()]
    assert got == [r for r in recs if r["patient_id"] == pid]
    res = CliRunner().invoke(explain, ["--results", str(out), "--patient", pid])
    shown = next(c for c in rec["criteria"] if c["evidence"])
    assert shown["reason"] in res.output and shown["evidence"][0]["source"] in res.output
    res = CliRunner().invoke(explain, ["--results", str(out), "--patient", "no-such-patient"])
    assert res.exit_code != 0 and "no-such-patient: not in" in res.output
    # a Parquet file of another layout (an older trialsieve's results) is a clear error
    old = tmp_path / "old.parquet"
    table = pq.read_table(out)
    pq.write_table(table.replace_schema_metadata(None), old)
    res = CliRunner().invoke(explain, ["--results", str(old), "--patient", pid])
    assert res.exit_code == 1 and "no trialsieve.criteria metadata" in res.output
    pq.write_table(table.drop_columns(["evidence"]), old)
    res = CliRunner().invoke(explain, ["--results", str(old), "--patient", pid])
    assert res.exit_code == 1 and "no column(s) evidence" in res.output


# ---- (d) usage errors ----------------------------------------------------------------------
def test_unknown_trial_is_a_usage_error(tmp_path: Path) -> None:
    res = CliRunner().invoke(
        command,
        ["--fhir", str(FIXTURE), "--trial", "NCT00000000", "--out", str(tmp_path / "r.jsonl")],
    )
    assert res.exit_code == 2
    assert "NCT00000000" in res.output
    assert not (tmp_path / "r.jsonl").exists()


@pytest.mark.parametrize("which", ["both", "neither"])
def test_store_xor_fhir(tmp_path: Path, which: str) -> None:
    src = ["--store", str(tmp_path), "--fhir", str(FIXTURE)] if which == "both" else []
    res = CliRunner().invoke(command, [*src, "--out", str(tmp_path / "r.jsonl")])
    assert res.exit_code == 2
    assert "exactly one of --store" in res.output
