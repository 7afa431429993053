"""MIMIC-III (v1.4) and MIMIC-IV (v2.x) readers: CSV tables (``.csv`` / ``.csv.gz``) in a folder.

Table files are found case-insensitively in the folder and, for MIMIC-IV, in ``hosp/`` and
``icu/``; a file ``<TABLE>_<anything>.csv[.gz]`` is used when ``<TABLE>.csv`` is absent (e.g. the
demo's ``LABEVENTS_trimmed_from_gehealthcare.csv``, ``patients_pyhealth.csv.gz``). Columns are
matched case-insensitively (MIMIC-III headers are upper case, MIMIC-IV lower case). Schemas:
MIMIC-III https://mimic.mit.edu/docs/iii/tables/, MIMIC-IV https://mimic.mit.edu/docs/iv/.

Mapping (also docs/STORE.md "MIMIC mapping"); ``source`` = ``<file name>:<line>``:

- PATIENTS -> patients. MIMIC-III: DOB (patients older than 89 have DOB shifted ~300 years
  back by MIMIC: kept as is, with a warning). MIMIC-IV has no DOB: birth_date =
  1 January of (anchor_year - anchor_age); ages derived from it may be up to one year too high,
  anchor_age 91 means "over 89" (warning). DOD -> deceased_date.
- ADMISSIONS -> encounter (admittime..dischtime); also the HADM_ID -> patient / admittime lookup.
- LABEVENTS -> lab; patient = SUBJECT_ID, else the admission's (the demo LABEVENTS has only
  HADM_ID: rows without HADM_ID cannot be attributed and are rejected); code = ITEMID
  (``https://mimic.mit.edu/mimic{3,4}/itemid``); analyte via ``trialsieve.codes`` (creatinine
  50912 mg/dL -> umol/L); value = VALUENUM, else VALUE when numeric, else VALUE -> value_text.
  MIMIC-IV ref_range_lower/upper -> ref_low/ref_high.
- OUTPUTEVENTS -> output. MIMIC charts the urine volume collected *since the previous charting*;
  urine items (analyte urine_volume) are therefore stored as periods: start_time = the previous
  urine charttime of the same ICU stay (all urine items together, as mimic-code's
  ``urine_output_rate``/``kdigo_uo`` do), for the stay's first charting the ICU INTIME (ICUSTAYS),
  end_time = CHARTTIME. Without an earlier charting or INTIME, start = end = CHARTTIME (a
  volume without a known period). ISERROR = 1 rows are rejected. Other output items are stored
  at CHARTTIME with analyte NULL. GU irrigant: as mimic-code's ``urine_output``, the
  irrigant volume in (227488) of a charting is taken off the urine charted with it (the
  irrigant/urine out 227489 first); a charting whose irrigant in exceeds its urine is rejected
  (net volume unknown); the 227488 row itself is stored as an output item.
- CHARTEVENTS -> vital: only weight and blood-pressure items (``trialsieve.codes``) are read
  (other items are filtered at the source and not counted); ERROR = 1 rows are rejected; unit =
  VALUEUOM, else the item's unit (3581/226531 lb, 3582 oz, other weights kg, BP mmHg).
- INPUTEVENTS(_MV/_CV) -> medication (itemid, start..end, dose = AMOUNT/AMOUNTUOM,
  status = STATUSDESCRIPTION); rows with STATUSDESCRIPTION "Rewritten" (superseded orders) are
  rejected. PATIENTWEIGHT (kg) gives one weight vital (LOINC 29463-7) per ICU stay and weight
  value, at the earliest STARTTIME it appears.
- DIAGNOSES_ICD -> condition; PROCEDURES_ICD -> procedure. Codes get their dot (5849 -> 584.9,
  V707 -> V70.7, E8790 -> E879.0, N179 -> N17.9, 3995 -> 39.95; ICD-10-PCS has none); MIMIC-III
  codes are ICD-9, MIMIC-IV uses icd_version. Diagnoses have no time in MIMIC: start_time = the
  admission's ADMITTIME (also MIMIC-III procedures; MIMIC-IV procedures use chartdate).
- PRESCRIPTIONS -> medication: start..end (STARTDATE/ENDDATE, MIMIC-IV starttime/stoptime), code
  = NDC (``http://hl7.org/fhir/sid/ndc``) when present and not 0, else the drug name
  (``https://mimic.mit.edu/mimic{3,4}/drug``); dose DOSE_VAL_RX/DOSE_UNIT_RX; route normalised
  (IV -> intravenous, PO -> oral...).

Rejects: unknown admission / patient, missing or impossible times, end before start, unknown
units and implausible values of known analytes, missing ICD codes, error-flagged rows.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from trialsieve.codes import (
    ICD9CM,
    ICD9PROC,
    ICD10CM,
    ICD10PCS,
    LOINC,
    MIMIC3_ITEM,
    MIMIC4_ITEM,
    NDC,
    analyte_for_code,
    code_table,
)
from trialsieve.ingest.sink import IngestError, IngestSink
from trialsieve.ingest.tabular import (
    VITAL_ANALYTES,
    Reject,
    RowBuffer,
    convert,
    convert_ref,
    parse_float,
    parse_time,
    text,
)

#: default unit of chart items whose VALUEUOM is empty (MIMIC-III D_ITEMS labels)
ITEM_UNITS: dict[str, str] = {"3581": "lb", "226531": "lb", "3582": "oz"}
_ROUTES = {
    "iv": "intravenous", "iv drip": "intravenous", "iv bolus": "intravenous",
    "ivpb": "intravenous", "ivs": "intravenous", "ivpca": "intravenous",
    "po": "oral", "oral": "oral", "po/ng": "oral", "sl": "sublingual",
    "sc": "subcutaneous", "subcut": "subcutaneous", "im": "intramuscular",
    "ng": "nasogastric", "og": "orogastric", "pr": "rectal", "ih": "inhalation",
    "neb": "inhalation", "td": "transdermal", "tp": "topical",
}  # fmt: skip
_TABLES = (
    "patients", "admissions", "icustays", "labevents", "outputevents", "chartevents",
    "inputevents_mv", "inputevents_cv", "inputevents", "diagnoses_icd", "procedures_icd",
    "prescriptions", "d_labitems", "d_items", "d_icd_diagnoses", "d_icd_procedures",
)  # fmt: skip


def icd_with_dot(code: str, version: int, *, procedure: bool = False) -> str:
    """MIMIC stores ICD codes without the dot; put it back (CMS ICD-9-CM / ICD-10-CM layout).

    ICD-9-CM diagnoses: 3 digits before the dot, V codes 3 characters, E codes 4 (``5849`` ->
    ``584.9``, ``V707`` -> ``V70.7``, ``E8790`` -> ``E879.0``); ICD-10-CM: 3 characters
    (``N179`` -> ``N17.9``); ICD-9-CM procedures (volume 3): 2 digits (``3995`` -> ``39.95``);
    ICD-10-PCS codes have no dot.
    """
    c = code.strip().upper()
    if "." in c:
        return c
    if procedure:
        cut = 2 if version == 9 else 0
    elif version == 9 and c.startswith("E"):
        cut = 4
    else:
        cut = 3
    return f"{c[:cut]}.{c[cut:]}" if cut and len(c) > cut else c


def normalize_route(route: str | None) -> str | None:
    """MIMIC route abbreviations -> plain words (``IV`` -> ``intravenous``); others lower case."""
    r = text(route)
    return None if r is None else _ROUTES.get(r.lower(), r.lower())


# ----------------------------------------------------------------------------------------------
@dataclass
class _Table:
    """One CSV table: name, path, and a row iterator with lower-case column names."""

    key: str
    path: Path

    @property
    def fname(self) -> str:
        return self.path.name

    def rows(
        self, keep: tuple[str, set[str]] | None = None
    ) -> Iterator[tuple[int, dict[str, str]]]:
        """(line number, row with lower-case keys) for each data row.

        ``keep = (column, values)`` skips other rows before building their dict (CHARTEVENTS has
        hundreds of millions of rows, of which only the weight/BP items are read).
        """
        raw = gzip.open(self.path, "rb") if self.path.name.lower().endswith(".gz") else None
        f = (
            io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
            if raw is not None
            else self.path.open(encoding="utf-8-sig", newline="")
        )
        with f:
            reader = csv.reader(f)
            header = [h.strip().lower() for h in next(reader, [])]
            n = len(header)
            col = header.index(keep[0]) if keep and keep[0] in header else None
            for rec in tqdm(reader, desc=self.fname, unit="row", disable=None, leave=False):
                if (
                    keep
                    and col is not None
                    and (col >= len(rec) or rec[col].strip() not in keep[1])
                ):
                    continue
                if len(rec) < n:
                    rec = rec + [""] * (n - len(rec))
                yield reader.line_num, dict(zip(header, rec, strict=False))


def _find_tables(folder: Path) -> dict[str, _Table]:
    files: list[Path] = []
    for d in (folder, folder / "hosp", folder / "icu"):
        if d.is_dir():
            files += sorted(p for p in d.iterdir() if p.is_file())
    by_stem: dict[str, Path] = {}
    for p in files:
        low = p.name.lower()
        for ext in (".csv.gz", ".csv"):
            if low.endswith(ext):
                by_stem.setdefault(low[: -len(ext)], p)
                break
    found: dict[str, _Table] = {}
    used: set[str] = set()
    for key in sorted(_TABLES, key=len, reverse=True):  # inputevents_mv before inputevents
        candidates = (
            [key]
            if key in by_stem
            else sorted(s for s in by_stem if s.startswith(key + "_") and s not in used)
        )
        candidates = [c for c in candidates if c not in used]
        if candidates:
            used.add(candidates[0])
            found[key] = _Table(key, by_stem[candidates[0]])
    return found


@dataclass
class _Ctx:
    """What one MIMIC run knows: version, lookups, the sink."""

    version: int
    sink: IngestSink
    tables: dict[str, _Table]
    admissions: dict[str, tuple[str, dt.datetime | None]] = field(default_factory=dict)
    intime: dict[str, dt.datetime] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    icd_titles: dict[tuple[str, str, bool], str] = field(default_factory=dict)

    @property
    def item_system(self) -> str:
        return MIMIC3_ITEM if self.version == 3 else MIMIC4_ITEM

    def rt(self, key: str) -> str:
        """Record type name: the table name as MIMIC spells it (upper case in MIMIC-III)."""
        return key.upper() if self.version == 3 else key


def read_mimic3(source: Path | str, sink: IngestSink) -> None:
    """Read a MIMIC-III CSV folder (e.g. ../shared/data/mimic3_demo) into ``sink``."""
    _read(Path(source), sink, 3)


def read_mimic4(source: Path | str, sink: IngestSink) -> None:
    """Read a MIMIC-IV CSV folder (``hosp/`` and ``icu/`` or flat) into ``sink``."""
    _read(Path(source), sink, 4)


def _read(folder: Path, sink: IngestSink, version: int) -> None:
    if not folder.is_dir():
        raise IngestError(f"{folder}: MIMIC source must be a folder of CSV tables")
    tables = _find_tables(folder)
    for need in ("patients", "admissions"):
        if need not in tables:
            name = "MIMIC-III" if version == 3 else "MIMIC-IV"
            raise IngestError(f"{folder}: no {need.upper()} table ({name})")
    ctx = _Ctx(version, sink, tables)
    _load_dictionaries(ctx)
    _load_admission_lookup(ctx)
    _read_patients(ctx)
    _read_admissions(ctx)
    if "labevents" in tables:
        _read_labevents(ctx)
    if "outputevents" in tables:
        _read_outputevents(ctx)
    if "chartevents" in tables:
        _read_chartevents(ctx)
    for key in ("inputevents_mv", "inputevents_cv", "inputevents"):
        if key in tables:
            _read_inputevents(ctx, key)
    for key in ("diagnoses_icd", "procedures_icd"):
        if key in tables:
            _read_icd(ctx, key)
    if "prescriptions" in tables:
        _read_prescriptions(ctx)


def _load_dictionaries(ctx: _Ctx) -> None:
    for key in ("d_labitems", "d_items"):
        if key in ctx.tables:
            for _, r in ctx.tables[key].rows():
                if text(r.get("itemid")) and text(r.get("label")):
                    ctx.labels.setdefault(r["itemid"].strip(), r["label"].strip())
    for key, proc in (("d_icd_diagnoses", False), ("d_icd_procedures", True)):
        if key in ctx.tables:
            for _, r in ctx.tables[key].rows():
                code = text(r.get("icd9_code")) or text(r.get("icd_code"))
                version = text(r.get("icd_version")) or "9"
                if code:
                    ctx.icd_titles[(code, version, proc)] = (
                        text(r.get("long_title")) or text(r.get("short_title")) or ""
                    )
    if "icustays" in ctx.tables:
        for _, r in ctx.tables["icustays"].rows():
            stay = text(r.get("icustay_id")) or text(r.get("stay_id"))
            try:
                t = parse_time(r.get("intime"), "intime")
            except Reject:
                t = None
            if stay and t:
                ctx.intime[stay] = t


def _load_admission_lookup(ctx: _Ctx) -> None:
    for _, r in ctx.tables["admissions"].rows():
        hadm, subj = text(r.get("hadm_id")), text(r.get("subject_id"))
        if hadm and subj:
            try:
                t = parse_time(r.get("admittime"), "admittime")
            except Reject:
                t = None
            ctx.admissions[hadm] = (subj, t)


def _read_patients(ctx: _Ctx) -> None:
    table, rt = ctx.tables["patients"], ctx.rt("patients")
    rows = RowBuffer(ctx.sink, rt, patients=True)
    first_admit: dict[str, dt.datetime] = {}
    for subj, t in ctx.admissions.values():
        if t and (subj not in first_admit or t < first_admit[subj]):
            first_admit[subj] = t
    for line, r in table.rows():
        ctx.sink.count_read(rt)
        loc = f"line {line}"
        try:
            pid = text(r.get("subject_id"))
            if pid is None:
                raise Reject("missing SUBJECT_ID")
            dod = parse_time(r.get("dod"), "DOD")
            warn = None
            if ctx.version == 3:
                dob = parse_time(r.get("dob"), "DOB")
                birth = dob.date() if dob else None
                if birth is None:
                    warn = "no DOB: age unknown"
                elif pid in first_admit and (first_admit[pid].year - birth.year) > 120:
                    warn = "age over 89 (DOB shifted by MIMIC de-identification)"
            else:
                age, year = parse_float(r.get("anchor_age")), parse_float(r.get("anchor_year"))
                birth = dt.date(int(year - age), 1, 1) if age is not None and year else None
                if birth is None:
                    warn = "no anchor_age/anchor_year: age unknown"
                elif age is not None and age >= 89:
                    warn = "anchor_age over 89 (grouped by MIMIC-IV de-identification)"
        except (Reject, ValueError) as e:
            ctx.sink.reject(rt, table.fname, loc, str(e))
            continue
        if warn:
            ctx.sink.warn(rt, table.fname, loc, warn)
        g = (text(r.get("gender")) or "").upper()
        rows.add({"patient_id": pid, "birth_date": birth,
                  "sex": {"M": "male", "F": "female"}.get(g, "unknown"),
                  "deceased_date": dod.date() if dod else None,
                  "source": f"{table.fname}:{line}"})  # fmt: skip
    rows.flush()


def _emit(table: _Table, rows: RowBuffer, line: int, ev: dict[str, Any]) -> None:
    ev.setdefault("source", f"{table.fname}:{line}")
    rows.add(ev)


def _read_admissions(ctx: _Ctx) -> None:
    table, rt = ctx.tables["admissions"], ctx.rt("admissions")
    rows = RowBuffer(ctx.sink, rt)
    for line, r in table.rows():
        ctx.sink.count_read(rt)
        try:
            pid = text(r.get("subject_id"))
            if pid is None:
                raise Reject("missing SUBJECT_ID")
            start = parse_time(r.get("admittime"), "ADMITTIME")
            if start is None:
                raise Reject("missing time (ADMITTIME)")
            end = parse_time(r.get("dischtime"), "DISCHTIME")
            _check_order(start, end)
            atype = text(r.get("admission_type")) or "UNKNOWN"
            _emit(table, rows, line, {
                "patient_id": pid, "kind": "encounter",
                "code_system": f"https://mimic.mit.edu/mimic{ctx.version}/admission_type",
                "code": atype, "display": f"Hospital admission {text(r.get('hadm_id'))} ({atype})",
                "start_time": start, "end_time": end,
            })  # fmt: skip
        except Reject as e:
            ctx.sink.reject(rt, table.fname, f"line {line}", str(e))
    rows.flush()


def _check_order(start: dt.datetime, end: dt.datetime | None) -> None:
    if end is not None and end < start:
        raise Reject(f"end before start ({end:%Y-%m-%d %H:%M} < {start:%Y-%m-%d %H:%M})")


def _patient(ctx: _Ctx, r: dict[str, str]) -> str:
    """SUBJECT_ID, else the subject of HADM_ID (the demo LABEVENTS has only HADM_ID)."""
    pid = text(r.get("subject_id"))
    if pid:
        return pid
    hadm = text(r.get("hadm_id"))
    if hadm is None:
        raise Reject("no SUBJECT_ID and no HADM_ID: patient cannot be attributed")
    if hadm not in ctx.admissions:
        raise Reject(f"HADM_ID {hadm} not in ADMISSIONS: patient cannot be attributed")
    return ctx.admissions[hadm][0]


def _charted_item(r: dict[str, Any]) -> tuple[str, dt.datetime]:
    """(ITEMID, CHARTTIME) of a charted row; Reject when either is missing."""
    itemid = text(r.get("itemid"))
    if itemid is None:
        raise Reject("missing ITEMID")
    t = parse_time(r.get("charttime"), "CHARTTIME")
    if t is None:
        raise Reject("missing time (CHARTTIME)")
    return itemid, t


def _number(r: dict[str, str]) -> float | None:
    """A charted row's number: VALUENUM, else VALUE when it is numeric."""
    num = parse_float(r.get("valuenum"))
    return parse_float(r.get("value")) if num is None else num


