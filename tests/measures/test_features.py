"""Token features (hand-picked tokens of the default and GPT-2 tokenizers), unigram duplicates, per-position
features (previous-token shift, sources, positions) and the Brown tag alignment, against direct loops."""

import numpy as np
import pytest

from universal_neurons import UserError
from universal_neurons.data.corpus_sources import Document, brown_detokenize
from universal_neurons.measures.features import (FeatureSet,
                                                 hstack,
                                                 position_features,
                                                 positions,
                                                 row_features,
                                                 source_features,
                                                 token_features,
                                                 unigram_features,
                                                 unigram_thresholds)
from universal_neurons.measures.syntax import NO_TAG, align, brown_tags, coarse_tag
from universal_neurons.data.tokenizer import gpt2_bpe, load_tokenizer


@pytest.fixture(scope="module")
def default_tok():
    return load_tokenizer("zoo/release/tokenizer")


@pytest.fixture(scope="module")
def gpt2_tok():
    return gpt2_bpe()


def one_id(tok, s):
    ids = tok(s, add_special_tokens=False)["input_ids"]
    assert len(ids) == 1, f"{s!r} is not one token: {ids}"
    return ids[0]


def true_features(fs, i):
    return {n for j, n in enumerate(fs.names) if fs.matrix[i, j]}


def check(fs, tok, s, has, lacks=()):
    got = true_features(fs, one_id(tok, s))
    assert set(has) <= got, (s, got)
    assert not set(lacks) & got, (s, got)


def test_default_tokenizer_hand_picked_tokens(default_tok):
    fs = token_features(default_tok)
    assert fs.matrix.shape == (len(default_tok), len(fs.names)) and fs.matrix.dtype == bool
    check(fs, default_tok, " January", {"group:month", "space:starts_with_space", "case:capitalised", "letter:j",
                                        "type:alphabetic"}, {"case:all_caps", "group:day", "number:year"})
    check(fs, default_tok, ",", {"type:punctuation"}, {"space:starts_with_space", "type:alphabetic"})
    check(fs, default_tok, " he", {"pronoun:third_masculine", "letter:h"}, {"case:capitalised"})
    check(fs, default_tok, " seven", {"group:number_word", "letter:s"}, {"suffix:-s"})
    check(fs, default_tok, " LORD", {"case:all_caps", "case:capitalised", "letter:l"})
    check(fs, default_tok, " nothing", {"suffix:-ing", "letter:n"})
    check(fs, default_tok, " attention", {"suffix:-tion"}, {"suffix:-ing"})
    check(fs, default_tok, "\n", {"type:whitespace"}, {"type:alphabetic", "type:punctuation"})
    # every feature of a type: exactly one type per decodable id
    types = fs.select("type").matrix
    ok = np.setdiff1d(np.arange(len(default_tok)), fs.skipped)
    assert (types[ok].sum(1) == 1).all() and not fs.matrix[fs.skipped].any()


def test_gpt2_hand_picked_tokens(gpt2_tok):
    fs = token_features(gpt2_tok)
    check(fs, gpt2_tok, " January", {"group:month", "space:starts_with_space", "case:capitalised"})
    check(fs, gpt2_tok, "1999", {"number:year", "number:number", "type:numeric"}, {"space:starts_with_space"})
    check(fs, gpt2_tok, " 1999", {"number:year", "space:starts_with_space"})
    check(fs, gpt2_tok, "1000", {"number:number"}, {"number:year"})  # before 1491: not a year
    check(fs, gpt2_tok, " running", {"suffix:-ing", "letter:r"}, {"suffix:-ed"})
    check(fs, gpt2_tok, " quickly", {"suffix:-ly"})
    check(fs, gpt2_tok, " walked", {"suffix:-ed"})
    check(fs, gpt2_tok, " Monday", {"group:day", "letter:m"})
    check(fs, gpt2_tok, ",", {"type:punctuation"})
    check(fs, gpt2_tok, " they", {"pronoun:third_plural"})
    check(fs, gpt2_tok, " NASA", {"case:all_caps"})
    eot = gpt2_tok.eos_token_id
    assert eot in fs.skipped and not fs.matrix[eot].any()


