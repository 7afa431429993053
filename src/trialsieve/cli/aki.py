"""``trialsieve aki``: stage AKI (KDIGO 2012 and NHS England 2014) over creatinine series.

Reads the CSV files of issue 2 section 3 (:mod:`trialsieve.kidney.aki_inputs`), stages every
creatinine result with :mod:`trialsieve.kidney.aki` and, with ``--urine``/``--weights``, the
urine-output episodes with :mod:`trialsieve.kidney.urine`, all in one in-memory DuckDB
database (the urine side on a second cursor, beside the creatinine: :func:`run_aki`).

Outputs:
- ``--out``: one row per accepted creatinine result, in input order: ``patient_id,time,
  creatinine_umol_l,kdigo_stage,kdigo_reason,baseline_umol_l,baseline_source,nhs_stage``
  (times ISO-8601 UTC with ``Z``; µmol/L rounded to 0.01, written with two decimals).
- ``--summary``: one row per patient seen in the creatinine, urine or RRT file:
  ``patient_id,max_kdigo_stage,first_aki_time,max_stage_by,max_nhs_stage``. ``max_stage_by`` is
  the source (creatinine / urine / rrt) that first reached the maximum stage (ties at the same
  time: creatinine, then urine, then rrt); ``first_aki_time`` is the earliest time any source
  reached stage >= 1 (a creatinine result's time, a urine episode's ``stage_time``, an RRT
  start). ``max_nhs_stage`` is empty for a patient without creatinine results.
- ``--rejects``: ``file,line,reason`` for every rejected input record, file by file (creatinine,
  urine, weights, rrt, patients), each by line. When records are rejected and ``--rejects`` is
  not given they are written to ``<out>.rejects.csv`` (they never vanish).
  A count per file is printed on stderr at the end.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import click
import duckdb

from trialsieve.kidney.aki import BASELINES, creatinine_stages_sql
from trialsieve.kidney.aki_inputs import (
    REJECTS_TABLE,
    AkiInputError,
    FileLoad,
    connect,
    load_creatinine,
    load_patients,
    load_rrt,
    load_urine,
    load_weights,
    session,
)
from trialsieve.sqltext import quote

RESULT_COLUMNS = (
    "patient_id,time,creatinine_umol_l,kdigo_stage,kdigo_reason,baseline_umol_l,"
    "baseline_source,nhs_stage"
)
SUMMARY_COLUMNS = "patient_id,max_kdigo_stage,first_aki_time,max_stage_by,max_nhs_stage"
#: the columns of :func:`trialsieve.kidney.aki.creatinine_stages_sql` that the outputs use
STAGED_COLUMNS = (
    "rid", "patient_id", "t", "scr", "kdigo_stage", "kdigo_reason", "kdigo_by",
    "baseline_umol_l", "baseline_source", "nhs_stage",
)  # fmt: skip
_ISO = "'%Y-%m-%dT%H:%M:%SZ'"


def _copy(con: duckdb.DuckDBPyConnection, query: str, path: Path) -> None:
    con.execute(f"COPY ({query}) TO {quote(path)} (FORMAT CSV, HEADER, DELIMITER ',')")


def _copy_closing(cur: duckdb.DuckDBPyConnection, query: str, path: Path) -> None:
    """:func:`_copy` on a cursor of its own, closed after."""
    try:
        _copy(cur, query, path)
    finally:
        cur.close()


def _urine_episodes_sql(urine: str, weights: str) -> str:
    """A2's urine-output episodes (KDIGO 2012 Table 2), imported lazily."""
    try:
        from trialsieve.kidney.urine import urine_stages_sql
    except ImportError as e:  # pragma: no cover - only while the module is missing
        raise click.ClickException(f"urine-output staging is not available: {e}") from e
    return urine_stages_sql(urine, weights)


