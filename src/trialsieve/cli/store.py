"""``trialsieve store``: inspect a canonical store."""

from __future__ import annotations

import json
from pathlib import Path

import click

from trialsieve.store.info import format_info, store_info


@click.group("store")
def command() -> None:
    """Inspect a canonical store."""


@command.command("info")
@click.argument("store_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@click.option("--top", default=20, show_default=True, help="How many analytes to list.")
def info(store_dir: Path, as_json: bool, top: int) -> None:
    """Print patient count, events by kind, top analytes with date ranges, datasets."""
    data = store_info(store_dir, top=top)
    click.echo(json.dumps(data, indent=2) if as_json else format_info(data))
