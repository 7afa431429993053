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


def _criterion_table(comp: Compiler, crit: Any) -> str:
    """The verdict table (patient_id, v, reason, ev) of one criterion."""
    if crit.rule is not None:
        return comp.node(crit.rule)
    # manual: the coordinator decides; coded facts that help are attached as evidence
    evidence_tables = [comp.node(r) for r in (crit.evidence or [])]
    ev = f"{EMPTY_EV}"
    joins = ""
    for i, t in enumerate(evidence_tables):
        joins += f" JOIN {t} x{i} ON x{i}.patient_id = p.patient_id"
        ev = f"list_concat({ev}, CASE WHEN x{i}.v = {MET} THEN x{i}.ev ELSE {EMPTY_EV} END)"
    reason = lit(f"manual check: {crit.manual}")
    return comp._table(
        f"SELECT p.patient_id, {MANUAL} AS v, {reason} AS reason, {ev} AS ev FROM pop p{joins}"
    )


def _results_sql(proto: Any, tables: list[str]) -> str:
    """One row per patient for ``proto``: status and the criteria list in protocol order.

    A join of the criterion tables (one row per patient each) and a projection: criterion ids
    and texts are constants of the query, not aggregated per patient.
    """
    failing, unknown, items = [], [], []
    for i, crit in enumerate(proto.criteria):
        v = f"c{i}.v"
        failing.append(f"{v} = {NOT_MET}" if crit.kind == "inclusion" else f"{v} = {MET}")
        unknown.append(f"{v} = {UNKNOWN}")
        verdict = (
            f"CASE {v} WHEN {MET} THEN 'met' WHEN {NOT_MET} THEN 'not_met' "
            f"WHEN {UNKNOWN} THEN 'unknown' ELSE 'manual' END"
        )
        manual = lit(crit.manual) if crit.manual is not None else "CAST(NULL AS VARCHAR)"
        items.append(
            f"{{'id': {lit(crit.id)}, 'kind': {lit(crit.kind)}, 'verdict': {verdict}, "
            f"'text': {lit(crit.text)}, 'reason': c{i}.reason, 'evidence': c{i}.ev, "
            f"'manual': {manual}}}"
        )
    joins = " ".join(
        f"JOIN {t} c{i} ON c{i}.patient_id = p.patient_id" for i, t in enumerate(tables)
    )
    status = (
        f"CASE WHEN {' OR '.join(failing) or 'FALSE'} THEN 'ineligible' "
        f"WHEN {' OR '.join(unknown) or 'FALSE'} THEN 'needs_data' "
        "ELSE 'potentially_eligible' END"
    )
    return (
        f"SELECT p.patient_id, {lit(proto.id)} AS trial_id, {status} AS status, "
        f"[{', '.join(items)}] AS criteria FROM pop p {joins}"
    )


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
    after it is used. Patients who died before ``as_of`` or were born after it are not screened.
    """
    if as_of.tzinfo is not None:
        as_of = as_of.astimezone(dt.UTC).replace(tzinfo=None)
    backend = backend or DuckDBBackend()
    backend.open_store(Path(store_dir), list(patient_ids) if patient_ids is not None else None)
    only = ""
    if patient_ids is not None:
        only = f" AND patient_id IN ({', '.join(lit(p) for p in patient_ids) or 'NULL'})"
    backend.create(
        "pop",
        "SELECT patient_id, birth_date, sex, source FROM patients "
        f"WHERE (deceased_date IS NULL OR deceased_date > {lit(as_of)}) "
        f"AND (birth_date IS NULL OR birth_date <= CAST({lit(as_of)} AS DATE)){only}",
    )
    verdict_parts: list[str] = []
    result_tables: list[str] = []
    kidney = KidneyTables(backend, as_of)
    for t_idx, proto in enumerate(protocols):
        settings = getattr(proto, "settings", None)
        comp = Compiler(backend, as_of, proto.concept_sets, settings, kidney)
        tables = [_criterion_table(comp, crit) for crit in proto.criteria]
        verdict_parts += [
            f"SELECT {lit(proto.id)} AS trial_id, {idx} AS idx, patient_id, v FROM {t}"
            for idx, t in enumerate(tables)
        ]
        name = f"__results_{t_idx}"
        backend.create(name, _results_sql(proto, tables))
        result_tables.append(name)
    backend.create(
        "__verdicts",
        " UNION ALL ".join(verdict_parts)
        or "SELECT NULL AS trial_id, 0 AS idx, NULL AS patient_id, 0 AS v WHERE FALSE",
    )
    backend.create(
        "__results",
        " UNION ALL ".join(f"SELECT * FROM {t}" for t in result_tables)
        or "SELECT NULL AS patient_id, NULL AS trial_id, NULL AS status, NULL AS criteria "
        "WHERE FALSE",
    )
    run = ScreenRun(as_of=as_of, protocols=list(protocols), backend=backend)
    run.funnels = compute_funnels(backend, protocols)
    return run
