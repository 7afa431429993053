"""``trialsieve explain``: one patient's verdicts, evidence included, from a screening run."""

from __future__ import annotations

from pathlib import Path

import click
import orjson

from trialsieve.screen.results_file import ResultsLookup, format_record


@click.command(name="explain")
@click.option(
    "--results",
    "results",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Results of `trialsieve screen --out` (.parquet for fast lookups, or .jsonl).",
)
@click.option("--patient", "patient", required=True, help="Patient id.")
@click.option("--trial", "trials", multiple=True, help="Only these trials (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print the records as JSON lines.")
def command(results: Path, patient: str, trials: tuple[str, ...], as_json: bool) -> None:
    """Explain one patient's screening verdicts: per trial the status and, per criterion, the
    verdict, reason and evidence (source record, value, unit, time)."""
    try:
        records = ResultsLookup(results).patient(patient, list(trials) or None)
    except ValueError as e:  # not a results file this version can read
        raise click.ClickException(str(e)) from e
    if not records:
        raise click.ClickException(f"{patient}: not in {results}")
    for rec in records:
        click.echo(orjson.dumps(rec).decode() if as_json else format_record(rec))
