"""End-to-end ``trialsieve demo``: store, results.jsonl, report.html, funnels printed."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from trialsieve.cli.main import cli
from trialsieve.demo.cohort import build_demo_store


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    loader = pytest.importorskip("trialsieve.protocols.loader")
    pytest.importorskip("trialsieve.screen.engine")
    if not loader.load_bundled():
        pytest.skip("no bundled protocol files yet")
    out = tmp_path_factory.mktemp("demo") / "out"
    res = CliRunner().invoke(cli, ["demo", "--out", str(out), "--patients", "150"])
    assert res.exit_code == 0, res.output + repr(res.exception)
    return out, res.output


def test_outputs_written_and_funnels_printed(demo_run: tuple[Path, str]):
    out, output = demo_run
    assert (out / "store" / "patients.parquet").exists()
    html = (out / "report.html").read_text("utf-8")
    assert "<svg" in html
    for trial in ("NCT06954740", "NCT06969807", "NCT04194671", "NCT07240987"):
        assert trial in output and f'id="trial-{trial}"' in html
    assert "screened" in output and "potentially eligible" in output
    assert str(out / "report.html") in output


def test_every_trial_has_each_status(demo_run: tuple[Path, str]):
    out, _ = demo_run
    recs = [json.loads(line) for line in (out / "results.jsonl").read_text("utf-8").splitlines()]
    by_trial: dict[str, Counter[str]] = {}
    for r in recs:
        by_trial.setdefault(r["trial_id"], Counter())[r["status"]] += 1
    assert len(by_trial) == 4
    for trial, counts in by_trial.items():
        assert sum(counts.values()) == 150, trial
        for status in ("potentially_eligible", "needs_data", "ineligible"):
            assert counts[status] >= 1, (trial, counts)


def test_rerun_replaces_demo_store_but_refuses_foreign_store(
    demo_run: tuple[Path, str], tmp_path: Path
):
    out = tmp_path / "again"
    build_demo_store(out / "store", n_patients=30)  # an earlier, larger demo run
    res = CliRunner().invoke(cli, ["demo", "--out", str(out), "--patients", "20"])
    assert res.exit_code == 0, res.output
    assert "20 patients" in res.output
    assert pq.read_metadata(out / "store" / "patients.parquet").num_rows == 20
    foreign = tmp_path / "f"
    (foreign / "store").mkdir(parents=True)
    (foreign / "store" / "manifest.json").write_text('{"datasets": {"hospital": {}}}')
    res = CliRunner().invoke(cli, ["demo", "--out", str(foreign)])
    assert res.exit_code != 0 and "not a demo store" in res.output
    assert (foreign / "store" / "manifest.json").exists()


# (trial, archetype) -> status the bundled protocols must give (see the cohort's docstring)
T1, T2, T3, T4 = "NCT06954740", "NCT06969807", "NCT04194671", "NCT07240987"
PE, ND, IN = "potentially_eligible", "needs_data", "ineligible"
EXPECTED = {
    (T1, "aki-severe"): PE, (T1, "aki-mild"): PE, (T1, "aki-oliguric"): PE,
    (T1, "aki-no-baseline"): PE, (T1, "aki-age-18-today"): PE, (T1, "aki-age-75-today"): PE,
    (T1, "aki-platelets-50"): PE, (T1, "aki-prednisone-7d"): PE,
    (T1, "aki-missing-labs"): ND, (T1, "aki-unknown-age"): ND,
    (T1, "aki-age-78"): IN, (T1, "aki-dialysis"): IN, (T1, "aki-prednisone-8d"): IN,
    (T1, "aki-platelets-40"): IN, (T1, "aki-ast-high"): IN, (T1, "aki-alt-high"): IN,
    (T1, "aki-malignancy"): IN,
    (T1, "aki-hepatitis-b"): IN, (T1, "aki-cerebral-infarction"): IN, (T1, "aki-hb-low"): IN,
    (T3, "aki-severe"): PE, (T3, "aki-oliguric"): PE, (T3, "aki-age-18-today"): PE,
    (T3, "aki-missing-labs"): ND,
    (T3, "aki-mild"): IN, (T3, "aki-age-70"): IN, (T3, "aki-ckd-pre"): IN,
    (T3, "aki-platelets-20"): IN, (T3, "aki-lvef-35"): IN, (T3, "aki-ventilated"): IN,
    (T3, "aki-anca-vasculitis"): IN, (T3, "aki-liver-failure"): IN,
    (T2, "dkd"): PE, (T2, "dkd-age-80-today"): PE,
    (T2, "dkd-missing-hba1c"): ND, (T2, "dkd-missing-uacr-protein"): ND,
    (T2, "dkd-uacr-1000"): IN, (T2, "dkd-hba1c-9.0"): IN, (T2, "dkd-egfr-17"): IN,
    (T2, "dkd-protein-not-continuous"): IN, (T2, "dkd-bp-172-104"): IN,
    (T2, "dkd-atrial-fibrillation"): IN, (T2, "dkd-ldl-4.6"): IN, (T2, "dkd-hbv-dna"): IN,
    (T2, "dkd-iv-antibiotic"): IN, (T2, "dkd-mycophenolate"): IN, (T2, "dkd-type1-only"): IN,
    (T4, "dkd"): PE, (T4, "htn-nephropathy"): PE, (T4, "dkd-egfr-17"): PE,
    (T4, "htn-missing-markers"): ND, (T4, "dkd-missing-uacr-protein"): ND,
    (T4, "htn-uacr-300"): IN, (T4, "dkd-egfr-12"): IN, (T4, "dkd-hb-28"): IN,
    (T4, "dkd-transfusion"): IN, (T4, "htn-adpkd"): IN, (T4, "htn-kidney-transplant"): IN,
    (T4, "htn-pneumonia"): IN, (T4, "dkd-cea-12"): IN, (T4, "dkd-pulmonary-embolism"): IN,
    (T4, "htn-opioid-dependence"): IN,
}  # fmt: skip


def test_archetypes_get_their_status(demo_run: tuple[Path, str]):
    from trialsieve.demo.cohort import ARCHETYPES, generate

    out, _ = demo_run
    _, _, archetype = generate(150)
    # the first len(ARCHETYPES) patients are one of each archetype, in order
    first = {archetype[f"demo-p{i:04d}"]: f"demo-p{i:04d}" for i in range(1, len(ARCHETYPES) + 1)}
    status = {}
    for line in (out / "results.jsonl").read_text("utf-8").splitlines():
        r = json.loads(line)
        status[(r["trial_id"], r["patient_id"])] = r["status"]
    wrong = {
        k: status[(k[0], first[k[1]])]
        for k, want in EXPECTED.items()
        if status[(k[0], first[k[1]])] != want
    }
    assert not wrong, wrong
