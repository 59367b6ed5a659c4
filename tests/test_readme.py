"""The README's figures from runs: every generated block equals what scripts/readme_figures.py writes from the
shipped results, a few of its numbers recomputed independently, and the glued values it quotes read from executed
notebooks (the smoke book's, which `make test` builds first; the default book's where it has been built)."""

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("readme_figures", ROOT / "scripts" / "readme_figures.py")
R = importlib.util.module_from_spec(spec)
spec.loader.exec_module(R)


def test_readme_blocks_are_what_the_script_writes():
    text = (ROOT / "README.md").read_text()
    found = R.blocks(text)
    assert set(found) == set(R.BLOCKS), "every block the script knows is in the README, and no other"
    rendered = R.blocks(R.render(text))
    stale = [name for name in found if found[name] != rendered[name]]
    assert not stale, f"README blocks out of date: {stale}; run `make readme`"


def test_no_hand_typed_build_time_left():
    text = (ROOT / "README.md").read_text()
    outside = R.BLOCK.sub("", text)
    for stale in ("8 minutes 28 seconds", "12 minutes 26 seconds", "259 tests in 43 s", "1.27% universal (26)"):
        assert stale not in outside


def test_bench_scale_block_draws_each_run_under_its_own_settings(tmp_path):
    """Two dry-run files (the main one and a run of its own): both tables, the main one first, each under its own
    settings line and above its own note; the seconds summed per shape independently of the script."""
    (tmp_path / "results").mkdir()
    base = {"cpu": "Some CPU", "torch": "2.x", "date": "2026-12-07", "partners": 1, "jobs": 1, "sample_tiles": 0,
            "steps": ["data", "zoo"], "extra_overrides": []}
    rows = [{"step": "data", "seconds": 2.0, "peak_gb": 0.5, "status": "ok", "detail": ""},
            {"step": "zoo", "seconds": 3.0, "peak_gb": 1.5, "status": "ok", "detail": ""}]
    runs = {"bench-scale.json": ("gpt2-small", 1, 1024, [], "main note"),
            "bench-scale-gpt2-medium.json": ("gpt2-medium", 2, 512, ["analysis.max_accumulator_gb=14"], "own note")}
    for name, (shape, threads, tokens, extra, note) in runs.items():
        res = {**base, "shapes": [shape], "threads": threads, "tokens": tokens, "extra_overrides": extra,
               "note": note, "rows": [{**r, "shape": shape} for r in rows]}
        (tmp_path / "results" / name).write_text(json.dumps(res))
    block = R.block_bench_scale(tmp_path)
    main, own = block.index("| step | gpt2-small |"), block.index("| step | gpt2-medium |")
    assert main < block.index("main note") < block.index("(2 threads,") < own < block.index("own note")
    assert "1,024 held-out tokens" in block[:main] and "512 held-out tokens" in block[main:own]
    assert "`analysis.max_accumulator_gb=14`" in block[main:own] and "`results/bench-scale-gpt2-medium.json`" in block
    assert block.count(f"| **total** | {sum(r['seconds'] for r in rows):,.0f} s, 1.50 GB |") == 2


def test_release_block_against_the_training_logs():
    """The release zoo's held-out range and per-seed times, read from each seed's own training log."""
    logs = [json.loads(p.read_text()) for p in sorted((ROOT / "zoo" / "release").glob("seed-*/training_log.json"))]
    block = R.block_release_zoo()
    loss = np.array([log["heldout_loss"] for log in logs], np.float64)
    assert f"held-out loss {loss.min():.3f}-{loss.max():.3f} nats" in block
    assert f"**{len(logs)} seeds**" in block
    secs = [log["train_seconds"] for log in logs]
    assert f"{int(round(min(secs))) // 60} min" in block and f"{int(round(max(secs))) // 60} min" in block


def test_sweep_and_recipe_blocks_against_the_csv():
    t = pd.read_csv(ROOT / "results" / "sweep.csv")
    final_all = t[(t["stage"] == "final") & (t["pairing"] == "all")]
    block = R.block_sweep()
    assert block.count("\n| `w") == final_all["point"].nunique() == len(final_all)
    for _, r in final_all.iterrows():
        line = next(ln for ln in block.splitlines() if ln.startswith(f"| `{r['point']}`"))
        singles = t[(t["point"] == r["point"]) & (t["stage"] == "final") & t["pairing"].isin(["p1", "p2"])]
        assert f"{r['excess_q99']:.3f} ({singles['excess_q99'].min():.3f}-{singles['excess_q99'].max():.3f})" in line
    rec = pd.read_csv(ROOT / "results" / "recipe.csv")
    rec = rec[(rec["stage"] == "final") & (rec["pairing"] == "all")]
    assert all(f"| {r['heldout_loss']:.3f} |" in R.block_recipe() for _, r in rec.iterrows())


