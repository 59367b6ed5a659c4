"""Emergence over training: a retrain with snapshots, measured step by step (resumable), its shipped form
checked against its checksum, and its numbers against a direct numpy float64 computation."""

import json

import numpy as np
import pytest

from universal_neurons import UserError, load_profile
from universal_neurons.runs import emergence

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def retrained(tmp_path_factory, smoke_data, one_thread):
    """Two seeds of a shortened smoke recipe retrained with 3 snapshots, analysed (in a temporary root)."""
    prof = load_profile("smoke", "train.tokens=40000 train.seeds=[0,1] analysis.n_tokens=4000 book.robust_tokens=4000")
    where = tmp_path_factory.mktemp("emergence")
    mp = pytest.MonkeyPatch()
    mp.setattr(emergence, "root", lambda profile: where)
    mp.setattr(emergence, "_shipped_path", lambda profile, suffix: where / "shipped" / f"emergence-{profile.name}{suffix}")
    emergence.train(prof, snapshots=3, progress=False)
    js = emergence.analyse(prof, progress=False)
    yield prof, where, js
    mp.undo()


@pytest.mark.long
def test_every_step_is_measured_and_the_final_step_is_the_final_member(retrained):
    from universal_neurons.models.zoo import snapshot_steps

    prof, where, js = retrained
    info = json.loads(js.read_text())
    total = 40000 // (prof.cfg["train"]["batch_size"] * prof.cfg["model"]["n_ctx"])
    assert info["steps"] == snapshot_steps(total, 3)
    res = emergence.load(prof)
    n = prof.cfg["model"]["n_layer"] * prof.cfg["model"]["d_mlp"]
    assert res["real"].shape == res["base"].shape == (len(info["steps"]), 1, n)
    assert res["tokens"][-1] == total * prof.cfg["train"]["batch_size"] * prof.cfg["model"]["n_ctx"]
    assert res["loss"][-1].max() < res["loss"][0].min() - 0.5, "the models learn between step 0 and the last"
    final = json.loads((where / "seed-0" / "training_log.json").read_text())["files"]["model.safetensors"]
    snap = json.loads((where / "snapshots" / "seed-0" / f"step-{info['steps'][-1]:06d}" / "training_log.json")
                      .read_text())["files"]["model.safetensors"]
    assert final == snap == info["members"]["0"]["model_sha256"]


def test_a_step_matches_numpy_float64(retrained):
    """The signed max of the last step against a direct float64 correlation of the two models' activations on
    the tokens the pass keeps."""
    from universal_neurons.measures import activations
    from universal_neurons import data
    from universal_neurons.models.loading import load_model

    prof, where, js = retrained
    info = json.loads(js.read_text())
    step = info["steps"][-1]
    models = [load_model(where / "snapshots" / f"seed-{s}" / f"step-{step:06d}") for s in (0, 1)]
    tokens = np.asarray(data.analysis_rows(prof, progress=False).tokens)
    plan = activations.plan_pass(models, ["a", "b"], tokens, info["n_tokens"])
    chunks = [activations.chunk_activations(models, ["a", "b"], plan, c, 64, "cpu") for c in range(len(plan.chunks))]
    a, b = (np.concatenate([ch[m].numpy() for ch in chunks]).astype(np.float64) for m in (0, 1))
    a, b = a - a.mean(0), b - b.mean(0)
    corr = (a.T @ b) / np.outer(np.linalg.norm(a, axis=0), np.linalg.norm(b, axis=0))
    want = np.nanmax(np.where(np.isfinite(corr), corr, np.nan), axis=1)
    got = emergence.load(prof)["real"][-1, 0]
    live = np.isfinite(want)
    np.testing.assert_allclose(got[live], want[live], atol=1e-5)