def _measure(
    ctx: _Ctx, r: dict[str, str], itemid: str, unit_default: str | None = None
) -> dict[str, Any]:
    """analyte, value (canonical), unit, value_text, orig_* of a lab/chart/output row."""
    analyte = analyte_for_code(ctx.item_system, itemid)
    raw = text(r.get("value"))
    num = _number(r)
    unit = text(r.get("valueuom")) or unit_default
    if raw is None and num is None:
        raise Reject("missing value")
    ev: dict[str, Any] = {
        "analyte": analyte, "orig_value": raw, "orig_unit": text(r.get("valueuom"))
    }  # fmt: skip
    if num is None:
        ev["value_text"] = raw
        return ev
    if analyte:
        ev["value"], ev["unit"] = convert(analyte, num, unit)
        ev["ref_low"] = convert_ref(analyte, parse_float(r.get("ref_range_lower")), unit)
        ev["ref_high"] = convert_ref(analyte, parse_float(r.get("ref_range_upper")), unit)
    else:
        ev["value"], ev["unit"] = num, unit
        ev["ref_low"] = parse_float(r.get("ref_range_lower"))
        ev["ref_high"] = parse_float(r.get("ref_range_upper"))
    return ev


def _read_labevents(ctx: _Ctx) -> None:
    table, rt = ctx.tables["labevents"], ctx.rt("labevents")
    rows = RowBuffer(ctx.sink, rt)
    for line, r in table.rows():
        ctx.sink.count_read(rt)
        try:
            pid = _patient(ctx, r)
            itemid, t = _charted_item(r)
            ev = _measure(ctx, r, itemid)
            ev.update(patient_id=pid, kind="lab", code_system=ctx.item_system, code=itemid,
                      display=ctx.labels.get(itemid), start_time=t)  # fmt: skip
            _emit(table, rows, line, ev)
        except Reject as e:
            ctx.sink.reject(rt, table.fname, f"line {line}", str(e))
    rows.flush()


