"""scripts/bench_scale.py, the scale dry run: its measurement of a process's time and peak memory against processes
of known size, and (slow) the dry run itself on stand-ins of the tiny shape with budgets that split its passes into
tiles, where every chapter must run or refuse with one of the lines listed here."""

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "bench_scale.py"
spec = importlib.util.spec_from_file_location("bench_scale", SCRIPT)
B = importlib.util.module_from_spec(spec)
spec.loader.exec_module(B)

# (step, the start of its one-line refusal): refusals the dry run may report without failing this test. Keep it
# empty: a chapter that cannot run at the paper's shapes is a bug to fix, not a line to add here.
EXPECTED_REFUSALS: list[tuple[str, str]] = []
BUDGETS = {"analysis.n_tokens", "book.loss_tokens", "book.n_class_tokens", "book.family_tokens", "book.entropy_tokens",
           "book.attention_tokens", "book.explorer_tokens", "book.robust_tokens"}


def _allocate(mb: int, hold_s: float = 0.5) -> list[str]:
    """A Python process that writes `mb` MB (every page touched, so resident) and holds them for `hold_s`."""
    return [sys.executable, "-c", f"import time; b = bytearray({mb} * 2**20); b[::4096] = b'x' * len(b[::4096]); "
            f"time.sleep({hold_s})"]


def test_watch_measures_a_known_allocation(tmp_path):
    """The peak of a process that holds 600 MiB is 600 MiB plus the interpreter (tens of MB), and its time at least
    the time it sleeps."""
    baseline = B.watch(_allocate(0, 0.0), dict(os.environ), tmp_path / "base.log")
    run = B.watch(_allocate(600, 1.0), dict(os.environ), tmp_path / "alloc.log")
    assert run["exit"] == 0 and not run["killed"]
    grown = run["peak_bytes"] - baseline["peak_bytes"]
    assert 600 * 2**20 * 0.98 <= grown <= 600 * 2**20 * 1.1
    assert 1.0 <= run["seconds"] < 30


def test_watch_kills_over_the_memory_limit_and_the_timeout(tmp_path):
    over = B.watch(_allocate(800, 30.0), dict(os.environ), tmp_path / "over.log", max_gb=0.3)
    assert over["killed"].startswith("resident memory over") and over["exit"] == -9
    t0 = time.perf_counter()
    late = B.watch([sys.executable, "-c", "import time; time.sleep(60)"], dict(os.environ), tmp_path / "late.log",
                   timeout=1.0)
    assert late["killed"] == "timed out after 1 s" and time.perf_counter() - t0 < 15


def test_every_held_out_budget_is_shrunk():
    """The budgets found in the schema (by description) are the chapters' eight; each is set to the dry run's."""
    assert set(B.token_budgets()) == BUDGETS
    overrides = B.overrides_for([Path("/m/a"), Path("/m/b"), Path("/m/c")], 777, ["analysis.batch_size=2"])
    assert {o.split("=")[0] for o in overrides if o.endswith("=777")} == BUDGETS
    assert "models.reference=/m/a" in overrides and "models.partners=[/m/b,/m/c]" in overrides
    assert overrides[-1] == "analysis.batch_size=2"


def test_steps_follow_the_makefile():
    text = (ROOT / "Makefile").read_text()
    line = next(ln for ln in text.splitlines() if ln.startswith("CHAPTERS :="))
    assert B.makefile_chapters() == line.split(":=")[1].split()


def test_table_cells():
    rows = [{"shape": "gpt2-small", "step": "zoo", "seconds": 12.4, "peak_gb": 1.234, "status": "ok", "detail": ""},
            {"shape": "gpt2-small", "step": "robustness", "seconds": 3.0, "peak_gb": 0.5, "status": "refused",
             "detail": "too big; set x"}]
    table = B.markdown(rows, ["gpt2-small", "pythia-160m"], ["zoo", "robustness"])
    assert "| zoo | 12 s, 1.23 GB | not run |" in table
    assert "| robustness | **refused** (3 s, 0.50 GB) | not run |" in table
    assert "| **total** | 15 s, 1.23 GB | 0 s, 0.00 GB |" in table
    assert "- gpt2-small / robustness: refused: too big; set x" in table


