"""Serum creatinine units.

The single source of the mg/dL <-> umol/L factor used everywhere in trialsieve (ingestion unit
table, eGFR equations, AKI engine).

Source: creatinine molar mass 113.12 g/mol, so 1 mg/dL = 10 mg/L / 113.12 g/mol = 88.4 umol/L,
the factor KDIGO 2012 AKI guideline (Kidney Int Suppl 2012;2:1-138, Table 2 footnote: 26.5 umol/L
= 0.3 mg/dL) and the NHS England AKI algorithm (PSA 2014) use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:  # numpy is imported where it is used: the unit constants do not need it
    import numpy as np
    import numpy.typing as npt

#: umol/L per mg/dL (KDIGO 2012; molar mass 113.12 g/mol).
UMOL_PER_MGDL: Final[float] = 88.4

#: accepted spellings of the two creatinine units -> canonical spelling
UNIT_SPELLINGS: Final[dict[str, str]] = {
    "mg/dl": "mg/dL",
    "umol/l": "umol/L",
    "\u00b5mol/l": "umol/L",
    "\u03bcmol/l": "umol/L",
    "micromol/l": "umol/L",
}


def parse_unit(unit: str) -> str:
    """Return ``"mg/dL"`` or ``"umol/L"`` for any accepted spelling; raise ``ValueError`` else."""
    key = unit.strip().lower().replace(" ", "")
    if key not in UNIT_SPELLINGS:
        raise ValueError(f"unknown creatinine unit {unit!r} (use mg/dL or umol/L)")
    return UNIT_SPELLINGS[key]


def to_umol_l(value: npt.ArrayLike, unit: str) -> npt.NDArray[np.float64]:
    """Convert creatinine values given in ``unit`` to umol/L."""
    import numpy as np

    v = np.asarray(value, dtype=np.float64)
    return v * UMOL_PER_MGDL if parse_unit(unit) == "mg/dL" else v


def to_mg_dl(value: npt.ArrayLike, unit: str) -> npt.NDArray[np.float64]:
    """Convert creatinine values given in ``unit`` to mg/dL."""
    import numpy as np

    v = np.asarray(value, dtype=np.float64)
    return v if parse_unit(unit) == "mg/dL" else v / UMOL_PER_MGDL
