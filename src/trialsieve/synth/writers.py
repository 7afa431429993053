"""Outputs of ``trialsieve synth``: a canonical store, FHIR Bulk NDJSON, or AKI CSV files.

- **store**: the layout of ``docs/STORE.md``: ``patients.parquet`` (one row group per chunk,
  written as it streams), ``events/synth.parquet`` (one file in the store's layout, sorted by
  kind, analyte, patient_id, start_time, event_id, as ``trialsieve ingest`` writes a dataset:
  the chunks are written to a scratch folder, then their runs concatenated),
  ``manifest.json`` (dataset ``synth``: counts per resource type, the generator's parameters)
  and an empty ``rejects.jsonl``.
- **fhir**: ``Patient.ndjson``, ``Observation.ndjson``, ``Condition.ndjson``,
  ``Procedure.ndjson``, ``MedicationRequest.ndjson``, ``Encounter.ndjson`` (FHIR R4), one
  resource per store ``source`` (the BP panel 85354-9 carries sbp and dbp as components). Values
  are written in the unit and precision the patient's laboratory reports (``orig_value``), so
  ``trialsieve ingest --format fhir --dataset synth`` gives back the rows of the store format.
- **pyaki**: the ``trialsieve aki`` inputs (``creatinine.csv`` patient_id,time,value,unit;
  ``urine.csv`` patient_id,start,end,volume_ml; ``weights.csv`` patient_id,time,weight_kg;
  ``rrt.csv`` patient_id,start,end; ``patients.csv`` patient_id,birth_date,sex) and, under
  ``pyaki/``, the same data in pyAKI's column names (pyAKI 1.0.13 docs, "Input Data":
  ``stay_id``, ``charttime``, ``creat`` in mg/dL, ``urineoutput`` in mL charted at the end of
  each hourly period, ``weight`` per stay, ``rrt_status``): ``creatinine.csv``,
  ``urineoutput.csv``, ``demographics.csv``, ``rrt.csv``. One stay per patient: ``stay_id`` is
  the patient index (``S000000042`` -> 42). Creatinine is written in mg/dL with 4 decimals in
  both layouts so that both tools read identical numbers.
"""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing as mp
import os
import shutil
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from trialsieve.codes import LOINC, SNOMED
from trialsieve.kidney.creatinine import UMOL_PER_MGDL
from trialsieve.store.schema import (
    EVENTS_ORDER,
    EVENTS_ROW_GROUP,
    PATIENTS_SCHEMA,
    events_sorting_columns,
)
from trialsieve.synth.concepts import BP_PANEL, UNIT_VARIANTS, reference_in
from trialsieve.synth.generator import (
    DATASET,
    SynthConfig,
    chunk,
    chunks,
    n_chunks,
    to_store_schema,
)

UCUM = "http://unitsofmeasure.org"
FORMATS = ("store", "fhir", "pyaki")
_ROUTE_SNOMED = {"oral": "26643006", "intravenous": "47625008", "subcutaneous": "34206005"}


def _ensure_empty(out: Path) -> None:
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out}: exists and is not empty (synth never overwrites data)")
    out.mkdir(parents=True, exist_ok=True)


def _iso(t: dt.datetime | None) -> str | None:
    return None if t is None else t.strftime("%Y-%m-%dT%H:%M:%SZ")


# ----------------------------------------------------------------------------------------------
#: a (kind, analyte) run of the store's order
Key = tuple[str | None, str | None]


#: what a generated chunk leaves for the merge: patients, its file, its runs' keys, its events,
#: its resources per type
Part = tuple[pa.Table, Path, list[Key], int, Counter[str]]