def _stay_key(r: dict[str, str]) -> str:
    return (
        "icu:" + (text(r.get("icustay_id")) or text(r.get("stay_id")) or "")
        if text(r.get("icustay_id")) or text(r.get("stay_id"))
        else "hadm:" + (text(r.get("hadm_id")) or "") + "|" + (text(r.get("subject_id")) or "")
    )


#: GU irrigant (MetaVision items, MIMIC-III and -IV): the irrigant volume in, charted in
#: OUTPUTEVENTS, and the irrigant/urine volume out, which holds the irrigant as well as the urine
GU_IRRIGANT_IN, GU_IRRIGANT_OUT = "227488", "227489"


@dataclass
class _Netting:
    """GU irrigant netting of one OUTPUTEVENTS table, by file line."""

    net: dict[int, float] = field(default_factory=dict)  # urine row -> volume net of irrigant
    reject: dict[int, str] = field(default_factory=dict)  # urine row -> why its volume is unknown
    unmatched: set[int] = field(default_factory=set)  # irrigant rows without urine at their time


def _volume_ml(r: dict[str, str]) -> float | None:
    """The row's volume in mL (unit table of urine_volume); None when absent, odd or implausible."""
    num = _number(r)
    if num is None:
        return None
    try:
        return convert("urine_volume", num, text(r.get("valueuom")))[0]
    except Reject:
        return None


