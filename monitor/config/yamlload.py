"""YAML text -> plain data (dicts, lists, scalars), safe against hostile files.

``yaml.safe_load`` builds no objects, but on its own it

- accepts duplicate keys silently (the last one wins);
- lets a few hundred bytes of aliases stand for billions of values
  ("billion laughs": the nodes are shared, but every walk over the data,
  ours and pydantic's, visits each one);
- accepts an alias inside the value it names (``a: &a [*a]``): a cycle,
  and every walk over it recurses until the stack runs out;
- recurses once per nesting level when composing (1000 brackets exhaust
  the stack);
- crashes in some of its own constructors on explicitly tagged values
  (``!!timestamp x`` is an AttributeError, ``!!int x`` a ValueError).

So :func:`load_yaml` first streams the parser's events (the parser keeps
its own stack, it does not recurse), refusing nesting deeper than
``MAX_DEPTH``, too many values or aliases, huge scalars and explicit tags
(a config has no use for them). Only then does it compose the node graph,
measure what the aliases expand to (values, depth, cycles), check for
duplicate keys, and construct the data. Every refusal is a
:class:`YamlLimit` with the line and column.

LibYAML's parser is used when PyYAML has it (PyPI's wheels do): it streams
200 000 events in about 0.2 s here, where the pure-Python one takes about
10 s, and every bad file must be judged within a second.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

# Limits far above any real config (the example has about 250 values; a
# fleet of 2000 probes about 30 000).
MAX_DEPTH = 32  # levels of nesting, aliases expanded
MAX_VALUES = 100_000  # values as written, and once aliases are expanded
MAX_ALIASES = 1_000
MAX_SCALAR_CHARS = 256 * 1024
_MERGE = "tag:yaml.org,2002:merge"
_LOADER: type[Any] = yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader


class YamlLimit(Exception):
    """A file that breaks a limit; ``where`` is ``line:column`` (1-based)."""

    def __init__(self, mark: Any, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem
        self.where = f"{mark.line + 1}:{mark.column + 1}" if mark is not None else ""


def load_yaml(text: str) -> Any:
    """The data of one YAML document (None when empty).

    Raises YamlLimit (see the module docstring) or yaml.YAMLError.
    """
    _scan(text)
    loader = _LOADER(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _measure(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _scan(text: str) -> None:
    """Check the event stream: depth, counts, scalar sizes, no explicit tags."""
    loader = _LOADER(text)
    depth = values = aliases = 0
    try:
        while loader.check_event():
            event = loader.get_event()
            if isinstance(event, yaml.AliasEvent):
                aliases += 1
                if aliases > MAX_ALIASES:
                    raise YamlLimit(event.start_mark, f"more than {MAX_ALIASES} aliases")
            elif isinstance(event, yaml.ScalarEvent | yaml.CollectionStartEvent):
                values += 1
                if values > MAX_VALUES:
                    raise YamlLimit(event.start_mark, f"more than {MAX_VALUES} values")
                if event.tag not in (None, "!"):
                    raise YamlLimit(event.start_mark, f"explicit tags such as {event.tag} "
                                    "are not used in a config")
                if isinstance(event, yaml.CollectionStartEvent):
                    depth += 1
                    if depth > MAX_DEPTH:
                        raise YamlLimit(event.start_mark,
                                        f"nested deeper than {MAX_DEPTH} levels")
                elif len(event.value) > MAX_SCALAR_CHARS:
                    raise YamlLimit(event.start_mark, f"a value longer than "
                                    f"{MAX_SCALAR_CHARS // 1024} KiB")
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    finally:
        loader.dispose()


def _measure(root: Node) -> None:
    """Raise YamlLimit when ``root`` expands to a cycle, too many values or too
    deep, or has a mapping with a key twice. The scan bounded the depth as
    written, so this recursion is bounded too."""
    sizes: dict[int, tuple[int, int]] = {}  # id(node) -> (values, depth), once measured
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
        if isinstance(node, SequenceNode):
            children: list[Node] = list(node.value)
        elif isinstance(node, MappingNode):
            _no_duplicates(node)
            children = [part for pair in node.value for part in pair]
        else:
            assert isinstance(node, ScalarNode)
            children = []
        values, depth = 1, 0
        for child in children:
            child_values, child_depth = visit(child, level + 1)
            values += child_values
            depth = max(depth, child_depth + 1)
            if values > MAX_VALUES:
                raise YamlLimit(node.start_mark, f"aliases expand to more than "
                                f"{MAX_VALUES} values")
        active.discard(key)
        sizes[key] = (values, depth)
        return values, depth

    visit(root, 0)


def _no_duplicates(node: MappingNode) -> None:
    seen: dict[tuple[str, str], Any] = {}
    for key_node, _ in node.value:
        if not isinstance(key_node, ScalarNode) or key_node.tag == _MERGE:
            continue  # `<<: *base` may be overridden, by design
        mark: Any = key_node.start_mark
        first = seen.setdefault((key_node.tag, key_node.value), mark)
        if first is not mark:
            raise YamlLimit(mark, f"duplicate key {key_node.value!r} "
                            f"(first at line {first.line + 1})")
