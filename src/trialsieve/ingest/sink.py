"""What a reader writes into: the interface between source readers and the store writer.

Every reader (``ingest/fhir.py``, ``ingest/omop.py``, ``ingest/mimic.py``, ``ingest/csv_layout.py``)
has the signature ``read(source: Path, sink: IngestSink) -> None`` and must account for every
record it reads: each is either emitted (patients/events) or rejected with a reason.
"""

from __future__ import annotations

from typing import Protocol

import pyarrow as pa


class IngestSink(Protocol):
    """Receives batches conforming to ``store.schema`` and reject records."""

    def count_read(self, record_type: str, n: int = 1) -> None:
        """Count ``n`` source records of ``record_type`` (e.g. "Observation", "LABEVENTS") read."""

    def patients(self, batch: pa.Table) -> None:
        """Store a batch of patient rows (``PATIENTS_SCHEMA``)."""

    def events(self, batch: pa.Table, record_type: str) -> None:
        """Store a batch of event rows (``EVENTS_SCHEMA``); counted as stored for record_type."""

    def reject(self, record_type: str, file: str, locator: str, reason: str) -> None:
        """Report one source record that could not be stored (file, line or resource id, why)."""

    def warn(self, record_type: str, file: str, locator: str, message: str) -> None:
        """Report a record stored with a caveat (e.g. Patient without birth date)."""
