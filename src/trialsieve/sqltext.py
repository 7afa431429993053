"""SQL text shared by every layer that builds queries (ingest, store, kidney, screening)."""

from __future__ import annotations


def quote(text: object) -> str:
    """``text`` as a SQL string literal (single quotes doubled), e.g. a file path or a code."""
    return "'" + str(text).replace("'", "''") + "'"
