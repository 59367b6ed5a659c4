"""Universality, the tables: the cached profile run, its tables re-derived at another threshold from the saved
maxima (against a fresh pass and numpy), tables of an older run, the untrained control and the threshold policy."""

import json
import shutil

import numpy as np
import pytest

from tiny_zoo import MODEL, N_TOKENS, models, tiny  # noqa: F401 (fixtures)
from universal_neurons import UserError
from universal_neurons.runs.neuron_tables import neuron_table
from universal_neurons.measures.maxima import correlate

pytestmark = pytest.mark.usefixtures("one_thread")


ANALYSIS = {"reference_seed": 0, "n_tokens": N_TOKENS, "batch_size": 16, "partners": None, "baseline": "gaussian",
            "baseline_seed": 0, "control": True, "chunk_tokens": 1024, "max_accumulator_gb": 4.0}


@pytest.fixture
def tiny_profile(tiny, monkeypatch):
    """Profile 'tiny' (its zoo, its held-out rows) with every analysis key, in a fresh tables folder."""
    from universal_neurons.config.profile import Profile

    monkeypatch.setenv("UN_ARTIFACTS", str(tiny["root"] / "artifacts"))
    monkeypatch.setattr("universal_neurons.data.prepare.token_rows", lambda profile, split, progress=True: tiny["rows"])
    prof = Profile("tiny", {"train": {"seeds": [0, 1]}, "model": MODEL, "analysis": dict(ANALYSIS),
                            "book": {"threshold": 0.5}})
    shutil.rmtree(prof.tables_dir, ignore_errors=True)
    yield prof
    shutil.rmtree(prof.tables_dir, ignore_errors=True)


@pytest.mark.slow
def test_profile_run_writes_tables_and_reuses_them(tiny, tiny_profile):
    from universal_neurons.runs import universality

    prof = tiny_profile
    res = universality.run_universality(prof, progress=False)
    out = prof.tables_dir
    for f in ("neurons.csv", "layer_similarity.csv", "convergence.csv", "universality.json", "maxima.npz",
              "pass.json", "universality-pass.key.json", "universality-tables.key.json"):
        assert (out / f).is_file(), f
    assert len(res.neurons) == 128 and {"max_corr_p1", "baseline_p1", "max_sim_layer_p1", "excess_corr", "is_universal",
                                        "is_dead", "mean_baseline", "min_corr"} <= set(res.neurons.columns)
    assert res.info["n_tokens"] == N_TOKENS and res.info["baseline"]["seed"] == 0 and res.info["threshold"] == 0.5
    assert res.info["checkpoint_dirs"] == [str(s) for s in tiny["seeds"]]
    assert res.convergence["n_tokens"].iloc[-1] == N_TOKENS
    assert np.isclose(res.convergence["share_universal"].iloc[-1], res.neurons["is_universal"].mean())
    sim = res.layers.pivot(index="ref_layer", columns="partner_layer", values="argmax_share")
    np.testing.assert_allclose(sim.sum(1), 1.0)
    mtime = (out / "neurons.csv").stat().st_mtime_ns
    universality.run_universality(prof, progress=False)
    assert (out / "neurons.csv").stat().st_mtime_ns == mtime
    prof.cfg["analysis"]["baseline_seed"] = 1
    universality.run_universality(prof, progress=False)
    assert json.loads((out / "universality.json").read_text())["baseline"]["seed"] == 1
    assert not (out / ".partial").exists()


