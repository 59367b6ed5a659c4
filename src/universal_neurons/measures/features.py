"""Binary features of tokens (paper section 4.3), for any tokenizer: per token id, then per position of token rows.

A `FeatureSet` holds feature names, their kinds and a boolean matrix [items, features]: items are token ids
(`token_features`, `unigram_features`) or the positions of token rows flattened row by row (`row_features`,
`source_features`, `position_features`: scipy.sparse CSR, built in chunks of rows). Syntax features: `syntax`.
"""

from __future__ import annotations

import math
import string
import unicodedata
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from ..core.errors import UserError

YEARS = (1491, 2199)  # the reference code's range of a "year" token
PRONOUNS = {
    "first_person": "i me my mine myself we us our ours ourselves",
    "second_person": "you your yours yourself yourselves thou thee thy thine ye",  # KJV forms included
    "third_masculine": "he him his himself",
    "third_feminine": "she her hers herself",
    "third_neuter": "it its itself",
    "third_plural": "they them their theirs themselves",
}
GROUPS = {
    "month": "january february march april may june july august september october november december",
    "day": "monday tuesday wednesday thursday friday saturday sunday",
    "number_word": "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
                   "sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety "
                   "hundred thousand million billion",
    "ordinal_word": "first second third fourth fifth sixth seventh eighth ninth tenth",
}
PREFIXES = ("un", "re", "dis")
SUFFIXES = ("ing", "ed", "ly", "tion", "s")
TYPES = ("alphabetic", "numeric", "punctuation", "whitespace", "mixed")


@dataclass
class FeatureSet:
    """Binary features: `names[j]` of kind `kinds[j]` is column j of `matrix` [items, features] (bool, dense
    or scipy.sparse CSR); `notes`: what was skipped and why; `skipped`: token ids without features."""

    names: list[str]
    kinds: list[str]
    matrix: np.ndarray | sp.csr_matrix
    notes: list[str] = field(default_factory=list)
    skipped: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.names)

    def column(self, name: str) -> np.ndarray:
        """Feature `name` as a dense boolean vector over the items."""
        if name not in self.names:
            raise UserError(f"no feature {name!r}; this set has {len(self.names)} features, e.g. {self.names[:5]}")
        col = self.matrix[:, self.names.index(name)]
        return np.asarray(col.toarray() if sp.issparse(col) else col).ravel().astype(bool)

    def select(self, *kinds: str) -> "FeatureSet":
        """The features of the given kinds (all kinds if none given)."""
        keep = [j for j, k in enumerate(self.kinds) if not kinds or k in kinds]
        return FeatureSet([self.names[j] for j in keep], [self.kinds[j] for j in keep],
                          self.matrix[:, keep], list(self.notes), self.skipped)

    def sparse(self) -> sp.csr_matrix:
        """The matrix as boolean CSR."""
        return sp.csr_matrix(self.matrix, dtype=bool)


def hstack(*sets: FeatureSet) -> FeatureSet:
    """Features side by side (the same items); sparse if any is sparse."""
    if len({s.matrix.shape[0] for s in sets}) != 1:
        raise UserError(f"feature sets cover different items: {[s.matrix.shape[0] for s in sets]}; build them from the same rows")
    names = [n for s in sets for n in s.names]
    mats = [s.matrix for s in sets]
    mat = sp.hstack([sp.csr_matrix(m, dtype=bool) for m in mats], format="csr") if any(map(sp.issparse, mats)) \
        else np.hstack(mats)
    skipped = np.unique(np.concatenate([s.skipped for s in sets])) if sets else np.zeros(0, dtype=np.int64)
    return FeatureSet(names, [k for s in sets for k in s.kinds], mat, [n for s in sets for n in s.notes], skipped)


# ------------------------------------------------------------------------------------------ per token id

def decode_vocab(tokenizer, d_vocab: int) -> tuple[list[str | None], list[str]]:
    """Each id's decoded string, None where it cannot be decoded (special, out of range, a partial UTF-8
    byte sequence); and notes counting those."""
    n_tok = len(tokenizer)
    ids = list(range(min(d_vocab, n_tok)))
    try:
        strings: list[str | None] = list(tokenizer.batch_decode([[i] for i in ids]))
    except Exception:  # a tokenizer that fails on some id: one by one
        strings = []
        for i in ids:
            try:
                strings.append(tokenizer.decode([i]))
            except Exception:
                strings.append(None)
    special = set(getattr(tokenizer, "all_special_ids", ()) or ())
    counts = {"special": 0, "partial UTF-8 bytes": 0, "failed to decode": 0}
    for i, s in enumerate(strings):
        if s is None:
            counts["failed to decode"] += 1
        elif i in special:
            counts["special"] += 1
            strings[i] = None
        elif "\ufffd" in s:
            counts["partial UTF-8 bytes"] += 1
            strings[i] = None
    strings += [None] * (d_vocab - len(ids))
    counts["beyond the tokenizer's vocabulary"] = d_vocab - len(ids)
    notes = [f"{n} token ids skipped ({why}): no features" for why, n in counts.items() if n]
    return strings, notes


