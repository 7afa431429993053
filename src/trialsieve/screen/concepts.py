"""Concept sets -> SQL predicates over the ``events`` view (docs/PROTOCOLS.md "Concept sets").

Entry forms, per code-system alias:
- a range ``A-B``: the code's first ``len(A)`` characters lie between A and B (ICD stems
  ``C00-C97``, ICD-9 ``140-208``, CPT ``90935-90999``); never in LOINC, whose codes contain a
  check digit after ``-`` (``2160-0`` is one exact code);
- a prefix ``X*``; in the hierarchical systems (ICD-10-CM, ICD-9-CM, ICD-10-PCS, ICD-9 procedures,
  ATC) every entry is a prefix: ``N18`` matches ``N18.4``, ``H02AB`` matches ``H02AB06``;
- otherwise an exact code (SNOMED CT, LOINC, RxNorm).
Codes compare case-insensitively, ignoring a trailing dot.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from trialsieve import codes
from trialsieve.screen.sql import lit

#: systems whose codes are hierarchical by prefix
PREFIX_SYSTEMS = frozenset({codes.ICD10CM, codes.ICD9CM, codes.ICD10PCS, codes.ICD9PROC, codes.ATC})


def _entry_sql(system: str, entry: str, col: str) -> str:
    e = entry.strip().upper()
    if system == codes.LOINC:  # LOINC codes carry a check digit after '-': always exact
        return f"{col} = {lit(e)}"
    if "-" in e and not e.startswith("-"):
        lo, hi = (p.strip() for p in e.split("-", 1))
        return f"substr({col}, 1, {len(lo)}) BETWEEN {lit(lo)} AND {lit(hi)}"
    if e.endswith("*"):
        return f"{col} LIKE {lit(e[:-1] + '%')}"
    if system in PREFIX_SYSTEMS:
        return f"{col} LIKE {lit(e.rstrip('.') + '%')}"
    return f"{col} = {lit(e)}"


def _codes_sql(code_map: Mapping[str, Sequence[str]], alias: str) -> list[str]:
    col = f"upper({alias}.code)"
    parts = []
    for sys_alias, entries in code_map.items():
        system = codes.canonical_system(sys_alias)
        if not entries:
            continue
        ors = " OR ".join(_entry_sql(system, str(e), col) for e in entries)
        parts.append(f"({alias}.code_system = {lit(system)} AND ({ors}))")
    return parts


def _fields(concept_set: Any) -> Callable[[str], Any]:
    """Field access to a concept set: a protocol ``ConceptSet`` (attributes codes, exclude,
    analytes) or an inline mapping with the same keys."""
    return concept_set.get if isinstance(concept_set, Mapping) else concept_set.__getattribute__


def analytes_only(concept_set: Any) -> tuple[str, ...] | None:
    """The analytes of a concept set that names analytes and no codes; None for any other
    set."""
    get = _fields(concept_set)
    analytes = tuple(get("analytes") or ())
    if not analytes or get("codes") or get("exclude"):
        return None
    return analytes


def concept_predicate(concept_set: Any, alias: str = "e") -> str:
    """SQL predicate true for events of ``alias`` whose code (or analyte) is in the set.

    ``concept_set`` is a protocol ``ConceptSet`` (attributes codes, exclude, analytes) or an
    inline mapping with the same keys.
    """
    get = _fields(concept_set)
    code_map = get("codes") or {}
    exclude = get("exclude") or {}
    analytes = get("analytes") or []
    parts = _codes_sql(code_map, alias)
    if analytes:
        parts.append(f"{alias}.analyte IN ({', '.join(lit(a) for a in analytes)})")
    if not parts:
        return "FALSE"
    pred = "(" + " OR ".join(parts) + ")"
    excl = _codes_sql(exclude, alias)
    if excl:
        pred = f"({pred} AND NOT ({' OR '.join(excl)}))"
    return pred
