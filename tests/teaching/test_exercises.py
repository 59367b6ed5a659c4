"""Teaching mode: every check passes on its reference solution (imported from the chapter source) and fails, with
the hint of the usual mistake, on a plausible wrong answer; the student and instructor builds."""

import math

import nbformat
import numpy as np
import pytest
import torch

from universal_neurons import UserError
from universal_neurons.teaching import catalog
from universal_neurons.teaching import exercises
from universal_neurons.teaching import build


@pytest.mark.parametrize("name", list(catalog.EXERCISES))
def test_each_check_passes_on_its_reference_solution(name, capsys, one_thread):
    result = exercises.check(name, exercises.solution(name))
    assert result and isinstance(result, exercises.Passed)
    out = capsys.readouterr().out
    assert out.count("passed:") >= 2 and f"passed ({out.count('passed:')} steps)." in out
    assert "True" not in out and not hasattr(result, "_repr_html_")  # a notebook shows the lines, no bare True


def cosine_pearson(batches):  # no centring
    a, b = (np.concatenate(x) for x in zip(*batches))
    return (a.T @ b) / np.outer(np.linalg.norm(a, axis=0), np.linalg.norm(b, axis=0))


def abs_excess(corr, baseline):  # the max of |r| instead of the signed max
    return np.mean([np.abs(c).max(1) for c in corr], 0) - np.mean([np.abs(c).max(1) for c in baseline], 0)


def unfolded_norm(ln_w, w_in):  # the LayerNorm not folded in
    return w_in.double().norm(dim=0)


def swapped_vr(v, y):  # β weighing the wrong group
    v, y = np.asarray(v, float), np.asarray(y, bool)
    b = y.mean()
    return 1 - (b * v[~y].var() + (1 - b) * v[y].var()) / v.var()


def leaky_hook(model, tokens, layer, neuron, value):  # a hook left on the model
    def fix(act, hook):
        act[..., neuron] = value
        return act

    model.add_hook(f"blocks.{layer}.mlp.hook_post", fix)
    return model(tokens)


def unscaled_bos(w_out, w_q, k_bos):  # no 1/sqrt(d_head)
    d = w_out.double() / w_out.double().norm()
    return (torch.einsum("m,hmd->hd", d, w_q.double()) * k_bos.double()).sum(-1)


WRONG = [("pearson", cosine_pearson, "subtract the means"), ("excess", abs_excess, "max of |r|"),
         ("ln_fold", unfolded_norm, "fold the LayerNorm first"), ("vr", swapped_vr, "weights are swapped"),
         ("hook", leaky_hook, "hook was left on the model"), ("bos", unscaled_bos, "sqrt(d_head)")]


@pytest.mark.parametrize("name, wrong, hint", WRONG, ids=[w[0] for w in WRONG])
def test_each_check_fails_with_its_hint_on_the_usual_mistake(name, wrong, hint, one_thread):
    with pytest.raises(exercises.ExerciseFailed, match="hint:") as e:
        exercises.check(name, wrong)
    assert hint in str(e.value)


def test_an_unrelated_wrong_answer_fails_without_a_false_hint(one_thread):
    with pytest.raises(exercises.ExerciseFailed) as e:
        exercises.check("vr", lambda v, y: 0.123)
    assert "hint:" not in str(e.value)
    with pytest.raises(UserError, match="unknown exercise"):
        exercises.check("nope", print)


def test_the_stub_keeps_imports_signature_and_docstring():
    src = build.solution_source(catalog.exercise("pearson"))
    stub = build.stub(src, "pearson")
    ns = {}
    exec(stub, ns)
    assert ns["streaming_pearson"].__doc__ == exercises.solution("pearson").__doc__
    assert "import numpy as np" in stub and "np.outer" not in stub
    with pytest.raises(NotImplementedError, match="exercise pearson"):
        ns["streaming_pearson"]([])
    assert math.isclose(len(stub.splitlines()), 6, abs_tol=2)