def _store_part(cfg: SynthConfig, parts: Path, k: int) -> Part:
    """Generate chunk ``k`` into ``parts/<k>.parquet``, in the store's order, one row group per
    (kind, analyte) run; return its patients, that file, the runs' keys, the events and the
    resources per type."""
    patients, events = chunk(cfg, k)
    events = events.take(_store_order(events))
    keys, starts = _runs(events)
    ends = [*starts[1:], events.num_rows]
    path = parts / f"{k:05d}.parquet"
    with pq.ParquetWriter(path, events.schema, compression="zstd") as w:
        for start, end in zip(starts, ends, strict=True):
            w.write_table(events.slice(start, end - start), row_group_size=end - start)
    sources = pc.unique(events.column("source"))
    rtype = pc.list_element(pc.split_pattern(sources, "/", max_splits=1), 0)
    src = pc.value_counts(rtype)
    by_type: Counter[str] = Counter({str(v["values"]): int(v["counts"]) for v in src.to_pylist()})
    return patients, path, keys, events.num_rows, by_type


def _runs(events: pa.Table) -> tuple[list[Key], list[int]]:
    """The (kind, analyte) runs of events in the store's order: their keys and first rows (a
    run ends where the rank of either column changes, :func:`_rank`: two NULLs are one run)."""
    if events.num_rows == 0:
        return [], []
    kind, analyte = (_rank(events.column(c)) for c in EVENTS_ORDER[:2])
    change = (kind[1:] != kind[:-1]) | (analyte[1:] != analyte[:-1])
    starts = [0, *(np.flatnonzero(change) + 1).tolist()]
    kinds, analytes = (events.column(c).take(starts).to_pylist() for c in EVENTS_ORDER[:2])
    return list(zip(kinds, analytes, strict=True)), starts


def _in_store_order(keys: set[Key]) -> list[Key]:
    """The runs' keys in the store's order: :func:`_store_order` over a table of the keys."""
    listed = list(keys)
    kinds = pa.array([kind for kind, _ in listed], pa.string())
    analytes = pa.array([analyte for _, analyte in listed], pa.string())
    return [listed[i] for i in _store_order(pa.table({"kind": kinds, "analyte": analytes}))]


def _rank(col: pa.ChunkedArray) -> np.ndarray:
    """Each value's rank in ascending string (UTF-8 byte) order, NULL after every value."""
    arr = col.combine_chunks()
    if not pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_encode()
    words = arr.dictionary.to_pylist()
    present = sorted((w, i) for i, w in enumerate(words) if w is not None)
    rank = np.full(len(words) + 1, len(words), np.int64)  # NULL (last entry: null indices)
    rank[[i for _, i in present]] = np.arange(len(present))
    return rank[arr.indices.fill_null(-1).to_numpy(zero_copy_only=False)]


def _store_order(events: pa.Table) -> np.ndarray:
    """Row order of the store's layout (store.schema.EVENTS_ORDER, NULLs last).

    A chunk comes sorted by patient_id, start_time, event_id, the tail of that order, so a
    stable sort by kind and analyte gives the whole of it.
    """
    assert EVENTS_ORDER[:2] == ("kind", "analyte")
    return np.lexsort((_rank(events.column("analyte")), _rank(events.column("kind"))))


