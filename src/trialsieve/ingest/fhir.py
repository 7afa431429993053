"""FHIR R4 reader: Bulk NDJSON folders (``<Type>.*.ndjson[.gz]``) and Bundles (``.json[.gz]``).

Resources read (FHIR R4, http://hl7.org/fhir/R4/): Patient, Observation (valueQuantity,
components such as the blood-pressure panel 85354-9 -> 8480-6 / 8462-4, effective[x],
referenceRange), Condition, Procedure, MedicationRequest, MedicationStatement,
MedicationAdministration, Encounter. Every other resource type is counted and rejected with the
reason "unsupported resource type <Type>" so that read = stored + rejected holds.

Parsing uses orjson per line and plain dict access (no per-resource pydantic); ``--strict``
validates each resource with ``fhir.resources.R4B`` and stops at the first error. Observation
NDJSON files go through the vectorised fast path of ``ingest/fhir_fast.py`` (not in strict mode),
which hands every record it cannot decide back to this per-record code.
"""

from __future__ import annotations

import datetime as dt
import gzip
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
from tqdm import tqdm

from trialsieve.codes import (
    ATC,
    ICD9CM,
    ICD10CM,
    LOINC,
    RXNORM,
    SNOMED,
    analyte_for_code,
    canonical_system,
)
from trialsieve.ingest.fhir_time import parse_fhir_date, parse_fhir_datetime
from trialsieve.ingest.sink import IngestError, IngestSink
from trialsieve.ingest.tabular import Reject, convert
from trialsieve.store.schema import EVENTS_SCHEMA, PATIENTS_SCHEMA
from trialsieve.units import (
    UnitError,
    canonical_unit,
    to_canonical,
)

log = logging.getLogger(__name__)

BATCH_ROWS = 50_000
UCUM = "http://unitsofmeasure.org"
SUPPORTED = (
    "Patient",
    "Observation",
    "Condition",
    "Procedure",
    "MedicationRequest",
    "MedicationStatement",
    "MedicationAdministration",
    "Encounter",
)
_VITAL_ANALYTES = {"sbp", "dbp", "weight", "lvef"}
#: coding preference per resource family (first coding found in this order is stored)
_COND_PREF = (ICD10CM, ICD9CM, SNOMED)
_MED_PREF = (RXNORM, ATC, SNOMED)
_OBS_PREF = (LOINC,)
#: LOINC blood-pressure panels (85354-9 panel, 55284-4 systolic and diastolic, 35094-2 panel) and
#: their components 8480-6 (systolic) / 8462-4 (diastolic), whose LOINC property is pressure with
#: example unit mm[Hg]: a component without unit is read as mm[Hg], with a warning.
BP_PANELS = frozenset({"85354-9", "55284-4", "35094-2"})
BP_COMPONENTS = frozenset({"8480-6", "8462-4"})
BP_UNIT_ASSUMED = "blood-pressure component without unit: mm[Hg] assumed (LOINC 8480-6/8462-4)"
#: extra event columns telling the sink where a row came from (for unknown-patient rejects)
ORIGIN_COLUMNS = ("origin_file", "origin_locator")
_VALUE_KEYS = ("valueQuantity", "valueCodeableConcept", "valueString", "valueBoolean",
               "valueInteger", "valueRange", "valueRatio", "valueSampledData", "valueTime",
               "valueDateTime", "valuePeriod")  # fmt: skip


# ----------------------------------------------------------------------------------------------
# small helpers
def _ref_id(ref: dict[str, Any] | None) -> str | None:
    """Patient id from a Reference: ``Patient/abc``, ``urn:uuid:abc``, absolute URL."""
    if not ref:
        return None
    r = ref.get("reference")
    if not r:
        return None
    if r.startswith("urn:uuid:"):
        return r[9:]
    return r.rsplit("/", 1)[-1] if "/" in r else r


def _time(value: Any, what: str) -> dt.datetime:
    try:
        return parse_fhir_datetime(value)
    except (ValueError, TypeError, AttributeError):
        raise Reject(f"impossible date in {what}: {value!r}") from None


def _period(p: dict[str, Any] | None, what: str) -> tuple[dt.datetime | None, dt.datetime | None]:
    if not p:
        return None, None
    start = _time(p["start"], what + ".start") if p.get("start") else None
    end = _time(p["end"], what + ".end") if p.get("end") else None
    return start, end


