"""Attention-deactivation neurons (paper section 5.3; figures 8 and 26).

An MLP neuron of layer l_n whose output direction w_out, added to the residual stream, moves the query of a
head h of a later layer l_h > l_n towards the key of the beginning-of-sequence (BOS) token: the head then
attends to BOS, whose value (and so output) is nearly zero, and is in effect switched off.

Models are TransformerLens `HookedTransformer`s with LayerNorm folded and writing weights centred (as
`loading.load_model` gives them): `W_out` [n_layers, d_mlp, d_model], `W_Q` [n_layers, n_heads, d_model,
d_head], `W_O` [n_layers, n_heads, d_head, d_model].

- `bos_keys`: each head's key for a BOS-only input, [n_layers, n_heads, d_head].
- `bos_score_array` / `bos_scores`: the heuristic score s = w_out_hat^T W_Q^h k_BOS / sqrt(d_head) of every
  (neuron, later head) pair, as an array or a long frame; `random_scores`: the same for random unit
  directions (the baseline); `top_pairs`: the largest scores.
- `path_ablation`: the causal check. The neuron's contribution act * w_out is removed from the query input
  of one head only (keys and values stay clean) and the change in that head's attention to BOS and in its
  output norm is recorded per destination position.
- `bos_value_ratio`: per head, the norm of the BOS token's output W_O^h v against the other tokens'.

Bad input raises `UserError` with a one-line message.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

from ..core import paper
from ..core.errors import UserError

PAPER_BOS_VALUE_RATIO = paper.BOS_VALUE_RATIO  # paper 5.3: the median head's BOS output norm is 19.4 times smaller than others'

SCORE_COLS = ["neuron_layer", "neuron", "head_layer", "head", "score"]
ABLATION_COLS = ["row", "pos", "activation",
                 "bos_attn_clean", "bos_attn_ablated", "bos_attn_change",
                 "z_norm_clean", "z_norm_ablated", "z_norm_change",
                 "out_norm_clean", "out_norm_ablated", "out_norm_change"]
VALUE_COLS = ["layer", "head", "bos_out_norm", "other_out_norm", "ratio"]


# ----------------------------------------------------------------------------------------------- checks
def _check_index(what: str, value: int, size: int, fix: str) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or not 0 <= value < size:
        raise UserError(f"{what} {value!r} is out of range: {fix} (0 to {size - 1})")
    return int(value)


def _check_bos(model, bos_id: int) -> int:
    return _check_index("BOS id", bos_id, model.cfg.d_vocab, "pass a token id inside the vocabulary")


def _check_pair(model, layer, neuron, head_layer, head) -> tuple[int, int, int, int]:
    n_layers, d_mlp, n_heads = model.cfg.n_layers, model.W_out.shape[1], model.cfg.n_heads
    layer = _check_index("neuron layer", layer, n_layers, "pass a layer of the model")
    neuron = _check_index("neuron", neuron, d_mlp, "pass a neuron of the layer")
    head_layer = _check_index("head layer", head_layer, n_layers, "pass a layer of the model")
    head = _check_index("head", head, n_heads, "pass a head of the layer")
    if head_layer <= layer:
        raise UserError(f"head layer {head_layer} is not after neuron layer {layer}: pass a head_layer greater "
                        f"than the neuron's layer (a neuron only reaches the queries of later layers)")
    return layer, neuron, head_layer, head


def _check_tokens(model, tokens, min_ctx: int = 2) -> torch.Tensor:
    t = tokens if isinstance(tokens, torch.Tensor) else torch.as_tensor(np.asarray(tokens))
    if t.ndim != 2 or t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise UserError(f"tokens must be an integer array [rows, n_ctx], got {t.dtype} of shape "
                        f"{tuple(t.shape)}: pass token ids, one row per sequence")
    if len(t) == 0 or t.shape[1] < min_ctx:
        raise UserError(f"tokens of shape {tuple(t.shape)} are too few: pass at least one row of at least "
                        f"{min_ctx} positions")
    if t.shape[1] > model.cfg.n_ctx:
        raise UserError(f"tokens have {t.shape[1]} positions but the model's context is {model.cfg.n_ctx}: "
                        f"cut the rows to at most {model.cfg.n_ctx} positions")
    if int(t.min()) < 0 or int(t.max()) >= model.cfg.d_vocab:
        raise UserError(f"token ids span {int(t.min())}..{int(t.max())}, outside the vocabulary 0.."
                        f"{model.cfg.d_vocab - 1}: tokenize with the model's tokenizer")
    return t.long()


def _check_batch_rows(batch_rows: int) -> int:
    if not isinstance(batch_rows, (int, np.integer)) or isinstance(batch_rows, bool) or batch_rows < 1:
        raise UserError(f"batch_rows {batch_rows!r} is not a positive integer: pass batch_rows >= 1")
    return int(batch_rows)


def _device(model, device):
    return torch.device(device if device is not None else (model.cfg.device or "cpu"))


def _batches(rows: int, batch_rows: int, progress: bool, desc: str):
    starts = range(0, rows, batch_rows)
    if progress:
        from tqdm import tqdm

        return tqdm(starts, desc=desc, unit="batch")
    return starts


# ------------------------------------------------------------------------------------------ heuristic score
@torch.inference_mode()
def bos_keys(model, bos_id: int) -> torch.Tensor:
    """Each head's key at position 0 of the input [[bos_id]] (one forward pass): float [n_layers, n_heads,
    d_head] on the CPU. With a causal model this is BOS's key in any sequence that starts with it."""
    bos_id = _check_bos(model, bos_id)
    names = [f"blocks.{l}.attn.hook_k" for l in range(model.cfg.n_layers)]
    _, cache = model.run_with_cache(torch.tensor([[bos_id]], device=_device(model, None)),
                                    names_filter=lambda name: name in names)
    return torch.stack([cache[n][0, 0] for n in names]).detach().cpu()  # hook_k [batch, pos, head, d_head]


