"""Files: every file is checked when it is read (token rows, corpus splits, tokenizers, weights, cached
results), every cache key is complete, any number of corpus sources. Each damaged file gives one line naming the
file and the fix, or is rebuilt / recomputed; nothing half-written is left."""

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from universal_neurons import UserError, load_profile

ART = Path(__file__).resolve().parents[2] / "artifacts" / "smoke"
TEXTS = ["The quick brown fox jumps over the lazy dog. " * 6, "Call me Ishmael. Some years ago, never mind. " * 6,
         "It was the best of times, it was the worst of times. " * 6]


class Doc:
    def __init__(self, source, text):
        self.source, self.text = source, text


def _one_line(e) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def _no_partial(folder: Path):
    left = [p.name for p in Path(folder).rglob("*") if p.name.endswith(".tmp") or ".tmp" in p.name]
    assert not left, left


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    from universal_neurons.data.tokenizer import build_tokenizer, load_tokenizer

    d = build_tokenizer("bpe", tmp_path_factory.mktemp("tok") / "tokenizer", iter(TEXTS * 4), 400)
    return load_tokenizer(d)


def _rows(tok, prefix):
    from universal_neurons.data.tokens import build_rows

    return build_rows([Doc(f"s{i}", t) for i, t in enumerate(TEXTS * 3)], tok, 16, prefix, {"t": 1}, progress=False)


