"""``trialsieve synth``: a deterministic, streaming synthetic population (issue 5).

Patients are generated in fixed blocks of :data:`BLOCK` patients. Block ``b`` draws from its own
numpy ``Generator`` seeded by ``SeedSequence(seed, spawn_key=(b,))``, so a patient's history
depends only on (seed, patient index): the chunk size (a multiple of BLOCK) does not change the
result, and the first N patients of a larger population are the population of size N.
Within a block everything is vectorised with numpy (no Python loop per event).

Each chunk becomes one Arrow table per store table (schema of :mod:`trialsieve.store.schema`),
sorted by patient_id, start_time, event_id (``writers.write_store`` puts the events in the
store's layout). ``source`` is ``<Resource>/<patient>-<n>`` (the FHIR
resource the row is exported as with ``--format fhir``) and ``event_id`` is the hash the store
writer gives that resource: md5(``dataset|source|code_system|code|kind``), so ingesting the FHIR
export into dataset ``synth`` gives back the same rows.

What a history holds, and at which rates (every rate, with its source, in
:mod:`trialsieve.synth.rates`): demography; type 1/2 diabetes, hypertension, CKD by etiology
(diabetic, hypertensive, glomerular, polycystic, other) with a linear eGFR decline ending in the
patient's CKD stage (:mod:`trialsieve.synth.trajectories`); the comorbidities of
``rates.CONDITIONS``; outpatient visits (yearly for healthy adults, quarterly and more in
diabetes/CKD) with creatinine, potassium, blood count, liver panel, lipids, HbA1c, UACR, 24-h
protein, cystatin C, tumour markers, viral loads, LVEF, blood pressure and weight; chronic
prescriptions renewed every 180 days and glucocorticoid courses; hospital admissions (some
ongoing at the screening instant) with daily creatinine, AKI episodes (rise over 1-3 days, peak
ratio by KDIGO stage), ICU stays with hourly urine output and daily weights, oliguria, dialysis
(CPT 90935 + ICD-10-PCS 5A1D70Z), ventilation, transfusion, IV antibiotics and vasopressors.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from trialsieve.store.schema import EVENTS_SCHEMA, PATIENTS_SCHEMA
from trialsieve.synth.concepts import CONCEPTS, REFERENCE, UNIT_VARIANTS, ci, reference_in
from trialsieve.synth.history import (
    DAY,
    STATUSES,
    BoolArray,
    Events,
    FloatArray,
    IntArray,
    Labs,
    Population,
    add_admissions,
    add_conditions,
    add_drugs,
    add_outpatient,
    draw_population,
    fix_creatinine_count,
    labs_to_events,
)
from trialsieve.units import to_canonical

BLOCK = 1000
DEFAULT_CHUNK = 5_000
DATASET = "synth"
DEFAULT_AS_OF = dt.datetime(2026, 6, 1, 8, 0)


@dataclass(frozen=True)
class SynthConfig:
    """What to generate: population size, seed, screening instant and options."""

    patients: int
    seed: int
    as_of: dt.datetime = DEFAULT_AS_OF  # naive UTC; every event starts before it
    chunk_size: int = DEFAULT_CHUNK
    creatinine_per_patient: int | None = None  # exactly K creatinine results per patient

    @property
    def as_of_s(self) -> float:
        return float(self.as_of.replace(tzinfo=dt.UTC).timestamp())


def generate_block(cfg: SynthConfig, block: int) -> tuple[Population, dict[str, Any]]:
    """Generate block ``block`` (patients ``block*BLOCK ..``); return its population and events."""
    ss = np.random.SeedSequence(cfg.seed, spawn_key=(block,))
    main_ss, aux_ss = ss.spawn(2)
    rng = np.random.default_rng(main_ss)
    t = cfg.as_of_s
    p = draw_population(rng, BLOCK, t)
    ev = Events()
    labs = Labs()
    add_conditions(rng, p, ev, t)
    add_drugs(rng, p, ev, t)
    add_outpatient(rng, p, labs, t)
    add_admissions(rng, p, ev, labs, t)
    if cfg.creatinine_per_patient is not None:
        fix_creatinine_count(np.random.default_rng(aux_ss), p, labs, cfg.creatinine_per_patient, t)
    labs_to_events(p, labs, ev)
    cols = {
        "pid": np.concatenate(ev.pid), "concept": np.concatenate(ev.concept),
        "start": np.concatenate(ev.start), "end": np.concatenate(ev.end),
        "value": np.concatenate(ev.value), "dose": np.concatenate(ev.dose),
        "status": np.concatenate(ev.status), "res": np.concatenate(ev.res),
    }  # fmt: skip
    # every event starts before the screening instant
    assert float(cols["start"].max()) < t, "generated an event at/after the screening instant"
    return p, cols


# ----------------------------------------------------------------------------------------------
def _concept_table() -> pa.Table:
    from trialsieve.units import canonical_unit

    return pa.table(
        {
            "concept": pa.array(range(len(CONCEPTS)), pa.int64()),
            "kind": [c.kind for c in CONCEPTS],
            "analyte": [c.analyte for c in CONCEPTS],
            "code_system": [c.system for c in CONCEPTS],
            "code": [c.code for c in CONCEPTS],
            "display": [c.display for c in CONCEPTS],
            "cunit": [canonical_unit(c.analyte) if c.analyte else None for c in CONCEPTS],
            "dose_unit": [c.dose_unit for c in CONCEPTS],
            "route": [c.route for c in CONCEPTS],
            "resource": [c.resource for c in CONCEPTS],
        }
    )


def _values(cols: dict[str, Any]) -> dict[str, Any]:
    """Round each result in its reporting unit; canonical value = the unit table's conversion."""
    n = len(cols["pid"])
    value = np.full(n, np.nan)
    orig = np.full(n, np.nan)
    unit_idx = np.full(n, -1, np.int64)
    ref_lo = np.full(n, np.nan)
    ref_hi = np.full(n, np.nan)
    units: list[str] = []
    concept = cols["concept"]
    for analyte, variants in UNIT_VARIANTS.items():
        rows = np.flatnonzero(concept == ci(f"lab:{analyte}"))
        if not len(rows):
            continue
        for vi, variant in enumerate(variants):
            if vi == 1 and variants[1] is variants[0]:
                break
            use = rows[cols["conv"][rows] == bool(vi)] if variants[1] is not variants[0] else rows
            if not len(use):
                continue
            o = np.round(variant.to_orig(cols["value"][use]), variant.decimals)
            o = np.where(o == 0.0, 0.0, o)  # no negative zero
            orig[use] = o
            canon = cast(Any, to_canonical)(analyte, o, variant.unit)
            value[use] = canon
            if variant.unit not in units:
                units.append(variant.unit)
            unit_idx[use] = units.index(variant.unit)
            lo, hi = reference_in(analyte, variant)
            if analyte in REFERENCE:
                ref_lo[use] = np.nan if lo is None else to_canonical(analyte, lo, variant.unit)
                ref_hi[use] = np.nan if hi is None else to_canonical(analyte, hi, variant.unit)
    return {"value": value, "orig": orig, "unit_idx": unit_idx, "units": units,
            "ref_lo": ref_lo, "ref_hi": ref_hi}  # fmt: skip


