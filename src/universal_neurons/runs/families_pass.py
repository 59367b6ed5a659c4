"""The families chapter's pass (paper section 4.3): the reference model over held-out rows, streamed, for the VR of
every neuron against token, previous-token, unigram (duplicate), source and position features, the firing counts
per position (mutual information) and the activation per position; a second pass over the Brown rows for the
syntax features. Cached (`core.cache`) in the profile's tables folder as families.npz and families.json."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from .. import data
from ..config.sources import resolve_checkpoint
from ..core import cache
from ..core.atomic import atomic_path, write_json
from ..core.errors import UserError
from ..data import corpus
from ..measures import activations, families, features, syntax

VERSION = 3  # 3: the reference code's alphabet features (letter_token:*)
CHUNK_TOKENS = 1 << 16
SAMPLE_TOKENS = 20000  # tokens whose activations the figures draw


@dataclass
class FamilyPass:
    """`vr` [features, neurons] on the held-out rows (neurons: flat index layer * d_mlp + neuron), `kinds`
    (feature -> kind), `syntax_vr` [syntax features, neurons] on the Brown rows or None, `mi` [neurons] (nats),
    `pos_mean` / `pos_std` [n_ctx, neurons] activation by position, and `info` (counts, notes)."""

    vr: pd.DataFrame
    kinds: dict
    syntax_vr: pd.DataFrame | None
    mi: np.ndarray
    pos_mean: np.ndarray
    pos_std: np.ndarray
    info: dict


class MainFeatures:
    """The features of a batch of held-out rows: token and unigram features of the current and previous token,
    the row's source, the position bucket (flattened row by row, CSR)."""

    def __init__(self, tokenizer, d_vocab: int, rows, n_rows: int):
        self.ids = features.hstack(features.token_features(tokenizer, d_vocab),
                            features.unigram_features(tokenizer, rows.tokens[:n_rows], d_vocab=d_vocab))
        self.rows = rows

    def __call__(self, b0: int, toks: np.ndarray) -> features.FeatureSet:
        return features.hstack(features.row_features(self.ids, toks),
                        features.source_features(self.rows.sources[b0:b0 + len(toks)], self.rows.source_names),
                        features.position_features(len(toks), toks.shape[1]))


def _points(model) -> dict:
    return {**{f"blocks.{l}.mlp.hook_post": ("post", l) for l in range(model.cfg.n_layers)},
            **{f"blocks.{l}.mlp.hook_pre": ("pre", l) for l in range(model.cfg.n_layers)}}


