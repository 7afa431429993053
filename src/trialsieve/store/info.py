"""Counts and date ranges of a store (``trialsieve store info``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb

from trialsieve.store.reader import in_screening_order, open_store


def store_info(path: Path, top: int = 20) -> dict[str, Any]:
    """Patients, events by kind, top analytes with counts and date ranges, datasets, and
    whether the events files are in the screening layout (docs/STORE.md)."""
    con = duckdb.connect()
    try:
        open_store(path, con)
        patients = con.execute(
            "SELECT count(*), count(birth_date), count(deceased_date) FROM patients"
        ).fetchone()
        assert patients is not None
        kinds = con.execute(
            "SELECT kind, count(*), min(start_time), max(start_time), count(DISTINCT patient_id)"
            " FROM events GROUP BY kind ORDER BY 2 DESC"
        ).fetchall()
        analytes = con.execute(
            "SELECT analyte, any_value(unit), count(*), count(DISTINCT patient_id),"
            " min(start_time), max(start_time) FROM events WHERE analyte IS NOT NULL"
            f" GROUP BY analyte ORDER BY 3 DESC LIMIT {int(top)}"
        ).fetchall()
        datasets = con.execute(
            "SELECT dataset, count(*), min(start_time), max(start_time) FROM events"
            " GROUP BY dataset ORDER BY dataset"
        ).fetchall()
    finally:
        con.close()
    manifest_path = Path(path) / "manifest.json"
    manifest = json.loads(manifest_path.read_text("utf-8")) if manifest_path.exists() else {}
    return {
        "patients": {"total": patients[0], "with_birth_date": patients[1],
                     "deceased": patients[2]},
        "screening_layout": in_screening_order(path),
        "events_by_kind": [
            {"kind": k, "events": n, "patients": p, "first": str(a), "last": str(b)}
            for k, n, a, b, p in kinds
        ],
        "analytes": [
            {"analyte": a, "unit": u, "events": n, "patients": p, "first": str(f), "last": str(t)}
            for a, u, n, p, f, t in analytes
        ],
        "datasets": [
            {"dataset": d, "events": n, "first": str(a), "last": str(b),
             "ingested_at": manifest.get("datasets", {}).get(d, {}).get("ingested_at")}
            for d, n, a, b in datasets
        ],
    }  # fmt: skip


def format_info(info: dict[str, Any]) -> str:
    """Plain-text rendering of ``store_info``."""
    p = info["patients"]
    out = [
        f"patients: {p['total']} ({p['with_birth_date']} with birth date, "
        f"{p['deceased']} deceased)",
        "events layout: "
        + (
            "screening order (kind, analyte, patient, time)"
            if info["screening_layout"]
            else "not declared (screening sorts the events at load; re-ingest to rewrite)"
        ),
        "",
        _table(["kind", "events", "patients", "first", "last"], info["events_by_kind"]),
        "",
        _table(["analyte", "unit", "events", "patients", "first", "last"], info["analytes"]),
        "",
        _table(["dataset", "events", "first", "last", "ingested_at"], info["datasets"]),
    ]
    return "\n".join(out)


def _table(cols: list[str], rows: list[dict[str, Any]]) -> str:
    cells = [cols] + [[str(r[c]) for c in cols] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cols))]
    return "\n".join(
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells
    )
