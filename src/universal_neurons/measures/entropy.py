"""Entropy neurons (paper section 5.2; Stolfo et al. 2024, "Confidence regulation neurons").

An entropy neuron is a last-layer MLP neuron with a large output norm whose output direction w_out is nearly
orthogonal to the unembedding: it writes almost nothing to the logits directly and acts through the final
LayerNorm scale, sharpening or flattening the next-token distribution. The model is a TransformerLens
`HookedTransformer` with LayerNorm folded and writing weights and unembedding centred (`loading.load_model`):
`model.W_out[l]` is [d_mlp, d_model], `model.W_U` is [d_model, d_vocab].

- `candidates`: weight statistics that pick them out (norm, vocabulary variance and kurtosis, weight-decay
  penalty, null-space fraction) and three rankings: the book's reading of the paper (norm over the square root of
  the vocabulary variance), the reference code's (thresholds, then the smallest vocabulary variance) and Stolfo
  et al.'s (null-space fraction);
- `anti_partner`, `random_neurons`: the neuron writing most nearly the opposite direction, and controls;
- `fixed_activation`: the paper's intervention (figure 7): the neuron's activation fixed to a value at every
  position, with loss, entropy, reciprocal rank and LayerNorm scale, the scale free (total effect) or frozen at
  its clean value (direct effect through the unembedding only);
- `frequency_projection`: Stolfo et al.'s token-frequency neurons, whose direct logit effect follows the
  unigram log-frequency.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
import torch

from ..core import paper
from ..core.errors import UserError

# The fixed activations of the paper's entropy-neuron intervention (universal-neurons slurm/entropy_intervention.sh).
PAPER_VALUES = paper.ENTROPY_VALUES

# Stolfo et al. take the bottom 12 singular directions of W_U for gpt2-small (their case_studies/*.py set
# udark_start = -12 for gpt2-small, -40 for Llama-2-7b, the default of utils.get_potential_entropy_neurons_udark).
N_NULL = paper.NULL_DIMS_GPT2_SMALL

_TINY = 1e-30

# The reference code's filter (paper_notebooks/entropy_neurons.ipynb): last layers, a large weight-decay penalty
# |w_in|^2 + |w_out|^2 (thresholds set by hand per model: 3, 1, 2), vocab_kurt at most 10 (GPT2-small; 8 and 7 for
# the others), then the smallest vocab_var first. The book takes the penalty's cut as a quantile, the one the
# reference's own baseline sampler (analysis/entropy_neurons.py, max_norm_percentile=0.9) uses to mean "not large".
REFERENCE_PENALTY_QUANTILE = 0.9
REFERENCE_VOCAB_KURT = paper.VOCAB_KURT_THRESHOLD


def default_layers(model) -> list[int]:
    """The last two layers, or all layers when the model has fewer."""
    n = model.cfg.n_layers
    return list(range(max(0, n - 2), n))


def _layers(model, layers) -> list[int]:
    """`layers` checked (ints in range, no repeats, order kept); None gives `default_layers`."""
    if layers is None:
        return default_layers(model)
    n = model.cfg.n_layers
    out = []
    for l in [layers] if isinstance(layers, (int, np.integer)) else list(layers):
        if isinstance(l, bool) or not isinstance(l, (int, np.integer)) or not 0 <= l < n:
            raise UserError(f"layer {l!r} is out of range for a {n}-layer model; pass layers between 0 and {n - 1}")
        if int(l) not in out:
            out.append(int(l))
    if not out:
        raise UserError(f"no layers given; pass at least one layer between 0 and {n - 1}")
    return out


def _neuron(model, layer, neuron) -> tuple[int, int]:
    """(layer, neuron) checked against the model's shape."""
    _layers(model, [layer])
    d = model.W_out.shape[1]
    if isinstance(neuron, bool) or not isinstance(neuron, (int, np.integer)) or not 0 <= neuron < d:
        raise UserError(f"neuron {neuron!r} is out of range for d_mlp={d}; pass a neuron between 0 and {d - 1}")
    return int(layer), int(neuron)


