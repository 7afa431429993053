"""SQL text shared by every layer that builds queries (ingest, store, kidney, screening)."""

from __future__ import annotations


def escape(text: object) -> str:
    """``text`` for use inside a SQL string literal (single quotes doubled)."""
    return str(text).replace("'", "''")


def quote(text: object) -> str:
    """``text`` as a SQL string literal, e.g. a file path or a code."""
    return "'" + escape(text) + "'"
