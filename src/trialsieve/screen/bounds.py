"""Rules over results reported as bounds ("<0.3", ">90"): decided only when every value the
bound allows gives the same answer, else unknown.

A FHIR ``Quantity.comparator`` (R4 datatypes: ``<``, ``<=``, ``>=``, ``>``) or an OMOP
``measurement.operator_concept_id`` other than "=" means the true value lies beyond the reported
number b; the store keeps b as the value and the comparator at the start of ``value_text``
(docs/STORE.md "Bounds"). A rule ``value <op> L`` is then

- met when it holds for every x the bound allows (``<0.3`` meets "< 0.5": all x < 0.3 are);
- not met when it fails for every such x (``>90`` fails "< 60");
- unknown otherwise (``>60`` against "> 90": the value may be 61 or 95).

:data:`DECIDED` lists, per (comparator, rule operator), the relation between b and L under
which the rule is always true or always false; :func:`decide` applies it in Python and
:func:`compare_sql` in SQL, from the same table.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Final

#: comparators of a bound, as stored at the start of ``value_text``
COMPARATORS: Final[tuple[str, ...]] = ("<=", ">=", "<", ">")

#: (comparator, rule operator) -> (relation b ? L making the rule always true, ... always false);
#: None where no b decides it (x < b is never always > L: x is unbounded below)
DECIDED: Final[dict[tuple[str, str], tuple[str | None, str | None]]] = {
    ("<", "<"): ("<=", None), ("<", "<="): ("<=", None),
    ("<", ">"): (None, "<="), ("<", ">="): (None, "<="), ("<", "="): (None, "<="),
    ("<=", "<"): ("<", None), ("<=", "<="): ("<=", None),
    ("<=", ">"): (None, "<="), ("<=", ">="): (None, "<"), ("<=", "="): (None, "<"),
    (">", ">"): (">=", None), (">", ">="): (">=", None),
    (">", "<"): (None, ">="), (">", "<="): (None, ">="), (">", "="): (None, ">="),
    (">=", ">"): (">", None), (">=", ">="): (">=", None),
    (">=", "<"): (None, ">="), (">=", "<="): (None, ">"), (">=", "="): (None, ">"),
}  # fmt: skip

_PY: Final[dict[str, Callable[[float, float], bool]]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "=": operator.eq,
}  # fmt: skip

#: what a bound on creatinine says about the eGFR computed from it: eGFR falls as creatinine
#: rises, and the eGFR compared is rounded (screen.compile.EGFR_DECIMALS), so a strict bound
#: on creatinine gives only a non-strict one on the rounded eGFR
EGFR_FROM_CREATININE: Final[dict[str, str]] = {"<": ">=", "<=": ">=", ">": "<=", ">=": "<="}


def decide(value: float, comparator: str | None, op: str, limit: float) -> bool | None:
    """``value op limit`` for an exact value, or for the bound ``comparator value``: True or
    False when every value the bound allows agrees, else None (unknown)."""
    op = "=" if op == "==" else op
    if comparator is None:
        return _PY[op](value, limit)
    when_true, when_false = DECIDED[(comparator, op)]
    if when_true is not None and _PY[when_true](value, limit):
        return True
    if when_false is not None and _PY[when_false](value, limit):
        return False
    return None


def comparator_sql(value_text: str) -> str:
    """SQL: the comparator at the start of ``value_text`` (a bound), else NULL."""
    cases = " ".join(
        f"WHEN substr({value_text}, 1, {len(c)}) = '{c}' THEN '{c}'" for c in COMPARATORS
    )
    return f"(CASE {cases} END)"


def mapped_comparator_sql(cmp: str, mapping: dict[str, str]) -> str:
    """SQL: comparator ``cmp`` mapped (e.g. :data:`EGFR_FROM_CREATININE`), NULL stays NULL."""
    cases = " ".join(f"WHEN '{k}' THEN '{v}'" for k, v in mapping.items())
    return f"(CASE {cmp} {cases} END)"


def compare_sql(value: str, cmp: str, op: str, limit: str) -> str:
    """SQL of :func:`decide`: ``value op limit`` where ``cmp`` (SQL, NULL for an exact value)
    may make ``value`` a bound; NULL when the bound leaves it open."""
    op = "=" if op == "==" else op
    if op not in _PY:
        raise ValueError(f"unknown operator {op!r}")
    cases = []
    for c in COMPARATORS:
        when_true, when_false = DECIDED[(c, op)]
        decided = []
        if when_true is not None:
            decided.append(f"WHEN {value} {when_true} {limit} THEN TRUE")
        if when_false is not None:
            decided.append(f"WHEN {value} {when_false} {limit} THEN FALSE")
        cases.append(f"WHEN {cmp} = '{c}' THEN CASE {' '.join(decided)} END")
    return f"(CASE WHEN {cmp} IS NULL THEN {value} {op} {limit} {' '.join(cases)} END)"


def reported_as_sql(note: str, cmp: str, value_text: str, what: str = "") -> str:
    """SQL: evidence ``note``, and for a bound (comparator ``cmp`` not NULL) the value as the
    source reported it ("reported as <0.3")."""
    said = f"'{what + ' ' if what else ''}reported as ' || {value_text}"
    return f"CASE WHEN {cmp} IS NULL THEN {note} ELSE COALESCE({note} || '; ', '') || {said} END"