def _charting(r: dict[str, str]) -> tuple[str, dt.datetime] | None:
    """(stay, CHARTTIME) of an OUTPUTEVENTS row not charted in error; None when it has no time."""
    if text(r.get("iserror")) == "1":
        return None
    try:
        t = parse_time(r.get("charttime"), "CHARTTIME")
    except Reject:
        return None
    return None if t is None else (_stay_key(r), t)


def _gu_irrigant_netting(
    irrigant: dict[tuple[str, dt.datetime], tuple[float | None, list[int]]],
    urine_at: dict[tuple[str, dt.datetime], list[tuple[bool, int, float]]],
) -> _Netting:
    """Urine of a charting = its urine items - the GU irrigant in (227488, value > 0).

    As mimic-code ``concepts/fluid_balance/urine_output.sql`` (MIMIC-III and -IV) sums the urine
    items of a (stay, CHARTTIME) with 227488 negated. ``irrigant``: (stay, time) -> (irrigant in
    mL, None when a unit is unknown; its lines); ``urine_at``: (stay, time) -> (not 227489, line,
    mL) of the urine rows there. The irrigant in is taken off the charting's urine rows, the
    irrigant/urine out (227489) first, then the others in file order, so their total is
    mimic-code's sum. Where the irrigant in exceeds the urine charted with it (in and out bags
    charted apart) the net is negative: the charting's urine rows are rejected, their volume
    unknown, never clipped; their time still bounds the next charting's period. Irrigant in
    without urine charted at the same time is not netted (a warning on the irrigant row).
    """
    out = _Netting()
    for key, (volume_in, in_lines) in irrigant.items():
        rows = [(line, ml) for _, line, ml in sorted(urine_at.get(key, []))]
        if not rows:
            out.unmatched.update(in_lines)
            continue
        total = sum(ml for _, ml in rows)
        if volume_in is None:
            reason = (f"net urine volume unknown: the GU irrigant in charted at this time "
                      f"(item {GU_IRRIGANT_IN}) has an unknown unit")  # fmt: skip
        elif total < volume_in:
            reason = (
                "net urine volume unknown: GU irrigant in exceeds the urine charted with it "
                f"({volume_in:g} mL of item {GU_IRRIGANT_IN} > {total:g} mL)"
            )
        else:
            left = volume_in
            for line, ml in rows:
                taken = min(ml, left)
                out.net[line], left = ml - taken, left - taken
            continue
        out.reject.update((line, reason) for line, _ in rows)
    return out


