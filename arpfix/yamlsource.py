"""Read YAML into plain Python data plus the line of every field, refusing hostile documents.

The validator reports every error with file, line and field, so we keep a map from the path of
each value (("hosts", "web1", "address")) to the line it stands on. Aliases are allowed, but a
document whose aliases expand far beyond its size (an alias bomb) or that nests too deep is refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from arpfix.errors import UsageError

Path = tuple[Any, ...]

MAX_DEPTH = 64
MAX_EXPANDED_NODES = 2_000_000
MAX_EXPANSION_FACTOR = 20  # expanded nodes per distinct node before we call it an alias bomb
MAX_FILE_BYTES = 256 * 1024 * 1024

try:  # libyaml is much faster for large inventories
    _Loader: Any = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - PyYAML without libyaml
    _Loader = yaml.SafeLoader

_STR_TAG = "tag:yaml.org,2002:str"


@dataclass
class Located:
    """A YAML document as plain data, with a line (1-based) for each path that has one."""

    data: Any
    lines: dict[Path, int] = field(default_factory=dict)
    source: str = ""

    def line_of(self, path: Path) -> int:
        """The line of path, or of its nearest ancestor that has one; 0 when unknown."""
        while path:
            line = self.lines.get(path)
            if line:
                return line
            path = path[:-1]
        return self.lines.get((), 0)


def _fail(source: str, line: int, message: str) -> UsageError:
    where = f"{source}:{line}" if line else source
    return UsageError(f"{where}: {message}")


def read_text(path: str) -> str:
    """Read an inventory file as UTF-8 text; binary or unreadable files are usage errors."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise UsageError(f"{path}: no such inventory file") from None
    except IsADirectoryError:
        raise UsageError(f"{path}: is a directory, not an inventory file") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read inventory: {exc.strerror}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise UsageError(f"{path}: inventory larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB")
    if b"\x00" in raw:
        line = raw[: raw.index(b"\x00")].count(b"\n") + 1
        raise UsageError(f"{path}:{line}: not a text file (NUL byte)")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise UsageError(f"{path}:{line}: not UTF-8 text") from None


def load_yaml(text: str, source: str) -> Located:
    """Parse one YAML document into a Located; every failure is a UsageError naming file:line."""
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        problem = exc.problem or exc.context or "invalid YAML"
        if mark and _tab_at(text, mark.line, mark.column):
            problem = (f"a tab at column {mark.column + 1}: YAML indents with spaces only "
                       f"(replace the tab with spaces) ({problem})")
        raise _fail(source, line, f"not valid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise _fail(source, 0, f"not valid YAML: {exc}") from None
    except RecursionError:
        raise _fail(source, 0, "YAML nests too deep") from None
    if node is None:
        return Located(None, {(): 1}, source)
    if "*" in text:  # without an alias (`*name`) nothing can expand: the walk is needed only then
        _check_size(node, source)
    located = Located(None, {}, source)
    located.data = _convert(node, (), located, 0)
    return located


def _tab_at(text: str, line: int, column: int) -> bool:
    """Whether a YAML error points at a tab (or at text a tab indents): libyaml's message does not say."""
    lines = text.splitlines()
    if not 0 <= line < len(lines):
        return False
    return "\t" in lines[line][: column + 1]


def _check_size(root: yaml.Node, source: str) -> None:
    """Refuse alias bombs and absurd nesting before converting anything (memoised, linear)."""
    sizes: dict[int, int] = {}
    distinct = 0
    # iterative post-order walk over distinct nodes
    stack: list[tuple[yaml.Node, int, bool]] = [(root, 1, False)]
    while stack:
        node, depth, done = stack.pop()
        if depth > MAX_DEPTH:
            raise _fail(source, node.start_mark.line + 1, f"YAML nests deeper than {MAX_DEPTH} levels")
        key = id(node)
        if done:
            children = _children(node)
            total = 1 + sum(sizes[id(child)] for child in children)
            sizes[key] = total
            continue
        if key in sizes:
            continue
        if isinstance(node, yaml.ScalarNode):
            sizes[key] = 1
            distinct += 1
            continue
        distinct += 1
        stack.append((node, depth, True))
        for child in _children(node):
            if id(child) not in sizes:
                stack.append((child, depth + 1, False))
    expanded = sizes[id(root)]
    if expanded > MAX_EXPANDED_NODES or expanded > max(10_000, distinct * MAX_EXPANSION_FACTOR):
        raise _fail(
            source,
            root.start_mark.line + 1,
            f"YAML aliases expand to {expanded} values from {distinct}: refusing (alias bomb?)",
        )


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


_scalar_constructor = yaml.SafeLoader("")


def _convert(node: yaml.Node, path: Path, located: Located, depth: int) -> Any:
    located.lines[path] = node.start_mark.line + 1
    if depth > MAX_DEPTH:
        raise _fail(located.source, node.start_mark.line + 1, f"YAML nests deeper than {MAX_DEPTH} levels")
    if isinstance(node, yaml.ScalarNode):
        if node.tag == _STR_TAG:
            return node.value  # what the constructor would return, without its machinery
        try:
            return _scalar_constructor.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            raise _fail(located.source, node.start_mark.line + 1, f"bad value: {exc}") from None
    if isinstance(node, yaml.SequenceNode):
        return [
            _convert(child, path + (index,), located, depth + 1)
            for index, child in enumerate(node.value)
        ]
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise _fail(located.source, key_node.start_mark.line + 1, "keys must be plain values")
            key = _convert(key_node, path + ("<key>",), located, depth + 1)
            if isinstance(key, (list, dict)) or key is None:
                raise _fail(located.source, key_node.start_mark.line + 1, "keys must be plain values")
            if key in result:
                raise _fail(located.source, key_node.start_mark.line + 1, f"duplicate key {key!r}")
            result[key] = _convert(value_node, path + (key,), located, depth + 1)
        return result
    raise _fail(located.source, node.start_mark.line + 1, "unsupported YAML node")  # pragma: no cover
