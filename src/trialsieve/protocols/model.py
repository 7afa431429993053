"""Protocols as data: pydantic models of a trial protocol file and the rule-language checker.

The file format and the rule language are defined in ``docs/PROTOCOLS.md`` (the contract between
the protocol files, this module and the screening engine). This module only *checks* rules; the
engine (``trialsieve.screen``) compiles them. Every check here names the offending field as a path
(``criteria.exclusion[3].rule.lab.op``) so that the loader can point at the YAML line.

Clinical sources of the vocabularies checked here:
- analytes and units: ``trialsieve.units.ANALYTES`` (docs/STORE.md);
- eGFR equations: ``trialsieve.kidney.egfr.EQUATIONS`` (CKD-EPI 2009/2021, MDRD);
- creatinine baselines: ``kdigo`` (KDIGO 2012 AKI guideline, section 2.1),
  ``lowest-3m-1y-mdrd75`` (NCT06954740 protocol: lowest creatinine within 3 months, at most
  1 year, else back-calculated from MDRD at eGFR 75), ``min-48h`` (lowest value in the 48 h
  before the result; NCT04194671 "two-fold within 48 hours").
- design vocabularies: ClinicalTrials.gov data element definitions (allocation, model, masking,
  phases, arm and intervention types, recruitment status).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

#: a field path inside a protocol file: keys and list indices
Path = tuple[str | int, ...]
#: one problem found in a rule: (path relative to the checked node, message)
Issue = tuple[Path, str]

OPS: tuple[str, ...] = ("<", "<=", ">", ">=", "==")
AGGS: tuple[str, ...] = ("latest", "min", "max", "every", "any")
EVENT_KINDS: tuple[str, ...] = (
    "lab", "vital", "output", "condition", "procedure", "medication", "encounter", "observation",
)  # fmt: skip
BASELINES: tuple[str, ...] = ("kdigo", "lowest-3m-1y-mdrd75", "min-48h")
SEXES: tuple[str, ...] = ("female", "male")
WINDOW_UNITS: tuple[str, ...] = ("days", "hours", "months", "years")
#: protocol-level settings a site may override, with their checker
KNOWN_SETTINGS: tuple[str, ...] = ("aki_lookback_days", "egfr_equation")

NODE_TYPES: tuple[str, ...] = (
    "age", "sex", "has", "lab", "count", "exposure_days", "egfr", "aki", "all", "any", "not",
    "manual",
)  # fmt: skip
AKI_CONDITIONS: tuple[str, ...] = (
    "kdigo_stage", "creatinine_rise", "creatinine_ratio", "urine_output", "any_of",
)  # fmt: skip


def format_path(path: Path) -> str:
    """``('criteria', 'exclusion', 3, 'rule')`` -> ``criteria.exclusion[3].rule``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "<root>"


# --------------------------------------------------------------------------------------------
# Concept-set entries
# --------------------------------------------------------------------------------------------

_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.]*\*?$")
_RANGE_SIDE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.]*$")
#: systems whose codes contain a hyphen (LOINC 2160-0): an entry there is never a range
_HYPHENATED_SYSTEMS: frozenset[str] = frozenset({"loinc"})


def code_entry_problem(system: str, entry: str) -> str | None:
    """Why ``entry`` is not a valid concept-set entry of ``system`` (None when it is).

    Entries (docs/PROTOCOLS.md): an exact code, a prefix ending in ``*``, a bare ICD stem, or a
    range ``A-B`` of codes of equal length with A <= B (compared on the first len(A) characters).
    """
    if not isinstance(entry, str) or not entry.strip():
        return f"entry {entry!r} must be a non-empty string (quote codes in YAML)"
    if entry != entry.strip():
        return f"entry {entry!r} has surrounding spaces"
    if system in _HYPHENATED_SYSTEMS:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.\-]*\*?", entry):
            return f"malformed code {entry!r}"
        return None
    if "-" in entry:
        low, _, high = entry.partition("-")
        if not (_RANGE_SIDE.match(low) and _RANGE_SIDE.match(high)):
            return f"malformed range {entry!r} (write A-B, e.g. C00-C97)"
        if len(low) != len(high):
            return f"range {entry!r}: both ends must have the same length"
        if low.upper() > high.upper():
            return f"range {entry!r}: start is after end"
        return None
    if not _CODE.match(entry):
        return f"malformed code {entry!r} (exact code, prefix ending in *, or range A-B)"
    return None


