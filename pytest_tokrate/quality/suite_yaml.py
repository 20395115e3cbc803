"""Reading a suite file's YAML within bounds: its size, its nesting and its aliases.

A suite is read whole and then walked many times (schema validation, defaults, checks,
the options a backend sends), so what it may cost is bounded before any of that:

- the file: a regular file of at most :data:`MAX_SUITE_BYTES` (a FIFO would block and
  ``/dev/zero`` never end);
- nesting: at most :data:`~pytest_tokrate.core.limits.MAX_DEPTH` levels, refused while
  composing, before PyYAML's composer (which recurses) can reach Python's recursion limit;
- aliases: PyYAML shares the node of an anchor with each of its aliases, so nine anchors
  of nine aliases each (a "billion laughs" document) parse in milliseconds into a graph
  that expands to 43 million values once walked. The expanded size and depth of the node
  graph are measured once per node (memoized, so a bomb costs as little as its text)
  and refused beyond :data:`MAX_VALUES` values; an alias inside its own anchor (a cycle)
  is refused too.

Errors are :class:`SuiteError` naming the file, the line and, where there is one, the
anchor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from pytest_tokrate.core.limits import MAX_DEPTH, InputLimitError, read_bounded

#: The largest suite file read. A suite with long prompts is a few hundred KB; PyYAML
#: (pure Python here, for the bounds below) needs about a second per MB.
MAX_SUITE_BYTES = 4 * 1024 * 1024
#: The most values (scalars, lists, mappings) a suite may hold once its aliases are
#: expanded: a thousand cases of thirty values each is a third of this.
MAX_VALUES = 100_000
_ADVICE = ": no suite needs that; is it the file you meant?"


class SuiteError(Exception):
    """A suite file that cannot be collected; the message lists every problem."""


class _Refused(Exception):
    """A bound crossed while composing; carries the line and the words."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader counting depth and nodes as it composes, and remembering
    which node each anchor names (PyYAML forgets anchors once a document is composed)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.depth = 0
        self.composed = 0
        self.anchor_names: dict[int, str] = {}
        self.flattened: list[tuple[yaml.MappingNode, list[tuple[Any, Any]]]] = []

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            return super().compose_node(parent, index)
        event = self.peek_event()  # type: ignore[no-untyped-call]
        line = event.start_mark.line + 1
        self.depth += 1
        self.composed += 1
        if self.depth > MAX_DEPTH:
            raise _Refused(line, f"nests more than {MAX_DEPTH} levels deep{_ADVICE}")
        if self.composed > MAX_VALUES:
            raise _Refused(line, f"holds more than {MAX_VALUES:,} values{_ADVICE}")
        try:
            node = super().compose_node(parent, index)
        finally:
            self.depth -= 1
        if event.anchor is not None and node is not None:
            self.anchor_names[id(node)] = event.anchor
        return node

    def fetch_flow_collection_start(self, TokenClass: Any) -> None:
        # Refused in the scanner too: before an opening bracket is resolved PyYAML scans
        # ahead up to 1,024 characters, checking every bracket still open at each step,
        # so a run of "[[[[" costs half a second before the composer sees its depth.
        if self.flow_level >= MAX_DEPTH:
            raise _Refused(
                self.line + 1, f"nests more than {MAX_DEPTH} levels of brackets deep{_ADVICE}"
            )
        super().fetch_flow_collection_start(TokenClass)

    def flatten_mapping(self, node: yaml.MappingNode) -> None:
        # PyYAML applies merge keys (<<) by rewriting the node in place; the nodes are
        # kept as written for line numbers and repeated-key checks, so each is restored.
        self.flattened.append((node, list(node.value)))
        super().flatten_mapping(node)

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        try:
            return super().construct_yaml_int(node)
        except ValueError:  # Python's 4,300-digit limit on int(): a number no suite needs
            raise _Refused(
                node.start_mark.line + 1,
                f"the integer {node.value[:20]}... has {len(node.value):,} digits{_ADVICE}",
            ) from None


