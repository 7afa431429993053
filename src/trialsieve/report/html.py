"""The screening report: one self-contained HTML file (inline CSS and SVG, no CDN, no scripts
from elsewhere), rendered with Jinja2 (autoescape on) from a screening run.

Per trial (issue 4, "The HTML report"): the protocol header (registry id, title, phase, design,
arms with their dosing schedule), the screening funnel (CONSORT-style attrition, Schulz KF et al.
CONSORT 2010 statement, BMJ 2010;340:c332, flow diagram; needs-data by criterion; the
per-criterion met / not met / unknown / manual table, like OHDSI ATLAS's attrition view), the
candidate list (potentially eligible first, then needs data with the data to order = the reasons
of their unknown criteria) and, per candidate, the criteria table with evidence rows and a
creatinine-over-time plot (KDIGO stage per point, baseline used; :mod:`trialsieve.report.plots`).
Ineligible patients appear as counts only. Per-patient detail is capped (``max_details`` per
trial, ``max_candidates`` rows in the list) so that a 100k-patient store still gives a small
file; the report says when a cap applied.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import duckdb
import jinja2
from markupsafe import Markup

from trialsieve.kidney.aki import BASELINES
from trialsieve.report.plots import CreatininePoint, creatinine_svg, load_creatinine_series
from trialsieve.store.reader import open_store

STATUS_ORDER = {"potentially_eligible": 0, "needs_data": 1, "ineligible": 2}
MAX_DETAILS = 100
MAX_CANDIDATES = 2000
SHORT_TEXT = 120


class RunLike(Protocol):
    """What the report needs from ``trialsieve.screen.engine.ScreenRun``."""

    as_of: dt.datetime
    protocols: Sequence[Any]
    records: Sequence[Mapping[str, Any]]
    funnels: Mapping[str, Mapping[str, Any]]


def _get(obj: Any, name: str, default: Any = None) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


def _plain(obj: Any) -> Any:
    """Pydantic models / dataclasses / mappings -> plain dicts and lists (for the template)."""
    if hasattr(obj, "model_dump"):
        return obj.model_dump()
    if isinstance(obj, Mapping):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if hasattr(obj, "__dict__") and not isinstance(obj, type):
        return {k: _plain(v) for k, v in vars(obj).items() if not k.startswith("_")}
    return obj


def _walk_rules(node: Any) -> Iterable[Mapping[str, Any]]:
    if isinstance(node, Mapping):
        yield node
        for v in node.values():
            yield from _walk_rules(v)
    elif isinstance(node, list | tuple):
        for v in node:
            yield from _walk_rules(v)


def aki_baseline_of(protocol: Any) -> str:
    """The baseline strategy named by the protocol's ``aki`` rules (docs/PROTOCOLS.md), else
    ``kdigo``; used so that the plot shows the baseline the trial's rule uses."""
    for crit in _get(protocol, "criteria", []) or []:
        for node in _walk_rules(_get(crit, "rule")):
            aki = node.get("aki")
            if isinstance(aki, Mapping):
                for sub in _walk_rules(aki):
                    b = sub.get("baseline")
                    if isinstance(b, str) and b in BASELINES:
                        return b
    return "kdigo"


_SUPERSCRIPT = str.maketrans(
    "-0123456789", "\u207b\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079"
)


def _amount(x: float) -> str:
    """1e6 -> '1×10⁶', 1.5e6 -> '1.5×10⁶', 250 -> '250' (how registries write cell doses)."""
    if x == 0 or 1e-3 <= abs(x) < 1e4:
        return f"{x:g}"
    mantissa, exp = f"{x:.3e}".split("e")
    return f"{float(mantissa):g}\u00d710{str(int(exp)).translate(_SUPERSCRIPT)}"


def dose_schedule(dose: Mapping[str, Any]) -> str:
    """'1×10⁶ cells/kg on days 1, 4, 8, 15' style text for one dose level."""
    amount = dose.get("amount")
    text = f"{_amount(amount)} {dose.get('unit', '')}".strip() if amount is not None else ""
    parts = []
    if dose.get("days"):
        parts.append("days " + ", ".join(str(d) for d in dose["days"]))
    if dose.get("weeks"):
        parts.append("weeks " + ", ".join(str(w) for w in dose["weeks"]))
    if parts:
        text += " on " + "; ".join(parts)
    if dose.get("label"):
        text = f"{dose['label']}: {text}"
    return text


def _num(v: Any) -> str:
    return f"{v:g}" if isinstance(v, int | float) else str(v)


