"""The statements a screening ran, for tests that count what read the events."""

from __future__ import annotations

import re


class Created(list[str]):
    """The SQL of every table the DuckDB backend made, in order (the ``created`` fixture)."""

    def event_reads(self, analyte: str) -> int:
        """How many of them read the events of ``analyte``."""
        return sum(bool(re.search(r"\bevents\b", s)) and f"'{analyte}'" in s for s in self)
