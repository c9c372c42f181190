"""The package's imports point down: every module sits in a layer and imports only from its own layer or lower
ones, and no chain of imports leads back to where it started. Imports inside functions (lazy imports) count too:
they run sooner or later, and hiding an upward import in a function is still an upward import."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"

# bottom to top; a name is a module, or a package with everything in it ("roadseg" alone is roadseg/__init__.py).
# The inference core's settings and pre/post-processing sit below optimize: INT8 calibration prepares frames with
# them, so that it feeds the graph exactly what the predictor feeds it.
LAYERS = {
    0: ("roadseg", "roadseg.errors", "roadseg.device", "roadseg.metrics", "roadseg.config"),
    1: ("roadseg.data", "roadseg.plots"),
    2: ("roadseg.models", "roadseg.inference.settings", "roadseg.inference.processing"),
    3: ("roadseg.optimize",),
    4: ("roadseg.inference",),
    5: ("roadseg.engine",),
    6: ("roadseg.report", "roadseg.benchmark", "roadseg.demo"),
    7: ("roadseg.cli", "roadseg.__main__"),
}


def layer_of(module: str) -> int | None:
    for layer, names in LAYERS.items():
        for name in names:
            if module == name or (name != "roadseg" and module.startswith(name + ".")):
                return layer
    return None


def find_modules(src: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py under src/roadseg (a package is its __init__.py)."""
    out = {}
    for path in sorted((src / "roadseg").rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def find_imports(src: Path, modules: dict[str, Path]) -> list[tuple[str, str, Path, int]]:
    """(importer, imported module, file, line) for every roadseg import anywhere in a file, functions included.
    `from P import x` is an edge to P.x when that is a module, else to P."""
    edges = []
    for mod, path in modules.items():
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: resolve against this module's package
                    pkg = mod if is_pkg else mod.rpartition(".")[0]
                    for _ in range(node.level - 1):
                        pkg = pkg.rpartition(".")[0]
                    base = f"{pkg}.{node.module}" if node.module else pkg
                else:
                    base = node.module or ""
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for t in dict.fromkeys(targets):
                if t == "roadseg" or t.startswith("roadseg."):
                    edges.append((mod, t, path, node.lineno))
    return edges


# The package's face may hand out the top-level API lazily (`roadseg.load` in roadseg/__init__.py's __getattr__):
# `import roadseg` stays light, and the one factory is reachable as the README shows it.
FACADE = {("roadseg", "roadseg.inference.predictor")}


def layer_problems(src: Path) -> list[str]:
    modules = find_modules(src)
    problems = [f"{path.relative_to(src.parent)}: module {mod} is in no layer (add it to LAYERS in {Path(__file__).name})"
                for mod, path in modules.items() if layer_of(mod) is None]
    for a, b, path, line in find_imports(src, modules):
        where = f"{path.relative_to(src.parent)}:{line}"
        if b not in modules:
            problems.append(f"{where}: {a} imports {b}, which is not a module of the package")
        elif None not in (layer_of(a), layer_of(b)) and layer_of(b) > layer_of(a) and (a, b) not in FACADE:
            problems.append(f"{where}: {a} (layer {layer_of(a)}) imports {b} (layer {layer_of(b)}): upward import")
    return problems


def strongly_connected(graph: dict) -> list[set]:
    """Tarjan's strongly connected components of a {node: {successor: ...}} graph."""
    index, low, stack, on_stack, sccs = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            sccs.append(set(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sccs


def shortest_cycle(graph: dict, comp: set, start: str) -> list[str]:
    """The shortest path start -> ... -> start inside the component `comp`."""
    prev, frontier, found = {}, [start], None
    while frontier and found is None:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v]):
                if w == start:
                    found = v
                    break
                if w in comp and w not in prev:
                    prev[w] = v
                    nxt.append(w)
            if found is not None:
                break
        frontier = nxt
    path = [start]
    v = found
    while v != start:
        path.insert(1, v)
        v = prev[v]
    return path + [start]


def cycle_problems(src: Path) -> list[str]:
    """One line per import cycle (per strongly connected component of the module graph), with a concrete cycle."""
    modules = find_modules(src)
    graph: dict[str, dict[str, tuple[Path, int]]] = {m: {} for m in modules}
    for a, b, path, line in find_imports(src, modules):
        if b in modules:
            graph[a].setdefault(b, (path, line))
    sccs = strongly_connected(graph)
    problems = []
    for comp in sccs:
        start = min(comp)
        if len(comp) == 1 and start not in graph[start]:
            continue
        path = shortest_cycle(graph, comp, start)
        hops = [f"{graph[x][y][0].relative_to(src.parent)}:{graph[x][y][1]}" for x, y in zip(path, path[1:])]
        problems.append(f"import cycle: {' -> '.join(path)} (at {', '.join(hops)})")
    return problems


def test_every_module_is_found():
    modules = find_modules(SRC)
    assert {"roadseg", "roadseg.cli", "roadseg.cli.common", "roadseg.models.checkpoint", "roadseg.plots"} <= set(modules)
    assert "roadseg.engine.checkpoint" not in modules and "roadseg.cli_commands" not in modules


def test_imports_point_down():
    problems = layer_problems(SRC)
    assert not problems, "imports must point down (or stay in their layer):\n" + "\n".join(problems)


def test_no_import_cycles():
    problems = cycle_problems(SRC)
    assert not problems, "\n".join(problems)


def test_the_checks_catch_lazy_upward_imports_and_cycles(tmp_path):
    src = tmp_path / "src"
    pkg = src / "roadseg"
    files = {
        "__init__.py": "",
        "errors.py": "def f():\n    from roadseg.cli import build\n",  # lazy and upward
        "cli/__init__.py": "from roadseg.cli.common import x\n",
        "cli/common.py": "x = 1\n\n\ndef g():\n    from . import main\n",  # relative, back to cli: a cycle
        "cli/main.py": "import roadseg.cli\nimport roadseg.nothing\n",
        "data/__init__.py": "",
        "data/io.py": "from roadseg.models import build\n",  # upward, top level
        "models/__init__.py": "from roadseg.data.io import *\n",
        "stray.py": "",
    }
    for name, text in files.items():
        (pkg / name).parent.mkdir(parents=True, exist_ok=True)
        (pkg / name).write_text(text)
    layers = layer_problems(src)
    assert "src/roadseg/errors.py:2: roadseg.errors (layer 0) imports roadseg.cli (layer 7): upward import" in layers
    assert "src/roadseg/data/io.py:1: roadseg.data.io (layer 1) imports roadseg.models (layer 2): upward import" in layers
    assert any("roadseg.nothing, which is not a module" in p for p in layers)
    assert any("module roadseg.stray is in no layer" in p for p in layers)
    assert len(layers) == 4, layers
    cycles = cycle_problems(src)
    assert sorted(cycles) == [
        "import cycle: roadseg.cli -> roadseg.cli.common -> roadseg.cli.main -> roadseg.cli "
        "(at src/roadseg/cli/__init__.py:1, src/roadseg/cli/common.py:5, src/roadseg/cli/main.py:1)",
        "import cycle: roadseg.data.io -> roadseg.models -> roadseg.data.io "
        "(at src/roadseg/data/io.py:1, src/roadseg/models/__init__.py:1)",
    ], cycles