def design_items(design: Mapping[str, Any]) -> list[str]:
    """'allocation: RANDOMIZED', 'masking: DOUBLE (PARTICIPANT, CARE_PROVIDER)', 'age: 18-65
    years' ... from a protocol's design block (docs/PROTOCOLS.md)."""
    items = []
    for key in ("allocation", "model", "masking", "purpose", "enrolment", "sex"):
        value = design.get(key)
        if value is None or value == "":
            continue
        text = f"{key}: {_num(value)}"
        if key == "masking" and design.get("masked_roles"):
            text += " (" + ", ".join(str(r) for r in design["masked_roles"]) + ")"
        items.append(text)
    age = design.get("age") or {}
    lo, hi = age.get("min_years"), age.get("max_years")
    if lo is not None or hi is not None:
        lo_s = _num(lo) if lo is not None else ""
        items.append(f"age: {lo_s}-{_num(hi)} years" if hi is not None else f"age: >= {lo_s} years")
    return items


def _fmt_value(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e6 else f"{v:.3e}"
    return str(v)


def _shorten(text: str, n: int = SHORT_TEXT) -> str:
    """The first ``n`` characters of a criterion text (the full text is in the trial tables)."""
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 3].rstrip() + "..."


def _to_missing(criteria: Sequence[Mapping[str, Any]]) -> list[str]:
    """What to order for a needs-data patient: each unknown automatic criterion and its reason."""
    out = []
    for c in criteria:
        if c.get("verdict") == "unknown":
            reason = c.get("reason") or "no data"
            out.append(f"{c.get('id')}: {reason}")
    return out


@dataclass
class _TrialResults:
    """One pass over the records: status counts and the candidates (ineligible: counts only)."""

    counts: Counter[str] = field(default_factory=Counter)
    candidates: list[Mapping[str, Any]] = field(default_factory=list)


def _candidate_key(r: Mapping[str, Any]) -> tuple[int, str]:
    return (STATUS_ORDER.get(str(r.get("status", "")), 9), str(r.get("patient_id")))


def collect(run: RunLike, keep: int = MAX_CANDIDATES) -> tuple[dict[str, _TrialResults], int]:
    """Per trial: status counts and the first ``keep`` candidates (potentially eligible first,
    then needs data, by patient id); and the number of patients screened.

    Streams ``run.iter_records()`` when the run offers it (the engine's ScreenRun does) and keeps
    at most ~2 x ``keep`` records per trial in memory, so a 100k-patient run stays small.
    """
    it = run.iter_records() if hasattr(run, "iter_records") else iter(run.records)
    out: dict[str, _TrialResults] = {}
    patients: set[str] = set()
    for r in it:
        tr = out.setdefault(str(r.get("trial_id")), _TrialResults())
        status = str(r.get("status"))
        tr.counts[status] += 1
        patients.add(str(r.get("patient_id")))
        if status in ("potentially_eligible", "needs_data"):
            tr.candidates.append(r)
            if len(tr.candidates) >= 2 * keep + 1:
                tr.candidates.sort(key=_candidate_key)
                del tr.candidates[keep:]
    for tr in out.values():
        tr.candidates.sort(key=_candidate_key)
        del tr.candidates[keep:]
    return out, len(patients)


def _trial_view(
    protocol: Any,
    funnel: Mapping[str, Any] | None,
    results: _TrialResults,
    *,
    max_details: int,
    max_candidates: int,
) -> dict[str, Any]:
    trial_id = _get(protocol, "id")
    counts = results.counts
    candidates = results.candidates
    rows = []
    for r in candidates[:max_candidates]:
        crit = r.get("criteria") or []
        rows.append(
            {
                "patient_id": r.get("patient_id"),
                "status": r.get("status"),
                "missing": _to_missing(crit),
                "manual": [c.get("id") for c in crit if c.get("verdict") == "manual"],
            }
        )
    details = []
    for r in candidates[:max_details]:
        crit, cleared = [], []
        for c in r.get("criteria") or []:
            evidence = c.get("evidence") or []
            if c.get("kind") == "exclusion" and c.get("verdict") == "not_met" and not evidence:
                cleared.append(c.get("id"))
                continue
            crit.append(
                {
                    **c,
                    "short_text": _shorten(str(c.get("text") or "")),
                    "evidence": [{**e, "value_fmt": _fmt_value(e.get("value"))} for e in evidence],
                }
            )
        details.append(
            {
                "patient_id": r.get("patient_id"),
                "status": r.get("status"),
                "criteria": crit,
                "cleared": cleared,
            }
        )
    design = _plain(_get(protocol, "design")) or {}
    arms = _plain(_get(protocol, "arms")) or []
    for arm in arms:
        for itv in arm.get("interventions") or []:
            itv["schedule"] = [dose_schedule(d) for d in itv.get("doses") or []]
    return {
        "id": trial_id,
        "anchor": f"trial-{trial_id}",
        "title": _get(protocol, "title", ""),
        "status": _get(protocol, "status", ""),
        "phase": ", ".join(_get(protocol, "phase", None) or []),
        "design": design,
        "design_items": design_items(design),
        "arms": arms,
        "funnel": funnel or {},
        "counts": {
            "screened": sum(counts.values()),
            "potentially_eligible": counts.get("potentially_eligible", 0),
            "needs_data": counts.get("needs_data", 0),
            "ineligible": counts.get("ineligible", 0),
        },
        "candidates": rows,
        "candidates_total": counts.get("potentially_eligible", 0) + counts.get("needs_data", 0),
        "details": details,
        "baseline": aki_baseline_of(protocol),
        "crit_text": {
            str(_get(c, "id")): str(_get(c, "text", "")) for c in _get(protocol, "criteria", [])
        },
    }