def _query_bos(model, bos_id: int) -> torch.Tensor:
    """W_Q^h k_BOS / sqrt(d_head) of every head, float64 [n_layers, n_heads, d_model]: the direction in the
    (normalised) query input that raises the attention score on BOS."""
    k = bos_keys(model, bos_id).double()
    w_q = model.W_Q.detach().double().cpu()  # [L, H, d_model, d_head]
    return torch.einsum("lhmd,lhd->lhm", w_q, k) / math.sqrt(model.cfg.d_head)


@torch.inference_mode()
def bos_score_array(model, bos_id: int) -> np.ndarray:
    """Heuristic score s = w_out_hat^T W_Q^h k_BOS / sqrt(d_head), w_out_hat = W_out[l, n] / |W_out[l, n]|, of
    every neuron and head: float64 [n_layers (neuron layer), d_mlp, n_layers (head layer), n_heads], NaN
    where the head layer is not after the neuron layer. `bos_scores` gives the long frame."""
    qk = _query_bos(model, bos_id)  # [L, H, d_model]
    n_layers = model.cfg.n_layers
    out = np.full((n_layers, model.W_out.shape[1], n_layers, model.cfg.n_heads), np.nan)
    for l in range(n_layers - 1):  # one layer of W_out at a time keeps float64 memory small
        w = model.W_out[l].detach().double().cpu()  # [d_mlp, d_model]
        w = w / w.norm(dim=1, keepdim=True).clamp_min(1e-30)
        out[l, :, l + 1:] = torch.einsum("nm,lhm->nlh", w, qk[l + 1:]).numpy()
    return out


def score_frame(scores: np.ndarray) -> pd.DataFrame:
    """Long frame (SCORE_COLS: neuron_layer, neuron, head_layer, head, score) of a `bos_score_array`, only
    the pairs whose head layer is after the neuron layer; neuron-layer-major order."""
    ln, n, lh, h = np.meshgrid(*(np.arange(s) for s in scores.shape), indexing="ij")
    keep = lh > ln
    return pd.DataFrame({"neuron_layer": ln[keep], "neuron": n[keep], "head_layer": lh[keep], "head": h[keep],
                         "score": scores[keep]})


def bos_scores(model, bos_id: int) -> pd.DataFrame:
    """The heuristic score of every (neuron, head of a later layer) pair as a long frame (SCORE_COLS)."""
    return score_frame(bos_score_array(model, bos_id))


@torch.inference_mode()
def random_scores(model, bos_id: int, n: int = 10_000, seed: int = 0) -> np.ndarray:
    """The heuristic score of `n` random unit directions in d_model (numpy Generator with `seed`, Gaussian
    then normalised) for every head: float64 [n, n_layers, n_heads]. A random direction has no layer, so
    compare a neuron of layer l with the columns of the heads of layers > l."""
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise UserError(f"n {n!r} is not a positive integer: pass the number of random directions (>= 1)")
    u = np.random.default_rng(seed).standard_normal((int(n), model.cfg.d_model))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    return torch.einsum("nm,lhm->nlh", torch.from_numpy(u), _query_bos(model, bos_id)).numpy()