def _type(w: str) -> str:
    if all(unicodedata.category(c)[0] == "C" for c in w):  # empty after strip, or control characters only
        return "whitespace"
    if w.isalpha():
        return "alphabetic"
    if w.isdigit():
        return "numeric"
    if all(c in string.punctuation or unicodedata.category(c)[0] in "PS" for c in w):
        return "punctuation"
    return "mixed"


def _is_number(w: str) -> bool:
    t = w.replace(",", "").replace(".", "", 1)
    return bool(t) and t.isdigit() and w[0].isdigit()


def _string_features(s: str) -> dict[str, bool]:
    """The features of one decoded token string (name -> value; kinds from the name's prefix)."""
    w = s.strip()
    low = w.lower()
    f = {f"type:{t}": _type(w) == t for t in TYPES}
    letters = sum(c.isalpha() for c in w)
    f["space:starts_with_space"] = s.startswith(" ")
    f["case:capitalised"] = w[:1].isupper()
    f["case:all_caps"] = letters >= 2 and w.isupper()
    f["number:year"] = len(w) == 4 and w.isdigit() and YEARS[0] <= int(w) <= YEARS[1]
    f["number:number"] = _is_number(w)
    for name, words in PRONOUNS.items():
        f[f"pronoun:{name}"] = low in words.split()
    for c in string.ascii_lowercase:
        f[f"letter:{c}"] = low[:1] == c
    for c in string.ascii_lowercase:  # the reference code's alphabet features: the token is the letter itself
        f[f"letter_token:{c}"] = low == c
    for p in PREFIXES:
        f[f"prefix:{p}-"] = low.isalpha() and low.startswith(p) and len(low) > len(p) + 2
    for x in SUFFIXES:
        ok = low.isalpha() and low.endswith(x) and len(low) > len(x) + 1
        f[f"suffix:-{x}"] = ok and not (x == "s" and low.endswith("ss"))
    for name, words in GROUPS.items():
        f[f"group:{name}"] = low in words.split()
    return f


FEATURE_NAMES = list(_string_features(" A"))  # every token feature, in order


def token_features(tokenizer, d_vocab: int | None = None) -> FeatureSet:
    """Features of every token id < d_vocab (default: the tokenizer's size) from its decoded string: type,
    leading space, case, year, number, pronoun class, first letter ("letter:a", 26: the book's alphabet features),
    the letter itself ("letter_token:a": the token, stripped and lower-cased, is exactly that letter, with or
    without a leading space: the reference code's alphabet features, its "a_unigram" columns), prefixes, suffixes,
    word groups. Ids that cannot be decoded have no features; they are counted in `notes` and in `skipped`."""
    d_vocab = len(tokenizer) if d_vocab is None else int(d_vocab)
    if d_vocab < 1:
        raise UserError(f"d_vocab={d_vocab}: a vocabulary needs at least one token")
    strings, notes = decode_vocab(tokenizer, d_vocab)
    mat = np.zeros((d_vocab, len(FEATURE_NAMES)), dtype=bool)
    for i, s in enumerate(strings):
        if s is not None:
            mat[i] = list(_string_features(s).values())
    kinds = [n.split(":", 1)[0] for n in FEATURE_NAMES]
    skipped = np.array([i for i, s in enumerate(strings) if s is None], dtype=np.int64)
    return FeatureSet(list(FEATURE_NAMES), kinds, mat, notes, skipped)


def unigram_thresholds(n_tokens: int, d_vocab: int) -> tuple[int, int]:
    """(min_count, min_ids) scaled from the paper's rule (> 3000 occurrences in 10M tokens, > 3 ids in a
    50,257-token vocabulary): min_count = max(2, ceil(3001 · n_tokens / 10⁷)), the same rate per token;
    min_ids = max(2, ceil(4 · d_vocab / 50257)), the same share of the vocabulary, and at least 2 (a duplicate)."""
    return max(2, math.ceil(3001 * n_tokens / 1e7)), max(2, math.ceil(4 * d_vocab / 50257))


def unigram_features(tokenizer, rows_tokens, min_count: int | None = None, min_ids: int | None = None,
                     d_vocab: int | None = None) -> FeatureSet:
    """One feature per normalised string (decoded, lower-cased, stripped) seen at least `min_count` times in
    `rows_tokens` and spelled by at least `min_ids` token ids (min_ids=1: every frequent string; > 1: the
    duplicate features); true for all those ids. Defaults: `unigram_thresholds` of the rows' size."""
    d_vocab = len(tokenizer) if d_vocab is None else int(d_vocab)
    toks = np.asarray(rows_tokens).ravel()
    if toks.size and (toks.min() < 0 or toks.max() >= d_vocab):
        raise UserError(f"token ids outside 0..{d_vocab - 1} in the rows; pass the model's d_vocab")
    auto = unigram_thresholds(toks.size, d_vocab)
    min_count = auto[0] if min_count is None else int(min_count)
    min_ids = auto[1] if min_ids is None else int(min_ids)
    counts = np.bincount(toks.astype(np.int64), minlength=d_vocab)
    strings, notes = decode_vocab(tokenizer, d_vocab)
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(strings):
        if s is not None and s.strip():
            groups.setdefault(s.strip().lower(), []).append(i)
    kept = sorted(k for k, ids in groups.items() if len(ids) >= min_ids and counts[ids].sum() >= min_count)
    mat = np.zeros((d_vocab, len(kept)), dtype=bool)
    for j, k in enumerate(kept):
        mat[groups[k], j] = True
    notes = notes + [f"unigram features: {len(kept)} strings seen >= {min_count} times in {toks.size} tokens "
                     f"and spelled by >= {min_ids} ids"]
    skipped = np.array([i for i, s in enumerate(strings) if s is None], dtype=np.int64)
    return FeatureSet([f"unigram:{k}" for k in kept], ["unigram"] * len(kept), mat, notes, skipped)