def concept_set_issues(cs: Any, path: Path) -> list[Issue]:
    """Code-system aliases and entry syntax of a concept set in file layout, with paths."""
    from trialsieve.codes import SYSTEM_ALIASES

    issues: list[Issue] = []
    if not isinstance(cs, Mapping):
        return issues
    for section in ("codes", "exclude"):
        codes = cs.get(section)
        if not isinstance(codes, Mapping):
            continue
        for system, entries in codes.items():
            p = (*path, section, str(system))
            if system not in SYSTEM_ALIASES:
                known = ", ".join(sorted(SYSTEM_ALIASES))
                issues.append((p, f"unknown code system alias (one of {known})"))
                continue
            if not isinstance(entries, list) or not entries:
                issues.append((p, "must be a non-empty list of codes"))
                continue
            for i, entry in enumerate(entries):
                problem = code_entry_problem(str(system), entry)
                if problem:
                    issues.append(((*p, i), problem))
    return issues


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _check_code_map(codes: dict[str, list[str]]) -> dict[str, list[str]]:
    from trialsieve.codes import SYSTEM_ALIASES

    for system, entries in codes.items():
        if system not in SYSTEM_ALIASES:
            raise ValueError(
                f"unknown code system alias {system!r} (one of {', '.join(sorted(SYSTEM_ALIASES))})"
            )
        if not entries:
            raise ValueError(f"{system}: empty code list")
        for i, entry in enumerate(entries):
            problem = code_entry_problem(system, entry)
            if problem:
                raise ValueError(f"{system}[{i}]: {problem}")
    return codes


