"""What the token passes of a profile cost at any token count, on any machine: a count of each pass's work
(floating-point operations, by kind) and memory, priced at a machine's rates.

The counts follow the code. The universality pass (`maxima.correlate`, the untrained control one more partner of
it on one process, a pass of its own under torchrun) reruns the reference and the tile's partners over all tokens once per tile (`maxima._tiles`); per token it
multiplies the tile's reference rows by its partner columns and each partner layer by itself (float32), and at every
token snapshot it derives the rotated baseline from them (float64: rows·d² and d³ per partner layer). The
robustness co-moments (`tiled_moments.plan_passes`) rerun the models once per pass over `book.robust_tokens`, multiply
in float32 per token into float64 sums (the reference's own product once per pass, each tile's partner product, cross
product and shifted cross product, the float16 port) and derive each tile's statistics once (13 rotated baselines,
the 210 weighted block sums of the bootstrap, the Hungarian matching where `hungarian_plan` allows it). A forward
pass to the last MLP costs 2·L·(4·d_model² + 2·d_model·d_mlp + 2·n_ctx·d_model) per token.

`Rates` prices the work: GEMM rates in float32 and float64, the forward's rate and the Hungarian's steps per
second. `measure_rates` measures them on this machine; a GPU's rates, where none has been measured, come from
its datasheet at an assumed efficiency (`datasheet_rates`), and say so. Under torchrun (K processes) the
universality pass shares its chunks of tokens out, so the per-token work divides by K while the snapshots'
derivations run on every rank; the robustness pass and every other chapter run on one device.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..measures import maxima, tiled_moments

KEPT = 0.95  # the share of a row's tokens a pass keeps (special and newline tokens dropped), about


def snapshots(n_tokens: int, n_ctx: int) -> int:
    """The token snapshots of a universality pass: one per fraction of `maxima.FRACTIONS`, fewer where several end
    in the same row of the context (a small run), as the pass cuts its chunks at rows."""
    return len({int(np.ceil(f * n_tokens / (KEPT * n_ctx))) for f in maxima.FRACTIONS})


ROTATED_DRAWS = 13  # the robustness tile's rotated baselines: 10 draws, the orthogonal one, float16, newline
BOOT_WEIGHTINGS = 210  # the bootstrap's 200 draws and the 10 growing prefixes of blocks
N_BLOCKS = 10
HUNGARIAN_WORK = 2e13  # the robustness chapter's rule (`robustness.HUNGARIAN_WORK`), repeated so runs/ need not
# import a chapter; tests check that the two agree


@dataclass(frozen=True)
class Shape:
    """A profile's models: layers, MLP width, residual width, context; partners beside the reference."""

    name: str
    n_layers: int
    d_mlp: int
    d_model: int
    n_ctx: int
    partners: int

    @property
    def neurons(self) -> int:
        return self.n_layers * self.d_mlp

    def forward_flops(self) -> float:
        """Per token, to the last MLP (no unembedding: the passes stop there)."""
        return 2.0 * self.n_layers * (4 * self.d_model ** 2 + 2 * self.d_model * self.d_mlp
                                      + 2 * self.n_ctx * self.d_model)  # the full square of scores, then masked

    def weights_bytes(self) -> float:
        return 4.0 * self.n_layers * (4 * self.d_model ** 2 + 2 * self.d_model * self.d_mlp)


@dataclass(frozen=True)
class Rates:
    """What a machine does per second: GEMM flops in float32 and float64, a model's forward flops, Hungarian
    assignment steps; its memory in GB; `measured` False where the numbers are a datasheet's."""

    machine: str
    gemm32: float
    gemm64: float
    forward: float
    hungarian: float
    memory_gb: float
    measured: bool


KINDS = ("forward", "gemm32", "gemm64", "hungarian")


@dataclass
class Work:
    """A pass's work by kind (flops; Hungarian steps): `tokens` the part that grows with the tokens (torchrun
    shares it out), `fixed` the rest (each rank does it); its memory and its tiles (or passes)."""

    tokens: dict
    fixed: dict
    memory_gb: float = 0.0
    tiles: int = 0

    @classmethod
    def empty(cls) -> Work:
        return cls({k: 0.0 for k in KINDS}, {k: 0.0 for k in KINDS})

    def seconds(self, rates: Rates, ranks: int = 1) -> float:
        price = lambda w: sum(w[k] / getattr(rates, k) for k in KINDS)  # noqa: E731
        return price(self.tokens) / ranks + price(self.fixed)