def test_sampled_cell_and_total():
    """A sampled step shows its tiles and its projection; the total adds the projection to the measured steps."""
    rows = [{"shape": "gpt2-small", "step": "zoo", "seconds": 600.0, "peak_gb": 1.0, "status": "ok", "detail": ""},
            {"shape": "gpt2-small", "step": "robustness", "seconds": 200.0, "peak_gb": 6.26, "status": "sampled",
             "detail": "the first 3 of 288 tiles", "tiles": 288, "tiles_derived": 3, "projected_seconds": 6600.0}]
    table = B.markdown(rows, ["gpt2-small"], ["zoo", "robustness"])
    assert "| robustness | 3 of 288 tiles: 200 s, 6.26 GB; all ≈ 110.0 min |" in table
    assert "| **total** | 800 s, 6.26 GB; ≈ 2.0 h with the sampled steps whole |" in table
    assert [B.duration(s) for s in (42.54, 738, 7200)] == ["42.5 s", "12.3 min", "2.0 h"]
    assert "- gpt2-small / robustness: sampled: the first 3 of 288 tiles" in table
    rows[1] |= {"projected_low_seconds": 3600.0}  # the control's tiles derived for nothing
    assert "| robustness | 3 of 288 tiles: 200 s, 6.26 GB; all ≈ 60.0 min to 110.0 min |" in B.markdown(
        rows, ["gpt2-small"], ["zoo", "robustness"])


def _small_corpus(folder: Path, n_docs: int = 16, chars: int = 1000) -> Path:
    """A local corpus of `n_docs` documents of about `chars` characters (slices of the README, cut at spaces): about
    5,000 GPT-2 tokens, half held out, so that the data step takes seconds and the zoo chapter's held-out loss (over
    at most 65,536 held-out tokens) reads only a few rows."""
    text = " ".join((ROOT / "README.md").read_text().split())
    folder.mkdir(parents=True)
    start = 0
    for i in range(n_docs):
        end = text.find(" ", start + chars)
        (folder / f"doc{i:02d}.txt").write_text(text[start:end if end > 0 else None])
        start = end + 1
    return folder