def test_an_interrupted_analysis_reuses_its_finished_steps(retrained):
    prof, where, js = retrained
    steps = sorted((where / "steps").glob("step-*.npz"))
    stamps = {f.name: f.stat().st_mtime_ns for f in steps}
    steps[-1].unlink()  # as if killed before the last step
    emergence.analyse(prof, progress=False)
    again = {f.name: f.stat().st_mtime_ns for f in sorted((where / "steps").glob("step-*.npz"))}
    assert set(again) == set(stamps)
    assert all(again[k] == stamps[k] for k in list(stamps)[:-1]), "finished steps were recomputed"


def test_shipped_results_are_checked_and_other_recipes_ignored(retrained, tmp_path):
    prof, where, js = retrained
    shipped = emergence.ship(prof)
    (where / "emergence.json").rename(where / "own.json")  # only the shipped copy is left
    try:
        assert emergence.load(prof) is not None
        other = load_profile("smoke", "train.tokens=50000 train.seeds=[0,1]")
        assert emergence.load(other) is None  # another recipe: not these results
        npz = shipped.with_suffix(".npz")
        npz.write_bytes(npz.read_bytes()[:-10])
        with pytest.raises(UserError, match="sha256"):
            emergence.load(prof)
    finally:
        (where / "own.json").rename(where / "emergence.json")


def test_the_analysis_needs_the_reference_and_a_partner(tmp_path, monkeypatch):
    prof = load_profile("smoke")
    monkeypatch.setattr(emergence, "root", lambda profile: tmp_path)
    with pytest.raises(UserError, match="make emergence PROFILE=smoke"):
        emergence.analyse(prof, progress=False)
    with pytest.raises(UserError, match="not in the profile's train.seeds"):
        emergence.jobs(prof, seeds=[7])


def test_the_robustness_chapter_shows_the_emergence_it_finds(retrained):
    """The section's table follows from the arrays: each step's count is the neurons whose excess (mean over
    partners of the max minus the baseline) passes the threshold; its figures draw."""
    import matplotlib.pyplot as plt

    from universal_neurons.book.chapters import robustness as chapter
    from universal_neurons.book.publish import Chapter

    prof, where, js = retrained
    res = emergence.load(prof)
    thr = float(np.nanquantile(emergence.excess(res)[-1], 0.9))  # a tenth of the neurons at the end, whatever the scale
    glue, table, data = chapter.emergence_view(prof, thr)
    ex = res["real"].mean(1) - res["base"].mean(1)
    assert table["universal"].tolist() == [int((e > thr).sum()) for e in ex]
    final = ex[-1] > thr
    assert table["final universal, universal here"].tolist() == [int(((e > thr) & final).sum()) for e in ex]
    d = prof.cfg["model"]["d_mlp"]
    assert (table["layer 0"] + table["layer 1"]).tolist() == table["universal"].tolist()
    assert table["layer 1"].iloc[-1] == int((ex[-1][d:] > thr).sum())
    assert f"{len(res['steps'])} steps" in glue["rob_emerge_md"].data
    ch = Chapter("robustness", prof, data={"emergence": data})
    for fig in (chapter.emergence_figure(ch), chapter.emergence_neurons_figure(ch)):
        assert len(fig.axes) >= 2
        plt.close(fig)


def test_the_emergence_text_when_no_neuron_is_ever_universal(retrained):
    from universal_neurons.book.chapters import robustness as chapter

    prof, where, js = retrained
    glue, table, _ = chapter.emergence_view(prof, 0.999)
    text = glue["rob_emerge_md"].data
    assert table["universal"].sum() == 0
    assert text.startswith("The zoo's recipe was retrained here") and "at step 0 (initialisation) 0." in text


def test_the_emergence_command_locks_only_its_own_folder():
    """Hours of training hold <run>/emergence/.lock, not the run folder: `make book` can run meanwhile."""
    from types import SimpleNamespace

    from universal_neurons.__main__ import _written_folders

    prof = load_profile("default")
    assert _written_folders(prof, SimpleNamespace(command="emergence")) == [emergence.root(prof)]
    assert prof.root in _written_folders(prof, SimpleNamespace(command="zoo"))
