"""The same compiled rules on Apache Spark (local mode) give identical results to DuckDB."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from storekit import AS_OF, build_store, crit, lab, person, protocol

from trialsieve.cli.aki import command as aki_command
from trialsieve.demo.cohort import DEMO_AS_OF, build_demo_store
from trialsieve.protocols.loader import load_bundled
from trialsieve.screen.backend import DuckDBBackend, SparkBackend
from trialsieve.screen.engine import screen_store
from trialsieve.screen.results_file import ResultsLookup
from trialsieve.screen.sql import MAX_EVIDENCE, ev_list, tie_order
from trialsieve.store.reader import event_files
from trialsieve.store.schema import events_parquet_options
from trialsieve.synth.generator import SynthConfig
from trialsieve.synth.writers import write_store

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def spark() -> Iterator[SparkBackend]:
    backend = SparkBackend(master="local[2]")
    backend.spark.sparkContext.setLogLevel("ERROR")
    yield backend


def _both(
    store: Path, spark: SparkBackend, parquet: Path | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The records of both engines (and, with ``parquet``, Spark's results.parquet written)."""
    protocols = load_bundled()
    duck = screen_store(store, protocols, DEMO_AS_OF).records
    run = screen_store(store, protocols, DEMO_AS_OF, backend=spark)
    sprk = run.records
    if parquet is not None:
        run.write(parquet)
    # the module shares one local session (4 GB driver): free this run's checkpointed tables
    # before the next test
    for name in spark.tables():
        spark.drop(name)
    spark.spark.catalog.clearCache()
    return duck, sprk


def test_demo_cohort_identical_on_spark(spark: SparkBackend, tmp_path: Path) -> None:
    build_demo_store(tmp_path / "store", n_patients=200)
    duck, sprk = _both(tmp_path / "store", spark, tmp_path / "spark.parquet")
    assert len(duck) == 4 * 200
    statuses = {r["status"] for r in duck}
    assert statuses == {"ineligible", "needs_data", "potentially_eligible"}
    assert sum(len(c["evidence"]) for r in duck for c in r["criteria"]) > 1000
    assert sprk == duck
    # the compact results.parquet written on Spark gives the same records back
    lookup = ResultsLookup(tmp_path / "spark.parquet")
    for pid in sorted({r["patient_id"] for r in duck}):
        assert lookup.patient(pid) == [r for r in duck if r["patient_id"] == pid]


def test_bounds_identical_on_spark(spark: SparkBackend, tmp_path: Path) -> None:
    """Results reported as bounds (screen/bounds.py, the AKI staging's safe ends, the pre-AKI
    eGFR of a bounded baseline) give the same records on both engines: the demo cohort with a
    third of its lab results turned into "<b" and another third into ">b"."""
    store = tmp_path / "store"
    build_demo_store(store, n_patients=200)
    for path in event_files(store):
        t = pq.read_table(path)
        lab = pc.equal(t["kind"], "lab").to_numpy(zero_copy_only=False)
        text = t["value_text"].to_pylist()
        values = t["value"].to_pylist()
        n_bounds = 0
        for i, (is_lab, v) in enumerate(zip(lab, values, strict=True)):
            if is_lab and v is not None and i % 3:
                text[i] = ("<" if i % 3 == 1 else ">") + f"{v:g}"
                n_bounds += 1
        assert n_bounds > 1000
        t = t.set_column(t.schema.get_field_index("value_text"), "value_text",
                         pa.array(text, pa.string()))  # fmt: skip
        pq.write_table(t, path, **events_parquet_options())
    duck, sprk = _both(store, spark)
    notes = [e["note"] or "" for r in duck for c in r["criteria"] for e in c["evidence"]]
    assert any("reported as <" in n for n in notes) and any("reported as >" in n for n in notes)
    assert sprk == duck


def test_min_max_every_any_with_bounds_identical_on_spark(
    spark: SparkBackend, tmp_path: Path
) -> None:
    """Every aggregation of a lab rule over results reported as bounds (the bundled protocols
    use none of min/max): one patient per combination of two results, both engines alike."""
    marks = [None, "<", "<=", ">", ">="]
    events, people = [], []
    for n, ((c1, v1), (c2, v2)) in enumerate(
        itertools.product(itertools.product(marks, (5.0, 7.0)), repeat=2)
    ):
        pid = f"p{n:03d}"
        people.append(person(pid, dt.date(1970, 1, 1)))
        for days, c, v in ((3, c1, v1), (5, c2, v2)):
            row = lab(pid, "hba1c", v, "%", days_ago=days)
            events.append({**row, "value_text": f"{c}{v:g}"} if c else row)
    store = build_store(tmp_path / "store", people, events)
    criteria = [
        crit(
            f"inc-{i}",
            {
                "lab": {
                    "analyte": "hba1c",
                    "window": {"days": 30},
                    "agg": agg,
                    "op": op,
                    "value": 6,
                    "unit": "%",
                }
            },
        )  # fmt: skip
        for i, (agg, op) in enumerate(
            itertools.product(("latest", "min", "max", "any", "every"), ("<", ">="))
        )
    ]
    protocols = [protocol(criteria)]
    duck = screen_store(store, protocols, AS_OF).records
    sprk = screen_store(store, protocols, AS_OF, backend=spark).records
    for name in spark.tables():
        spark.drop(name)
    verdicts = {c["verdict"] for r in duck for c in r["criteria"]}
    assert verdicts == {"met", "not_met", "unknown"}
    assert sprk == duck