def _pick_coding(
    cc: dict[str, Any] | None, prefer: tuple[str, ...]
) -> tuple[str | None, str | None, str | None]:
    """(system, code, display) of the first coding in ``prefer`` order, else the first coding."""
    if not cc:
        return None, None, None
    codings = cc.get("coding") or []
    best = None
    for want in prefer:
        for c in codings:
            if c.get("code") and canonical_system(c.get("system") or "") == want:
                best = c
                break
        if best:
            break
    if best is None:
        best = next((c for c in codings if c.get("code")), None)
    if best is None:
        return None, None, cc.get("text")
    system = canonical_system(best["system"]) if best.get("system") else None
    return system, str(best["code"]), best.get("display") or cc.get("text")


_CODE_CACHE: dict[tuple[Any, ...], tuple[str | None, str | None, str | None, str | None]] = {}


def _obs_code(cc: dict[str, Any] | None) -> tuple[str | None, str | None, str | None, str | None]:
    """(system, code, display, analyte) of an Observation code, cached for one-coding concepts."""
    codings = (cc or {}).get("coding") or []
    if len(codings) == 1 and cc is not None:
        c = codings[0]
        key = (c.get("system"), c.get("code"), c.get("display"), cc.get("text"))
        hit = _CODE_CACHE.get(key)
        if hit is None:
            hit = (*_pick_coding(cc, _OBS_PREF), _analyte_of(cc))
            if len(_CODE_CACHE) < 100_000:
                _CODE_CACHE[key] = hit
        return hit
    return (*_pick_coding(cc, _OBS_PREF), _analyte_of(cc))


def _analyte_of(cc: dict[str, Any] | None) -> str | None:
    for c in (cc or {}).get("coding") or []:
        if c.get("system") and c.get("code"):
            a = analyte_for_code(c["system"], str(c["code"]))
            if a:
                return a
    return None


def qty_unit(q: dict[str, Any]) -> str | None:
    """Unit of a Quantity: the UCUM code when the system is UCUM, else ``unit``, else ``code``."""
    if q.get("system") == UCUM and q.get("code"):
        return str(q["code"])
    return q.get("unit") or q.get("code")


def _concept_text(cc: dict[str, Any] | None) -> str | None:
    if not cc:
        return None
    for c in cc.get("coding") or []:
        if c.get("display") or c.get("code"):
            return c.get("display") or c.get("code")
    return cc.get("text")


def _is_bp_panel(cc: Any) -> bool:
    """True for a LOINC blood-pressure panel code (never raises: only used to read units)."""
    try:
        system, code, _, _ = _obs_code(cc)
    except (KeyError, TypeError, ValueError, AttributeError):
        return False
    return system == LOINC and code in BP_PANELS


def obs_kind(category: str | None, analyte: str | None) -> str:
    """Event kind of an Observation row: output (urine volume), vital, lab or observation."""
    if analyte == "urine_volume":
        return "output"
    if category == "vital-signs" or analyte in _VITAL_ANALYTES:
        return "vital"
    if category == "laboratory" or analyte:
        return "lab"
    return "observation"


def obs_category(categories: Any) -> str | None:
    """The first non-empty coding code over all ``Observation.category`` concepts."""
    category = None
    for cat in categories or []:
        for c in cat.get("coding") or []:
            category = category or c.get("code")
    return category


def obs_concept(
    category: str | None, cc: dict[str, Any] | None
) -> tuple[str | None, str | None, str | None, str | None, str]:
    """(system, code, display, analyte, kind) of an Observation (or component) code."""
    system, code, display, analyte = _obs_code(cc)
    return system, code, display, analyte, obs_kind(category, analyte)


def ref_range(
    analyte: str | None, ranges: Any, unit: str | None
) -> tuple[float | None, float | None]:
    """(low, high) of ``referenceRange[0]``, in the analyte's canonical unit when it has one."""
    if not ranges:
        return None, None
    lo, hi = ranges[0].get("low"), ranges[0].get("high")
    if analyte:
        return _range_value(analyte, lo, unit), _range_value(analyte, hi, unit)
    return (
        float(lo["value"]) if lo and "value" in lo else None,
        float(hi["value"]) if hi and "value" in hi else None,
    )


