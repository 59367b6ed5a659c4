"""Token datasets: rows of n_ctx tokens, each starting with BOS, in a memory map with a JSON header.

`<prefix>.bin` holds uint16 (vocabulary < 65,536) or uint32 tokens of shape [rows, n_ctx];
`<prefix>.sources.bin` holds, per token, the index of the corpus source it came from (uint16: up to 65,536
sources, e.g. a local folder of that many .txt files);
`<prefix>.json` the header: shape, dtype, BOS id, source names, tokenizer and corpus checksums, and the sha256 of
both .bin files, checked whenever the rows are opened (a damaged file is rebuilt by `build_rows`).
Documents are joined with the end-of-text token, which is also the BOS of every row.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core import cache
from ..core.atomic import atomic_path, write_json
from ..core.checksum import file_sha256
from ..core.errors import UserError

ROWS_VERSION = 2  # of the row files' layout; a change of it rebuilds them (2: uint16 sources, file checksums)
SOURCE_DTYPE = np.uint16
MAX_SOURCES = int(np.iinfo(SOURCE_DTYPE).max) + 1


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
    """Open the rows at `prefix` (checking the header and the sha256 of both .bin files); one-line UserError if
    they are missing or damaged."""
    prefix = Path(prefix)
    header_path = prefix.with_suffix(".json")
    if not header_path.is_file():
        raise UserError(f"no token dataset at {header_path}; build it with `python -m universal_neurons data --profile <name>`")
    fix = (f"delete {prefix.parent} (or its {prefix.name}.* files) and rerun `python -m universal_neurons data "
           "--profile <name>` to rebuild them")
    try:
        h = json.loads(header_path.read_text())
        shape = (int(h["rows"]), int(h["n_ctx"]))
        dtype = np.dtype(h["dtype"])
        files = h["files"]
    except (ValueError, KeyError, TypeError, OSError) as e:
        raise UserError(f"token header {header_path} is unreadable or from an older layout "
                        f"({type(e).__name__}); {fix}") from None
    for suffix, dt in ((".bin", dtype), (".sources.bin", np.dtype(h.get("source_dtype", "uint16")))):
        path = prefix.with_suffix(suffix)
        if not path.is_file():
            raise UserError(f"token file {path} is missing; {fix}")
        if path.stat().st_size != shape[0] * shape[1] * dt.itemsize or file_sha256(path) != files.get(path.name):
            raise UserError(f"token file {path} does not match the sha256 in its header {header_path.name} "
                            f"(truncated, altered or from another build); {fix}")
    return _mapped(prefix, h)


def _mapped(prefix: Path, h: dict) -> TokenRows:
    """The rows of a header already checked (or just written): both .bin files as read-only memory maps."""
    shape = (int(h["rows"]), int(h["n_ctx"]))
    return TokenRows(np.memmap(prefix.with_suffix(".bin"), dtype=h["dtype"], mode="r", shape=shape),
                     np.memmap(prefix.with_suffix(".sources.bin"), dtype=h.get("source_dtype", "uint16"), mode="r",
                               shape=shape), h)


def build_rows(documents, tokenizer, n_ctx: int, prefix, provenance: dict, progress: bool = True) -> TokenRows:
    """Tokenise `documents` (an iterable of corpus Documents) into rows of n_ctx; cached by provenance (the
corpus and tokenizer checksums) and n_ctx, with the key in `<folder>/rows-<name>.key.json`."""
    from tqdm import tqdm

    prefix = Path(prefix)
    header_path = prefix.with_suffix(".json")
    key = cache.make_key(f"rows-{prefix.name}", version=ROWS_VERSION, provenance=provenance, n_ctx=n_ctx)
    if cache.is_current(prefix.parent, key) and header_path.is_file():
        try:
            return open_rows(prefix)
        except UserError:
            pass  # damaged files: rebuilt below
    cache.forget(prefix.parent, key)  # rows half-written by this build are never taken for current ones
    bos = tokenizer.bos_token_id
    if bos is None:
        raise UserError("the tokenizer has no BOS/end-of-text token; rows need one to start with")
    vocab = len(tokenizer)
    dtype = np.uint16 if vocab <= 2**16 else np.uint32
    ids, srcs, names = [], [], []
    index: dict[str, int] = {}
    batch: list = []

    def flush():
        enc = tokenizer([d.text for d in batch], add_special_tokens=False)["input_ids"]
        for d, e in zip(batch, enc):
            if d.source not in index:
                if len(names) == MAX_SOURCES:
                    raise UserError(f"{prefix.name}: more than {MAX_SOURCES} corpus sources; group the .txt files "
                                    "into subfolders (a first-level subfolder is one source)")
                index[d.source] = len(names)
                names.append(d.source)
            ids.append(np.asarray(e + [bos], dtype=dtype))
            srcs.append(np.full(len(e) + 1, index[d.source], dtype=SOURCE_DTYPE))
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
    src = np.empty((rows, n_ctx), dtype=SOURCE_DTYPE)
    src[:, 1:] = stream_src[: rows * body].reshape(rows, body)
    src[:, 0] = src[:, 1]
    counts = np.bincount(toks[:, 1:].ravel(), minlength=vocab).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    files = {}  # the sha256 of what was written, read back from the disk
    for suffix, arr in ((".bin", toks), (".sources.bin", src)):
        with atomic_path(prefix.with_suffix(suffix)) as tmp:
            arr.tofile(tmp)
            files[prefix.with_suffix(suffix).name] = file_sha256(tmp)
    header = {
        "rows": rows, "n_ctx": n_ctx, "dtype": np.dtype(dtype).name, "bos_id": bos, "vocab_size": vocab,
        "source_dtype": np.dtype(SOURCE_DTYPE).name, "files": files,
        "tokens": int(rows * n_ctx), "sources": names, "provenance": provenance,
        "unigram_entropy_nats": float(-(p * np.log(p)).sum()),
    }
    with cache.updating(prefix.parent, key):
        write_json(header_path, header)
    return _mapped(prefix, header)  # just written and hashed: not hashed a second time
