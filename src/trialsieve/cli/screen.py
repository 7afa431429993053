"""``trialsieve screen``: screen a store (or a FHIR folder) against the trial protocols."""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path

import click

from trialsieve.protocols.loader import ProtocolError, load_bundled, load_protocol
from trialsieve.screen.engine import StoreChangedError, screen_store
from trialsieve.screen.funnel import format_funnel


def parse_as_of(value: str | None) -> dt.datetime:
    """ISO-8601 instant -> naive UTC datetime; None -> now. A value without offset is UTC."""
    if not value:
        return dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
    try:
        t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as e:
        raise click.BadParameter(f"not an ISO-8601 date/time: {value!r}") from e
    if t.tzinfo is not None:
        t = t.astimezone(dt.UTC).replace(tzinfo=None)
    return t


@click.command(name="screen")
@click.option(
    "--store",
    "store",
    type=click.Path(file_okay=False, path_type=Path),
    help="Canonical store directory (see `trialsieve ingest`).",
)
@click.option(
    "--fhir",
    "fhir",
    type=click.Path(exists=True, path_type=Path),
    help="FHIR Bulk NDJSON folder or Bundle(s), ingested into a temporary store.",
)
@click.option(
    "--trial",
    "trials",
    multiple=True,
    help="Registry id to screen (repeatable; default: all bundled trials).",
)
@click.option(
    "--protocol",
    "protocol_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A protocol YAML file to screen instead of/in addition to bundled trials.",
)
@click.option(
    "--as-of",
    "as_of",
    default=None,
    help="Screening instant, ISO-8601 (default: now, UTC). All windows end here.",
)
@click.option(
    "--patient", "patients", multiple=True, help="Screen (explain) only these patient ids."
)
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Results, one record per patient and trial: JSON lines, or Parquet when the name "
    "ends in .parquet (the same records; compact at population scale, and what "
    "`trialsieve explain` looks patients up in).",
)
@click.option(
    "--engine",
    type=click.Choice(["duckdb", "spark"]),
    default="duckdb",
    show_default=True,
    help="Query engine; spark runs the same SQL on PySpark.",
)
@click.option(
    "--spark-master",
    default=None,
    help="Spark master URL (default: local[*] or the standard Spark configuration).",
)
@click.option(
    "--html",
    "html",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the self-contained HTML report here.",
)
def command(
    store: Path | None,
    fhir: Path | None,
    trials: tuple[str, ...],
    protocol_files: tuple[Path, ...],
    as_of: str | None,
    patients: tuple[str, ...],
    out: Path,
    engine: str,
    spark_master: str | None,
    html: Path | None,
) -> None:
    """Screen patients against trial protocols; print each trial's screening funnel."""
    if (store is None) == (fhir is None):
        raise click.UsageError("give exactly one of --store DIR or --fhir DIR")
    try:
        protocols = [load_protocol(p) for p in protocol_files]
        if trials or not protocols:
            protocols += load_bundled(list(trials) or None)
    except ProtocolError as e:
        raise click.UsageError(str(e)) from e
    instant = parse_as_of(as_of)
    with tempfile.TemporaryDirectory(prefix="trialsieve-") as tmp:
        if fhir is not None:
            from trialsieve.ingest.runner import run_ingest

            store = Path(tmp) / "store"
            summary = run_ingest("fhir", fhir, store)
            click.echo(summary.table(), err=True)
        assert store is not None
        if not store.is_dir():
            raise click.UsageError(f"{store}: not a store directory")
        backend = None
        if engine == "spark":
            from trialsieve.screen.backend import SparkBackend

            backend = SparkBackend(master=spark_master)
        try:
            run = screen_store(
                store, protocols, instant, patient_ids=list(patients) or None, backend=backend
            )
        except StoreChangedError as e:
            raise click.ClickException(str(e)) from e
        n = run.write(out)
        click.echo(f"screened at {instant.isoformat()}Z; {n} results -> {out}")
        for f in run.funnels.values():
            click.echo("")
            click.echo(format_funnel(f))
        if html is not None:
            from trialsieve.report.html import write_report

            write_report(run, store, html)
            click.echo(f"\nreport -> {html}")
