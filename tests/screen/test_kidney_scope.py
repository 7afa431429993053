"""The AKI rule's kidney tables per window (screen/kidney_tables.py): only patients with a
creatinine result or a urine period in the rule's window are staged, each with the whole
history the baselines read; rules over other windows get their own tables. The verdicts,
reasons and evidence are those of staging everyone."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from statements import Created
from storekit import AS_OF, crit, lab, oliguria, person, protocol

from trialsieve.screen.compile import Compiler
from trialsieve.screen.engine import screen_store

MakeStore = Callable[[list[dict], list[dict]], Path]


def _rise(pid: str, base_days_ago: float, rise_days_ago: float) -> list[dict[str, Any]]:
    """Creatinine 50 umol/L, then 120 (x2.4 the day 8-365 median: KDIGO stage 2)."""
    return [
        lab(pid, "creatinine", 50.0, "umol/L", days_ago=base_days_ago),
        lab(pid, "creatinine", 120.0, "umol/L", days_ago=rise_days_ago),
    ]


def test_each_window_stages_its_patients_with_their_whole_history(
    make_store: MakeStore,
) -> None:
    born = dt.date(1960, 1, 1)
    patients = [person(p, born) for p in ("recent", "older", "urine", "old_urine", "none")]
    events = (
        _rise("recent", 60, 3)  # baseline 57 days before the rise: outside every window below
        + _rise("older", 100, 20)
        + oliguria("urine", 8, days_ago=2)
        + oliguria("old_urine", 8, days_ago=20)
        + [lab("none", "creatinine", 50.0, "umol/L", days_ago=200)]
    )
    stage = {"kdigo_stage": {"min": 1}}
    rules = {
        "exc-7d": {"aki": {"condition": stage, "onset_within": {"days": 7}}},
        "exc-30d": {"aki": {"condition": stage, "onset_within": {"days": 30}}},
        "exc-ever": {"aki": {"condition": stage, "onset_within": "ever"}},
        "exc-egfr": {
            "egfr": {
                "equation": "ckd-epi-2021",
                "from": "aki_baseline",
                "op": "<",
                "value": 200,
                "window": {"days": 7},
            }
        },  # fmt: skip
    }
    store = make_store(patients, events)
    run = screen_store(store, [protocol([crit(c, r) for c, r in rules.items()])], AS_OF)
    got = {r["patient_id"]: {c["id"]: c for c in r["criteria"]} for r in run.records}
    verdicts = {p: {c: x["verdict"] for c, x in cs.items()} for p, cs in got.items()}
    assert verdicts == {
        "recent": {"exc-7d": "met", "exc-30d": "met", "exc-ever": "met", "exc-egfr": "met"},
        "older": {"exc-7d": "unknown", "exc-30d": "met", "exc-ever": "met",
                  "exc-egfr": "unknown"},
        "urine": {"exc-7d": "met", "exc-30d": "met", "exc-ever": "met", "exc-egfr": "unknown"},
        "old_urine": {"exc-7d": "unknown", "exc-30d": "met", "exc-ever": "met",
                      "exc-egfr": "unknown"},
        "none": {"exc-7d": "unknown", "exc-30d": "unknown", "exc-ever": "not_met",
                 "exc-egfr": "unknown"},
    }  # fmt: skip
    # the 7-day rule read the baseline 57 days before the rise (from the patient's whole
    # series), as the unrestricted rule did
    for rule in ("exc-7d", "exc-ever"):
        c = got["recent"][rule]
        assert "(stage 2)" in c["reason"] and "median-8-365d" in c["reason"]
        assert [e["value"] for e in c["evidence"]] == [120.0]
    assert "urine output < 0.5 mL/kg/h" in got["urine"]["exc-7d"]["reason"]
    assert got["urine"]["exc-7d"]["reason"] == got["urine"]["exc-ever"]["reason"]
    assert got["older"]["exc-30d"]["reason"] == got["older"]["exc-ever"]["reason"]


def test_windows_that_round_alike_get_tables_of_their_own() -> None:
    from trialsieve.screen.backend import DuckDBBackend
    from trialsieve.screen.kidney_tables import KidneyTables
    from trialsieve.screen.sql import Window

    kt = KidneyTables(DuckDBBackend(), AS_OF)
    week, near, ever = Window(604800.0, "7 days"), Window(604800.2, "~7 days"), Window(None, "")
    names = [kt._scope(w) for w in (week, near, ever, week, near)]
    assert names[:3] == ["_604800s", "_604800s_1", "_ever"]
    assert names[3:] == names[:2]  # the same window, the same tables


def test_the_series_is_read_with_the_measurements_a_year_and_a_day_back(
    make_store: MakeStore, monkeypatch: pytest.MonkeyPatch, created: Created
) -> None:
    """The AKI staging of a window reads its creatinine series from the run's measurement
    results, which the pass selects from a year and a day before the window for it (another
    rule reads only the last 90 days of creatinine): a baseline 360 days before the rise is
    read, and the records equal those of the series read from the events."""
    born = dt.date(1960, 1, 1)
    patients = [person(p, born) for p in ("year", "months")]
    events = _rise("year", 366, 6) + _rise("months", 120, 2)
    rules = {
        "exc-aki": {"aki": {"condition": {"kdigo_stage": {"min": 1}}}},
        "inc-egfr": {"egfr": {"op": ">=", "value": 10, "window": {"days": 90}}},
    }
    store = make_store(patients, events)
    proto = protocol([crit(c, r) for c, r in rules.items()])

    def screened() -> tuple[list[dict[str, Any]], int]:
        created.clear()
        records = screen_store(store, [proto], AS_OF).records
        return records, created.event_reads("creatinine")

    records, reads = screened()
    assert reads == 1  # the measurements pass alone
    got = {r["patient_id"]: {c["id"]: c for c in r["criteria"]} for r in records}
    for pid in ("year", "months"):
        aki = got[pid]["exc-aki"]
        assert aki["verdict"] == "met" and "median-8-365d" in aki["reason"], aki
        assert "baseline 50.00 umol/L" in aki["evidence"][0]["note"]
    monkeypatch.setattr(Compiler, "series_windows", lambda self, rules: [])
    from_events, reads = screened()
    assert reads == 2
    assert from_events == records
