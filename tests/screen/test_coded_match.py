"""Coded rules match events through the run's distinct codes (``Compiler._accepted_codes``, joined
on ``compile._CODE_KEYS`` by the coded-history pass): exactly the events that the concept
predicate accepts row by row, including NULL systems, codes and analytes, lower-case codes,
ranges, prefixes and exclusions."""

from __future__ import annotations

import datetime as dt
import itertools

import duckdb
import pytest

from trialsieve import codes
from trialsieve.screen.backend import DuckDBBackend
from trialsieve.screen.compile import _CODE_KEYS, CODED_KINDS, Compiler, events_of
from trialsieve.screen.concepts import concept_predicate

SYSTEMS = (codes.ICD10CM, codes.SNOMED, codes.ATC, codes.LOINC, None)
CODES = ("N18.4", "n18.4", "N18", "N18.", "E11.9", "C44.1", "C50.9", "44054006", "H02AB06",
         "h02ab", "2160-0", None)  # fmt: skip
ANALYTES = (None, "lvef", "creatinine")
KINDS = (*CODED_KINDS, "lab")

CONCEPTS = [
    {"codes": {"icd10cm": ["N18", "E11.9"]}},
    {"codes": {"icd10cm": ["C00-C97"]}, "exclude": {"icd10cm": ["C44"]}},
    {"codes": {"snomed": ["44054006"], "atc": ["H02AB"]}},
    {"codes": {"icd10cm": ["N18.4"]}, "analytes": ["lvef"]},
    {"analytes": ["creatinine", "lvef"]},
    {"codes": {"loinc": ["2160-0"]}},
    {"codes": {}},
]


@pytest.fixture(scope="module")
def compiler() -> Compiler:
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE events (event_id VARCHAR, kind VARCHAR, code_system VARCHAR, "
        "code VARCHAR, analyte VARCHAR)"
    )
    rows = itertools.product(KINDS, SYSTEMS, CODES, ANALYTES)
    con.executemany(
        "INSERT INTO events VALUES (?, ?, ?, ?, ?)",
        [(f"e{i}", *r) for i, r in enumerate(rows)],
    )
    return Compiler(DuckDBBackend(con), dt.datetime(2026, 6, 1), {})


@pytest.mark.parametrize("concept", CONCEPTS)
@pytest.mark.parametrize("kinds", [("condition", "procedure"), CODED_KINDS[:4],
                                   ("medication",), ("observation",)])  # fmt: skip
def test_distinct_code_match_equals_row_predicate(
    compiler: Compiler, concept: dict, kinds: tuple[str, ...]
) -> None:
    pred = concept_predicate(concept, "e")
    kinds_sql = ", ".join(f"'{k}'" for k in kinds)
    want = compiler.backend.rows(
        f"SELECT e.event_id FROM events e WHERE e.kind IN ({kinds_sql}) AND {pred} ORDER BY 1"
    )
    accepted = compiler._accepted_codes(pred, kinds)
    got = compiler.backend.rows(
        f"SELECT e.event_id FROM {events_of(kinds)} e SEMI JOIN ({accepted}) m ON {_CODE_KEYS} "
        "ORDER BY 1"
    )
    assert got == want
    if concept.get("codes") or concept.get("analytes"):
        assert want  # the grid holds matching events for every non-empty set
