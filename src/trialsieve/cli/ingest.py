"""``trialsieve ingest``: read FHIR / OMOP / MIMIC / CSV data into a canonical store."""

from __future__ import annotations

from pathlib import Path

import click

from trialsieve.ingest.runner import READERS, run_ingest
from trialsieve.ingest.sink import IngestError


@click.command("ingest")
@click.option("--format", "fmt", type=click.Choice(sorted(READERS)), required=True,
              help="Source format.")  # fmt: skip
@click.argument("source")
@click.option("--store", "store_dir", type=click.Path(path_type=Path), required=True,
              help="Store directory (created if needed).")  # fmt: skip
@click.option(
    "--dataset",
    default=None,
    help="Dataset name (default: the source folder name); re-ingest replaces/merges it.",
)
@click.option(
    "--strict",
    is_flag=True,
    help="Validate every FHIR resource against R4; stop at the first error or reject.",
)
def command(fmt: str, source: str, store_dir: Path, dataset: str | None, strict: bool) -> None:
    """Read SOURCE into the canonical store; print read / stored / rejected per record type.

    SOURCE is a file or folder, or for --format omop also a PostgreSQL URL
    (postgresql://user:pass@host/db?schema=cdm).
    """
    try:
        summary = run_ingest(fmt, source, store_dir, dataset=dataset, strict=strict)
    except IngestError as e:
        raise click.ClickException(str(e)) from e
    click.echo(f"dataset {summary.dataset} -> {summary.store_dir}")
    click.echo(summary.table())
    if summary.rejected:
        click.echo(f"rejects written to {summary.store_dir / 'rejects.jsonl'}")