def universality(shape: Shape, n_tokens: int, budget_gb: float, chunk_tokens: int = 16384,
                 control: bool = True, joined: bool = True) -> Work:
    """The universality pass and (`control`) its untrained control: one more partner of the same pass (`joined`, as
    `control.run_with_control` runs it on one process), or a pass of its own (under torchrun)."""
    out = Work.empty()
    passes = ([shape.partners + 1] if joined else [shape.partners, 1]) if control else [shape.partners]
    models = max(passes) + 1
    chunk_ = chunk(shape, chunk_tokens, n_tokens, budget_gb, models)
    for partners in passes:
        units = maxima._units([(shape.n_layers, shape.d_mlp)] * (partners + 1))
        tiles = maxima._tiles(shape.neurons, units, budget_gb * 1e9, chunk_)
        out.tiles += len(tiles)
        for i0, i1, us in tiles:
            rows, width = i1 - i0, sum(d for *_, d in us)
            out.tokens["forward"] += n_tokens * (1 + len({p for p, *_ in us})) * shape.forward_flops()
            out.tokens["gemm32"] += n_tokens * (2.0 * rows * width + sum(2.0 * d * d for *_, d in us))
            out.fixed["gemm64"] += snapshots(n_tokens, shape.n_ctx) * sum(2.0 * rows * d * d + 4.0 * d ** 3
                                                                          for *_, d in us)
    out.memory_gb = budget_gb + ((shape.partners + 2) * shape.weights_bytes()
                                 + chunk_ * 4.0 * shape.neurons * models) / 1e9
    return out


