"""YAML loading that remembers where every value came from.

Job-file errors must say `path:line:col`, so mappings and sequences are returned
as `YMap`/`YSeq`: plain dicts and lists that also carry the location of
themselves, their keys and their values.  Plain scalars are resolved as in YAML
1.2's core schema (`NO` stays a string, `09:30` stays a daytime string, dates stay
`YYYY-MM-DD` strings), which is what a job file author means.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from .errors import JobError, Location

_MERGE_TAG = "tag:yaml.org,2002:merge"
_ANY_TAG = "tag:yaml.org,2002:str"


class _FastLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """libyaml's composer (several times faster on big directories), without PyYAML's
    implicit-tag resolution: scalars are typed by `_plain_scalar`, so only the merge key
    `<<` needs a tag here, and resolving every node in Python cost a third of the load."""

    def resolve(self, kind: Any, value: Any, implicit: Any) -> str:
        if value == "<<" and implicit and implicit[0]:
            return _MERGE_TAG
        return _ANY_TAG

    def descend_resolver(self, current_node: Any, current_index: Any) -> None:
        pass  # no path resolvers: nothing to track

    def ascend_resolver(self) -> None:
        pass


class YMap(dict):
    """A mapping from a YAML file, with locations.

    Positions are kept as (line, col) pairs and made `Location`s only when asked:
    a big jobs directory has a million values and few problems.
    """

    __slots__ = ("path", "pos", "positions")  # no __dict__ for each of a million mappings
    path: str
    pos: tuple[int, int]
    # key → (key line, key col, value line, value col)
    positions: dict[Any, tuple[int, int, int, int]]

    @property
    def loc(self) -> Location:
        return Location(self.path, *self.pos)

    def loc_of(self, key: Any) -> Location:
        """Where the value of `key` is, or the mapping itself if the key is absent."""
        pos = self.positions.get(key)
        return Location(self.path, pos[2], pos[3]) if pos else self.loc

    def key_loc(self, key: Any) -> Location:
        pos = self.positions.get(key)
        return Location(self.path, pos[0], pos[1]) if pos else self.loc


class YSeq(list):
    """A sequence from a YAML file, with locations (made `Location`s only when asked)."""

    __slots__ = ("path", "pos", "item_pos")
    path: str
    pos: tuple[int, int]
    item_pos: list[tuple[int, int]]

    @property
    def loc(self) -> Location:
        return Location(self.path, *self.pos)

    def loc_of(self, index: int) -> Location:
        if 0 <= index < len(self.item_pos):
            return Location(self.path, *self.item_pos[index])
        return self.loc


def loc_of(container: Any, key: Any, default: Location | None = None) -> Location | None:
    """The location of `container[key]`, for any container, when known."""
    if isinstance(container, (YMap, YSeq)):
        return container.loc_of(key)
    return default


def node_loc(value: Any, default: Location | None = None) -> Location | None:
    """The location of a mapping or sequence value, when known."""
    return getattr(value, "loc", default)


_INT = re.compile(r"^[-+]?(0|[1-9][0-9_]*)$")
_INT_OTHER = re.compile(r"^(0x[0-9a-fA-F_]+|0o[0-7_]+)$")
_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9][0-9_]*(\.[0-9_]*)?)([eE][-+]?[0-9]+)?$")
_SPECIAL_FLOAT = {".inf": float("inf"), "+.inf": float("inf"), "-.inf": float("-inf"), ".nan": float("nan")}
# A plain scalar starting with none of these is a string: most keys and words.
_TYPED_START = frozenset("0123456789+-.~nNtTfF")
# One starting with one of these is null, true, false or a string (`type`, `tz`, `false`).
_WORD_START = frozenset("nNtTfF")
_WORDS = {"null": None, "true": True, "false": False}


def _plain_scalar(text: str) -> Any:
    if text and text[0] not in _TYPED_START:
        return text
    low = text.lower()
    if text and text[0] in _WORD_START:
        return _WORDS.get(low, text)
    if text in ("", "~"):
        return None
    if _INT.match(text):
        return int(text.replace("_", ""))
    if _INT_OTHER.match(text):
        return int(text.replace("_", ""), 0)
    if _FLOAT.match(text) and any(c.isdigit() for c in text):
        return float(text.replace("_", ""))
    if low in _SPECIAL_FLOAT:
        return _SPECIAL_FLOAT[low]
    return text


def _pos(node: yaml.Node) -> tuple[int, int]:
    mark = node.start_mark
    return mark.line + 1, mark.column + 1


_Scalar = yaml.ScalarNode


class _Converter:
    """Nodes to values.  Scalars, most of the nodes, are converted inline where met:
    a call per scalar was half the time of loading a big directory's YAML."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.memo: dict[int, Any] = {}

    def loc(self, node: yaml.Node) -> Location:
        return Location(self.path, *_pos(node))

    def convert(self, node: yaml.Node) -> Any:
        if type(node) is _Scalar:
            # Quoted and block scalars are strings; plain ones are typed as YAML 1.2.
            return node.value if node.style else _plain_scalar(node.value)
        if id(node) in self.memo:  # an alias: the same object again
            return self.memo[id(node)]
        if type(node) is yaml.SequenceNode:
            return self.convert_seq(node)
        if type(node) is yaml.MappingNode:
            return self.convert_map(node)
        raise JobError(f"unsupported YAML node {node.tag}", self.loc(node))  # pragma: no cover

    def convert_seq(self, node: yaml.SequenceNode) -> YSeq:
        seq = YSeq()
        seq.path = self.path
        seq.pos = _pos(node)
        self.memo[id(node)] = seq
        item_pos = seq.item_pos = []
        for item in node.value:
            if item.__class__ is _Scalar:
                seq.append(item.value if item.style else _plain_scalar(item.value))
            else:
                seq.append(self.convert(item))
            mark = item.start_mark
            item_pos.append((mark.line + 1, mark.column + 1))
        return seq

    def convert_map(self, node: yaml.MappingNode) -> YMap:
        mapping = YMap()
        mapping.path = self.path
        mapping.pos = _pos(node)
        positions: dict[Any, tuple[int, int, int, int]] = {}
        mapping.positions = positions
        self.memo[id(node)] = mapping
        merged: list[YMap] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                value = self.convert(value_node)
                merged.extend(value if isinstance(value, list) else [value])
                continue
            if key_node.__class__ is _Scalar:
                key = key_node.value if key_node.style else _plain_scalar(key_node.value)
            else:
                key = self.convert(key_node)
                if isinstance(key, (dict, list)):
                    raise JobError("a mapping key must be a plain value", self.loc(key_node))
            if key in mapping:
                raise JobError(
                    f"duplicate key {key!r} (first at line {positions[key][0]}); remove one of them",
                    self.loc(key_node),
                )
            if value_node.__class__ is _Scalar:
                mapping[key] = value_node.value if value_node.style else _plain_scalar(value_node.value)
            else:
                mapping[key] = self.convert(value_node)
            key_mark, value_mark = key_node.start_mark, value_node.start_mark
            positions[key] = (key_mark.line + 1, key_mark.column + 1,
                              value_mark.line + 1, value_mark.column + 1)
        for other in merged:
            if not isinstance(other, YMap):
                raise JobError("'<<' must merge a mapping", mapping.loc)
            for key, value in other.items():
                if key not in mapping:
                    mapping[key] = value
                    positions[key] = other.positions[key]
        return mapping


