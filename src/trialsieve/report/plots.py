"""Creatinine-over-time plots as inline SVG (pure Python, no plotting library).

Each point is a serum creatinine result coloured by its KDIGO AKI stage (KDIGO 2012 Clinical
Practice Guideline for Acute Kidney Injury, Kidney Int Suppl 2012;2:1-138, section 2.1: stage 1
= rise >= 26.5 umol/L within 48 h or 1.5-1.9 x baseline, stage 2 = 2.0-2.9 x, stage 3 = >= 3.0 x
or >= 353.6 umol/L with an acute rise); the stages and baselines come from
:func:`trialsieve.kidney.aki.creatinine_stages_sql` (creatinine rules only: RRT and urine output
are not drawn), run once for all patients of a report. The dashed line is the baseline creatinine
the staging used at the patient's highest-stage (else latest) result, labelled with its strategy.

:func:`load_creatinine_series` does the I/O (one DuckDB query per baseline strategy);
:func:`creatinine_svg` is a pure function from points to SVG text (every text node escaped).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

import duckdb
import pyarrow as pa

from trialsieve.kidney.aki import BASELINES, creatinine_stages_sql
from trialsieve.screen.kidney_tables import creatinine_series_sql

#: fill colour per KDIGO stage (0 = no AKI)
STAGE_COLOURS: dict[int, str] = {0: "#6b7280", 1: "#eab308", 2: "#ea580c", 3: "#b91c1c"}

WIDTH, HEIGHT = 600, 230
_ML, _MR, _MT, _MB = 56, 16, 34, 40  # margins: left, right, top, bottom


@dataclass(frozen=True)
class CreatininePoint:
    """One staged creatinine result."""

    t: dt.datetime
    scr: float  # umol/L
    stage: int  # KDIGO 0-3
    reason: str | None
    baseline: float | None  # umol/L, the baseline used for this result
    baseline_source: str | None


def _utc_naive(t: dt.datetime) -> dt.datetime:
    """The store's time convention: UTC without zone."""
    return t.astimezone(dt.UTC).replace(tzinfo=None) if t.tzinfo else t


def load_creatinine_series(
    con: duckdb.DuckDBPyConnection,
    patient_ids: Sequence[str],
    *,
    as_of: dt.datetime,
    baseline: str = "kdigo",
) -> dict[str, list[CreatininePoint]]:
    """Staged creatinine results up to ``as_of`` for ``patient_ids`` (views from ``open_store``).

    One query for all patients: the creatinine events (analyte ``creatinine``, umol/L) of the
    listed patients go through ``creatinine_stages_sql`` with the ``patients`` view (needed by
    the ``lowest-3m-1y-mdrd75`` MDRD back-calculation).
    """
    if baseline not in BASELINES:
        raise ValueError(f"unknown baseline strategy {baseline!r} (one of {', '.join(BASELINES)})")
    out: dict[str, list[CreatininePoint]] = {pid: [] for pid in patient_ids}
    if not patient_ids:
        return out
    ids = pa.table({"patient_id": pa.array(list(dict.fromkeys(patient_ids)), pa.string())})
    con.register("__report_ids", ids)
    try:
        cutoff = _utc_naive(as_of).isoformat(sep=" ")
        con.execute(
            "CREATE OR REPLACE TEMP VIEW __report_creat AS "
            + creatinine_series_sql(
                "JOIN __report_ids i USING (patient_id)", f"TIMESTAMP '{cutoff}'"
            )
        )
        con.execute(
            """
            CREATE OR REPLACE TEMP VIEW __report_pat AS
            SELECT p.patient_id, p.birth_date, p.sex
            FROM patients p JOIN __report_ids i USING (patient_id)
            """
        )
        sql = creatinine_stages_sql(
            "__report_creat", patients="__report_pat", baseline=baseline, bounds=True
        )
        rows = con.execute(
            f"SELECT patient_id, t, scr, kdigo_stage, kdigo_reason, baseline_umol_l, "
            f"baseline_source FROM ({sql}) s ORDER BY patient_id, t, rid"
        ).fetchall()
    finally:
        con.execute("DROP VIEW IF EXISTS __report_creat")
        con.execute("DROP VIEW IF EXISTS __report_pat")
        con.unregister("__report_ids")
    for pid, t, scr, stage, reason, base, source in rows:
        out[pid].append(
            CreatininePoint(t, float(scr), int(stage or 0), reason, base, source)  # type: ignore[arg-type]
        )
    return out


