"""The canonical store schema: the contract between ingestion and screening.

Documented for people in ``docs/STORE.md``; this module is the single machine-readable source.
Times are UTC, stored as timezone-naive ``timestamp[us]`` meaning UTC.
"""

from __future__ import annotations

import pyarrow as pa

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