def _merge_parts(parts: list[tuple[Path, list[Key]]], dest: Path) -> None:
    """Write the chunks' events as one file in the store's order, as an ingested store is.

    The chunks hold ascending ranges of patient ids (zero-padded, so in string order too), so
    each (kind, analyte) run of the whole store is that run of every chunk in chunk order: the
    runs are concatenated, never sorted, one row group of ``EVENTS_ROW_GROUP`` at a time. A
    thread encodes and compresses each row group while the next is read (100k patients: 9.1
    -> 6.4 s, the same bytes); memory holds the row groups in writing and those read since.
    """
    files = [(pq.ParquetFile(path), {key: g for g, key in enumerate(keys)}) for path, keys in parts]
    pending: list[pa.Table] = []
    n_pending = 0
    schema = files[0][0].schema_arrow  # the generator's dictionary columns: read as strings
    with (
        pq.ParquetWriter(
            dest, schema, compression="zstd", store_schema=False,
            sorting_columns=events_sorting_columns(),
        ) as w,
        ThreadPoolExecutor(1, thread_name_prefix="trialsieve-synth-merge") as writer,
    ):  # fmt: skip
        written: Future[None] | None = None
        for key in _in_store_order({key for _, keys in parts for key in keys}):
            for f, groups in files:
                if key not in groups:
                    continue
                run = f.read_row_group(groups[key])
                pending.append(run)
                n_pending += run.num_rows
                if n_pending >= EVENTS_ROW_GROUP:
                    table = pa.concat_tables(pending)
                    full = n_pending - n_pending % EVENTS_ROW_GROUP
                    if written is not None:
                        written.result()
                    written = writer.submit(
                        w.write_table, table.slice(0, full), row_group_size=EVENTS_ROW_GROUP
                    )
                    pending, n_pending = [table.slice(full)], n_pending - full
        if written is not None:
            written.result()
        if n_pending:
            w.write_table(pa.concat_tables(pending), row_group_size=EVENTS_ROW_GROUP)


def write_store(cfg: SynthConfig, out: Path, jobs: int = 1) -> dict[str, int]:
    """Generate the population into a canonical store at ``out``; return counts per table.

    The chunks are generated (in ``jobs`` worker processes when > 1) into a scratch folder of
    ``out``, then merged into ``events/synth.parquet`` (``_merge_parts``); the bytes written do
    not depend on ``jobs``, the rows not on the chunk size.
    """
    _ensure_empty(out)
    (out / "events").mkdir()
    scratch = out / ".chunks"
    scratch.mkdir()
    by_type: Counter[str] = Counter()
    parts: list[tuple[Path, list[Key]]] = []
    n_events = 0
    n_patients = 0
    ptmp = out / "patients.parquet.tmp"
    total = n_chunks(cfg)
    pool = (
        ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn"))
        if jobs > 1 and total > 1
        else None
    )  # spawn: no fork of a process whose Arrow/DuckDB thread pools are running
    try:
        results: Iterator[Part] = (
            pool.map(_store_part, [cfg] * total, [scratch] * total, range(total))
            if pool is not None
            else (_store_part(cfg, scratch, k) for k in range(total))
        )
        with pq.ParquetWriter(ptmp, PATIENTS_SCHEMA, compression="zstd") as pw:
            for patients, path, keys, n_ev, counts in results:
                pw.write_table(patients)
                parts.append((path, keys))
                n_patients += patients.num_rows
                n_events += n_ev
                by_type.update(counts)
        if pool is not None:
            pool.shutdown()
            pool = None
        merged = out / "events" / f"{DATASET}.parquet"
        _merge_parts(parts, merged)
        if (n := pq.read_metadata(merged).num_rows) != n_events:  # every event, once
            raise RuntimeError(f"{merged}: {n_events} events generated, {n} written")
    finally:
        if pool is not None:
            pool.shutdown()
        shutil.rmtree(scratch, ignore_errors=True)
    os.replace(ptmp, out / "patients.parquet")
    by_type["Patient"] = n_patients
    manifest = {
        "datasets": {
            DATASET: {
                "ingested_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "source": f"trialsieve synth --patients {cfg.patients} --seed {cfg.seed}",
                "format": "synth",
                "generator": {
                    "patients": cfg.patients,
                    "seed": cfg.seed,
                    "as_of": cfg.as_of.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "creatinine_per_patient": cfg.creatinine_per_patient,
                },
                "events": n_events,
                "read": sum(by_type.values()),
                "stored": sum(by_type.values()),
                "rejected": 0,
                "by_type": {
                    t: {"read": c, "stored": c, "rejected": {}} for t, c in sorted(by_type.items())
                },
            }
        },
        "schema_version": 1,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", "utf-8")
    (out / "rejects.jsonl").write_text("", "utf-8")
    return {"patients": n_patients, "events": n_events}


# ----------------------------------------------------------------------------------------------
def _num(text: str) -> int | float:
    """The JSON number of a value string as Arrow printed it (``108`` -> 108, ``1.2`` -> 1.2)."""
    return float(text) if any(c in text for c in ".eE") else int(text)


def _quantity(text: str, unit: str) -> dict[str, Any]:
    return {"value": _num(text), "unit": unit, "system": UCUM, "code": unit}


def _ref_range(analyte: str, unit: str) -> list[dict[str, Any]]:
    for variant in UNIT_VARIANTS[analyte]:
        if variant.unit == unit:
            lo, hi = reference_in(analyte, variant)
            rr: dict[str, Any] = {}
            if lo is not None:
                rr["low"] = {"value": lo, "unit": unit, "system": UCUM, "code": unit}
            if hi is not None:
                rr["high"] = {"value": hi, "unit": unit, "system": UCUM, "code": unit}
            return [rr] if rr else []
    return []


def _observation(rows: list[dict[str, Any]], rid: str) -> dict[str, Any]:
    r0 = rows[0]
    vital = r0["kind"] in ("vital",)
    res: dict[str, Any] = {
        "resourceType": "Observation",
        "id": rid,
        "status": r0["status"],
        "category": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "vital-signs" if vital else "laboratory"}]}],
        "subject": {"reference": f"Patient/{r0['patient_id']}"},
    }  # fmt: skip
    if r0["end_time"] is not None:
        res["effectivePeriod"] = {"start": _iso(r0["start_time"]), "end": _iso(r0["end_time"])}
    else:
        res["effectiveDateTime"] = _iso(r0["start_time"])

    def coded(r: dict[str, Any]) -> dict[str, Any]:
        el: dict[str, Any] = {"code": {"coding": [{"system": r["code_system"], "code": r["code"],
                                                   "display": r["display"]}]}}  # fmt: skip
        el["valueQuantity"] = _quantity(r["orig_value"], r["orig_unit"])
        rr = (
            _ref_range(r["analyte"], r["orig_unit"])
            if r["ref_low"] is not None or r["ref_high"] is not None
            else []
        )
        if rr:
            el["referenceRange"] = rr
        return el

    if len(rows) > 1:  # blood-pressure panel
        res["code"] = {"coding": [{"system": LOINC, "code": BP_PANEL[0], "display": BP_PANEL[1]}]}
        res["component"] = [coded(r) for r in rows]
    else:
        res.update(coded(r0))
    return res


