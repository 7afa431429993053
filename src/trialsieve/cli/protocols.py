"""``trialsieve protocols``: list, show and validate trial protocol files (docs/PROTOCOLS.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import yaml

from trialsieve.protocols.loader import (
    ProtocolError,
    bundled_protocol_paths,
    load_bundled,
    load_protocol,
)
from trialsieve.protocols.model import Dose, Protocol


def _dose_text(dose: Dose) -> str:
    when = []
    if dose.days:
        when.append("days " + ", ".join(map(str, dose.days)))
    if dose.weeks:
        when.append("weeks " + ", ".join(map(str, dose.weeks)))
    schedule = f" on {'; '.join(when)}" if when else ""
    label = f" ({dose.label})" if dose.label else ""
    return f"{dose.amount:g} {dose.unit}{schedule}{label}"


def _rule_text(node: Any) -> str:
    return yaml.safe_dump(node, default_flow_style=True, sort_keys=False, width=10_000).strip()


def format_protocol(p: Protocol) -> str:
    """A readable rendering of one protocol: registry data, design, arms, doses, criteria."""
    d = p.design
    low, high = d.age.min_years, d.age.max_years
    age = f"{'-' if low is None else f'{low:g}'}..{'-' if high is None else f'{high:g}'} y"
    masked = f" ({', '.join(d.masked_roles)})" if d.masked_roles else ""
    lines = [
        f"{p.id}  {p.title}",
        f"status {p.status}; phase {'/'.join(p.phase)}; enrolment {d.enrolment}; age {age}; "
        f"sex {d.sex}",
        f"design: allocation {d.allocation}, model {d.model}, masking {d.masking}{masked}, "
        f"purpose {d.purpose}",
    ]
    for arm in p.arms:
        lines.append(f"arm {arm.name} [{arm.type}]")
        for iv in arm.interventions:
            diluent = f", in {iv.diluent}" if iv.diluent else ""
            lines.append(f"  {iv.name} ({iv.type}, {iv.route}{diluent})")
            lines.extend(f"    dose {_dose_text(dose)}" for dose in iv.doses)
    if p.settings:
        lines.append("settings: " + ", ".join(f"{k}={v}" for k, v in p.settings.items()))
    lines.append(
        f"sites: {len(p.sites)}; contacts: {len(p.contacts)}; concept sets: {len(p.concept_sets)}"
    )
    for c in p.criteria:
        mode = "auto" if c.automatic else "manual"
        lines.append(f"{c.id:7} [{mode}] {' '.join(c.text.split())}")
        if c.rule is not None:
            lines.append(f"         rule: {_rule_text(c.rule)}")
        else:
            lines.append(f"         check: {c.manual}")
        lines.extend(f"         evidence: {_rule_text(ev)}" for ev in c.evidence)
    return "\n".join(lines)


@click.group("protocols")
def command() -> None:
    """List, show and validate trial protocol files."""


@command.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_(as_json: bool) -> None:
    """List the bundled protocols with their criterion counts."""
    rows = []
    for p in load_bundled():
        auto = sum(c.automatic for c in p.criteria)
        rows.append(
            {
                "id": p.id,
                "status": p.status,
                "phase": "/".join(p.phase),
                "inclusion": len(p.inclusion),
                "exclusion": len(p.exclusion),
                "automatic": auto,
                "manual": len(p.criteria) - auto,
                "title": p.title,
            }
        )
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    click.echo(f"{'id':12} {'status':19} {'phase':13} inc exc auto manual  title")
    for r in rows:
        click.echo(
            f"{r['id']:12} {r['status']:19} {r['phase']:13} {r['inclusion']:3} {r['exclusion']:3} "
            f"{r['automatic']:4} {r['manual']:6}  {r['title']}"
        )


@command.command("show")
@click.argument("trial_id")
@click.option("--json", "as_json", is_flag=True, help="Print the validated protocol as JSON.")
def show(trial_id: str, as_json: bool) -> None:
    """Show one bundled protocol (TRIAL_ID, e.g. NCT06954740) with every criterion and rule."""
    try:
        (protocol,) = load_bundled([trial_id])
    except ProtocolError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(protocol.model_dump_json(indent=2))
    else:
        click.echo(format_protocol(protocol))


@command.command("validate")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
def validate(paths: tuple[Path, ...]) -> None:
    """Validate protocol files (default: the bundled ones); exit 1 when any is invalid."""
    targets = list(paths) or bundled_protocol_paths()
    failed = 0
    for path in targets:
        try:
            p = load_protocol(path)
        except ProtocolError as exc:
            failed += 1
            click.echo(f"INVALID {path}", err=True)
            click.echo(str(exc), err=True)
            continue
        auto = sum(c.automatic for c in p.criteria)
        click.echo(
            f"OK {path}: {p.id}, {len(p.inclusion)} inclusion + {len(p.exclusion)} exclusion "
            f"criteria ({auto} automatic, {len(p.criteria) - auto} manual), "
            f"{len(p.concept_sets)} concept sets"
        )
    if failed:
        raise SystemExit(1)
