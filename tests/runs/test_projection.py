"""The projection's counts: a forward pass's flops against torch's own flop counter, the passes' work by hand on a
small shape, the pricing and torchrun's share, and the constants it repeats from the chapters and the pass."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from universal_neurons.book.chapters import robustness as chapter
from universal_neurons.measures import maxima
from universal_neurons.runs import projection as P


def test_forward_flops_match_torchs_flop_counter():
    from torch.utils.flop_counter import FlopCounterMode
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    shape = P.Shape("t", n_layers=2, d_mlp=256, d_model=64, n_ctx=32, partners=1)
    cfg = HookedTransformerConfig(n_layers=2, d_model=64, d_head=16, n_heads=4, d_mlp=256, n_ctx=32, d_vocab=100,
                                  act_fn="gelu_new", seed=0)
    model = HookedTransformer(cfg).eval()
    tokens = torch.randint(0, 100, (3, 32))
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(tokens, stop_at_layer=2)
    assert counter.get_total_flops() == pytest.approx(tokens.numel() * shape.forward_flops(), rel=1e-9)


def test_universality_work_by_hand():
    """Two partners of 2 x 64 neurons, a budget that holds everything: one tile for the pass, one for the control
    (a pass of its own under torchrun), or one tile with the control as a third partner (on one process)."""
    s = P.Shape("t", n_layers=2, d_mlp=64, d_model=32, n_ctx=16, partners=2)
    one = P.universality(s, n_tokens=1000, budget_gb=1.0)
    assert one.tiles == 1 and one.tokens["forward"] == 1000 * 4 * s.forward_flops()
    assert one.tokens["gemm32"] == 1000 * (2 * 128 * 384 + 6 * 2 * 64 ** 2)
    w = P.universality(s, n_tokens=1000, budget_gb=1.0, joined=False)
    assert w.tiles == 2
    assert w.tokens["forward"] == 1000 * (3 + 2) * s.forward_flops()
    assert w.tokens["gemm32"] == 1000 * (2 * 128 * 256 + 4 * 2 * 64 ** 2) + 1000 * (2 * 128 * 128 + 2 * 2 * 64 ** 2)
    snaps = len(maxima.FRACTIONS)
    assert P.snapshots(1000, 16) == snaps and P.snapshots(1024, 512) == 3  # the GPT2-small dry run's 501, 984, 1024
    assert P.universality(s, 1000, 1.0, control=False).tiles == 1
    assert w.fixed["gemm64"] == one.fixed["gemm64"] == snaps * (4 + 2) * (2 * 128 * 64 ** 2 + 4 * 64 ** 3)


def test_pricing_and_torchrun_share():
    w = P.Work({"forward": 10.0, "gemm32": 20.0, "gemm64": 0.0, "hungarian": 0.0},
               {"forward": 0.0, "gemm32": 0.0, "gemm64": 6.0, "hungarian": 3.0})
    rates = P.Rates("m", gemm32=2.0, gemm64=3.0, forward=5.0, hungarian=1.0, memory_gb=1.0, measured=True)
    assert w.seconds(rates) == pytest.approx(10 / 5 + 20 / 2 + 6 / 3 + 3)
    assert w.seconds(rates, ranks=4) == pytest.approx((10 / 5 + 20 / 2) / 4 + 6 / 3 + 3)
    assert not P.datasheet_rates().measured


def test_constants_agree_with_the_chapter_and_the_pass():
    assert P.HUNGARIAN_WORK == chapter.HUNGARIAN_WORK
    assert P.ROTATED_DRAWS == chapter.DRAWS + 3 and P.BOOT_WEIGHTINGS == chapter.BOOT + chapter.BLOCKS
    for n_tokens, n_ctx in ((100_000, 128), (1024, 512), (300, 128), (3, 512)):
        assert P.shape_shift(n_tokens, n_ctx) == chapter.shift_tokens(n_tokens, n_ctx)
    shape = P.Shape("gpt2-medium", 24, 4096, 1024, 512, 4)
    models = [SimpleNamespace(cfg=SimpleNamespace(n_layers=24, d_mlp=4096))] * 5
    for budget in (0.5, 4.0, 60.0):
        assert P.chunk(shape, 16384, 10**8, budget) == maxima.chunk_cap(models, 512, 16384, budget)


@pytest.mark.parametrize("dims", [(2, 1024, 128, 128, 3), (12, 3072, 768, 512, 4), (24, 4096, 1024, 512, 4)])
def test_fitted_budget_fits_the_machine(dims):
    shape = P.Shape("s", *dims)
    for memory in (24.0, 80.0):
        budget = P.fitted_budget(shape, memory)
        assert P.universality(shape, 10**8, budget).memory_gb <= 0.85 * memory + 1e-9
        assert P.robustness(shape, 100_000, budget).memory_gb <= 0.85 * memory + 1.0
        assert np.isclose(budget * 10, round(budget * 10))