def _read_outputevents(ctx: _Ctx) -> None:
    table, rt = ctx.tables["outputevents"], ctx.rt("outputevents")
    system = ctx.item_system
    # pass 1: the GU irrigant in of each charting (rows of that item only)
    irrigant: dict[tuple[str, dt.datetime], tuple[float | None, list[int]]] = {}
    for line, r in table.rows(keep=("itemid", {GU_IRRIGANT_IN})):
        key = _charting(r)
        num = _number(r)
        if key is None or num is None or num <= 0:
            continue
        ml = _volume_ml(r)
        total, lines = irrigant.get(key, (0.0, []))
        irrigant[key] = (None if total is None or ml is None else total + ml, [*lines, line])
    # pass 2: the distinct urine charttimes of each stay, to give each volume its period, and
    # the urine rows charted with irrigant in
    times: dict[str, set[dt.datetime]] = {}
    urine_at: dict[tuple[str, dt.datetime], list[tuple[bool, int, float]]] = {}
    for line, r in table.rows():
        itemid = text(r.get("itemid")) or ""
        if analyte_for_code(system, itemid) != "urine_volume":
            continue
        key = _charting(r)
        if key is None:
            continue
        times.setdefault(key[0], set()).add(key[1])
        ml = _volume_ml(r) if key in irrigant else None
        if ml is not None:  # a row without a usable volume is rejected on its own
            urine_at.setdefault(key, []).append((itemid != GU_IRRIGANT_OUT, line, ml))
    netting = _gu_irrigant_netting(irrigant, urine_at)
    previous: dict[tuple[str, dt.datetime], dt.datetime] = {}
    for stay, ts in times.items():
        ordered = sorted(ts)
        first = ctx.intime.get(stay[4:]) if stay.startswith("icu:") else None
        if first is not None and first < ordered[0]:
            previous[(stay, ordered[0])] = first
        for a, b in zip(ordered, ordered[1:], strict=False):
            previous[(stay, b)] = a
    del times, urine_at
    rows = RowBuffer(ctx.sink, rt)
    for line, r in table.rows():
        ctx.sink.count_read(rt)
        try:
            if text(r.get("iserror")) == "1":
                raise Reject("ISERROR = 1 (charted in error)")
            pid = _patient(ctx, r)
            itemid, t = _charted_item(r)
            ev = _measure(ctx, r, itemid)
            start = t
            if ev["analyte"] == "urine_volume":
                start = previous.get((_stay_key(r), t), t)
                if line in netting.reject:
                    raise Reject(netting.reject[line])
                ev["value"] = netting.net.get(line, ev.get("value"))
            ev.update(patient_id=pid, kind="output", code_system=system, code=itemid,
                      display=ctx.labels.get(itemid), start_time=start, end_time=t)  # fmt: skip
            _emit(table, rows, line, ev)
            if line in netting.unmatched:
                ctx.sink.warn(rt, table.fname, f"line {line}",
                              "GU irrigant in without a usable urine volume charted at the "
                              "same time: not netted out of the urine output")  # fmt: skip
        except Reject as e:
            ctx.sink.reject(rt, table.fname, f"line {line}", str(e))
    rows.flush()