def test_space_and_letters_against_the_byte_level_vocabulary(gpt2_tok):
    """Independent: GPT-2's raw vocabulary writes a leading space as "Ġ"; the first letter from that string."""
    fs = token_features(gpt2_tok)
    raw = gpt2_tok.convert_ids_to_tokens(list(range(len(gpt2_tok))))
    ok = np.setdiff1d(np.arange(len(gpt2_tok)), fs.skipped)
    space = np.array([r.startswith("Ġ") for r in raw])
    assert (fs.column("space:starts_with_space")[ok] == space[ok]).all()
    first = np.array([r.lstrip("Ġ")[:1].lower() for r in raw])
    for c in "aqz":
        assert (fs.column(f"letter:{c}")[ok] == (first == c)[ok]).all()
    # the reference code's alphabet features: the raw token, its space mark dropped, is the letter in either case
    whole = np.array([r.lstrip("Ġ").lower() for r in raw])
    for c in "aiz":
        col = fs.column(f"letter_token:{c}")
        assert (col[ok] == (whole == c)[ok]).all() and col.sum() >= 2  # "a" and "Ġa" at least
    check(fs, gpt2_tok, " a", {"letter_token:a", "letter:a"}, {"letter_token:b"})
    check(fs, gpt2_tok, " apple", {"letter:a"}, {"letter_token:a"})


class BrokenTokenizer:
    """Six ids: 0 special, 1 fails to decode, 2 a partial UTF-8 byte, 3..5 words."""

    all_special_ids = [0]
    words = {0: "<s>", 2: "\ufffd", 3: " May", 4: "May", 5: " cats"}

    def __len__(self):
        return 6

    def batch_decode(self, seqs):
        raise RuntimeError("batch fails")

    def decode(self, ids):
        if ids[0] == 1:
            raise ValueError("cannot decode")
        return self.words[ids[0]]


def test_undecodable_ids_are_skipped_and_counted():
    fs = token_features(BrokenTokenizer(), d_vocab=8)  # ids 6, 7: beyond the tokenizer
    assert fs.skipped.tolist() == [0, 1, 2, 6, 7]
    assert not fs.matrix[fs.skipped].any()
    notes = " ".join(fs.notes)
    for part in ("1 token ids skipped (special)", "1 token ids skipped (failed", "1 token ids skipped (partial",
                 "2 token ids skipped (beyond"):
        assert part in notes
    assert fs.column("group:month").tolist() == [False, False, False, True, True, False, False, False]
    assert fs.column("suffix:-s").tolist()[5]
    with pytest.raises(UserError, match="no feature"):
        fs.column("nope")


def test_unigram_duplicates_on_handmade_rows(default_tok):
    the = [one_id(default_tok, s) for s in (" the", "the", " The", "The")]
    dog = one_id(default_tok, " God")
    rows = np.array([[the[0], the[1], the[2], dog], [the[3], the[0], dog, the[0]]])
    # independent: decode each id alone, group by lower/strip
    decoded = [default_tok.decode([i]) for i in range(len(default_tok))]
    same_as_the = {i for i, s in enumerate(decoded) if s.strip().lower() == "the"}
    u = unigram_features(default_tok, rows, min_count=3, min_ids=2)
    assert u.names == ["unigram:the"]  # " God" twice, "god" with 2 ids would need 3 occurrences
    assert set(np.nonzero(u.column("unigram:the"))[0]) == same_as_the and len(same_as_the) >= 4
    u1 = unigram_features(default_tok, rows, min_count=2, min_ids=1)
    assert set(u1.names) == {"unigram:the", "unigram:god"}
    assert u1.kinds == ["unigram"] * 2
    too_many = unigram_features(default_tok, rows, min_count=1, min_ids=len(same_as_the) + 1)
    assert "unigram:the" not in too_many.names
    with pytest.raises(UserError, match="outside"):
        unigram_features(default_tok, np.array([[len(default_tok)]]))


def test_unigram_thresholds_scale_from_the_paper():
    assert unigram_thresholds(10_000_000, 50257) == (3001, 4)
    assert unigram_thresholds(411_008, 4096) == (124, 2)
    assert unigram_thresholds(10, 100) == (2, 2)


def tiny_set():
    m = np.array([[1, 0], [0, 1], [1, 1], [0, 0]], dtype=bool)  # 4 ids, 2 features
    return FeatureSet(["a", "b"], ["type", "type"], m)


def test_previous_token_shift_against_a_loop():
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 4, size=(7, 5))
    fs = tiny_set()
    rf = row_features(fs, tokens, chunk_rows=3)
    assert rf.names == ["a", "b", "prev:a", "prev:b"] and rf.kinds[2:] == ["previous"] * 2
    dense = rf.matrix.toarray()
    assert dense.shape == (35, 4)
    for r in range(7):
        for p in range(5):
            row = dense[r * 5 + p]
            assert (row[:2] == fs.matrix[tokens[r, p]]).all()
            assert (row[2:] == (fs.matrix[tokens[r, p - 1]] if p else [False, False])).all()
    assert row_features(fs, tokens, previous=False).matrix.shape == (35, 2)
    with pytest.raises(UserError, match="outside"):
        row_features(fs, tokens + 4)