def _w_out(model, layers: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """layer and neuron columns and the float64 output weights [len(layers) * d_mlp, d_model] of `layers`."""
    w = model.W_out.detach()[layers].double().cpu()  # [len(layers), d_mlp, d_model]
    d_mlp = w.shape[1]
    return np.repeat(layers, d_mlp), np.tile(np.arange(d_mlp), len(layers)), w.reshape(-1, w.shape[-1]).numpy()


def _unembed(model) -> np.ndarray:
    return model.W_U.detach().double().cpu().numpy()  # [d_model, d_vocab]


def candidates(model, layers=None, n_null: int = N_NULL) -> pd.DataFrame:
    """One row per neuron of `layers` (default `default_layers`): layer, neuron, w_out_norm = |w_out|,
    l2_penalty = |w_in|^2 + |w_out|^2 (NaN for a gated MLP), vocab_var and vocab_kurt (population variance and
    kurtosis, not excess, over the vocabulary of cos(w_out, W_U[:, v])), null_fraction (the share of |w_out|^2 in
    the span of the bottom `n_null` left singular vectors of W_U, those with the smallest singular values), and
    three ranks (1 = most entropy-neuron-like, ties share the smaller rank):

    - rank_paper: by w_out_norm / sqrt(vocab_var), descending (the book's reading of the paper: large norm, small
      vocab variance);
    - rank_reference: the reference code's way, among the neurons that pass its filter (l2_penalty at least its
      `REFERENCE_PENALTY_QUANTILE` quantile over `layers`, vocab_kurt at most `REFERENCE_VOCAB_KURT`), by vocab_var
      ascending; NaN for the neurons that do not pass (`passes_reference` says which do);
    - rank_null: by null_fraction, descending: Stolfo et al.'s score (utils.get_potential_entropy_neurons_udark
      sorts last-layer neurons by |U_darkᵀ w_out| / |w_out|, the square root of null_fraction, same order).

    A zero w_out has vocab_var, vocab_kurt and null_fraction 0 and the lowest paper score. The default n_null = 12
    is Stolfo et al.'s choice for gpt2-small (`N_NULL`).
    """
    layers = _layers(model, layers)
    d_model = model.cfg.d_model
    if isinstance(n_null, bool) or not isinstance(n_null, (int, np.integer)) or not 1 <= n_null <= d_model:
        raise UserError(f"n_null={n_null!r} is outside 1..d_model={d_model}; pass n_null between 1 and {d_model}")
    layer, neuron, w = _w_out(model, layers)
    w_u = _unembed(model)
    norm = np.linalg.norm(w, axis=1)
    w_hat = w / np.maximum(norm, _TINY)[:, None]
    u_hat = w_u / np.maximum(np.linalg.norm(w_u, axis=0), _TINY)  # unit columns [d_model, d_vocab]
    vocab_var, vocab_kurt = _vocab_moments(w_hat, u_hat)
    u, s, _ = np.linalg.svd(w_u, full_matrices=False)  # u [d_model, d_model]
    bottom = u[:, np.argsort(s, kind="stable")[:n_null]]
    null_fraction = ((w_hat @ bottom) ** 2).sum(1)
    score = np.where(norm > 0, norm / np.sqrt(np.maximum(vocab_var, _TINY)), 0.0)
    df = pd.DataFrame({"layer": layer, "neuron": neuron, "w_out_norm": norm, "l2_penalty": _l2_penalty(model, layers, norm),
                       "vocab_var": vocab_var, "vocab_kurt": vocab_kurt, "null_fraction": null_fraction})
    df["rank_paper"] = pd.Series(score).rank(ascending=False, method="min").astype(int)
    df["passes_reference"] = reference_filter(df)
    df["rank_reference"] = df["vocab_var"].where(df["passes_reference"]).rank(ascending=True, method="min")
    df["rank_null"] = df["null_fraction"].rank(ascending=False, method="min").astype(int)
    return df


def reference_filter(cands: pd.DataFrame, quantile: float = REFERENCE_PENALTY_QUANTILE,
                     vocab_kurt: float = REFERENCE_VOCAB_KURT) -> pd.Series:
    """The reference code's entropy-neuron filter on a `candidates` table: l2_penalty at least its `quantile`
    over the table (w_out_norm² where l2_penalty is NaN) and vocab_kurt at most `vocab_kurt`."""
    pen = cands["l2_penalty"].where(cands["l2_penalty"].notna(), cands["w_out_norm"] ** 2)
    return (pen >= pen.quantile(quantile)) & (cands["vocab_kurt"] <= vocab_kurt)


def _l2_penalty(model, layers: list[int], out_norm: np.ndarray) -> np.ndarray:
    """|w_in|^2 + |w_out|^2 per neuron of `layers` (NaN when the model has no single W_in, e.g. a gated MLP)."""
    w_in = getattr(model, "W_in", None)
    if w_in is None or getattr(model.cfg, "gated_mlp", False):
        return np.full(len(out_norm), np.nan)
    inn = (w_in.detach()[layers].double().cpu() ** 2).sum(1).reshape(-1).numpy()  # W_in [L, d_model, d_mlp]
    return inn + out_norm ** 2


def _vocab_moments(w_hat: np.ndarray, u_hat: np.ndarray, block: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Population variance and kurtosis (not excess; 0 where the variance is 0) over the vocabulary of
    c_v = w_hat · u_hat[:, v], per row of w_hat, in blocks of rows."""
    var, kurt = np.zeros(len(w_hat)), np.zeros(len(w_hat))
    for i in range(0, len(w_hat), block):
        c = w_hat[i:i + block] @ u_hat  # [b, d_vocab]
        c = c - c.mean(1, keepdims=True)
        m2, m4 = (c ** 2).mean(1), (c ** 4).mean(1)
        var[i:i + block] = m2
        kurt[i:i + block] = np.where(m2 > 1e-300, m4 / np.maximum(m2, 1e-300) ** 2, 0.0)
    return var, kurt


def anti_partner(model, layer: int, neuron: int, layers=None) -> tuple[int, int, float]:
    """(layer, neuron, cosine): the neuron of `layers` (default `default_layers`), other than the given one,
    whose w_out has the most negative cosine with the given neuron's w_out."""
    layer, neuron = _neuron(model, layer, neuron)
    ls, ns, w = _w_out(model, _layers(model, layers))
    w0 = model.W_out.detach()[layer, neuron].double().cpu().numpy()
    cos = (w @ w0) / np.maximum(np.linalg.norm(w, axis=1) * np.linalg.norm(w0), _TINY)
    cos[(ls == layer) & (ns == neuron)] = np.inf
    if not np.isfinite(cos).any():
        raise UserError(f"no other neuron to compare {layer}.{neuron} with; pass layers with more neurons")
    i = int(np.argmin(cos))
    return int(ls[i]), int(ns[i]), float(cos[i])


def random_neurons(model, n: int = 20, layers=None, seed: int = 0, exclude: Iterable = ()) -> list[tuple[int, int]]:
    """`n` distinct (layer, neuron) drawn uniformly from `layers` (default `default_layers`) minus `exclude`,
    with numpy's default_rng(seed); sorted."""
    layers = _layers(model, layers)
    skip = {(int(l), int(i)) for l, i in exclude}
    pool = [(l, i) for l in layers for i in range(model.W_out.shape[1]) if (l, i) not in skip]
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 0 <= n <= len(pool):
        raise UserError(f"cannot draw n={n!r} distinct neurons from {len(pool)} available; pass n between 0 and "
                        f"{len(pool)} or more layers")
    pick = np.random.default_rng(seed).choice(len(pool), size=int(n), replace=False)
    return sorted(pool[i] for i in pick)


def _tokens(model, tokens) -> torch.Tensor:
    """`tokens` as an int64 CPU tensor [rows, n_ctx], checked (2 <= n_ctx <= model n_ctx, ids in the vocab)."""
    t = tokens if isinstance(tokens, torch.Tensor) else torch.as_tensor(np.asarray(tokens))
    if t.ndim != 2 or t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise UserError(f"tokens must be an integer array [rows, n_ctx], got {tuple(t.shape)} {t.dtype}; pass "
                        "token ids as a 2-d int tensor")
    if t.shape[0] < 1 or not 2 <= t.shape[1] <= model.cfg.n_ctx:
        raise UserError(f"tokens have shape {tuple(t.shape)}; pass at least one row of 2 to {model.cfg.n_ctx} tokens")
    t = t.detach().to("cpu", torch.int64)
    lo, hi = int(t.min()), int(t.max())
    if lo < 0 or hi >= model.cfg.d_vocab:
        bad = lo if lo < 0 else hi
        raise UserError(f"token id {bad} is outside the vocabulary 0..{model.cfg.d_vocab - 1}; pass tokens from "
                        "the model's tokenizer")
    return t


def _metrics(logits: torch.Tensor, tokens: torch.Tensor) -> np.ndarray:
    """Sums over the predicted positions (all but the last) of loss, entropy and reciprocal rank (float64 [3])."""
    pred, target = logits[:, :-1].float(), tokens[:, 1:, None]
    logp = pred.log_softmax(-1)
    loss = -logp.gather(-1, target)[..., 0]
    entropy = -(logp.exp() * logp).sum(-1)
    rank = (pred > pred.gather(-1, target)).float().sum(-1)  # tokens scored strictly higher: 0 = top (exact counts)
    return torch.stack([x.double().sum() for x in (loss, entropy, 1.0 / (rank.double() + 1))]).cpu().numpy()


@torch.inference_mode()
def fixed_activation(model, tokens, layer: int, neuron: int, values: Sequence[float] = PAPER_VALUES, *,
                     freeze_scale: bool = False, batch_rows: int = 8, progress: bool = False,
                     device=None, clean: dict | None = None) -> pd.DataFrame:
    """The paper's intervention: neuron `layer`.`neuron`'s post-activation (`blocks.{layer}.mlp.hook_post`) set
    to v at every position of `tokens` [rows, n_ctx], for each v of `values`. One row for the clean model
    (condition "clean", value NaN) and one per v (condition "fixed"), with the means over the predicted
    positions (all but the last of each row; the target is the next token) of: loss (cross-entropy, nats),
    entropy (of the next-token distribution, nats), recip_rank (1 / (rank + 1) of the true next token, rank 0
    = top) and ln_scale (`ln_final.hook_scale`); `activation` is v, or the clean mean activation.

    freeze_scale=True replaces `ln_final.hook_scale` by its clean value (from a clean run of the same batch)
    in the fixed runs, leaving only the direct path through the unembedding. Batches of `batch_rows` rows on
    `device` (default: the model's); a tqdm bar when `progress`. Hooks live only inside `model.hooks`, so
    none is left on the model, even after an exception. attrs: layer, neuron, freeze_scale, n_positions.
    `clean`: a dict shared by the calls on one model with the same tokens and batches, which keeps each batch's
    clean run (its metrics, final scale and every MLP neuron's summed activation), so that it runs once.
    """
    from tqdm import tqdm

    layer, neuron = _neuron(model, layer, neuron)
    toks = _tokens(model, tokens)
    try:
        vals = np.asarray(list(values), dtype=np.float64)
    except (TypeError, ValueError):
        vals = None
    if vals is None or vals.ndim != 1 or len(vals) == 0 or not np.isfinite(vals).all():
        raise UserError(f"values must be a non-empty list of finite numbers, got {values!r}; pass e.g. "
                        "entropy.PAPER_VALUES")
    if isinstance(batch_rows, bool) or not isinstance(batch_rows, (int, np.integer)) or batch_rows < 1:
        raise UserError(f"batch_rows={batch_rows!r} must be a positive integer; pass e.g. batch_rows=8")
    device = next(model.parameters()).device if device is None else torch.device(device)
    post, scale_point = f"blocks.{layer}.mlp.hook_post", "ln_final.hook_scale"
    if scale_point not in model.hook_dict:
        raise UserError(f"the model has no {scale_point} (no final LayerNorm); pass a model with a final LayerNorm")
    sums = np.zeros((len(vals) + 1, 5))  # rows: clean, values; cols: loss, entropy, recip_rank, scale, activation
    state = {}

    def clean_post(act, hook):
        state["post"][hook.layer()] = act[:, :-1].double().sum((0, 1)).cpu()

    def clean_scale(act, hook):
        state["clean"] = act.clone()

    def fix(act, hook):
        act[..., neuron] = state["v"]
        return act

    def fixed_scale(act, hook):
        out = state["clean"] if freeze_scale else act
        state["scale"] = out[:, :-1].double().sum().item()
        return out

    for r0 in tqdm(range(0, len(toks), batch_rows), desc=f"fixed activation {layer}.{neuron}", unit="batch",
                   disable=not progress):
        batch = toks[r0:r0 + batch_rows].to(device)
        n_pred = batch.shape[0] * (batch.shape[1] - 1)
        key = (r0, tuple(batch.shape), str(device))
        if clean is None or key not in clean:
            state["post"] = {}
            posts = [(f"blocks.{l}.mlp.hook_post", clean_post) for l in range(model.cfg.n_layers)]
            with model.hooks(fwd_hooks=[*posts, (scale_point, clean_scale)]):
                logits = model(batch)
            run = (_metrics(logits, batch), state["clean"][:, :-1].double().sum().item(), state["clean"], state["post"])
            if clean is not None:
                clean[key] = run
        metrics, scale_sum, state["clean"], posts = clean[key] if clean is not None else run
        sums[0] += [*metrics, scale_sum, float(posts[layer][neuron])]
        for k, v in enumerate(vals, 1):
            state["v"] = float(v)
            with model.hooks(fwd_hooks=[(post, fix), (scale_point, fixed_scale)]):
                logits = model(batch)
            sums[k] += [*_metrics(logits, batch), state["scale"], v * n_pred]
    n_positions = len(toks) * (toks.shape[1] - 1)
    means = sums / n_positions
    df = pd.DataFrame(means, columns=["loss", "entropy", "recip_rank", "ln_scale", "activation"])
    df.insert(0, "value", np.concatenate([[np.nan], vals]))
    df.insert(0, "condition", ["clean"] + ["fixed"] * len(vals))
    df.attrs.update(layer=layer, neuron=neuron, freeze_scale=bool(freeze_scale), n_positions=n_positions)
    return df


def frequency_projection(model, log_freq, layers=None) -> pd.DataFrame:
    """Token-frequency neurons (Stolfo et al.): per neuron of `layers` (default `default_layers`), freq_cos =
    the cosine between its centred direct logit effect W_out[l, n] @ W_U [d_vocab] and the centred unigram
    log-frequency `log_freq` [d_vocab] (e.g. log((counts + 1) / total)). Columns layer, neuron, freq_cos
    (0 for a neuron with no direct effect)."""
    w_u = _unembed(model)
    f = np.asarray(log_freq, dtype=np.float64).ravel() if np.ndim(log_freq) == 1 else None
    if f is None or len(f) != w_u.shape[1]:
        raise UserError(f"log_freq has shape {np.shape(log_freq)}, the model has d_vocab={w_u.shape[1]}; pass one "
                        "log-frequency per token of the model's vocabulary")
    if not np.isfinite(f).all():
        raise UserError("log_freq has NaN or inf entries; pass log((counts + 1) / total) so every token is finite")
    f = f - f.mean()
    if not np.linalg.norm(f) > 0:
        raise UserError("log_freq is constant (no direction once centred); pass the corpus's unigram log-frequencies")
    layer, neuron, w = _w_out(model, _layers(model, layers))
    w_uc = w_u - w_u.mean(1, keepdims=True)  # centring the logit effect = centring W_U over the vocabulary
    dot = w @ (w_uc @ f)
    norm = np.sqrt(np.maximum(np.einsum("nd,de,ne->n", w, w_uc @ w_uc.T, w), 0.0))  # |w @ W_Uc| per neuron
    return pd.DataFrame({"layer": layer, "neuron": neuron,
                         "freq_cos": dot / np.maximum(norm * np.linalg.norm(f), _TINY)})
