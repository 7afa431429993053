"""Open a canonical store for querying: DuckDB views ``patients`` and ``events``."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa

from trialsieve.sqltext import quote
from trialsieve.store.schema import EVENTS_SCHEMA, PATIENTS_SCHEMA


def open_store(path: Path, con: duckdb.DuckDBPyConnection, events: str = "events") -> None:
    """Register views ``patients`` and ``events`` (or the name ``events`` gives) over the store
    at ``path`` in ``con``.

    An empty store (no events yet) gives empty views with the schema of ``store.schema``.
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: not a store directory")
    patients = path / "patients.parquet"
    event_files = sorted((path / "events").glob("*.parquet")) if (path / "events").is_dir() else []
    if patients.exists():
        con.execute(
            f"CREATE OR REPLACE VIEW patients AS SELECT * FROM read_parquet({quote(str(patients))})"
        )
    else:
        con.register("__empty_patients", PATIENTS_SCHEMA.empty_table())
        con.execute("CREATE OR REPLACE VIEW patients AS SELECT * FROM __empty_patients")
    if event_files:
        files = ", ".join(quote(str(f)) for f in event_files)
        con.execute(
            f"CREATE OR REPLACE VIEW {events} AS SELECT * FROM "
            f"read_parquet([{files}], union_by_name=true)"
        )
    else:
        empty: pa.Table = EVENTS_SCHEMA.empty_table()
        con.register("__empty_events", empty)
        con.execute(f"CREATE OR REPLACE VIEW {events} AS SELECT * FROM __empty_events")
