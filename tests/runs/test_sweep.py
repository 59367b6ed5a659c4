"""The scale sweep: grid expansion, the driver (train, analyse, summarise every point), resume, another threshold
re-derived from the saved passes, bad input, and the shipped results the book shows."""

import json

import pandas as pd
import pytest

from universal_neurons import UserError
from universal_neurons.runs import sweep
from universal_neurons.runs import sweep_results

pytestmark = pytest.mark.usefixtures("one_thread")

# A tiny sweep on the smoke profile's corpus, tokenizer and rows: 2 widths x 1 depth x 1 budget x 2 seeds.
TINY = ["data_from=smoke", "tokenizer.vocab_size=2048", "model.n_ctx=64", "model.n_head=2",
        "grid.widths=[[16,64],[32,128]]", "grid.layers=[2]", "grid.tokens=[10240]",
        "train.seeds=[0,1]", "train.batch_size=8", "train.warmup_steps=5", "train.checkpoint_every=10",
        "analysis.n_tokens=4096", "snapshots.point=w32-l2-t10240", "snapshots.fractions=[0.5]"]
IDS = ["w16-l2-t10240", "w32-l2-t10240"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, smoke_data):
    return sweep.load_sweep("sweep", TINY, tmp_path_factory.mktemp("sweep"))


