"""``trialsieve demo``: build the bundled synthetic cohort, screen all bundled trials, report.

Writes ``DIR/store`` (the canonical store of :mod:`trialsieve.demo.cohort`), ``DIR/results.jsonl``
(one object per patient and trial) and ``DIR/report.html``; prints each trial's funnel.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import click

from trialsieve.demo.cohort import DEMO_AS_OF, DEMO_DATASET, build_demo_store


def _reset_demo_store(store: Path) -> None:
    """Remove a previous demo store (only one that holds nothing but the demo dataset)."""
    if not store.exists():
        return
    manifest = store / "manifest.json"
    datasets: list[str] = []
    if manifest.exists():
        datasets = list(json.loads(manifest.read_text("utf-8")).get("datasets", {}))
    if datasets != [DEMO_DATASET]:
        raise click.ClickException(
            f"{store} exists and is not a demo store (datasets: {datasets or 'none'}); "
            "choose another --out"
        )
    shutil.rmtree(store)


@click.command("demo")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("demo-output"),
    show_default=True,
    help="Output folder (store/, results.jsonl, report.html).",
)
@click.option("--patients", "n_patients", default=400, show_default=True, type=click.IntRange(1))
@click.option("--seed", default=20260601, show_default=True, help="Random seed of the cohort.")
def command(out_dir: Path, n_patients: int, seed: int) -> None:
    """Build the bundled synthetic cohort, screen all four trials, print funnels, write report."""
    from trialsieve.protocols.loader import load_bundled
    from trialsieve.report.html import write_report
    from trialsieve.screen.engine import screen_store
    from trialsieve.screen.funnel import format_funnel

    out_dir.mkdir(parents=True, exist_ok=True)
    store = out_dir / "store"
    _reset_demo_store(store)
    summary = build_demo_store(store, n_patients=n_patients, seed=seed)
    click.echo(
        f"demo store: {summary.patients_in_store} patients, {summary.events_in_dataset} events"
    )
    protocols = load_bundled()
    run = screen_store(store, protocols, DEMO_AS_OF)
    results = out_dir / "results.jsonl"
    if hasattr(run, "write_jsonl"):
        run.write_jsonl(results)
    else:  # a run exposing only records
        with results.open("w", encoding="utf-8") as f:
            for rec in run.records:
                f.write(json.dumps(rec, ensure_ascii=False, default=str) + "\n")
    click.echo(f"screened at {DEMO_AS_OF:%Y-%m-%d %H:%M} UTC\n")
    for p in protocols:
        funnel = run.funnels.get(p.id)
        if funnel is not None:
            click.echo(format_funnel(funnel) + "\n")
    report = out_dir / "report.html"
    write_report(run, store, report)
    click.echo(f"store:   {store}")
    click.echo(f"results: {results}")
    click.echo(f"report:  {report}")