def _ts(seconds: FloatArray) -> pa.Array:
    """Epoch seconds (NaN = null) -> timestamp[us] (whole seconds)."""
    mask = np.isnan(seconds)
    us = np.where(mask, 0, np.round(np.nan_to_num(seconds)) * 1_000_000).astype(np.int64)
    return pa.array(us.astype("datetime64[us]"), pa.timestamp("us"), mask=mask)


def _f(values: FloatArray) -> pa.Array:
    return pa.array(values, pa.float64(), mask=np.isnan(values))


def patient_id(index: IntArray) -> pa.Array:
    """``S`` + 9-digit patient index (sorts like the index)."""
    s = pc.utf8_lpad(pa.array(index, pa.int64()).cast(pa.string()), 9, "0")
    return pc.binary_join_element_wise("S", s, "")


_EVENT_ID = f"""
SELECT md5(concat_ws('|', '{DATASET}', source, code_system, code, kind))::VARCHAR AS event_id
FROM ev
"""


def _resource_rank(gpid: IntArray, res: IntArray) -> IntArray:
    """1-based dense rank of ``res`` within each patient (the n of ``<Resource>/<pid>-<n>``)."""
    order = np.lexsort((res, gpid))
    g, r = gpid[order], res[order]
    new_pid = np.r_[True, g[1:] != g[:-1]]
    new_res = new_pid | np.r_[True, r[1:] != r[:-1]]
    dense = np.cumsum(new_res)
    first = np.maximum.accumulate(np.where(new_pid, dense, 0))
    rank = np.empty_like(dense)
    rank[order] = dense - first + 1
    return rank


