"""Student and instructor builds of the exercises, from the chapter sources (teaching mode).

A chapter source marks each exercise with three cells carrying `exercise="<name>"` in their metadata: a markdown
cell (the task), the solution (`solution=true`) and the check (`exercises.check(...)`); all three are tagged
remove-cell, so the chapter's page does not show them (they run with the chapter, a self-test of seconds).
`build(out)` writes, per chapter that has exercises, `out/student/<chapter>.ipynb` (each solution replaced by its
signature, docstring and `raise NotImplementedError`, the check after it) and `out/instructor/<chapter>.ipynb`
(the solutions, tagged hide-input so that the book folds them), both with the online setup cell first (Colab,
Binder) and a header listing objectives, difficulty and time; `execute` runs a notebook with nbclient.

`python -m universal_neurons.teaching.build --out DIR [--execute]` (what `make exercises` runs). With --execute, an
instructor notebook whose text and package code are those it was last executed with (`run_digest`, kept in its
metadata) is kept as it is, not executed again: editing one chapter re-executes that chapter's exercises only.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import sys
from pathlib import Path

from ..book.online import add_setup_cell, book_config, repository
from ..core.atomic import atomic_path
from ..core.checksum import files_sha256
from ..core.errors import UserError
from ..core.paths import project_dir
from .catalog import EXERCISES, Exercise

STARS = {1: "★☆☆", 2: "★★☆", 3: "★★★"}
SOLUTION_PROMPTS = {"code_prompt_show": "Show solution", "code_prompt_hide": "Hide solution"}  # the book's toggle


def _source_path(chapter: str, root=None) -> Path:
    path = Path(root or project_dir()) / "notebooks" / f"{chapter}.py"
    if not path.is_file():
        raise UserError(f"{path} not found: the exercises are built from the checkout's chapter sources; run from "
                        "the repository's root (or pass its path)")
    return path


def exercise_cells(chapter: str, root=None) -> list:
    """The cells of a chapter source that belong to an exercise, in order (jupytext cells, metadata kept)."""
    import jupytext

    nb = jupytext.read(_source_path(chapter, root), fmt="py:percent")
    return [c for c in nb.cells if "exercise" in c.metadata]


def solution_source(ex: Exercise, root=None) -> str:
    """The source of exercise `ex`'s solution cell (one-line UserError if the chapter source lacks it)."""
    cells = [c for c in exercise_cells(ex.chapter, root) if c.metadata.get("exercise") == ex.name
             and c.metadata.get("solution")]
    if len(cells) != 1:
        raise UserError(f"notebooks/{ex.chapter}.py has {len(cells)} solution cells of exercise {ex.name!r}; mark "
                        f"exactly one with exercise=\"{ex.name}\" solution=true")
    return cells[0].source


def stub(source: str, name: str) -> str:
    """The student's version of a solution cell: its imports and other top-level lines kept, every function
    reduced to its signature and docstring and a `raise NotImplementedError` naming the exercise."""
    tree = ast.parse(source)
    lines = source.splitlines()
    out, pos = [], 0
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef):
            continue
        first = min([node.lineno, *(d.lineno for d in node.decorator_list)]) - 1
        out += lines[pos:first]
        body = node.body
        doc = body[0] if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None),
                                                                               ast.Constant) else None
        head_end = (doc.end_lineno if doc else body[0].lineno - 1)
        out += lines[first:head_end]
        indent = " " * body[0].col_offset
        out.append(f'{indent}raise NotImplementedError("exercise {name}: write {node.name} here, then run the check '
                   'below")')
        pos = node.end_lineno
    out += lines[pos:]
    return "\n".join(out).rstrip() + "\n"


def chapter_title(chapter: str, root=None) -> str:
    """The chapter's title: the first level-1 heading of its source."""
    import jupytext

    for c in jupytext.read(_source_path(chapter, root), fmt="py:percent").cells:
        if c.cell_type == "markdown" and c.source.startswith("# "):
            return c.source.splitlines()[0][2:].strip()
    return chapter


def _header(chapter: str, exercises: list[Exercise], student: bool, root=None) -> str:
    rows = "\n".join(f"| {k}. {e.title} | `{e.function}` | {'; '.join(e.objectives)} | {STARS[e.difficulty]} | "
                     f"{e.minutes} min |" for k, e in enumerate(exercises, 1))
    how = ("Each exercise asks for one function. Write it where the cell raises `NotImplementedError`, then run the "
           "cell after it: the check runs your function on small inputs against the package's own implementation, "
           "says which steps passed and, when one fails, gives a hint." if student else
           "The solutions are folded: open one with the button beside it. The check after each solution runs it "
           "against the package's own implementation (what the chapter runs) on small inputs.")
    total = sum(e.minutes for e in exercises)
    return (f"# Exercises: {chapter_title(chapter, root)}\n\n{how} In all about {total} minutes; they run on a CPU in "
            f"seconds (small random models, no download).\n\n| exercise | function | objectives | difficulty | time |\n"
            f"|---|---|---|---|---|\n{rows}\n")


