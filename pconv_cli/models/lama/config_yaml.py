"""The YAML LaMa's releases use for ``config.yaml``, without PyYAML.

LaMa writes its training configuration with OmegaConf (block style): nested mappings,
block lists (``- item``, also at the parent key's indentation, and ``- key: value``
items), plain and quoted scalars, ``[]`` / ``{}`` and short flow lists, comments,
and OmegaConf interpolations ``${a.b.c}``. :func:`parse_yaml` reads that subset
(YAML 1.1 scalars as PyYAML reads them: ``true``/``yes``/``on`` and their negatives,
``null``/``~``, ints, floats; ``None`` stays a string) and refuses anything else
(anchors, tags, multi-line scalars) with a :class:`ValueError` naming the line.
:func:`resolve` replaces ``${a.b.c}`` references by the values they point at; other
resolvers (``${env:USER}``) are left as text.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["parse_yaml", "resolve"]

# PyYAML's YAML 1.1 resolvers (sexagesimal numbers aside): "1e-3" has no dot, so it is text
_INT = re.compile(r"[-+]?(0|[1-9][0-9_]*)")
_INT_BASE = re.compile(r"[-+]?0(b[01_]+|x[0-9a-fA-F_]+|[0-7_]+)")
_FLOAT = re.compile(
    r"[-+]?([0-9][0-9_]*)\.[0-9_]*([eE][-+][0-9]+)?|\.[0-9][0-9_]*([eE][-+][0-9]+)?"
)
_SPECIAL_FLOATS = {
    f"{sign}.{word}": float(f"{sign}inf")
    for sign in ("", "+", "-")
    for word in ("inf", "Inf", "INF")
} | {f".{word}": float("nan") for word in ("nan", "NaN", "NAN")}
_TRUE = {"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON"}  # YAML 1.1, as PyYAML
_FALSE = {"false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF"}
_REFERENCE = re.compile(r"\$\{([A-Za-z_][\w.]*)\}")


def _strip_comment(text: str) -> str:
    """``text`` without a trailing ``# comment`` (outside quotes)."""
    quote, skip = None, False
    for i, char in enumerate(text):
        if skip:
            skip = False
        elif quote:
            if char == quote == "'" and text[i + 1 : i + 2] == "'":
                skip = True  # '' inside single quotes
            elif char == quote:
                quote = None
        elif char in "'\"" and (i == 0 or text[i - 1] in " [{,:"):
            quote = char
        elif char == "#" and (i == 0 or text[i - 1] in " \t"):
            return text[:i].rstrip()
    return text.rstrip()


def _scalar(text: str, line: int) -> Any:
    """One plain, quoted or flow scalar."""
    text = text.strip()
    if text[:1] in ("&", "*", "!", "|", ">"):
        raise ValueError(f"line {line}: unsupported YAML ({text[:1]!r}: anchors, tags, blocks)")
    if len(text) >= 2 and text[0] == text[-1] == "'":
        return text[1:-1].replace("''", "'")
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return bytes(text[1:-1], "utf-8").decode("unicode_escape")
    if text.startswith("[") and text.endswith("]"):
        inner = text[1:-1].strip()
        return [_scalar(item, line) for item in inner.split(",")] if inner else []
    if text == "{}":
        return {}
    if text[:1] in ("[", "{"):
        raise ValueError(f"line {line}: unsupported flow collection {text!r}")
    if text in ("", "~", "null", "Null", "NULL"):
        return None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    if _INT.fullmatch(text):
        return int(text.replace("_", ""))
    if _INT_BASE.fullmatch(text):
        digits = text.replace("_", "")
        sign, digits = (-1, digits[1:]) if digits[0] == "-" else (1, digits.lstrip("+"))
        base = {"b": 2, "x": 16}.get(digits[1:2], 8)
        return sign * int(digits[2:] if base != 8 else digits[1:], base)
    if _FLOAT.fullmatch(text):
        return float(text.replace("_", ""))
    if text in _SPECIAL_FLOATS:
        return _SPECIAL_FLOATS[text]
    return text