def top_pairs(scores: pd.DataFrame, k: int = 10) -> pd.DataFrame:
    """The k rows (neuron, head pairs) of a `bos_scores` frame with the largest score, largest first."""
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
        raise UserError(f"k {k!r} is not a positive integer: pass the number of pairs to keep (>= 1)")
    return scores.nlargest(int(k), "score").reset_index(drop=True)


# ------------------------------------------------------------------------------------------- path ablation
@torch.inference_mode()
def path_ablation(model, tokens, layer: int, neuron: int, head_layer: int, head: int, *, start: int | None = None,
                  batch_rows: int = 32, progress: bool = False, device=None) -> pd.DataFrame:
    """Remove neuron (layer, neuron)'s contribution from the query of one head, over all rows of `tokens`.

    Per batch of `batch_rows` rows: a clean run, then a run in which act * w_out (act = the neuron's clean
    post-activation at that position, w_out = W_out[layer, neuron]) is subtracted from the query input of head
    `head` of layer `head_layer` at the destination positions pos >= start (default n_ctx // 2) only. The
    query input (`hook_q_input`) is the residual stream *before* the block's LayerNorm, so the ablated query
    is q = LN(resid_pre - act * w_out) W_Q + b_Q: LayerNorm's scale is recomputed on the ablated vector.
    Keys and values are computed from the untouched residual stream, so only this head's query changes.
    Both runs stop after layer `head_layer`.

    One row per (row, destination position), columns ABLATION_COLS: row (index into tokens), pos,
    activation, bos_attn_* (the head's attention from pos to position 0), z_norm_* (|z|, the head's output
    before W_O, from hook_z), out_norm_* (|z W_O[head]|, after W_O, without b_O); each as *_clean,
    *_ablated and *_change = ablated - clean. `model.cfg.use_split_qkv_input` is restored and no hook is
    left on the model, also when the run fails.
    """
    layer, neuron, head_layer, head = _check_pair(model, layer, neuron, head_layer, head)
    t = _check_tokens(model, tokens)
    batch_rows = _check_batch_rows(batch_rows)
    rows, n_ctx = t.shape
    start = n_ctx // 2 if start is None else start
    if not isinstance(start, (int, np.integer)) or isinstance(start, bool) or not 1 <= start <= n_ctx - 1:
        raise UserError(f"start {start!r} is outside 1..{n_ctx - 1} (the destination positions of {n_ctx}-token "
                        f"rows): pass a start after the BOS position and before the end of the row")
    start, dev = int(start), _device(model, device)
    w_out = model.W_out[layer, neuron].detach().to(dev)  # [d_model]
    w_o = model.W_O[head_layer, head].detach().to(dev)  # [d_head, d_model]
    post = f"blocks.{layer}.mlp.hook_post"
    names = {"pattern": f"blocks.{head_layer}.attn.hook_pattern", "z": f"blocks.{head_layer}.attn.hook_z"}

    def run(batch, act=None):
        got = {}

        def keep_post(a, hook):  # [batch, pos, d_mlp]
            got["act"] = a[:, start:, neuron].clone()

        def keep_pattern(a, hook):  # [batch, head, q, k]
            got["bos"] = a[:, head, start:, 0].clone()

        def keep_z(a, hook):  # [batch, pos, head, d_head]
            got["z"] = a[:, start:, head].clone()

        def ablate(q_input, hook):  # [batch, pos, n_heads, d_model], before ln1
            q_input = q_input.clone()
            q_input[:, start:, head] -= act[..., None] * w_out
            return q_input

        hooks = [(post, keep_post), (names["pattern"], keep_pattern), (names["z"], keep_z)]
        if act is not None:
            hooks.append((f"blocks.{head_layer}.hook_q_input", ablate))
        with model.hooks(fwd_hooks=hooks):
            model(batch, stop_at_layer=head_layer + 1)
        return got

    flag = model.cfg.use_split_qkv_input
    parts = []
    try:
        model.set_use_split_qkv_input(True)
        for r0 in _batches(rows, batch_rows, progress, f"path ablation L{layer}.{neuron} -> L{head_layer}H{head}"):
            batch = t[r0:r0 + batch_rows].to(dev)
            clean = run(batch)
            ablated = run(batch, clean["act"])
            b, p = clean["act"].shape
            part = {"row": np.repeat(np.arange(r0, r0 + b), p), "pos": np.tile(np.arange(start, n_ctx), b),
                    "activation": clean["act"]}
            for key, fn in (("bos_attn", lambda g: g["bos"]), ("z_norm", lambda g: g["z"].norm(dim=-1)),
                            ("out_norm", lambda g: (g["z"] @ w_o).norm(dim=-1))):
                part[f"{key}_clean"], part[f"{key}_ablated"] = fn(clean), fn(ablated)
                part[f"{key}_change"] = part[f"{key}_ablated"] - part[f"{key}_clean"]
            parts.append({k: v if isinstance(v, np.ndarray) else v.double().flatten().cpu().numpy()
                          for k, v in part.items()})
    finally:
        model.set_use_split_qkv_input(flag)
    return pd.DataFrame({c: np.concatenate([p[c] for p in parts]) for c in ABLATION_COLS})