def _summary_sql(has_urine: bool, has_rrt: bool) -> str:
    events = [
        "SELECT patient_id, t, kdigo_stage AS stage, kdigo_by AS src, "
        "CASE kdigo_by WHEN 'creatinine' THEN 0 ELSE 2 END AS prio "
        "FROM staged WHERE kdigo_stage >= 1"
    ]
    # the creatinine patients are those of ``nhs`` below (staged has every accepted result)
    ids = ["SELECT patient_id FROM nhs"]
    if has_urine:
        events.append(
            "SELECT patient_id, stage_time AS t, stage, 'urine' AS src, 1 AS prio "
            "FROM urine_episodes WHERE stage >= 1"
        )
        ids.append("SELECT patient_id FROM urine")
    if has_rrt:
        events.append("SELECT patient_id, start AS t, 3 AS stage, 'rrt' AS src, 2 AS prio FROM rrt")
        ids.append("SELECT patient_id FROM rrt")
    return f"""
WITH ev AS ({" UNION ALL ".join(events)}),
nhs AS (SELECT patient_id, MAX(nhs_stage) AS max_nhs FROM staged GROUP BY patient_id),
ids AS ({" UNION ".join(ids)}),
ranked AS (
  SELECT ev.*, MAX(stage) OVER (PARTITION BY patient_id) AS max_stage,
    ROW_NUMBER() OVER (PARTITION BY patient_id, stage ORDER BY t, prio) AS rn
  FROM ev
),
per AS (
  SELECT patient_id, MAX(stage) AS max_stage, MIN(t) AS first_aki,
    MIN(CASE WHEN stage = max_stage AND rn = 1 THEN src END) AS max_by
  FROM ranked GROUP BY patient_id
)
SELECT ids.patient_id, COALESCE(per.max_stage, 0) AS max_kdigo_stage,
  strftime(per.first_aki, {_ISO}) AS first_aki_time, per.max_by AS max_stage_by,
  nhs.max_nhs AS max_nhs_stage
FROM ids LEFT JOIN per ON per.patient_id = ids.patient_id
LEFT JOIN nhs ON nhs.patient_id = ids.patient_id
ORDER BY ids.patient_id"""


def _urine_side(
    cur: duckdb.DuckDBPyConnection, urine: Path, weights: Path, episodes: bool
) -> list[FileLoad]:
    """Load the urine and weight files on the cursor ``cur`` and, with ``episodes``, build the
    ``urine_episodes`` table; return the two files' counts."""
    loads = [load_urine(cur, urine), load_weights(cur, weights)]
    if episodes:
        cur.execute(f"CREATE TABLE urine_episodes AS {_urine_episodes_sql('urine', 'weights')}")
    cur.close()
    return loads


def _umol(col: str) -> str:
    """µmol/L rounded to 0.01 and written with two decimals (a DECIMAL is also written faster
    than a DOUBLE by the CSV writer)."""
    return f"CAST(ROUND({col}, 2) AS DECIMAL(18, 2))"


def _results_sql(order: str) -> str:
    return (
        f"SELECT patient_id, strftime(t, {_ISO}) AS time, {_umol('scr')} AS creatinine_umol_l, "
        f"kdigo_stage, kdigo_reason, {_umol('baseline_umol_l')} AS baseline_umol_l, "
        f"baseline_source, nhs_stage FROM staged{order}"
    )


def run_aki(
    *,
    creatinine: Path,
    out: Path,
    urine: Path | None = None,
    weights: Path | None = None,
    rrt: Path | None = None,
    patients: Path | None = None,
    baseline: str = "kdigo",
    summary: Path | None = None,
    rejects: Path | None = None,
    engine: str = "duckdb",
    spark_master: str | None = None,
) -> tuple[list[FileLoad], Path | None]:
    """Run the whole command; return the per-file counts and where rejects were written.

    The urine side (its two files and, on DuckDB, its episodes) runs on a cursor of its own
    while the creatinine side is loaded and staged, and the summary while the results are
    written: parts of each statement run on one thread, and the other side's statement fills
    the idle core. The outputs do not depend on it.
    """
    if (urine is None) != (weights is None):
        raise click.UsageError("--urine and --weights go together (rate = volume / h / weight)")
    has_urine = urine is not None and weights is not None
    con = connect()
    sql = creatinine_stages_sql(
        "creat",
        patients="patients" if patients is not None else None,
        rrt="rrt" if rrt is not None else None,
        baseline=baseline,
        # on DuckDB only the columns written below (the same values, computed with fewer
        # windows); Spark runs the full query, as the screening does
        columns=STAGED_COLUMNS if engine == "duckdb" else None,
    )
    with ThreadPoolExecutor(1, thread_name_prefix="trialsieve-aki") as side:
        urine_side = None
        if urine is not None and weights is not None:
            episodes = summary is not None and engine == "duckdb"
            urine_side = side.submit(_urine_side, session(con.cursor()), urine, weights, episodes)
        loads = [load_creatinine(con, creatinine)]
        if rrt is not None:
            loads.append(load_rrt(con, rrt))
        if patients is not None:
            loads.append(load_patients(con, patients))
        if engine == "duckdb":
            con.execute(f"CREATE TABLE staged AS {sql}")
        if urine_side is not None:
            loads[1:1] = urine_side.result()
        if engine == "duckdb":
            # the summary on the side cursor while the results are written: the CSV writer
            # leaves part of a core idle
            summary_side = None
            if summary is not None:
                query = _summary_sql(has_urine, rrt is not None)
                summary_side = side.submit(_copy_closing, session(con.cursor()), query, summary)
            # ``staged`` was created from a query ending in ORDER BY rid, so a scan returns it
            # in rid order (insertion order is preserved: ``preserve_insertion_order``, the
            # default, set by :func:`connect`); sorting again would only cost time
            _copy(con, _results_sql(""), out)
            if summary_side is not None:
                summary_side.result()
    if engine == "spark":
        from trialsieve.screen.backend import SparkBackend, run_on_spark

        queries = {"staged": sql}
        if summary is not None and has_urine:
            queries["urine_episodes"] = _urine_episodes_sql("urine", "weights")
        inputs = ["creat"] + [
            t for t, f in (("urine", urine), ("weights", weights), ("rrt", rrt),
                           ("patients", patients)) if f is not None
        ]  # fmt: skip
        run_on_spark(con, inputs, queries, SparkBackend(master=spark_master))
        _copy(con, _results_sql(" ORDER BY rid"), out)
        if summary is not None:
            _copy(con, _summary_sql(has_urine, rrt is not None), summary)

    n_rej = sum(x.rejected for x in loads)
    rej_path: Path | None = None
    if n_rej or rejects is not None:
        rej_path = rejects if rejects is not None else out.with_name(out.name + ".rejects.csv")
        # the files in the order of ``loads``, each by line (the two sides added theirs at
        # the same time)
        files = ", ".join(quote(str(x.path)) for x in loads)
        _copy(
            con,
            f"SELECT file, line, reason FROM {REJECTS_TABLE} "
            f"ORDER BY list_position([{files}], file), line",
            rej_path,
        )
    con.close()
    return loads, rej_path