def load_yaml(text: str, path: str) -> Any:
    """Parses one YAML document, raising `JobError` with the location on failure."""
    try:
        node = yaml.compose(text, Loader=_FastLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        loc = Location(path, mark.line + 1, mark.column + 1) if mark else Location(path)
        problem = exc.problem or exc.context or "invalid YAML"
        raise JobError(f"YAML syntax error: {problem}", loc) from None
    except yaml.YAMLError as exc:
        raise JobError(f"YAML error: {exc}", Location(path)) from None
    if node is None:
        return None
    if "&" in text:  # no anchor, no alias: the common case costs nothing
        _bound_aliases(node, len(text) + MAX_ALIAS_EXPANSION, path)
    return _Converter(path).convert(node)


# An alias is the same object again, so a "billion laughs" costs no memory once loaded;
# but what it stands for, once a template prints it, would: that is bounded here.
MAX_ALIAS_EXPANSION = 1_000_000  # values and characters that aliases may add, in all


def _bound_aliases(root: yaml.Node, limit: int, path: str) -> None:
    """Raises `JobError` at the first node that, aliases expanded, is over `limit`
    values and characters (a file without aliases is about its own length)."""
    sizes: dict[int, int] = {}

    def size(node: yaml.Node) -> int:
        known = sizes.get(id(node))
        if known is not None:
            return known
        sizes[id(node)] = 1  # an alias inside itself counts once
        if isinstance(node, yaml.ScalarNode):
            total = 1 + len(node.value)
        elif isinstance(node, yaml.SequenceNode):
            total = 1 + sum(size(item) for item in node.value)
        else:
            total = 1 + sum(size(key) + size(value) for key, value in node.value)
        if total > limit:
            raise JobError(f"YAML aliases make this stand for over {MAX_ALIAS_EXPANSION:,} values and "
                           "characters more than the file holds (a 'billion laughs'?); use fewer "
                           "nested aliases", Location(path, node.start_mark.line + 1, node.start_mark.column + 1))
        sizes[id(node)] = total
        return total

    size(root)