def _environment() -> jinja2.Environment:
    templates = resources.files("trialsieve.report") / "templates"
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates)),
        autoescape=True,
        undefined=jinja2.ChainableUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pct"] = lambda n, d: f"{100.0 * n / d:.0f}" if d else "0"
    return env


def render_report(
    run: RunLike,
    plots: Mapping[tuple[str, str], str] | None = None,
    *,
    store_label: str = "",
    max_details: int = MAX_DETAILS,
    max_candidates: int = MAX_CANDIDATES,
    collected: tuple[dict[str, _TrialResults], int] | None = None,
) -> str:
    """The report's HTML text. ``plots`` maps (trial_id, patient_id) to an SVG string made by
    :func:`trialsieve.report.plots.creatinine_svg` (trusted markup; everything else escaped)."""
    if collected is None:
        collected = collect(run, keep=max(max_details, max_candidates))
    by_trial, patients = collected
    trials = [
        _trial_view(
            p,
            run.funnels.get(_get(p, "id")),
            by_trial.get(str(_get(p, "id")), _TrialResults()),
            max_details=max_details,
            max_candidates=max_candidates,
        )
        for p in run.protocols
    ]
    svg = {k: Markup(v) for k, v in (plots or {}).items()}
    return (
        _environment()
        .get_template("report.html.j2")
        .render(
            as_of=run.as_of,
            store_label=store_label,
            trials=trials,
            plots=svg,
            patients=patients,
            max_details=max_details,
            max_candidates=max_candidates,
        )
    )


def build_plots(
    run: RunLike,
    store_dir: Path,
    *,
    max_details: int = MAX_DETAILS,
    collected: tuple[dict[str, _TrialResults], int] | None = None,
) -> dict[tuple[str, str], str]:
    """Creatinine SVGs for the detailed candidates of every trial: one staging query per
    baseline strategy for all of them (KDIGO default; a trial's own ``aki`` baseline if any)."""
    by_trial, _ = collected if collected is not None else collect(run, keep=max_details)
    wanted: dict[str, list[tuple[str, str]]] = {}
    for p in run.protocols:
        tid = str(_get(p, "id"))
        recs = by_trial.get(tid, _TrialResults()).candidates[:max_details]
        wanted.setdefault(aki_baseline_of(p), []).extend(
            (tid, str(r.get("patient_id"))) for r in recs
        )
    out: dict[tuple[str, str], str] = {}
    if not any(wanted.values()):
        return out
    con = duckdb.connect()
    try:
        open_store(store_dir, con)
        for baseline, keys in wanted.items():
            series: dict[str, list[CreatininePoint]] = load_creatinine_series(
                con, sorted({pid for _, pid in keys}), as_of=run.as_of, baseline=baseline
            )
            for tid, pid in keys:
                out[(tid, pid)] = creatinine_svg(
                    series.get(pid, []),
                    as_of=run.as_of,
                    title=f"Serum creatinine, KDIGO stage per result (baseline: {baseline})",
                )
    finally:
        con.close()
    return out


def write_report(
    run: RunLike,
    store_dir: Path,
    out: Path,
    *,
    max_details: int = MAX_DETAILS,
    max_candidates: int = MAX_CANDIDATES,
) -> None:
    """Write the self-contained HTML report of ``run`` (screened on ``store_dir``) to ``out``."""
    collected = collect(run, keep=max(max_details, max_candidates))
    plots = build_plots(run, Path(store_dir), max_details=max_details, collected=collected)
    html = render_report(
        run,
        plots,
        store_label=str(store_dir),
        max_details=max_details,
        max_candidates=max_candidates,
        collected=collected,
    )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html, encoding="utf-8")