def mtimes(folder):
    return {str(p): p.stat().st_mtime_ns for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_grid_expands_to_derived_profiles_sharing_the_data(tiny, smoke):
    assert tiny.ids == IDS
    assert [p.name for p in tiny.points] == [f"sweep/{i}" for i in IDS]
    for p, d in zip(tiny.points, (16, 32)):
        m = p.cfg["model"]
        assert (m["d_model"], m["d_mlp"], m["n_layer"], m["n_head"], m["n_ctx"]) == (d, 4 * d, 2, 2, 64)
        assert p.cfg["train"]["tokens"] == 10240 and p.seeds == [0, 1]
        assert "grid" not in p.cfg and "snapshots" not in p.cfg
        assert p.point_dir == tiny.directory / p.point_id
        assert p.seed_dir(1) == p.point_dir / "zoo" / "seed-1"
        assert p.data_dir == smoke.data_dir and p.root == smoke.root  # one tokenizer and one set of rows
    assert tiny.snapshot_point == IDS[1] and sweep.snapshot_steps(tiny.points[1], [0.5]) == {0.5: 10}
    real = sweep.load_sweep("sweep")
    assert len(real.points) == 12 and real.points[0].name == "sweep/w32-l2-t600000"  # 3 widths x 2 depths x 2 budgets
    gpu = sweep.load_sweep("sweep-gpu")
    assert any(p.point["d_model"] == 768 and p.point["d_mlp"] == 3072 for p in gpu.points)


@pytest.mark.slow
@pytest.mark.long
def test_driver_runs_every_point_and_a_stopped_sweep_resumes_only_the_missing(tiny, monkeypatch):
    assert sweep_results.run_sweep(tiny, limit=1, progress=False) == [IDS[0]]  # stopped after the first point
    first = tiny.points[0].point_dir
    before = mtimes(first)
    assert (first / "summary.json").is_file() and not (tiny.points[1].point_dir / "summary.json").exists()
    assert set(pd.read_csv(tiny.results_path)["point"]) == {IDS[0]}

    real_analyse = sweep_results.analyse  # killed during the second point's analysis, after its training

    def killed(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(sweep_results, "analyse", killed)
    with pytest.raises(KeyboardInterrupt):
        sweep_results.run_sweep(tiny, progress=False)
    second = tiny.points[1]
    trained = {s: (second.seed_dir(s) / "model.safetensors").stat().st_mtime_ns for s in second.seeds}
    monkeypatch.setattr(sweep_results, "analyse", real_analyse)

    assert sweep_results.run_sweep(tiny, progress=False) == [IDS[1]]
    assert mtimes(first) == before, "a finished point is not touched again"
    assert {s: (second.seed_dir(s) / "model.safetensors").stat().st_mtime_ns for s in second.seeds} == trained
    assert sweep_results.run_sweep(tiny, progress=False) == []

    res = pd.read_csv(tiny.results_path)
    final = res[res["stage"] == "final"]
    assert set(final["point"]) == set(IDS)
    for pid in IDS:
        assert set(final.loc[final["point"] == pid, "pairing"]) == {"all", "p1", "control"}
    assert (final["d_model"].tolist()[:3], final["neurons"].iloc[-1]) == ([16, 16, 16], 2 * 128)
    for col in ("heldout_loss", "parameters", "tokens", "share_universal", "share_above_0.4", "excess_q99",
                "mean_corr_median", "mean_baseline_median", "control_q999", "share_above_control_q999"):
        assert final[col].notna().all(), col
    snap = res[res["stage"] == "snapshot"]
    assert set(snap["point"]) == {IDS[1]} and set(snap["tokens"]) == {10 * 8 * 64}
    assert (snap["heldout_loss"] > final.loc[final["point"] == IDS[1], "heldout_loss"].max()).all()
    assert (final["control_q999"] == final.groupby("point")["control_q999"].transform("first")).all()


@pytest.mark.slow
def test_another_threshold_rederives_the_rows_from_the_saved_passes(tiny, monkeypatch):
    """Rows at another threshold come from the saved maxima (correlate fails if called); each point's share
    above it equals numpy's on its neuron table (one partner: excess = max_corr_p1 - baseline_p1)."""
    import numpy as np

    from universal_neurons.runs import universality
    from universal_neurons.runs.control import CONTROL_SEED

    for p in tiny.points:
        if not sweep_results.point_done(tiny, p):
            sweep_results.run_sweep(tiny, points=[p.point_id], progress=False)
        assert (p.control_dir / f"untrained-seed-{CONTROL_SEED}" / "config.json").is_file()  # one control per point

    def not_again(*a, **k):
        raise AssertionError("the pass ran again")

    monkeypatch.setattr(universality, "correlate", not_again)
    assert not sweep_results.point_done(tiny, tiny.points[0], 0.2)
    assert sweep_results.run_sweep(tiny, threshold=0.2, progress=False) == IDS
    assert sweep_results.point_done(tiny, tiny.points[0], 0.2) and not sweep_results.point_done(tiny, tiny.points[0])
    res = pd.read_csv(tiny.results_path)
    assert (res["threshold"] == 0.2).all() and set(res["point"]) == set(IDS)
    for p in tiny.points:
        n = pd.read_csv(p.tables_dir / "neurons.csv")
        live = ~n["is_dead"].to_numpy()
        ex = (n["max_corr_p1"].to_numpy(np.float64) - n["baseline_p1"].to_numpy(np.float64))[live]
        rows = res[(res["point"] == p.point_id) & (res["stage"] == "final") & res["pairing"].isin(["all", "p1"])]
        assert len(rows) == 2 and (rows["n_universal"] == int((ex > 0.2).sum())).all()
        np.testing.assert_allclose(rows["share_universal"], (ex > 0.2).mean(), rtol=0, atol=1e-12)


@pytest.mark.slow
def test_snapshots_come_from_the_same_run_as_the_final_model(tiny, smoke_data, tmp_path):
    from universal_neurons.models.zoo import train_seed

    point = tiny.points[1]
    if not sweep_results.point_done(tiny, point):
        sweep_results.run_sweep(tiny, points=[point.point_id], progress=False)
    train_rows, heldout, tdir = smoke_data
    straight = train_seed(0, tmp_path / "seed-0", train_rows, heldout, point.cfg["model"], point.cfg["train"], tdir,
                          progress=False)
    a = (straight / "model.safetensors").read_bytes()
    assert a == (point.seed_dir(0) / "model.safetensors").read_bytes()  # stopped and resumed = uninterrupted
    info = json.loads((sweep.snapshot_dir(point, 0.5) / "seed-0" / "snapshot.json").read_text())
    assert info["step"] == 10 and info["total_steps"] == 20
    assert not (point.point_dir / "snapshots" / ".run").exists()


@pytest.mark.parametrize("change, message", [
    (["grid.widths=[[16]]"], "d_model, d_mlp"),
    (["grid.widths=[]"], "non-empty list"),
    (["grid.layers=4"], "non-empty list"),
    (["grid.tokens=[-5]"], "positive whole number"),
    (["grid.widths=[[18,64,4]]"], "not divisible"),
    (["grid.widths=[[16,64],[16,64,4]]"], "appears twice"),
    (["snapshots.point=w99-l2-t10240"], "not a grid point"),
    (["snapshots.fractions=[1.5]"], "between 0 and 1"),
    (["snapshots.fractions=[0.5,0.51]"], "not distinct"),
    (["data_from=nope"], "not another profile"),
    (["tokenizer.vocab_size=4096"], "differs from profile"),
])
def test_bad_grid_input_fails_with_one_line(tmp_path, change, message):
    with pytest.raises(UserError, match=message) as e:
        sweep.load_sweep("sweep", TINY + change, tmp_path)
    assert "\n" not in str(e.value)


def test_a_profile_without_a_grid_and_the_status_listing(tmp_path):
    from universal_neurons import load_profile

    with pytest.raises(UserError, match="no grid"):
        sweep.expand(load_profile("smoke"), tmp_path)
    table = sweep_results.status(sweep.load_sweep("sweep", TINY, tmp_path))
    assert table["point"].tolist() == IDS and not table["done"].any()
    assert table["snapshots"].tolist() == [False, True]
    with pytest.raises(UserError, match="a sweep's threshold is a number") as e:
        sweep_results.status(sweep.load_sweep("sweep", TINY + ["book.threshold=control"], tmp_path))
    assert "\n" not in str(e.value)


def test_grid_variants_change_training_settings_one_point_each(tmp_path):
    sw = sweep.load_sweep("recipe", directory=tmp_path)
    assert sw.ids == ["w128-l2-t3276800-cosine", "w128-l2-t3276800-wsd", "w128-m1024-l2-t3276800-cosine",
                      "w128-m1024-l2-t3276800-wsd"]
    wsd = sw.point("w128-m1024-l2-t3276800-wsd")
    assert wsd.cfg["train"]["schedule"] == "wsd" and wsd.cfg["model"]["d_mlp"] == 1024
    assert sw.point("w128-l2-t3276800-cosine").cfg["train"]["schedule"] == "cosine"
    with pytest.raises(UserError, match="unknown train key") as e:
        sweep.load_sweep("recipe", ["grid.variants=[{id: x, learning_rate: 1}]"], tmp_path)
    assert "\n" not in str(e.value)


def test_the_book_shows_the_shipped_results_when_none_were_computed_here(tmp_path):
    sw = sweep.load_sweep("recipe", directory=tmp_path)  # an empty folder: nothing computed on this machine
    table, source = sweep_results.results_for_book(sw)
    shipped = pd.read_csv(sweep_results.shipped_results_path(sw))
    prov = json.loads(sweep_results.shipped_results_path(sw).with_suffix(".json").read_text())
    assert len(table) == len(shipped) and "results/recipe.csv" in source and prov["cpu"] in source
    assert set(table["point"]) <= set(sw.ids)
    assert sorted(prov["points_done"]) == sorted(table["point"].unique())
