"""The canonical store schema: the contract between ingestion and screening.

Documented for people in ``docs/STORE.md``; this module is the single machine-readable source.
Times are UTC, stored as timezone-naive ``timestamp[us]`` meaning UTC.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

PATIENTS_SCHEMA = pa.schema(
    [
        ("patient_id", pa.string()),  # unique within the store
        ("birth_date", pa.date32()),  # null = unknown (never guessed)
        ("sex", pa.string()),  # male | female | other | unknown
        ("deceased_date", pa.date32()),
        ("source", pa.string()),  # exact origin, e.g. "Patient/abc" or "PATIENTS.csv:12"
        ("dataset", pa.string()),  # name of the ingested source (for idempotent re-ingest)
    ]
)

#: kinds of event rows
EVENT_KINDS = (
    "lab",  # laboratory result
    "vital",  # vital sign / body measurement (BP, weight, LVEF...)
    "output",  # urine output over a period (analyte urine_volume, start..end)
    "condition",  # diagnosis
    "procedure",  # procedure (dialysis, transplant, biopsy, ventilation, transfusion...)
    "medication",  # medication request/statement/administration/exposure (start..end)
    "encounter",  # admission / visit (start..end)
    "observation",  # other coded fact (smoking, pregnancy status, allergy...)
)

EVENTS_SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),  # stable hash of (dataset, source, component); unique
        ("patient_id", pa.string()),
        ("kind", pa.string()),  # one of EVENT_KINDS
        ("analyte", pa.string()),  # canonical analyte name (trialsieve.units) or null
        ("code_system", pa.string()),  # canonical system URI (trialsieve.codes)
        ("code", pa.string()),
        ("display", pa.string()),
        ("start_time", pa.timestamp("us")),  # UTC; effective/onset/performed/start
        ("end_time", pa.timestamp("us")),  # UTC; period end (urine output, drug exposure...)
        ("value", pa.float64()),  # numeric value in the analyte's canonical unit
        ("unit", pa.string()),  # canonical unit (null when no value)
        ("value_text", pa.string()),  # coded/text value (e.g. "positive")
        ("orig_value", pa.string()),  # value as the source gave it
        ("orig_unit", pa.string()),  # unit as the source gave it
        ("ref_low", pa.float64()),  # reference range, canonical unit, when the source gives one
        ("ref_high", pa.float64()),
        ("dose_value", pa.float64()),  # medication dose per administration
        ("dose_unit", pa.string()),
        ("route", pa.string()),  # medication route (e.g. "intravenous", "oral")
        ("status", pa.string()),  # clinical status (active, resolved, completed...)
        ("source", pa.string()),  # exact origin: "Observation/obs123", "LABEVENTS.csv:4711"
        ("dataset", pa.string()),
    ]
)

#: physical order of the rows of every events file (the screening layout): rules read events by
#: kind or analyte, a screening part by patient range, so each (kind, analyte) run is sorted by
#: patient and the row groups' statistics let both skip what they do not need; a store in this
#: order is screened without re-sorting its events (``store.reader.in_screening_order``)
EVENTS_ORDER = ("kind", "analyte", "patient_id", "start_time", "event_id")  # event_id last
#: rows per Parquet row group of an events file (DuckDB's own row-group size)
EVENTS_ROW_GROUP = 122_880


def events_sorting_columns() -> tuple[pq.SortingColumn, ...]:
    """``EVENTS_ORDER`` as Parquet sorting-column metadata (ascending, nulls last)."""
    return pq.SortingColumn.from_ordering(
        EVENTS_SCHEMA, [(c, "ascending") for c in EVENTS_ORDER], null_placement="at_end"
    )


def events_parquet_options() -> dict[str, object]:
    """``pq.write_table`` options of every events file: the layout's row groups and order."""
    return {"row_group_size": EVENTS_ROW_GROUP, "sorting_columns": events_sorting_columns()}