def _read_chartevents(ctx: _Ctx) -> None:
    table, rt = ctx.tables["chartevents"], ctx.rt("chartevents")
    system = ctx.item_system
    wanted = {
        i
        for i in (*ITEM_UNITS, *_chart_items(ctx))
        if analyte_for_code(system, i) in VITAL_ANALYTES
    }
    rows = RowBuffer(ctx.sink, rt)
    for line, r in table.rows(keep=("itemid", wanted)):
        itemid = text(r.get("itemid")) or ""
        if itemid not in wanted:
            continue  # other chart items are not read (documented)
        ctx.sink.count_read(rt)
        try:
            if text(r.get("error")) == "1":
                raise Reject("ERROR = 1 (charted in error)")
            pid = _patient(ctx, r)
            t = parse_time(r.get("charttime"), "CHARTTIME")
            if t is None:
                raise Reject("missing time (CHARTTIME)")
            analyte = analyte_for_code(system, itemid)
            default = ITEM_UNITS.get(itemid, "kg" if analyte == "weight" else "mmHg")
            ev = _measure(ctx, r, itemid, default)
            if ev.get("value") is None:
                raise Reject(f"not a number: {ev.get('orig_value')!r}")
            ev.update(patient_id=pid, kind="vital", code_system=system, code=itemid,
                      display=ctx.labels.get(itemid), start_time=t)  # fmt: skip
            _emit(table, rows, line, ev)
        except Reject as e:
            ctx.sink.reject(rt, table.fname, f"line {line}", str(e))
    rows.flush()


