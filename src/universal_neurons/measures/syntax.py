"""Syntax features: the Brown corpus's gold part-of-speech tags aligned to the tokens of any tokenizer.

Evaluated on Brown documents only (the one source with gold tags): other sources have no syntax features.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..core.errors import UserError
from .features import FeatureSet

NO_TAG = -1  # BOS/EOT and tokens that overlap no word (whitespace, newlines)


def coarse_tag(tag: str) -> str:
    """A Brown tag's coarse class: the first two letters of its leading letters, upper-cased ("nns" -> "NN",
    "vbd" -> "VB", "at" -> "AT", "np$" -> "NP", "nn-tl" -> "NN", "fw-in" -> "FW"); "PUNCT" for
    punctuation tags ("." "," "--" ...)."""
    m = re.match(r"[a-z]+", tag.lower())
    return m[0][:2].upper() if m else "PUNCT"


def align(offsets, words) -> np.ndarray:
    """Per token (start, end) in `offsets`: the index of the word (start, end, ...) in `words` it overlaps
    most (ties: the first), or -1 where it overlaps none. Words must be sorted and disjoint."""
    off = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    if not len(words):
        return np.full(len(off), -1, dtype=np.int64)
    ws = np.array([w[0] for w in words], dtype=np.int64)
    we = np.array([w[1] for w in words], dtype=np.int64)
    a, b = off[:, 0], off[:, 1]
    first = np.searchsorted(we, a, side="right")  # the first word ending after the token's start
    best = np.full(len(off), -1, dtype=np.int64)
    best_len = np.zeros(len(off), dtype=np.int64)
    for k in range(3):  # a token spans at most a few words: take the largest overlap among the next ones
        i = np.minimum(first + k, len(ws) - 1)
        ov = np.minimum(b, we[i]) - np.maximum(a, ws[i])
        ov[first + k >= len(ws)] = 0
        better = ov > best_len
        best[better], best_len[better] = i[better], ov[better]
    return best


@dataclass
class TaggedTokens:
    """Brown documents tokenised: `ids[d]` the token ids of document d, `tags[d]` their coarse tag index into
    `tag_names` (NO_TAG where none), `notes` what was skipped."""

    ids: list[np.ndarray]
    tags: list[np.ndarray]
    tag_names: list[str]
    notes: list[str]

    def rows(self, n_ctx: int, bos: int) -> tuple[np.ndarray, np.ndarray]:
        """The documents as token rows [rows, n_ctx] the way `tokens.build_rows` makes them (each document
        followed by `bos`, the stream cut into BOS + n_ctx-1 tokens, the rest dropped), and their tags."""
        if not self.ids:
            raise UserError("no Brown documents were tagged; syntax features need the brown source in the corpus")
        stream = np.concatenate([np.append(i, bos) for i in self.ids])
        tagged = np.concatenate([np.append(t, NO_TAG) for t in self.tags])
        body = n_ctx - 1
        n = len(stream) // body
        toks = np.full((n, n_ctx), bos, dtype=np.int64)
        tags = np.full((n, n_ctx), NO_TAG, dtype=np.int64)
        toks[:, 1:] = stream[: n * body].reshape(n, body)
        tags[:, 1:] = tagged[: n * body].reshape(n, body)
        return toks, tags

    def features(self, tags, min_count: int = 50, previous: bool = True) -> FeatureSet:
        """A feature "pos:<TAG>" per coarse tag seen at least `min_count` times in `tags` (any shape,
        flattened row by row; CSR), with previous-token versions "prev:pos:<TAG>" (False at a row's start)."""
        tags = np.asarray(tags, dtype=np.int64)
        t2 = np.atleast_2d(tags).reshape(-1, np.atleast_2d(tags).shape[-1])
        counts = np.bincount(t2[t2 >= 0], minlength=len(self.tag_names))
        keep = [k for k in range(len(self.tag_names)) if counts[k] >= min_count]
        notes = list(self.notes)
        if dropped := len(self.tag_names) - len(keep):
            notes.append(f"{dropped} tags seen fewer than {min_count} times: no feature")
        col = np.full(len(self.tag_names) + 1, -1, dtype=np.int64)
        col[keep] = np.arange(len(keep))

        def onehot(t):
            c = col[t.ravel()]  # NO_TAG (-1) reads the last entry: -1
            hit = c >= 0
            return sp.csr_matrix((np.ones(hit.sum(), dtype=bool), (np.nonzero(hit)[0], c[hit])),
                                 shape=(t.size, len(keep)), dtype=bool)

        mats = [onehot(t2)]
        names = [f"pos:{self.tag_names[k]}" for k in keep]
        kinds = ["syntax"] * len(keep)
        if previous:
            prev = np.full_like(t2, NO_TAG)
            prev[:, 1:] = t2[:, :-1]
            mats.append(onehot(prev))
            names += [f"prev:{n}" for n in names]
            kinds += ["previous"] * len(keep)
        return FeatureSet(names, kinds, sp.hstack(mats, format="csr"), notes)


def brown_tags(tokenizer, documents) -> TaggedTokens:
    """Tokenise the Brown documents among `documents` (corpus Documents with `.pos`: (start, end, tag) per
    word) and give each token the coarse gold tag (`coarse_tag`) of the word it overlaps most, found with the
    tokenizer's offset mapping. Other documents are skipped (syntax is evaluated on Brown documents only)."""
    documents = list(documents)
    docs = [d for d in documents if getattr(d, "pos", None)]
    notes = []
    if skipped := len(documents) - len(docs):
        notes.append(f"{skipped} documents without gold tags skipped: syntax features cover Brown documents only")
    if not docs:
        notes.append("no Brown documents: no syntax features")
        return TaggedTokens([], [], [], notes)
    if not getattr(tokenizer, "is_fast", False):
        raise UserError("syntax features need a fast tokenizer (offset mapping); load it with universal_neurons.data.tokenizer.load_tokenizer")
    names: dict[str, int] = {}
    ids, tags = [], []
    untagged = 0
    for d in docs:
        enc = tokenizer(d.text, add_special_tokens=False, return_offsets_mapping=True)
        word = align(enc["offset_mapping"], d.pos)
        word_tag = np.array([names.setdefault(coarse_tag(t), len(names)) for _, _, t in d.pos], dtype=np.int64)
        t = np.where(word >= 0, word_tag[np.maximum(word, 0)], NO_TAG)
        untagged += int((t == NO_TAG).sum())
        ids.append(np.asarray(enc["input_ids"], dtype=np.int64))
        tags.append(t)
    notes.append(f"{len(docs)} Brown documents, {sum(map(len, ids))} tokens, {untagged} overlap no word (no tag)")
    return TaggedTokens(ids, tags, list(names), notes)
