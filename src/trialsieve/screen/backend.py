"""Where the compiled SQL runs: DuckDB in-process (default) or Apache Spark.

The compiler and the engine emit SQL text in DuckDB's dialect; a backend only knows how to
materialise a named intermediate table or view, register the store, and fetch rows (as Arrow).
:class:`SparkBackend` transpiles each statement with sqlglot (DuckDB -> Spark SQL) and runs it on
a SparkSession reading the same Parquet store, with the session time zone pinned to UTC.
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
from collections.abc import Iterator
from concurrent import futures
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import duckdb
import pyarrow as pa

from trialsieve.screen.sql import ISO_Z, lit
from trialsieve.store.reader import event_files, in_screening_order, open_store


class Backend(Protocol):
    """What the engine needs from a query engine."""

    name: str

    def open_store(
        self, store_dir: Path, patient_ids: list[str] | None = None
    ) -> list[PatientRange]:
        """Expose the store's ``patients`` (optionally only the events of ``patient_ids``; the
        engine restricts the population itself as well) and return the patient-id ranges to
        screen one after another: ``[ALL_PATIENTS]`` unless the store is too large for one go."""

    def load_events(self, part: PatientRange) -> None:
        """Expose as relation ``events`` the store's events of the patients in ``part``."""

    def create(self, name: str, select_sql: str) -> None:
        """Materialise ``select_sql`` (DuckDB dialect) as intermediate relation ``name`` (it may
        be built in the background: every other method sees it complete)."""

    def view(self, name: str, select_sql: str) -> None:
        """Define ``select_sql`` as relation ``name``, evaluated each time it is read."""

    def append(self, name: str, select_sql: str) -> None:
        """Add the rows of ``select_sql`` to the relation ``name`` made by :meth:`create`."""

    def drop(self, name: str) -> None:
        """Forget the relation ``name`` (and free what it holds)."""

    def tables(self) -> set[str]:
        """The intermediate relations that exist now: every one :meth:`create` made and did
        not drop is among them (the engine drops what a part added)."""

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        """Run a query and return its rows."""

    def reader(self, sql: str, batch_rows: int) -> pa.RecordBatchReader:
        """Run a query and stream its result as Arrow record batches."""

    def arrow(self, sql: str) -> pa.Table:
        """Run a query and return its whole result as an Arrow table."""

    def write_jsonl(self, sql: str, out: Path) -> int:
        """Write the query's rows as newline-delimited JSON, in order; return the count."""

    def insertion_order(self) -> Any:
        """Context manager: inside it, a table made from an ordered query keeps that order and
        a query without ORDER BY returns a table's rows in the order they were added."""


#: the event columns that compiled rules read (docs/STORE.md); not ``event_id``: no rule reads
#: it (results of the same instant are told apart by their evidence, ``sql.tie_order``), and
#: its unique 32-character strings were ~40 % of the cost of loading a part's events
RULE_COLUMNS = (
    "patient_id", "kind", "analyte", "code_system", "code", "display", "start_time", "end_time",
    "value", "unit", "value_text", "ref_low", "ref_high", "route", "source",
)  # fmt: skip

#: events screened at once: larger stores are screened in parts of about this many events, by
#: patient-id range (see DuckDBBackend.open_store). Rules that read a part's events where they lie
#: (a store in the screening layout) leave DuckDB's memory to their own tables (one part of 1M
#: synthetic patients, 114M events, peaked at ~6 GB); a part loaded into memory (an older store,
#: sorted at load) holds its events there too (~2.3 GB per 100k patients).
#: ``TRIALSIEVE_PART_EVENTS`` sets both.
PART_EVENTS_READ = int(os.environ.get("TRIALSIEVE_PART_EVENTS", 120_000_000))
PART_EVENTS_LOADED = int(os.environ.get("TRIALSIEVE_PART_EVENTS", 12_000_000))

#: statements DuckDB runs at once (independent rule tables; each also uses DuckDB's threads):
#: parts of many statements run on one thread (small tables, planning, the last phase of a
#: window or sort), and a second statement fills the idle core. 1 = one after another.
STATEMENTS = max(1, int(os.environ.get("TRIALSIEVE_DUCKDB_STATEMENTS", 2)))

#: what may name a table in SQL text (a superset of the names: literals count too)
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

#: patient ids ``lo <= id < hi`` screened together (``None``: unbounded)
PatientRange = tuple[str | None, str | None]
ALL_PATIENTS: PatientRange = (None, None)


