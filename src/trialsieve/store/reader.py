"""Open a canonical store for querying: DuckDB views ``patients`` and ``events``."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from trialsieve.sqltext import quote
from trialsieve.store.schema import EVENTS_SCHEMA, PATIENTS_SCHEMA, events_sorting_columns


def event_files(path: Path) -> list[Path]:
    """The store's events files, in name order."""
    folder = Path(path) / "events"
    return sorted(folder.glob("*.parquet")) if folder.is_dir() else []


def files_state(path: Path) -> dict[str, tuple[int, int]]:
    """Size and modification time (ns) of each of the store's Parquet files, by name relative
    to the store: compared before and after a screening, which reads them throughout."""
    path = Path(path)
    files = [path / "patients.parquet", *event_files(path)]
    return {
        str(f.relative_to(path)): (st.st_size, st.st_mtime_ns)
        for f in files
        if f.exists() and (st := f.stat())
    }


def in_screening_order(path: Path) -> bool:
    """True when every row group of every events file declares the store's layout
    (``schema.EVENTS_ORDER`` as Parquet sorting columns): screening then reads the events
    where they lie. Stores written before that layout (sorted by patient) say nothing and are
    loaded into memory and sorted there, as are files of another column order."""
    files = event_files(path)
    want = events_sorting_columns()
    for f in files:
        md = pq.ParquetFile(f).metadata
        if any(md.row_group(i).sorting_columns != want for i in range(md.num_row_groups)):
            return False
    return bool(files)


def open_store(path: Path, con: duckdb.DuckDBPyConnection, events: str = "events") -> None:
    """Register views ``patients`` and ``events`` (or the name ``events`` gives) over the store
    at ``path`` in ``con``.

    An empty store (no events yet) gives empty views with the schema of ``store.schema``.
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: not a store directory")
    patients = path / "patients.parquet"
    files = event_files(path)
    if patients.exists():
        con.execute(
            f"CREATE OR REPLACE VIEW patients AS SELECT * FROM read_parquet({quote(str(patients))})"
        )
    else:
        _empty_table(con, "__empty_patients", PATIENTS_SCHEMA.empty_table())
        con.execute("CREATE OR REPLACE VIEW patients AS SELECT * FROM __empty_patients")
    if files:
        names = ", ".join(quote(str(f)) for f in files)
        con.execute(
            f"CREATE OR REPLACE VIEW {events} AS SELECT * FROM "
            f"read_parquet([{names}], union_by_name=true)"
        )
    else:
        _empty_table(con, "__empty_events", EVENTS_SCHEMA.empty_table())
        con.execute(f"CREATE OR REPLACE VIEW {events} AS SELECT * FROM __empty_events")


def _empty_table(con: duckdb.DuckDBPyConnection, name: str, empty: pa.Table) -> None:
    """An empty table ``name`` of ``empty``'s schema in the database, not a registered Arrow
    object: other cursors of the database (``screen.backend``'s concurrent statements) see it."""
    con.register("__empty_arrow", empty)
    try:
        con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM __empty_arrow")
    finally:
        con.unregister("__empty_arrow")