class ConceptSet(_Strict):
    """A named, reusable code list (docs/PROTOCOLS.md "Concept sets")."""

    name: str
    description: str = ""
    codes: dict[str, list[str]] = Field(default_factory=dict)
    exclude: dict[str, list[str]] = Field(default_factory=dict)
    analytes: list[str] = Field(default_factory=list)

    @field_validator("codes", "exclude")
    @classmethod
    def _codes_ok(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        return _check_code_map(v)

    @field_validator("analytes")
    @classmethod
    def _analytes_ok(cls, v: list[str]) -> list[str]:
        from trialsieve.units import ANALYTES

        for a in v:
            if a not in ANALYTES:
                raise ValueError(f"unknown analyte {a!r} (see trialsieve.units.ANALYTES)")
        return v

    @model_validator(mode="after")
    def _not_empty(self) -> ConceptSet:
        if not self.codes and not self.analytes:
            raise ValueError("a concept set needs codes or analytes")
        return self


# --------------------------------------------------------------------------------------------
# Rule checker (the node grammar of docs/PROTOCOLS.md)
# --------------------------------------------------------------------------------------------


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _keys(
    node: Any, path: Path, required: Collection[str], optional: Collection[str]
) -> list[Issue]:
    if not isinstance(node, Mapping):
        return [(path, f"must be a mapping with {', '.join(required)}")]
    issues: list[Issue] = []
    for key in node:
        if key not in required and key not in optional:
            allowed = ", ".join([*required, *optional])
            issues.append(((*path, str(key)), f"unknown field (allowed: {allowed})"))
    for key in required:
        if key not in node:
            issues.append((path, f"missing required field {key!r}"))
    return issues


def _check_window(w: Any, path: Path) -> list[Issue]:
    if w == "ever":
        return []
    if not isinstance(w, Mapping) or len(w) != 1:
        return [(path, "window must be 'ever' or one of {days|hours|months|years: N}")]
    ((unit, n),) = w.items()
    if unit not in WINDOW_UNITS:
        return [((*path, str(unit)), f"unknown window unit (one of {', '.join(WINDOW_UNITS)})")]
    if not _is_number(n) or n <= 0:
        return [((*path, unit), f"window length must be a positive number, got {n!r}")]
    return []


def _check_op(node: Mapping[str, Any], path: Path) -> list[Issue]:
    op = node.get("op")
    if op not in OPS:
        return [((*path, "op"), f"unknown op {op!r} (one of {', '.join(OPS)})")]
    return []


def _check_number(node: Mapping[str, Any], key: str, path: Path, *, positive: bool) -> list[Issue]:
    v = node.get(key)
    if not _is_number(v):
        return [((*path, key), f"must be a number, got {v!r}")]
    if positive and v <= 0:
        return [((*path, key), f"must be > 0, got {v!r}")]
    if v < 0:
        return [((*path, key), f"must be >= 0, got {v!r}")]
    return []


def _check_concepts(v: Any, path: Path, concept_sets: Collection[str] | None) -> list[Issue]:
    if isinstance(v, str):
        if concept_sets is not None and v not in concept_sets:
            return [(path, f"unknown concept set {v!r}")]
        return []
    if isinstance(v, Mapping):
        try:
            ConceptSet.model_validate({"name": "inline", **v})
        except ValidationError as exc:
            return [((*path, *err["loc"]), err["msg"]) for err in exc.errors()]
        return []
    return [(path, "must be a concept-set name or an inline concept set")]


def _check_kinds(node: Mapping[str, Any], path: Path) -> list[Issue]:
    kinds = node.get("kinds")
    if kinds is None:
        return []
    if not isinstance(kinds, list) or not kinds:
        return [((*path, "kinds"), "must be a non-empty list")]
    return [
        ((*path, "kinds", i), f"unknown event kind {k!r} (one of {', '.join(EVENT_KINDS)})")
        for i, k in enumerate(kinds)
        if k not in EVENT_KINDS
    ]


def _check_age(n: Any, p: Path) -> list[Issue]:
    issues = _keys(n, p, (), ("min", "max"))
    if issues:
        return issues
    if not n:
        return [(p, "age needs min and/or max")]
    for k in n:
        issues += _check_number(n, k, p, positive=False)
    if not issues and "min" in n and "max" in n and n["min"] > n["max"]:
        issues.append((p, "min is greater than max"))
    return issues


def _check_has(n: Any, p: Path, cs: Collection[str] | None) -> list[Issue]:
    issues = _keys(n, p, ("concepts", "window"), ("kinds", "route"))
    if not isinstance(n, Mapping):
        return issues
    if "concepts" in n:
        issues += _check_concepts(n["concepts"], (*p, "concepts"), cs)
    if "window" in n:
        issues += _check_window(n["window"], (*p, "window"))
    issues += _check_kinds(n, p)
    if "route" in n and not (isinstance(n["route"], str) and n["route"]):
        issues.append(((*p, "route"), "must be a route name, e.g. intravenous"))
    return issues


def _check_lab(n: Any, p: Path) -> list[Issue]:
    from trialsieve.units import ANALYTES, UnitError, to_canonical

    optional = ("value", "unit", "uln_multiple", "lln_multiple")
    issues = _keys(n, p, ("analyte", "window", "agg", "op"), optional)
    if not isinstance(n, Mapping):
        return issues
    analyte = n.get("analyte")
    if "analyte" in n and analyte not in ANALYTES:
        issues.append(((*p, "analyte"), f"unknown analyte {analyte!r}"))
    if "window" in n:
        issues += _check_window(n["window"], (*p, "window"))
    if "agg" in n and n["agg"] not in AGGS:
        issues.append(((*p, "agg"), f"unknown aggregation {n['agg']!r} (one of {', '.join(AGGS)})"))
    if "op" in n:
        issues += _check_op(n, p)
    thresholds = [k for k in ("value", "uln_multiple", "lln_multiple") if k in n]
    if len(thresholds) != 1:
        issues.append((p, "give exactly one of value (with unit), uln_multiple, lln_multiple"))
        return issues
    (kind,) = thresholds
    issues += _check_number(n, kind, p, positive=kind != "value")
    if kind != "value":
        if "unit" in n:
            issues.append(((*p, "unit"), f"no unit with {kind}"))
        return issues
    if "unit" not in n:
        issues.append((p, "missing required field 'unit' (thresholds carry their unit)"))
    elif analyte in ANALYTES and _is_number(n["value"]):
        try:
            to_canonical(analyte, float(n["value"]), n["unit"])
        except UnitError as exc:
            issues.append(((*p, "unit"), str(exc)))
    return issues


def _check_count(n: Any, p: Path, cs: Collection[str] | None, name: str) -> list[Issue]:
    optional = ("kinds",) if name == "count" else ()
    issues = _keys(n, p, ("concepts", "window", "op", "value"), optional)
    if not isinstance(n, Mapping):
        return issues
    if "concepts" in n:
        issues += _check_concepts(n["concepts"], (*p, "concepts"), cs)
    if "window" in n:
        issues += _check_window(n["window"], (*p, "window"))
    if "op" in n:
        issues += _check_op(n, p)
    if "value" in n:
        issues += _check_number(n, "value", p, positive=False)
    return issues + _check_kinds(n, p)


def _check_egfr(n: Any, p: Path) -> list[Issue]:
    from trialsieve.kidney.egfr import EQUATIONS

    if isinstance(n, Mapping) and "from" in n:
        issues = _keys(n, p, ("equation", "from", "baseline", "op", "value"), ("window",))
        if "window" in n:  # default: the AKI look-back (settings.aki_lookback_days, else 7 d)
            issues += _check_window(n["window"], (*p, "window"))
        if n.get("from") != "aki_baseline":
            issues.append(((*p, "from"), "the only source is 'aki_baseline'"))
        if "baseline" in n and n["baseline"] not in BASELINES:
            issues.append(((*p, "baseline"), f"unknown baseline (one of {', '.join(BASELINES)})"))
    else:
        issues = _keys(n, p, ("equation", "window", "agg", "op", "value"), ())
        if not isinstance(n, Mapping):
            return issues
        if "window" in n:
            issues += _check_window(n["window"], (*p, "window"))
        if "agg" in n and n["agg"] not in AGGS:
            issues.append(((*p, "agg"), f"unknown aggregation {n['agg']!r}"))
    if "equation" in n and n["equation"] not in EQUATIONS:
        issues.append(
            (
                (*p, "equation"),
                f"unknown equation {n['equation']!r} (one of {', '.join(EQUATIONS)})",
            )
        )
    if "op" in n:
        issues += _check_op(n, p)
    if "value" in n:
        issues += _check_number(n, "value", p, positive=True)
    return issues


def _check_aki_condition(c: Any, p: Path) -> list[Issue]:
    if not isinstance(c, Mapping) or len(c) != 1:
        return [(p, f"an AKI condition is a mapping with one of {', '.join(AKI_CONDITIONS)}")]
    ((name, body),) = c.items()
    q = (*p, str(name))
    if name == "any_of":
        if not isinstance(body, list) or not body:
            return [(q, "must be a non-empty list of AKI conditions")]
        return [i for k, sub in enumerate(body) for i in _check_aki_condition(sub, (*q, k))]
    if name == "kdigo_stage":
        issues = _keys(body, q, ("min",), ())
        if not issues and body["min"] not in (1, 2, 3):
            issues.append(((*q, "min"), "KDIGO stage is 1, 2 or 3"))
        return issues
    if name == "creatinine_rise":
        issues = _keys(body, q, ("umol_l", "hours"), ())
        if not issues:
            issues += _check_number(body, "umol_l", q, positive=True)
            issues += _check_number(body, "hours", q, positive=True)
        return issues
    if name == "creatinine_ratio":
        issues = _keys(body, q, ("op", "value", "baseline"), ())
        if not issues:
            issues += _check_op(body, q) + _check_number(body, "value", q, positive=True)
            if body["baseline"] not in BASELINES:
                issues.append(((*q, "baseline"), f"unknown baseline {body['baseline']!r}"))
        return issues
    if name == "urine_output":
        issues = _keys(body, q, ("below_ml_kg_h", "hours"), ())
        if not issues:
            issues += _check_number(body, "below_ml_kg_h", q, positive=True)
            issues += _check_number(body, "hours", q, positive=True)
        return issues
    return [(q, f"unknown AKI condition (one of {', '.join(AKI_CONDITIONS)})")]


def _check_aki(n: Any, p: Path) -> list[Issue]:
    # onset_within defaults to the protocol's settings.aki_lookback_days (else 7 days)
    issues = _keys(n, p, ("condition",), ("onset_within", "baseline"))
    if not isinstance(n, Mapping):
        return issues
    if "condition" in n:
        issues += _check_aki_condition(n["condition"], (*p, "condition"))
    if "onset_within" in n:
        issues += _check_window(n["onset_within"], (*p, "onset_within"))
    if "baseline" in n and n["baseline"] not in BASELINES:
        issues.append(((*p, "baseline"), f"unknown baseline (one of {', '.join(BASELINES)})"))
    return issues


def rule_issues(
    node: Any, concept_sets: Collection[str] | None = None, path: Path = ()
) -> list[Issue]:
    """Every problem of a rule node against the grammar of docs/PROTOCOLS.md, with its path.

    ``concept_sets``: the names defined by the protocol; None skips the reference check.
    """
    if not isinstance(node, Mapping) or len(node) != 1:
        return [(path, f"a rule node is a mapping with exactly one of {', '.join(NODE_TYPES)}")]
    ((name, body),) = node.items()
    p = (*path, str(name))
    if name == "age":
        return _check_age(body, p)
    if name == "sex":
        return [] if body in SEXES else [(p, f"sex must be one of {', '.join(SEXES)}")]
    if name == "has":
        return _check_has(body, p, concept_sets)
    if name == "lab":
        return _check_lab(body, p)
    if name in ("count", "exposure_days"):
        return _check_count(body, p, concept_sets, name)
    if name == "egfr":
        return _check_egfr(body, p)
    if name == "aki":
        return _check_aki(body, p)
    if name in ("all", "any"):
        if not isinstance(body, list) or not body:
            return [(p, "must be a non-empty list of rule nodes")]
        return [i for k, sub in enumerate(body) for i in rule_issues(sub, concept_sets, (*p, k))]
    if name == "not":
        return rule_issues(body, concept_sets, p)
    if name == "manual":
        if isinstance(body, str) and body.strip():
            return []
        return [(p, "manual needs the text of the check")]
    return [(p, f"unknown rule node {name!r} (one of {', '.join(NODE_TYPES)})")]


def criteria_layout(raw: Any) -> tuple[list[Any], list[Path]]:
    """Flatten the YAML ``criteria: {inclusion: [...], exclusion: [...]}`` layout.

    Returns the criteria (inclusion first, each a copy with ``kind`` set) and, per criterion, its
    path in the file (``('criteria', 'exclusion', 3)``). Raises ValueError on a malformed layout.
    """
    if not isinstance(raw, Mapping):
        raise ValueError("criteria must be a mapping with 'inclusion' and 'exclusion' lists")
    unknown = [k for k in raw if k not in ("inclusion", "exclusion")]
    if unknown:
        raise ValueError(f"unknown criteria section {unknown[0]!r} (inclusion, exclusion)")
    flat: list[Any] = []
    origins: list[Path] = []
    for kind in ("inclusion", "exclusion"):
        items = raw.get(kind) or []
        if not isinstance(items, list):
            raise ValueError(f"criteria.{kind} must be a list")
        for i, item in enumerate(items):
            if isinstance(item, Mapping):
                if "kind" in item and item["kind"] != kind:
                    raise ValueError(f"criteria.{kind}[{i}]: kind is given by the section")
                item = {**item, "kind": kind}
            flat.append(item)
            origins.append(("criteria", kind, i))
    return flat, origins


def protocol_issues(raw: Mapping[str, Any]) -> list[Issue]:
    """Rule-language and numbering problems of a protocol in its YAML layout, with file paths.

    Checks concept-set code entries, every criterion's ``rule`` and ``evidence`` against the
    grammar (including references to the protocol's concept sets) and the ids ``inc-N``/``exc-N``
    (N = 1-based position in the registry list, see ../shared/README.md). Structure of the other
    fields is pydantic's job.
    """
    issues: list[Issue] = []
    sets = raw.get("concept_sets")
    names = set(sets) if isinstance(sets, Mapping) else set()
    if isinstance(sets, Mapping):
        for name, cs in sets.items():
            issues += concept_set_issues(cs, ("concept_sets", str(name)))
    criteria = raw.get("criteria")
    if not isinstance(criteria, Mapping):
        return issues
    prefix = {"inclusion": "inc", "exclusion": "exc"}
    for kind in ("inclusion", "exclusion"):
        items = criteria.get(kind)
        if not isinstance(items, list):
            continue
        for i, item in enumerate(items):
            p: Path = ("criteria", kind, i)
            if not isinstance(item, Mapping):
                continue
            expected = f"{prefix[kind]}-{i + 1}"
            if item.get("id") != expected:
                issues.append(((*p, "id"), f"expected id {expected!r}, got {item.get('id')!r}"))
            if "rule" in item and item["rule"] is not None:
                issues += rule_issues(item["rule"], names, (*p, "rule"))
            evidence = item.get("evidence")
            if isinstance(evidence, list):
                for k, ev in enumerate(evidence):
                    issues += rule_issues(ev, names, (*p, "evidence", k))
    return issues


# --------------------------------------------------------------------------------------------
# Protocol models
# --------------------------------------------------------------------------------------------


class Dose(_Strict):
    """One dose level: amount per unit (e.g. 1.0e6 cells/kg) on study days and/or weeks."""

    amount: float = Field(gt=0)
    unit: str
    days: list[int] = Field(default_factory=list)
    weeks: list[int] = Field(default_factory=list)
    label: str = ""

    @field_validator("days", "weeks")
    @classmethod
    def _ascending(cls, v: list[int]) -> list[int]:
        if any(d < 1 for d in v) or v != sorted(set(v)):
            raise ValueError("study days/weeks are 1-based, ascending, without repeats")
        return v


InterventionType = Literal[
    "DRUG", "DEVICE", "BIOLOGICAL", "PROCEDURE", "RADIATION", "BEHAVIORAL", "GENETIC",
    "DIETARY_SUPPLEMENT", "COMBINATION_PRODUCT", "DIAGNOSTIC_TEST", "OTHER",
]  # fmt: skip


class Intervention(_Strict):
    """An intervention of an arm (ClinicalTrials.gov "Interventions")."""

    name: str
    type: InterventionType
    route: str
    diluent: str | None = None
    doses: list[Dose] = Field(default_factory=list)
    description: str = ""


class Arm(_Strict):
    """A study arm / group with its interventions."""

    name: str
    type: Literal[
        "EXPERIMENTAL", "ACTIVE_COMPARATOR", "PLACEBO_COMPARATOR", "SHAM_COMPARATOR",
        "NO_INTERVENTION", "OTHER",
    ]  # fmt: skip
    description: str = ""
    interventions: list[Intervention] = Field(default_factory=list)


class Site(_Strict):
    """A participating site as the registry lists it."""

    name: str
    city: str | None = None
    state: str | None = None
    country: str | None = None
    status: str | None = None


class Contact(_Strict):
    """A registry contact (central, facility or responsible investigator)."""

    name: str
    role: str
    phone: str | None = None
    email: str | None = None
    site: str | None = None


class AgeRange(_Strict):
    """Registry eligible ages (whole years, inclusive)."""

    min_years: float | None = None
    max_years: float | None = None


class Design(_Strict):
    """Study design (ClinicalTrials.gov data elements)."""

    allocation: Literal["NA", "RANDOMIZED", "NON_RANDOMIZED"]
    model: Literal["SINGLE_GROUP", "PARALLEL", "CROSSOVER", "FACTORIAL", "SEQUENTIAL"]
    masking: Literal["NONE", "SINGLE", "DOUBLE", "TRIPLE", "QUADRUPLE"]
    masked_roles: list[
        Literal["PARTICIPANT", "CARE_PROVIDER", "INVESTIGATOR", "OUTCOMES_ASSESSOR"]
    ] = Field(default_factory=list)
    purpose: str
    enrolment: int = Field(gt=0)
    age: AgeRange
    sex: Literal["ALL", "FEMALE", "MALE"]
    healthy_volunteers: bool


class Criterion(_Strict):
    """One registry criterion: a computable ``rule`` or a ``manual`` check (exactly one)."""

    id: str
    kind: Literal["inclusion", "exclusion"]
    text: str = Field(min_length=1)
    rule: dict[str, Any] | None = None
    manual: str | None = None
    evidence: list[dict[str, Any]] = Field(default_factory=list)

    @model_validator(mode="after")
    def _rule_or_manual(self) -> Criterion:
        prefix = "inc-" if self.kind == "inclusion" else "exc-"
        if not re.fullmatch(re.escape(prefix) + r"[1-9][0-9]*", self.id):
            raise ValueError(f"id {self.id!r} must be {prefix}N")
        if (self.rule is None) == (self.manual is None):
            raise ValueError("a criterion has exactly one of 'rule' or 'manual'")
        if self.manual is not None and not self.manual.strip():
            raise ValueError("manual needs the text of the check")
        problems = rule_issues(self.rule, None, ("rule",)) if self.rule is not None else []
        for k, ev in enumerate(self.evidence):
            problems += rule_issues(ev, None, ("evidence", k))
        if problems:
            raise ValueError("; ".join(f"{format_path(p)}: {m}" for p, m in problems))
        return self

    @property
    def automatic(self) -> bool:
        """True for a computable criterion (``rule``), False for a manual check."""
        return self.rule is not None


_STATUSES = Literal[
    "NOT_YET_RECRUITING", "RECRUITING", "ENROLLING_BY_INVITATION", "ACTIVE_NOT_RECRUITING",
    "SUSPENDED", "TERMINATED", "COMPLETED", "WITHDRAWN", "UNKNOWN",
]  # fmt: skip
_PHASES = Literal["EARLY_PHASE1", "PHASE1", "PHASE2", "PHASE3", "PHASE4", "NA"]


class Protocol(_Strict):
    """A trial protocol: registry data, design, arms, concept sets and every criterion.

    ``criteria`` is flat (inclusion in registry order, then exclusion); the YAML layout
    ``criteria: {inclusion: [...], exclusion: [...]}`` is accepted and flattened.
    """

    id: str = Field(pattern=r"^NCT[0-9]{8}$")
    title: str
    status: _STATUSES
    phase: list[_PHASES] = Field(min_length=1)
    source: dict[str, Any] = Field(default_factory=dict)
    design: Design
    arms: list[Arm] = Field(min_length=1)
    sites: list[Site] = Field(default_factory=list)
    contacts: list[Contact] = Field(default_factory=list)
    settings: dict[str, Any] = Field(default_factory=dict)
    concept_sets: dict[str, ConceptSet] = Field(default_factory=dict)
    criteria: list[Criterion]

    @model_validator(mode="before")
    @classmethod
    def _from_file_layout(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        data = dict(data)
        if isinstance(data.get("criteria"), Mapping):
            data["criteria"], _ = criteria_layout(data["criteria"])
        sets = data.get("concept_sets")
        if isinstance(sets, Mapping):
            named = {}
            for key, value in sets.items():
                if isinstance(value, Mapping) and "name" not in value:
                    value = {"name": key, **value}
                named[key] = value
            data["concept_sets"] = named
        return data

    @field_validator("settings")
    @classmethod
    def _settings_ok(cls, v: dict[str, Any]) -> dict[str, Any]:
        from trialsieve.kidney.egfr import EQUATIONS

        for key, value in v.items():
            if key not in KNOWN_SETTINGS:
                raise ValueError(f"unknown setting {key!r} (one of {', '.join(KNOWN_SETTINGS)})")
            if key == "aki_lookback_days" and not (_is_number(value) and value > 0):
                raise ValueError("aki_lookback_days must be a positive number")
            if key == "egfr_equation" and value not in EQUATIONS:
                raise ValueError(f"unknown eGFR equation {value!r}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Protocol:
        for key, cs in self.concept_sets.items():
            if cs.name != key:
                raise ValueError(f"concept set {key!r} has name {cs.name!r}")
        seen: dict[str, int] = {"inclusion": 0, "exclusion": 0}
        kinds = [c.kind for c in self.criteria]
        if kinds != sorted(kinds, key=lambda k: k == "exclusion"):
            raise ValueError("criteria: inclusion criteria come before exclusion criteria")
        for c in self.criteria:
            seen[c.kind] += 1
            expected = f"{'inc' if c.kind == 'inclusion' else 'exc'}-{seen[c.kind]}"
            if c.id != expected:
                raise ValueError(f"criterion {c.id!r}: expected id {expected!r} (registry order)")
        names = set(self.concept_sets)
        problems: list[str] = []
        for c in self.criteria:
            nodes = ([c.rule] if c.rule is not None else []) + list(c.evidence)
            for node in nodes:
                problems += [f"{c.id}: {m}" for _, m in rule_issues(node, names)]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def criterion(self, criterion_id: str) -> Criterion:
        """The criterion with this id (KeyError when absent)."""
        for c in self.criteria:
            if c.id == criterion_id:
                return c
        raise KeyError(criterion_id)

    @property
    def inclusion(self) -> list[Criterion]:
        """Inclusion criteria in registry order."""
        return [c for c in self.criteria if c.kind == "inclusion"]

    @property
    def exclusion(self) -> list[Criterion]:
        """Exclusion criteria in registry order."""
        return [c for c in self.criteria if c.kind == "exclusion"]
