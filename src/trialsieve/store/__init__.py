"""The canonical event store (docs/STORE.md): schema, writer, reader."""

from trialsieve.store.reader import open_store
from trialsieve.store.schema import EVENT_KINDS, EVENTS_SCHEMA, PATIENTS_SCHEMA
from trialsieve.store.writer import IngestSummary, StoreWriter

__all__ = [
    "EVENTS_SCHEMA",
    "EVENT_KINDS",
    "PATIENTS_SCHEMA",
    "IngestSummary",
    "StoreWriter",
    "open_store",
]
