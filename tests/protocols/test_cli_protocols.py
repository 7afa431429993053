"""``trialsieve protocols list|show|validate``."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from trialsieve.cli.main import cli
from trialsieve.protocols.loader import BUNDLED_DIR

IDS = ["NCT04194671", "NCT06954740", "NCT06969807", "NCT07240987"]


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["protocols", *args])
    return result.exit_code, result.output


def test_list_table():
    code, out = _run("list")
    assert code == 0
    rows = out.strip().splitlines()[1:]
    assert [r.split()[0] for r in rows] == IDS
    assert "RECRUITING" in out and "PHASE1/PHASE2" in out


def test_list_json_counts():
    code, out = _run("list", "--json")
    assert code == 0
    rows = {r["id"]: r for r in json.loads(out)}
    assert sorted(rows) == IDS
    assert (rows["NCT06954740"]["inclusion"], rows["NCT06954740"]["exclusion"]) == (3, 17)
    assert (rows["NCT06969807"]["inclusion"], rows["NCT06969807"]["exclusion"]) == (8, 13)
    for r in rows.values():
        assert r["automatic"] + r["manual"] == r["inclusion"] + r["exclusion"]


def test_show_text():
    code, out = _run("show", "NCT06969807")
    assert code == 0
    assert "1e+06 cells/kg on days 1, 14, 28" in out
    assert "1.5e+06 cells/kg on weeks 8, 12, 16, 20, 24" in out
    assert "age 45..80 y" in out
    assert "inc-7   [auto] Glycated hemoglobin (HbA1c) < 9%." in out
    assert "exc-13  [manual]" in out
    assert "egfr_equation=ckd-epi-2021" in out


def test_show_json_roundtrip():
    code, out = _run("show", "NCT04194671", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["id"] == "NCT04194671"
    assert [c["id"] for c in data["criteria"]][:5] == ["inc-1", "inc-2", "inc-3", "inc-4", "exc-1"]
    assert len(data["criteria"]) == 24


def test_show_unknown_id():
    code, out = _run("show", "NCT99999999")
    assert code != 0
    assert "unknown trial id" in out and "NCT06954740" in out


def test_validate_bundled():
    code, out = _run("validate")
    assert code == 0
    assert [line.split()[0] for line in out.strip().splitlines()] == ["OK"] * 4


def test_validate_broken_file(tmp_path: Path):
    good = BUNDLED_DIR / "NCT07240987.yaml"
    text = good.read_text(encoding="utf-8")
    broken = tmp_path / "broken.yaml"
    broken.write_text(text.replace("analyte: hemoglobin,", "analyte: haemoglobin,"), "utf-8")
    line = next(
        i + 1 for i, s in enumerate(broken.read_text().splitlines()) if "analyte: haemoglobin" in s
    )
    result = CliRunner().invoke(cli, ["protocols", "validate", str(good), str(broken)])
    assert result.exit_code == 1
    assert f"OK {good}" in result.output
    assert f"INVALID {broken}" in result.output
    assert f"{broken}:{line}: criteria.exclusion[0].rule.lab.analyte: unknown analyte" in (
        result.output
    )
