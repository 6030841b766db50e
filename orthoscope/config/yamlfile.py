"""Reading a config file, whatever the file holds: YAML (JSON is YAML) through a ``SafeLoader`` that refuses what
would hang, crash or silently change the config, and errors as one line ``FILE:LINE: what is wrong``.

    cfg, lines = read_config("poet.yaml")      # lines: {"method.lr": 7, ...} (1-based), for later error messages
    where(error, "poet.yaml", lines)           # "poet.yaml:7: method.lr must be a number (default 0.001), got 'fast'"

The loader (``ConfigLoader``) adds to PyYAML's ``SafeLoader`` (which already builds only plain data):

* ``3e-4`` is a number (YAML 1.1 wants ``3.0e-4``);
* **aliases are bounded**: after composing the document (aliases are shared nodes then, nothing is expanded yet) the
  size it *would* have expanded — nodes plus scalar characters — is counted once per node, and a document over
  ``MAX_EXPANDED`` is refused before a single value is built. A 600-byte "billion laughs" file names 10⁹ strings; it
  is refused in milliseconds. Recursive aliases (``a: &a [*a]``) are refused too;
* **nesting is bounded** (``MAX_DEPTH`` levels, aliases included): PyYAML's composer recurses once per level;
* **integers fit in 64 bits** (torch's int64; a seed beyond it fails deep inside torch), checked on the digits before
  Python converts them;
* **duplicate keys are refused** (YAML says keys are unique; PyYAML keeps the last one silently), naming both lines.
  Keys brought in by a merge (``<<: *defaults``) may be overridden, as YAML's merge key intends.

Every error names the file and the line (PyYAML's marks are 0-based; we print 1-based lines, as editors do).
"""
from __future__ import annotations

import re
from pathlib import Path

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

from ..core.validate import ConfigError, bounded

MAX_FILE_BYTES = 4 << 20          # a config is a few hundred bytes; this is a run's config with a 10⁴-entry list
MAX_EXPANDED = 2_000_000          # nodes + scalar characters, once aliases are expanded
MAX_DEPTH = 64                    # nesting levels (a config needs 4)
INT64 = (-2 ** 63, 2 ** 63 - 1)
_MERGE = "tag:yaml.org,2002:merge"
_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|\.[0-9_]+(?:[eE][-+]?[0-9]+)?"
                    r"|[0-9][0-9_]*[eE][-+]?[0-9]+|\.inf|\.nan)$", re.X)


class ConfigLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` with the bounds of the module docstring. ``self.lines`` maps each key path of the document
    (``method.lr``, ``probes[0].every``) to its 1-based line once the document is loaded."""

    def __init__(self, stream):
        super().__init__(stream)
        self.depth = 0
        self.lines: dict[str, int] = {}
        self.paths: dict[int, str] = {}           # id(node) -> the key path it was first reached by

    # ---- composing: nesting depth ----
    def compose_node(self, parent, index):
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(None, None, f"nesting deeper than {MAX_DEPTH} levels",
                                                  self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    # ---- after composing, before constructing: the expanded size ----
    def get_single_node(self):
        node = super().get_single_node()
        if node is not None:
            self._measure(node, "", 0, {}, set())
        return node

    def _measure(self, node, path: str, depth: int, sizes: dict, open_: set) -> tuple[int, int]:
        """(expanded size, expanded depth) of ``node``, each node counted once (``sizes``); records key paths and
        their lines. A node met again while it is still open is a recursive alias."""
        key = id(node)
        if key in open_:
            raise ConstructorError(None, None, f"{_at(path)}a recursive alias (a node that contains itself)",
                                   node.start_mark)
        if key not in sizes:
            self.paths.setdefault(key, path)
            open_.add(key)
            size, deep = 1, 0
            if isinstance(node, ScalarNode):
                size += len(node.value)
            elif isinstance(node, SequenceNode):
                for i, child in enumerate(node.value):
                    self.lines.setdefault(f"{path}[{i}]", child.start_mark.line + 1)
                    s, d = self._measure(child, f"{path}[{i}]", depth + 1, sizes, open_)
                    size, deep = size + s, max(deep, d + 1)
            elif isinstance(node, MappingNode):
                for k, v in node.value:
                    name = k.value if isinstance(k, ScalarNode) and k.tag != _MERGE else None
                    child = path if name is None else (f"{path}.{name}" if path else str(name))
                    if name is not None:                  # the line the user wrote the key on
                        self.lines.setdefault(child, k.start_mark.line + 1)
                    sk, dk = self._measure(k, path, depth + 1, sizes, open_)
                    sv, dv = self._measure(v, child, depth + 1, sizes, open_)
                    size, deep = size + sk + sv, max(deep, dk + 1, dv + 1)
            open_.discard(key)
            sizes[key] = size, deep
        size, deep = sizes[key]
        if size > MAX_EXPANDED:
            raise ConstructorError(None, None, f"{_at(path)}the config expands to more than {MAX_EXPANDED:,} nodes "
                                   "and characters (YAML aliases repeat what they name: an alias bomb?)",
                                   node.start_mark)
        if depth + deep > MAX_DEPTH:
            raise ConstructorError(None, None, f"{_at(path)}nesting deeper than {MAX_DEPTH} levels once aliases "
                                   "are expanded", node.start_mark)
        return size, deep

    # ---- constructing: integers, duplicate keys ----
    def construct_yaml_int(self, node):
        digits = re.sub(r"[^0-9a-fA-F]", "", node.value)
        if len(digits) > 40:                      # Python's int() is quadratic in the digits (and refuses > 4300)
            raise ConstructorError(None, None, f"{self._where(node)}an integer of {len(digits)} digits does not fit "
                                   "in 64 bits", node.start_mark)
        value = super().construct_yaml_int(node)
        if not INT64[0] <= value <= INT64[1]:
            raise ConstructorError(None, None, f"{self._where(node)}{value} does not fit in 64 bits (torch's int64: "
                                   f"{INT64[0]} to {INT64[1]})", node.start_mark)
        return value

    def construct_mapping(self, node, deep=False):
        if isinstance(node, MappingNode):
            seen = {}
            for key_node, _ in node.value:
                if key_node.tag == _MERGE:
                    continue
                key = self.construct_object(key_node, deep=deep)
                try:
                    first = seen.setdefault(key, key_node)
                except TypeError:                 # unhashable: PyYAML names it below
                    continue
                if first is not key_node:
                    raise ConstructorError(None, None, f"duplicate key {bounded(key)}{self._inside(node)} (first at "
                                           f"line {first.start_mark.line + 1}; YAML keys are unique)",
                                           key_node.start_mark)
        return super().construct_mapping(node, deep=deep)

    def _where(self, node) -> str:
        return _at(self.paths.get(id(node), ""))

    def _inside(self, node) -> str:
        path = self.paths.get(id(node), "")
        return f" in {path}" if path else " at the top level"


def _at(path: str) -> str:
    return "" if not path else f"{path}: " if len(path) <= 60 else f"{path[:59]}…: "


ConfigLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))
ConfigLoader.add_constructor("tag:yaml.org,2002:int", ConfigLoader.construct_yaml_int)


# ---- reading ------------------------------------------------------------------------------------------------------

def load_yaml(text: str, source: str = "<string>", numbered: bool = True) -> tuple[object, dict[str, int]]:
    """The data of YAML ``text`` and its key paths' lines; a ``ConfigError`` ``SOURCE:LINE: problem`` otherwise
    (``SOURCE: problem`` when not ``numbered``: a one-line override)."""
    loader = None
    try:
        loader = ConfigLoader(text)               # PyYAML's reader checks the characters here
        return loader.get_single_data(), loader.lines
    except yaml.MarkedYAMLError as e:
        raise ConfigError(_marked(e, source, numbered)) from None
    except yaml.reader.ReaderError as e:          # a control character in the text
        line = text.count("\n", 0, e.position) + 1
        char = ord(e.character) if isinstance(e.character, str) else e.character
        code = f"U+{char:04X}" if isinstance(char, int) else bounded(char)
        prefix = f"{source}:{line}" if numbered else source
        raise ConfigError(f"{prefix}: a control character ({code}), which YAML does not allow; a config file is "
                          "text") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{source}: {_one_line(str(e))}") from None
    finally:
        if loader is not None:
            loader.dispose()


def _marked(e: yaml.MarkedYAMLError, source: str, numbered: bool = True) -> str:
    mark = e.problem_mark or e.context_mark
    problem = e.problem or ""
    if "'\\t'" in problem:
        problem = "a tab character where YAML expects a token: YAML indents and separates with spaces, not tabs"
    elif "could not determine a constructor" in problem:
        problem = f"{problem} (a config holds plain data: numbers, strings, lists, mappings)"
    elif e.context and problem.startswith("but "):          # "expected a single document…, but found another…"
        problem = f"{e.context}, {problem}"
    elif e.context and not isinstance(e, ConstructorError):
        problem = f"{problem} ({e.context}" + (f" at line {e.context_mark.line + 1})" if e.context_mark else ")")
    where = f"{source}:{mark.line + 1}" if mark and numbered else source
    column = f" (column {mark.column + 1})" if mark and not isinstance(e, ConstructorError) else ""
    return f"{where}: {_one_line(problem)}{column}"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def read_config(path) -> tuple[object, dict[str, int]]:
    """The data of the config file ``path`` and its key paths' lines (``load_yaml``); every problem with the file
    itself (missing, a directory, unreadable, too large, not UTF-8 text) is a one-line ``ConfigError`` naming it."""
    source = shown_path(path)
    p = Path(path)
    try:
        if p.is_dir():
            raise ConfigError(f"{source}: is a directory, not a config file")
        if not p.exists():
            raise ConfigError(f"{source}: no such config file")
        if not p.is_file():
            raise ConfigError(f"{source}: not a regular file (a config is a YAML or JSON file)")
        with open(p, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as e:
        raise ConfigError(f"{source}: cannot read the config file ({e.strerror or e})") from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(f"{source}: larger than {MAX_FILE_BYTES >> 20} MiB; a config file is a few hundred bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise ConfigError(f"{source}:{line}: not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); a "
                          "config is a YAML or JSON text file") from None
    return load_yaml(text.removeprefix("\ufeff"), source)


def shown_path(path) -> str:
    """``path`` as given, or its bounded repr when it holds control characters (a message stays one line)."""
    text = str(path)
    return text if text.isprintable() and len(text) <= 200 else bounded(text, 200)


# ---- locating an error ----------------------------------------------------------------------------------------------

_KEY_PATH = re.compile(r"^[A-Za-z_][\w-]*(?:\.[A-Za-z_][\w-]*|\[\d+\])*")


def where(message: str, source: str, lines: dict[str, int], overridden: dict[str, str] | None = None) -> str:
    """``message`` (a ``ConfigError`` about a loaded config, which starts with the key path it is about, e.g.
    ``method.lr must be …``) prefixed with where that key came from: ``SOURCE:LINE`` for a key of the file,
    ``SOURCE (override K=V)`` for a key an override set, ``SOURCE`` when the key is a default or the message names
    none. Messages always fit on one line."""
    message = _one_line(message)
    match = _KEY_PATH.match(message)
    path = match.group(0) if match else ""
    for key, item in (overridden or {}).items():
        if path == key or path.startswith((key + ".", key + "[")):
            return f"{source} (override {bounded(item, 80)}): {message}"
    while path:
        if path in lines:
            return f"{source}:{lines[path]}: {message}"
        path = re.sub(r"(\.[^.\[]*|\[\d+\])$", "", path) if re.search(r"[.\[]", path) else ""
    return f"{source}: {message}"