class _Lines:
    """(line number, indentation, text) of the meaningful lines."""

    def __init__(self, text: str):
        self.items: list[tuple[int, int, str]] = []
        for number, raw in enumerate(text.splitlines(), start=1):
            if "\t" in raw[: len(raw) - len(raw.lstrip())]:
                raise ValueError(f"line {number}: tabs in indentation")
            content = _strip_comment(raw)
            if content.strip() in ("", "---", "..."):
                continue
            self.items.append((number, len(content) - len(content.lstrip()), content.strip()))
        self.pos = 0

    def peek(self) -> tuple[int, int, str] | None:
        return self.items[self.pos] if self.pos < len(self.items) else None


def _split_key(text: str, line: int) -> tuple[str, str] | None:
    """``key: value`` -> (key, value); None if ``text`` is not a mapping entry."""
    match = re.match(r"""('[^']*'|"[^"]*"|[^\s'"#][^:#]*?)\s*:(\s+|$)""", text)
    if not match:
        return None
    key = match.group(1)
    if key[:1] in "'\"":
        key = key[1:-1]
    return key, text[match.end() :]


def _block(lines: _Lines, indent: int) -> Any:
    first = lines.peek()
    assert first is not None
    if first[2] == "-" or first[2].startswith("- "):
        return _sequence(lines, indent)
    return _mapping(lines, indent)


def _value_after_key(lines: _Lines, rest: str, indent: int, line: int) -> Any:
    if rest:
        return _scalar(rest, line)
    nxt = lines.peek()
    if nxt is None or nxt[1] < indent:
        return None
    if nxt[1] == indent:  # a block list at the key's own indentation
        return _sequence(lines, indent) if nxt[2].startswith("-") else None
    return _block(lines, nxt[1])


def _mapping(lines: _Lines, indent: int) -> dict[str, Any]:
    result: dict[str, Any] = {}
    while (item := lines.peek()) is not None and item[1] == indent:
        number, _, text = item
        entry = _split_key(text, number)
        if entry is None:
            raise ValueError(f"line {number}: expected 'key: value', got {text!r}")
        lines.pos += 1
        key, rest = entry
        result[key] = _value_after_key(lines, rest, indent, number)
    item = lines.peek()
    if item is not None and item[1] > indent:
        raise ValueError(f"line {item[0]}: unexpected indentation")
    return result


def _sequence(lines: _Lines, indent: int) -> list[Any]:
    result: list[Any] = []
    while (item := lines.peek()) is not None and item[1] == indent and item[2].startswith("-"):
        number, _, text = item
        rest = text[1:].strip()
        if rest and _split_key(rest, number) is not None:  # "- key: value ...": a mapping
            inner = indent + (len(text) - len(rest))
            lines.items[lines.pos] = (number, inner, rest)
            result.append(_mapping(lines, inner))
            continue
        lines.pos += 1
        if rest:
            result.append(_scalar(rest, number))
        else:
            nxt = lines.peek()
            result.append(_block(lines, nxt[1]) if nxt and nxt[1] > indent else None)
    return result


def parse_yaml(text: str) -> Any:
    """The document in ``text`` (see the module docstring); an empty document is ``{}``."""
    lines = _Lines(text)
    first = lines.peek()
    if first is None:
        return {}
    value = _block(lines, first[1])
    rest = lines.peek()
    if rest is not None:
        raise ValueError(f"line {rest[0]}: unexpected text {rest[2]!r}")
    return value


def _lookup(root: Any, path: str) -> Any:
    node = root
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise KeyError(path)
    return node


def resolve(tree: Any) -> Any:
    """``tree`` with every ``${a.b.c}`` reference replaced by its value (a value that is
    exactly one reference takes the referenced value's type); unresolvable ones stay."""

    def walk(node: Any, depth: int) -> Any:
        if isinstance(node, dict):
            return {key: walk(value, depth) for key, value in node.items()}
        if isinstance(node, list):
            return [walk(value, depth) for value in node]
        if not isinstance(node, str) or "${" not in node or depth > 32:
            return node
        whole = _REFERENCE.fullmatch(node)
        if whole:
            try:
                return walk(_lookup(tree, whole.group(1)), depth + 1)
            except KeyError:
                return node

        def substitute(match: re.Match[str]) -> str:
            try:
                return str(walk(_lookup(tree, match.group(1)), depth + 1))
            except KeyError:
                return match.group(0)

        return _REFERENCE.sub(substitute, node)

    return walk(tree, 0)
