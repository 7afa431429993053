"""Inline SVG creatinine plots: geometry, colours, baseline, escaping, the staging query."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import duckdb
import pytest

from trialsieve.demo.cohort import DEMO_AS_OF, build_demo_store, generate
from trialsieve.report.plots import (
    HEIGHT,
    STAGE_COLOURS,
    CreatininePoint,
    creatinine_svg,
    load_creatinine_series,
    nice_ticks,
)
from trialsieve.store import open_store

T = dt.datetime(2026, 5, 30, 12, 0)


def _pt(hours: float, scr: float, stage: int, base: float | None = 80.0) -> CreatininePoint:
    return CreatininePoint(
        T + dt.timedelta(hours=hours),
        scr,
        stage,
        f"stage {stage}" if stage else None,
        base,
        "min-7d",
    )


def test_nice_ticks_cover_range_with_round_steps():
    ticks = nice_ticks(0, 263)
    assert ticks[0] == 0 and ticks[-1] >= 263
    steps = {round(b - a, 6) for a, b in zip(ticks, ticks[1:], strict=False)}
    assert steps == {50.0} or steps == {100.0}
    assert nice_ticks(0, 0.9)[-1] >= 0.9


def test_points_coloured_by_stage_and_baseline_dashed():
    pts = [_pt(0, 80, 0), _pt(20, 110, 1), _pt(30, 170, 2), _pt(40, 250, 3)]
    svg = creatinine_svg(pts, as_of=T + dt.timedelta(hours=48))
    circles = re.findall(r'<circle class="stage(\d)"[^>]*fill="([^"]+)"', svg)
    assert [int(s) for s, _ in circles] == [0, 1, 2, 3]
    assert [c for _, c in circles] == [STAGE_COLOURS[i] for i in range(4)]
    m = re.search(r'<line class="baseline"[^>]*y1="([\d.]+)"[^>]*stroke-dasharray', svg)
    assert m is not None
    # baseline 80 lies below the 250 point and above the axis
    base_y = float(m.group(1))
    ys = [float(v) for v in re.findall(r'<circle class="stage\d" cx="[\d.]+" cy="([\d.]+)"', svg)]
    assert ys[3] < base_y < HEIGHT
    assert abs(base_y - ys[0]) < 0.2  # the first point equals the baseline
    assert "baseline 80 (min-7d)" in svg
    assert "<title>2026-05-31 18:00 UTC: 170.0 umol/L, KDIGO stage 2 (stage 2)</title>" in svg


def test_later_points_right_of_earlier_points():
    pts = [_pt(h, 90 + h, 0) for h in (0, 5, 30)]
    svg = creatinine_svg(pts)
    xs = [float(v) for v in re.findall(r'<circle class="stage0" cx="([\d.]+)"', svg)]
    assert xs == sorted(xs) and xs[0] < xs[1] < xs[2]
    # proportional spacing: 5 h vs 25 h
    assert (xs[1] - xs[0]) * 5 == pytest.approx(xs[2] - xs[1], rel=1e-2)


def test_window_hides_old_points_and_says_so():
    old = [_pt(-24 * d, 75, 0) for d in (300, 150, 60)]
    recent = [_pt(0, 80, 0), _pt(24, 130, 1)]
    svg = creatinine_svg(old + recent, as_of=T + dt.timedelta(hours=30), window_days=14)
    assert svg.count('<circle class="stage') == 2
    assert "3 earlier result(s) not shown" in svg


def test_text_is_escaped_and_empty_series_is_explicit():
    svg = creatinine_svg([_pt(0, 80, 0)], title="<script>x</script>")
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    empty = creatinine_svg([], title="t")
    assert "no creatinine results" in empty and "<circle" not in empty


def test_no_baseline_no_line():
    svg = creatinine_svg([_pt(0, 80, 0, base=None), _pt(5, 82, 0, base=None)])
    assert 'class="baseline"' not in svg


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = tmp_path_factory.mktemp("plots") / "store"
    build_demo_store(store, n_patients=20)
    return store


def test_series_from_store_one_query_all_patients(demo_store: Path):
    _, _, archetype = generate(20)
    by_name = {v: k for k, v in archetype.items()}
    con = duckdb.connect()
    open_store(demo_store, con)
    ids = [by_name["aki-severe"], by_name["aki-mild"], by_name["background-no-labs"]]
    series = load_creatinine_series(con, ids, as_of=DEMO_AS_OF)
    assert set(series) == set(ids)
    severe, mild = series[ids[0]], series[ids[1]]
    assert max(p.stage for p in severe) >= 2
    assert max(p.stage for p in mild) == 1
    assert series[ids[2]] == []
    assert all(p.t <= DEMO_AS_OF for p in severe)
    assert [p.t for p in severe] == sorted(p.t for p in severe)
    # the trial-specific baseline strategy is passed through
    s2 = load_creatinine_series(con, ids[:1], as_of=DEMO_AS_OF, baseline="lowest-3m-1y-mdrd75")
    assert {p.baseline_source for p in s2[ids[0]] if p.stage} <= {"lowest-3m", "lowest-1y"}
    with pytest.raises(ValueError, match="unknown baseline"):
        load_creatinine_series(con, ids, as_of=DEMO_AS_OF, baseline="nonsense")
    # no helper views are left behind
    names = {r[0] for r in con.execute("SELECT view_name FROM duckdb_views()").fetchall()}
    assert not any(n.startswith("__report") for n in names)