def _resource(rows: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    r = rows[0]
    rtype, rid = r["source"].split("/", 1)
    subject = {"reference": f"Patient/{r['patient_id']}"}
    concept = {"coding": [{"system": r["code_system"], "code": r["code"],
                           "display": r["display"]}]}  # fmt: skip
    if rtype == "Observation":
        return rtype, _observation(rows, rid)
    if rtype == "Condition":
        res: dict[str, Any] = {
            "resourceType": "Condition", "id": rid, "subject": subject, "code": concept,
            "clinicalStatus": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                "code": r["status"]}]},
            "verificationStatus": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                "code": "confirmed"}]},
            "onsetDateTime": _iso(r["start_time"]),
        }  # fmt: skip
        if r["end_time"] is not None:
            res["abatementDateTime"] = _iso(r["end_time"])
        return rtype, res
    if rtype == "Procedure":
        res = {"resourceType": "Procedure", "id": rid, "status": r["status"],
               "subject": subject, "code": concept}  # fmt: skip
        if r["end_time"] is not None:
            res["performedPeriod"] = {"start": _iso(r["start_time"]), "end": _iso(r["end_time"])}
        else:
            res["performedDateTime"] = _iso(r["start_time"])
        return rtype, res
    if rtype == "MedicationRequest":
        dosage: dict[str, Any] = {
            "timing": {"repeat": {"boundsPeriod": {"start": _iso(r["start_time"])}}},
            "route": {"coding": [{"system": SNOMED, "code": _ROUTE_SNOMED[r["route"]],
                                  "display": r["route"]}]},
        }  # fmt: skip
        if r["end_time"] is not None:
            dosage["timing"]["repeat"]["boundsPeriod"]["end"] = _iso(r["end_time"])
        if r["dose_value"] is not None:
            dosage["doseAndRate"] = [{"doseQuantity": {
                "value": r["dose_value"], "unit": r["dose_unit"], "system": UCUM,
                "code": r["dose_unit"]}}]  # fmt: skip
        res = {"resourceType": "MedicationRequest", "id": rid, "status": r["status"],
               "intent": "order", "subject": subject, "medicationCodeableConcept": concept,
               "authoredOn": _iso(r["start_time"]), "dosageInstruction": [dosage]}  # fmt: skip
        return rtype, res
    if rtype == "Encounter":
        period = {"start": _iso(r["start_time"])}
        if r["end_time"] is not None:
            period["end"] = _iso(r["end_time"])
        res = {"resourceType": "Encounter", "id": rid, "status": r["status"],
               "class": {"system": r["code_system"], "code": r["code"]},
               "type": [{"text": r["display"]}], "subject": subject, "period": period}  # fmt: skip
        return rtype, res
    raise ValueError(f"no FHIR mapping for {rtype}")


