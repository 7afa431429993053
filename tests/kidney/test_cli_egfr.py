"""``trialsieve egfr`` end to end: single-patient JSON, CSV batch with error rows, exit codes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import trialsieve.cli.egfr as cli_egfr
from trialsieve.cli.main import cli
from trialsieve.kidney.egfr import egfr

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "egfr" / "batch.csv"


def run(*args: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(cli, ["egfr", *args])
    return res.exit_code, res.stdout, res.stderr


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
        return list(reader.fieldnames or []), rows


# --- single mode --------------------------------------------------------------------------------


def test_single_json() -> None:
    code, out, _ = run(
        "--equation", "ckd-epi-2021", "--creatinine", "1.2", "--unit", "mg/dL",
        "--age", "60", "--sex", "female",
    )  # fmt: skip
    assert code == 0
    data = json.loads(out)
    # Inker 2021: 142 × (1.2/0.7)^-1.200 × 0.9938^60 × 1.012 = 51.8213 (see test_egfr.py)
    assert data["egfr"] == pytest.approx(51.8213, abs=1e-4)
    assert data["egfr"] == float(egfr("ckd-epi-2021", 1.2, 60, True)[()])  # unrounded, exact
    assert data["equation"] == "ckd-epi-2021"
    assert data["unit"] == "mL/min/1.73m2"
    assert data["creatinine"] == 1.2 and data["creatinine_unit"] == "mg/dL"
    assert data["age"] == 60 and data["sex"] == "female" and data["black"] is False
    assert data["cystatin_c"] is None


def test_single_umol_and_cystatin_and_black() -> None:
    code, out, _ = run(
        "--equation", "ckd-epi-2021-cys", "--creatinine", "88.4", "--unit", "umol/L",
        "--age", "50", "--sex", "female", "--cystatin-c", "1.0",
    )  # fmt: skip
    assert code == 0
    data = json.loads(out)
    assert data["egfr"] == pytest.approx(74.03625, abs=1e-4)  # CRAN `egfr` vignette value
    assert data["creatinine_mg_dl"] == pytest.approx(1.0)
    assert data["cystatin_c"] == 1.0
    code, out, _ = run(
        "--equation", "ckd-epi-2009", "--creatinine", "1.5", "--unit", "mg/dL",
        "--age", "64.3", "--sex", "female", "--black",
    )  # fmt: skip
    assert code == 0
    assert json.loads(out)["egfr"] == pytest.approx(42.1421, abs=1e-4)  # transplantr example
    code, out, err = run(
        "--equation", "ckd-epi-2021", "--creatinine", "1.5", "--unit", "mg/dL",
        "--age", "64.3", "--sex", "female", "--black",
    )  # fmt: skip
    assert code == 0 and "race-free" in err
    assert json.loads(out)["egfr"] == float(egfr("ckd-epi-2021", 1.5, 64.3, True)[()])


BASE = {
    "--equation": "ckd-epi-2021",
    "--creatinine": "1.0",
    "--unit": "mg/dL",
    "--age": "50",
    "--sex": "male",
}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"--creatinine": "-1"}, "creatinine must be a positive number"),
        ({"--creatinine": "0"}, "creatinine must be a positive number"),
        ({"--creatinine": "abc"}, "creatinine is not a number"),
        ({"--creatinine": "nan"}, "creatinine must be a positive number"),
        ({"--age": "17"}, "age must be >= 18"),
        ({"--unit": "mmol/L"}, "unknown creatinine unit"),
        ({"--equation": "cockcroft-gault"}, "Invalid value for '--equation'"),
        ({"--sex": "other"}, "Invalid value for '--sex'"),
        ({"--equation": "ckd-epi-2021-cys"}, "needs cystatin_c"),
        ({"--equation": "ckd-epi-2021-cys", "--cystatin-c": "-0.5"}, "cystatin_c must be"),
        ({"--age": None}, "missing --age"),
        ({"--input": str(EXAMPLE)}, "cannot be combined"),
    ],
)
def test_single_mode_errors_exit_2(change: dict[str, str | None], message: str) -> None:
    opts = {**BASE, **change}
    args = [x for k, v in opts.items() if v is not None for x in (k, v)]
    code, out, err = run(*args)
    assert code == 2
    assert out == ""
    assert message in err


def test_no_arguments_and_half_batch_are_usage_errors(tmp_path: Path) -> None:
    code, _, err = run()
    assert code == 2 and "missing --equation" in err
    code, _, err = run("--input", str(EXAMPLE))
    assert code == 2 and "needs both --input and --out" in err


# --- batch mode ---------------------------------------------------------------------------------


def test_example_batch(tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    code, stdout, err = run("--input", str(EXAMPLE), "--out", str(out))
    assert code == 0, err
    assert stdout == ""
    assert err.strip().splitlines()[-1].startswith("egfr: 15 rows, 7 computed, 8 errors")
    in_cols, in_rows = read_csv(EXAMPLE)
    cols, rows = read_csv(out)
    assert cols == in_cols + ["egfr", "error"]
    assert [r["patient"] for r in rows] == [r["patient"] for r in in_rows]  # order kept
    by_id = {r["patient"]: r for r in rows}
    # every error type gets its own row, an error text and an empty egfr
    expected_errors = {
        "p08": "unknown equation 'cockcroft-gault'",
        "p09": "unknown creatinine unit 'mmol/L'",
        "p10": "unknown sex 'unknown'",
        "p11": "creatinine must be a positive number, got '-0.8'",
        "p12": "creatinine must be a positive number, got '0'",
        "p13": "creatinine is not a number: 'high'",
        "p14": "age must be >= 18",
        "p15": "ckd-epi-2021-cys needs cystatin_c",
    }
    for pid, text in expected_errors.items():
        assert text in by_id[pid]["error"], pid
        assert by_id[pid]["egfr"] == ""
    good = [r for r in rows if r["patient"] not in expected_errors]
    assert len(good) == 7
    for r in good:
        assert r["error"] == ""
        scr = float(r["creatinine"]) / (88.4 if r["unit"] == "umol/L" else 1.0)
        cys = float(r["cystatin_c"]) if r["cystatin_c"] else None
        want = egfr(
            r["equation"], scr, float(r["age"]), r["sex"] == "female",
            cystatin_c_mg_l=cys, black=r["black"] == "true",
        )  # fmt: skip
        assert float(r["egfr"]) == pytest.approx(float(want[()]), rel=1e-12)
    # p01 (1.2 mg/dL) and p02 (106.08 µmol/L = 1.2 × 88.4) are the same patient
    assert float(by_id["p01"]["egfr"]) == pytest.approx(float(by_id["p02"]["egfr"]), rel=1e-12)
    assert float(by_id["p01"]["egfr"]) == pytest.approx(51.8213, abs=1e-4)
    assert float(by_id["p03"]["egfr"]) == pytest.approx(42.1421, abs=1e-4)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_batch_optional_columns_absent_and_ragged_rows(tmp_path: Path) -> None:
    src = write(
        tmp_path / "in.csv",
        "sex,age,unit,creatinine,equation\n"
        "male,50,mg/dL,1.0,mdrd-175\n"
        "female,40,umol/L\n"
        "FEMALE,40,µmol/L,70,ckd-epi-2021,extra\n",
    )
    out = tmp_path / "out.csv"
    code, _, err = run("--input", str(src), "--out", str(out))
    assert code == 0, err
    cols, rows = read_csv(out)
    assert cols == ["sex", "age", "unit", "creatinine", "equation", "egfr", "error"]
    assert float(rows[0]["egfr"]) == pytest.approx(float(egfr("mdrd-175", 1.0, 50, False)[()]))
    assert "expected 5 fields, got 3" in rows[1]["error"] and rows[1]["egfr"] == ""
    assert "expected 5 fields, got 6" in rows[2]["error"] and rows[2]["egfr"] == ""
    assert "1 computed, 2 errors" in err


def test_batch_black_column_and_existing_output_columns(tmp_path: Path) -> None:
    src = write(
        tmp_path / "in.csv",
        "equation,creatinine,unit,age,sex,black,egfr\n"
        "ckd-epi-2009,1.4,mg/dL,58,male,true,999\n"
        "ckd-epi-2009,1.4,mg/dL,58,male,false,999\n"
        "ckd-epi-2009,1.4,mg/dL,58,male,,999\n"
        "ckd-epi-2009,1.4,mg/dL,58,male,maybe,999\n",
    )
    out = tmp_path / "out.csv"
    code, _, _ = run("--input", str(src), "--out", str(out))
    assert code == 0
    cols, rows = read_csv(out)
    assert cols == ["equation", "creatinine", "unit", "age", "sex", "black", "egfr", "error"]
    black, white, blank, bad = (r["egfr"] for r in rows)
    assert float(black) == pytest.approx(float(white) * 1.159, rel=1e-12)
    assert blank == white
    assert bad == "" and "black must be true or false" in rows[3]["error"]


def test_overflowing_row_is_an_error_not_a_blank(tmp_path: Path) -> None:
    src = write(
        tmp_path / "in.csv",
        "equation,creatinine,unit,age,sex\nmdrd-175,1e-300,mg/dL,50,male\nmdrd-175,1,mg/dL,50,male\n",
    )
    out = tmp_path / "out.csv"
    code, _, err = run("--input", str(src), "--out", str(out))
    assert code == 0 and "RuntimeWarning" not in err
    _, rows = read_csv(out)
    assert rows[0]["egfr"] == "" and "not a finite number" in rows[0]["error"]
    assert rows[1]["error"] == "" and float(rows[1]["egfr"]) > 0
    assert "2 rows, 1 computed, 1 errors" in err
    code, _, err = run(
        *[
            x
            for k, v in {**BASE, "--creatinine": "1e-300", "--equation": "mdrd-175"}.items()
            for x in (k, v)
        ]
    )
    assert code == 2 and "not a finite number" in err


def test_batch_missing_column_is_usage_error(tmp_path: Path) -> None:
    src = write(tmp_path / "in.csv", "equation,creatinine,age,sex\nckd-epi-2021,1,50,male\n")
    code, _, err = run("--input", str(src), "--out", str(tmp_path / "o.csv"))
    assert code == 2 and "missing column(s) unit" in err
    empty = write(tmp_path / "empty.csv", "")
    code, _, err = run("--input", str(empty), "--out", str(tmp_path / "o.csv"))
    assert code == 2 and "empty file" in err


def test_batch_is_vectorised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The formula runs once per equation over all its valid rows, not once per row."""
    calls: list[int] = []
    real = cli_egfr.egfr

    def counting(equation: str, creatinine_mg_dl: np.ndarray, *args: object, **kw: object):
        calls.append(len(creatinine_mg_dl))
        return real(equation, creatinine_mg_dl, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(cli_egfr, "egfr", counting)
    lines = ["equation,creatinine,unit,age,sex"]
    for i in range(300):
        eq = ("ckd-epi-2021", "mdrd-175")[i % 2]
        lines.append(f"{eq},{0.5 + i / 100},mg/dL,{18 + i % 70},{('male', 'female')[i % 3 % 2]}")
    lines.append("ckd-epi-2021,-1,mg/dL,50,male")
    src = write(tmp_path / "in.csv", "\n".join(lines) + "\n")
    code, _, err = run("--input", str(src), "--out", str(tmp_path / "o.csv"))
    assert code == 0
    assert sorted(calls) == [150, 150]
    assert "301 rows, 300 computed, 1 errors" in err


# --- property: the unit the input was given in does not matter ----------------------------------

row_st = st.tuples(
    st.sampled_from(["ckd-epi-2009", "ckd-epi-2021", "ckd-epi-2021-cys", "mdrd-175", "mdrd-186"]),
    st.floats(min_value=0.2, max_value=15.0),
    st.floats(min_value=18.0, max_value=100.0),
    st.booleans(),
    st.booleans(),
    st.floats(min_value=0.4, max_value=6.0),
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=st.lists(row_st, min_size=1, max_size=20))
def test_unit_invariance_through_batch(
    tmp_path: Path, rows: list[tuple[str, float, float, bool, bool, float]]
) -> None:
    lines = ["equation,creatinine,unit,age,sex,cystatin_c,black"]
    for eq, scr, age, female, black, cys in rows:
        sex = "female" if female else "male"
        lines.append(f"{eq},{scr!r},mg/dL,{age!r},{sex},{cys!r},{str(black).lower()}")
        lines.append(f"{eq},{scr * 88.4!r},umol/L,{age!r},{sex},{cys!r},{str(black).lower()}")
    src = write(tmp_path / "inv.csv", "\n".join(lines) + "\n")
    out = tmp_path / "inv-out.csv"
    code, _, _ = run("--input", str(src), "--out", str(out))
    assert code == 0
    _, result = read_csv(out)
    assert all(r["error"] == "" for r in result)
    values = [float(r["egfr"]) for r in result]
    np.testing.assert_allclose(values[0::2], values[1::2], rtol=1e-12)


def test_unused_cystatin_is_noted_not_silently_dropped() -> None:
    code, out, err = run(*[x for k, v in BASE.items() for x in (k, v)], "--cystatin-c", "1.1")
    assert code == 0 and "--cystatin-c ignored" in err
    assert json.loads(out)["cystatin_c"] is None