def test_evidence_lists_identical_on_spark(spark: SparkBackend) -> None:
    """Evidence lists (``sql.ev_list``) of items at one instant that differ only in NULL and
    non-NULL fields (the engines order a struct's NULL fields differently): the same list on
    both, and the first ``MAX_EVIDENCE`` items of the one ``list(... ORDER BY ... DESC)`` gives
    on DuckDB (of the groups' 20-odd items)."""
    text = ("NULL", "''", "'a'", "'b'")
    rows = " UNION ALL ".join(
        f"SELECT {g} AS g, {t} AS t, {{'source': CAST({s} AS VARCHAR), "
        f"'code': CAST({c} AS VARCHAR), 'value': CAST({v} AS DOUBLE), "
        f"'unit': CAST({u} AS VARCHAR), 'time': 'x', 'note': CAST({n} AS VARCHAR)}} AS ev"
        for g, (t, s, c, v, u, n) in enumerate(
            itertools.product(
                ("CAST(NULL AS TIMESTAMP)", "TIMESTAMP '2026-01-01 10:00:00'"),
                text[:3],
                text[1:],
                ("NULL", "1.5"),
                text[:2],
                text[::2],
            )  # fmt: skip
        )
    )
    rows = f"SELECT g % 7 AS g, t, ev FROM ({rows})"
    listed = f"SELECT g, {ev_list('ev', 't')} AS evs FROM r GROUP BY g ORDER BY g"
    duck = DuckDBBackend()
    duck.create("r", rows)
    ordered = f"list(ev ORDER BY t DESC, {tie_order('ev')})"
    want = duck.arrow(
        f"SELECT g, list_slice({ordered}, 1, {MAX_EVIDENCE}) AS evs FROM r GROUP BY g ORDER BY g"
    ).to_pylist()
    assert _same_on_both(spark, rows, listed) == want
    assert len(want) == 7 and all(len(x["evs"]) == MAX_EVIDENCE for x in want)
    assert duck.rows("SELECT min(n) FROM (SELECT count(*) AS n FROM r GROUP BY g)")[0][0] > 15


def _same_on_both(spark: SparkBackend, rows: str, query: str) -> list[dict[str, Any]]:
    """The rows of ``query`` over a table ``r`` of ``rows`` on DuckDB, checked equal on Spark."""
    duck = DuckDBBackend()
    duck.create("r", rows)
    got = duck.arrow(query).to_pylist()
    spark.create("r", rows)
    try:
        assert spark.arrow(query).to_pylist() == got
    finally:
        spark.drop("r")
    return got


@pytest.mark.slow
def test_synthetic_10k_identical_on_spark(spark: SparkBackend, tmp_path: Path) -> None:
    write_store(SynthConfig(patients=10_000, seed=11, as_of=DEMO_AS_OF), tmp_path / "synth")
    duck, sprk = _both(tmp_path / "synth", spark)
    assert len(duck) == 4 * 10_000
    assert sprk == duck


def test_aki_cli_identical_on_spark(spark: SparkBackend, tmp_path: Path) -> None:
    ex = REPO / "examples" / "aki"
    outs = {}
    for engine in ("duckdb", "spark"):
        res = CliRunner().invoke(
            aki_command,
            ["--creatinine", str(ex / "creatinine.csv"), "--patients", str(ex / "patients.csv"),
             "--urine", str(ex / "urine.csv"), "--weights", str(ex / "weights.csv"),
             "--rrt", str(ex / "rrt.csv"), "--baseline", "lowest-3m-1y-mdrd75",
             "--engine", engine, "--out", str(tmp_path / f"{engine}.csv"),
             "--summary", str(tmp_path / f"{engine}-s.csv")],
        )  # fmt: skip
        assert res.exit_code == 0, res.output
        outs[engine] = (
            (tmp_path / f"{engine}.csv").read_text(),
            (tmp_path / f"{engine}-s.csv").read_text(),
        )
    assert outs["spark"] == outs["duckdb"]
    assert "mdrd75-backcalc" in outs["duckdb"][0]
