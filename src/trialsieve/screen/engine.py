"""Screen a canonical store against trial protocols: all patients, all trials, one DuckDB run.

Data flow: ``open_store`` views -> ``pop`` (patients alive at the screening instant) -> each
criterion's rule compiled by :class:`trialsieve.screen.compile.Compiler` into a verdict table ->
one long table ``__verdicts`` (trial, patient, criterion, verdict, reason, evidence) -> per
patient and trial the status (issue 4 "Verdicts"):

- ``ineligible``: an inclusion is ``not_met`` or an exclusion is ``met``;
- else ``needs_data``: an automatic criterion is ``unknown``;
- else ``potentially_eligible``: only manual checks remain (the coordinator's checklist).

Restricting ``patient_ids`` runs the identical SQL for a few patients: that is how one verdict
is explained.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from trialsieve.screen.backend import Backend, DuckDBBackend
from trialsieve.screen.compile import Compiler
from trialsieve.screen.funnel import compute_funnels
from trialsieve.screen.kidney_tables import KidneyTables
from trialsieve.screen.sql import EMPTY_EV, MANUAL, MET, NOT_MET, UNKNOWN, lit

STATUS_ORDER = ("potentially_eligible", "needs_data", "ineligible")


@dataclass
class ScreenRun:
    """The outcome of one screening run; records are materialised on demand."""

    as_of: dt.datetime
    protocols: list[Any]
    backend: Backend
    funnels: dict[str, dict[str, Any]] = field(default_factory=dict)

    def results_sql(self) -> str:
        """The query giving one row per (patient, trial) in results.jsonl layout."""
        return "SELECT * FROM __results ORDER BY trial_id, patient_id"

    def table(self) -> pa.Table:
        """All results as an Arrow table."""
        return self.backend.arrow(self.results_sql())

    @property
    def records(self) -> list[dict[str, Any]]:
        """All results as Python dicts (the results.jsonl objects)."""
        return self.table().to_pylist()

    def iter_records(self, batch_rows: int = 50_000) -> Iterator[dict[str, Any]]:
        """Stream results without holding them all in memory."""
        for batch in self.backend.batches(self.results_sql(), batch_rows):
            yield from batch.to_pylist()

    def write_jsonl(self, out: Path) -> int:
        """Write results.jsonl (one JSON object per patient and trial); return the row count."""
        return self.backend.write_jsonl(self.results_sql(), Path(out))


def _criterion_sql(comp: Compiler, crit: Any) -> str:
    """SELECT patient_id, v, reason, ev for one criterion."""
    if crit.rule is not None:
        t = comp.node(crit.rule)
        return f"SELECT patient_id, v, reason, ev FROM {t}"
    evidence_tables = [comp.node(r) for r in (crit.evidence or [])]
    ev = f"{EMPTY_EV}"
    joins = ""
    for i, t in enumerate(evidence_tables):
        joins += f" JOIN {t} x{i} ON x{i}.patient_id = p.patient_id"
        ev = f"list_concat({ev}, CASE WHEN x{i}.v = {MET} THEN x{i}.ev ELSE {EMPTY_EV} END)"
    reason = lit(f"manual check: {crit.manual}")
    return f"SELECT p.patient_id, {MANUAL} AS v, {reason} AS reason, {ev} AS ev FROM pop p{joins}"


def screen_store(
    store_dir: Path,
    protocols: Sequence[Any],
    as_of: dt.datetime,
    *,
    patient_ids: Sequence[str] | None = None,
    backend: Backend | None = None,
) -> ScreenRun:
    """Screen every patient of the store (or ``patient_ids``) against ``protocols`` at ``as_of``.

    ``as_of`` is UTC (a naive datetime is taken as UTC); every window ends at it and no data
    after it is used. Patients who died before ``as_of`` are not screened.
    """
    if as_of.tzinfo is not None:
        as_of = as_of.astimezone(dt.UTC).replace(tzinfo=None)
    backend = backend or DuckDBBackend()
    backend.open_store(Path(store_dir))
    only = ""
    if patient_ids is not None:
        only = f" AND patient_id IN ({', '.join(lit(p) for p in patient_ids) or 'NULL'})"
    backend.create(
        "pop",
        "SELECT patient_id, birth_date, sex, source FROM patients "
        f"WHERE (deceased_date IS NULL OR deceased_date > {lit(as_of)}){only}",
    )
    meta_rows: list[tuple[str, int, str, str, str, str | None]] = []
    parts: list[str] = []
    kidney = KidneyTables(backend, as_of)
    for proto in protocols:
        settings = getattr(proto, "settings", None)
        comp = Compiler(backend, as_of, proto.concept_sets, settings, kidney)
        for idx, crit in enumerate(proto.criteria):
            meta_rows.append((proto.id, idx, crit.id, crit.kind, crit.text, crit.manual))
            sql = _criterion_sql(comp, crit)
            parts.append(f"SELECT {lit(proto.id)} AS trial_id, {idx} AS idx, * FROM ({sql})")
    meta = pa.table(
        {
            "trial_id": [m[0] for m in meta_rows],
            "idx": pa.array([m[1] for m in meta_rows], pa.int32()),
            "crit_id": [m[2] for m in meta_rows],
            "kind": [m[3] for m in meta_rows],
            "text": [m[4] for m in meta_rows],
            "manual": pa.array([m[5] for m in meta_rows], pa.string()),
        }
    )
    backend.register("__meta", meta)
    union = (
        " UNION ALL ".join(parts)
        if parts
        else (
            f"SELECT NULL::VARCHAR trial_id, 0 idx, NULL::VARCHAR patient_id, 0 v, "
            f"NULL::VARCHAR reason, {EMPTY_EV} ev WHERE FALSE"
        )
    )
    backend.create("__verdicts", union)
    verdict = (
        f"CASE v.v WHEN {MET} THEN 'met' WHEN {NOT_MET} THEN 'not_met' "
        f"WHEN {UNKNOWN} THEN 'unknown' ELSE 'manual' END"
    )
    failing = (
        f"(m.kind = 'inclusion' AND v.v = {NOT_MET}) OR (m.kind = 'exclusion' AND v.v = {MET})"
    )
    backend.create(
        "__results",
        f"""SELECT v.patient_id, v.trial_id,
            CASE WHEN bool_or({failing}) THEN 'ineligible'
                 WHEN bool_or(v.v = {UNKNOWN}) THEN 'needs_data'
                 ELSE 'potentially_eligible' END AS status,
            list({{'id': m.crit_id, 'kind': m.kind, 'verdict': {verdict}, 'text': m.text,
                   'reason': v.reason, 'evidence': v.ev, 'manual': m.manual}}
                 ORDER BY v.idx) AS criteria
        FROM __verdicts v JOIN __meta m ON m.trial_id = v.trial_id AND m.idx = v.idx
        GROUP BY v.patient_id, v.trial_id""",
    )
    run = ScreenRun(as_of=as_of, protocols=list(protocols), backend=backend)
    run.funnels = compute_funnels(backend, protocols)
    return run