def test_emergence_block_against_the_arrays():
    """Counts per step recomputed with a plain loop over the neurons (float64)."""
    z = np.load(ROOT / "results" / "emergence-default.npz")
    real, base = z["real"].astype(np.float64), z["base"].astype(np.float64)
    counts = []
    for step in range(real.shape[0]):
        excess = [np.mean(real[step, :, n] - base[step, :, n]) for n in range(real.shape[2])]
        counts.append(sum(e > 0.5 for e in excess))
    row = next(ln for ln in R.block_emergence().splitlines() if ln.startswith("| universal"))
    assert row.split("|")[2:-1] == [f" {c} " for c in counts]


def test_record_build(tmp_path, monkeypatch):
    path = tmp_path / "results" / "build-times.json"
    path.parent.mkdir()
    e = R.record_build(1332.4, "fresh-clone make book", "a note", path=path)
    assert e["seconds"] == 1332.4 and e["what"] == "fresh-clone make book" and e["cpu"] and e["commit"]
    R.record_build(1300.0, "fresh-clone make book", path=path)
    assert len(json.loads(path.read_text())) == 2
    block = R.block_build_times(tmp_path)
    assert "| fresh-clone make book | 21 min 40 s |" in block  # the latest entry of each kind
    assert "22 min 12 s" not in block
    assert "| fresh-clone make test | not recorded at this state |" in block
    assert R.duration(59.6) == "1 min 00 s" and R.duration(42) == "42 s"


def _independent_glued(nb: Path) -> dict:
    """Glued text values of one notebook, read with json alone (scrapbook records, text/plain)."""
    out = {}
    for cell in json.loads(nb.read_text())["cells"]:
        for o in cell.get("outputs", []):
            rec = o.get("metadata", {}).get("scrapbook")
            if rec:
                data = {k.removeprefix(rec.get("mime_prefix", "")): v for k, v in o.get("data", {}).items()}
                if "text/plain" in data:
                    v = data["text/plain"]
                    out[rec["name"]] = "".join(v) if isinstance(v, list) else v
    return out


def _executed(run: str) -> Path | None:
    folder = ROOT / "artifacts" / run / "notebooks"
    return folder if all((folder / f"{c}.ipynb").is_file() for c in R.GLUED_KEYS) else None


def test_glued_values_from_the_smoke_book(tmp_path):
    """The keys the README quotes exist in an executed book and read back as they are stored; the block renders
    from them (the README's own block quotes the default book, whose numbers differ from the smoke book's)."""
    folder = _executed("smoke")
    if folder is None:
        pytest.skip("artifacts/smoke/notebooks has no executed universality and robustness chapters "
                    "(`make book PROFILE=smoke` builds them; `make test` does it first)")
    values = R.glued_values(folder)
    for chapter, keys in R.GLUED_KEYS.items():
        direct = _independent_glued(folder / f"{chapter}.ipynb")
        assert values[chapter] == {k: direct[k] for k in keys}
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "readme-glued.json").write_text(json.dumps(
        {"run": "smoke", "commit": "x", "date": "today", "values": values}))
    block = R.block_universality(tmp_path)
    u = values["universality"]
    assert f"({float(u['share_universal_pct']):.2f}%) are universal" in block
    assert f"{int(u['n_universal']):,} of the {int(u['n_neurons']):,} neurons" in block
    c = {k: int(v) for k, v in values["claims"].items()}
    assert c["clm_n_hold"] + c["clm_n_direction"] + c["clm_n_fail"] + c["clm_n_untestable"] == c["clm_n_claims"]
    assert (f"**{c['clm_n_hold']} hold, {c['clm_n_direction']} direction only, {c['clm_n_fail']} do not hold, "
            f"{c['clm_n_untestable']} not testable here**") in block


def test_readme_quotes_the_default_book_as_built():
    """Where the default book has been built here, the README's copy of its glued values is current."""
    folder, snap = _executed("default"), ROOT / "results" / "readme-glued.json"
    if folder is None or not snap.is_file():
        pytest.skip("no executed default book here (artifacts/default/notebooks) or no results/readme-glued.json")
    assert json.loads(snap.read_text())["values"] == R.glued_values(folder), (
        "the default book changed: `make readme README_GLUED=artifacts/default/notebooks`")