def _range_value(analyte: str, q: dict[str, Any] | None, unit: str | None) -> float | None:
    if not q or q.get("value") is None:
        return None
    try:
        return to_canonical(analyte, float(q["value"]), qty_unit(q) or unit)
    except UnitError:
        return None  # an unreadable reference range is dropped; the value itself is kept


def _convert(analyte: str, value: float, unit: str | None) -> float:
    """Value in the analyte's canonical unit; Reject on unknown unit or implausible value."""
    return convert(analyte, value, unit)[0]


# ----------------------------------------------------------------------------------------------
class _Rows:
    """Column lists for one record type, flushed to the sink as Arrow batches."""

    def __init__(self, schema: pa.Schema, extra: tuple[str, ...] = ()) -> None:
        self.fields = [f for f in schema if f.name != "dataset"]
        self.fields += [pa.field(name, pa.string()) for name in extra]
        self.names = [f.name for f in self.fields]
        self.rows: list[tuple[Any, ...]] = []

    @property
    def n(self) -> int:
        return len(self.rows)

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(tuple(map(row.get, self.names)))

    def table(self) -> pa.Table:
        columns = list(zip(*self.rows, strict=True)) if self.rows else [()] * len(self.fields)
        arrays = [pa.array(c, f.type) for c, f in zip(columns, self.fields, strict=True)]
        self.rows = []
        return pa.Table.from_arrays(arrays, names=self.names)


