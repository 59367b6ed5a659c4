"""Data: the corpus from registry packages, the tokenizer, and a profile's train and held-out token rows, built
once and cached. Imports `core` and `config`.

The face re-exports a profile's data (`data.analysis_rows(profile)`, ...) from `data.prepare`."""

from .prepare import analysis_rows, check_n_ctx, corpus_dir, token_rows, tokenizer_dir

__all__ = ["analysis_rows", "check_n_ctx", "corpus_dir", "token_rows", "tokenizer_dir"]