def _chart_items(ctx: _Ctx) -> list[str]:
    return list(code_table(ctx.item_system))


def _read_inputevents(ctx: _Ctx, key: str) -> None:
    table, rt = ctx.tables[key], ctx.rt(key)
    rows = RowBuffer(ctx.sink, rt)
    weights: dict[tuple[str, str, float], tuple[dt.datetime, int, str]] = {}
    for line, r in table.rows():
        ctx.sink.count_read(rt)
        try:
            status = text(r.get("statusdescription"))
            if status and status.lower() == "rewritten":
                raise Reject("STATUSDESCRIPTION Rewritten (superseded order)")
            pid = _patient(ctx, r)
            itemid = text(r.get("itemid"))
            if itemid is None:
                raise Reject("missing ITEMID")
            start = parse_time(r.get("starttime"), "STARTTIME") or parse_time(
                r.get("charttime"), "CHARTTIME"
            )
            if start is None:
                raise Reject("missing time (STARTTIME)")
            end = parse_time(r.get("endtime"), "ENDTIME")
            _check_order(start, end)
            _emit(table, rows, line, {
                "patient_id": pid, "kind": "medication", "code_system": ctx.item_system,
                "code": itemid, "display": ctx.labels.get(itemid), "start_time": start,
                "end_time": end, "dose_value": parse_float(r.get("amount")),
                "dose_unit": text(r.get("amountuom")),
                "status": status.lower() if status else None,
            })  # fmt: skip
        except Reject as e:
            ctx.sink.reject(rt, table.fname, f"line {line}", str(e))
            continue
        w = parse_float(r.get("patientweight"))
        if w is None or w <= 0:
            continue
        k = (pid, _stay_key(r), w)
        if k not in weights or start < weights[k][0]:
            weights[k] = (start, line, text(r.get("patientweight")) or "")
    for (pid, _, w), (start, line, raw) in sorted(weights.items(), key=lambda kv: kv[1][1]):
        try:
            value, unit = convert("weight", w, "kg")
        except Reject as e:
            ctx.sink.warn(rt, table.fname, f"line {line}", f"PATIENTWEIGHT not stored: {e}")
            continue
        rows.add({"patient_id": pid, "kind": "vital", "analyte": "weight", "code_system": LOINC,
                  "code": "29463-7", "display": "Body weight (PATIENTWEIGHT)",
                  "start_time": start, "value": value, "unit": unit, "orig_value": raw,
                  "orig_unit": "kg", "source": f"{table.fname}:{line}"})  # fmt: skip
    rows.flush()


