"""Exercises with checks (teaching mode).

Each exercise is a function the learner writes. Its reference solution is the cell marked in a chapter source
(`notebooks/<chapter>.py`, a cell with `exercise="<name>" solution=true`; `solution(name)` imports it), and its
check, `check(name, fn)`, runs the learner's function on small seeded inputs against the package's own
implementation (the code the chapters run: `StreamingPearson`, `matching.signed_max`, TransformerLens's LayerNorm
folding with `weight_stats`, `families.VarianceReduction`, `attention.bos_score_array`, `entropy.fixed_activation`),
with `torch.testing.assert_close`. It prints each passed step; on a failure it raises `ExerciseFailed` whose message
names the step and, where the answer matches a usual mistake, a hint about it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..core.errors import UserError
from ..measures import attention, entropy, matching
from ..measures.correlation import StreamingPearson
from ..measures.families import VarianceReduction
from ..measures.uncertainty import excess_from
from ..measures.weight_stats import weight_stats
from .build import solution_source
from .catalog import exercise


class ExerciseFailed(AssertionError):
    """A check that did not pass: the message says which step and gives a hint."""


def solution(name: str, root: str | Path | None = None) -> Callable:
    """The reference solution of exercise `name`, imported from its chapter source's solution cell (the
    checkout's notebooks/ folder, or `root`/notebooks)."""
    ex = exercise(name)
    namespace: dict = {}
    exec(compile(solution_source(ex, root), f"<solution {name}>", "exec"), namespace)  # the project's own source
    return namespace[ex.function]


# ------------------------------------------------------------------------------------------------ checking
_passed = [0]  # steps passed so far (check counts its own)


def _say(name: str, step: str) -> None:
    _passed[0] += 1
    print(f"  passed: {step}")


def _close(got, want, step: str, hints: list[tuple[object, str]] = (), atol: float = 1e-6, rtol: float = 1e-5):
    """assert_close(got, want) or ExerciseFailed naming the step, with the hint of the first known mistake that
    `got` matches (each a (wrong value, hint) pair)."""
    def tensor(x):
        return x.detach().double().cpu() if isinstance(x, torch.Tensor) else torch.tensor(np.array(x, dtype=np.float64))

    got_t, want_t = tensor(got), tensor(want)
    try:
        torch.testing.assert_close(got_t, want_t, atol=atol, rtol=rtol, equal_nan=True)
    except AssertionError as e:
        why = str(e).splitlines()[0] if str(e) else "the values differ"
        for wrong, hint in hints:
            wrong_t = tensor(wrong)
            if got_t.shape == wrong_t.shape and torch.allclose(got_t, wrong_t, atol=max(atol, 1e-6), rtol=1e-4,
                                                               equal_nan=True):
                raise ExerciseFailed(f"{step}: {why}\nhint: {hint}") from None
        raise ExerciseFailed(f"{step}: {why}") from None
    _say("", step)


class Passed:
    """What `check` returns when every step passed: true, and shown as nothing in a notebook (the lines the check
    printed say what passed; a bare `True` would say nothing more)."""

    def __init__(self, name: str, steps: int):
        self.name, self.steps = name, steps

    def __bool__(self) -> bool:
        return True

    def __repr__(self) -> str:
        return f"Passed({self.name!r}, steps={self.steps})"

    def _ipython_display_(self) -> None:
        pass


def check(name: str, fn: Callable) -> Passed:
    """Run exercise `name`'s check on the learner's `fn`: prints each passed step; raises ExerciseFailed (with a
    hint where the mistake is a usual one) at the first that fails. Returns a true `Passed` (displayed as nothing)
    when all pass."""
    ex = exercise(name)
    if not callable(fn):
        raise UserError(f"check({name!r}, ...) needs the function {ex.function} you wrote, not {type(fn).__name__}")
    print(f"Exercise {ex.name}: {ex.title}")
    before = _passed[0]
    CHECKS[name](fn)
    steps = _passed[0] - before
    print(f"All checks of {ex.function} passed ({steps} step{'s' if steps != 1 else ''}).")
    return Passed(name, steps)


def _batches(seed: int = 0, n_a: int = 6, n_b: int = 5, sizes=(40, 25, 60)):
    """Correlated activations with means far from zero, in batches of unequal size."""
    rng = np.random.default_rng(seed)
    out = []
    for t in sizes:
        z = rng.normal(size=(t, 3))
        a = 3.0 + z @ rng.normal(size=(3, n_a)) + 0.5 * rng.normal(size=(t, n_a))
        b = -2.0 + z @ rng.normal(size=(3, n_b)) + 0.5 * rng.normal(size=(t, n_b))
        out.append((a, b))
    return out


