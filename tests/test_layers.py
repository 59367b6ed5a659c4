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
