"""Token classes of a vocabulary and how much each neuron's output direction favours them on the unembedding
(paper section 5.1, figure 6: prediction neurons that raise years, numbers, words starting with a space, ...)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import torch

from .weight_stats import neuron_index, vocab_blocks


def token_classes(tokenizer, d_vocab: int, min_tokens: int = 3) -> dict[str, np.ndarray]:
    """Boolean masks [d_vocab] of token classes that have at least `min_tokens` members in the tokenizer:
    year (1491-2199, as in the reference code), number, space-start, all-caps, open parenthesis, -ing."""
    texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
    tests = {"year": lambda s: s.strip().isdigit() and len(s.strip()) == 4 and 1491 <= int(s.strip()) <= 2199,
             "number": lambda s: bool(re.fullmatch(r"\s?\d+", s)),
             "space-start": lambda s: len(s) > 1 and s[0] == " " and not s[1].isspace(),
             "all-caps": lambda s: len(s.strip()) > 1 and s.strip().isalpha() and s.strip().isupper(),
             "open-paren": lambda s: "(" in s,
             "-ing": lambda s: s.strip().isalpha() and s.strip().lower().endswith("ing") and len(s.strip()) > 4}
    out = {}
    for name, test in tests.items():
        mask = np.zeros(d_vocab, dtype=bool)
        mask[:len(texts)] = [test(t) for t in texts]
        if min_tokens <= mask.sum() < len(texts):
            out[name] = mask
    return out


@torch.inference_mode()
def class_scores(model, classes: dict[str, np.ndarray]) -> pd.DataFrame:
    """Per neuron (layer-major) and class: (mean c_v over the class - mean over the rest) / std of c_v: how
    much the neuron's output direction favours (> 0) or disfavours (< 0) the class on the unembedding."""
    names = list(classes)
    y = torch.from_numpy(np.stack([classes[n] for n in names], 1).astype(np.float64))  # [d_vocab, K]
    n_in = y.sum(0)
    n_layers, d_mlp = model.cfg.n_layers, model.W_out.shape[1]
    scores = np.empty((n_layers * d_mlp, len(names)))
    for l, n0, c in vocab_blocks(model):
        yc = y.to(c.device)
        inside = c @ yc / n_in.to(c.device)  # [b, K]
        rest = (c.sum(1, keepdim=True) - c @ yc) / (c.shape[1] - n_in.to(c.device))
        scores[l * d_mlp + n0:l * d_mlp + n0 + len(c)] = ((inside - rest) / c.std(1, correction=0, keepdim=True)).cpu().numpy()
    return pd.DataFrame({**neuron_index(n_layers, d_mlp), **dict(zip(names, scores.T))})
