"""Faults at the edges: names that cannot leave the artifacts folder, profile files that cannot clobber a shipped
profile, honest local corpora, a bound on every value, member identity, the machine's faults named with their
path, cached results served from read-only or moved artifacts, the Makefile with spaces and quotes, locks for
chapter runs and built data, and the remaining raw tracebacks. Each case is one line (or the right result), and
nothing outside the run folder changes."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from universal_neurons import UserError, load_profile
from universal_neurons.__main__ import main
from universal_neurons.core.lock import LOCK_NAME, clean_leftovers, run_lock

ROOT = Path(__file__).resolve().parents[2]
TEXT = ("The quick brown fox jumps over the lazy dog while the cat sleeps by the warm fire. " * 4,
        "Call me Ishmael. Some years ago, never mind how long precisely, I went to sea. " * 4,
        "It was the best of times, it was the worst of times, it was the age of wisdom. " * 4)


@pytest.fixture
def arts(tmp_path, monkeypatch) -> Path:
    """An artifacts root of its own, in a working directory of its own (nothing else may change there)."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("UN_ARTIFACTS", str(work / "artifacts"))
    monkeypatch.setenv("UN_LOCK_WAIT", "0.5")
    return work / "artifacts"


def snapshot(folder: Path) -> dict:
    """Every file and folder under `folder` with its size and mtime (lock files aside: a run rewrites its pid there):
    compare two to see that nothing changed."""
    return {str(p.relative_to(folder)): (p.is_dir(), p.stat().st_size if p.is_file() else 0,
                                         p.stat().st_mtime_ns if p.is_file() else 0)
            for p in Path(folder).rglob("*") if p.name != LOCK_NAME} if Path(folder).exists() else {}


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("error: ") and "Traceback" not in "\n".join(err), err
    return err[-1]


def txt_folder(folder: Path, n: int = 40) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"d{i:02d}.txt").write_text(f"Document {i}. " + TEXT[i % 3])
    return folder


def local_profile(path: Path, corpus: Path, **changes) -> Path:
    """The smoke profile as a user's file, on a local corpus (no registry), with `changes` (section: {key: value})."""
    import yaml

    cfg = yaml.safe_load((ROOT / "src/universal_neurons/profiles/smoke.yaml").read_text())
    cfg["corpus"] = {"source": "local", "path": str(corpus)}
    cfg["tokenizer"]["vocab_size"] = 300
    for section, values in changes.items():
        cfg[section].update(values)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg))
    return path


# ---- 1. a profile name is never a path ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["../profiles/smoke", "../../outside/x", "/tmp/x", "profiles/../smoke", "a/b", ".hidden"])
def test_a_profile_name_with_dots_or_a_separator_creates_and_deletes_nothing(name, arts, tmp_path, capsys):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x.yaml").write_text((ROOT / "src/universal_neurons/profiles/smoke.yaml").read_text())
    users = outside / ".notes.x.tmp"  # a user's file named like a leftover, beside a sibling x.yaml
    users.write_text("mine")
    before, shipped = snapshot(tmp_path), snapshot(ROOT / "src/universal_neurons/profiles")
    for argv in (["where"], ["data", "--quiet"], ["universality", "--quiet"]):
        assert main([argv[0], "--profile", name, *argv[1:]]) == 2
        line = error_line(capsys)
        assert f"profile {name!r} is neither a shipped profile's name" in line and "path ending in .yaml" in line
    assert snapshot(tmp_path) == before and users.read_text() == "mine"
    assert snapshot(ROOT / "src/universal_neurons/profiles") == shipped  # nothing written into the package


def test_run_folder_names_are_one_plain_folder():
    from universal_neurons.config.profile import run_name

    assert run_name("smoke") == "smoke" and run_name("smoke@0123456789", ["book.threshold=0.4"]).startswith("smoke@")
    for bad in ("../x", "a/b", "..", ".x", "x/../y", ""):
        with pytest.raises(UserError, match="cannot name a run folder"):
            run_name(bad)


