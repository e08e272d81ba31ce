"""YAML loading that remembers where every key came from, so config errors can name the line."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

KeyPath = tuple[str | int, ...]

_Loader: type[yaml.SafeLoader] | type[yaml.CSafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True, slots=True)
class YamlProblem:
    """A problem found while reading the YAML itself (syntax, duplicate keys)."""

    line: int
    path: KeyPath
    message: str


def load_with_lines(text: str) -> tuple[Any, dict[KeyPath, int], list[YamlProblem]]:
    """Parse YAML and return (data, key path -> 1-based line, problems).

    A syntax error is returned as a problem with the line the parser reports, not raised; a
    duplicate key is a problem too (PyYAML silently keeps the last one, which hides typos).
    """
    lines: dict[KeyPath, int] = {}
    problems: list[YamlProblem] = []
    # libyaml's parser when PyYAML has it: 20x faster, which a 10,000-device config notices
    # (seconds at every start and reload); its nodes carry the same marks.
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, lines, problems
        _walk(node, (), lines, problems)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        problems.append(YamlProblem(line, (), f"YAML syntax: {exc.problem or exc}"))
        return None, lines, problems
    except yaml.YAMLError as exc:
        problems.append(YamlProblem(1, (), f"YAML: {exc}"))
        return None, lines, problems
    finally:
        loader.dispose()
    return data, lines, problems


def _walk(node: yaml.Node, path: KeyPath, lines: dict[KeyPath, int], problems: list[YamlProblem]) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            child = (*path, key)
            if key in seen:
                problems.append(
                    YamlProblem(key_node.start_mark.line + 1, child, "duplicate key (the last one would win)")
                )
                continue
            seen.add(key)
            lines[child] = key_node.start_mark.line + 1
            _walk(value_node, child, lines, problems)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            child = (*path, index)
            lines[child] = item.start_mark.line + 1
            _walk(item, child, lines, problems)


def line_for(lines: dict[KeyPath, int], path: KeyPath) -> int:
    """Return the line of ``path``, or of its nearest ancestor the file spells out."""
    probe = tuple(path)
    while probe:
        if probe in lines:
            return lines[probe]
        probe = probe[:-1]
    return lines.get((), 1)