def range_sql(part: PatientRange, col: str = "patient_id") -> str:
    """SQL predicate: ``col`` lies in ``part``."""
    lo, hi = part
    conds = ([f"{col} >= {lit(lo)}"] if lo is not None else []) + (
        [f"{col} < {lit(hi)}"] if hi is not None else []
    )
    return " AND ".join(conds) or "TRUE"


def ids_sql(patient_ids: list[str] | None, col: str = "patient_id") -> str:
    """SQL predicate: ``col`` is one of ``patient_ids`` (``None``: every patient)."""
    if patient_ids is None:
        return "TRUE"
    return f"{col} IN ({', '.join(lit(p) for p in patient_ids) or 'NULL'})"


def id_ranges(
    backend: Backend, relation: str, parts: int | None = None, *, per_range: int | None = None
) -> list[PatientRange]:
    """``parts`` ranges (or as many as hold about ``per_range`` ids each) holding about equally
    many of the patient ids of ``relation`` (fewer if ids repeat): the range edges are the ids at
    the cut positions of the sorted ids, picked by the database. The ids themselves stay there
    (100M patients would be ~7 GB of Python strings; 1M patients took 0.2 s to fetch)."""
    n = backend.rows(f"SELECT count(*) FROM {relation}")[0][0]
    if n == 0:
        return [ALL_PATIENTS]
    if parts is None:
        if per_range is None:
            raise ValueError("id_ranges: give parts or per_range")
        parts = -(-n // per_range)
    at = sorted({0} | {n * j // parts for j in range(1, parts)})
    ranked = f"SELECT patient_id, row_number() OVER (ORDER BY patient_id) - 1 AS r FROM {relation}"
    ids = dict(
        backend.rows(f"SELECT r, patient_id FROM ({ranked}) WHERE r IN ({', '.join(map(str, at))})")
    )
    bounds = sorted({ids[k] for k in at} - {ids[0]})
    return list(zip([None, *bounds], [*bounds, None], strict=True))


class DuckDBBackend:
    """The embedded default.

    :meth:`create` runs up to :data:`STATEMENTS` statements at once, each on its own cursor of
    the database (the tables are the database's, not one connection's temporary tables). A
    statement starts once the pending tables its SQL names are built; every other method first
    waits for all pending statements (and raises the first failure), so reads, views, appends
    and drops see a finished set of tables. Each statement's result does not depend on what
    runs beside it: the output is the same as one statement at a time.
    """

    name = "duckdb"

    def __init__(self, con: duckdb.DuckDBPyConnection | None = None) -> None:
        if con is None:
            con = duckdb.connect()
            # bounded memory: intermediate tables spill to disk beyond the limit
            con.execute(f"SET memory_limit = '{os.environ.get('TRIALSIEVE_MEMORY_LIMIT', '6GB')}'")
            # where they spill: the system temp folder, not the working directory
            spill = os.environ.get("TRIALSIEVE_TEMP_DIR") or str(
                Path(tempfile.gettempdir()) / "trialsieve-duckdb"
            )
            con.execute(f"SET temp_directory = {lit(spill)}")
            con.execute("SET preserve_insertion_order = false")
            # each rule reads the store's files again (``load_events``): their footers parsed
            # once (a 1M-patient store of 200 files: ~1 s of a ~65 s run, 2026-11-29)
            con.execute("SET parquet_metadata_cache = true")
        self.con = con
        self._pool: ThreadPoolExecutor | None = None
        #: table name -> its statement, submitted and not yet waited for
        self._pending: dict[str, Future[None]] = {}
        self._cursors = threading.local()

    def open_store(
        self, store_dir: Path, patient_ids: list[str] | None = None
    ) -> list[PatientRange]:
        """Views over the store. A store of up to :data:`PART_EVENTS_READ` events (in the
        screening layout; else :data:`PART_EVENTS_LOADED`) is one part; a larger one is split
        into patient-id ranges of about equally many patients, one part per that many events, so
        that each part fits in memory (within each kind and analyte the store is sorted by
        patient: a part reads only its row groups)."""
        self.wait()
        open_store(store_dir, self.con, events="__store_events")
        self._clustered = in_screening_order(store_dir)
        self._only = ids_sql(patient_ids)
        #: rules read the part's events from the store's files (see :meth:`load_events`)
        self._in_place = self._clustered and patient_ids is None
        if patient_ids is not None:  # explaining a few patients: only their events
            return [ALL_PATIENTS]
        n = self.con.execute("SELECT count(*) FROM __store_events").fetchall()[0][0]
        parts = -(-n // (PART_EVENTS_READ if self._in_place else PART_EVENTS_LOADED))
        if parts <= 1:
            return [ALL_PATIENTS]
        return id_ranges(self, "patients", parts)

    def load_events(self, part: PatientRange) -> None:
        """Expose the part's events (the columns rules read) as ``events``, clustered by kind and
        analyte so that each rule reads only the row groups of its analyte or kind.

        A store in the screening layout (``store.reader.in_screening_order``) is that
        clustering: ``events`` is a view over its files, and each rule reads its own columns
        and row groups from them (Parquet statistics; DuckDB's parallel scans). Loading the
        part into a table first cost as much time as it saved the rules (1.8-2.0 s per 100k
        patients), and ~2.3 GB of memory per 100k patients, which made the parts small.
        An older store, or a few patients' events (``patient_ids``), are loaded once into a
        table, sorted by kind and analyte (an older store at 100k patients: ~12 s of a ~17 s
        load)."""
        where = f"{self._only} AND {range_sql(part)}"
        cols = ", ".join(RULE_COLUMNS)
        if self._in_place:
            self.con.execute(
                f"CREATE OR REPLACE VIEW events AS SELECT {cols} FROM __store_events WHERE {where}"
            )
            return
        sort = "" if self._clustered else " ORDER BY kind, analyte"
        with self.insertion_order():
            self.con.execute(
                f"CREATE OR REPLACE TABLE __events AS SELECT {cols} FROM __store_events "
                f"WHERE {where}{sort}"
            )
        self.con.execute("CREATE OR REPLACE VIEW events AS SELECT * FROM __events")

    def create(self, name: str, select_sql: str) -> None:
        sql = f"CREATE OR REPLACE TABLE {name} AS {select_sql}"
        if STATEMENTS == 1:
            self.con.execute(sql)
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(STATEMENTS, thread_name_prefix="trialsieve-duckdb")
        # the pending tables it reads, and an earlier statement making the same table; the
        # pool starts statements in submission order, so these have all started already (a
        # statement never waits on one queued behind it)
        after = [self._pending[w] for w in set(_WORD.findall(select_sql)) | {name}
                 if w in self._pending]  # fmt: skip
        self._pending[name] = self._pool.submit(self._run_after, after, sql)

    def _run_after(self, after: list[Future[None]], sql: str) -> None:
        for f in after:
            f.result()  # a failed input fails this statement with the same error
        cur = getattr(self._cursors, "cur", None)
        if cur is None:
            cur = self._cursors.cur = self.con.cursor()
        cur.execute(sql)

    def wait(self) -> None:
        """Wait for every pending :meth:`create`; raise the first failure, in submission
        order."""
        pending, self._pending = self._pending, {}
        futures.wait(pending.values())
        for f in pending.values():
            f.result()

    def view(self, name: str, select_sql: str) -> None:
        self.wait()
        self.con.execute(f"CREATE OR REPLACE VIEW {name} AS {select_sql}")

    def append(self, name: str, select_sql: str) -> None:
        self.wait()
        self.con.execute(f"INSERT INTO {name} {select_sql}")

    def drop(self, name: str) -> None:
        self.wait()
        self.con.execute(f"DROP TABLE IF EXISTS {name}")

    def tables(self) -> set[str]:
        return {
            r[0]
            for r in self.rows(
                "SELECT table_name FROM duckdb_tables() "
                "WHERE database_name = current_database() AND schema_name = 'main'"
            )
        }

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        self.wait()
        return self.con.execute(sql).fetchall()

    def reader(self, sql: str, batch_rows: int) -> pa.RecordBatchReader:
        self.wait()
        return self.con.sql(sql).to_arrow_reader(batch_rows)

    def arrow(self, sql: str) -> pa.Table:
        self.wait()
        return self.con.sql(sql).to_arrow_table()

    def write_jsonl(self, sql: str, out: Path) -> int:
        with self.insertion_order():  # the query's ORDER BY kept in the file
            rows = self.con.execute(f"COPY ({sql}) TO {lit(str(out))} (FORMAT JSON)").fetchall()
        return int(rows[0][0])

    @contextmanager
    def insertion_order(self) -> Iterator[None]:
        """Order kept inside (the session default is off, for speed). The setting is the
        database's: no statement runs beside one started inside (they are waited for on entry
        and on exit)."""
        self.wait()
        keep = self.con.execute("SELECT current_setting('preserve_insertion_order')").fetchall()
        self.con.execute("SET preserve_insertion_order = true")
        try:
            yield
            self.wait()
        finally:
            self.con.execute(f"SET preserve_insertion_order = {str(keep[0][0]).lower()}")


class SparkBackend:
    """Apache Spark: the same SQL, transpiled DuckDB -> Spark with sqlglot.

    Intermediate relations are temp views over locally checkpointed DataFrames (materialised once,
    like DuckDB's temp tables). The session time zone is UTC so that timestamps and windows do not
    shift with the server's zone or DST.
    """

    name = "spark"

    def __init__(self, spark: Any | None = None, master: str | None = None) -> None:
        if spark is None:
            spark = spark_session(master)
        self.spark = spark
        self.spark.conf.set("spark.sql.session.timeZone", "UTC")

    def to_spark_sql(self, sql: str) -> str:
        """Transpile DuckDB SQL text to Spark SQL."""
        return to_spark_sql(sql)

    def open_store(
        self, store_dir: Path, patient_ids: list[str] | None = None
    ) -> list[PatientRange]:
        """Views over the store; Spark screens every patient in one part."""
        store_dir = Path(store_dir)
        if not store_dir.is_dir():
            raise FileNotFoundError(f"{store_dir}: not a store directory")
        read = self.spark.read.parquet
        read(str(store_dir / "patients.parquet")).createOrReplaceTempView("patients")
        files = [str(f) for f in event_files(store_dir)]
        if not files:
            raise FileNotFoundError(f"{store_dir}: store has no events")
        read(*files).createOrReplaceTempView("__store_events")
        return [ALL_PATIENTS]

    def load_events(self, part: PatientRange) -> None:
        self.view("events", f"SELECT * FROM __store_events WHERE {range_sql(part)}")

    def create(self, name: str, select_sql: str) -> None:
        df = self.spark.sql(self.to_spark_sql(select_sql)).localCheckpoint(eager=True)
        df.createOrReplaceTempView(name)

    def view(self, name: str, select_sql: str) -> None:
        self.spark.sql(self.to_spark_sql(select_sql)).createOrReplaceTempView(name)

    def append(self, name: str, select_sql: str) -> None:
        self.create(name, f"SELECT * FROM {name} UNION ALL {select_sql}")

    def drop(self, name: str) -> None:
        self.spark.catalog.dropTempView(name)

    def tables(self) -> set[str]:
        return {t.name for t in self.spark.catalog.listTables() if t.isTemporary}

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self.spark.sql(self.to_spark_sql(sql)).collect()]

    def reader(self, sql: str, batch_rows: int) -> pa.RecordBatchReader:
        table = self.arrow(sql)
        return pa.RecordBatchReader.from_batches(
            table.schema, table.to_batches(max_chunksize=batch_rows)
        )

    def arrow(self, sql: str) -> pa.Table:
        return self.spark.sql(self.to_spark_sql(sql)).toArrow()

    def write_jsonl(self, sql: str, out: Path) -> int:
        import orjson

        n = 0
        with Path(out).open("wb") as f:
            for batch in self.reader(sql, 50_000):
                for rec in batch.to_pylist():
                    f.write(orjson.dumps(rec) + b"\n")
                    n += 1
        return n

    @contextmanager
    def insertion_order(self) -> Iterator[None]:
        """Nothing to switch: Spark screens in one part, and its queries say their ORDER BY."""
        yield


def spark_session(master: str | None = None) -> Any:
    """A SparkSession (local[*] unless ``master`` or the standard Spark configuration says)."""
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName("trialsieve")
    if master:
        builder = builder.master(master)
    elif not _configured_master():
        builder = builder.master("local[*]")
    return (
        builder.config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", os.environ.get("TRIALSIEVE_SPARK_PARTITIONS", "4"))
        .config("spark.driver.memory", os.environ.get("TRIALSIEVE_SPARK_DRIVER_MEMORY", "4g"))
        .config("spark.driver.maxResultSize", "0")
        # the results query LEFT JOINs ~20 broadcast rule tables per trial; each broadcast hash
        # table starts with one memory page, 64 MB by default, so ~80 of them exhausted a 4 GB
        # driver even for tiny tables ("Not enough memory to build and broadcast the table",
        # "Could not allocate memory to grow BytesToBytesMap"); small pages grow as needed
        .config("spark.buffer.pageSize", os.environ.get("TRIALSIEVE_SPARK_PAGE_SIZE", "2m"))
        .getOrCreate()
    )


def _configured_master() -> bool:
    return bool(os.environ.get("MASTER") or os.environ.get("SPARK_MASTER"))


def to_spark_sql(sql: str) -> str:
    """DuckDB SQL -> Spark SQL (sqlglot), with the rewrites Spark needs.

    - ``median`` is refused over a window frame; ``percentile(x, 0.5)`` is the same exact median
      (mean of the two middle values for an even count) and is allowed there.
    - ``list_slice(l, a, b)`` -> ``slice(l, a, b - a + 1)``.
    - ``strftime(t, sql.ISO_Z)`` -> the date, ``T``, the time and ``Z`` joined (Spark's
      patterns reserve the letters T and Z).
    - ``max(x, n)`` (the ``n`` greatest, a list, greatest first; ``sql.ev_list``) ->
      ``slice(sort_array(collect_list(x), false), 1, n)``, its ``FILTER`` on the
      ``collect_list``.
    - ``row_number() OVER ()`` (any unique row number: Spark refuses a row number without an
      order) -> ``monotonically_increasing_id()``, unique too, in a table stored once.
    """
    import sqlglot
    from sqlglot import exp

    def rewrite(node: exp.Expression) -> exp.Expression:
        if (
            isinstance(node, exp.Window)
            and isinstance(node.this, exp.RowNumber)
            and not node.args.get("partition_by")
            and not node.args.get("order")
        ):
            return exp.Anonymous(this="MONOTONICALLY_INCREASING_ID", expressions=[])
        if isinstance(node, exp.Filter) and _top_n(node.this):
            return _top_n_list(node.this, node.expression)
        if _top_n(node):
            return _top_n_list(node, None)
        if isinstance(node, exp.TimeToStr) and node.args["format"].name == ISO_Z:
            date, clock = (
                exp.TimeToStr(this=node.this.copy(), format=exp.Literal.string(f))
                for f in ("%Y-%m-%d", "%H:%M:%S")
            )
            return exp.Concat(
                expressions=[date, exp.Literal.string("T"), clock, exp.Literal.string("Z")]
            )
        if isinstance(node, exp.Median):
            return exp.Anonymous(
                this="PERCENTILE", expressions=[node.this, exp.Literal.number(0.5)]
            )
        return node

    def rewrite_lists(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Anonymous) and node.name.upper() == "LIST_SLICE":
            lst, start, end = node.expressions
            length = exp.Add(
                this=exp.Sub(this=end, expression=start), expression=exp.Literal.number(1)
            )
            return exp.Anonymous(this="SLICE", expressions=[lst, start, length])
        return node

    def _top_n(node: exp.Expression) -> bool:
        return isinstance(node, exp.Max) and node.args.get("count") is not None

    def _top_n_list(node: exp.Expression, where: exp.Expression | None) -> exp.Expression:
        items: exp.Expression = exp.Anonymous(this="COLLECT_LIST", expressions=[node.this])
        if where is not None:
            items = exp.Filter(this=items, expression=where)
        ordered = exp.Anonymous(this="SORT_ARRAY", expressions=[items, exp.false()])
        return exp.Anonymous(
            this="SLICE", expressions=[ordered, exp.Literal.number(1), node.args["count"]]
        )

    # two passes: a replaced node's subtree is not revisited within one pass
    tree = sqlglot.parse_one(sql, read="duckdb").transform(rewrite).transform(rewrite_lists)
    return tree.sql(dialect="spark")


def run_on_spark(
    con: duckdb.DuckDBPyConnection,
    inputs: list[str],
    queries: dict[str, str],
    backend: SparkBackend,
) -> None:
    """Run DuckDB-dialect ``queries`` on Spark over the DuckDB tables ``inputs``.

    The input tables travel as Parquet to Spark temp views; each query's result comes back as a
    DuckDB table of the same name (queries run in order and may use earlier results).
    """
    import tempfile

    with tempfile.TemporaryDirectory(prefix="trialsieve-spark-") as tmp:
        for name in inputs:
            path = Path(tmp) / f"{name}.parquet"
            con.execute(f"COPY {name} TO '{path}' (FORMAT PARQUET)")
            backend.spark.read.parquet(str(path)).createOrReplaceTempView(name)
        for name, sql in queries.items():
            out = Path(tmp) / f"out_{name}"
            df = backend.spark.sql(backend.to_spark_sql(sql))
            df.write.mode("overwrite").parquet(str(out))
            backend.spark.read.parquet(str(out)).createOrReplaceTempView(name)
            con.execute(
                f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM read_parquet('{out}/*.parquet')"
            )