@click.command("aki")
@click.option(
    "--creatinine",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="c.csv: patient_id,time,value,unit (mg/dL or umol/L).",
)
@click.option(
    "--urine",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="u.csv: patient_id,start,end,volume_ml (needs --weights).",
)
@click.option(
    "--weights",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="w.csv: patient_id,time,weight_kg.",
)
@click.option(
    "--rrt",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="r.csv: patient_id,start[,end] of renal replacement therapy.",
)
@click.option(
    "--patients",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="p.csv: patient_id,birth_date,sex (for the MDRD-75 baseline).",
)
@click.option(
    "--baseline",
    type=click.Choice(BASELINES),
    default="kdigo",
    show_default=True,
    help="Baseline creatinine strategy.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="results.csv: one row per creatinine result, in input order.",
)
@click.option(
    "--engine",
    type=click.Choice(["duckdb", "spark"]),
    default="duckdb",
    show_default=True,
    help="Where the staging SQL runs (spark: the same SQL on PySpark).",
)
@click.option("--spark-master", default=None, help="Spark master URL (default local[*]).")
@click.option(
    "--summary", type=click.Path(dir_okay=False, path_type=Path), help="s.csv: one row per patient."
)
@click.option(
    "--rejects",
    type=click.Path(dir_okay=False, path_type=Path),
    help="rejects.csv: file,line,reason (default <out>.rejects.csv when any).",
)
def command(
    creatinine: Path,
    urine: Path | None,
    weights: Path | None,
    rrt: Path | None,
    patients: Path | None,
    baseline: str,
    out: Path,
    summary: Path | None,
    rejects: Path | None,
    engine: str,
    spark_master: str | None,
) -> None:  # fmt: skip
    """Stage AKI for every creatinine result (KDIGO 2012 and NHS England 2014)."""
    try:
        loads, rej_path = run_aki(
            creatinine=creatinine, out=out, urine=urine, weights=weights, rrt=rrt,
            patients=patients, baseline=baseline, summary=summary, rejects=rejects,
            engine=engine, spark_master=spark_master,
        )  # fmt: skip
    except AkiInputError as e:
        raise click.ClickException(str(e)) from e
    for x in loads:
        click.echo(
            f"{x.kind} {x.path}: read {x.read}, accepted {x.accepted}, rejected {x.rejected}",
            err=True,
        )
    click.echo(f"results -> {out}", err=True)
    if summary is not None:
        click.echo(f"summary -> {summary}", err=True)
    total = sum(x.rejected for x in loads)
    if rej_path is not None:
        click.echo(f"rejected {total} record(s) -> {rej_path}", err=True)
    else:
        click.echo("rejected 0 records", err=True)
