"""YAML text with line numbers: so every error in a policy file can say ``file:line: field:``.

PyYAML forgets where a value came from once it builds Python objects. This module composes the
node tree first, remembers the line of every key path (``("rules", 2, "when") -> 17``), refuses
duplicate keys (PyYAML silently keeps the last one), then builds the plain data::

    doc = parse_yaml(text, "policy.yaml")
    doc.data["rules"][2]["when"]
    doc.where(("rules", 2, "when"))        # -> ("policy.yaml:17", "rules[2].when")

The loader reads YAML the way a person reading the file would: ``yes``/``no``/``on``/``off`` stay
strings (only ``true``/``false`` are booleans), ``09:00`` is the string ``"09:00"`` and not the
base-60 integer 540, and dates stay strings so that pydantic parses them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from hitl.errors import ConfigError

__all__ = ["Loc", "SourceDoc", "format_path", "parse_yaml"]

Loc = tuple[str | int, ...]

_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_INT = re.compile(r"^[-+]?(?:0|[1-9][0-9_]*)$")
_FLOAT = re.compile(
    r"^[-+]?(?:[0-9][0-9_]*)?\.[0-9_]+(?:[eE][-+]?[0-9]+)?$|^[-+]?\.(?:inf|Inf|INF)$"
)
_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2-like scalars: no sexagesimal ints, no yes/no booleans, no dates."""


_Loader.yaml_implicit_resolvers = {}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", _BOOL, list("tTfF"))
_Loader.add_implicit_resolver("tag:yaml.org,2002:int", _INT, list("-+0123456789"))
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))
_Loader.add_implicit_resolver("tag:yaml.org,2002:null", _NULL, ["~", "n", "N", ""])


def format_path(loc: Sequence[str | int]) -> str:
    """``("rules", 2, "when")`` -> ``rules[2].when``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


@dataclass
class SourceDoc:
    """Parsed YAML plus the line of every key path in it."""

    source: str
    data: Any
    lines: dict[Loc, int] = field(default_factory=dict)

    def line_of(self, loc: Iterable[str | int]) -> int:
        """The line of the deepest part of ``loc`` present in the file (1 for the top level)."""
        return self._resolve(tuple(loc))[0]

    def where(self, loc: Iterable[str | int]) -> tuple[str, str]:
        """``("policy.yaml:17", "rules[2].when")`` for a pydantic or semantic error location.

        Parts of ``loc`` that are not in the file (pydantic's union tags, fields a validator
        derived from a shorthand) are skipped, except a last plain name: a missing field.
        """
        loc = tuple(loc)
        line, kept = self._resolve(loc)
        if loc and len(kept) < len(loc):
            last = loc[-1]
            if (
                isinstance(last, str)
                and re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", last)
                and last not in _PYDANTIC_TAGS
                and (not kept or kept[-1] != last)
            ):
                kept = (*kept, last)
        return f"{self.source}:{line}", format_path(kept)

    def error(self, loc: Iterable[str | int], message: str) -> str:
        """One error line: ``policy.yaml:17: rules[2].when: message``."""
        at, path = self.where(loc)
        return f"{at}: {path}: {message}"

    def _resolve(self, loc: Loc) -> tuple[int, Loc]:
        current: Loc = ()
        for part in loc:
            candidate = (*current, part)
            if candidate in self.lines:
                current = candidate
        return self.lines.get(current, 1), current


_PYDANTIC_TAGS = frozenset({"str", "int", "float", "bool", "dict", "list", "none"})


def parse_yaml(text: str, source: str) -> SourceDoc:
    """Parse ``text`` (named ``source`` in errors); raise ConfigError with ``file:line``."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return SourceDoc(source, None, {(): 1})
        lines: dict[Loc, int] = {(): node.start_mark.line + 1}
        problems: list[str] = []
        _index(node, (), lines, problems, source)
        if problems:
            raise ConfigError("\n".join(problems))
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        what = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        if "'\\t'" in what:
            what += " (YAML indents with spaces, never tabs)"
        raise ConfigError(
            f"{source}:{line}: not valid YAML: {what or exc}. "
            "Check the indentation and quoting on this line and the one before it."
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}:1: not valid YAML: {exc}") from None
    finally:
        loader.dispose()
    return SourceDoc(source, data, lines)


def _index(
    node: yaml.Node, loc: Loc, lines: dict[Loc, int], problems: list[str], source: str
) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue
            key = key_node.value
            line = key_node.start_mark.line + 1
            if key == "<<":
                problems.append(
                    f"{source}:{line}: {format_path(loc)}: YAML merge keys (<<) are not supported; "
                    "write the fields out"
                )
                continue
            if key in seen:
                problems.append(
                    f"{source}:{line}: {format_path((*loc, key))}: duplicate key "
                    f"(first defined on line {seen[key]}); keep only one"
                )
                continue
            seen[key] = line
            child = (*loc, key)
            lines[child] = line
            _index(value_node, child, lines, problems, source)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            child = (*loc, i)
            lines[child] = item.start_mark.line + 1
            _index(item, child, lines, problems, source)
