"""YAML text -> plain data (dicts, lists, scalars), safe against hostile files.

``yaml.safe_load`` builds no objects, but on its own it

- accepts duplicate keys silently (the last one wins);
- lets a few hundred bytes of aliases stand for billions of values
  ("billion laughs": the nodes are shared, but every walk over the data,
  ours and pydantic's, visits each one);
- accepts an alias inside the value it names (``a: &a [*a]``): a cycle,
  and every walk over it recurses until the stack runs out;
- recurses once per nesting level (1000 brackets exhaust the stack).

:func:`load_yaml` composes the node graph with the nesting depth capped,
then measures what it expands to (values, depth, cycles) before
constructing anything, and refuses duplicate keys and huge scalars. Every
refusal is a :class:`YamlLimit` with the line and column.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

# Limits far above any real config (the largest example here has a few
# hundred values, a fleet's config a few tens of thousands).
MAX_DEPTH = 32  # levels of nesting, aliases expanded
MAX_VALUES = 100_000  # values once aliases are expanded
MAX_ALIASES = 1_000
MAX_SCALAR_CHARS = 256 * 1024
_MERGE = "tag:yaml.org,2002:merge"


class YamlLimit(Exception):
    """A file that breaks a limit; ``where`` is ``line:column`` (1-based)."""

    def __init__(self, mark: Any, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem
        self.where = f"{mark.line + 1}:{mark.column + 1}" if mark is not None else ""


class _Loader(yaml.SafeLoader):
    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise YamlLimit(self.peek_event().start_mark,
                                f"more than {MAX_ALIASES} aliases")
        elif self.check_event(yaml.ScalarEvent):
            event = self.peek_event()
            if len(event.value) > MAX_SCALAR_CHARS:
                raise YamlLimit(event.start_mark, f"a value longer than "
                                f"{MAX_SCALAR_CHARS // 1024} KiB")
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise YamlLimit(self.peek_event().start_mark,
                                f"nested deeper than {MAX_DEPTH} levels")
            return super().compose_node(parent, index)  # type: ignore[no-any-return]
        finally:
            self._depth -= 1

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE:  # `<<: *base` may be overridden, by design
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node.start_mark)
            except TypeError:  # an unhashable key: the constructor says so below
                continue
            if first is not key_node.start_mark:
                raise YamlLimit(key_node.start_mark, f"duplicate key {key!r} (first at line "
                                f"{first.line + 1})")
        return super().construct_mapping(node, deep=deep)  # type: ignore[no-any-return]


def _measure(root: Node) -> None:
    """Raise YamlLimit when ``root`` expands to a cycle, too many values or too deep."""
    sizes: dict[int, tuple[int, int]] = {}  # id(node) -> (values, depth)
    active: set[int] = set()

    def visit(node: Node, level: int) -> tuple[int, int]:
        key = id(node)
        known = sizes.get(key)
        if known is not None:  # an alias: its depth counts from here
            if level + known[1] > MAX_DEPTH:
                raise YamlLimit(node.start_mark, f"aliases expand deeper than "
                                f"{MAX_DEPTH} levels")
            return known
        if key in active:
            raise YamlLimit(node.start_mark, "an alias refers to the value that contains it")
        if level > MAX_DEPTH:
            raise YamlLimit(node.start_mark, f"aliases expand deeper than {MAX_DEPTH} levels")
        active.add(key)
        values, depth = 1, 0
        if isinstance(node, SequenceNode):
            children: list[Node] = list(node.value)
        elif isinstance(node, MappingNode):
            children = [part for pair in node.value for part in pair]
        else:
            assert isinstance(node, ScalarNode)
            children = []
        for child in children:
            child_values, child_depth = visit(child, level + 1)
            values += child_values
            depth = max(depth, child_depth + 1)
            if values > MAX_VALUES:
                raise YamlLimit(node.start_mark, f"aliases expand to more than "
                                f"{MAX_VALUES} values")
        if level + depth > MAX_DEPTH:
            raise YamlLimit(node.start_mark, f"aliases expand deeper than {MAX_DEPTH} levels")
        active.discard(key)
        sizes[key] = (values, depth)
        return values, depth

    visit(root, 0)


def load_yaml(text: str) -> Any:
    """The data of one YAML document (None when empty).

    Raises YamlLimit (see the module docstring) or yaml.YAMLError.
    """
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _measure(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()
