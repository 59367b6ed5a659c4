"""Weight statistics of every neuron (paper sections 4.2 and 5.1; figures 3, 5 and 9), on the processed
weights (LayerNorm folded, writing weights and unembedding centred, as `loading.load_model` gives them).

w_in_norm = |W_in[:, i]|, input_bias = b_in[i], w_out_norm = |W_out[i]|, in_out_sim = cos(w_in, w_out),
l2_penalty = |w_in|^2 + |w_out|^2, max_in_cos / max_out_cos = the largest cosine of w_in / w_out with any
other neuron (all layers), and the moments of the vocabulary composition c_v = cos(w_out, W_U[:, v]) over all
d_vocab columns of W_U: vocab_mean, vocab_var, vocab_skew, vocab_kurt (population moments; kurtosis not excess).

A gated MLP has no single w_in per neuron: w_in_norm, input_bias, in_out_sim, l2_penalty and max_in_cos are
then NaN (with a warning); an MLP without b_in leaves input_bias NaN.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import torch

WEIGHT_COLS = ["w_in_norm", "input_bias", "w_out_norm", "in_out_sim", "l2_penalty", "max_in_cos", "max_out_cos",
               "vocab_mean", "vocab_var", "vocab_skew", "vocab_kurt"]


def neuron_index(n_layers: int, d_mlp: int) -> dict[str, np.ndarray]:
    """The layer and neuron columns of a per-neuron table, layer-major."""
    return {"layer": np.repeat(np.arange(n_layers), d_mlp), "neuron": np.tile(np.arange(d_mlp), n_layers)}


def _unit(w: torch.Tensor, dim: int) -> torch.Tensor:
    return w / w.norm(dim=dim, keepdim=True).clamp_min(1e-30)


def max_cosines(w: torch.Tensor, block: int = 1024) -> np.ndarray:
    """Per row of w [N, d]: the largest cosine with any other row, float64 [N]."""
    u = _unit(w.float(), 1)
    out = torch.empty(len(u), dtype=torch.float64)
    for i in range(0, len(u), block):
        c = u[i:i + block] @ u.T  # [b, N]
        c[torch.arange(len(c)), torch.arange(i, i + len(c))] = -torch.inf
        out[i:i + len(c)] = c.max(1).values.double().cpu()
    return out.numpy()


def vocab_blocks(model, layers=None, max_elems: int = 2 ** 24):
    """(layer, first neuron, c [b, d_vocab] float64 cosines of w_out with the columns of W_U), block by block."""
    u = _unit(model.W_U.detach().float(), 0)  # [d_model, d_vocab]
    rows = max(1, max_elems // u.shape[1])
    for l in range(model.cfg.n_layers) if layers is None else layers:
        w = _unit(model.W_out[l].detach().float(), 1)  # [d_mlp, d_model]
        for n0 in range(0, len(w), rows):
            yield l, n0, (w[n0:n0 + rows] @ u).double()


def vocab_cosines(model, layer: int, neurons) -> np.ndarray:
    """c_v = cos(w_out, W_U[:, v]) of some neurons of one layer: float32 [len(neurons), d_vocab]."""
    w = _unit(model.W_out[layer, list(neurons)].detach().float(), 1)
    return (w @ _unit(model.W_U.detach().float(), 0)).cpu().numpy()


def _central(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """mean, var, skew, kurt along dim 1 of x [n, m] (float64, population moments)."""
    mean = x.mean(1, keepdim=True)
    d = x - mean
    d2 = d * d
    var = d2.mean(1)
    return mean[:, 0], var, (d2 * d).mean(1) / var ** 1.5, (d2 * d2).mean(1) / var ** 2


@torch.inference_mode()
def weight_stats(model, name: str = "model") -> tuple[pd.DataFrame, list[str]]:
    """One row per neuron (layer-major): layer, neuron and WEIGHT_COLS; also the warnings issued (one line
    each) for statistics the architecture does not define (left NaN)."""
    n_layers, d_mlp = model.cfg.n_layers, model.W_out.shape[1]
    cols = neuron_index(n_layers, d_mlp)
    w_out = model.W_out.detach().double()  # [L, d_mlp, d_model]
    nan = np.full(n_layers * d_mlp, np.nan)
    gated = bool(getattr(model.cfg, "gated_mlp", False))
    no_bias = not gated and getattr(model.blocks[0].mlp, "b_in", None) is None
    problems = [f"{name}: gated MLP (a gate and a linear input per neuron, no single w_in): w_in_norm, input_bias, "
                "in_out_sim, l2_penalty and max_in_cos are undefined and left NaN; the activation statistics are "
                "those of the gate's pre-activation"] if gated else []
    problems += [f"{name}: the MLP has no input bias (b_in): input_bias is undefined and left NaN"] if no_bias else []
    out_norm = w_out.norm(dim=-1)  # [L, d_mlp]
    cols["w_out_norm"] = out_norm.flatten().cpu().numpy()
    if gated:
        for k in ("w_in_norm", "input_bias", "in_out_sim", "l2_penalty", "max_in_cos"):
            cols[k] = nan
    else:
        w_in = model.W_in.detach().double().transpose(1, 2)  # [L, d_mlp, d_model]
        in_norm = w_in.norm(dim=-1)
        cols["w_in_norm"] = in_norm.flatten().cpu().numpy()
        cols["input_bias"] = nan if no_bias else model.b_in.detach().double().flatten().cpu().numpy()
        cols["in_out_sim"] = ((w_in * w_out).sum(-1) / (in_norm * out_norm)).flatten().cpu().numpy()
        cols["l2_penalty"] = (in_norm ** 2 + out_norm ** 2).flatten().cpu().numpy()
        cols["max_in_cos"] = max_cosines(w_in.reshape(-1, w_in.shape[-1]))
    cols["max_out_cos"] = max_cosines(w_out.reshape(-1, w_out.shape[-1]))
    moments = np.empty((4, n_layers * d_mlp))
    for l, n0, c in vocab_blocks(model):
        i = l * d_mlp + n0
        moments[:, i:i + len(c)] = torch.stack(_central(c)).cpu().numpy()
    cols.update(zip(("vocab_mean", "vocab_var", "vocab_skew", "vocab_kurt"), moments))
    for p in problems:
        warnings.warn(p, stacklevel=2)
    return pd.DataFrame(cols)[["layer", "neuron", *WEIGHT_COLS]], problems
