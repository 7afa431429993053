"""The screening funnel per trial (CONSORT-style attrition, as ATLAS's attrition view).

Each ineligible patient is attributed to the first failing criterion in protocol order (an
inclusion ``not_met`` or an exclusion ``met``); the rest are ``needs_data`` (counted per unknown
criterion, a patient may count under several) or ``potentially_eligible``. A per-criterion table
gives met / not met / unknown / manual counts over all screened patients.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from trialsieve.screen.backend import Backend
from trialsieve.screen.sql import MANUAL, MET, NOT_MET, UNKNOWN


def compute_funnels(backend: Backend, protocols: Sequence[Any]) -> dict[str, dict]:
    """Funnels from the engine's ``__verdicts``/``__meta``/``__results`` tables."""
    n_pop = int(backend.rows("SELECT count(*) FROM pop")[0][0])
    kinds = [(p.id, i, c.kind) for p in protocols for i, c in enumerate(p.criteria)]
    backend.register(
        "__kinds",
        pa.table(
            {
                "trial_id": [k[0] for k in kinds],
                "idx": pa.array([k[1] for k in kinds], pa.int32()),
                "kind": [k[2] for k in kinds],
            }
        ),
    )
    first_fail = dict(
        ((t, i), n)
        for t, i, n in backend.rows(
            f"""SELECT trial_id, first, count(*) FROM (
                SELECT v.trial_id, v.patient_id, min(v.idx) FILTER (WHERE
                    (m.kind = 'inclusion' AND v.v = {NOT_MET})
                    OR (m.kind = 'exclusion' AND v.v = {MET})) AS first
                FROM __verdicts v JOIN __kinds m ON m.trial_id = v.trial_id AND m.idx = v.idx
                GROUP BY v.trial_id, v.patient_id)
            WHERE first IS NOT NULL GROUP BY trial_id, first"""
        )
    )
    counts = {
        (t, i): (met, nm, unk, man)
        for t, i, met, nm, unk, man in backend.rows(
            f"""SELECT trial_id, idx, count_if(v = {MET}), count_if(v = {NOT_MET}),
                       count_if(v = {UNKNOWN}), count_if(v = {MANUAL})
                FROM __verdicts GROUP BY trial_id, idx"""
        )
    }
    needs_by = dict(
        ((t, i), n)
        for t, i, n in backend.rows(
            f"""SELECT v.trial_id, v.idx, count(*) FROM __verdicts v
                JOIN __results r ON r.trial_id = v.trial_id AND r.patient_id = v.patient_id
                WHERE r.status = 'needs_data' AND v.v = {UNKNOWN} GROUP BY v.trial_id, v.idx"""
        )
    )
    status = {
        (t, s): n
        for t, s, n in backend.rows(
            "SELECT trial_id, status, count(*) FROM __results GROUP BY trial_id, status"
        )
    }
    funnels: dict[str, dict] = {}
    for proto in protocols:
        remaining = n_pop
        steps, per_crit, needs = [], [], {}
        for idx, crit in enumerate(proto.criteria):
            excluded = first_fail.get((proto.id, idx), 0)
            remaining -= excluded
            steps.append(
                {
                    "criterion_id": crit.id,
                    "kind": crit.kind,
                    "text": crit.text,
                    "excluded": excluded,
                    "remaining": remaining,
                }
            )
            met, nm, unk, man = counts.get((proto.id, idx), (0, 0, 0, 0))
            per_crit.append(
                {"id": crit.id, "kind": crit.kind, "met": met, "not_met": nm,
                 "unknown": unk, "manual": man}
            )  # fmt: skip
            if needs_by.get((proto.id, idx)):
                needs[crit.id] = needs_by[(proto.id, idx)]
        funnels[proto.id] = {
            "trial_id": proto.id,
            "title": proto.title,
            "screened": n_pop,
            "steps": steps,
            "ineligible": status.get((proto.id, "ineligible"), 0),
            "needs_data": status.get((proto.id, "needs_data"), 0),
            "needs_data_by": needs,
            "potentially_eligible": status.get((proto.id, "potentially_eligible"), 0),
            "per_criterion": per_crit,
        }
    return funnels


def format_funnel(funnel: dict[str, Any]) -> str:
    """A plain-text funnel for the terminal."""
    lines = [f"{funnel['trial_id']}  {funnel['title']}", f"  screened  {funnel['screened']:>8}"]
    for s in funnel["steps"]:
        if s["excluded"]:
            text = s["text"].replace("\n", " ")
            text = text if len(text) <= 60 else text[:57] + "..."
            lines.append(
                f"  - {s['criterion_id']:<7} {s['excluded']:>8} excluded -> "
                f"{s['remaining']:>8} left  {text}"
            )
    lines.append(f"  needs data {funnel['needs_data']:>6}")
    for cid, n in sorted(funnel["needs_data_by"].items(), key=lambda kv: -kv[1]):
        lines.append(f"      {cid:<9} {n:>6} unknown")
    lines.append(f"  potentially eligible {funnel['potentially_eligible']:>6}")
    return "\n".join(lines)
