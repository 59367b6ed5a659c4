"""A profile's data: its corpus, its tokenizer and its train / held-out token rows, built once and cached.

Reading cached data takes no lock; building it holds the lock of the folder it is built in (the corpus cache, the
profile's data folder) only while it is built, so a run with SET that shares the profile's data does not hold the
profile's folder for the hours of its own training."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from ..config.profile import Profile
from ..config.recipe import describes_shipped
from ..config.sources import resolve_checkpoint
from ..core import cache
from ..core.checksum import file_sha256
from ..core.errors import UserError
from ..core.lock import run_lock
from . import corpus
from .tokenizer import build_tokenizer, load_tokenizer
from .tokens import ROWS_VERSION, TokenRows, build_rows, open_rows


def _building(folder: Path, cached: bool):
    """Nothing when the result is cached (reading needs no lock), else the lock of `folder` while it is built."""
    return contextlib.nullcontext() if cached else run_lock([folder])


def corpus_dir(profile: Profile, progress: bool = True) -> Path:
    c = dict(profile.cfg["corpus"])
    source = c.pop("source")
    cached = corpus.is_built(Path(profile.corpus_root) / corpus.corpus_key(source, **c), source, c.get("path"))
    with _building(profile.corpus_root, cached):
        return corpus.build_corpus(source, cache_root=profile.corpus_root, progress=progress, **c)


def _tokenizer_built(out_dir: Path, kind: str, vocab_size: int) -> bool:
    """`tokenizer.build_tokenizer` would keep what `out_dir` holds (its own check, read only)."""
    wanted = {"kind": kind, "vocab_size": vocab_size if kind == "bpe" else None}
    if not (out_dir / "tokenizer.json").is_file():
        return False
    try:
        return json.loads((out_dir / "build.json").read_text()) == wanted
    except FileNotFoundError:
        return True
    except (OSError, ValueError):
        return False


def tokenizer_dir(profile: Profile, progress: bool = True) -> Path:
    """The profile's tokenizer folder: trained / fetched into artifacts, or the reference model's own."""
    t = profile.cfg["tokenizer"]

    if describes_shipped(profile, ("corpus", "tokenizer")) and (profile.shipped_dir / "tokenizer" / "tokenizer.json").is_file():
        return profile.shipped_dir / "tokenizer"  # the shipped zoo's own (checked with it)
    if t["kind"] == "from_model":
        return resolve_checkpoint(profile.members()[0], revision=profile.revision)
    texts = None
    if t["kind"] == "bpe":
        cdir = corpus_dir(profile, progress)
        texts = (d.text for d in corpus.iter_documents(cdir, "train"))
    out, vocab = profile.trained_tokenizer_dir, t.get("vocab_size", 8192)
    with _building(out.parent, _tokenizer_built(out, t["kind"], vocab)):
        return build_tokenizer(t["kind"], out, texts=texts, vocab_size=vocab)


def token_rows(profile: Profile, split: str, progress: bool = True) -> TokenRows:
    """Rows of `model.n_ctx` tokens of the profile's corpus split ("train" or "heldout"), cached."""
    cdir = corpus_dir(profile, progress)
    tdir = tokenizer_dir(profile, progress)
    check_n_ctx(profile, tdir)
    tok = load_tokenizer(tdir)
    tok_file = Path(tdir) / "tokenizer.json"
    provenance = {
        "corpus": corpus.read_manifest(cdir).get("key", cdir.name),
        "corpus_sha256": file_sha256(cdir / "manifest.json"),
        "tokenizer_sha256": file_sha256(tok_file) if tok_file.is_file() else str(tdir),
        "split": split,
    }
    prefix = profile.data_dir / split
    n_ctx = profile.cfg["model"]["n_ctx"]

    key = cache.make_key(f"rows-{prefix.name}", version=ROWS_VERSION, provenance=provenance, n_ctx=n_ctx)  # build_rows'
    with _building(prefix.parent.parent, cache.is_current(prefix.parent, key)):
        return build_rows(corpus.iter_documents(cdir, split), tok, n_ctx, prefix, provenance, progress)


def check_n_ctx(profile: Profile, checkpoint_dir=None) -> None:
    """One line if `model.n_ctx` exceeds the context of the profile's real checkpoint (its config.json's
    n_positions / max_position_embeddings), before any rows are built."""
    import json

    n_ctx = profile.cfg["model"]["n_ctx"]
    if checkpoint_dir is None or profile.cfg["tokenizer"]["kind"] != "from_model":
        return  # a zoo trained here: model.n_ctx is its context
    config = Path(checkpoint_dir) / "config.json"
    try:
        hf = json.loads(config.read_text())
    except (OSError, ValueError):
        return  # not a model folder: loading reports it
    limit = hf.get("n_positions") or hf.get("max_position_embeddings")
    if isinstance(limit, int) and n_ctx > limit:
        raise UserError(f"model.n_ctx={n_ctx} is larger than the context of {profile.members()[0]} "
                        f"({limit} positions, {config}); set model.n_ctx to at most {limit}")


def analysis_rows(profile: Profile, progress: bool = True) -> TokenRows:
    """The held-out rows every analysis reads, shuffled with a fixed seed so that any prefix mixes all sources."""
    return token_rows(profile, "heldout", progress).shuffled(seed=0)


def prepare(profile: Profile, progress: bool = True) -> tuple[TokenRows, TokenRows]:
    """Build (or reuse) everything data-related; return (train rows, held-out rows)."""
    return token_rows(profile, "train", progress), token_rows(profile, "heldout", progress)


__all__ = ["corpus_dir", "tokenizer_dir", "token_rows", "analysis_rows", "prepare", "open_rows"]