def assemble(
    con: duckdb.DuckDBPyConnection,
    blocks: list[tuple[int, Population, dict[str, Any]]],
    n_total: int,
) -> tuple[pa.Table, pa.Table]:
    """Blocks -> (patients, events), sorted, truncated to N patients.

    ``events`` has the columns of EVENTS_SCHEMA, the repetitive strings dictionary-encoded (cheap
    to build and to write); :func:`to_store_schema` decodes them.
    """
    pats: list[pa.Table] = []
    evs: list[dict[str, Any]] = []
    for block, p, cols in blocks:
        g0 = block * BLOCK
        keep_p = np.arange(p.n) + g0 < n_total
        idx = (np.arange(p.n) + g0)[keep_p]
        birth_days = np.floor(p.birth_s[keep_p] / DAY).astype(np.int64)
        pats.append(pa.table({
            "patient_id": patient_id(idx),
            "birth_date": pa.array(birth_days.astype("datetime64[D]"), pa.date32()),
            "sex": pa.array(np.where(p.female[keep_p], "female", "male")),
            "deceased_date": pa.nulls(len(idx), pa.date32()),
            "source": pc.binary_join_element_wise("Patient/", patient_id(idx), ""),
            "dataset": pa.array([DATASET] * len(idx), pa.string()),
        }))  # fmt: skip
        keep = cols["pid"] + g0 < n_total
        c = {k: v[keep] for k, v in cols.items()}
        c["conv"] = p.conv[c["pid"]]
        c["gpid"] = c["pid"] + g0
        evs.append(c)
    patients = pa.concat_tables(pats).cast(PATIENTS_SCHEMA)
    cols = {k: np.concatenate([e[k] for e in evs]) for k in evs[0]}
    cc = _concept_table()
    # event ids (md5, as the store writer computes them) decide the order of simultaneous rows
    concept = pa.array(cols["concept"], pa.int64())
    pid_str = patient_id(cols["gpid"])
    rank = pa.array(_resource_rank(cols["gpid"], cols["res"]), pa.int64()).cast(pa.string())
    source = pc.binary_join_element_wise(
        pc.binary_join_element_wise(cc.column("resource").take(concept), pid_str, "/"), rank, "-"
    )
    narrow = pa.table({"source": source, "code_system": cc.column("code_system").take(concept),
                       "code": cc.column("code").take(concept),
                       "kind": cc.column("kind").take(concept)})  # fmt: skip
    con.register("ev", narrow)
    event_id = con.sql(_EVENT_ID).to_arrow_table().column(0).combine_chunks()
    con.unregister("ev")
    start_us = np.round(cols["start"]).astype(np.int64)
    keys = pa.table({"g": cols["gpid"], "t": start_us, "e": event_id})
    order = pc.sort_indices(keys, [("g", "ascending"), ("t", "ascending"), ("e", "ascending")])
    o = order.to_numpy()
    cols = {k: v[o] for k, v in cols.items()}
    vals = _values(cols)
    has_orig = ~np.isnan(vals["orig"])
    orig_str = pa.array(vals["orig"], pa.float64(), mask=~has_orig).cast(pa.string())
    ci_ = cols["concept"].astype(np.int32)
    has_value = ~np.isnan(vals["value"])
    has_dose = ~np.isnan(cols["dose"])
    n = len(o)

    def dict_col(name: str, mask: BoolArray | None = None) -> pa.Array:
        values = cc.column(name).to_pylist()
        dictionary = sorted({v for v in values if v is not None})
        lookup = np.array([dictionary.index(v) if v is not None else -1 for v in values], np.int32)
        idx = lookup[ci_]
        null = idx < 0 if mask is None else (idx < 0) | ~mask
        return pa.DictionaryArray.from_arrays(
            pa.array(np.maximum(idx, 0), pa.int32(), mask=null), pa.array(dictionary, pa.string())
        )

    units = pa.array(vals["units"] or [""], pa.string())
    columns: dict[str, Any] = {
        "event_id": event_id.take(order),
        "patient_id": pid_str.take(order),
        "kind": dict_col("kind"),
        "analyte": dict_col("analyte"),
        "code_system": dict_col("code_system"),
        "code": dict_col("code"),
        "display": dict_col("display"),
        "start_time": _ts(cols["start"]),
        "end_time": _ts(cols["end"]),
        "value": _f(vals["value"]),
        "unit": dict_col("cunit", has_value),
        "value_text": pa.nulls(n, pa.string()),
        "orig_value": orig_str,
        "orig_unit": pa.DictionaryArray.from_arrays(
            pa.array(vals["unit_idx"].astype(np.int32), pa.int32(), mask=~has_orig), units
        ),
        "ref_low": _f(vals["ref_lo"]),
        "ref_high": _f(vals["ref_hi"]),
        "dose_value": _f(cols["dose"]),
        "dose_unit": dict_col("dose_unit", has_dose),
        "route": dict_col("route"),
        "status": pa.DictionaryArray.from_arrays(
            pa.array(cols["status"].astype(np.int32), pa.int32()), pa.array(STATUSES)
        ),
        "source": source.take(order),
        "dataset": pa.DictionaryArray.from_arrays(
            pa.array(np.zeros(n, np.int32), pa.int32()), pa.array([DATASET])
        ),
    }
    return patients, pa.table(columns)


