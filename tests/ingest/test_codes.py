"""Code-system aliases and the code -> analyte table."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from trialsieve.codes import SYSTEM_ALIASES, analyte_for_code, canonical_system
from trialsieve.units import ANALYTES


@pytest.mark.parametrize(
    ("spelling", "uri"),
    [
        ("loinc", "http://loinc.org"),
        ("LOINC", "http://loinc.org"),
        ("urn:oid:2.16.840.1.113883.6.1", "http://loinc.org"),
        ("http://loinc.org", "http://loinc.org"),
        ("icd10cm", "http://hl7.org/fhir/sid/icd-10-cm"),
        ("urn:oid:2.16.840.1.113883.6.96", "http://snomed.info/sct"),
        ("mimic3-item", "https://mimic.mit.edu/mimic3/itemid"),
        ("rxnorm", "http://www.nlm.nih.gov/research/umls/rxnorm"),
    ],
)
def test_canonical_system(spelling: str, uri: str) -> None:
    assert canonical_system(spelling) == uri


def test_unknown_system_is_kept() -> None:
    assert canonical_system(" http://example.org/local ") == "http://example.org/local"


def test_aliases_of_store_doc_table() -> None:
    """Every alias row of the docs/STORE.md table resolves to the URI written in that row."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "STORE.md").read_text()
    rows = re.findall(r"^\| ([a-z0-9-]+(?: / [a-z0-9-]+)?) \| `([^`]+)`", doc, re.M)
    assert len(rows) >= 10
    for aliases, uri in rows:
        for alias in aliases.split(" / "):
            assert SYSTEM_ALIASES[alias] == canonical_system(alias)
        assert canonical_system(aliases.split(" / ")[0]) == uri


@pytest.mark.parametrize(
    ("system", "code", "analyte"),
    [
        ("http://loinc.org", "2160-0", "creatinine"),
        ("http://loinc.org", "38483-4", "creatinine"),  # Synthea's creatinine
        ("loinc", "8480-6", "sbp"),
        ("loinc", "8462-4", "dbp"),
        ("loinc", "4548-4", "hba1c"),
        ("mimic3-item", "50912", "creatinine"),
        ("mimic4-item", "50912", "creatinine"),
        ("mimic3-item", "40055", "urine_volume"),
        ("omop", "3016723", "creatinine"),
        ("loinc", "85354-9", None),  # the BP panel itself carries no value
        ("snomed", "2160-0", None),
    ],
)
def test_analyte_for_code(system: str, code: str, analyte: str | None) -> None:
    assert analyte_for_code(system, code) == analyte


def test_every_mapped_analyte_is_in_unit_table() -> None:
    from trialsieve import codes

    for table in codes._BY_SYSTEM.values():
        assert set(table.values()) <= set(ANALYTES)