def forward(model, toks: torch.Tensor, mask: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(post float64, pre float32) activations [kept, n_layers * d_mlp], layer-major, at the kept positions."""
    got: dict = {}
    activations.run_hooks(model, toks, mask, _points(model), lambda k, a: got.__setitem__(k, a), name="reference")
    post, pre = (torch.cat([got[(h, l)] for l in range(model.cfg.n_layers)], 1).float().cpu().numpy()
                 for h in ("post", "pre"))
    return post.astype(np.float64), pre


def _batches(tokens: np.ndarray, mask: np.ndarray, batch_rows: int, device):
    for b0 in range(0, len(tokens), batch_rows):
        yield (b0, torch.from_numpy(tokens[b0:b0 + batch_rows].astype(np.int64)).to(device),
               torch.from_numpy(mask[b0:b0 + batch_rows]).to(device))


def main_plan(rows, tokenizer, n_tokens: int) -> activations.Plan:
    """The plan of the pass: the first `n_tokens` kept held-out tokens (all of them when fewer)."""
    drop = activations.dropped_ids(tokenizer)
    avail = int((~np.isin(rows.tokens, drop)).sum())
    if avail == 0:
        raise UserError("the held-out rows keep no token (all BOS or newline); build a larger corpus")
    return activations.plan_tokens(rows.tokens, drop, min(int(n_tokens), avail), CHUNK_TOKENS)


def brown_rows(prof, tokenizer, n_ctx: int, n_tokens: int):
    """(TaggedTokens, tokens [rows, n_ctx], tags, kept mask) of the held-out Brown documents, at most
    `n_tokens` tokens; (tagged, None, None, None) when there is none."""
    tagged = syntax.brown_tags(tokenizer, corpus.iter_documents(data.corpus_dir(prof, progress=False), "heldout"))
    if not tagged.ids:
        return tagged, None, None, None
    bos = int(data.analysis_rows(prof, progress=False).header["bos_id"])
    toks, tags = tagged.rows(n_ctx, bos)
    keep = max(1, int(n_tokens) // n_ctx)
    toks, tags = toks[:keep], tags[:keep]
    mask = ~np.isin(toks, activations.dropped_ids(tokenizer)) & (tags >= 0)
    return tagged, toks, tags, mask


def _run_main(model, tokenizer, rows, n_tokens, batch_rows, device):
    plan = main_plan(rows, tokenizer, n_tokens)
    feats = MainFeatures(tokenizer, model.cfg.d_vocab, rows, plan.n_rows)
    n_ctx, n_neurons = rows.n_ctx, model.cfg.n_layers * model.cfg.d_mlp
    vr = firing = None
    s1, s2, cnt = np.zeros((n_ctx, n_neurons)), np.zeros((n_ctx, n_neurons)), np.zeros(n_ctx)
    for b0, toks, mask in activations.held_out_batches(plan, batch_rows, device):
        m = mask.cpu().numpy()
        fs = feats(b0, toks.cpu().numpy())
        if vr is None:
            vr, firing, kinds = families.VarianceReduction(fs.names, range(n_neurons)), families.PositionFiring(), fs.kinds
        post, pre = forward(model, toks, mask)
        pos = features.positions(len(m), n_ctx)[m.ravel()]
        vr.update(fs.matrix[m.ravel()], post)
        firing.update(pre, pos)
        onehot = sp.csr_matrix((np.ones(len(pos)), (pos, np.arange(len(pos)))), shape=(n_ctx, len(pos)))
        s1, s2, cnt = s1 + onehot @ post, s2 + onehot @ (post * post), cnt + np.bincount(pos, minlength=n_ctx)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s1 / cnt[:, None]
        std = np.sqrt(np.maximum(s2 / cnt[:, None] - mean ** 2, 0))
    notes = list(dict.fromkeys(feats.ids.notes)) + [f"{len(vr.skipped)} features never occur in these tokens: left out"]
    return vr.result(), dict(zip(vr.features, kinds)), firing.mutual_information(), mean, std, vr.n, notes


def _run_syntax(model, tokenizer, prof, n_ctx, n_tokens, batch_rows, device):
    tagged, toks, tags, mask = brown_rows(prof, tokenizer, n_ctx, n_tokens)
    if toks is None:
        return None, 0, 0, tagged.notes
    fs = tagged.features(tags)
    if not fs.names:
        return None, 0, len(tagged.ids), tagged.notes + ["no tag is frequent enough for a syntax feature"]
    vr = families.VarianceReduction(fs.names, range(model.cfg.n_layers * model.cfg.d_mlp))
    for b0, t, m in _batches(toks, mask, batch_rows, device):
        mm = m.cpu().numpy().ravel()
        y = fs.matrix[b0 * n_ctx:(b0 + len(mm) // n_ctx) * n_ctx][mm]
        vr.update(y, forward(model, t, m)[0])
    return vr.result(), vr.n, len(tagged.ids), fs.notes


def _files(folder: Path):
    return folder / "families.npz", folder / "families.json"


def load_pass(folder) -> FamilyPass:
    """The cached pass of `folder` (UserError if missing or damaged)."""
    npz, js = _files(Path(folder))
    try:
        info = json.loads(js.read_text())
        with np.load(npz, allow_pickle=False) as z:
            vr = pd.DataFrame(z["vr"], index=pd.Index(list(z["features"]), name="feature"),
                              columns=pd.Index(range(z["vr"].shape[1]), name="neuron"))
            syn = (pd.DataFrame(z["syntax_vr"], index=pd.Index(list(z["syntax_features"]), name="feature"),
                                columns=vr.columns) if "syntax_vr" in z else None)
            return FamilyPass(vr, dict(zip(vr.index, z["kinds"])), syn, z["mi"], z["pos_mean"], z["pos_std"], info)
    except (OSError, ValueError, KeyError) as e:
        raise UserError(f"{npz.name} in {folder} is missing or damaged ({type(e).__name__}); it is recomputed on the "
                        "next run") from None


def family_pass(prof, model, tokenizer, device="cpu", progress: bool = False) -> FamilyPass:
    """The pass for the profile's reference `model` on book.family_tokens held-out tokens, cached."""
    b, analysis = prof.cfg["book"], prof.cfg["analysis"]
    folder = Path(prof.tables_dir)
    ref = prof.members()[0]
    ckpt = resolve_checkpoint(ref, prof.revision)
    rows = data.analysis_rows(prof, progress=progress)
    batch_rows = int(analysis.get("batch_size", 64))
    key = cache.make_key("families", version=VERSION, model=ref, weights=cache.weights_signature(ckpt),
                         data=rows.header["provenance"], n_tokens=int(b["family_tokens"]), batch_size=batch_rows,
                         device=str(device).split(":")[0])
    if cache.is_current(folder, key):
        try:
            return load_pass(folder)
        except UserError:
            cache.forget(folder, key)
    n_tokens = int(b["family_tokens"])
    with cache.updating(folder, key):
        vr, kinds, mi, mean, std, n_main, notes = _run_main(model, tokenizer, rows, n_tokens, batch_rows, device)
        syn, n_syn, n_docs, syn_notes = _run_syntax(model, tokenizer, prof, rows.n_ctx, n_tokens, batch_rows,
                                                   device)
        npz, js = _files(folder)
        arrays = {"vr": vr.to_numpy(), "features": np.array(vr.index, dtype=str),
                  "kinds": np.array([kinds[f] for f in vr.index], dtype=str), "mi": mi, "pos_mean": mean,
                  "pos_std": std}
        if syn is not None:
            arrays |= {"syntax_vr": syn.to_numpy(), "syntax_features": np.array(syn.index, dtype=str)}
        with atomic_path(npz) as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)
        write_json(js, {"reference": Path(ref).name, "n_tokens": n_main, "n_syntax_tokens": n_syn,
                        "n_brown_docs": n_docs, "notes": notes + syn_notes, "d_mlp": model.cfg.d_mlp,
                        "n_layers": model.cfg.n_layers})
    return load_pass(folder)


def sample(model, tokens: np.ndarray, mask: np.ndarray, neurons, n_tokens: int = SAMPLE_TOKENS,
           batch_rows: int = 64, device="cpu") -> tuple[np.ndarray, int]:
    """Post-activations [kept, len(neurons)] of the given flat neurons on the first rows of `tokens`
    holding about `n_tokens` kept tokens, and how many rows that is."""
    n_rows = int(np.searchsorted(np.cumsum(mask.sum(1)), n_tokens)) + 1
    out = [forward(model, t, m)[0][:, list(neurons)]
           for _, t, m in _batches(tokens[:n_rows], mask[:n_rows], batch_rows, device)]
    return np.concatenate(out), min(n_rows, len(tokens))