def to_store_schema(events: pa.Table) -> pa.Table:
    """Decode the dictionary columns of a generated events table to EVENTS_SCHEMA."""
    return events.cast(EVENTS_SCHEMA)


def n_chunks(cfg: SynthConfig) -> int:
    """Number of chunks (= event parts) of the population."""
    if cfg.patients < 1:
        raise ValueError("--patients must be at least 1")
    per_chunk = max(1, -(-cfg.chunk_size // BLOCK))
    return -(-cfg.patients // (per_chunk * BLOCK))


def _connect() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET TimeZone='UTC'")
    con.execute("SET enable_progress_bar=false")
    return con


def chunk(cfg: SynthConfig, k: int, con: duckdb.DuckDBPyConnection | None = None) -> tuple[
    pa.Table, pa.Table
]:  # fmt: skip
    """Chunk ``k``: (patients, events) of blocks ``k*per_chunk ..`` (chunk size rounded up)."""
    per_chunk = max(1, -(-cfg.chunk_size // BLOCK))  # blocks per chunk
    n_blocks = -(-cfg.patients // BLOCK)
    b0 = k * per_chunk
    blocks = []
    for b in range(b0, min(b0 + per_chunk, n_blocks)):
        p, cols = generate_block(cfg, b)
        blocks.append((b, p, cols))
    own = con is None
    con = _connect() if con is None else con
    try:
        return assemble(con, blocks, cfg.patients)
    finally:
        if own:
            con.close()


def chunks(cfg: SynthConfig) -> Iterator[tuple[int, pa.Table, pa.Table]]:
    """Yield (chunk number, patients, events) for the whole population, chunk by chunk."""
    total = n_chunks(cfg)
    con = _connect()
    try:
        for k in range(total):
            patients, events = chunk(cfg, k, con)
            yield k, patients, events
    finally:
        con.close()
