"""``trialsieve egfr``: estimated GFR for one patient (JSON) or a CSV batch.

Single mode::

    trialsieve egfr --equation ckd-epi-2021 --creatinine 1.2 --unit mg/dL --age 60 --sex female

prints one JSON object with the unrounded ``egfr`` (mL/min/1.73 m²), the ``equation``, the eGFR
``unit`` and the inputs. Invalid input is a usage error (exit code 2).

Batch mode::

    trialsieve egfr --input in.csv --out out.csv

reads columns ``equation,creatinine,unit,age,sex[,cystatin_c,black]`` (other columns are kept) and
writes the same columns plus ``egfr`` and ``error``. A bad row gets its reasons in ``error`` and an
empty ``egfr``; it never stops the run. The equations themselves are evaluated column-wise with
:func:`trialsieve.kidney.egfr.egfr` (one numpy call per equation over all valid rows).

Input rules (each equation was derived in adults only — Levey 2009, Inker 2021, Levey 2007 — so
age < 18 is rejected; creatinine and cystatin C must be positive finite numbers; the
creatinine–cystatin C equation of Inker 2021 needs cystatin C in mg/L). The race coefficient is
applied only when ``black`` is true and only by equations that have one (CKD-EPI 2009, MDRD); the
2021 equations are race-free, so ``black`` does not change their result.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import click
import numpy as np
import numpy.typing as npt

from trialsieve.kidney.creatinine import parse_unit, to_mg_dl
from trialsieve.kidney.egfr import EQUATIONS, egfr, needs_cystatin

#: unit of every eGFR this command prints
EGFR_UNIT = "mL/min/1.73m2"
#: youngest age (years) the adult equations accept
MIN_AGE_YEARS = 18.0
#: required and optional batch input columns
REQUIRED_COLUMNS: tuple[str, ...] = ("equation", "creatinine", "unit", "age", "sex")
OPTIONAL_COLUMNS: tuple[str, ...] = ("cystatin_c", "black")
#: columns this command adds to a batch (replacing input columns of the same name)
OUTPUT_COLUMNS: tuple[str, ...] = ("egfr", "error")

#: error text for a valid-looking row whose eGFR overflows (absurd input, e.g. 1e-300 mg/dL)
NOT_FINITE = "eGFR is not a finite number (implausible input)"

_SEXES = {"male": False, "m": False, "female": True, "f": True}
_TRUE = {"true", "t", "yes", "y", "1"}
_FALSE = {"false", "f", "no", "n", "0", ""}


@dataclass(frozen=True)
class ParsedRows:
    """Batch inputs parsed into columns; values of invalid rows are NaN / ``""``."""

    equation: npt.NDArray[np.object_]
    creatinine_mg_dl: npt.NDArray[np.float64]
    age_years: npt.NDArray[np.float64]
    female: npt.NDArray[np.bool_]
    black: npt.NDArray[np.bool_]
    cystatin_c_mg_l: npt.NDArray[np.float64]
    errors: list[str]

    @property
    def valid(self) -> npt.NDArray[np.bool_]:
        """Rows without an error."""
        return np.array([e == "" for e in self.errors], dtype=bool)


def _positive(text: str, name: str, problems: list[str]) -> float:
    """Parse a positive finite number or record why not."""
    try:
        value = float(text)
    except ValueError:
        problems.append(f"{name} is not a number: {text!r}")
        return math.nan
    if not math.isfinite(value) or value <= 0:
        problems.append(f"{name} must be a positive number, got {text!r}")
        return math.nan
    return value


def _parse_row(
    equation: str,
    creatinine: str,
    unit: str,
    age: str,
    sex: str,
    cystatin_c: str,
    black: str,
) -> tuple[str, float, float, bool, bool, float, str]:
    """Validate one row of strings; return parsed values and ``"; "``-joined problems."""
    problems: list[str] = []
    eq = equation.strip().lower()
    if eq not in EQUATIONS:
        problems.append(f"unknown equation {equation!r} (one of {', '.join(EQUATIONS)})")
        eq = ""
    scr = _positive(creatinine.strip(), "creatinine", problems)
    try:
        canonical_unit = parse_unit(unit)
    except ValueError as exc:
        problems.append(str(exc))
        canonical_unit = ""
    scr_mg_dl = float(to_mg_dl(scr, canonical_unit)) if canonical_unit else math.nan
    age_text = age.strip()
    try:
        age_years = float(age_text)
    except ValueError:
        problems.append(f"age is not a number: {age!r}")
        age_years = math.nan
    else:
        if not math.isfinite(age_years) or age_years < MIN_AGE_YEARS:
            problems.append(
                f"age must be >= {MIN_AGE_YEARS:g} years (adult equations), got {age!r}"
            )
            age_years = math.nan
    sex_key = sex.strip().lower()
    if sex_key not in _SEXES:
        problems.append(f"unknown sex {sex!r} (use male or female)")
    female = _SEXES.get(sex_key, False)
    cys = math.nan
    if cystatin_c.strip():
        cys = _positive(cystatin_c.strip(), "cystatin_c", problems)
    elif eq and needs_cystatin(eq):
        problems.append(f"{eq} needs cystatin_c (mg/L)")
    black_key = black.strip().lower()
    if black_key not in _TRUE | _FALSE:
        problems.append(f"black must be true or false, got {black!r}")
    return eq, scr_mg_dl, age_years, female, black_key in _TRUE, cys, "; ".join(problems)


def parse_rows(columns: Mapping[str, Sequence[str]]) -> ParsedRows:
    """Validate batch input given as columns of strings (optional columns may be absent).

    Every row is checked for: known equation and unit, positive finite creatinine, age >= 18,
    known sex, cystatin C present and positive for ``ckd-epi-2021-cys``, boolean ``black``.
    """
    n = len(columns["equation"])
    empty = [""] * n
    cys_col = columns.get("cystatin_c", empty)
    black_col = columns.get("black", empty)
    parsed = [
        _parse_row(*values)
        for values in zip(
            columns["equation"],
            columns["creatinine"],
            columns["unit"],
            columns["age"],
            columns["sex"],
            cys_col,
            black_col,
            strict=True,
        )
    ]
    return ParsedRows(
        equation=np.array([p[0] for p in parsed], dtype=object),
        creatinine_mg_dl=np.array([p[1] for p in parsed], dtype=np.float64),
        age_years=np.array([p[2] for p in parsed], dtype=np.float64),
        female=np.array([p[3] for p in parsed], dtype=bool),
        black=np.array([p[4] for p in parsed], dtype=bool),
        cystatin_c_mg_l=np.array([p[5] for p in parsed], dtype=np.float64),
        errors=[p[6] for p in parsed],
    )


def compute(rows: ParsedRows) -> npt.NDArray[np.float64]:
    """eGFR per row (NaN for rows with an error): one vectorised call per equation."""
    out = np.full(len(rows.errors), np.nan, dtype=np.float64)
    valid = rows.valid
    for name in EQUATIONS:
        mask = valid & (rows.equation == name)
        if not mask.any():
            continue
        with np.errstate(over="ignore"):  # absurd inputs overflow to inf; reported per row
            out[mask] = egfr(
                name,
                rows.creatinine_mg_dl[mask],
                rows.age_years[mask],
                rows.female[mask],
                cystatin_c_mg_l=rows.cystatin_c_mg_l[mask] if needs_cystatin(name) else None,
                black=rows.black[mask],
            )
    return out


def run_batch(input_path: Path, out_path: Path) -> tuple[int, int]:
    """Read ``input_path``, write ``out_path``; return (rows, computed).

    Raises :class:`click.UsageError` when the file has no header or lacks a required column.
    """
    with input_path.open(newline="", encoding="utf-8-sig") as fh:
        records = list(csv.reader(fh))
    while records and not any(cell.strip() for cell in records[-1]):
        records.pop()
    if not records:
        raise click.UsageError(f"{input_path}: empty file (expected a header row)")
    header = [h.strip() for h in records[0]]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise click.UsageError(
            f"{input_path}: missing column(s) {', '.join(missing)} "
            f"(need {','.join(REQUIRED_COLUMNS)}[,{','.join(OPTIONAL_COLUMNS)}])"
        )
    body = [r for r in records[1:] if any(cell.strip() for cell in r)]
    width_errors = [
        "" if len(r) == len(header) else f"expected {len(header)} fields, got {len(r)}"
        for r in body
    ]
    padded = [(r + [""] * len(header))[: len(header)] for r in body]
    wanted = [c for c in REQUIRED_COLUMNS + OPTIONAL_COLUMNS if c in header]
    columns = {c: [r[header.index(c)] for r in padded] for c in wanted}
    parsed = parse_rows(columns)
    errors = [
        "; ".join(e for e in (w, p) if e) for w, p in zip(width_errors, parsed.errors, strict=True)
    ]
    parsed = replace(parsed, errors=errors)
    values = compute(parsed)
    errors = [
        NOT_FINITE if not e and not math.isfinite(v) else e
        for e, v in zip(errors, values, strict=True)
    ]
    keep = [i for i, h in enumerate(header) if h not in OUTPUT_COLUMNS]
    with out_path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow([header[i] for i in keep] + list(OUTPUT_COLUMNS))
        for row, value, error in zip(padded, values, errors, strict=True):
            cell = "" if error or not math.isfinite(value) else repr(float(value))
            writer.writerow([row[i] for i in keep] + [cell, error])
    computed = int(np.isfinite(values).sum())
    return len(body), computed


def single(
    equation: str,
    creatinine: str,
    unit: str,
    age: str,
    sex: str,
    cystatin_c: str | None,
    black: bool,
) -> dict[str, object]:
    """One patient: the JSON-ready result; :class:`click.UsageError` on invalid input."""
    rows = parse_rows(
        {
            "equation": [equation],
            "creatinine": [creatinine],
            "unit": [unit],
            "age": [age],
            "sex": [sex],
            "cystatin_c": [cystatin_c or ""],
            "black": ["true" if black else "false"],
        }
    )
    if rows.errors[0]:
        raise click.UsageError(rows.errors[0])
    value = float(compute(rows)[0])
    if not math.isfinite(value):
        raise click.UsageError(NOT_FINITE)
    eq = str(rows.equation[0])
    return {
        "egfr": value,
        "equation": eq,
        "unit": EGFR_UNIT,
        "creatinine": float(creatinine),
        "creatinine_unit": parse_unit(unit),
        "creatinine_mg_dl": float(rows.creatinine_mg_dl[0]),
        "age": float(rows.age_years[0]),
        "sex": "female" if bool(rows.female[0]) else "male",
        "black": black,
        "cystatin_c": float(rows.cystatin_c_mg_l[0]) if needs_cystatin(eq) else None,
    }


@click.command("egfr")
@click.option(
    "--equation",
    type=click.Choice(list(EQUATIONS)),
    help="eGFR equation (single mode).",
)
@click.option("--creatinine", metavar="X", help="Serum creatinine (IDMS-traceable), in --unit.")
@click.option("--unit", metavar="[mg/dL|umol/L]", help="Creatinine unit.")
@click.option("--age", metavar="N", help="Age in years (>= 18).")
@click.option("--sex", type=click.Choice(["male", "female"]), help="Sex.")
@click.option(
    "--cystatin-c", "cystatin_c", metavar="X", help="Cystatin C in mg/L (ckd-epi-2021-cys)."
)
@click.option("--black", is_flag=True, help="Apply the race coefficient (CKD-EPI 2009, MDRD only).")
@click.option(
    "--input",
    "input_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Batch CSV: equation,creatinine,unit,age,sex[,cystatin_c,black].",
)
@click.option(
    "--out",
    "out_path",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Batch output CSV (input columns + egfr, error).",
)
def command(
    equation: str | None,
    creatinine: str | None,
    unit: str | None,
    age: str | None,
    sex: str | None,
    cystatin_c: str | None,
    black: bool,
    input_path: Path | None,
    out_path: Path | None,
) -> None:
    """Estimate GFR (CKD-EPI 2009/2021, MDRD), one patient as JSON or a CSV batch."""
    single_opts = {
        "--equation": equation,
        "--creatinine": creatinine,
        "--unit": unit,
        "--age": age,
        "--sex": sex,
    }
    given = [k for k, v in single_opts.items() if v is not None]
    if cystatin_c is not None:
        given.append("--cystatin-c")
    if black:
        given.append("--black")
    if input_path is not None or out_path is not None:
        if given:
            raise click.UsageError(f"--input/--out cannot be combined with {', '.join(given)}")
        if input_path is None or out_path is None:
            raise click.UsageError("batch mode needs both --input and --out")
        rows, computed = run_batch(input_path, out_path)
        click.echo(
            f"egfr: {rows} rows, {computed} computed, {rows - computed} errors -> {out_path}",
            err=True,
        )
        return
    missing = [k for k, v in single_opts.items() if v is None]
    if missing:
        raise click.UsageError(
            f"missing {', '.join(missing)} (or use --input in.csv --out out.csv)"
        )
    assert equation and creatinine and unit and age and sex  # narrowed by the check above
    result = single(equation, creatinine, unit, age, sex, cystatin_c, black)
    if black and EQUATIONS[equation].black == 1.0:
        click.echo(f"note: {equation} is race-free; --black has no effect", err=True)
    if cystatin_c is not None and not needs_cystatin(equation):
        click.echo(f"note: {equation} does not use cystatin C; --cystatin-c ignored", err=True)
    click.echo(json.dumps(result))