# --------------------------------------------------------------------------------------------- BOS values
@torch.inference_mode()
def position_out_norms(model, tokens, *, batch_rows: int = 32, progress: bool = False, device=None) -> np.ndarray:
    """Per head and position, the mean over rows of |v_p W_O^h| (v from hook_v, so b_V included; b_O excluded):
    float64 [n_layers, n_heads, n_ctx]. Position 0 is BOS in rows that start with it."""
    t = _check_tokens(model, tokens)
    batch_rows = _check_batch_rows(batch_rows)
    dev = _device(model, device)
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    w_o = model.W_O.detach().double().to(dev)
    gram = torch.einsum("lhdm,lhem->lhde", w_o, w_o)  # |v W_O^h|^2 = v^T (W_O^h W_O^h^T) v
    sums = torch.zeros(n_layers, n_heads, t.shape[1], dtype=torch.float64, device=dev)

    def add(v, hook, l):  # [batch, pos, head, d_head]
        v = v.double()
        norm = torch.einsum("bphd,hde,bphe->bph", v, gram[l], v).clamp_min(0).sqrt()
        sums[l] += norm.sum(0).T

    hooks = [(f"blocks.{l}.attn.hook_v", lambda v, hook, l=l: add(v, hook, l)) for l in range(n_layers)]
    with model.hooks(fwd_hooks=hooks):
        for r0 in _batches(len(t), batch_rows, progress, "value norms per position"):
            model(t[r0:r0 + batch_rows].to(dev), stop_at_layer=n_layers)
    return (sums / len(t)).cpu().numpy()


def ratio_frame(norms: np.ndarray, position: int = 0) -> pd.DataFrame:
    """VALUE_COLS from `position_out_norms`: per head, bos_out_norm = the norm at `position` (0: BOS),
    other_out_norm = the mean over the other positions, ratio = other / that position's."""
    n_layers, n_heads, n_ctx = norms.shape
    at = norms[..., position]
    other = (norms.sum(-1) - at) / (n_ctx - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = other / at
    return pd.DataFrame({"layer": np.repeat(np.arange(n_layers), n_heads), "head": np.tile(np.arange(n_heads), n_layers),
                         "bos_out_norm": at.ravel(), "other_out_norm": other.ravel(), "ratio": ratio.ravel()})


def position_null(norms: np.ndarray) -> np.ndarray:
    """The median head's ratio with each position p = 1.. n_ctx-1 in place of BOS (the same statistic for a
    position that is not BOS): float64 [n_ctx - 1], the null distribution of the median BOS ratio."""
    return np.array([float(np.median(ratio_frame(norms, p)["ratio"])) for p in range(1, norms.shape[-1])])


def bos_value_ratio(model, tokens, *, batch_rows: int = 32, progress: bool = False, device=None) -> pd.DataFrame:
    """Per head, how small the BOS token's output is: one row per (layer, head), columns VALUE_COLS:
    bos_out_norm = mean over rows of |v_0 W_O^h| (position 0 is taken as BOS), other_out_norm = mean over rows
    and positions 1.. of |v_t W_O^h| (v from hook_v, so b_V included; b_O excluded), ratio =
    other_out_norm / bos_out_norm (the paper's median head: PAPER_BOS_VALUE_RATIO)."""
    return ratio_frame(position_out_norms(model, tokens, batch_rows=batch_rows, progress=progress, device=device))
