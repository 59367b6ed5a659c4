"""The package's import graph, every import included (those written inside functions too): its cycles, the imports
that reach a higher folder, and the largest modules.

    python scripts/import_graph.py            # a summary: modules, imports, cycles, upward imports, largest modules
    python scripts/import_graph.py --edges    # every import between two modules of the package, with its line
    python scripts/import_graph.py --make OUT # the package files each notebook runs, as make variables (make book)

A folder of `src/universal_neurons` is a stage; `BELOW` says which stages each may import. The package's own
`__init__` and `__main__` (its face and its command line) may import anything.
"""

from __future__ import annotations

import argparse
import ast
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "universal_neurons"
PACKAGE = "universal_neurons"
STAGES = ("core", "config", "data", "models", "measures", "runs", "explorer", "book", "teaching")
BELOW: dict[str, set[str]] = {"core": set(), "config": {"core"}, "data": {"core", "config"},
                              "models": {"core", "config", "data"}, "measures": {"core"}}
BELOW["runs"] = BELOW["models"] | {"models", "measures"}
BELOW["explorer"] = BELOW["runs"] | {"runs"}
BELOW["book"] = BELOW["explorer"] | {"explorer"}
BELOW["teaching"] = BELOW["book"] | {"book"}


@dataclass(frozen=True)
class Import:
    source: str  # dotted module name, e.g. universal_neurons.runs.universality
    target: str  # the module it imports (a package's face when it imports a name from __init__)
    line: int
    in_function: bool

    @property
    def where(self) -> str:
        return f"{self.source.replace('.', '/')}.py:{self.line}"


def module_name(path: Path, src: Path = SRC) -> str:
    parts = path.relative_to(src.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules(src: Path) -> dict[str, Path]:
    return {module_name(p, src): p for p in sorted(src.rglob("*.py"))}


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The module that `name` (a dotted module or a module's attribute) belongs to, or None outside the package."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def _function_lines(tree: ast.AST) -> set[int]:
    inside = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            for sub in ast.walk(node):
                if isinstance(sub, (ast.Import, ast.ImportFrom)):
                    inside.add(id(sub))
    return inside


def imports(src: Path = SRC) -> list[Import]:
    """Every import from one module of the package to another, function-level ones included."""
    modules = _modules(src)
    found = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        inside = _function_lines(tree)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - (node.level - 1)]
                    stem = ".".join(base + ([node.module] if node.module else []))
                else:
                    stem = node.module or ""
                targets = [f"{stem}.{a.name}" if f"{stem}.{a.name}" in modules else stem for a in node.names]
            else:
                continue
            for t in dict.fromkeys(_resolve(t, modules) for t in targets):
                if t and t != name:
                    found.append(Import(name, t, node.lineno, id(node) in inside))
    return found


def cycles(edges: list[Import]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    graph: dict[str, set[str]] = {}
    for e in edges:
        graph.setdefault(e.source, set()).add(e.target)
        graph.setdefault(e.target, set())
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    import sys

    sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def stage(module: str) -> str | None:
    """The stage folder a module (or a stage's face) lives in; None for the package's face and its CLI."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in BELOW else None


def upward(edges: list[Import]) -> list[Import]:
    """Imports from a stage to a stage it may not use (a higher one), or to the package's face or top."""
    bad = []
    for e in edges:
        here = stage(e.source)
        if here is None:
            continue
        there = stage(e.target)
        if there != here and there not in BELOW[here]:
            bad.append(e)
    return bad


def sizes(src: Path = SRC) -> list[tuple[int, str]]:
    return sorted(((len(p.read_text().splitlines()), n) for n, p in _modules(src).items()), reverse=True)


def _ancestors(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:k]) for k in range(1, len(parts))]


def closure(starts, edges: list[Import]) -> set[str]:
    """The modules that importing `starts` may run: their imports, function-level ones included, and the faces of
    the packages on the way (importing a.b.c runs a/__init__ and a/b/__init__), transitively."""
    graph: dict[str, set[str]] = {}
    for e in edges:
        graph.setdefault(e.source, set()).add(e.target)
    seen, todo = set(), list(starts)
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        todo += [*graph.get(m, ()), *_ancestors(m)]
    return seen


def script_imports(path: Path, src: Path = SRC) -> set[str]:
    """The package's modules a script (a notebook kept as py:percent, say) imports."""
    modules = _modules(src)
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
        else:
            continue
        found |= {m for m in map(lambda n: _resolve(n, modules), names) if m}
    return found


# what the zoo's recipe runs (`universal-neurons zoo`: train, check the shipped zoo, save the untrained control)
ZOO_ENTRY = (f"{PACKAGE}.models.zoo", f"{PACKAGE}.models.release", f"{PACKAGE}.runs.control")
EXERCISE_ENTRY = (f"{PACKAGE}.teaching.build", f"{PACKAGE}.teaching.exercises")


def make_variables(notebooks, src: Path = SRC) -> str:
    """make variables: NB_CODE_<chapter> (the package files a notebook runs), ZOO_CODE and EXERCISE_CODE."""
    edges, files = imports(src), _modules(src)
    root = src.parents[1]

    def listed(mods) -> str:
        return " ".join(sorted(str(files[m].relative_to(root)) for m in mods))

    lines = ["# Written by scripts/import_graph.py --make: the package files each step runs (its import closure)."]
    for nb in sorted(map(Path, notebooks)):
        lines.append(f"NB_CODE_{nb.stem} := {listed(closure(script_imports(nb, src), edges))}")
    lines.append(f"ZOO_CODE := {listed(closure([*ZOO_ENTRY, PACKAGE + '.__main__'], []) | closure(ZOO_ENTRY, edges))}")
    lines.append(f"EXERCISE_CODE := {listed(closure(EXERCISE_ENTRY, edges))}")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--edges", action="store_true", help="list every import between two modules of the package")
    ap.add_argument("--src", type=Path, default=SRC, help="the package folder (default: this checkout's)")
    ap.add_argument("--make", type=Path, metavar="OUT", help="write the notebooks' code dependencies as make variables "
                    "into OUT (rewritten only when they change)")
    ap.add_argument("notebooks", nargs="*", type=Path, help="with --make: the notebooks (py:percent)")
    args = ap.parse_args(argv)
    if args.make:
        text = make_variables(args.notebooks, args.src)
        if not args.make.is_file() or args.make.read_text() != text:
            args.make.parent.mkdir(parents=True, exist_ok=True)
            tmp = args.make.with_name(f".{args.make.name}.tmp")
            tmp.write_text(text)
            tmp.replace(args.make)
        return 0
    edges = imports(args.src)
    if args.edges:
        for e in sorted(edges, key=lambda e: (e.source, e.line)):
            print(f"{e.where} -> {e.target}{'  (in a function)' if e.in_function else ''}")
        return 0
    loops, up, big = cycles(edges), upward(edges), sizes(args.src)
    top = [n for n in _modules(args.src) if n.count(".") == 1]
    print(f"modules: {len(big)} ({len(top)} at the package's top level)")
    print(f"imports between them: {len(edges)} ({sum(e.in_function for e in edges)} inside functions)")
    print(f"cycles: {len(loops)}" + "".join(f"\n  {len(c)} modules: {', '.join(m.split('.', 1)[1] for m in c)}"
                                           for c in loops))
    print(f"upward imports: {len(up)}" + "".join(f"\n  {e.where} -> {e.target}" for e in up))
    print("largest modules: " + ", ".join(f"{n.split('.', 1)[1]} {k}" for k, n in big[:3]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
