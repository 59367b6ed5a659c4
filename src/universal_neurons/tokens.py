"""Token datasets: rows of n_ctx tokens, each starting with BOS, in a memory map with a JSON header.

`<prefix>.bin` holds uint16 (vocabulary < 65,536) or uint32 tokens of shape [rows, n_ctx];
`<prefix>.sources.bin` holds, per token, the index of the corpus source it came from (uint8);
`<prefix>.json` the header: shape, dtype, BOS id, source names, tokenizer and corpus checksums.
Documents are joined with the end-of-text token, which is also the BOS of every row.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import cache
from .atomic import atomic_path, write_json
from .errors import UserError

ROWS_VERSION = 1  # of the row files' layout; a change of it rebuilds them


@dataclass
class TokenRows:
    """An opened token dataset: `tokens` [rows, n_ctx], `sources` [rows, n_ctx], and the header."""

    tokens: np.ndarray
    sources: np.ndarray
    header: dict

    @property
    def n_ctx(self) -> int:
        return self.header["n_ctx"]

    @property
    def source_names(self) -> list[str]:
        return self.header["sources"]

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def shuffled(self, seed: int = 0) -> "TokenRows":
        """The rows in a fixed random order, in memory (rows are stored in corpus order: source by source)."""
        perm = np.random.default_rng(seed).permutation(len(self))
        prov = {**self.header["provenance"], "row_order": f"numpy default_rng({seed}).permutation"}
        return TokenRows(np.asarray(self.tokens[perm]), np.asarray(self.sources[perm]), {**self.header, "provenance": prov})


def open_rows(prefix) -> TokenRows:
    prefix = Path(prefix)
    header_path = prefix.with_suffix(".json")
    if not header_path.is_file():
        raise UserError(f"no token dataset at {header_path}; build it with `python -m universal_neurons data --profile <name>`")
    h = json.loads(header_path.read_text())
    shape = (h["rows"], h["n_ctx"])
    tokens = np.memmap(prefix.with_suffix(".bin"), dtype=h["dtype"], mode="r", shape=shape)
    sources = np.memmap(prefix.with_suffix(".sources.bin"), dtype=np.uint8, mode="r", shape=shape)
    return TokenRows(tokens, sources, h)


def build_rows(documents, tokenizer, n_ctx: int, prefix, provenance: dict, progress: bool = True) -> TokenRows:
    """Tokenise `documents` (an iterable of corpus Documents) into rows of n_ctx; cached by provenance (the
corpus and tokenizer checksums) and n_ctx, with the key in `<folder>/rows-<name>.key.json`."""
    from tqdm import tqdm

    prefix = Path(prefix)
    header_path = prefix.with_suffix(".json")
    key = cache.make_key(f"rows-{prefix.name}", version=ROWS_VERSION, provenance=provenance, n_ctx=n_ctx)
    if cache.is_current(prefix.parent, key) and header_path.is_file():
        return open_rows(prefix)
    cache.forget(prefix.parent, key)  # rows half-written by this build are never taken for current ones
    bos = tokenizer.bos_token_id
    if bos is None:
        raise UserError("the tokenizer has no BOS/end-of-text token; rows need one to start with")
    vocab = len(tokenizer)
    dtype = np.uint16 if vocab <= 2**16 else np.uint32
    ids, srcs, names = [], [], []
    batch: list = []

    def flush():
        enc = tokenizer([d.text for d in batch], add_special_tokens=False)["input_ids"]
        for d, e in zip(batch, enc):
            if d.source not in names:
                names.append(d.source)
            ids.append(np.asarray(e + [bos], dtype=dtype))
            srcs.append(np.full(len(e) + 1, names.index(d.source), dtype=np.uint8))
        batch.clear()

    for doc in tqdm(documents, desc=f"tokenise {prefix.name}", unit="doc", disable=not progress):
        batch.append(doc)
        if len(batch) == 256:
            flush()
    if batch:
        flush()
    if not ids:
        raise UserError(f"no documents to tokenise for {prefix.name}; the corpus split is empty")
    stream, stream_src = np.concatenate(ids), np.concatenate(srcs)
    body = n_ctx - 1
    rows = len(stream) // body
    if rows == 0:
        raise UserError(f"{prefix.name}: {len(stream)} tokens do not fill one row of n_ctx={n_ctx}; use a larger corpus")
    toks = np.empty((rows, n_ctx), dtype=dtype)
    toks[:, 0] = bos
    toks[:, 1:] = stream[: rows * body].reshape(rows, body)
    src = np.empty((rows, n_ctx), dtype=np.uint8)
    src[:, 1:] = stream_src[: rows * body].reshape(rows, body)
    src[:, 0] = src[:, 1]
    counts = np.bincount(toks[:, 1:].ravel(), minlength=vocab).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    for suffix, arr in ((".bin", toks), (".sources.bin", src)):
        with atomic_path(prefix.with_suffix(suffix)) as tmp:
            arr.tofile(tmp)
    header = {
        "rows": rows, "n_ctx": n_ctx, "dtype": np.dtype(dtype).name, "bos_id": bos, "vocab_size": vocab,
        "tokens": int(rows * n_ctx), "sources": names, "provenance": provenance,
        "unigram_entropy_nats": float(-(p * np.log(p)).sum()),
    }
    with cache.updating(prefix.parent, key):
        write_json(header_path, header)
    return open_rows(prefix)