def notebook(chapter: str, student: bool, root=None):
    """The exercise notebook of one chapter (nbformat v4), the student's or the instructor's."""
    import nbformat

    cells = exercise_cells(chapter, root)
    names = list(dict.fromkeys(c.metadata["exercise"] for c in cells))
    unknown = [n for n in names if n not in EXERCISES]
    if unknown:
        raise UserError(f"notebooks/{chapter}.py marks unknown exercise(s) {unknown}; register them in "
                        "universal_neurons.teaching.exercises.EXERCISES")
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.cells.append(nbformat.v4.new_markdown_cell(_header(chapter, [EXERCISES[n] for n in names], student, root)))
    nb.cells.append(nbformat.v4.new_code_cell("from universal_neurons.teaching import exercises", metadata={
        "tags": ["remove-input"]}))
    for k, name in enumerate(names, 1):
        ex = EXERCISES[name]
        meta = (f"\n\n*Objectives:* {'; '.join(ex.objectives)}. *Difficulty:* {STARS[ex.difficulty]} · *about "
                f"{ex.minutes} minutes.*")
        for c in (c for c in cells if c.metadata["exercise"] == name):
            if c.cell_type == "markdown":
                text = c.source.replace("### Exercise:", f"## Exercise {k}:", 1)
                nb.cells.append(nbformat.v4.new_markdown_cell(text + meta))
            elif c.metadata.get("solution"):
                src = stub(c.source, name) if student else c.source
                cell_meta = {"exercise": name, "solution": not student} | ({} if student else {
                    "tags": ["hide-input"], "mystnb": SOLUTION_PROMPTS})
                nb.cells.append(nbformat.v4.new_code_cell(src, metadata=cell_meta))
            else:
                nb.cells.append(nbformat.v4.new_code_cell(c.source, metadata={"exercise": name}))
    return nb


def chapters_with_exercises() -> list[str]:
    """The chapters that hold exercises, in the book's order (that of EXERCISES)."""
    return list(dict.fromkeys(e.chapter for e in EXERCISES.values()))


def build(out, root=None, beside: bool = False) -> list[Path]:
    """Write out/student/<chapter>.ipynb and out/instructor/<chapter>.ipynb (not executed) for every chapter
    with exercises, each with the online setup cell first; returns the paths written. `beside`: the instructor
    notebooks go to `.<chapter>.ipynb.new` beside the executed ones, for `execute_due`."""
    import nbformat

    url, branch = repository(book_config(Path(root or ".") / "_config.yml")) or (None, None)
    written = []
    for chapter in chapters_with_exercises():
        for kind in ("student", "instructor"):
            path = Path(out) / kind / (f".{chapter}.ipynb.new" if beside and kind == "instructor" else f"{chapter}.ipynb")
            with atomic_path(path) as tmp:
                nbformat.write(notebook(chapter, kind == "student", root), str(tmp))
            add_setup_cell(path, url, branch)
            written.append(path)
    return written


DIGEST_KEY = "universal_neurons_run_digest"  # in an executed instructor notebook's metadata


def package_digest() -> str:
    """sha256 over the package's Python files (names and bytes): the code an exercise's checks run."""
    root = Path(__file__).resolve().parent.parent
    return files_sha256(root, sorted(str(f.relative_to(root)) for f in root.rglob("*.py")))


def run_digest(path, code: str) -> str:
    """What an instructor notebook's execution depends on: its cells' kinds, sources and metadata (not their random
    ids) and the package's code digest."""
    nb = json.loads(Path(path).read_text())
    cells = [[c.get("cell_type"), "".join(c.get("source", "")), c.get("metadata", {})] for c in nb.get("cells", [])]
    return hashlib.sha256(json.dumps([cells, code], sort_keys=True).encode()).hexdigest()


def _executed_digest(path: Path) -> str | None:
    try:
        return json.loads(path.read_text())["metadata"].get(DIGEST_KEY)
    except (OSError, ValueError, KeyError, AttributeError):
        return None


def execute_due(paths, code: str | None = None, jobs: int = 2) -> list[Path]:
    """Execute (`jobs` kernels at a time) those of the unexecuted notebooks `paths` (written by `build` beside the
    executed ones as `.<name>.new`) whose run digest differs from their executed notebook's, each into its visible
    name `<name>`, and delete every `.new`; an executed notebook whose digest matches is kept as it is. Returns the
    visible paths executed."""
    from concurrent.futures import ProcessPoolExecutor

    code = package_digest() if code is None else code
    due = []
    for new in paths:
        path = new.with_name(new.name.removeprefix(".").removesuffix(".new"))
        digest = run_digest(new, code)
        if _executed_digest(path) == digest:
            new.unlink()
        else:
            due.append((new, path, digest))
    if due:
        with ProcessPoolExecutor(max(1, min(jobs, len(due)))) as pool:
            list(pool.map(_execute_stamped, *zip(*due)))
    return [path for _, path, _ in due]


def _execute_stamped(new: Path, path: Path, digest: str) -> None:
    execute(new, out=path, metadata={DIGEST_KEY: digest})
    new.unlink()


def execute(path, out=None, timeout: int = 600, metadata: dict | None = None):
    """Run a notebook with nbclient in the current directory (so that the checkout's package is used); writes
    the executed notebook to `out` (default: in place), with `metadata` added to its own. Raises nbclient's
    CellExecutionError on a failing cell."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(str(path), as_version=4)
    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": "."}}).execute()
    nb.metadata.update(metadata or {})
    with atomic_path(out or path) as tmp:
        nbformat.write(nb, str(tmp))
    return nb


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m universal_neurons.teaching.build", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="the folder that receives student/ and instructor/")
    ap.add_argument("--execute", action="store_true", help="also execute the instructor notebooks (in place)")
    args = ap.parse_args(argv)
    try:
        paths = build(args.out, beside=args.execute)
        if args.execute:  # two kernels at a time (their checks are small: mostly imports, one core each)
            new = [p for p in paths if p.parent.name == "instructor"]
            ran = execute_due(new, jobs=max(1, min(2, os.cpu_count() or 1)))
            paths = [p for p in paths if p not in new] + [p.with_name(p.name.removeprefix(".").removesuffix(".new"))
                                                          for p in new]
            print(f"executed {len(ran)} of {len(new)} instructor notebooks (the others unchanged since executed)")
        for p in paths:
            print(p)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
