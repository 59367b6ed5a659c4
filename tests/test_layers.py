"""The house rule: a folder of the package is a stage, and no import reaches a higher stage or forms a cycle, not
even an import written inside a function (scripts/import_graph.py walks every one)."""

import importlib.util
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("import_graph", ROOT / "scripts" / "import_graph.py")
graph = sys.modules["import_graph"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(graph)


def test_no_import_reaches_a_higher_stage_or_closes_a_cycle():
    edges = graph.imports()
    assert len(edges) > 300 and any(e.in_function for e in edges)  # the walk sees the package, functions included
    assert graph.cycles(edges) == []
    assert [f"{e.where} -> {e.target}" for e in graph.upward(edges)] == []


def test_every_module_lives_in_a_stage():
    top = sorted(p.name for p in graph.SRC.glob("*.py"))
    assert top == ["__init__.py", "__main__.py"]
    folders = {p.name for p in graph.SRC.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    assert folders == set(graph.STAGES) == set(graph.BELOW)


def _planted(tmp_path, rel: str, line: str, inside_function: bool) -> Path:
    src = tmp_path / "universal_neurons"
    shutil.copytree(graph.SRC, src, ignore=shutil.ignore_patterns("__pycache__"))
    text = f"\n\ndef _planted():\n    {line}\n" if inside_function else f"\n{line}\n"
    with open(src / rel, "a") as f:
        f.write(text)
    return src


def test_an_upward_import_is_caught_even_inside_a_function(tmp_path):
    src = _planted(tmp_path, "config/profile.py", "from ..runs import control", inside_function=True)
    up = graph.upward(graph.imports(src))
    assert [(e.source, e.target, e.in_function) for e in up] == [
        ("universal_neurons.config.profile", "universal_neurons.runs.control", True)]
    face = _planted(tmp_path / "face", "measures/nulls.py", "from .. import load_profile", inside_function=False)
    assert [e.target for e in graph.upward(graph.imports(face))] == ["universal_neurons"]  # the package's face


def test_a_cycle_is_caught(tmp_path):
    src = _planted(tmp_path, "core/errors.py", "from .atomic import write_json", inside_function=True)
    loops = graph.cycles(graph.imports(src))
    assert any({"universal_neurons.core.errors", "universal_neurons.core.atomic"} <= set(c) for c in loops)
    assert graph.upward(graph.imports(src)) == []  # within one stage: a cycle, not an upward import


def test_a_notebooks_code_dependencies_cover_what_it_imports(tmp_path):
    """NB_CODE_<chapter> (what make reruns a notebook for) holds every package module that importing the notebook's
    modules loads (read from sys.modules in a fresh interpreter), and leaves out the other chapters."""
    import subprocess

    notebook = ROOT / "notebooks" / "mysteries.py"
    out = tmp_path / "deps.mk"
    assert graph.main(["--make", str(out), str(notebook)]) == 0
    listed = dict(line.split(" := ") for line in out.read_text().splitlines()[1:])
    files = set(listed["NB_CODE_mysteries"].split())
    mods = sorted(graph.script_imports(notebook))
    code = (f"import importlib, sys\nfor m in {mods!r}: importlib.import_module(m)\n"
            "print('\\n'.join(m.__file__ for n, m in sys.modules.items() if n.startswith('universal_neurons')))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    loaded = {str(Path(f).resolve().relative_to(ROOT)) for f in loaded.split()}
    assert loaded and loaded <= files, sorted(loaded - files)
    assert "src/universal_neurons/book/chapters/mysteries.py" in files
    assert not {"src/universal_neurons/book/chapters/robustness.py", "src/universal_neurons/runs/families_pass.py",
                "src/universal_neurons/teaching/build.py"} & files
    assert out.read_text() == graph.make_variables([notebook])  # rewritten only when it changes