def test_every_registered_exercise_is_marked_once_in_its_chapter():
    for ex in catalog.EXERCISES.values():
        cells = [c for c in build.exercise_cells(ex.chapter) if c.metadata["exercise"] == ex.name]
        assert [c.cell_type for c in cells] == ["markdown", "code", "code"], ex.name
        assert all("remove-cell" in c.metadata["tags"] for c in cells)  # not on the chapter's page
        assert f'exercises.check("{ex.name}", {ex.function})' in cells[2].source


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("exercises")
    return out, build.build(out)


def test_the_builds_have_every_exercise_with_the_setup_cell_first(built):
    out, paths = built
    chapters = build.chapters_with_exercises()
    assert sorted(p.relative_to(out).as_posix() for p in paths) == sorted(
        f"{k}/{c}.ipynb" for k in ("student", "instructor") for c in chapters)
    for c in chapters:
        student, instructor = (nbformat.read(str(out / k / f"{c}.ipynb"), as_version=4) for k in ("student", "instructor"))
        assert "setup" in student.cells[0].metadata["tags"] and "Objectives" not in student.cells[1].source
        sol = [x for x in instructor.cells if x.metadata.get("solution")]
        stubs = [x for x in student.cells if x.cell_type == "code" and "raise NotImplementedError" in x.source]
        assert len(sol) == len(stubs) == sum(e.chapter == c for e in catalog.EXERCISES.values())
        assert all("hide-input" in x.metadata["tags"] for x in sol)  # folded in the book,
        assert all(x.metadata["mystnb"]["code_prompt_show"] == "Show solution" for x in sol)  # behind "Show solution"


@pytest.mark.long
def test_instructor_notebooks_run_and_student_notebooks_stop_at_the_first_exercise(built):
    from nbclient.exceptions import CellExecutionError

    out, _ = built
    for c in build.chapters_with_exercises():
        nb = build.execute(out / "instructor" / f"{c}.ipynb")
        text = "".join(o.get("text", "") for cell in nb.cells for o in cell.get("outputs", []))
        assert text.count("All checks of") == sum(e.chapter == c for e in catalog.EXERCISES.values())
        with pytest.raises(CellExecutionError) as e:
            build.execute(out / "student" / f"{c}.ipynb", out=out / f"student-{c}-run.ipynb")
        assert "NotImplementedError" in str(e.value)
        first = next(e for e in catalog.EXERCISES.values() if e.chapter == c)
        assert f"exercise {first.name}" in str(e.value)


def test_only_the_notebooks_whose_text_or_code_changed_are_executed_again(tmp_path):
    """execute_due on trivial notebooks written as build(beside=True) writes them: first both run (each stamped
    with its run digest); then, with b's text changed, only b; then, with the package code's digest changed, both.
    A kept notebook keeps its executed bytes; no `.new` file is left."""
    def write(name, source):
        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
        nb.cells.append(nbformat.v4.new_code_cell(source))
        path = tmp_path / f".{name}.ipynb.new"
        nbformat.write(nb, str(path))
        return path

    new = [write("a", "print(1 + 1)"), write("b", "print(2 + 2)")]
    assert build.execute_due(new, code="c1") == [tmp_path / "a.ipynb", tmp_path / "b.ipynb"]
    a = nbformat.read(str(tmp_path / "a.ipynb"), as_version=4)
    assert a.cells[0].outputs[0]["text"] == "2\n" and a.metadata[build.DIGEST_KEY]
    executed_a = (tmp_path / "a.ipynb").read_bytes()
    new = [write("a", "print(1 + 1)"), write("b", "print(3 + 3)")]
    assert build.execute_due(new, code="c1") == [tmp_path / "b.ipynb"]
    assert (tmp_path / "a.ipynb").read_bytes() == executed_a
    assert nbformat.read(str(tmp_path / "b.ipynb"), as_version=4).cells[0].outputs[0]["text"] == "6\n"
    new = [write("a", "print(1 + 1)"), write("b", "print(3 + 3)")]
    assert build.execute_due(new, code="c2") == [tmp_path / "a.ipynb", tmp_path / "b.ipynb"]
    assert not list(tmp_path.glob(".*.new"))