@pytest.mark.slow
def test_another_threshold_rederives_the_tables_from_the_saved_maxima(tiny, tiny_profile, models, monkeypatch):
    """The pass is not run again (correlate fails if called); the tables equal a fresh pass's at that threshold,
    and the summary equals numpy's counts and quantiles over the live neurons."""
    import pandas as pd

    from universal_neurons.runs import neuron_tables, universality
    from universal_neurons.data.prepare import analysis_rows

    prof = tiny_profile
    universality.run_universality(prof, progress=False)
    pass_mtime = (prof.tables_dir / "maxima.npz").stat().st_mtime_ns
    rows = analysis_rows(prof, progress=False).tokens  # the pass's rows: the held-out rows, shuffled
    fresh = correlate([models("seed0"), models("seed1")], rows, N_TOKENS, chunk_tokens=ANALYSIS["chunk_tokens"],
                      batch_rows=ANALYSIS["batch_size"])
    table = neuron_table(fresh, 0.05)

    def not_again(*a, **k):
        raise AssertionError("the pass ran again")

    monkeypatch.setattr(universality, "correlate", not_again)
    low = neuron_tables.load_results(prof, 0.05)
    again = universality.run_universality(prof, progress=False, threshold=0.05)
    assert (prof.tables_dir / "maxima.npz").stat().st_mtime_ns == pass_mtime
    pd.testing.assert_frame_equal(low.neurons, table, check_exact=False, atol=1e-12)
    pd.testing.assert_frame_equal(again.neurons, low.neurons)
    assert low.neurons["is_universal"].sum() > 0 and low.info["threshold"] == 0.05
    ex = low.neurons.loc[~low.neurons["is_dead"], "excess_corr"].to_numpy(np.float64)
    s = low.info["summary"]
    assert s["n_universal"] == int((ex > 0.05).sum()) and s["share_universal"] == pytest.approx((ex > 0.05).mean())
    for q in (50, 90, 99):
        assert s[f"excess_q{q}"] == pytest.approx(np.quantile(ex, q / 100), abs=1e-12)
    final = low.convergence.iloc[-1]
    assert final["n_universal"] == s["n_universal"] and final["excess_q99"] == pytest.approx(s["excess_q99"])
    back = neuron_tables.load_results(prof.tables_dir)  # a folder: the paper's threshold
    assert back.info["threshold"] == 0.5 and back.info["summary"]["n_universal"] == int((ex > 0.5).sum())


@pytest.mark.slow
def test_untrained_control_is_one_model_and_its_run_goes_into_tables_control(tiny, tiny_profile):
    from universal_neurons.runs.control import CONTROL_SEED, run_control, untrained_control
    from universal_neurons.runs.selection import control_threshold

    prof = tiny_profile
    path = untrained_control(prof)
    assert path == prof.root / "control" / f"untrained-seed-{CONTROL_SEED}" and (path / "config.json").is_file()
    assert untrained_control(prof) == path
    ctrl = run_control(prof, progress=False)
    assert (prof.tables_dir / "control" / "neurons.csv").is_file()
    assert ctrl.info["partners"] == [str(path)] and ctrl.info["reference"] == str(tiny["seeds"][0])
    live = ctrl.neurons.loc[~ctrl.neurons["is_dead"], "excess_corr"].to_numpy(np.float64)
    assert len(live) > 100 and control_threshold(ctrl.neurons) == pytest.approx(np.quantile(live, 0.999), abs=1e-12)


def test_tables_of_an_older_run_are_read_at_their_own_threshold_only(tmp_path):
    import pandas as pd

    from universal_neurons.runs.neuron_tables import load_results

    for name in ("neurons", "layer_similarity", "convergence"):
        pd.DataFrame({"a": [1.0]}).to_csv(tmp_path / f"{name}.csv", index=False)
    (tmp_path / "universality.json").write_text(json.dumps({"threshold": 0.5, "summary": {}}))
    assert load_results(tmp_path, 0.5).info["threshold"] == 0.5
    with pytest.raises(UserError, match="without saving the pass") as e:
        load_results(tmp_path, 0.4)
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match="no universality results"):
        load_results(tmp_path / "nothing")


def test_torchrun_session_alone_keeps_the_device():
    from universal_neurons.runs.universality import torchrun_session

    with torchrun_session(None, "cpu") as device:
        assert device == "cpu"


def test_scale_aware_threshold_is_the_controls_quantile_of_live_neurons(tmp_path):
    import pandas as pd

    from universal_neurons.runs.selection import CONTROL_QUANTILE, control_threshold, resolve_threshold

    rng = np.random.default_rng(0)
    ex = rng.normal(0.05, 0.03, 4000)
    dead = np.zeros(4000, bool)
    dead[:50] = True
    ex[:50] = np.nan
    ex[50:60] = 0.99  # live outliers count like any other neuron
    table = pd.DataFrame({"excess_corr": ex, "is_dead": dead})
    live = np.sort(ex[~dead])
    # independent: numpy's linear-interpolation quantile over the live neurons only
    assert control_threshold(table) == pytest.approx(float(np.quantile(live, CONTROL_QUANTILE)), abs=1e-12)

    with pytest.raises(UserError, match="analysis.control=true"):
        resolve_threshold("control", tmp_path)
    (tmp_path / "control").mkdir()
    table.to_csv(tmp_path / "control" / "neurons.csv", index=False)
    value, words = resolve_threshold("control", tmp_path)
    assert value == pytest.approx(float(np.quantile(live, CONTROL_QUANTILE)), abs=1e-9)
    assert "scale-aware" in words
    assert resolve_threshold(0.5, tmp_path) == (0.5, "the paper's threshold of 0.5")
    assert resolve_threshold("0.3", tmp_path)[0] == 0.3
    assert resolve_threshold(1, tmp_path) == (1.0, "the threshold of 1")
    for bad in ("high", -1, 0, 2.0, float("nan"), None, True):
        with pytest.raises(UserError, match=r"threshold must be a number in \(0, 1\] \(the paper's is 0.5\) or 'control'"):
            resolve_threshold(bad, tmp_path)