def _check_pearson(fn) -> None:
    batches = _batches()
    sp = StreamingPearson(6, 5)
    for a, b in batches:
        sp.update(torch.as_tensor(a, dtype=torch.float32), torch.as_tensor(b, dtype=torch.float32))
    want = sp.correlation()
    a, b = (np.concatenate(x) for x in zip(*batches))
    cosine = (a.T @ b) / np.outer(np.linalg.norm(a, axis=0), np.linalg.norm(b, axis=0))
    per_batch = np.mean([np.corrcoef(x.T, y.T)[:6, 6:] for x, y in batches], axis=0)
    got = fn(iter([(x.copy(), y.copy()) for x, y in batches]))
    _close(np.shape(got), (6, 5), "the result is [n_a, n_b]", atol=0)
    _close(got, want, "equals StreamingPearson over three batches of unequal size (means far from 0)", [
        (cosine, "this is the cosine of the raw activations: subtract the means, Σab − Σa·Σb/n over all tokens"),
        (per_batch, "this is the mean of per-batch correlations: accumulate sums over all batches, then divide "
                    "once at the end")], atol=1e-5)
    one = fn(iter([(np.concatenate([a, a]), np.concatenate([b, b]))]))
    _close(one, want, "one batch holding every token twice gives the same correlation", atol=1e-5)


def _check_excess(fn) -> None:
    rng = np.random.default_rng(1)
    corr = [np.tanh(rng.normal(0, 0.6, (8, 10))) for _ in range(3)]
    corr[0][2, 4] = -0.97  # a strongly anti-correlated partner neuron: no twin
    base = [np.tanh(rng.normal(0, 0.3, (8, 10))) for _ in range(3)]
    want = excess_from(np.stack([matching.signed_max(c)[0] for c in corr]), np.stack([matching.signed_max(c)[0] for c in base]))
    absmax = excess_from(np.stack([np.abs(c).max(1) for c in corr]), np.stack([np.abs(c).max(1) for c in base]))
    got = fn(corr, base)
    _close(np.shape(got), (8,), "one value per reference neuron", atol=0)
    _close(got, want, "equals the paper's excess: mean over partners of the signed max, minus the baseline's", [
        (absmax, "this uses the max of |r|: the paper matches by the signed maximum (an anti-correlated neuron "
                 "is not a twin)")])