def chunk(shape: Shape, chunk_tokens: int, n_tokens: int, budget_gb: float, models: int | None = None) -> int:
    """The chunk the universality pass uses (`maxima.chunk_cap`) at this budget, in tokens, for a pass of `models`
    models (default the reference and its partners)."""
    room = max(maxima.CHUNK_SHARE * budget_gb * 1e9, 2.0 ** 28)
    width = shape.neurons * (models or shape.partners + 1)
    return int(min(chunk_tokens, n_tokens, max(shape.n_ctx, room // (4 * width))))


def fitted_budget(shape: Shape, memory_gb: float, usable: float = 0.85) -> float:
    """The largest max_accumulator_gb (0.1 GB steps) with which a pass fits `usable` of a machine's memory: beside
    the accumulators it holds every model's weights and a chunk's activations (at most a quarter of the budget)."""
    weights = (shape.partners + 2) * shape.weights_bytes() / 1e9
    return max(0.1, float(np.floor(10 * (usable * memory_gb - weights) / (1 + maxima.CHUNK_SHARE)) / 10))


def robustness(shape: Shape, n_tokens: int, budget_gb: float) -> Work:
    """The robustness chapter's co-moment passes over `n_tokens` (its book.robust_tokens) and each tile's
    derivation; the untrained control's tiles carry plain moments only."""
    out = Work.empty()
    sizes = [shape.d_mlp] * shape.n_layers
    block_rows = -(-n_tokens // N_BLOCKS)
    shift = shape_shift(n_tokens, shape.n_ctx)
    passes = tiled_moments.plan_passes(sizes, [sizes] * (shape.partners + 1), budget_gb * 1e9, shift,
                                       -(-n_tokens // block_rows), full=[True] * shape.partners + [False])
    out.tiles = len(passes)
    d = shape.d_mlp
    hung = sum(d ** 3 for _ in range(shape.partners * shape.n_layers ** 2))
    for tiles in passes:
        out.tokens["forward"] += n_tokens * (1 + len({t.partner for t in tiles})) * shape.forward_flops()
        refs = {(t.a0, t.a1) for t in tiles}
        out.tokens["gemm32"] += n_tokens * sum(2.0 * ((a1 - a0) * d) ** 2 for a0, a1 in refs)
        for t in tiles:
            n_a, n_b = (t.a1 - t.a0) * d, (t.b1 - t.b0) * d
            out.tokens["gemm32"] += n_tokens * (2.0 * n_b * n_b + 2.0 * n_a * n_b * (2 if t.full else 1))
            if not t.full:
                continue
            out.tokens["gemm32"] += n_tokens * 2.0 * n_a * n_b  # the float16 port
            out.fixed["gemm64"] += ROTATED_DRAWS * (t.b1 - t.b0) * 2.0 * n_a * d * d
            out.fixed["gemm64"] += 2.0 * BOOT_WEIGHTINGS * N_BLOCKS * n_a * n_b + 8.0 * BOOT_WEIGHTINGS * n_a * n_b
    n_layer_pairs = shape.partners * shape.n_layers
    out.fixed["gemm64"] += ROTATED_DRAWS * n_layer_pairs * 4.0 * d ** 3  # each partner layer's rotated deviations
    if hung <= HUNGARIAN_WORK:
        out.fixed["hungarian"] += hung
    out.memory_gb = budget_gb + (shape.partners + 2) * shape.weights_bytes() / 1e9 + min(budget_gb / 4, 1.0)
    return out


def shape_shift(n_tokens: int, n_ctx: int, rows: int = 4) -> int:
    """The permutation's shift (`robustness.shift_tokens`): 4 rows of the context, or half the tokens."""
    return rows * n_ctx if n_tokens > 2 * rows * n_ctx else max(1, n_tokens // 2)


# one H100 SXM's datasheet (dense): FP32 67 TFLOP/s, FP64 tensor core 67 TFLOP/s, 80 GB; priced at an assumed
# efficiency, since no GPU has been lent to this project to measure them
H100_DATASHEET = {"gemm32": 67e12, "gemm64": 67e12, "memory_gb": 80.0}
ASSUMED_EFFICIENCY = {"gemm32": 0.6, "gemm64": 0.6, "forward": 0.3}
ASSUMED_HUNGARIAN = 3e10  # scipy's linear_sum_assignment runs on the host's CPU in any case


def datasheet_rates(name: str = "1 H100 (datasheet, not measured)") -> Rates:
    """An H100's rates from its datasheet at ASSUMED_EFFICIENCY (the forward at a lower share: small batches)."""
    h, e = H100_DATASHEET, ASSUMED_EFFICIENCY
    return Rates(name, h["gemm32"] * e["gemm32"], h["gemm64"] * e["gemm64"], h["gemm32"] * e["forward"],
                 ASSUMED_HUNGARIAN, h["memory_gb"], measured=False)


def _best(fn, repeats: int = 3) -> float:
    import time

    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def measure_rates(machine: str, memory_gb: float, shape: Shape | None = None) -> Rates:
    """This machine's rates with torch's current threads: GEMMs of 2,048 in float32 and float64, a random-init GPT-2 forward of `shape` (default GPT2-small's) to its last MLP over two
    rows, and scipy's assignment of a 1,024 x 1,024 matrix."""
    import torch
    from scipy.optimize import linear_sum_assignment
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    n = 2048
    x32 = torch.randn(n, n)
    gemm32 = 2.0 * n ** 3 / _best(lambda: x32 @ x32)
    x64 = x32.double()
    gemm64 = 2.0 * n ** 3 / _best(lambda: x64 @ x64)
    shape = shape or Shape("gpt2-small", 12, 3072, 768, 512, 1)
    cfg = HookedTransformerConfig(n_layers=shape.n_layers, d_model=shape.d_model, d_head=64,
                                  n_heads=shape.d_model // 64, d_mlp=shape.d_mlp, n_ctx=shape.n_ctx, d_vocab=50257,
                                  act_fn="gelu_new", seed=0)
    model = HookedTransformer(cfg).eval()
    tokens = torch.randint(0, 50257, (2, shape.n_ctx))
    with torch.inference_mode():
        t = _best(lambda: model(tokens, stop_at_layer=shape.n_layers), repeats=2)
    forward = tokens.numel() * shape.forward_flops() / t
    m = 1024
    cost = np.random.default_rng(1).random((m, m))
    hungarian = float(m) ** 3 / _best(lambda: linear_sum_assignment(cost, maximize=True), repeats=1)
    return Rates(machine, gemm32, gemm64, forward, hungarian, memory_gb, measured=True)


def as_dict(rates: Rates) -> dict:
    return asdict(rates)


def _hours(h: float) -> str:
    return f"{h * 60:.0f} min" if h < 1 else f"{h:,.1f} h" if h < 100 else f"{h:,.0f} h"


def markdown(rows: list[dict]) -> str:
    """The projection table (rows written by scripts/projection.py): per profile, token count and machine, each
    pass's time, its tiles or passes and the memory it needs."""
    lines = ["| profile (neurons, partners) | tokens | machine | universality pass (+ control) | "
             "robustness co-moments (its tokens) |", "|---|---|---|---|---|"]
    for r in rows:
        where = r["machine"] if r["ranks"] == 1 else f"{r['ranks']} x {r['machine'].split(' ', 1)[1]}, torchrun"
        lines.append(f"| {r['profile']} ({r['neurons']}, {r['partners']}) | {r['tokens']:,} | {where} | "
                     f"{_hours(r['universality_h'])}; {r['universality_tiles']} tiles, {r['universality_gb']:.1f} GB "
                     f"(budget {r['budget_gb']:g} GB) | {_hours(r['robustness_h'])} ({r['robust_tokens']:,}); "
                     f"{r['robustness_passes']} passes, {r['robustness_gb']:.1f} GB |")
    return "\n".join(lines)
