"""scripts/gpu_check.py run end to end on a CPU (tiny stand-ins, no book): its record checked against arithmetic done
here, its own printed tolerance and numpy float64; its time budget and a failing step."""

import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from universal_neurons.core.machine import cpu_model

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.py"


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """The stand-ins' folder, shared by the tests, with the GPT-2 tokenizer fetched once (outside any budget)."""
    from universal_neurons.data.tokenizer import build_tokenizer

    folder = tmp_path_factory.mktemp("gpu-check-work")
    build_tokenizer("gpt2", folder / "stand-ins" / ".gpt2-tokenizer")
    return folder


def _run(tmp_path, work, *args):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "UN_ARTIFACTS": str(tmp_path / "artifacts")}
    r = subprocess.run([sys.executable, str(SCRIPT), "--no-book", "--out", str(tmp_path / "out"),
                        "--work", str(work), *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    records = sorted((tmp_path / "out").glob("gpu-check-*.json"))
    return r, records


def _check(r, records, device: str, tokens: int):
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert len(records) == 1
    rec = json.loads(records[0].read_text())
    card = rec["machine"]["card"]
    assert records[0].name == f"gpu-check-{re.sub(r'[^a-z0-9]+', '-', card.lower()).strip('-')}.json"
    png = records[0].with_suffix(".png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert f"GPU check on {card}" in r.stdout
    assert rec["machine"]["device"] == device and rec["machine"]["torch"] == torch.__version__
    if device == "cpu":
        assert card == cpu_model()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT.*", rec["date"]) and "commit" in rec
    assert {k: v["status"] for k, v in rec["steps"].items()} == {"matmul": "done", "engine vs port": "done",
                                                                 "universality pass": "done"}
    assert "book" not in rec and "smoke book: not run" in r.stdout

    mm = rec["matmul"]  # GFLOP/s = 2 n^3 / time
    for k in ("float32", "tf32", "bf16") if device == "cuda" else ("float32",):
        assert mm[k]["gflops"] == pytest.approx(2 * mm["n"] ** 3 / (mm[k]["ms"] / 1e3) / 1e9, rel=1e-9)

    eng = rec["engine"]  # the engine and the port agree within the tolerance the script prints
    printed = re.search(r"max \|Δr\| (\S+) over ([\d,]+) pairs \(tolerance ([0-9.e+-]+):", r.stdout)
    assert printed, r.stdout
    tol = float(printed[3])
    assert eng["tolerance"] == tol and eng["agree"]
    assert eng["engine_vs_port_max_abs_diff"] <= tol
    assert float(printed[1]) == pytest.approx(eng["engine_vs_port_max_abs_diff"], rel=0.06)
    n_a, n_b = map(int, eng["shape"].split("x"))
    assert int(printed[2].replace(",", "")) == eng["pairs_compared"] == n_a * n_b and eng["nan_mismatches"] == 0
    # each against numpy float64 (the benchmark's sample): the engine to float32 rounding, the port to its fp16 sums
    assert eng["engine"]["max_abs_diff_vs_numpy"] < 1e-5
    assert eng["reference_port"]["max_abs_diff_vs_numpy"] <= tol
    for k in ("engine", "reference_port", "matmul_fp32"):
        assert eng[k]["tokens_per_s"] == pytest.approx(eng["tokens_per_batch"] / (eng[k]["ms"] / 1e3), rel=1e-9)
        assert eng[k]["gflops"] == pytest.approx(2 * n_a * n_b * eng["tokens_per_batch"] / (eng[k]["ms"] / 1e3) / 1e9,
                                                 rel=0.01)  # the benchmark rounds to 0.1

    ps = rec["pass"]
    assert ps["tokens"] == ps["tokens_requested"] == tokens and ps["seconds"] > 0 and ps["n_tiles"] >= 1
    layers, width = ps["neurons"]
    assert ps["tokens_per_s"] == pytest.approx(tokens / ps["seconds"], rel=1e-12)
    assert ps["product_gflops"] == pytest.approx(2 * (layers * width) ** 2 * tokens / ps["seconds"] / 1e9, rel=1e-12)
    ex = ps["extrapolation"]  # 100M tokens: the timed pass's seconds a token, times 1e8
    per_100m = ps["seconds"] / tokens * 100_000_000
    assert ex["tokens"] == 100_000_000
    assert ex["partners_1"]["seconds"] == pytest.approx(per_100m, rel=1e-12)
    assert ex["partners_1"]["hours"] == pytest.approx(per_100m / 3600, rel=1e-12)
    # 4 partners: the rest of the pass (all but the forward passes) 4 times over, plus a forward pass of the reference
    # in each tile and of each partner in each tile it has layers in
    f = ex["forward_us_per_token"] / 1e6
    assert ex["partners_1"]["tile_partners"] == [1] * ps["n_tiles"]
    rest = max(0.0, ps["seconds"] / tokens - 2 * ps["n_tiles"] * f)
    assert ex["rest_us_per_token"] / 1e6 == pytest.approx(rest, rel=1e-9, abs=1e-15)
    tiles_4 = ex["partners_4"]["tile_partners"]
    assert sum(tiles_4) >= 4 and all(1 <= k <= 4 for k in tiles_4)
    want_4 = (4 * rest + sum(1 + k for k in tiles_4) * f) * 100_000_000
    assert ex["partners_4"]["seconds"] == pytest.approx(want_4, rel=1e-9)
    assert ex["partners_4"]["hours"] == pytest.approx(want_4 / 3600, rel=1e-9)
    shown = re.search(r"100M tokens, 4 partners \(the paper's\): ([\d,]+) s = ([\d.]+) h", r.stdout)
    assert shown and float(shown[1].replace(",", "")) == pytest.approx(want_4, abs=0.5)
    shown = re.search(r"100M tokens, 1 partner: ([\d,]+) s = ([\d.]+) h", r.stdout)
    assert shown and float(shown[1].replace(",", "")) == pytest.approx(per_100m, abs=0.5)
    assert float(shown[2]) == pytest.approx(per_100m / 3600, abs=0.005)
    assert "4 x the products and accumulators, which grow with the partner columns" in r.stdout
    if device == "cpu":
        assert ps["peak_gpu_mib"] is None and ps["peak_rss_mib"] > 100
    else:
        assert ps["peak_gpu_mib"] > 0
    return rec


def test_the_check_on_a_cpu(tmp_path, work):
    r, records = _run(tmp_path, work, "--device", "cpu", "--tokens", "2048")
    rec = _check(r, records, "cpu", 2048)
    assert rec["pass"]["shape"] == "tiny" and rec["machine"]["threads"] == 1
    # 2 x 256 neurons at 4 GB: every partner layer fits one tile, side by side with the reference (32 bytes a pair
    # plus 8 a chunk token: 4e9 / (32 x 512 + 8 x 16384) = 27,126 columns >= 4 x 512)
    assert rec["pass"]["max_accumulator_gb"] == 4 and rec["pass"]["extrapolation"]["partners_4"]["tile_partners"] == [4]
    # every step prints its share of the budget, then its time
    for step in ("matmul", "engine vs port", "universality pass"):
        assert re.search(rf"\] {step}: up to \d+ s \(\d+ s of the 470 s budget left\)", r.stdout)
        assert re.search(rf"\] {step}: done in \d+ s", r.stdout)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_check_on_cuda_with_tiny_stand_ins(tmp_path, work):
    r, records = _run(tmp_path, work, "--device", "cuda", "--shape", "tiny", "--tokens", "32768")
    _check(r, records, "cuda", 32768)


def test_a_paper_shape_on_a_cpu_is_refused_before_any_work(tmp_path, work):
    r, records = _run(tmp_path, work, "--device", "cpu", "--shape", "gpt2-small")
    assert r.returncode == 2 and not (tmp_path / "out").exists() and not list(work.glob("stand-ins/gpt2-small*"))
    assert r.stderr.strip().count("\n") == 0 and "--device cuda" in r.stderr and "--shape tiny" in r.stderr


def test_steps_past_the_budget_are_skipped_and_a_failing_step_is_recorded(tmp_path, work, monkeypatch):
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check)

    def broken(*a, **k):
        raise RuntimeError("planted")

    monkeypatch.setattr(check, "matmul_rates", broken)
    monkeypatch.setenv("UN_ARTIFACTS", str(tmp_path / "artifacts"))
    threads = torch.get_num_threads()
    try:
        rc = check.main(["--device", "cpu", "--no-book", "--budget-s", "4", "--out", str(tmp_path / "out"),
                         "--work", str(work)])
    finally:
        torch.set_num_threads(threads)
    rec = json.loads(next((tmp_path / "out").glob("gpu-check-*.json")).read_text())
    assert rc == 1
    assert rec["steps"]["matmul"]["status"] == "failed" and "planted" in rec["steps"]["matmul"]["error"]
    # 4 s leave under the 5 s the engine comparison and the pass each need: skipped with a line, not run
    assert rec["steps"]["engine vs port"]["status"] == "skipped"
    assert rec["steps"]["universality pass"]["status"] == "skipped"
    assert "matmul" not in rec and "engine" not in rec and "pass" not in rec
    assert next((tmp_path / "out").glob("gpu-check-*.png")).stat().st_size > 0


def test_the_smoke_book_is_timed_and_stopped_with_its_children_at_the_budget(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check)
    fake = tmp_path / "bin" / "make"  # a stand-in for make: records its arguments, then waits on a child
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\necho \"make $*\"\n[ \"$FAKE_MAKE\" = fail ] && exit 3\n[ \"$FAKE_MAKE\" = quick ] && "
                    f"exit 0\nsleep 60 & echo $! > {tmp_path}/child\nwait\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    for mode, status, rc in (("quick", "done", 0), ("fail", "failed", 3)):
        monkeypatch.setenv("FAKE_MAKE", mode)
        bk = check.smoke_book(torch.device("cpu"), ["VENV=/x"], 30, tmp_path / f"{mode}.log")
        assert (bk["status"], bk["returncode"]) == (status, rc) and bk["seconds"] < 30
        assert bk["tail"] == ["make book PROFILE=smoke SET= DEVICE=cpu VENV=/x"]
    monkeypatch.setenv("FAKE_MAKE", "slow")
    bk = check.smoke_book(torch.device("cpu"), [], 2, tmp_path / "slow.log")
    assert bk["status"] == "stopped" and 2 <= bk["seconds"] < 20
    child = int((tmp_path / "child").read_text())
    with pytest.raises(ProcessLookupError):  # the whole process group went, make's children too
        for _ in range(50):
            os.kill(child, 0)
            time.sleep(0.1)