def _read_icd(ctx: _Ctx, key: str) -> None:
    table, rt = ctx.tables[key], ctx.rt(key)
    proc = key == "procedures_icd"
    rows = RowBuffer(ctx.sink, rt)
    for line, r in table.rows():
        ctx.sink.count_read(rt)
        try:
            raw = text(r.get("icd9_code")) or text(r.get("icd_code"))
            if raw is None:
                raise Reject("missing ICD code")
            version = int(parse_float(r.get("icd_version")) or 9)
            if version not in (9, 10):
                raise Reject(f"unknown icd_version {r.get('icd_version')!r}")
            pid = _patient(ctx, r)
            t = parse_time(r.get("chartdate"), "chartdate")
            if t is None:
                hadm = text(r.get("hadm_id"))
                t = ctx.admissions.get(hadm or "", ("", None))[1]
                if t is None:
                    raise Reject(f"no time: HADM_ID {hadm} has no ADMITTIME in ADMISSIONS")
            if proc:
                system = ICD9PROC if version == 9 else ICD10PCS
            else:
                system = ICD9CM if version == 9 else ICD10CM
            _emit(table, rows, line, {
                "patient_id": pid, "kind": "procedure" if proc else "condition",
                "code_system": system, "code": icd_with_dot(raw, version, procedure=proc),
                "display": ctx.icd_titles.get((raw, str(version), proc)), "start_time": t,
            })  # fmt: skip
        except Reject as e:
            ctx.sink.reject(rt, table.fname, f"line {line}", str(e))
    rows.flush()


def _read_prescriptions(ctx: _Ctx) -> None:
    table, rt = ctx.tables["prescriptions"], ctx.rt("prescriptions")
    rows = RowBuffer(ctx.sink, rt)
    drug_system = f"https://mimic.mit.edu/mimic{ctx.version}/drug"
    for line, r in table.rows():
        ctx.sink.count_read(rt)
        try:
            pid = _patient(ctx, r)
            start = parse_time(r.get("starttime"), "starttime") or parse_time(
                r.get("startdate"), "STARTDATE"
            )
            if start is None:
                raise Reject("missing time (STARTDATE)")
            end = parse_time(r.get("stoptime"), "stoptime") or parse_time(
                r.get("enddate"), "ENDDATE"
            )
            _check_order(start, end)
            drug = text(r.get("drug"))
            ndc = text(r.get("ndc"))
            if ndc and ndc.isdigit() and int(ndc) != 0:
                system, code = NDC, ndc
            elif drug:
                system, code = drug_system, drug.lower()
            else:
                raise Reject("no NDC and no drug name")
            dose_raw = text(r.get("dose_val_rx"))
            _emit(table, rows, line, {
                "patient_id": pid, "kind": "medication", "code_system": system, "code": code,
                "display": drug, "start_time": start, "end_time": end,
                "dose_value": parse_float(dose_raw), "dose_unit": text(r.get("dose_unit_rx")),
                "orig_value": dose_raw, "route": normalize_route(r.get("route")),
                "status": text(r.get("drug_type")),
            })  # fmt: skip
        except Reject as e:
            ctx.sink.reject(rt, table.fname, f"line {line}", str(e))
    rows.flush()