class FhirReader:
    """Reads FHIR resources into an IngestSink, one resource at a time."""

    def __init__(self, sink: IngestSink, *, strict: bool = False) -> None:
        self.sink = sink
        self.strict = strict
        self.events: dict[str, _Rows] = {}
        self.patients = _Rows(PATIENTS_SCHEMA)
        self._handlers: dict[str, Callable[[dict[str, Any], str], list[dict[str, Any]]]] = {
            "Observation": self._observation,
            "Condition": self._condition,
            "Procedure": self._procedure,
            "MedicationRequest": self._medication_request,
            "MedicationStatement": self._medication_statement,
            "MedicationAdministration": self._medication_administration,
            "Encounter": self._encounter,
        }
        self._validators: dict[str, Any] = {}
        self._warnings: list[str] = []
        #: rows of a record type are flushed to the sink once this many are buffered
        self.batch_rows = BATCH_ROWS

    # -- dispatch -------------------------------------------------------------------------
    def resource(self, res: Any, file: str, where: str, fallback_type: str) -> None:
        """Count, convert and emit (or reject) one parsed resource."""
        rtype = res.get("resourceType") if isinstance(res, dict) else None
        rtype = rtype if isinstance(rtype, str) and rtype else fallback_type
        self.sink.count_read(rtype)
        rid = res.get("id") if isinstance(res, dict) else None
        locator = f"{where} ({rtype}/{rid})" if rid else where
        if not isinstance(res, dict):
            self.sink.reject(rtype, file, locator, "not a JSON object")
            return
        if rtype not in SUPPORTED:
            self.sink.reject(rtype, file, locator, f"unsupported resource type {rtype}")
            return
        source = f"{rtype}/{rid}" if rid else f"{file}:{where}"
        self._warnings.clear()
        try:
            if self.strict:
                self._validate(rtype, res)
            if rtype == "Patient":
                self._patient(res, source, rtype, file, locator)
                return
            rows = self._handlers[rtype](res, source)
        except Reject as e:
            self.sink.reject(rtype, file, locator, str(e))
            return
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            self.sink.reject(rtype, file, locator, f"malformed {rtype}: {type(e).__name__}: {e}")
            return
        for message in dict.fromkeys(self._warnings):  # once per record and message
            self.sink.warn(rtype, file, locator, message)
        buf = self.events.get(rtype)
        if buf is None:
            buf = self.events[rtype] = _Rows(EVENTS_SCHEMA, ORIGIN_COLUMNS)
        for row in rows:
            row["origin_file"] = file
            row["origin_locator"] = locator
            buf.add(row)
        if buf.n >= self.batch_rows:
            self.sink.events(buf.table(), rtype)

    def flush(self) -> None:
        if self.patients.n:
            self.sink.patients(self.patients.table(), "Patient")
        for rtype, buf in self.events.items():
            if buf.n:
                self.sink.events(buf.table(), rtype)

    def _validate(self, rtype: str, res: dict[str, Any]) -> None:
        from fhir.resources.R4B import get_fhir_model_class  # slow import, strict mode only

        cls = self._validators.get(rtype)
        if cls is None:
            cls = self._validators[rtype] = get_fhir_model_class(rtype)
        try:
            cls.model_validate(res)
        except Exception as e:  # pydantic ValidationError and friends
            raise IngestError(f"{rtype}/{res.get('id')}: invalid FHIR R4 resource: {e}") from e

    # -- resources ------------------------------------------------------------------------
    def _patient(
        self, res: dict[str, Any], source: str, rtype: str, file: str, locator: str
    ) -> None:
        pid = res.get("id")
        if not pid:
            raise Reject("Patient without id")
        birth = None
        if res.get("birthDate"):
            try:
                birth = parse_fhir_date(res["birthDate"])
            except ValueError:
                raise Reject(f"impossible date in birthDate: {res['birthDate']!r}") from None
        else:
            self.sink.warn(rtype, file, locator, "no birth date: age unknown")
        deceased = None
        if res.get("deceasedDateTime"):
            try:
                deceased = parse_fhir_date(res["deceasedDateTime"])
            except ValueError:
                raise Reject(
                    f"impossible date in deceasedDateTime: {res['deceasedDateTime']!r}"
                ) from None
        gender = res.get("gender")
        sex = gender if gender in ("male", "female", "other") else "unknown"
        self.patients.add(
            {
                "patient_id": pid,
                "birth_date": birth,
                "sex": sex,
                "deceased_date": deceased,
                "source": source,
            }
        )
        if self.patients.n >= self.batch_rows:
            self.sink.patients(self.patients.table(), "Patient")

    def _subject(self, res: dict[str, Any]) -> str:
        pid = _ref_id(res.get("subject")) or _ref_id(res.get("patient"))
        if not pid:
            raise Reject("missing subject (patient reference)")
        return pid

    def _observation(self, res: dict[str, Any], source: str) -> list[dict[str, Any]]:
        if _status(res) == "entered-in-error":
            raise Reject("status entered-in-error")
        pid = self._subject(res)
        if res.get("effectiveDateTime"):
            start, end = _time(res["effectiveDateTime"], "effectiveDateTime"), None
        elif res.get("effectivePeriod"):
            start, end = _period(res["effectivePeriod"], "effectivePeriod")
        elif res.get("effectiveInstant"):
            start, end = _time(res["effectiveInstant"], "effectiveInstant"), None
        else:
            start, end = None, None
        if start is None:
            raise Reject("missing time (effective[x])")
        category = obs_category(res.get("category"))
        base = {"patient_id": pid, "start_time": start, "end_time": end, "source": source,
                "status": _status(res)}  # fmt: skip
        ranges = res.get("referenceRange") or []
        components = res.get("component") or []
        has_value = any(k in res for k in _VALUE_KEYS)
        rows = []
        if has_value or not components:
            rows.append(self._obs_row(res, base, category, ranges))
        bp_panel = bool(components) and _is_bp_panel(res.get("code"))
        for comp in components:
            if any(k in comp for k in _VALUE_KEYS):
                comp_ranges = comp.get("referenceRange") or []
                rows.append(self._obs_row(comp, base, category, comp_ranges, bp_panel=bp_panel))
        if not rows:  # components, none with a value: the Observation itself, without value
            rows.append(self._obs_row(res, base, category, ranges))
        return rows

    def _obs_row(
        self,
        el: dict[str, Any],
        base: dict[str, Any],
        category: str | None,
        ranges: list[dict[str, Any]],
        *,
        bp_panel: bool = False,
    ) -> dict[str, Any]:
        system, code, display, analyte, kind = obs_concept(category, el.get("code"))
        row = dict(base, code_system=system, code=code, display=display, analyte=analyte)
        row["kind"] = kind
        q = el.get("valueQuantity")
        if q is not None:
            v = q.get("value")
            unit = qty_unit(q)
            row["orig_value"] = None if v is None else str(v)
            row["orig_unit"] = unit
            if v is None:
                raise Reject("valueQuantity without value")
            if q.get("comparator") is not None:
                # "<0.3", ">90": a bound. The value is the bound (rules read it so, see
                # docs/STORE.md "Bounds"); value_text and orig_value keep the comparator
                row["orig_value"] = row["value_text"] = f"{q['comparator']}{v}"
            value = float(v)
            if analyte:
                if unit is None and bp_panel and system == LOINC and code in BP_COMPONENTS:
                    # LOINC 8480-6 / 8462-4 are pressures with unit mm[Hg] by definition
                    unit = "mm[Hg]"
                    self._warnings.append(BP_UNIT_ASSUMED)
                row["value"] = _convert(analyte, value, unit)
                row["unit"] = canonical_unit(analyte)
            else:
                row["value"], row["unit"] = value, unit
            row["ref_low"], row["ref_high"] = ref_range(analyte, ranges, unit)
        elif "valueCodeableConcept" in el:
            row["value_text"] = _concept_text(el["valueCodeableConcept"])
        elif "valueString" in el:
            row["value_text"] = str(el["valueString"])
        elif "valueBoolean" in el:
            row["value_text"] = "true" if el["valueBoolean"] else "false"
        elif "valueInteger" in el:
            row["value"] = float(el["valueInteger"])
            row["orig_value"] = str(el["valueInteger"])
        return row

    def _condition(self, res: dict[str, Any], source: str) -> list[dict[str, Any]]:
        ver = _concept_code(res.get("verificationStatus"))
        if ver in ("entered-in-error", "refuted"):
            raise Reject(f"verificationStatus {ver}")
        pid = self._subject(res)
        start, end = None, None
        if res.get("onsetDateTime"):
            start = _time(res["onsetDateTime"], "onsetDateTime")
        elif res.get("onsetPeriod"):
            start, _ = _period(res["onsetPeriod"], "onsetPeriod")
        if start is None and res.get("recordedDate"):
            start = _time(res["recordedDate"], "recordedDate")
        if start is None:
            raise Reject("missing time (onset[x] and recordedDate)")
        if res.get("abatementDateTime"):
            end = _time(res["abatementDateTime"], "abatementDateTime")
        elif res.get("abatementPeriod"):
            _, end = _period(res["abatementPeriod"], "abatementPeriod")
        system, code, display = _pick_coding(res.get("code"), _COND_PREF)
        if code is None:
            raise Reject("Condition without code")
        return [
            {"patient_id": pid, "kind": "condition", "code_system": system, "code": code,
             "display": display, "start_time": start, "end_time": end, "source": source,
             "status": _concept_code(res.get("clinicalStatus"))}
        ]  # fmt: skip

    def _procedure(self, res: dict[str, Any], source: str) -> list[dict[str, Any]]:
        if _status(res) == "entered-in-error":
            raise Reject("status entered-in-error")
        pid = self._subject(res)
        if res.get("performedDateTime"):
            start, end = _time(res["performedDateTime"], "performedDateTime"), None
        else:
            start, end = _period(res.get("performedPeriod"), "performedPeriod")
        if start is None:
            raise Reject("missing time (performed[x])")
        system, code, display = _pick_coding(res.get("code"), (SNOMED,))
        if code is None:
            raise Reject("Procedure without code")
        return [
            {"patient_id": pid, "kind": "procedure", "code_system": system, "code": code,
             "display": display, "start_time": start, "end_time": end, "source": source,
             "status": _status(res)}
        ]  # fmt: skip

    def _med_row(
        self,
        res: dict[str, Any],
        source: str,
        start: dt.datetime | None,
        end: dt.datetime | None,
        dosage: dict[str, Any] | None,
    ) -> list[dict[str, Any]]:
        if _status(res) == "entered-in-error":
            raise Reject("status entered-in-error")
        pid = self._subject(res)
        if start is None:
            raise Reject("missing time")
        system, code, display = _pick_coding(res.get("medicationCodeableConcept"), _MED_PREF)
        if code is None and res.get("medicationReference"):
            ref = res["medicationReference"]
            code, display = ref.get("reference"), ref.get("display")
            system = "http://hl7.org/fhir/StructureDefinition/Medication"
        if code is None:
            raise Reject("medication without code")
        dose_value, dose_unit, route = None, None, None
        if dosage:
            dose = dosage.get("dose")
            if dose is None:
                dar = dosage.get("doseAndRate") or []
                dose = dar[0].get("doseQuantity") if dar else None
            if dose and dose.get("value") is not None:
                dose_value, dose_unit = float(dose["value"]), qty_unit(dose)
            route = _concept_text(dosage.get("route"))
        return [
            {"patient_id": pid, "kind": "medication", "code_system": system, "code": code,
             "display": display, "start_time": start, "end_time": end, "source": source,
             "status": _status(res), "dose_value": dose_value, "dose_unit": dose_unit,
             "route": route}
        ]  # fmt: skip

    def _medication_request(self, res: dict[str, Any], source: str) -> list[dict[str, Any]]:
        di = (res.get("dosageInstruction") or [None])[0]
        bounds = ((di or {}).get("timing") or {}).get("repeat", {}).get("boundsPeriod")
        b_start, b_end = _period(bounds, "boundsPeriod")
        start = _time(res["authoredOn"], "authoredOn") if res.get("authoredOn") else b_start
        end = b_end
        disp = res.get("dispenseRequest") or {}
        if end is None and disp.get("validityPeriod"):
            _, end = _period(disp["validityPeriod"], "validityPeriod")
        if end is None and start is not None and disp.get("expectedSupplyDuration"):
            end = start + _duration(disp["expectedSupplyDuration"])
        return self._med_row(res, source, start, end, di)

    def _medication_statement(self, res: dict[str, Any], source: str) -> list[dict[str, Any]]:
        start, end = _effective(res)
        if start is None and res.get("dateAsserted"):
            start = _time(res["dateAsserted"], "dateAsserted")
        return self._med_row(res, source, start, end, (res.get("dosage") or [None])[0])

    def _medication_administration(self, res: dict[str, Any], source: str) -> list[dict[str, Any]]:
        start, end = _effective(res)
        return self._med_row(res, source, start, end, res.get("dosage"))

    def _encounter(self, res: dict[str, Any], source: str) -> list[dict[str, Any]]:
        if _status(res) == "entered-in-error":
            raise Reject("status entered-in-error")
        pid = self._subject(res)
        start, end = _period(res.get("period"), "period")
        if start is None:
            raise Reject("missing time (period.start)")
        cls = res.get("class") or {}
        types = res.get("type") or []
        if cls.get("code"):
            system, code = canonical_system(cls.get("system") or ""), cls["code"]
            display = _concept_text(types[0]) if types else cls.get("display")
        else:
            system, code, display = _pick_coding(types[0] if types else None, (SNOMED,))
        return [
            {"patient_id": pid, "kind": "encounter", "code_system": system or None,
             "code": code, "display": display, "start_time": start, "end_time": end,
             "source": source, "status": _status(res)}
        ]  # fmt: skip


