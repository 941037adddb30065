"""YAML read within bounds, so no scenario file can exhaust memory, the stack or the CPU.

PyYAML's ``safe_load`` refuses code, but not size: an alias bomb (``&a [x, x]``,
``&b [*a, *a]``, ...) of a few hundred bytes expands to gigabytes once a copy of it
is made, a file nested a few thousand levels deep ends in ``RecursionError``, and a
5 000-digit integer in ``ValueError`` from ``int()``. Here each of them is one
:class:`yaml.YAMLError` with the line it starts on, which the loader turns into a
``ScenarioError``:

- at most ``MAX_VALUES`` values once every alias is expanded (the whole file counts);
- at most ``MAX_DEPTH`` levels of nesting, aliases expanded;
- no alias that contains itself;
- integers of at most ``MAX_DIGITS`` digits.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError

MAX_VALUES = 10_000
MAX_DEPTH = 50
MAX_DIGITS = 30


class BoundedLoader(yaml.SafeLoader):
    """SafeLoader that refuses nesting deeper than MAX_DEPTH while composing and
    integers longer than MAX_DIGITS while constructing."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels", mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_yaml_int(self, node: Any) -> Any:
        digits = sum(ch.isalnum() for ch in str(node.value))
        if digits > MAX_DIGITS:
            raise ConstructorError(
                None, None, f"a number of {digits} digits (at most {MAX_DIGITS})", node.start_mark
            )
        return super().construct_yaml_int(node)


BoundedLoader.add_constructor("tag:yaml.org,2002:int", BoundedLoader.construct_yaml_int)


def _check_expansion(root: yaml.Node) -> None:
    """Refuse a document that expands beyond MAX_VALUES values or MAX_DEPTH levels,
    or whose aliases contain themselves; sizes are memoised per node, so a bomb is
    measured without being expanded."""
    sizes: dict[int, tuple[int, int]] = {}  # id(node) -> (values, depth), aliases expanded
    open_nodes: set[int] = set()

    def measure(node: yaml.Node) -> tuple[int, int]:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            raise ComposerError(None, None, "an alias refers to itself", node.start_mark)
        open_nodes.add(key)
        values, depth = 1, 1
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        else:
            children = []
        for child in children:
            child_values, child_depth = measure(child)
            values += child_values
            depth = max(depth, child_depth + 1)
            if values > MAX_VALUES:
                raise ComposerError(
                    None,
                    None,
                    f"expands to more than {MAX_VALUES} values (aliases repeated: "
                    "a YAML alias bomb?)",
                    node.start_mark,
                )
            if depth > MAX_DEPTH:
                raise ComposerError(
                    None, None, f"nested deeper than {MAX_DEPTH} levels", node.start_mark
                )
        open_nodes.discard(key)
        sizes[key] = (values, depth)
        return values, depth

    measure(root)


def compose_and_load(text: str) -> tuple[Any, yaml.Node | None]:
    """``(data, node)`` of one YAML document, within the bounds above; yaml.YAMLError if
    the text is not YAML or exceeds them."""
    loader = BoundedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, None
        _check_expansion(node)
        return loader.construct_document(node), node
    finally:
        loader.dispose()


def load_value(text: str) -> Any:
    """One value as YAML reads it (``--set`` and ``--vary`` values), within the bounds."""
    return compose_and_load(text)[0]
