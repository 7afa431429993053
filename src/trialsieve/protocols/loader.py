"""Load and validate protocol files (docs/PROTOCOLS.md) with errors naming file, line and field.

YAML is composed node by node (PyYAML ``compose``) so that every key and list item keeps its start
line; validation errors from the rule checker (``model.protocol_issues``) and from pydantic are
mapped back to ``<file>:<line>: <field path>: <why>``. Duplicate keys, which PyYAML silently
overwrites, are reported as errors.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from trialsieve.protocols.model import (
    Path as FieldPath,
)
from trialsieve.protocols.model import (
    Protocol,
    criteria_layout,
    format_path,
    protocol_issues,
)

BUNDLED_DIR = Path(__file__).resolve().parent

#: PyYAML's safe loader, in C (libyaml) where PyYAML was built with it: ~10x faster
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class ProtocolError(ValueError):
    """A protocol file that cannot be loaded; the message lists ``file:line: field: why``."""

    def __init__(self, message: str, issues: list[tuple[str, int, str, str]] | None = None) -> None:
        super().__init__(message)
        #: (file, line, field path, why) per problem, in file order
        self.issues: list[tuple[str, int, str, str]] = issues or []


def _key(node: Node) -> Any:
    if isinstance(node, ScalarNode):
        return SafeConstructor().construct_object(node)
    raise yaml.YAMLError(f"line {node.start_mark.line + 1}: complex mapping keys are not allowed")


def _index_lines(
    node: Node, path: FieldPath, lines: dict[FieldPath, int], dups: list[tuple[FieldPath, int]]
) -> None:
    """Record the 1-based start line of every node under ``node`` by field path."""
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, MappingNode):
        seen: set[Any] = set()
        for key_node, value_node in node.value:
            key = _key(key_node)
            sub = (*path, key if isinstance(key, int) else str(key))
            if key in seen:
                dups.append((sub, key_node.start_mark.line + 1))
            seen.add(key)
            lines[sub] = key_node.start_mark.line + 1  # a field's line is its key's line
            _index_lines(value_node, sub, lines, dups)
    elif isinstance(node, SequenceNode):
        for i, item in enumerate(node.value):
            _index_lines(item, (*path, i), lines, dups)


def _line_of(lines: Mapping[FieldPath, int], path: FieldPath) -> int:
    p = tuple(path)
    while p and p not in lines:
        p = p[:-1]
    return lines.get(p, 1)


def _fail(name: str, lines: Mapping[FieldPath, int], problems: list[tuple[FieldPath, str]]) -> None:
    issues = sorted(
        ((name, _line_of(lines, p), format_path(p), why) for p, why in problems),
        key=lambda t: t[1],
    )
    message = "\n".join(f"{f}:{line}: {field}: {why}" for f, line, field, why in issues)
    raise ProtocolError(message, issues)


def parse_yaml(text: str, name: str) -> tuple[Any, dict[FieldPath, int]]:
    """Parse YAML text into plain data plus a field-path -> line map (errors as ProtocolError)."""
    try:
        loader = _LOADER(text)
        try:  # parsed once: the nodes (with their lines), then the data from them
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        why = f"{exc.context + ': ' if exc.context else ''}{exc.problem}"
        raise ProtocolError(
            f"{name}:{line}: <yaml>: {why}", [(name, line, "<yaml>", why)]
        ) from None
    except yaml.YAMLError as exc:
        raise ProtocolError(f"{name}:1: <yaml>: {exc}", [(name, 1, "<yaml>", str(exc))]) from None
    lines: dict[FieldPath, int] = {}
    dups: list[tuple[FieldPath, int]] = []
    if node is not None:
        _index_lines(node, (), lines, dups)
    if dups:
        issues = [(name, line, format_path(p), "duplicate key") for p, line in dups]
        raise ProtocolError("\n".join(f"{f}:{n}: {p}: {w}" for f, n, p, w in issues), issues)
    return data, lines


def _loc_to_path(loc: tuple[Any, ...], origins: list[FieldPath]) -> FieldPath:
    parts = list(loc)
    if len(parts) >= 2 and parts[0] == "criteria" and isinstance(parts[1], int):
        if parts[1] < len(origins):
            return (*origins[parts[1]], *parts[2:])
    return tuple(parts)


def protocol_from_text(text: str, name: str) -> Protocol:
    """Validate protocol YAML ``text``; ``name`` is used in error messages."""
    data, lines = parse_yaml(text, name)
    if not isinstance(data, Mapping):
        _fail(name, lines, [((), "a protocol file is a mapping (id, title, design, criteria...)")])
    problems = protocol_issues(data)
    origins: list[FieldPath] = []
    if "criteria" in data:
        try:
            _, origins = criteria_layout(data["criteria"])
        except ValueError as exc:
            problems.append((("criteria",), str(exc)))
    if problems:
        _fail(name, lines, problems)
    try:
        return Protocol.model_validate(data)
    except ValidationError as exc:
        errs = [(_loc_to_path(e["loc"], origins), _message(e)) for e in exc.errors()]
        _fail(name, lines, errs)
    raise AssertionError("unreachable")  # pragma: no cover


def _message(err: Any) -> str:
    msg = str(err["msg"])
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if err["type"] == "extra_forbidden":
        msg = "unknown field"
    elif err["type"] == "string_type":
        msg += f" (got {err.get('input')!r}; quote codes and ids in YAML)"
    return msg


def load_protocol(path: Path) -> Protocol:
    """Load and validate one protocol file; raises ProtocolError("<file>:<line>: <field>: why")."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProtocolError(f"{path}:0: <file>: {exc.strerror or exc}") from None
    protocol = protocol_from_text(text, str(path))
    if path.stem != protocol.id and path.parent == BUNDLED_DIR:
        raise ProtocolError(f"{path}:1: id: file name must be the registry id {protocol.id}.yaml")
    return protocol


def bundled_protocol_paths() -> list[Path]:
    """The protocol files shipped with trialsieve (``src/trialsieve/protocols/*.yaml``), sorted."""
    return sorted(BUNDLED_DIR.glob("*.yaml"))


def load_bundled(ids: list[str] | None = None) -> list[Protocol]:
    """Load the bundled protocols (all, or those in ``ids``), sorted by id.

    An id without a bundled file raises ProtocolError naming the known ids.
    """
    paths = {p.stem: p for p in bundled_protocol_paths()}
    wanted = sorted(paths) if ids is None else sorted(set(ids))
    unknown = [i for i in wanted if i not in paths]
    if unknown:
        raise ProtocolError(
            f"unknown trial id(s) {', '.join(unknown)} (bundled: {', '.join(sorted(paths))})"
        )
    return [load_protocol(paths[i]) for i in wanted]