def test_source_and_position_features_against_loops():
    sources = np.array([[0, 0, 1], [2, 2, 2]], dtype=np.uint8)
    sf = source_features(sources, ["sotu", "brown", "kjv"], chunk_rows=1)
    assert sf.names == ["source:sotu", "source:brown", "source:kjv"]
    assert (sf.matrix.toarray() == (sources.ravel()[:, None] == np.arange(3))).all()
    with pytest.raises(UserError, match="source names"):
        source_features(sources, ["sotu"])
    pf = position_features(2, 6)
    assert pf.names == ["position:0-0", "position:1-1", "position:2-3", "position:4-5"]
    pos = positions(2, 6)
    assert pos.tolist() == [0, 1, 2, 3, 4, 5] * 2
    dense = pf.matrix.toarray()
    for k, (a, b) in enumerate([(0, 0), (1, 1), (2, 3), (4, 5)]):
        assert (dense[:, k] == ((pos >= a) & (pos <= b))).all()
    assert (dense.sum(1) == 1).all()
    assert position_features(1, 4, edges=[0, 2, 4]).names == ["position:0-1", "position:2-3"]
    with pytest.raises(UserError, match="edges"):
        position_features(1, 4, edges=[1, 4])
    both = hstack(row_features(tiny_set(), np.zeros((2, 6), dtype=int)), pf)
    assert both.matrix.shape == (12, 8) and both.names[-1] == "position:4-5"
    with pytest.raises(UserError, match="different items"):
        hstack(pf, sf)


def test_brown_tags_align_one_sentence(default_tok):
    text, pos = brown_detokenize("The/at dog/nn ran/vbd ./.\n\nHe/pps said/vbd it/pps ./.")
    assert text == "The dog ran.\n\nHe said it."
    docs = [Document("brown", "brown/x", text, pos), Document("kjv", "kjv/x", "In the beginning")]
    tt = brown_tags(default_tok, docs)
    assert len(tt.ids) == 1 and "1 documents without gold tags skipped" in tt.notes[0]
    enc = default_tok(text, add_special_tokens=False, return_offsets_mapping=True)
    assert tt.ids[0].tolist() == enc["input_ids"]
    # independent: the tag of the word whose characters the token's non-space characters fall in
    want = []
    for a, b in enc["offset_mapping"]:
        piece = text[a:b]
        a += len(piece) - len(piece.lstrip())
        hit = [t for s, e, t in pos if s <= a < e] if piece.strip() else []
        want.append(coarse_tag(hit[0]) if hit else None)
    got = [tt.tag_names[t] if t != NO_TAG else None for t in tt.tags[0]]
    assert got == want
    # the shipped tokenizer splits " dog" into " do" + "g": both are the noun; the blank line has no tag
    assert got == ["AT", "NN", "NN", "VB", "PUNCT", None, None, "PP", "VB", "PP", "PUNCT"]
    toks, tags = tt.rows(4, bos=0)
    assert toks[:, 0].tolist() == [0] * len(toks) and (tags[:, 0] == NO_TAG).all()
    assert toks[0, 1:].tolist() == enc["input_ids"][:3]
    f = tt.features(tags, min_count=1)
    dense = f.matrix.toarray()
    j = f.names.index("pos:NN")
    assert (dense[:, j] == (tags.ravel() == tt.tag_names.index("NN"))).all()
    jp = f.names.index("prev:pos:AT")
    shifted = np.full_like(tags, NO_TAG)
    shifted[:, 1:] = tags[:, :-1]
    assert (dense[:, jp] == (shifted.ravel() == tt.tag_names.index("AT"))).all()


def test_coarse_tags_and_overlaps():
    assert [coarse_tag(t) for t in ("nns", "vbd", "at", "np$", "nn-tl", "fw-in", ".", "--", "ppss")] == \
        ["NN", "VB", "AT", "NP", "NN", "FW", "PUNCT", "PUNCT", "PP"]
    words = [(0, 3, "a"), (4, 7, "b"), (7, 8, "c")]
    assert align([(0, 2), (3, 7), (6, 8), (8, 9), (2, 5)], words).tolist() == [0, 1, 1, -1, 0]


def test_no_brown_documents():
    tt = brown_tags(None, [Document("kjv", "kjv/x", "In the beginning")])
    assert tt.ids == [] and "no Brown documents" in tt.notes[-1]
    with pytest.raises(UserError, match="no Brown documents"):
        tt.rows(8, 0)