def _status(res: dict[str, Any]) -> str | None:
    """The resource's ``status`` code (FHIR R4: a code, i.e. a string); anything else rejects
    the record rather than stopping the run."""
    status = res.get("status")
    if status is not None and not isinstance(status, str):
        raise Reject(f"status is not a code string: {type(status).__name__}")
    return status


def _concept_code(cc: dict[str, Any] | None) -> str | None:
    for c in (cc or {}).get("coding") or []:
        if c.get("code"):
            return str(c["code"])
    return None


def _effective(res: dict[str, Any]) -> tuple[dt.datetime | None, dt.datetime | None]:
    if res.get("effectiveDateTime"):
        return _time(res["effectiveDateTime"], "effectiveDateTime"), None
    return _period(res.get("effectivePeriod"), "effectivePeriod")


_DURATION_UNITS = {"d": 1.0, "day": 1.0, "days": 1.0, "wk": 7.0, "week": 7.0, "mo": 30.0,
                   "month": 30.0, "a": 365.25, "h": 1 / 24}  # fmt: skip


def _duration(q: dict[str, Any]) -> dt.timedelta:
    unit = (q.get("code") or q.get("unit") or "d").lower()
    if unit not in _DURATION_UNITS:
        raise Reject(f"unknown duration unit {unit!r} in expectedSupplyDuration")
    return dt.timedelta(days=float(q["value"]) * _DURATION_UNITS[unit])