#: events turned into Python dicts at a time by the FHIR writer
_FHIR_BATCH = 20_000


def _grouped(events: pa.Table) -> Iterator[list[dict[str, Any]]]:
    """Rows of one source together (a BP panel is two rows of one Observation). Rows become
    Python dicts a batch at a time (a chunk's rows as dicts at once took ~1 GB more)."""
    idx = pa.compute.sort_indices(events, [("source", "ascending"), ("code", "descending")])
    group: list[dict[str, Any]] = []
    for batch in events.take(idx).to_batches(max_chunksize=_FHIR_BATCH):
        for row in batch.to_pylist():
            if group and row["source"] != group[0]["source"]:
                yield _sbp_first(group)
                group = []
            group.append(row)
    if group:
        yield _sbp_first(group)


def _sbp_first(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A BP panel's components in the order the FHIR export writes them: systolic first."""
    return sorted(rows, key=lambda r: r["analyte"] != "sbp")


def write_fhir(cfg: SynthConfig, out: Path) -> dict[str, int]:
    """Generate the population as FHIR R4 Bulk NDJSON files; return resources per type."""
    _ensure_empty(out)
    counts: Counter[str] = Counter()
    files: dict[str, Any] = {}
    try:
        for _, patients, events in chunks(cfg):
            f = files.setdefault("Patient", (out / "Patient.ndjson").open("wb"))
            for p in patients.to_pylist():
                res = {"resourceType": "Patient", "id": p["patient_id"], "gender": p["sex"],
                       "birthDate": p["birth_date"].isoformat()}  # fmt: skip
                f.write(orjson.dumps(res) + b"\n")
                counts["Patient"] += 1
            for rows in _grouped(to_store_schema(events)):
                rtype, res = _resource(rows)
                fh = files.get(rtype)
                if fh is None:
                    fh = files[rtype] = (out / f"{rtype}.ndjson").open("wb")
                fh.write(orjson.dumps(res) + b"\n")
                counts[rtype] += 1
    finally:
        for fh in files.values():
            fh.close()
    return dict(counts)


# ----------------------------------------------------------------------------------------------
_ISO = "'%Y-%m-%dT%H:%M:%SZ'"
UMOL = repr(float(UMOL_PER_MGDL))
_PYAKI_QUERIES: dict[str, str] = {
    "creatinine.csv": f"""SELECT patient_id, strftime(start_time, {_ISO}) AS time,
        round(value / {UMOL}, 4) AS value, 'mg/dL' AS unit FROM ev
        WHERE analyte = 'creatinine' ORDER BY patient_id, start_time, event_id""",
    "urine.csv": f"""SELECT patient_id, strftime(start_time, {_ISO}) AS start,
        strftime(end_time, {_ISO}) AS "end", value AS volume_ml FROM ev
        WHERE analyte = 'urine_volume' ORDER BY patient_id, start_time, event_id""",
    "weights.csv": f"""SELECT patient_id, strftime(start_time, {_ISO}) AS time,
        value AS weight_kg FROM ev WHERE analyte = 'weight'
        ORDER BY patient_id, start_time, event_id""",
    "rrt.csv": f"""SELECT patient_id, strftime(start_time, {_ISO}) AS start,
        strftime(end_time, {_ISO}) AS "end" FROM ev
        WHERE kind = 'procedure' AND code = '90935'
        ORDER BY patient_id, start_time, event_id""",
    "pyaki/creatinine.csv": f"""SELECT CAST(substr(patient_id, 2) AS BIGINT) AS stay_id,
        strftime(start_time, '%Y-%m-%d %H:%M:%S') AS charttime,
        round(value / {UMOL}, 4) AS creat
        FROM ev WHERE analyte = 'creatinine' ORDER BY patient_id, start_time, event_id""",
    "pyaki/urineoutput.csv": """SELECT CAST(substr(patient_id, 2) AS BIGINT) AS stay_id,
        strftime(end_time, '%Y-%m-%d %H:%M:%S') AS charttime, value AS urineoutput
        FROM ev WHERE analyte = 'urine_volume' ORDER BY patient_id, start_time, event_id""",
    "pyaki/demographics.csv": """WITH u AS (SELECT patient_id, min(start_time) AS t0 FROM ev
          WHERE analyte = 'urine_volume' GROUP BY patient_id),
        w AS (SELECT ev.patient_id, ev.start_time, ev.value, u.t0 FROM ev
          LEFT JOIN u USING (patient_id) WHERE analyte = 'weight')
        SELECT CAST(substr(patient_id, 2) AS BIGINT) AS stay_id,
          round(coalesce(arg_max(value, start_time) FILTER (WHERE start_time <= t0),
                         arg_max(value, start_time)), 1) AS weight
        FROM w GROUP BY patient_id ORDER BY patient_id""",
    "pyaki/rrt.csv": """SELECT CAST(substr(patient_id, 2) AS BIGINT) AS stay_id,
        strftime(start_time, '%Y-%m-%d %H:%M:%S') AS charttime, 1 AS rrt_status FROM ev
        WHERE kind = 'procedure' AND code = '90935'
        ORDER BY patient_id, start_time, event_id""",
}


def write_pyaki(cfg: SynthConfig, out: Path) -> dict[str, int]:
    """Generate the population as ``trialsieve aki`` and pyAKI CSV files; return row counts."""
    _ensure_empty(out)
    (out / "pyaki").mkdir()
    writers: dict[str, pacsv.CSVWriter] = {}
    counts: Counter[str] = Counter()
    opts = pacsv.WriteOptions(quoting_style="needed")
    con = duckdb.connect()
    con.execute("SET TimeZone='UTC'")
    try:
        for _, patients, events in chunks(cfg):
            con.register("ev", events)
            con.register("pt", patients)
            tables = {name: con.sql(q).to_arrow_table() for name, q in _PYAKI_QUERIES.items()}
            tables["patients.csv"] = con.sql(
                "SELECT patient_id, strftime(birth_date, '%Y-%m-%d') AS birth_date, sex FROM pt "
                "ORDER BY patient_id"
            ).to_arrow_table()
            for name, table in tables.items():
                w = writers.get(name)
                if w is None:
                    w = writers[name] = pacsv.CSVWriter(
                        out / name, table.schema, write_options=opts
                    )
                w.write_table(table)
                counts[name] += table.num_rows
            con.unregister("ev")
            con.unregister("pt")
    finally:
        for w in writers.values():
            w.close()
        con.close()
    return dict(counts)


WRITERS = {"store": write_store, "fhir": write_fhir, "pyaki": write_pyaki}
