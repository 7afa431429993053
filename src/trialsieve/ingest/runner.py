"""Format dispatch for ``trialsieve ingest``: pick the reader, run it into a StoreWriter."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from trialsieve.ingest.sink import IngestError, IngestSink
from trialsieve.store.writer import IngestSummary, StoreWriter

log = logging.getLogger(__name__)

#: --format value -> (module, function) with signature ``fn(source, sink) -> None``
READERS: dict[str, tuple[str, str]] = {
    "fhir": ("trialsieve.ingest.fhir", "read"),
    "csv": ("trialsieve.ingest.csv_layout", "read"),
    "omop": ("trialsieve.ingest.omop", "read"),
    "mimic3": ("trialsieve.ingest.mimic", "read_mimic3"),
    "mimic4": ("trialsieve.ingest.mimic", "read_mimic4"),
}


def get_reader(fmt: str) -> Callable[[Path | str, IngestSink], None]:
    """The reader function for ``fmt`` (imported lazily)."""
    if fmt not in READERS:
        raise IngestError(f"unknown format {fmt!r}; choose one of {', '.join(READERS)}")
    module, fn = READERS[fmt]
    try:
        reader: Callable[[Path | str, IngestSink], None] = getattr(
            importlib.import_module(module), fn
        )
    except (ImportError, AttributeError) as e:
        raise IngestError(f"format {fmt!r}: reader {module}.{fn} not available: {e}") from e
    return reader


def default_dataset_name(source: Path) -> str:
    """Dataset name from the source path: the folder name (a file's name without extensions)."""
    name = source.resolve().name
    if source.is_file():
        name = name.split(".", 1)[0]
    cleaned = "".join(c if c.isalnum() or c in "_-." else "_" for c in name)
    return cleaned or "dataset"


def is_database_url(source: Path | str) -> bool:
    """True for a PostgreSQL connection URL (``postgresql://`` or ``postgres://``)."""
    return str(source).startswith(("postgresql://", "postgres://"))


def masked_url(url: str) -> str:
    """The URL with its password replaced by ``***`` (for manifests and logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def run_ingest(
    fmt: str,
    source: Path | str,
    store_dir: Path | str,
    *,
    dataset: str | None = None,
    strict: bool = False,
) -> IngestSummary:
    """Read ``source`` in format ``fmt`` into the store at ``store_dir``; return the summary.

    In strict mode the first reject (or FHIR validation error) raises IngestError and the store
    is left unchanged.
    """
    reader = get_reader(fmt)
    if is_database_url(source):
        if fmt != "omop":
            raise IngestError(f"format {fmt!r} reads files; a database URL needs --format omop")
        url = urlsplit(str(source))
        name = dataset or (url.path.strip("/") or "omop")
        where = masked_url(str(source))
    else:
        source = Path(source)
        if not source.exists():
            raise IngestError(f"{source}: no such file or folder")
        name = dataset or default_dataset_name(source)
        where = str(source)
    writer = StoreWriter(Path(store_dir), name, strict=strict)
    writer.source_path = where  # recorded in manifest.json (passwords masked)
    writer.source_format = fmt
    reader(source, writer)
    return writer.close()
