"""The package's import graph, read from the code, and its layers: ``python scripts/import_layers.py [--mermaid]``.

Every ``import`` and ``from … import`` in ``orthoscope/`` counts, at module level or inside a function (a lazy import
is still a dependency; hiding one in a function only hides a loop). The Triton sources (``kernels/``, installed as
``orthoscope.kernels.triton``) count too.

**A module's layer is its folder's.** ``LAYERS`` lists the layers bottom first, each with the folders of
``orthoscope/`` that make it up; a module belongs to the layer of the top-level folder it sits in, and the modules at
the root of the package (``ROOT_MODULES``) are the top layer. A folder that is in no layer, or a module at the root
that is not listed, is an error: the picture and the folders cannot drift apart. An import of a module in a higher
layer is an *upward* import; the ones the design accepts are listed, with their reason, in ``DELIBERATE``.
tests/test_import_graph.py asserts there are no others and no import loop.

Prints the layers, the arrows between them (how many imports each stands for) and every upward import; with
``--mermaid``, a Mermaid flowchart of the layers for docs/design.md.
"""
from __future__ import annotations

import argparse
import ast
import collections
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Bottom first: (layer, its folders under orthoscope/). docs/design.md, "Layers", says what each one holds.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundations", ("core", "ortho")),
    ("kernel seam", ("kernels",)),
    ("methods and losses", ("methods",)),
    ("parts", ("models", "tasks", "probes", "optim", "adapters")),
    ("distributed seam", ("distributed",)),
    ("the training loop", ("training",)),
    ("integrations", ("integrations",)),
    ("runs as data, and recipes", ("config", "recipes", "zoo", "arena", "course")),
    ("views", ("viz", "trackers")),
    ("the package and its entry points", ("",)),        # the modules at the root of orthoscope/
]
# The only modules at the root of orthoscope/: the package itself, the command line, the demo, the old-path aliases.
ROOT_MODULES = ("orthoscope", "orthoscope.__main__", "orthoscope.demo", "orthoscope._moved")

# Upward imports the design accepts, each with its reason (docs/design.md, "Layers"). None today.
DELIBERATE: dict[tuple[str, str], str] = {}


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name → file, for every module of the package and every Triton source."""
    found = {}
    for path in (root / "orthoscope").rglob("*.py"):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    for path in (root / "kernels").glob("*.py"):             # reached through the orthoscope/kernels/triton symlink
        found[f"orthoscope.kernels.triton.{path.stem}"] = path
    return found


def _imported(module: str, path: Path, node: ast.AST, known: dict[str, Path]) -> list[str]:
    """The package modules one import statement reaches (a name imported from a package resolves to the submodule
    when it is one, else to the package)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
        if node.level:
            base = module.split(".")
            if path.name != "__init__.py":
                base = base[:-1]
            base = base[:len(base) - (node.level - 1)]
            source = ".".join(base + ([node.module] if node.module else []))
        else:
            source = node.module or ""
        names = [f"{source}.{a.name}" if f"{source}.{a.name}" in known else source for a in node.names]
    else:
        return []
    out = []
    for name in names:
        while name and name not in known:                  # `import orthoscope.kernels.reference` → that module
            name = name.rpartition(".")[0]
        if name and name != module:
            out.append(name)
    return out


_PACKAGES = {".".join(init.parent.relative_to(ROOT).parts) for init in (ROOT / "orthoscope").glob("*/__init__.py")}


def import_graph(root: Path = ROOT) -> set[tuple[str, str]]:
    """Every (importer, imported) pair of package modules, lazy imports included."""
    known = modules(root)
    edges = set()
    for module, path in known.items():
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            edges.update((module, target) for target in _imported(module, path, node, known))
    return edges


def folder_of(module: str) -> str:
    """The top-level folder of ``orthoscope/`` a module sits in; ``""`` for a module at the root."""
    parts = module.split(".")
    if parts[0] != "orthoscope":
        raise KeyError(f"{module} is not a module of orthoscope")
    if module in ROOT_MODULES:
        return ""
    if len(parts) == 2 and module not in _PACKAGES:
        raise KeyError(f"{module} is a module at the root of orthoscope/ that scripts/import_layers.py ROOT_MODULES "
                       "does not list: put it in the folder of its layer")
    return parts[1]


def layer_of(module: str) -> int:
    folder = folder_of(module)
    for i, (_, folders) in enumerate(LAYERS):
        if folder in folders:
            return i
    raise KeyError(f"{module}: the folder orthoscope/{folder}/ is in no layer of scripts/import_layers.py LAYERS; "
                   "add it to one")


def upward(edges) -> list[tuple[str, str]]:
    return sorted((a, b) for a, b in edges if layer_of(b) > layer_of(a))


def cycles(edges) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iteratively)."""
    graph = collections.defaultdict(list)
    for a, b in edges:
        graph[a].append(b)
    index, low, on_stack, stack, found, counter = {}, {}, set(), [], [], [0]
    for start in sorted({n for e in edges for n in e}):
        if start in index:
            continue
        work = [(start, iter(graph[start]))]
        index[start] = low[start] = counter[0]; counter[0] += 1
        stack.append(start); on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter[0]; counter[0] += 1
                    stack.append(child); on_stack.add(child)
                    work.append((child, iter(graph[child])))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop(); on_stack.discard(member); component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def layer_arrows(edges) -> dict[tuple[int, int], int]:
    """(from layer, to layer) → number of module imports it stands for (within-layer imports left out)."""
    arrows = collections.Counter()
    for a, b in edges:
        la, lb = layer_of(a), layer_of(b)
        if la != lb:
            arrows[(la, lb)] += 1
    return dict(arrows)


def mermaid(edges) -> str:
    lines = ["flowchart BT"]
    for i, (name, folders) in enumerate(LAYERS):
        shown = ", ".join(f"{f}/" if f else "__init__, __main__, demo, _moved" for f in folders)
        lines.append(f'    L{i}["{name}<br/><small>{shown}</small>"]')
    for (la, lb), n in sorted(layer_arrows(edges).items()):
        style = "-.->" if lb > la else "-->"
        lines.append(f"    L{la} {style}|{n}| L{lb}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mermaid", action="store_true", help="print a Mermaid flowchart of the layers")
    args = parser.parse_args(argv)
    edges = import_graph()
    if args.mermaid:
        print(mermaid(edges))
        return 0
    for i, (name, folders) in enumerate(LAYERS):
        print(f"{i} {name}: {', '.join(f'{f}/' if f else 'the root' for f in folders)}")
    print("\nlayer arrows (from → to: imports):")
    for (la, lb), n in sorted(layer_arrows(edges).items()):
        print(f"  {LAYERS[la][0]} → {LAYERS[lb][0]}: {n}{'   (UPWARD)' if lb > la else ''}")
    ups = upward(edges)
    print(f"\nupward imports: {len(ups)}")
    for a, b in ups:
        print(f"  {a} → {b}" + (f"   deliberate: {DELIBERATE[(a, b)]}" if (a, b) in DELIBERATE else ""))
    loops = cycles(set(edges) - set(DELIBERATE))
    print(f"import loops (deliberate imports left out): {len(loops)}")
    for loop in loops:
        print("  " + " ↔ ".join(loop))
    return 0


if __name__ == "__main__":
    sys.exit(main())