def nice_ticks(low: float, high: float, n: int = 5) -> list[float]:
    """Round tick values covering [low, high] (1-2-5 steps, Heckbert's "nice numbers")."""
    if not math.isfinite(low) or not math.isfinite(high) or high <= low:
        high = low + 1.0
    raw = (high - low) / max(n - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(low / step) * step
    ticks = []
    v = start
    while v <= high + step * 1e-9:
        ticks.append(round(v, 10))
        v += step
    if ticks[-1] < high:
        ticks.append(round(ticks[-1] + step, 10))
    return ticks


def _time_ticks(t0: dt.datetime, t1: dt.datetime) -> list[tuple[dt.datetime, str]]:
    span = (t1 - t0).total_seconds()
    if span <= 3 * 86400:
        step, fmt = dt.timedelta(hours=12 if span > 86400 else 6), "%d %b %H:%M"
    elif span <= 40 * 86400:
        step, fmt = dt.timedelta(days=max(1, round(span / 86400 / 6))), "%d %b"
    else:
        step, fmt = dt.timedelta(days=max(30, round(span / 86400 / 6))), "%b %Y"
    first = t0.replace(hour=0, minute=0, second=0, microsecond=0)
    ticks: list[tuple[dt.datetime, str]] = []
    t = first
    while t <= t1:
        if t >= t0:
            ticks.append((t, t.strftime(fmt)))
        t += step
    return ticks


def _used_baseline(points: Sequence[CreatininePoint]) -> CreatininePoint | None:
    """The point whose baseline is drawn: the highest stage (latest among equals), else latest."""
    with_base = [p for p in points if p.baseline is not None]
    if not with_base:
        return None
    return max(with_base, key=lambda p: (p.stage, p.t))


def creatinine_svg(
    points: Sequence[CreatininePoint],
    *,
    as_of: dt.datetime | None = None,
    window_days: float = 14.0,
    title: str = "Serum creatinine",
) -> str:
    """An inline ``<svg>`` of ``points``; the last ``window_days`` before ``as_of`` when that
    window holds at least two results (the axis starts just before the first of them; earlier
    results are counted in a note), else all of them."""
    pts = sorted(points, key=lambda p: p.t)
    if not pts:
        return (
            f'<svg class="plot" width="{WIDTH}" height="40" '
            f'role="img"><text x="8" y="24" font-size="13">{escape(title)}: '
            "no creatinine results</text></svg>"
        )
    end = as_of or pts[-1].t
    recent = [p for p in pts if p.t >= end - dt.timedelta(days=window_days)]
    hidden = 0
    if len(recent) >= 2 and len(recent) < len(pts):
        hidden = len(pts) - len(recent)
        shown = recent
        pad = max((end - recent[0].t) * 0.06, dt.timedelta(hours=1))
        t0 = max(end - dt.timedelta(days=window_days), recent[0].t - pad)
    else:
        shown = pts
        t0 = pts[0].t - max((end - pts[0].t) * 0.03, dt.timedelta(hours=1))
    t1 = max(end, shown[-1].t)
    if t1 <= t0:
        t0 = t1 - dt.timedelta(hours=12)
    used = _used_baseline(shown) or _used_baseline(pts)
    ys = [p.scr for p in shown] + ([used.baseline] if used and used.baseline else [])
    yticks = nice_ticks(0.0, max(ys) * 1.08)
    ymax = yticks[-1]
    pw, ph = WIDTH - _ML - _MR, HEIGHT - _MT - _MB
    span = (t1 - t0).total_seconds()

    def x(t: dt.datetime) -> float:
        return _ML + pw * (t - t0).total_seconds() / span

    def y(v: float) -> float:
        return _MT + ph * (1 - v / ymax)

    out = [
        f'<svg class="plot" width="{WIDTH}" '
        f'height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}" font-family="sans-serif" font-size="11">',
        f'<text x="4" y="14" font-size="12" font-weight="bold">{escape(title)}</text>',
        f'<text x="{_ML - 6}" y="{_MT - 10}" text-anchor="end">umol/L</text>',
    ]
    if hidden:
        out.append(
            f'<text x="{WIDTH - _MR}" y="{_MT - 10}" text-anchor="end" fill="#4b5563">'
            f"last {window_days:g} days shown; {hidden} earlier result(s) not shown</text>"
        )
    for v in yticks:
        yy = y(v)
        out.append(
            f'<line x1="{_ML}" y1="{yy:.1f}" x2="{WIDTH - _MR}" y2="{yy:.1f}" stroke="#e5e7eb"/>'
            f'<text x="{_ML - 6}" y="{yy + 4:.1f}" text-anchor="end">{v:g}</text>'
        )
    for t, label in _time_ticks(t0, t1):
        xx = x(t)
        if xx > WIDTH - 36:  # a centred label would be cut at the right edge
            continue
        out.append(
            f'<line x1="{xx:.1f}" y1="{_MT + ph}" x2="{xx:.1f}" y2="{_MT + ph + 4}" '
            f'stroke="#374151"/><text x="{xx:.1f}" y="{_MT + ph + 16}" '
            f'text-anchor="middle">{escape(label)}</text>'
        )
    out.append(
        f'<line x1="{_ML}" y1="{_MT + ph}" x2="{WIDTH - _MR}" y2="{_MT + ph}" stroke="#374151"/>'
        f'<line x1="{_ML}" y1="{_MT}" x2="{_ML}" y2="{_MT + ph}" stroke="#374151"/>'
    )
    if used is not None and used.baseline is not None:
        yy = y(used.baseline)
        label = f"baseline {used.baseline:.0f} ({used.baseline_source or 'unknown source'})"
        out.append(
            f'<line class="baseline" x1="{_ML}" y1="{yy:.1f}" x2="{WIDTH - _MR}" y2="{yy:.1f}" '
            f'stroke="#2563eb" stroke-dasharray="6 4" stroke-width="1.5"/>'
            f'<text x="{WIDTH - _MR - 4}" y="{yy - 4:.1f}" text-anchor="end" fill="#2563eb">'
            f"{escape(label)}</text>"
        )
    if len(shown) > 1:
        path = " ".join(f"{x(p.t):.1f},{y(p.scr):.1f}" for p in shown)
        out.append(f'<polyline points="{path}" fill="none" stroke="#9ca3af" stroke-width="1"/>')
    for p in shown:
        colour = STAGE_COLOURS.get(p.stage, STAGE_COLOURS[3])
        tip = f"{p.t:%Y-%m-%d %H:%M} UTC: {p.scr:.1f} umol/L, KDIGO stage {p.stage}"
        if p.reason:
            tip += f" ({p.reason})"
        out.append(
            f'<circle class="stage{p.stage}" cx="{x(p.t):.1f}" cy="{y(p.scr):.1f}" r="4" '
            f'fill="{colour}" stroke="#111827" stroke-width="0.5"><title>{escape(tip)}</title>'
            "</circle>"
        )
    lx = _ML
    for stage, colour in STAGE_COLOURS.items():
        out.append(
            f'<circle cx="{lx + 5}" cy="{HEIGHT - 8}" r="4" fill="{colour}"/>'
            f'<text x="{lx + 12}" y="{HEIGHT - 4}">{"no AKI" if stage == 0 else f"stage {stage}"}'
            "</text>"
        )
        lx += 70
    out.append("</svg>")
    return "".join(out)
