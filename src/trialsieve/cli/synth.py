"""``trialsieve synth``: generate a synthetic population (store, FHIR NDJSON or AKI CSVs).

Deterministic in (--patients, --seed, --as-of, --creatinine-per-patient): the same arguments give
the same data whatever --chunk-size. Memory stays flat in N: patients are generated and written
chunk by chunk. Rates and their sources: :mod:`trialsieve.synth.rates`.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import click

from trialsieve.synth.generator import BLOCK, DEFAULT_AS_OF, DEFAULT_CHUNK, SynthConfig
from trialsieve.synth.writers import FORMATS, WRITERS, write_store


def parse_as_of(text: str) -> dt.datetime:
    """ISO 8601 instant -> naive UTC (``2026-06-01T08:00Z``; no offset = UTC)."""
    t = text.strip()
    if t.endswith(("Z", "z")):
        t = t[:-1] + "+00:00"
    try:
        value = dt.datetime.fromisoformat(t)
    except ValueError as e:
        raise click.BadParameter(f"not an ISO 8601 date-time: {text!r}") from e
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


@click.command("synth")
@click.option("--patients", "n", type=click.IntRange(min=1), required=True,
              help="Number of patients.")  # fmt: skip
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Random seed.")  # fmt: skip
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="Output directory (created; must be empty).")  # fmt: skip
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="store",
    show_default=True,
    help="store: canonical Parquet store; fhir: Bulk NDJSON; pyaki: AKI CSV files.",
)
@click.option(
    "--as-of",
    "as_of",
    default=DEFAULT_AS_OF.strftime("%Y-%m-%dT%H:%MZ"),
    show_default=True,
    help="Screening instant (UTC); every history ends before it.",
)
@click.option(
    "--creatinine-per-patient",
    "k",
    type=click.IntRange(min=1),
    default=None,
    help="Exactly K creatinine results per patient (default: realistic counts).",
)
@click.option(
    "--chunk-size",
    type=click.IntRange(min=1),
    default=DEFAULT_CHUNK,
    show_default=True,
    help=f"Patients per chunk/part (rounded up to a multiple of {BLOCK}).",
)
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Worker processes generating chunks in parallel (--format store).",
)
def command(n: int, seed: int, out: Path, fmt: str, as_of: str, k: int | None,
            chunk_size: int, jobs: int) -> None:  # fmt: skip
    """Generate N synthetic patients with realistic kidney histories into OUT."""
    cfg = SynthConfig(patients=n, seed=seed, as_of=parse_as_of(as_of), chunk_size=chunk_size,
                      creatinine_per_patient=k)  # fmt: skip
    t0 = time.perf_counter()
    try:
        counts = write_store(cfg, out, jobs=jobs) if fmt == "store" else WRITERS[fmt](cfg, out)
    except FileExistsError as e:
        raise click.ClickException(str(e)) from e
    elapsed = time.perf_counter() - t0
    for name, c in sorted(counts.items()):
        click.echo(f"{name}: {c}")
    click.echo(f"{fmt} -> {out} in {elapsed:.1f} s ({n / max(elapsed, 1e-9):,.0f} patients/s)")
