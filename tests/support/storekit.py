"""Test support: hand-built patients, events and protocols, and a store builder."""

from __future__ import annotations

import datetime as dt
import itertools
from pathlib import Path
from typing import Any

import pyarrow as pa

from trialsieve.store import EVENTS_SCHEMA, PATIENTS_SCHEMA, StoreWriter

AS_OF = dt.datetime(2026, 6, 1, 8, 0)

_ids = itertools.count()


def ev(patient: str, kind: str, *, days_ago: float = 1.0, **fields: Any) -> dict[str, Any]:
    """One event row; ``days_ago`` before AS_OF unless start_time is given."""
    row: dict[str, Any] = {
        "patient_id": patient,
        "kind": kind,
        "start_time": AS_OF - dt.timedelta(days=days_ago),
        "source": f"test/{kind}/{next(_ids)}",
    }
    row.update(fields)
    return row


def lab(patient: str, analyte: str, value: float, unit: str, **kw: Any) -> dict[str, Any]:
    return ev(patient, "lab", analyte=analyte, value=value, unit=unit, code_system="http://loinc.org",
              code=f"x-{analyte}", **kw)  # fmt: skip


def cond(patient: str, system: str, code: str, **kw: Any) -> dict[str, Any]:
    return ev(patient, "condition", code_system=system, code=code, display=code, **kw)


def med(patient: str, atc: str, start_days_ago: float, end_days_ago: float | None) -> dict:
    end = None if end_days_ago is None else AS_OF - dt.timedelta(days=end_days_ago)
    return ev(patient, "medication", days_ago=start_days_ago, code_system="http://www.whocc.no/atc",
              code=atc, display=atc, end_time=end)  # fmt: skip


def oliguria(
    pid: str, hours: int, ml_per_h: float = 20.0, *, days_ago: float = 2.0
) -> list[dict[str, Any]]:
    """70 kg (charted a day before); ``hours`` consecutive 1-h urine collections of ``ml_per_h``
    (20 mL = 0.29 mL/kg/h) starting ``days_ago`` days before screening, then one normal hour
    (100 mL)."""
    t0 = AS_OF - dt.timedelta(days=days_ago)
    out = [ev(pid, "vital", days_ago=days_ago + 1, analyte="weight", value=70.0, unit="kg")]
    for h in range(hours + 1):
        vol = ml_per_h if h < hours else 100.0
        start = t0 + dt.timedelta(hours=h)
        out.append(ev(pid, "observation", analyte="urine_volume", value=vol, unit="mL",
                      start_time=start, end_time=start + dt.timedelta(hours=1)))  # fmt: skip
    return out


def person(pid: str, birth: dt.date | None, sex: str | None = "female") -> dict[str, Any]:
    return {"patient_id": pid, "birth_date": birth, "sex": sex, "source": f"test/Patient/{pid}"}


def crit(
    cid: str,
    rule: dict | None = None,
    manual: str | None = None,
    evidence: list[dict] | None = None,
    text: str = "",
) -> Any:
    """A criterion object as the protocol loader gives it."""
    from types import SimpleNamespace

    kind = "inclusion" if cid.startswith("inc") else "exclusion"
    return SimpleNamespace(id=cid, kind=kind, text=text or cid, rule=rule, manual=manual,
                           evidence=evidence or [])  # fmt: skip


def protocol(
    criteria: list[Any],
    concept_sets: dict[str, dict] | None = None,
    settings: dict | None = None,
    pid: str = "T1",
) -> Any:
    """A protocol object with the attributes the engine reads."""
    from types import SimpleNamespace

    return SimpleNamespace(id=pid, title=f"trial {pid}", criteria=criteria,
                           concept_sets=concept_sets or {}, settings=settings or {})  # fmt: skip


def build_store(store: Path, patients: list[dict], events: list[dict]) -> Path:
    """Write ``patients`` and ``events`` (plain dicts) into a store at ``store``."""
    pt = pa.Table.from_pylist(
        [{k: p.get(k) for k in PATIENTS_SCHEMA.names} for p in patients], PATIENTS_SCHEMA
    )
    et = pa.Table.from_pylist(
        [{k: e.get(k) for k in EVENTS_SCHEMA.names} for e in events], EVENTS_SCHEMA
    )
    with StoreWriter(store, "test") as w:
        w.count_read("Patient", len(patients))
        w.patients(pt)
        w.count_read("Event", len(events))
        if events:
            w.events(et, "Event")
    return store
