"""The screening funnel per trial (CONSORT-style attrition, as ATLAS's attrition view).

Each ineligible patient is attributed to the first failing criterion in protocol order (an
inclusion ``not_met`` or an exclusion ``met``); the rest are ``needs_data`` (counted per unknown
criterion, a patient may count under several) or ``potentially_eligible``. A per-criterion table
gives met / not met / unknown / manual counts over all screened patients.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from trialsieve.screen.backend import Backend
from trialsieve.screen.sql import MANUAL, MET, NOT_MET, UNKNOWN


def compute_funnels(
    backend: Backend, protocols: Sequence[Any], verdict_tables: Sequence[str]
) -> dict[str, dict]:
    """Funnels from the engine's per-trial verdict tables (patient_id, status, ``v<i>`` per
    criterion), one aggregate query each."""
    n_pop = int(backend.rows("SELECT count(*) FROM pop")[0][0])
    first_fail: dict[tuple[str, int], int] = {}
    counts: dict[tuple[str, int], tuple[int, int, int, int]] = {}
    needs_by: dict[tuple[str, int], int] = {}
    status: dict[tuple[str, str], int] = {}
    for proto, table in zip(protocols, verdict_tables, strict=True):
        n = len(proto.criteria)
        if n:
            fails = " ".join(
                f"WHEN v{i} = {NOT_MET if c.kind == 'inclusion' else MET} THEN {i}"
                for i, c in enumerate(proto.criteria)
            )
            for first, k in backend.rows(
                f"SELECT CASE {fails} END AS first, count(*) FROM {table} GROUP BY first"
            ):
                if first is not None:
                    first_fail[(proto.id, int(first))] = int(k)
            aggs = ", ".join(
                f"count_if(v{i} = {MET}), count_if(v{i} = {NOT_MET}), "
                f"count_if(v{i} = {UNKNOWN}), count_if(v{i} = {MANUAL}), "
                f"count_if(status = 'needs_data' AND v{i} = {UNKNOWN})"
                for i in range(n)
            )
            row = backend.rows(f"SELECT {aggs} FROM {table}")[0]
            for i in range(n):
                met, nm, unk, man, needs = (int(x or 0) for x in row[5 * i : 5 * i + 5])
                counts[(proto.id, i)] = (met, nm, unk, man)
                needs_by[(proto.id, i)] = needs
        for st, k in backend.rows(f"SELECT status, count(*) FROM {table} GROUP BY status"):
            status[(proto.id, st)] = int(k)
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