_BoundedLoader.add_constructor("tag:yaml.org,2002:int", _BoundedLoader.construct_yaml_int)


def read_suite_text(path: Path, where: str) -> str:
    """The suite file's text: a regular UTF-8 file of at most :data:`MAX_SUITE_BYTES`."""
    try:
        raw = read_bounded(path, MAX_SUITE_BYTES)
    except InputLimitError as exc:
        raise SuiteError(f"{where}: cannot read the suite file: {exc}") from None
    except OSError as exc:
        raise SuiteError(f"{where}: cannot read the suite file ({exc}).") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SuiteError(f"{where}: cannot read the suite file ({exc}).") from None


def load_yaml(text: str, where: str) -> tuple[yaml.Node | None, Any]:
    """The composed node graph (for line numbers) and the data of one YAML document."""
    try:
        loader = _BoundedLoader(text)  # the reader refuses control characters here
    except yaml.YAMLError as exc:
        raise SuiteError(f"{where}: YAML error: {exc}.") from None
    try:
        root = loader.get_single_node()
        if root is None:
            return None, None
        _measure(root, loader.anchor_names)
        data = loader.construct_document(root)
        for node, value in reversed(loader.flattened):
            node.value = value
        return root, data
    except _Refused as exc:
        raise SuiteError(f"{where}:{exc.line}: {exc}") from None
    except RecursionError:
        # Second line of defence: the bounds above stop nesting long before this.
        raise SuiteError(f"{where}: the YAML nests too deep to read{_ADVICE}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = f"{mark.line + 1}:{mark.column + 1}" if mark is not None else "?"
        context = f" ({exc.context})" if exc.context else ""
        raise SuiteError(f"{where}:{line}: YAML syntax error: {exc.problem}{context}.") from None
    except yaml.YAMLError as exc:
        raise SuiteError(f"{where}: YAML error: {exc}.") from None
    finally:
        loader.dispose()


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _measure(root: yaml.Node, anchors: dict[int, str]) -> None:
    """Refuse a graph whose expansion passes :data:`MAX_VALUES` values or
    :data:`MAX_DEPTH` levels, or that contains itself. Depth-first without recursion;
    each node is measured once, its size and depth kept by ``id``."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    open_nodes: set[int] = set()  # entered, not yet measured: the current path
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            kids = _children(node)
            size[key] = min(1 + sum(size[id(k)] for k in kids), MAX_VALUES + 1)
            depth[key] = 1 + max((depth[id(k)] for k in kids), default=0)
            open_nodes.discard(key)
            _check_measured(node, size[key], depth[key], anchors)
            continue
        if key in size:
            continue
        open_nodes.add(key)
        stack.append((node, True))
        for kid in _children(node):
            if id(kid) in open_nodes:
                name = anchors.get(id(kid), "?")
                raise _Refused(
                    kid.start_mark.line + 1,
                    f"the anchor &{name} contains an alias of itself (*{name}), a value "
                    "without end: remove that alias",
                )
            if id(kid) not in size:
                stack.append((kid, False))


def _check_measured(node: yaml.Node, size: int, depth: int, anchors: dict[int, str]) -> None:
    name = anchors.get(id(node))
    anchor = f" (the anchor &{name})" if name else ""
    if size > MAX_VALUES:
        raise _Refused(
            node.start_mark.line + 1,
            f"this value{anchor} expands to more than {MAX_VALUES:,} values through YAML "
            "aliases: each alias repeats its anchor's whole value, so aliases of aliases "
            "multiply (a 'billion laughs' document); write the values out or use fewer "
            "levels of aliases",
        )
    if depth > MAX_DEPTH:
        raise _Refused(
            node.start_mark.line + 1,
            f"this value{anchor} nests more than {MAX_DEPTH} levels deep through YAML aliases"
            f"{_ADVICE}",
        )


__all__ = ["MAX_SUITE_BYTES", "MAX_VALUES", "SuiteError", "load_yaml", "read_suite_text"]