# ------------------------------------------------------------------------------ per position of token rows

def _chunks(n_rows: int, chunk_rows: int):
    for a in range(0, n_rows, chunk_rows):
        yield a, min(n_rows, a + chunk_rows)


def row_features(token_set: FeatureSet, tokens, previous: bool = True, chunk_rows: int = 1024) -> FeatureSet:
    """Token-id features at the positions of `tokens` [rows, n_ctx] (flattened row by row, CSR): the current
    token's features, and with `previous` the previous token's ("prev:" + name, kind "previous"; False at
    each row's first position)."""
    tokens = tokens if hasattr(tokens, "ndim") else np.asarray(tokens)  # a memmap is read chunk by chunk
    if tokens.ndim != 2:
        raise UserError(f"token rows must be [rows, n_ctx], got shape {tokens.shape}")
    d_vocab, n_feat = token_set.matrix.shape
    if tokens.size and int(tokens.max()) >= d_vocab:
        raise UserError(f"token id {int(tokens.max())} is outside the feature set's {d_vocab} ids; build it with the model's d_vocab")
    table = sp.vstack([token_set.sparse(), sp.csr_matrix((1, n_feat), dtype=bool)], format="csr")  # last: none
    parts = []
    for a, b in _chunks(tokens.shape[0], chunk_rows):
        ids = np.asarray(tokens[a:b], dtype=np.int64)
        cur = table[ids.ravel()]
        if previous:
            prev = np.full_like(ids, d_vocab)
            prev[:, 1:] = ids[:, :-1]
            cur = sp.hstack([cur, table[prev.ravel()]], format="csr")
        parts.append(cur)
    mat = sp.vstack(parts, format="csr") if parts else sp.csr_matrix((0, n_feat * (1 + previous)), dtype=bool)
    names = list(token_set.names) + ([f"prev:{n}" for n in token_set.names] if previous else [])
    kinds = list(token_set.kinds) + (["previous"] * n_feat if previous else [])
    return FeatureSet(names, kinds, mat, list(token_set.notes), token_set.skipped)


def source_features(sources, source_names: list[str], chunk_rows: int = 4096) -> FeatureSet:
    """Context features: "source:<s>" is true where the position's document comes from source s
    (`sources` [rows, n_ctx]: TokenRows.sources; `source_names`: TokenRows.source_names)."""
    n = len(source_names)
    if np.asarray(sources[:1]).size and int(np.max(sources)) >= n:
        raise UserError(f"source id {int(np.max(sources))} but only {n} source names; pass the rows' own source_names")
    eye = sp.identity(n, dtype=bool, format="csr")
    parts = [eye[np.asarray(sources[a:b], dtype=np.int64).ravel()] for a, b in _chunks(len(sources), chunk_rows)]
    mat = sp.vstack(parts, format="csr") if parts else sp.csr_matrix((0, n), dtype=bool)
    return FeatureSet([f"source:{s}" for s in source_names], ["context"] * n, mat)


def positions(n_rows: int, n_ctx: int) -> np.ndarray:
    """The position in the row of every flattened position (for mutual information with activations)."""
    return np.tile(np.arange(n_ctx, dtype=np.int64), n_rows)


def position_features(n_rows: int, n_ctx: int, edges=None) -> FeatureSet:
    """One feature per position bucket [edges[k], edges[k+1]) ("position:a-b", kind "position"); default
    edges: 0, 1, 2, 4, 8, ... up to n_ctx (doubling buckets)."""
    if edges is None:
        edges = [0] + [2 ** k for k in range(int(math.log2(max(n_ctx, 1))) + 1) if 2 ** k < n_ctx] + [n_ctx]
    edges = sorted(set(int(e) for e in edges))
    if edges[0] != 0 or edges[-1] != n_ctx:
        raise UserError(f"position bucket edges {edges} must start at 0 and end at n_ctx={n_ctx}")
    bucket = np.searchsorted(edges, np.arange(n_ctx), side="right") - 1
    eye = sp.identity(len(edges) - 1, dtype=bool, format="csr")
    mat = eye[np.tile(bucket, n_rows)]
    names = [f"position:{a}-{b - 1}" for a, b in zip(edges[:-1], edges[1:])]
    return FeatureSet(names, ["position"] * len(names), mat)