# ----------------------------------------------------------------------------------------------
def _open(path: Path) -> Any:
    return gzip.open(path, "rb") if path.name.endswith(".gz") else path.open("rb")


def _type_from_name(path: Path) -> str:
    return path.name.split(".", 1)[0]


def _ndjson_files(source: Path) -> list[Path]:
    files = [p for p in source.iterdir() if p.name.endswith((".ndjson", ".ndjson.gz"))]
    # Patients first so that other files can be checked against them early
    return sorted(files, key=lambda p: (_type_from_name(p) != "Patient", p.name))


def _bundle_files(source: Path) -> list[Path]:
    return sorted(p for p in source.rglob("*") if p.name.endswith((".json", ".json.gz")))


def iter_ndjson(path: Path) -> Iterator[tuple[int, Any | None, str | None]]:
    """(line number, parsed object or None, error) for each non-blank line."""
    with _open(path) as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield i, orjson.loads(line), None
            except orjson.JSONDecodeError as e:
                yield i, None, f"malformed JSON: {e}"


def read(
    source: Path | str,
    sink: IngestSink,
    *,
    strict: bool | None = None,
    fast_path: bool = True,
) -> None:
    """Read a Bulk NDJSON folder, a folder of Bundles, or one file, into ``sink``.

    ``fast_path=False`` reads Observation NDJSON record by record too (same result, slower).
    """
    source = Path(source)
    if strict is None:
        strict = bool(getattr(sink, "strict", False))
    reader = FhirReader(sink, strict=strict)
    if source.is_dir():
        ndjson = _ndjson_files(source)
        bundles = [] if ndjson else _bundle_files(source)
        if not ndjson and not bundles:
            raise IngestError(f"{source}: no .ndjson[.gz] or .json[.gz] files")
    elif source.name.endswith((".ndjson", ".ndjson.gz")):
        ndjson, bundles = [source], []
    elif source.name.endswith((".json", ".json.gz")):
        ndjson, bundles = [], [source]
    else:
        raise IngestError(f"{source}: not a FHIR NDJSON/Bundle file or folder")
    for path in tqdm(ndjson, desc="FHIR NDJSON", unit="file", disable=None, leave=False):
        fallback = _type_from_name(path)
        if fallback == "Observation" and not strict and fast_path:
            from trialsieve.ingest.fhir_fast import read_observations

            if read_observations(path, reader, sink):
                continue
        lineno = 0
        try:
            for lineno, obj, err in iter_ndjson(path):
                if err is not None:
                    sink.count_read(fallback)
                    sink.reject(fallback, path.name, f"line {lineno}", err)
                else:
                    reader.resource(obj, path.name, f"line {lineno}", fallback)
        except (OSError, EOFError) as e:  # truncated / corrupt gzip: the rest is unreadable
            sink.count_read(fallback)
            sink.reject(fallback, path.name, f"after line {lineno}", f"unreadable file: {e}")
    for path in tqdm(bundles, desc="FHIR Bundles", unit="bundle", disable=None, leave=False):
        _read_bundle(path, reader, sink)
    reader.flush()


def _read_bundle(path: Path, reader: FhirReader, sink: IngestSink) -> None:
    try:
        with _open(path) as f:
            doc = orjson.loads(f.read())
    except (orjson.JSONDecodeError, OSError, EOFError) as e:
        sink.count_read("Bundle")
        sink.reject("Bundle", path.name, "file", f"malformed JSON: {e}")
        return
    if not isinstance(doc, dict) or doc.get("resourceType") != "Bundle":
        if isinstance(doc, dict) and doc.get("resourceType"):
            reader.resource(doc, path.name, "file", str(doc["resourceType"]))
            return
        sink.count_read("Bundle")
        sink.reject("Bundle", path.name, "file", "not a FHIR Bundle or resource")
        return
    for i, entry in enumerate(doc.get("entry") or []):
        res = entry.get("resource") if isinstance(entry, dict) else None
        if res is None:
            sink.count_read("Bundle.entry")
            sink.reject("Bundle.entry", path.name, f"entry {i}", "entry without resource")
            continue
        reader.resource(res, path.name, f"entry {i}", "Bundle.entry")