def _tiny_model(seed: int = 0, n_layers: int = 2):
    """A small random GPT-2-like HookedTransformer (not processed), with LayerNorm weights far from 1."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(n_layers=n_layers, d_model=24, d_head=6, n_heads=4, d_mlp=48, d_vocab=40,
                                  n_ctx=16, act_fn="gelu_new", normalization_type="LN", seed=seed,
                                  default_prepend_bos=False)
    model = HookedTransformer(cfg)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for block in model.blocks:
            for ln in (block.ln1, block.ln2):
                ln.w.copy_(0.5 + 1.5 * torch.rand(cfg.d_model, generator=g))
                ln.b.copy_(0.2 * torch.randn(cfg.d_model, generator=g))
    model.eval()
    return model


def _check_ln_fold(fn) -> None:
    import copy

    raw = _tiny_model(2)
    folded = copy.deepcopy(raw)
    folded.process_weights_(fold_ln=True, center_writing_weights=True, center_unembed=True)
    want = weight_stats(folded)[0]["w_in_norm"].to_numpy().reshape(raw.cfg.n_layers, -1)
    for layer in range(raw.cfg.n_layers):
        ln_w, w_in = raw.blocks[layer].ln2.w.detach().clone(), raw.W_in[layer].detach().clone()
        plain = w_in.double().norm(dim=0)
        scaled = (ln_w[:, None].double() * w_in.double()).norm(dim=0)
        got = fn(ln_w, w_in)
        _close(got, want[layer], f"layer {layer}: equals the w_in norm of TransformerLens's folded model", [
            (plain, "this is the norm of W_in as stored: fold the LayerNorm first (multiply each row d of W_in "
                    "by the LayerNorm weight w[d]) and centre it over d_model"),
            (scaled, "the LayerNorm weight is folded in, but not the centring: subtract each neuron's mean over "
                     "d_model (the LayerNorm's output has mean 0, so that component never reaches the neuron)")],
               atol=1e-5)


def _check_vr(fn) -> None:
    rng = np.random.default_rng(3)
    y = rng.random(500) < 0.15  # a rare feature, so that swapped weights are far off
    v = np.where(y, rng.normal(2.0, 0.5, 500), rng.normal(0.0, 1.5, 500))
    acc = VarianceReduction(["f"])
    acc.update(y[:, None].astype(np.float64), v[:, None])
    want = float(acc.result().iloc[0, 0])
    b = y.mean()
    swapped = 1 - (b * v[~y].var() + (1 - b) * v[y].var()) / v.var()
    unweighted = 1 - (v[~y].var() + v[y].var()) / 2 / v.var()
    got = fn(v, y)
    _close(float(got), want, "equals families.VarianceReduction on a rare feature", [
        (swapped, "the weights are swapped: β = mean(y) weighs the variance where y = 1, (1 − β) where y = 0"),
        (unweighted, "the two groups' variances are averaged unweighted: weigh them by their share of tokens")],
           atol=1e-9)
    every_other = np.arange(500) % 2 == 0
    _close(float(fn(v, every_other)), float(1 - (0.5 * v[1::2].var() + 0.5 * v[::2].var()) / v.var()),
           "a feature on every other token (two equal groups)", atol=1e-9)


def _check_bos(fn) -> None:
    model = _tiny_model(4).eval()
    model.process_weights_(fold_ln=True, center_writing_weights=True, center_unembed=True)
    bos = 0
    want = attention.bos_score_array(model, bos)  # [L, d_mlp, L, H]
    k = attention.bos_keys(model, bos)  # [L, H, d_head]
    for n in (0, 7, 31):
        w_out = model.W_out[0, n].detach().clone()
        w_q = model.W_Q[1].detach().clone()
        raw = torch.einsum("m,hmd,hd->h", w_out.double(), w_q.double(), k[1].double())
        got = fn(w_out, w_q, k[1].clone())
        _close(got, want[0, n, 1], f"neuron 0.{n} against the heads of layer 1: equals attention.bos_score_array", [
            (raw / math.sqrt(model.cfg.d_head), "normalise w_out to unit length first: the score is about the "
                                                 "direction the neuron writes, not its norm"),
            (raw / w_out.double().norm(), "divide by sqrt(d_head), as attention scores are"),
            (raw, "normalise w_out to unit length and divide by sqrt(d_head)")], atol=1e-6)


def _check_hook(fn) -> None:
    model = _tiny_model(5)
    model.process_weights_(fold_ln=True, center_writing_weights=True, center_unembed=True)
    tokens = torch.randint(1, model.cfg.d_vocab, (3, 12), generator=torch.Generator().manual_seed(5))
    layer, neuron, value = 1, 9, 4.0

    def fix(act, hook):
        act[..., neuron] = value
        return act

    with torch.no_grad(), model.hooks(fwd_hooks=[(f"blocks.{layer}.mlp.hook_post", fix)]):
        want = model(tokens)
    with torch.no_grad():
        clean = model(tokens)
        got = fn(model, tokens, layer, neuron, value)
    left = [name for name, hp in model.hook_dict.items() if hp.fwd_hooks]
    if left:
        model.reset_hooks(including_permanent=True)
        raise ExerciseFailed(f"a hook was left on the model at {left[0]}\nhint: add the hook for this run only "
                             "(`with model.hooks(fwd_hooks=[...]):` or `model.run_with_hooks`), or every later "
                             "forward pass keeps the neuron fixed")
    _say("", "no hook is left on the model")
    _close(got, want, f"the logits with neuron {layer}.{neuron} fixed at {value}", [
        (clean, "these are the clean logits: the hook must return (or edit in place) the activation with the "
                f"neuron set, at blocks.{layer}.mlp.hook_post")], atol=1e-5)
    logp = torch.log_softmax(torch.as_tensor(got)[:, :-1].double(), -1)
    ent = float(-(logp.exp() * logp).sum(-1).mean())
    table = entropy.fixed_activation(model, tokens, layer, neuron, values=[value])
    _close(ent, float(table["entropy"].iloc[1]), "its mean entropy equals entropy.fixed_activation's", atol=1e-5)


CHECKS: dict[str, Callable] = {"pearson": _check_pearson, "excess": _check_excess, "ln_fold": _check_ln_fold,
                               "vr": _check_vr, "bos": _check_bos, "hook": _check_hook}