# ---- 1. token rows --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("damage", ["truncate", "flip", "sources", "header"])
def test_damaged_token_rows_are_named_when_opened_and_rebuilt_by_build_rows(tmp_path, tok, damage):
    from universal_neurons.data.tokens import open_rows

    prefix = tmp_path / "data" / "train"
    good = np.array(_rows(tok, prefix).tokens)
    target = {"truncate": ".bin", "flip": ".bin", "sources": ".sources.bin", "header": ".json"}[damage]
    f = prefix.with_suffix(target)
    raw = bytearray(f.read_bytes())
    if damage == "truncate":
        f.write_bytes(raw[: len(raw) // 2])
    elif damage == "header":
        f.write_text('{"rows": 3, "n_ctx"')
    else:
        raw[len(raw) // 3] ^= 0xFF
        f.write_bytes(raw)
    with pytest.raises(UserError) as e:
        open_rows(prefix)
    msg = _one_line(e)
    assert str(f) in msg and "rerun `python -m universal_neurons data" in msg
    assert ("unreadable" in msg) if damage == "header" else ("does not match the sha256" in msg)
    rebuilt = _rows(tok, prefix)  # through build_rows: a clean rebuild
    assert (np.asarray(rebuilt.tokens) == good).all()
    open_rows(prefix)  # and the files pass their check again
    _no_partial(tmp_path)


def test_300_source_local_corpus_keeps_every_source(tmp_path, tok):
    from universal_neurons.data import corpus
    from universal_neurons.data.tokens import build_rows, open_rows

    src = tmp_path / "txt"
    src.mkdir()
    for i in range(300):
        (src / f"doc{i:03d}.txt").write_text(f"Document number {i}. " + TEXTS[i % 3])
    cdir = corpus.build_corpus("local", path=str(src), cache_root=tmp_path / "corpus", progress=False)
    rows = build_rows(corpus.iter_documents(cdir, "train"), tok, 32, tmp_path / "data" / "train", {"t": 1},
                      progress=False)
    names = rows.source_names
    assert len(names) > 255 and rows.sources.dtype == np.uint16
    assert int(rows.sources.max()) == len(names) - 1 > 255  # no wrap-around at 256
    last = names[-1]
    assert last.startswith("doc") and int(np.asarray(rows.sources)[-1, -1]) == len(names) - 1
    assert open_rows(tmp_path / "data" / "train").header["source_dtype"] == "uint16"


# ---- 2. corpus splits -----------------------------------------------------------------------------------------
def test_split_cut_at_a_line_is_named_and_changes_the_rows_key(tmp_path):
    from universal_neurons.data import corpus
    from universal_neurons.core.checksum import file_sha256

    src = tmp_path / "txt"
    src.mkdir()
    for i in range(40):
        (src / f"d{i}.txt").write_text(f"text {i} " * 20)
    cdir = corpus.build_corpus("local", path=str(src), cache_root=tmp_path / "corpus", progress=False)
    man = corpus.read_manifest(cdir)
    assert set(man["files"]) == {"train.jsonl", "heldout.jsonl"}
    split = cdir / "train.jsonl"
    lines = split.read_text().splitlines(keepends=True)
    split.write_text("".join(lines[:-3]))  # cut at a line boundary: every remaining line still parses
    with pytest.raises(UserError) as e:
        corpus.iter_documents(cdir, "train")
    msg = _one_line(e)
    assert str(split) in msg and "does not match the sha256" in msg and f"delete the folder {cdir}" in msg
    # the rows' key holds the corpus manifest's sha256, and the manifest holds each split's: a rebuilt corpus
    # with other content has another key
    before = file_sha256(cdir / "manifest.json")
    (src / "d0.txt").write_text("changed " * 20)
    shutil.rmtree(cdir)
    cdir = corpus.build_corpus("local", path=str(src), cache_root=tmp_path / "corpus", progress=False)
    assert file_sha256(cdir / "manifest.json") != before
    _no_partial(tmp_path)


# ---- 3. tokenizer ---------------------------------------------------------------------------------------------
def test_vocab_size_override_gets_its_own_tokenizer_and_no_current_zoo(tmp_path):
    from universal_neurons.data.tokenizer import build_tokenizer, load_tokenizer
    from universal_neurons.models.zoo import is_current

    base, other = load_profile("smoke"), load_profile("smoke", ["tokenizer.vocab_size=1024"])
    assert other.trained_tokenizer_dir != base.trained_tokenizer_dir and other.data_dir != base.data_dir
    # the same folder asked for another vocab_size is rebuilt, never kept
    d = build_tokenizer("bpe", tmp_path / "tok", iter(TEXTS * 4), 400)
    n400 = len(load_tokenizer(d))
    build_tokenizer("bpe", tmp_path / "tok", iter(TEXTS * 4), 330)
    assert len(load_tokenizer(d)) == 330 != n400
    seed = ART / "zoo" / "seed-0"
    if (seed / "training_log.json").is_file():  # the zoo compares the data provenance: another tokenizer is not it
        info = json.loads((seed / "training_log.json").read_text())
        assert is_current(seed, info["model"], info["train"], info["data"])
        assert not is_current(seed, info["model"], info["train"], {**info["data"], "tokenizer_sha256": "0" * 64})


def test_broken_tokenizer_file_names_the_file_and_says_delete(tmp_path, tok):
    from universal_neurons.data.tokenizer import load_tokenizer

    d = tmp_path / "tokenizer"
    tok.save_pretrained(d)
    (d / "tokenizer.json").write_text('{"version": "1.0", "model": ')
    with pytest.raises(UserError) as e:
        load_tokenizer(d)
    msg = _one_line(e)
    assert f"no readable tokenizer in {d}" in msg and f"delete the folder {d}" in msg


def test_broken_tokenizer_through_the_cli_exits_2(tmp_path, monkeypatch, capsys, tok):
    from universal_neurons.__main__ import main

    monkeypatch.setenv("UN_ARTIFACTS", str(tmp_path / "artifacts"))
    src = tmp_path / "txt"
    src.mkdir()
    for i in range(30):
        (src / f"d{i}.txt").write_text(TEXTS[i % 3])
    sets = [f"corpus.source=local corpus.path={src}"]
    prof = load_profile("smoke", sets)
    tok.save_pretrained(prof.trained_tokenizer_dir)
    (prof.trained_tokenizer_dir / "tokenizer.json").write_text("not json")
    assert main(["data", "--profile", "smoke", "--set", sets[0], "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: no readable tokenizer in") and "delete the folder" in err[0]
    assert not list(prof.data_dir.glob("*.bin")) if prof.data_dir.exists() else True
    _no_partial(tmp_path / "artifacts")


# ---- 4. weights and results ------------------------------------------------------------------------------------
@pytest.fixture
def member(tmp_path):
    seed = ART / "zoo" / "seed-0"
    if not (seed / "model.safetensors").is_file():
        pytest.skip("no smoke zoo (make zoo PROFILE=smoke)")
    dst = tmp_path / "zoo" / "seed-0"
    shutil.copytree(seed, dst)
    return dst


def test_truncated_safetensors_is_one_line(member):
    from universal_neurons.models.loading import load_model

    f = member / "model.safetensors"
    f.write_bytes(f.read_bytes()[: f.stat().st_size - 1000])
    with pytest.raises(UserError) as e:
        load_model(str(member))
    msg = _one_line(e)
    assert f"weight file {f} is truncated or damaged" in msg and f"delete {member} and retrain" in msg


def test_flipped_byte_in_weights_with_recorded_checksum(member):
    from universal_neurons.core.checksum import file_sha256
    from universal_neurons.models.loading import load_model

    f = member / "model.safetensors"
    log = member / "training_log.json"
    info = json.loads(log.read_text())
    log.write_text(json.dumps({**info, "files": {"model.safetensors": file_sha256(f)}}))
    load_model(str(member))  # intact: loads
    raw = bytearray(f.read_bytes())
    raw[-100] ^= 0x01  # inside a tensor: the file still parses
    f.write_bytes(raw)
    with pytest.raises(UserError) as e:
        load_model(str(member))
    msg = _one_line(e)
    assert f"{f} does not match the sha256 recorded in training_log.json" in msg


@pytest.fixture
def tables(tmp_path):
    if not (ART / "tables" / "maxima.npz").is_file():
        pytest.skip("no smoke universality pass")
    dst = tmp_path / "tables"
    shutil.copytree(ART / "tables", dst)
    return dst


def test_corrupt_maxima_counts_as_missing(tables):
    from universal_neurons.runs.neuron_tables import load_results

    f = tables / "maxima.npz"
    raw = bytearray(f.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    f.write_bytes(raw)
    with pytest.raises(UserError) as e:
        load_results(tables, 0.5)  # another threshold: derived from the damaged maxima
    msg = _one_line(e)
    assert "was damaged" in msg and "rerun `python -m universal_neurons universality" in msg
    # removed with its cache key: the next `universality` run recomputes the pass, never reuses it
    assert not f.exists() and not (tables / "pass.json").exists()
    assert not (tables / "universality-pass.key.json").exists()


def test_cut_neurons_csv_is_derived_again(tables):
    from universal_neurons.runs.neuron_tables import load_results

    info = json.loads((tables / "universality.json").read_text())
    good = load_results(tables, info["threshold"]).neurons
    f = tables / "neurons.csv"
    lines = f.read_text().splitlines(keepends=True)
    f.write_text("".join(lines[: len(lines) // 2]))  # cut at a line: still parses
    again = load_results(tables, info["threshold"]).neurons
    assert len(again) == len(good) == info["summary"]["n_neurons"]
    assert np.allclose(again["excess_corr"], good["excess_corr"], equal_nan=True)
    _no_partial(tables)


@pytest.mark.parametrize("damage", ["cut", "garbage"])
def test_damaged_properties_files_are_refused(tables, damage):
    from universal_neurons.core.checksum import file_sha256
    from universal_neurons.runs.properties import load_properties

    if not (tables / "properties.json").is_file():
        pytest.skip("no smoke properties")
    csv, js = tables / "properties.csv", tables / "properties.json"
    info = json.loads(js.read_text())
    info["files"] = {n: file_sha256(tables / n) for n in ("properties.csv", "properties-hist.npz")}
    js.write_text(json.dumps(info))  # as compute_properties now writes it
    prof = SimpleNamespace(name="smoke", tables_dir=tables)
    load_properties(prof)
    if damage == "cut":
        lines = csv.read_text().splitlines(keepends=True)
        csv.write_text("".join(lines[:-5]))
    else:
        (tables / "properties-hist.npz").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(UserError) as e:
        load_properties(prof)
    msg = _one_line(e)
    assert f"the neuron properties in {tables} are damaged" in msg
    assert "rerun `python -m universal_neurons properties" in msg


def test_corrupt_sweep_summary_counts_as_missing(tmp_path):
    from universal_neurons.runs.sweep_results import _summary_rows

    point = SimpleNamespace(point_dir=tmp_path)
    (tmp_path / "summary.json").write_text('{"rows": [{"point": 1}]}')
    assert _summary_rows(point) == [{"point": 1}]
    (tmp_path / "summary.json").write_text('{"rows": [{"point": 1}')
    assert _summary_rows(point) is None


# ---- 5. n_ctx beyond the checkpoint's context ------------------------------------------------------------------
def test_n_ctx_larger_than_the_checkpoint_is_one_line(tmp_path):
    from universal_neurons.data.prepare import check_n_ctx

    (tmp_path / "config.json").write_text(json.dumps({"n_positions": 128, "architectures": ["GPT2LMHeadModel"]}))
    prof = SimpleNamespace(cfg={"model": {"n_ctx": 512}, "tokenizer": {"kind": "from_model"}},
                           members=lambda: ["gpt2"])
    with pytest.raises(UserError) as e:
        check_n_ctx(prof, tmp_path)
    msg = _one_line(e)
    assert "model.n_ctx=512 is larger than the context of gpt2 (128 positions" in msg and "at most 128" in msg
    prof.cfg["model"]["n_ctx"] = 128
    check_n_ctx(prof, tmp_path)  # equal: fine
