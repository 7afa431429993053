"""``trialsieve ingest`` and ``trialsieve store info`` end to end through the CLI."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from click.testing import CliRunner

from trialsieve.cli.main import cli

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def test_ingest_then_store_info(tmp_path: Path) -> None:
    store = tmp_path / "store"
    runner = CliRunner()
    res = runner.invoke(
        cli, ["ingest", "--format", "fhir", str(FIXTURES / "fhir_corrupt"), "--store", str(store)]
    )
    assert res.exit_code == 0, res.output
    lines = {ln.split()[0]: ln.split() for ln in res.output.splitlines() if ln.strip()}
    # record type, read, stored, rejected
    assert lines["Observation"][1:4] == ["7", "3", "4"]
    assert lines["Patient"][1:4] == ["2", "2", "0"]
    res = runner.invoke(cli, ["store", "info", str(store), "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.output)
    assert info["patients"] == {"total": 2, "with_birth_date": 1, "deceased": 0}
    kinds = {k["kind"]: k["events"] for k in info["events_by_kind"]}
    assert kinds == {"lab": 2, "vital": 2}
    assert {a["analyte"] for a in info["analytes"]} == {"creatinine", "hemoglobin", "sbp", "dbp"}
    assert [d["dataset"] for d in info["datasets"]] == ["fhir_corrupt"]
    assert info["screening_layout"] is True
    res = runner.invoke(cli, ["store", "info", str(store)])
    assert "patients: 2" in res.output and "creatinine" in res.output
    assert "events layout: screening order" in res.output


def test_truncated_gzip_is_a_reject_not_a_crash(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    data = gzip.compress(b'{"resourceType":"Patient","id":"p1","birthDate":"1970-01-01"}\n' * 2000)
    (src / "Patient.000.ndjson.gz").write_bytes(data[: len(data) // 2])
    res = CliRunner().invoke(
        cli, ["ingest", "--format", "fhir", str(src), "--store", str(tmp_path / "s")]
    )
    assert res.exit_code == 0, res.output
    rejects = (tmp_path / "s" / "rejects.jsonl").read_text().splitlines()
    assert len(rejects) == 1 and "unreadable file" in json.loads(rejects[0])["reason"]


def test_unknown_format_and_missing_source(tmp_path: Path) -> None:
    res = CliRunner().invoke(cli, ["ingest", "--format", "hl7v2", str(tmp_path), "--store", "x"])
    assert res.exit_code != 0 and "hl7v2" in res.output
