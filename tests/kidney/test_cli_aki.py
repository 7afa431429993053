"""``trialsieve aki`` end to end on the bundled example and on files with bad rows."""

from __future__ import annotations

import csv
from pathlib import Path

from click.testing import CliRunner

from trialsieve.cli.main import cli

EX = Path(__file__).resolve().parents[2] / "examples" / "aki"


def run(*args: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(cli, ["aki", *args])
    return res.exit_code, res.stdout, res.stderr


def read(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
        return list(reader.fieldnames or []), rows


def full_example(tmp_path: Path, *extra: str) -> tuple[int, str, Path, Path]:
    out, summ = tmp_path / "results.csv", tmp_path / "summary.csv"
    code, _, err = run(
        "--creatinine", str(EX / "creatinine.csv"), "--patients", str(EX / "patients.csv"),
        "--rrt", str(EX / "rrt.csv"), "--urine", str(EX / "urine.csv"),
        "--weights", str(EX / "weights.csv"), "--out", str(out), "--summary", str(summ), *extra,
    )  # fmt: skip
    return code, err, out, summ


def test_example_results_columns_order_and_stages(tmp_path: Path) -> None:
    code, err, out, _ = full_example(tmp_path)
    assert code == 0, err
    cols, rows = read(out)
    assert cols == [
        "patient_id", "time", "creatinine_umol_l", "kdigo_stage", "kdigo_reason",
        "baseline_umol_l", "baseline_source", "nhs_stage",
    ]  # fmt: skip
    _, inp = read(EX / "creatinine.csv")
    assert [r["patient_id"] for r in rows] == [r["patient_id"] for r in inp]  # input order
    by = {(r["patient_id"], r["time"]): r for r in rows}
    r = by[("P1-rise48h", "2024-03-03T08:00:00Z")]
    assert (r["kdigo_stage"], r["nhs_stage"], r["baseline_source"]) == ("1", "1", "min-7d")
    assert r["kdigo_reason"] == "rise 26.5 umol/L in 48 h (stage 1)"
    r = by[("P2-ratio", "2024-03-04T06:00:00Z")]
    assert (r["creatinine_umol_l"], r["kdigo_stage"]) == ("185.64", "2")  # 2.1 mg/dL
    assert by[("P2-ratio", "2024-03-06T06:00:00Z")]["kdigo_stage"] == "3"
    r = by[("P3-median", "2024-03-10T09:00:00Z")]
    assert (r["baseline_umol_l"], r["baseline_source"], r["kdigo_stage"]) == (
        "75.00", "median-8-365d", "2"
    )  # fmt: skip
    assert by[("P4-rrt", "2024-03-03T07:00:00Z")]["kdigo_reason"].startswith("RRT started")
    assert by[("P5-no-history", "2024-03-05T10:00:00Z")]["kdigo_stage"] == "0"  # +01:00 -> UTC
    assert "rejected 0 records" in err
    assert "creatinine" in err and "read 17, accepted 17, rejected 0" in err


def test_example_summary_combines_creatinine_urine_and_rrt(tmp_path: Path) -> None:
    code, err, _, summ = full_example(tmp_path)
    assert code == 0, err
    cols, rows = read(summ)
    assert cols == [
        "patient_id", "max_kdigo_stage", "first_aki_time", "max_stage_by", "max_nhs_stage"
    ]  # fmt: skip
    got = {r["patient_id"]: r for r in rows}
    assert len(got) == 6
    assert got["P1-rise48h"]["max_kdigo_stage"] == "1"
    assert got["P2-ratio"]["max_stage_by"] == "creatinine"
    assert got["P4-rrt"]["max_kdigo_stage"] == "3"
    assert got["P4-rrt"]["max_stage_by"] == "rrt"
    assert got["P5-no-history"] == {
        "patient_id": "P5-no-history", "max_kdigo_stage": "0", "first_aki_time": "",
        "max_stage_by": "", "max_nhs_stage": "0",
    }  # fmt: skip
    p6 = got["P6-urine"]
    # 13 h at 20 mL/h for 70 kg (0.29 mL/kg/h) from 12:00: < 0.5 for 6 h at 18:00, 12 h -> stage 2
    assert (p6["max_kdigo_stage"], p6["max_stage_by"], p6["first_aki_time"]) == (
        "2", "urine", "2024-03-01T18:00:00Z"
    )  # fmt: skip
    assert p6["max_nhs_stage"] == "0"


def test_lowest_baseline_strategy(tmp_path: Path) -> None:
    code, err, out, _ = full_example(tmp_path, "--baseline", "lowest-3m-1y-mdrd75")
    assert code == 0, err
    _, rows = read(out)
    p5 = next(r for r in rows if r["patient_id"] == "P5-no-history")
    assert p5["baseline_source"] == "mdrd75-backcalc"
    assert p5["kdigo_stage"] == "1"
    assert p5["nhs_stage"] == "0"


def test_rejects_file_and_summary_never_stop_the_run(tmp_path: Path) -> None:
    c = tmp_path / "c.csv"
    c.write_text(
        "patient_id,time,value,unit\n"
        "a,2024-01-01T00:00:00,80,umol/L\n"
        "a,yesterday,90,umol/L\n"
        "a,2024-01-02T00:00:00,1.3,mg/dL\n"
        "a,2024-01-02T01:00:00,2,g/L\n"
    )
    out, rej = tmp_path / "r.csv", tmp_path / "rej.csv"
    code, _, err = run("--creatinine", str(c), "--out", str(out), "--rejects", str(rej))
    assert code == 0
    _, rows = read(out)
    assert [r["creatinine_umol_l"] for r in rows] == ["80.00", "114.92"]
    assert rows[1]["kdigo_stage"] == "1"
    cols, rejected = read(rej)
    assert cols == ["file", "line", "reason"]
    assert [(r["file"], r["line"]) for r in rejected] == [(str(c), "3"), (str(c), "5")]
    assert "read 4, accepted 2, rejected 2" in err
    assert f"rejected 2 record(s) -> {rej}" in err


def test_rejects_of_every_file_in_order_while_the_urine_side_runs_beside(tmp_path: Path) -> None:
    """The urine and weight files load on a second cursor at the same time as the creatinine
    (``run_aki``): the rejects still come file by file in the order of the options' files
    (creatinine, urine, weights, rrt, patients), each by line, and a bad urine file still
    stops the run with its error."""
    c = tmp_path / "c.csv"
    c.write_text(
        "patient_id,time,value,unit\n"
        + "a,2024-01-01T00:00:00Z,80,umol/L\n" * 3
        + "a,2024-01-02T00:00:00Z,-1,umol/L\n"
        + "a,2024-01-02T00:00:00Z,x,umol/L\n"
    )
    u = tmp_path / "u.csv"
    u.write_text(
        "patient_id,start,end,volume_ml\n"
        "a,2024-01-01T00:00:00Z,2024-01-01T01:00:00Z,-5\n"
        "a,2024-01-01T01:00:00Z,2024-01-01T02:00:00Z,50\n"
        "a,2024-01-01T03:00:00Z,2024-01-01T02:00:00Z,50\n"
    )
    w = tmp_path / "w.csv"
    w.write_text("patient_id,time,weight_kg\na,2024-01-01T00:00:00Z,0\na,2024-01-01,70\n")
    r = tmp_path / "r.csv"
    r.write_text("patient_id,start\na,soon\n")
    out, summ, rej = tmp_path / "o.csv", tmp_path / "s.csv", tmp_path / "rej.csv"
    code, _, err = run("--creatinine", str(c), "--urine", str(u), "--weights", str(w),
                       "--rrt", str(r), "--out", str(out), "--summary", str(summ),
                       "--rejects", str(rej))  # fmt: skip
    assert code == 0, err
    got = [(row["file"], row["line"]) for row in read(rej)[1]]
    assert got == [(str(c), "5"), (str(c), "6"), (str(u), "2"), (str(u), "4"), (str(w), "2"),
                   (str(r), "2")]  # fmt: skip
    kinds = [line.split(" ")[0] for line in err.splitlines() if ": read " in line]
    assert kinds == ["creatinine", "urine", "weights", "rrt"]
    assert len(read(out)[1]) == 3 and read(summ)[1][0]["patient_id"] == "a"
    u.write_text("patient_id,start,volume_ml\n")
    code, _, err = run("--creatinine", str(c), "--urine", str(u), "--weights", str(w),
                       "--out", str(out), "--summary", str(summ))  # fmt: skip
    assert code == 1 and "missing column(s) end" in err


def test_rejects_default_next_to_out(tmp_path: Path) -> None:
    c = tmp_path / "c.csv"
    c.write_text("patient_id,time,value,unit\na,2024-01-01T00:00:00,-3,umol/L\n")
    out = tmp_path / "r.csv"
    code, _, err = run("--creatinine", str(c), "--out", str(out))
    assert code == 0
    default = tmp_path / "r.csv.rejects.csv"
    assert read(default)[1] == [{"file": str(c), "line": "2", "reason": "negative creatinine: -3"}]
    assert read(out)[1] == []


def test_urine_needs_weights_and_missing_column_is_an_error(tmp_path: Path) -> None:
    out = tmp_path / "r.csv"
    code, _, err = run("--creatinine", str(EX / "creatinine.csv"),
                       "--urine", str(EX / "urine.csv"), "--out", str(out))  # fmt: skip
    assert code == 2
    assert "--urine and --weights go together" in err
    bad = tmp_path / "bad.csv"
    bad.write_text("patient_id,time,value\n")
    code, _, err = run("--creatinine", str(bad), "--out", str(out))
    assert code == 1
    assert "missing column(s) unit" in err