@pytest.mark.slow
def test_the_universality_pass_feeds_the_properties_unless_it_resumes(tiny, tiny_profile, tmp_path):
    """The activation statistics gathered in the universality pass's forward passes equal the properties' own pass
    (histogram counts exactly, moments to float64 rounding), and are then served from the cache; a resumed pass
    feeds nothing, and the properties run their own pass."""
    from universal_neurons.runs import properties, universality

    prof = tiny_profile
    # the pass's first chunk ends at its first snapshot (1/16 of the tokens, 6 rows here): with batches of 16
    # rows its first batch is not the properties' own, which fixes the shifts and bins: not fed
    universality.run_universality(prof, progress=False)
    assert not (prof.tables_dir / "properties.json").exists()
    shutil.rmtree(prof.tables_dir)
    prof.cfg["analysis"]["batch_size"] = 4
    universality.run_universality(prof, progress=False)
    fed = properties.compute_properties(prof, progress=False)
    assert fed.info["activations_from"] == "the universality pass" and fed.info["n_tokens"] == N_TOKENS
    own = properties.compute_properties(prof, progress=False, out_dir=tmp_path)  # independent: its own pass
    assert own.info["activations_from"] == "its own pass"
    for name in own.hists:
        np.testing.assert_array_equal(fed.hists[name]["counts"], own.hists[name]["counts"])
        np.testing.assert_array_equal(fed.hists[name]["lo"], own.hists[name]["lo"])
    cols = ["mean", "var", "skew", "kurt", "sparsity"]
    np.testing.assert_allclose(fed.table[cols].to_numpy(), own.table[cols].to_numpy(), rtol=1e-9, atol=1e-12)

    shutil.rmtree(prof.tables_dir)
    prof.cfg["analysis"]["chunk_tokens"] = 128  # more chunks than the pass's checkpoint interval (8)
    assert universality.run_universality(prof, progress=False, stop_after=9) is None  # killed after its checkpoint
    assert any((prof.tables_dir / ".partial").iterdir())
    universality.run_universality(prof, progress=False)  # resumed: no properties from it
    assert not (prof.tables_dir / "properties.json").exists()
    assert properties.compute_properties(prof, progress=False).info["activations_from"] == "its own pass"


@pytest.mark.slow
def test_the_control_joins_the_universality_pass_as_its_own_pass_would_be(tiny, tiny_profile, tmp_path):
    """run_with_control: one pass for both; each saved pass equals the pass run alone (the control's baseline drawn
    with its own partner index), and the separate calls afterwards are served from the cache."""
    from universal_neurons.measures.maxima import Correlations
    from universal_neurons.runs import control, universality

    prof = tiny_profile
    control.run_with_control(prof, progress=False)
    joined = {k: Correlations.load(d)[0] for k, d in (("main", prof.tables_dir), ("control", prof.tables_dir / "control"))}
    assert "computed in the pass of" in json.loads((prof.tables_dir / "control" / "pass.json").read_text())["joined"]
    stamps = [(d / "maxima.npz").stat().st_mtime_ns for d in (prof.tables_dir, prof.tables_dir / "control")]
    control.run_control(prof, progress=False)
    universality.run_universality(prof, progress=False)
    assert stamps == [(d / "maxima.npz").stat().st_mtime_ns for d in (prof.tables_dir, prof.tables_dir / "control")]

    shutil.rmtree(prof.tables_dir)  # independent: each pass alone
    alone = {"control": Correlations.load(control.run_control(prof, progress=False) and prof.tables_dir / "control")[0],
             "main": Correlations.load(universality.run_universality(prof, progress=False) and prof.tables_dir)[0]}
    for k in ("main", "control"):
        a, b = joined[k], alone[k]
        assert a.names == b.names and a.snap_tokens == b.snap_tokens
        for x, y in zip(a.real + a.base + a.layer_max, b.real + b.base + b.layer_max):
            np.testing.assert_allclose(x, y, atol=1e-6, equal_nan=True)
