"""The HTML report: structure, ordering, escaping, caps, self-containment, plots from a store."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from trialsieve.demo.cohort import DEMO_AS_OF, build_demo_store, generate
from trialsieve.report.html import (
    aki_baseline_of,
    collect,
    dose_schedule,
    render_report,
    write_report,
)

EVIL = '<script>alert("x")</script>'


@dataclass
class FakeRun:
    """Shaped like trialsieve.screen.engine.ScreenRun (as_of, protocols, records, funnels)."""

    as_of: dt.datetime
    protocols: list[Any]
    records: list[dict[str, Any]]
    funnels: dict[str, dict[str, Any]] = field(default_factory=dict)


PROTOCOL = {
    "id": "NCT00000001",
    "title": "Test trial " + EVIL,
    "status": "RECRUITING",
    "phase": ["PHASE2"],
    "design": {
        "allocation": "NA",
        "model": "SINGLE_GROUP",
        "masking": "NONE",
        "enrolment": 50,
        "age": {"min_years": 18, "max_years": 75},
    },
    "arms": [
        {
            "name": "Cells",
            "type": "EXPERIMENTAL",
            "description": "",
            "interventions": [
                {
                    "name": "MSC",
                    "type": "DRUG",
                    "route": "intravenous",
                    "diluent": None,
                    "doses": [
                        {"amount": 1.0e6, "unit": "cells/kg", "days": [1, 14, 28]},
                        {"amount": 1.5e6, "unit": "cells/kg", "weeks": [8, 12, 16, 20, 24]},
                    ],
                }
            ],
        }
    ],
    "criteria": [
        {"id": "inc-1", "kind": "inclusion", "text": "Aged 18-75", "rule": {"age": {"min": 18}}},
        {
            "id": "inc-2",
            "kind": "inclusion",
            "text": "AKI",
            "rule": {"aki": {"condition": {"kdigo_stage": {"min": 1}},
                             "baseline": "lowest-3m-1y-mdrd75"}},
        },
        {"id": "inc-3", "kind": "inclusion", "text": "Consent", "manual": "consent"},
    ],
}  # fmt: skip


def _crit(cid: str, verdict: str, reason: str = "", **kw: Any) -> dict[str, Any]:
    return {"id": cid, "kind": "inclusion", "verdict": verdict, "text": f"text {cid}",
            "reason": reason, "evidence": [], **kw}  # fmt: skip


def _rec(pid: str, status: str, criteria: list[dict[str, Any]]) -> dict[str, Any]:
    return {"patient_id": pid, "trial_id": "NCT00000001", "status": status, "criteria": criteria}


def _records() -> list[dict[str, Any]]:
    ev = {"source": "Observation/o1", "code": "http://loinc.org|2160-0", "value": 115.0,
          "unit": "umol/L", "time": "2026-05-30T12:00:00Z"}  # fmt: skip
    return [
        _rec("p-needs", "needs_data", [_crit("inc-1", "unknown", "no birth date: order " + EVIL)]),
        _rec("p-inel", "ineligible", [_crit("inc-1", "not_met", "age 90 SECRET-INELIGIBLE")]),
        _rec(
            "p-elig",
            "potentially_eligible",
            [
                _crit("inc-1", "met", "age 40"),
                _crit("inc-2", "met", "creatinine rose", evidence=[ev]),
                _crit("inc-3", "manual", "manual check", manual="consent " + EVIL),
            ],
        ),
    ]


FUNNEL = {
    "trial_id": "NCT00000001",
    "title": "Test trial",
    "screened": 3,
    "steps": [
        {"criterion_id": "inc-1", "kind": "inclusion", "text": "Aged 18-75", "excluded": 1,
         "remaining": 2},
        {"criterion_id": "inc-2", "kind": "inclusion", "text": "AKI", "excluded": 0,
         "remaining": 2},
    ],
    "needs_data": 1,
    "needs_data_by": {"inc-1": 1},
    "potentially_eligible": 1,
    "per_criterion": [
        {"id": "inc-1", "kind": "inclusion", "met": 1, "not_met": 1, "unknown": 1, "manual": 0},
        {"id": "inc-2", "kind": "inclusion", "met": 1, "not_met": 0, "unknown": 0, "manual": 0},
    ],
}  # fmt: skip


def _run(records: list[dict[str, Any]] | None = None) -> FakeRun:
    return FakeRun(DEMO_AS_OF, [PROTOCOL], records or _records(), {"NCT00000001": FUNNEL})


def _assert_self_contained(html: str) -> None:
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.I)
    assert "<link" not in html.lower()
    assert not re.search(r"<script[^>]+src", html, re.I)
    assert "@import" not in html


def test_report_sections_order_and_escaping():
    html = render_report(_run())
    _assert_self_contained(html)
    # header: arms and dosing schedule
    assert "1\u00d710\u2076 cells/kg on days 1, 14, 28" in html
    assert "1.5\u00d710\u2076 cells/kg on weeks 8, 12, 16, 20, 24" in html
    assert "SINGLE_GROUP" in html and "PHASE2" in html and "age: 18-75 years" in html
    # escaping: the only <script> is our own toggle script
    assert EVIL not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    assert html.count("<script>") == 1
    # candidates: potentially eligible before needs data; ineligible counts only
    assert html.index('href="#trial-NCT00000001-p-elig"') < html.index(
        'href="#trial-NCT00000001-p-needs"'
    )
    assert "p-inel" not in html and "SECRET-INELIGIBLE" not in html
    assert "Ineligible for NCT00000001: 1 patients" in html
    # needs data: what to order
    assert "inc-1: no birth date: order" in html
    # evidence rows and manual checklist
    assert "Observation/o1" in html and "http://loinc.org|2160-0" in html and ">115<" in html
    assert "Check: consent" in html
    # funnel and per-criterion counts
    assert re.search(r"inc-1 <small>\(inclusion\)</small>", html)
    assert "inc-1: 1" in html
    assert html.count('<details class="patient"') == 2


def test_detail_and_list_caps_are_stated():
    recs = [
        _rec(f"p{i:03d}", "needs_data", [_crit("inc-1", "unknown", "no data")]) for i in range(7)
    ]
    html = render_report(_run(recs), max_details=2, max_candidates=5)
    assert html.count('<details class="patient"') == 2
    assert "first 2 of 7" in html and "cap 2 per trial" in html
    assert "Showing the first 5 of 7 candidates" in html
    assert "p006" not in html


def test_trial_baseline_and_dose_helpers():
    assert aki_baseline_of(PROTOCOL) == "lowest-3m-1y-mdrd75"
    assert aki_baseline_of({"criteria": [{"id": "inc-1", "rule": {"age": {"min": 1}}}]}) == "kdigo"
    assert dose_schedule({"amount": 1e6, "unit": "cells/kg", "days": [1, 4]}) == (
        "1\u00d710\u2076 cells/kg on days 1, 4"
    )


def test_write_report_with_plots_from_store(tmp_path: Path):
    store = tmp_path / "store"
    build_demo_store(store, n_patients=10)
    _, _, archetype = generate(10)
    pid = next(p for p, a in archetype.items() if a == "aki-severe")
    recs = [_rec(pid, "potentially_eligible", [_crit("inc-1", "met", "ok")])]
    out = tmp_path / "r" / "report.html"
    write_report(_run(recs), store, out)
    html = out.read_text("utf-8")
    _assert_self_contained(html)
    assert html.count("<svg") == 1
    assert 'class="baseline"' in html
    assert "baseline: lowest-3m-1y-mdrd75" in html  # the trial's own AKI baseline strategy
    assert re.search(r'<circle class="stage[23]"', html)


def test_report_from_real_screen_run(tmp_path: Path):
    loader = pytest.importorskip("trialsieve.protocols.loader")
    engine = pytest.importorskip("trialsieve.screen.engine")
    store = tmp_path / "store"
    build_demo_store(store, n_patients=40)
    protocols = loader.load_bundled()
    if not protocols:
        pytest.skip("no bundled protocol files yet")
    run = engine.screen_store(store, protocols, DEMO_AS_OF)
    out = tmp_path / "report.html"
    write_report(run, store, out)
    html = out.read_text("utf-8")
    _assert_self_contained(html)
    for p in protocols:
        assert f'id="trial-{p.id}"' in html
    assert "<svg" in html


def test_collect_keeps_only_the_first_candidates_but_counts_all():
    recs = [
        _rec(f"n{i:03d}", "needs_data", [_crit("inc-1", "unknown", "no data")]) for i in range(9)
    ]
    recs += [_rec("z-elig", "potentially_eligible", [_crit("inc-1", "met", "ok")])]
    recs += [_rec(f"x{i}", "ineligible", [_crit("inc-1", "not_met", "no")]) for i in range(4)]
    by_trial, patients = collect(_run(recs), keep=2)
    tr = by_trial["NCT00000001"]
    assert patients == 14
    assert tr.counts == {"needs_data": 9, "potentially_eligible": 1, "ineligible": 4}
    assert [r["patient_id"] for r in tr.candidates] == ["z-elig", "n000"]
