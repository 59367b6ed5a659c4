"""The reference code's newline filter, computed by adding the co-moments of the extra positions to the book's:
against numpy float64 correlations of activations read with the hook runner at the reference's kept positions."""

import numpy as np
import pytest

import universal_neurons as un
from universal_neurons.measures import activations

pytestmark = pytest.mark.usefixtures("one_thread")
N_TOKENS = 3000


def test_reference_kept_ids_are_the_other_whitespace_newline_tokens(smoke_data):
    from universal_neurons.data.tokenizer import load_tokenizer

    tok = load_tokenizer(smoke_data[2])
    texts = [tok.decode([i]) for i in range(len(tok))]
    kept = activations.reference_kept_ids(tok).tolist()
    assert kept == sorted(i for i, t in enumerate(texts) if "\n" in t and not t.strip() and t != "\n"
                          and i not in tok.all_special_ids)
    dropped = set(activations.dropped_ids(tok).tolist())
    assert set(kept) < dropped and texts.index("\n") in dropped - set(kept)


def test_extra_co_moments_give_the_reference_filters_correlations(smoke, smoke_zoo, smoke_data):
    models = [un.load_model(str(smoke.seed_dir(s))) for s in smoke.seeds[:2]]
    extra_ids = activations.reference_kept_ids(models[0].tokenizer)
    assert len(extra_ids), "the smoke tokenizer has a whitespace-only newline token other than the newline"
    rows = np.array(smoke_data[1].tokens[:200], dtype=np.int64)
    rng = np.random.default_rng(0)
    r, c = rng.integers(0, 60, 40), rng.integers(1, rows.shape[1], 40)  # plant the extra tokens in the first rows
    rows[r, c] = extra_ids[0]
    names = ["a", "b"]
    ours = activations.co_moments(models, names, rows, N_TOKENS, 16, "cpu", progress=False)[0]
    extra = activations.extra_co_moments(models, names, rows, N_TOKENS, 16, "cpu", extra_ids)[0]
    assert extra.n == int(np.isin(rows[:activations.plan_pass(models, names, rows, N_TOKENS).n_rows], extra_ids).sum()) > 0
    both = ours.plus(extra)

    # independent: the activations at the positions the reference keeps, read row by row
    plan = activations.plan_pass(models, names, rows, N_TOKENS)
    acts = [[], []]
    for r0 in range(plan.n_rows):
        mask = plan.mask(r0, r0 + 1) | np.isin(rows[r0:r0 + 1], extra_ids)
        import torch

        toks, m = torch.from_numpy(rows[r0:r0 + 1]), torch.from_numpy(mask)
        for k, model in enumerate(models):
            per_layer = {}
            activations.run_hooks(model, toks, m, activations.mlp_points(model), lambda l, a: per_layer.__setitem__(l, a.double().numpy()))
            acts[k].append(np.hstack([per_layer[l] for l in range(model.cfg.n_layers)]))
    a, b = np.vstack(acts[0]), np.vstack(acts[1])
    assert both.n == len(a)
    want = np.corrcoef(a.T, b.T)[:a.shape[1], a.shape[1]:]
    got = both.corr_ab()
    ok = ~np.isnan(want) & ~np.isnan(got)
    assert ok.mean() > 0.9
    np.testing.assert_allclose(got[ok], want[ok], atol=2e-5)
    assert not np.allclose(ours.corr_ab()[ok], want[ok], atol=2e-5)  # the extra positions do change the matrix