@pytest.mark.slow
@pytest.mark.long
def test_dry_run_on_the_tiny_shape_in_tiles(tmp_path):
    """The dry run itself, reduced: every step (data, each chapter, the explorer) on stand-ins of the tiny shape (2 x
    256 neurons, the GPT-2 tokenizer) on the gpt2-small profile, one partner, 256 tokens of a 128-token context, a
    small local corpus, two random neurons in the entropy chapter's control group (its runs cost the GPT-2
    vocabulary each), and an accumulator budget (15 MB) that splits the robustness co-moments into passes of one
    layer pair, as the paper's shapes are split at the default budget (the universality pass still fits one tile
    here; its tiles are checked against the untiled pass in tests/measures/test_maxima.py). Each step runs (no
    refusal outside EXPECTED_REFUSALS) under 4 GB; nothing is written into the checkout."""
    out, report = tmp_path / "bench", tmp_path / "bench-scale.json"
    corpus = _small_corpus(tmp_path / "corpus")
    env = {**os.environ, "UN_ARTIFACTS": str(tmp_path / "artifacts"), "OMP_NUM_THREADS": "1"}
    watched = [ROOT / "artifacts" / "bench-scale", ROOT / "results" / "bench-scale.json",
               ROOT / "_build" / "html" / "neurons"]
    before = {p: p.stat().st_mtime_ns if p.exists() else None for p in watched}
    done = subprocess.run([sys.executable, str(SCRIPT), "--shapes", "tiny", "--tokens", "256", "--partners", "1",
                           "--out", str(out), "--json", str(report), "--max-gb", "4",
                           "--set", "corpus.source=local", f"corpus.path={corpus}", "model.n_ctx=128",
                           "analysis.max_accumulator_gb=0.015", "book.entropy_random=2"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1800)
    assert report.is_file(), done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads(report.read_text())
    assert result["tokens"] == 256 and result["partners"] == 1 and set(result["budgets"]) == BUDGETS
    assert result["steps"] == ["data", *B.makefile_chapters(), "explorer"]
    rows = {r["step"]: r for r in result["rows"]}
    assert list(rows) == result["steps"]
    for step, row in rows.items():
        assert row["seconds"] > 0 and 0.05 < row["peak_gb"] < 4, (step, row)
        if row["status"] == "refused":
            assert "\n" not in row["detail"], (step, row)
            assert any(step == s and row["detail"].startswith(line) for s, line in EXPECTED_REFUSALS), (step, row)
        else:
            assert row["status"] == "ok", (step, row)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "| step | tiny |" in done.stdout
    tables = next((out / "artifacts").glob("gpt2-small+*/tables"))
    robust = json.loads((tables / "robustness.json").read_text())
    assert robust["passes"] > 1 and robust["sizes"][0] == [256, 256]  # one layer pair per tile, 2 x 256 neurons
    after = {p: p.stat().st_mtime_ns if p.exists() else None for p in watched}
    assert after == before, "the dry run wrote into the checkout"


def test_resume_keeps_rows_only_of_the_same_settings(tmp_path):
    settings = {"device": "cpu", "threads": 1, "tokens": 64, "partners": 1, "budgets": ["analysis.n_tokens"],
                "extra_overrides": []}
    rows = [{"shape": "gpt2-small", "step": "data", "seconds": 1.0, "peak_gb": 0.1, "status": "ok", "detail": ""}]
    path = tmp_path / "bench.json"
    path.write_text(json.dumps({"cpu": B.cpu_name(), **settings, "rows": rows}))
    assert B.resumed_rows(path, settings) == rows
    assert B.resumed_rows(path, {**settings, "tokens": 128}) == []
    assert B.resumed_rows(tmp_path / "absent.json", settings) == []


@pytest.mark.slow
@pytest.mark.long
def test_sampled_robustness_on_the_tiny_shape(tmp_path):
    """--sample-tiles 1 on the tiny shape (2 layers, one partner and the untrained control: 2 x 2 x 2 = 8 layer-pair
    tiles at a 15 MB budget, in several passes): the step stops after its first tile, reports the whole plan, and its
    projection is set-up + passes x first pass + tiles x the tile's derivation, from the times it recorded."""
    out, report = tmp_path / "bench", tmp_path / "bench-scale.json"
    corpus = _small_corpus(tmp_path / "corpus")
    env = {**os.environ, "UN_ARTIFACTS": str(tmp_path / "artifacts"), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(SCRIPT), "--shapes", "tiny", "--tokens", "256", "--partners", "1",
                           "--chapters", "data,robustness", "--sample-tiles", "1", "--out", str(out), "--json",
                           str(report), "--set", "corpus.source=local", f"corpus.path={corpus}", "model.n_ctx=128",
                           "analysis.max_accumulator_gb=0.015"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads(report.read_text())
    assert result["sample_tiles"] == 1
    row = next(r for r in result["rows"] if r["step"] == "robustness")
    assert row["status"] == "sampled" and row["tiles"] == 8 and 1 < row["passes"] <= 8 and row["tiles_derived"] == 1
    assert len(row["derive_seconds"]) == 1 and 0 < row["start_seconds"] < row["seconds"]
    expected = row["start_seconds"] + row["passes"] * row["first_pass_seconds"] + 8 * row["derive_seconds"][0]
    assert row["projected_seconds"] == pytest.approx(expected, rel=1e-9)
    assert row["control_tiles"] == 4  # the untrained control's 2 x 2 layer pairs: the lower bound derives them free
    low = row["start_seconds"] + row["passes"] * row["first_pass_seconds"] + 4 * row["derive_seconds"][0]
    assert row["projected_low_seconds"] == pytest.approx(low, rel=1e-9)
    assert "1 of 8 tiles:" in done.stdout


@pytest.mark.slow
@pytest.mark.long
def test_two_shapes_side_by_side(tmp_path):
    """--jobs 2: the tiny GPT-2 and the tiny GPT-NeoX (Pythia's kind) stand-ins, each in a dry run of its own at
    the same time (data, zoo and the universality pass), their rows merged into one report with both shapes, each
    shape's rows those of its own run's file."""
    out, report = tmp_path / "bench", tmp_path / "bench-scale.json"
    corpus = _small_corpus(tmp_path / "corpus")
    env = {**os.environ, "UN_ARTIFACTS": str(tmp_path / "artifacts"), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(SCRIPT), "--shapes", "tiny,tiny-neox", "--jobs", "2", "--tokens", "256",
                           "--chapters", "data,zoo,universality", "--out", str(out), "--json", str(report),
                           "--set", "corpus.source=local", f"corpus.path={corpus}", "model.n_ctx=128"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    merged = json.loads(report.read_text())
    assert merged["shapes"] == ["tiny", "tiny-neox"] and merged["jobs"] == 2
    for shape in ("tiny", "tiny-neox"):
        own = json.loads((out / "logs" / f"bench-{shape}.json").read_text())
        assert own["shapes"] == [shape]
        assert [r for r in merged["rows"] if r["shape"] == shape] == own["rows"]
        assert [r["step"] for r in own["rows"]] == ["data", "zoo", "universality"]
        assert all(r["status"] == "ok" for r in own["rows"]), own["rows"]
    assert "| step | tiny | tiny-neox |" in done.stdout
