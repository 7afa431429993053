"""What a reader writes into: the interface between source readers and the store writer.

Every reader (``ingest/fhir.py``, ``ingest/omop.py``, ``ingest/mimic.py``, ``ingest/csv_layout.py``)
has the signature ``read(source: Path, sink: IngestSink) -> None`` and must account for every
record it reads: each is either emitted (patients/events) or rejected with a reason.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import pyarrow as pa


@runtime_checkable
class IngestSink(Protocol):
    """Receives batches conforming to ``store.schema`` and reject records."""

    def count_read(self, record_type: str, n: int = 1) -> None:
        """Count ``n`` source records of ``record_type`` (e.g. "Observation", "LABEVENTS") read."""

    def patients(self, batch: pa.Table, record_type: str = "Patient") -> None:
        """Store patient rows (``PATIENTS_SCHEMA``); counted as stored for record_type."""

    def events(self, batch: pa.Table, record_type: str) -> None:
        """Store a batch of event rows (``EVENTS_SCHEMA``); counted as stored for record_type.

        Columns missing from ``batch`` are filled with nulls; ``dataset`` and a null ``event_id``
        are filled by the sink. A source record is counted once however many rows it yields
        (records are identified by the ``source`` column, e.g. a blood-pressure panel gives two
        rows with the same source). An event whose patient is neither in this dataset nor
        already in the store is rejected by the sink ("unknown patient").
        """

    def reject(self, record_type: str, file: str, locator: str, reason: str) -> None:
        """Report one source record that could not be stored (file, line or resource id, why)."""

    def warn(self, record_type: str, file: str, locator: str, message: str) -> None:
        """Report a record stored with a caveat (e.g. Patient without birth date)."""


class IngestError(RuntimeError):
    """Raised in strict mode on the first rejected record, and on unreadable sources."""