def test_make_where_refuses_a_name_that_leaves_artifacts():
    if not (ROOT / ".venv" / "bin" / "python").exists():
        pytest.skip("no .venv (make env)")
    out = subprocess.run(["make", "-s", "--no-print-directory", "-C", str(ROOT), "where", "PROFILE=../profiles/smoke"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "artifacts/.." not in out.stdout
    assert "profile '../profiles/smoke' is neither a shipped profile's name" in out.stderr


def test_the_cleaner_removes_only_what_atomic_writes_leave(tmp_path):
    import tempfile

    fd, killed = tempfile.mkstemp(prefix=".neurons.csv.", suffix=".tmp", dir=tmp_path)  # as atomic.py names it
    os.close(fd)
    users = [tmp_path / ".notes.x.tmp", tmp_path / ".draft.backup.tmp", tmp_path / ".a.ABCDEFGH.tmp"]
    for f in users:
        f.write_text("mine")
    assert clean_leftovers(tmp_path) == [Path(killed)]
    assert all(f.read_text() == "mine" for f in users)


# ---- 2. a user's profile file runs in a folder of its own ----------------------------------------------------------
def test_a_users_smoke_yaml_cannot_touch_artifacts_smoke(arts, tmp_path, capsys):
    shipped = arts / "smoke"
    for f in ("zoo/seed-0/model.safetensors", "data/train.bin", "tables/neurons.csv"):
        (shipped / f).parent.mkdir(parents=True, exist_ok=True)
        (shipped / f).write_text("the shipped profile's")
    before = snapshot(shipped)
    mine = local_profile(tmp_path / "my" / "smoke.yaml", txt_folder(tmp_path / "txt"), train={"tokens": 20000})
    prof = load_profile(str(mine))
    assert prof.name == "smoke" and re.fullmatch(r"smoke@[0-9a-f]{10}", prof.run_name)
    for folder in (prof.root, prof.data_dir, prof.trained_dir, prof.tables_dir, prof.trained_tokenizer_dir,
                   load_profile(str(mine), ["book.threshold=0.4"]).data_dir):
        assert shipped not in [folder, *folder.parents]
    assert main(["data", "--profile", str(mine), "--quiet"]) == 0
    assert (prof.data_dir / "train.bin").is_file() and snapshot(shipped) == before
    capsys.readouterr()
    assert main(["where", "--profile", str(mine)]) == 0
    assert capsys.readouterr().out.strip() == f"artifacts/{prof.run_name}"


def test_two_profile_files_with_one_stem_get_two_folders(tmp_path):
    a = local_profile(tmp_path / "a" / "x.yaml", tmp_path)
    b = local_profile(tmp_path / "b" / "x.yaml", tmp_path)
    assert load_profile(str(a)).root != load_profile(str(b)).root
    assert load_profile(str(a)).root == load_profile(str(a)).root  # stable


def test_the_shipped_file_given_by_its_path_is_the_shipped_profile():
    prof = load_profile(str(ROOT / "src/universal_neurons/profiles/smoke.yaml"))
    assert prof.name == "smoke" and prof.run_name == "smoke"


# ---- 3. local corpora -------------------------------------------------------------------------------------------
def _texts(cdir) -> str:
    from universal_neurons.data import corpus

    return " ".join(d.text for s in ("train", "heldout") for d in corpus.iter_documents(cdir, s))


def test_a_local_corpus_reads_files_added_or_edited_after_its_first_build(tmp_path):
    from universal_neurons.data import corpus

    from universal_neurons.core.checksum import file_sha256

    src = txt_folder(tmp_path / "txt")
    cdir = corpus.build_corpus("local", path=str(src), cache_root=tmp_path / "corpus", progress=False)
    first = file_sha256(cdir / "manifest.json")  # part of every token row's provenance
    assert "zebras" not in _texts(cdir)
    (src / "new.txt").write_text("An added document about zebras. " * 5)
    assert corpus.build_corpus("local", path=str(src), cache_root=tmp_path / "corpus", progress=False) == cdir
    second = file_sha256(cdir / "manifest.json")
    assert "zebras" in _texts(cdir) and second != first
    (src / "d00.txt").write_text("An edited document about walruses. " * 5)
    corpus.build_corpus("local", path=str(src), cache_root=tmp_path / "corpus", progress=False)
    assert "walruses" in _texts(cdir) and file_sha256(cdir / "manifest.json") not in (first, second)
    stamp = (cdir / "manifest.json").stat().st_mtime_ns
    corpus.build_corpus("local", path=str(src), cache_root=tmp_path / "corpus", progress=False)
    assert (cdir / "manifest.json").stat().st_mtime_ns == stamp  # unchanged files: not rebuilt
    assert [p.name for p in (tmp_path / "corpus").iterdir()] == [cdir.name]  # one folder, rebuilt in place


@pytest.mark.parametrize("kind,data,pattern", [
    ("latin-1", "Caf\xe9 cr\xe8me br\xfbl\xe9e. ".encode("latin-1") * 5, r"is not UTF-8 \(byte 0xe9 at offset 3"),
    ("utf-16", "Some text in UTF-16. ".encode("utf-16") * 5, r"is UTF-16 text .*iconv -f UTF-16 -t UTF-8"),
    ("utf-16-no-bom", "Some text in UTF-16. ".encode("utf-16-le") * 5, r"holds NUL characters"),
    ("binary", bytes(range(256)) * 4, r"is not UTF-8 .*binary data"),
])
def test_a_local_file_that_is_not_utf8_is_named(kind, data, pattern, tmp_path):
    from universal_neurons.data import corpus

    src = txt_folder(tmp_path / "txt")
    (src / "bad.txt").write_bytes(data)
    with pytest.raises(UserError, match=pattern) as e:
        corpus.build_corpus("local", path=str(src), cache_root=tmp_path / "corpus", progress=False)
    assert str(src / "bad.txt") in str(e.value) and "\n" not in str(e.value)
    assert not [p for p in (tmp_path / "corpus").rglob("*") if p.is_file()]  # nothing half-built


def test_links_and_folders_named_txt_are_skipped_with_a_note(tmp_path, capsys):
    from universal_neurons.data import corpus

    src = txt_folder(tmp_path / "txt")
    (src / "dangling.txt").symlink_to(src / "missing.txt")
    (src / "loop.txt").symlink_to(src / "loop.txt")
    (src / "folder.txt").mkdir()
    (src / "link.txt").symlink_to(src / "d01.txt")  # a link to a regular file is read
    cdir = corpus.build_corpus("local", path=str(src), cache_root=tmp_path / "corpus", progress=False)
    note = capsys.readouterr().err
    assert "skipped 3 entries that are not regular files" in note
    assert all(s in note for s in ("dangling.txt (a dangling link)", "loop.txt (a link loop)", "folder.txt (a folder)"))
    assert corpus.read_manifest(cdir)["warnings"] and "link" in {d.doc_id for s in ("train", "heldout")
                                                                for d in corpus.iter_documents(cdir, s)}


# ---- 4. a bound on every value, a warning for a plan far larger than the untiled one --------------------------------
BOUNDS = [
    ("book.top_pct=200", r"book\.top_pct=200 \(override\) must be a number in \(0, 100\]"),
    ("book.top_kurt_pct=101", r"book\.top_kurt_pct=101 \(override\) must be a number in \(0, 100\]"),
    ("book.frequent_pct=0", r"book\.frequent_pct=0 \(override\) must be a number in \(0, 100\]"),
    ("train.tokens=1e99", r"train\.tokens=1e\+99 \(override\) must be a whole number from 1 to 1,000,000,000,000"),
    ("train.seeds=[0, 18446744073709551616]", r"must be a list of seeds from 0 to 4,294,967,295"),
    ("analysis.baseline_seed=18446744073709551616", r"analysis\.baseline_seed=.* must be a whole number from 0 to "
                                                    r"4,294,967,295"),
    ("analysis.max_accumulator_gb=1e-6", r"analysis\.max_accumulator_gb=1e-06 \(override\) must be a number in "
                                         r"\[0\.001, inf\)"),
    ("train.lr=50", r"train\.lr=50 \(override\) must be a number from 0 to 10"),
    ("model.n_ctx=1e9", r"model\.n_ctx=1000000000 \(override\) must be a whole number from 1 to 1,048,576"),
    ("shipped=../../elsewhere", r"shipped='\.\./\.\./elsewhere' \(override\) must be a folder inside the project"),
    ("data_from=../x", r"data_from='\.\./x' \(override\) must be a shipped profile's name"),
]


@pytest.mark.parametrize("override,pattern", BOUNDS, ids=[b[0] for b in BOUNDS])
def test_a_value_beyond_its_bound_is_one_line_before_any_work(override, pattern, arts, capsys):
    assert main(["data", "--profile", "smoke", "--set", override]) == 2
    assert re.search(pattern, error_line(capsys))
    assert not arts.exists()


def test_every_numeric_key_has_an_upper_bound():
    from universal_neurons.config.schema import SECTIONS

    for name, section in SECTIONS.items():
        for key, field in section.model_fields.items():
            if field.annotation in (int, float) or "int" in str(field.annotation) or "float" in str(field.annotation):
                if key in ("seeds", "partners", "threshold") or name in ("grid", "snapshots"):
                    continue  # lists and the threshold have their own checks
                with pytest.raises(Exception, match="sanity bound|must be a number in|must be a whole number"):
                    section.model_validate({**_required(section), key: 10**30})


def _required(section) -> dict:
    return {k: (f.examples or [None])[0] for k, f in section.model_fields.items() if f.is_required()}


def test_a_tiled_plan_far_larger_than_the_untiled_one_warns_once(capsys):
    from universal_neurons.config.profile import _warned

    _warned.clear()
    load_profile("smoke", ["analysis.max_accumulator_gb=0.001"])
    load_profile("smoke", ["analysis.max_accumulator_gb=0.001"])
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.match(r"warning: analysis\.max_accumulator_gb=0\.001 splits the universality pass "
                                      r"into [\d,]+ passes over the held-out tokens", err[0])
    load_profile("smoke")
    assert capsys.readouterr().err == ""  # the default plan: one pass


def test_the_plan_counts_passes_as_the_universality_pass_does():
    from universal_neurons.measures import maxima
    from universal_neurons.config.profile import BYTES_PER_PAIR, pass_tiles

    assert BYTES_PER_PAIR == maxima.BYTES_PER_PAIR
    for n_layer, d, partners, gb, chunk in [(2, 256, 2, 4, 16384), (2, 256, 2, 1e-3, 16384), (2, 1024, 3, 0.05, 16384),
                                            (4, 512, 4, 0.3, 4096), (12, 3072, 4, 1.0, 16384)]:
        units = [(p, l, d) for p in range(partners) for l in range(n_layer)]
        assert pass_tiles(n_layer * d, [d] * len(units), gb * 1e9, chunk) == len(
            maxima._tiles(n_layer * d, units, gb * 1e9, chunk))


# ---- 5. member identity -----------------------------------------------------------------------------------------
def _member(folder: Path, seed: int) -> Path:
    from universal_neurons.core.checksum import file_sha256
    from universal_neurons.config.profile import MODEL_DEFAULTS, TRAIN_DEFAULTS

    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"weights of seed %d" % seed)
    (folder / "training_log.json").write_text(json.dumps({
        "seed": seed, "model": MODEL_DEFAULTS, "train": TRAIN_DEFAULTS, "data": {},
        "files": {"model.safetensors": file_sha256(folder / "model.safetensors")}}))
    return folder


def test_a_member_copied_over_another_is_neither_current_nor_loaded(tmp_path):
    from universal_neurons.models.loading import verify_recorded
    from universal_neurons.models.zoo import is_current

    zoo = tmp_path / "zoo"
    _member(zoo / "seed-2", 2)
    shutil.copytree(zoo / "seed-2", zoo / "seed-1")  # seed 2's files onto seed 1
    info = json.loads((zoo / "seed-1" / "training_log.json").read_text())
    assert is_current(zoo / "seed-2", info["model"], info["train"], info["data"])
    assert not is_current(zoo / "seed-1", info["model"], info["train"], info["data"])  # trained again
    with pytest.raises(UserError, match=r"seed-1 holds the training log of seed 2, not seed 1 \(a member copied") as e:
        verify_recorded(zoo / "seed-1")
    assert "\n" not in str(e.value)
    verify_recorded(zoo / "seed-2")


# ---- 6. a full or read-only disk, named with its path ------------------------------------------------------------
@pytest.fixture
def full_disk(monkeypatch):
    monkeypatch.setattr("universal_neurons.core.atomic.shutil.disk_usage",
                        lambda p: shutil._ntuple_diskusage(10 * 2**30, 10 * 2**30 - 2**20, 2**20))


@pytest.mark.parametrize("raised,code", [
    (RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 4416 vs 4304"), errno.ENOSPC),
    (RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed"), errno.ENOSPC),
    (Exception('Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left on '
               'device" })'), errno.ENOSPC),
    (Exception("Error while serializing: IoError(Os { code: 30, kind: ReadOnlyFilesystem })"), errno.EROFS),
    (OSError(errno.ENOSPC, "No space left on device"), errno.ENOSPC),  # a table writer's: no file name
], ids=["torch-pos", "torch-writer", "safetensors-full", "safetensors-ro", "no-filename"])
def test_a_writers_fault_is_the_oserror_it_stands_for_with_the_path(raised, code, tmp_path, full_disk):
    from universal_neurons.core.atomic import atomic_dir, atomic_path

    for writer, target in ((atomic_path, tmp_path / "tables" / "neurons.csv"), (atomic_dir, tmp_path / "step-1")):
        with pytest.raises(OSError) as e:
            with writer(target):
                raise raised
        assert e.value.errno == code and e.value.filename == str(target)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["tables"]  # no temporary file left


def test_a_torch_save_on_a_full_disk_through_the_cli_is_one_line_with_the_path(monkeypatch, capsys, full_disk,
                                                                              tmp_path):
    from universal_neurons.core import atomic

    target = tmp_path / "zoo" / ".partial" / "seed-0" / "step-000000100"

    def training(profile, args, progress):
        with atomic.atomic_dir(target):
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 4416 vs 4304")

    monkeypatch.setattr("universal_neurons.__main__._where", training)
    assert main(["where", "--profile", "smoke"]) == 2
    assert error_line(capsys) == (f"error: {target}: no space left on the device; free some space, or set "
                                  "UN_ARTIFACTS to a folder on a larger disk")


def test_an_unrelated_runtime_error_is_not_disguised(tmp_path):
    from universal_neurons.core.atomic import atomic_path

    with pytest.raises(RuntimeError, match="shape"):
        with atomic_path(tmp_path / "x.csv"):
            raise RuntimeError("shape mismatch")


@pytest.fixture
def built(arts, tmp_path, capsys):
    """A profile file whose data is built (and cached) in `arts`."""
    mine = local_profile(tmp_path / "p" / "tiny.yaml", txt_folder(tmp_path / "txt"))
    assert main(["data", "--profile", str(mine), "--quiet"]) == 0
    capsys.readouterr()
    return mine


def test_cached_data_is_served_on_a_full_disk(built, arts, monkeypatch, capsys):
    monkeypatch.setattr("universal_neurons.core.cli.shutil.disk_usage",
                        lambda p: shutil._ntuple_diskusage(10 * 2**30, 10 * 2**30, 0))
    before = snapshot(arts)
    assert main(["data", "--profile", str(built), "--quiet"]) == 0
    assert "train rows" in capsys.readouterr().out and snapshot(arts) == before


# ---- 7. read-only and moved artifacts -----------------------------------------------------------------------------
@pytest.fixture
def read_only_disk(monkeypatch):
    """Tests run as root, where chmod does not stop writes: every new file or folder is refused instead."""
    def refused(*a, **k):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), k.get("dir"))

    monkeypatch.setattr("tempfile.mkstemp", refused)
    monkeypatch.setattr("tempfile.mkdtemp", refused)


def test_cached_data_is_served_from_a_read_only_artifacts_folder(built, arts, read_only_disk, capsys):
    before = snapshot(arts)
    assert main(["data", "--profile", str(built), "--quiet"]) == 0
    out = capsys.readouterr()
    assert "train rows" in out.out and "cannot be written (read-only or full): cached results are served" in out.err
    assert snapshot(arts) == before


def test_an_uncached_result_in_a_read_only_folder_is_one_line_with_its_path(built, arts, read_only_disk, capsys):
    assert main(["data", "--profile", str(built), "--set", "model.n_ctx=32", "--quiet"]) == 2
    line = error_line(capsys)
    assert str(arts) in line and "read-only file system; set UN_ARTIFACTS to a writable folder" in line


def test_a_moved_artifacts_folder_keeps_its_cache(built, arts, tmp_path, monkeypatch, capsys):
    from universal_neurons.core import cache
    from universal_neurons.data.prepare import prepare

    prof = load_profile(str(built))
    key = cache.make_key("x", version=1, models=prof.members(), folders=[str(prof.data_dir)])
    assert "<artifacts>/" in json.dumps(key) and str(arts) not in json.dumps(key)
    moved = tmp_path / "elsewhere" / "artifacts"
    shutil.copytree(arts, moved)  # a copy (cp -a, a CI cache): every key still matches
    shutil.rmtree(arts)
    monkeypatch.setenv("UN_ARTIFACTS", str(moved))
    prof = load_profile(str(built))
    assert cache.make_key("x", version=1, models=prof.members(), folders=[str(prof.data_dir)]) == key
    before = snapshot(moved)
    prepare(prof, progress=False)  # nothing rebuilt
    assert snapshot(moved) == before


def test_a_key_stored_with_absolute_paths_is_still_current(tmp_path, arts):
    from universal_neurons.core import cache

    key = cache.make_key("x", version=1, model=str(arts / "smoke" / "zoo" / "seed-0"))
    legacy = {**key, "model": str(arts / "smoke" / "zoo" / "seed-0")}  # as an earlier version stored it
    (tmp_path / "x.key.json").write_text(json.dumps(legacy))
    assert cache.is_current(tmp_path, key)


def test_weights_are_named_by_their_recorded_content(tmp_path):
    from universal_neurons.core import cache

    a = _member(tmp_path / "a" / "seed-0", 0)
    b = tmp_path / "b" / "seed-0"
    b.mkdir(parents=True)
    for f in a.iterdir():
        shutil.copyfile(f, b / f.name)  # a copy with new mtimes (cp -r, a fresh checkout)
    os.utime(b / "model.safetensors", ns=(1, 1))
    assert cache.weights_signature(a) == cache.weights_signature(b)
    assert cache.weights_signature(a)[0][2] == json.loads((a / "training_log.json").read_text())["files"][
        "model.safetensors"]


def test_a_figure_goes_to_a_temporary_folder_when_the_run_folder_is_read_only(tmp_path, monkeypatch, capsys):
    import contextlib
    import types

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from universal_neurons.book import publish

    @contextlib.contextmanager
    def read_only(path):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        yield

    monkeypatch.setattr(publish, "atomic_path", read_only)
    ch = publish.Chapter("universality", types.SimpleNamespace(figures_dir=tmp_path / "run" / "figures"))
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    from IPython.core.interactiveshell import InteractiveShell

    had_shell = InteractiveShell.initialized()
    try:
        path = publish.figure(ch, "per-layer", fig)
    finally:  # matplotlib_inline makes an IPython shell: gone again for the tests that expect plain Python
        if not had_shell:
            InteractiveShell.clear_instance()
    assert path.is_file() and path.name == "universality-per-layer.png" and tmp_path not in path.parents
    assert "cannot be written (Read-only file system); this run's figures go to" in capsys.readouterr().err


# ---- 8. the Makefile: spaces in the checkout's path, quotes and backquotes in SET --------------------------------
FAKE_PYTHON = """#!/usr/bin/env python3
import json, os, sys
args = sys.argv[1:]
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps({"argv": args, "cwd": os.getcwd()}) + "\\n")
def touch(p):
    os.makedirs(os.path.dirname(p) or ".", exist_ok=True)
    open(p, "w").write("{}")
if "--write" in args:
    touch(args[args.index("--write") + 1])
if "--output" in args:
    touch(args[args.index("--output") + 1])
if args[:2] == ["-m", "papermill"]:
    touch([a for a in args if a.endswith(".tmp.ipynb")][0])
if args[:2] == ["-m", "universal_neurons.runs.locked"]:
    cmd = args[args.index("--") + 1:]
    os.execv(cmd[0], cmd)
"""


def test_the_makefile_passes_profile_and_set_verbatim_from_a_path_with_spaces(tmp_path):
    if shutil.which("make") is None:
        pytest.skip("no make")
    checkout = tmp_path / "my checkout $HOME 'q'"
    (checkout / ".venv" / "bin").mkdir(parents=True)
    shutil.copy(ROOT / "Makefile", checkout / "Makefile")
    for f in ("requirements.lock", "pyproject.toml"):
        (checkout / f).write_text("")
    (checkout / "notebooks").mkdir()
    (checkout / "notebooks" / "zoo.py").write_text("# a chapter\n")
    fake = checkout / ".venv" / "bin" / "python"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    time.sleep(0.01)
    (checkout / ".venv" / ".installed").write_text("")
    log = tmp_path / "log.jsonl"
    pwned = tmp_path / "pwned"
    sets = f'models.reference="/data/my model" book.threshold=0.4 `touch {pwned}` $HOME'
    env = {**os.environ, "FAKE_LOG": str(log)}
    for target in ("data", "artifacts/smoke+{}/notebooks/zoo.ipynb"):
        sha = __import__("hashlib").sha1(" ".join(sets.split()).encode()).hexdigest()[:10]
        done = subprocess.run(["make", "-s", target.format(sha), "PROFILE=smoke",  # make reads $$ as $
                               "SET=" + sets.replace("$", "$$")], cwd=checkout,
                              env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    assert not pwned.exists()  # nothing in SET was run by the shell
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    modules = {c["argv"][1]: c["argv"] for c in calls if c["argv"][:1] == ["-m"]}
    ours = [c["argv"] for c in calls if c["argv"][1].startswith("universal_neurons") and "--profile" in c["argv"]]
    assert {a[2] for a in ours} >= {"data", "config", "zoo", "--profile"}  # --profile: the lock's wrapper
    for argv in ours:
        assert argv[argv.index("--profile") + 1] == "smoke" and argv[argv.index("--set") + 1] == sets
    paper = modules["papermill"]
    assert paper[paper.index("--cwd") + 1] == "." and paper[-9:] == ["-p", "profile", "smoke", "-p", "device", "cpu", "-p",
                                                                     "overrides", sets]
    assert all(c["cwd"] == str(checkout) for c in calls)
    lock = modules["universal_neurons.runs.locked"]
    assert lock[2:6] == ["--profile", "smoke", "--set", sets]  # each chapter holds its run folder


# ---- 9. locks: chapter runs, built data, killed corpus builds ------------------------------------------------------
def test_a_chapter_run_holds_its_run_folder_and_a_cli_run_beside_it_waits(arts, capsys):
    code = "import os, sys, time; print(os.environ['UN_LOCK_HELD'], flush=True); time.sleep(30)"
    holder = subprocess.Popen([sys.executable, "-m", "universal_neurons.runs.locked", "--profile", "smoke", "--",
                               sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=Path.cwd(),
                              env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    try:
        assert holder.stdout.readline().strip() == str(arts / "smoke")  # the notebook knows it is held for it
        (arts / "smoke" / "tables").mkdir(parents=True)
        writing = arts / "smoke" / "tables" / ".neurons.csv.abcd1234.tmp"  # the notebook's write in progress
        writing.write_text("half")
        assert main(["universality", "--profile", "smoke", "--quiet"]) == 2
        assert f"another run is using {arts / 'smoke'} (pid " in error_line(capsys)
        assert writing.exists()  # not swept
    finally:
        holder.kill()
        holder.wait()


def test_locks_are_reentrant_and_a_folder_held_by_the_parent_is_not_waited_for(tmp_path, monkeypatch):
    with run_lock([tmp_path / "a"], wait=0):
        with run_lock([tmp_path / "a", tmp_path / "b"], wait=0):  # the same process: no wait, no error
            pass
    code = textwrap.dedent(f"""
        from universal_neurons.core.lock import run_lock
        with run_lock([{str(tmp_path / 'a')!r}], wait=0):
            print("ok")
    """)
    with run_lock([tmp_path / "a"], wait=0):
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "UN_LOCK_HELD": str(tmp_path / "a")}
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
        assert out.stdout.strip() == "ok", out.stderr


def test_a_set_run_does_not_hold_the_profiles_shared_folder(arts):
    import argparse

    from universal_neurons.__main__ import _written_folders

    prof = load_profile("smoke", ["train.tokens=700000"])
    folders = _written_folders(prof, argparse.Namespace(command="zoo", retrain=False))
    assert folders == [prof.root] and prof.data_dir.parent == arts / "smoke"  # shared, locked only while built
    shipped = load_profile("default", ["book.threshold=0.4"])
    assert _written_folders(shipped, argparse.Namespace(command="zoo", retrain=False)) == [shipped.root]


def test_a_killed_corpus_builds_leftovers_are_removed_by_the_next_build(arts, tmp_path, capsys):
    corpus_root = arts / "corpus"
    killed = [corpus_root / ".download.k1ll3d00.tmp", corpus_root / ".local-txt-0123abcd.k1ll3d11.tmp"]
    for d in killed:
        (d / "pkg").mkdir(parents=True)
        (d / "pkg" / "big.deb").write_bytes(b"\0" * 2**16)
    mine = local_profile(tmp_path / "p" / "tiny.yaml", txt_folder(tmp_path / "txt"))
    assert main(["data", "--profile", str(mine), "--quiet"]) == 0
    assert not any(d.exists() for d in killed)


# ---- 10. the remaining tracebacks and wrong fixes ------------------------------------------------------------------
def test_a_cut_config_json_is_one_line(tmp_path):
    from universal_neurons.models.loading import hooked_config

    (tmp_path / "config.json").write_text('{"architectures": ["GPT2LMHeadModel"], "n_emb')
    with pytest.raises(UserError, match=r"config\.json is unreadable \(JSONDecodeError: cut or damaged\)") as e:
        hooked_config(tmp_path)
    assert "\n" not in str(e.value) and "Hugging Face cache" not in str(e.value)


@pytest.mark.parametrize("device", ["meta", "xla", "cpu:0x"])
def test_a_device_the_analyses_do_not_run_on_is_refused_before_any_work(device, arts, capsys):
    assert main(["universality", "--profile", "smoke", "--device", device]) == 2
    line = error_line(capsys)
    assert f"device {device!r}" in line or f"unknown device {device!r}" in line
    assert not arts.exists()


def test_explorer_out_a_file_is_one_line(arts, tmp_path, capsys):
    out = tmp_path / "pages.html"
    out.write_text("mine")
    assert main(["explorer", "--profile", "smoke", "--out", str(out)]) == 2
    assert error_line(capsys) == f"error: --out {out} is a file; give a folder (it is created if missing)"
    assert out.read_text() == "mine" and not arts.exists()


def test_ctrl_c_is_one_line_and_exit_130(monkeypatch, capsys):
    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr("universal_neurons.__main__._where", interrupted)
    assert main(["where", "--profile", "smoke"]) == 130
    assert capsys.readouterr().err == ("error: interrupted (Ctrl-C); what was finished is kept, and the same command "
                                       "resumes from there\n")


def test_a_partner_that_is_neither_a_folder_nor_a_hub_id(tmp_path, monkeypatch):
    from universal_neurons.config.sources import resolve_checkpoint

    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError) as e:
        resolve_checkpoint("seed-1")
    msg = str(e.value)
    assert msg.startswith("model 'seed-1' is neither a local folder (no config.json at") and "hf download" not in msg
    assert "analysis.partners=[1]" in msg


def test_weights_that_do_not_fit_a_local_folder_say_so(tmp_path):
    from universal_neurons.models.loading import _weights_fix

    assert "Hugging Face cache" not in _weights_fix(tmp_path) and "local checkpoint" in _weights_fix(tmp_path)
    hub = tmp_path / "models--gpt2" / "snapshots" / "abc"
    hub.mkdir(parents=True)
    assert "from the Hugging Face cache" in _weights_fix(hub)


def test_unknown_papermill_parameters_are_refused():
    from universal_neurons.config.profile import unknown_parameters

    params = 'profile = "smoke"\ndevice = "cpu"\noverrides = ""'
    assert unknown_parameters(["import x", params, '# Parameters\nprofile = "smoke"\noverrides = "a.b=1"\n']) == []
    assert unknown_parameters([params, '# Parameters\npartners = 1\nprofile = "smoke"\n']) == ["partners"]
    assert unknown_parameters([params]) == []  # not run by papermill


def test_old_style_papermill_parameters_fail_the_notebook_with_one_line(tmp_path):
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell('profile = "smoke"\ndevice = "cpu"\noverrides = ""')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell("from universal_neurons import load_profile\nfrom universal_neurons.book import publish"),
                nbformat.v4.new_code_cell("prof = load_profile(profile, overrides)")]
    src, out = tmp_path / "in.ipynb", tmp_path / "out.ipynb"
    nbformat.write(nb, src)
    env = {**os.environ, "UN_ARTIFACTS": str(tmp_path / "artifacts"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run([sys.executable, "-m", "papermill", "--no-progress-bar", "-k", "python3", "--cwd", str(ROOT),
                           str(src), str(out), "-p", "partners", "1"], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode != 0
    line = ("error: papermill parameter(s) partners are not parameters of this chapter (it takes profile, device, "
            "overrides); set every other key through overrides, e.g. -p overrides \"analysis.partners=...\"")
    assert line in proc.stderr
    assert not (tmp_path / "artifacts").exists()


@pytest.mark.parametrize("text,line", [
    ("train: {seeds: [0, 1]}\nmodel: {n_ctx: 64}\ntrain: {tokens: 5}\n", "key 'train' is given twice (lines 1 and 3)"),
    ("train:\n  seeds: [0, 1]\n  seeds: [2]\n", "key 'seeds' is given twice (lines 2 and 3)"),
], ids=["section", "key"])
def test_a_key_given_twice_in_a_profile_file_is_one_line(text, line, tmp_path, capsys):
    path = tmp_path / "dup.yaml"
    path.write_text(text)
    assert main(["where", "--profile", str(path)]) == 2
    assert error_line(capsys) == f"error: {path}: {line}; keep one (YAML would silently keep the last)"


def test_a_key_given_twice_in_an_override_is_one_line(capsys):
    assert main(["where", "--profile", "smoke", "--set", "analysis.partners={a: 1, a: 2}"]) == 2
    assert "key 'a' is given twice; keep one" in error_line(capsys)


def test_retrain_without_a_shipped_zoo_is_one_line(arts, capsys):
    assert main(["zoo", "--profile", "smoke", "--retrain"]) == 2
    line = error_line(capsys)
    assert "--retrain retrains a shipped zoo and compares its bytes, but profile 'smoke' has no shipped zoo" in line
    assert not arts.exists()
