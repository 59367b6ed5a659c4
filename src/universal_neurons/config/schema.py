"""Every key a profile may set: one pydantic model per section, each field with its default and its reason.

A profile file (`universal_neurons/profiles/<name>.yaml`) and its overrides are checked against these models
on load (`config.load_profile`); unknown keys, wrong types and out-of-range values fail with one line.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, model_validator

from ..core import paper


def as_number(value):
    """A string that reads as a number becomes one (YAML 1.1 leaves `1e6` and `5e-3` as strings): whole
    numbers without a decimal point or negative exponent as int, others as float; anything else unchanged."""
    if not isinstance(value, str):
        return value
    try:
        number = float(value)
    except ValueError:
        return value
    return int(number) if number.is_integer() and "." not in value and "e-" not in value.lower() else number


SANITY = 10**12  # no count a profile sets comes near it: 1e99 training tokens is a typo, not a plan
SEED_MAX = 2**32 - 1  # the seeds every RNG here takes (torch.manual_seed, numpy's default_rng)


def _whole(minimum: int, maximum: int = SANITY):
    def check(value):
        value = as_number(value)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"must be a whole number >= {minimum}")
        if value > maximum:
            raise ValueError(f"must be a whole number from {minimum} to {maximum:,} (a sanity bound)")
        return value

    return Annotated[int, PlainValidator(check)]


def _real(low: float, high: float | None = None, low_open: bool = True, high_open: bool = False,
          cap: float = SANITY):
    """A number in (low, high] (`low_open`, `high_open` say which ends are excluded), at most `cap` when `high` is
    None (a sanity bound); ints stay ints (cache keys keep their form)."""
    span = f"{'(' if low_open else '['}{low:g}, {'inf)' if high is None else f'{high:g}' + (')' if high_open else ']')}"

    def check(value):
        value = as_number(value)
        if (isinstance(value, bool) or not isinstance(value, (int, float)) or value != value
                or (value <= low if low_open else value < low)
                or (high is not None and (value >= high if high_open else value > high))):
            raise ValueError(f"must be a number in {span}")
        if high is None and value > cap:
            raise ValueError(f"must be a number from {low:g} to {cap:g} (a sanity bound)")
        return value

    return Annotated[float, PlainValidator(check)]


Positive, Count, Seed = _whole(1), _whole(0), _whole(0, SEED_MAX)
PositiveReal, NonNegative, Fraction, Share = _real(0), _real(0, low_open=False), _real(0, 1), _real(0, 1, high_open=True)
Percent = _real(0, 100)  # a share given in percent: (0, 100]


def _threshold(value):
    value = as_number(value)
    if value == "control" or (not isinstance(value, bool) and isinstance(value, (int, float)) and 0 < value <= 1):
        return value
    raise ValueError("must be a number in (0, 1] or control")


def _member_list(value):
    if value is None:
        return None
    if not isinstance(value, list) or not value or any(isinstance(m, bool) or not isinstance(m, (int, str))
                                                       for m in value):
        raise ValueError("must be a non-empty list of zoo seeds or model sources, or null")
    return value


def _seed_list(value):
    if not isinstance(value, list) or not value or any(isinstance(s, bool) or not isinstance(s, int) or s < 0
                                                       for s in value) or len(set(value)) < len(value):
        raise ValueError("must be a non-empty list of distinct whole numbers >= 0")
    if max(value) > SEED_MAX:
        raise ValueError(f"must be a list of seeds from 0 to {SEED_MAX:,} (2^32 - 1: what every random number "
                         f"generator here takes); {max(value)} is beyond")
    return value


def _shipped_folder(value):
    """`shipped:` a folder of the project, given relative to it (zoo/release): never absolute, never `..`."""
    if value is None:
        return None
    from pathlib import PurePosixPath

    if (not isinstance(value, str) or not value.strip() or value.startswith(("/", "~", "\\"))
            or ".." in PurePosixPath(value.replace("\\", "/")).parts):
        raise ValueError("must be a folder inside the project, relative to it, without '..' (e.g. zoo/release)")
    return value


def _profile_name(value):
    if value is None:
        return None
    import re

    if not isinstance(value, str) or not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", value) or ".." in value:
        raise ValueError("must be a shipped profile's name (no path separator or '..')")
    return value


def _source_list(value):
    if not isinstance(value, list) or not value or not all(isinstance(s, str) and s for s in value):
        raise ValueError("must be a non-empty list of hub ids or local folders")
    return value


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Corpus(Section):
    source: Literal["registry", "local", "hf"] = Field(
        "registry", description="where the text comes from: offline registry packages, local .txt files, or a hub dataset")
    tier: Literal["prose", "all"] = Field(
        "prose", description="source=registry: books and speeches (prose), or also dictionaries and manuals (all)")
    path: str | None = Field(None, description="source=local: the folder of .txt files, one document each")
    hf_dataset: str | None = Field(None, description="source=hf: the dataset id, e.g. NeelNanda/pile-10k")
    hf_split: str = Field("train", description="source=hf: the split to read")
    hf_text_field: str = Field("text", description="source=hf: the column that holds the text")
    heldout_fraction: Share = Field(
        0.05, description="share of the documents held out: every loss and analysis reads only these")


class Tokenizer(Section):
    kind: Literal["bpe", "gpt2", "from_model"] = Field(
        "bpe", description="bpe: trained on the corpus; gpt2: GPT-2's own; from_model: the reference checkpoint's")
    vocab_size: _whole(2, 2**24) = Field(8192, description="kind=bpe: the vocabulary size")


class Model(Section):
    n_ctx: _whole(1, 2**20) = Field(128, description="tokens per row: the context of training and of every analysis")
    n_layer: _whole(1, 10**4) | None = Field(None, description="zoo profiles: transformer blocks")
    d_model: _whole(1, 2**20) | None = Field(None, description="zoo profiles: residual stream width")
    d_mlp: _whole(1, 2**24) | None = Field(None, description="zoo profiles: MLP neurons per layer")
    n_head: _whole(1, 2**16) | None = Field(None, description="zoo profiles: attention heads (must divide d_model)")
    activation: Literal["gelu_pytorch_tanh", "gelu_new"] = Field(
        "gelu_pytorch_tanh", description="GPT-2's tanh GELU: one fused kernel or several, the same function")


class Train(Section):
    seeds: Annotated[list[int], PlainValidator(_seed_list)] = Field(
        description="the zoo's members: one model per seed (initialisation and data order)", examples=[[0, 1, 2]])
    tokens: Positive = Field(description="training tokens per seed", examples=[600000])
    batch_size: _whole(1, 2**24) = Field(description="rows of model.n_ctx tokens per optimiser step", examples=[32])
    lr: _real(0, cap=10) = Field(description="peak AdamW learning rate", examples=[0.005])
    warmup_steps: Count = Field(description="steps of linear warm-up to the peak", examples=[100])
    weight_decay: _real(0, low_open=False, cap=100) = Field(description="AdamW weight decay of the weight matrices", examples=[0.1])
    checkpoint_every: Positive = Field(description="steps between resumable checkpoints", examples=[100])
    threads: _whole(1, 4096) = Field(1, description="torch threads per seed; part of the recipe (a seed's bytes depend on it)")
    attention: Literal["sdpa", "eager"] = Field("sdpa", description="attention kernel: sdpa measured fastest here")
    fused_adamw: bool = Field(True, description="one fused AdamW kernel per step: faster, the same update")
    schedule: Literal["cosine", "wsd"] = Field(
        "cosine", description="cosine to 10% of the peak, or wsd (constant, then linear decay to zero)")
    decay_fraction: Fraction = Field(0.2, description="schedule=wsd: the share of the steps spent decaying")
    eval_tokens: Positive = Field(2**18, description="held-out tokens of the final loss (a quarter during training)")
    precision: Literal["fp32", "bf16"] = Field("fp32", description="CPU autocast (CUDA always autocasts to bf16)")


class Models(Section):
    reference: str = Field(description="hub id or local folder of the reference model",
                           examples=["stanford-crfm/alias-gpt2-small-x21"])
    partners: Annotated[list[str], PlainValidator(_source_list)] = Field(
        description="hub ids or local folders of the models compared with the reference",
        examples=[["stanford-crfm/battlestar-gpt2-small-x49"]])
    revision: str | None = Field(None, description="hub revision (branch, tag or commit) of every checkpoint")


class Analysis(Section):
    reference_seed: Seed = Field(0, description="zoo profiles: the seed whose neurons are looked for in the others")
    n_tokens: Positive = Field(300000, description="held-out tokens the correlations and statistics run over")
    batch_size: Positive = Field(64, description="rows per forward pass of the analyses")
    partners: Annotated[list[int | str] | None, PlainValidator(_member_list)] = Field(
        None, description="members compared with the reference: zoo seeds or model sources (null: every other member)")
    baseline: Literal["gaussian", "orthogonal"] = Field(
        "gaussian", description="the rotated baseline: the paper's row-normalised Gaussian matrix, or an orthogonal one")
    baseline_seed: Seed = Field(0, description="seed of the baseline's random matrices")
    control: bool = Field(True, description="zoo profiles: also correlate with an untrained model (the noise floor)")
    untrained: bool = Field(False, description="the negative control: analyse fresh, untrained models of the members' "
                            "shapes and tokenizer instead of the members (every claim should fail)")
    chunk_tokens: Positive = Field(16384, description="tokens per chunk of activations held in memory")
    max_accumulator_gb: _real(0.001, low_open=False, cap=1e6) = Field(
        4.0, description="memory for the correlation accumulators; above it the pass is split into tiles")


class Book(Section):
    threshold: Annotated[float | str, PlainValidator(_threshold)] = Field(
        paper.THRESHOLD, description="excess correlation of a universal neuron: the paper's 0.5, or control (the "
        "scale-aware one)")
    top_pct: Percent = Field(
        2.0, description="with fewer than min_universal universal neurons, this top percent by excess stands in")
    min_universal: Positive = Field(10, description="the smallest universal group worth comparing")
    n_sample_tokens: Positive = Field(24, description="greedy continuation length per prompt")
    kurt_threshold: PositiveReal = Field(float(paper.VOCAB_KURT_THRESHOLD),
                                         description="vocab_kurt above which a neuron predicts or suppresses")
    partition_var: PositiveReal = Field(paper.PARTITION_VAR,
                                        description="vocab_var above which a neuron partitions the vocabulary")
    top_kurt_pct: Percent = Field(5.0, description="with too few above kurt_threshold, this top percent instead")
    n_tail: Positive = Field(12, description="tokens listed at each tail of a neuron's vocabulary effect")
    n_ensemble: Positive = Field(3, description="neurons per token class and direction")
    n_class_tokens: Positive = Field(50000, description="held-out tokens of the class activations (at most n_tokens)")
    frequent_pct: Percent = Field(5.0, description="the most frequent neurons, in percent, of the direction check")
    bins: Positive = Field(50, description="at most this many bins per axis of the 2-D histograms")
    sweep: Annotated[str, PlainValidator(_profile_name)] = Field("sweep", description="the sweep profile the scale chapter reads")
    sweep_dir: str | None = Field(None, description="the sweep's folder (null: the sweep profile's run folder)")
    run_missing: bool = Field(False, description="scale chapter: train and analyse missing points first (hours)")
    loss_tokens: Positive = Field(65536, description="zoo chapter: held-out tokens of each member's loss where it is "
                                  "measured here (checkpoints trained elsewhere, the untrained control)")
    family_tokens: Positive = Field(100000, description="families chapter: held-out tokens of the feature pass "
                                    "(at most the held-out rows)")
    family_vr: Share = Field(0.2, description="families chapter: best VR above which a neuron counts as explained")
    entropy_tokens: Positive = Field(4096, description="entropy chapter: held-out tokens of each fixed-activation run")
    entropy_random: Positive = Field(paper.ENTROPY_RANDOM, description="entropy chapter: random neurons of the "
                                     "last two layers in the baseline band")
    null_dims: Positive = Field(paper.NULL_DIMS_GPT2_SMALL, description="entropy chapter: bottom singular "
                                "directions of W_U spanning its null space (Stolfo et al.)")
    attention_tokens: Positive = Field(16384, description="attention chapter: held-out tokens of each path ablation")
    attention_pairs: Positive = Field(3, description="attention chapter: the strongest (neuron, head) pairs ablated")
    attention_random: Positive = Field(10000, description="attention chapter: random unit directions of the baseline")
    explorer_tokens: Positive = Field(65536, description="neuron explorer: held-out tokens of each member's pass")
    robust_tokens: Positive = Field(100000, description="robustness chapter: held-out tokens of its co-moment pass "
                                    "(at most analysis.n_tokens)")
    role_top: Positive = Field(10, description="entropy and attention chapters: a neuron has a role in a seed when "
                               "it ranks among that seed's top role_top for it")


class Grid(Section):
    widths: Any = Field(None, description="[d_model, d_mlp] or [d_model, d_mlp, n_head] per width (checked by the sweep)")
    layers: Any = Field(None, description="layer counts: every width x layers x tokens combination is one point")
    tokens: Any = Field(None, description="training budgets (tokens per seed)")
    variants: Any = Field(None, description="train.* settings, one point each: [{id: wsd, schedule: wsd}, ...]")


class Snapshots(Section):
    point: str | None = Field(None, description="the grid point whose zoo is also saved during training (null: last)")
    fractions: Any = Field(None, description="fractions of the training steps at which it is saved, each in (0, 1)")


class Config(Section):
    """A whole profile. Exactly one of `train` (a zoo trained here) and `models` (real checkpoints)."""

    description: str = Field("", description="one line shown at the top of every chapter")
    shipped: Annotated[str | None, PlainValidator(_shipped_folder)] = Field(None, description="folder of a zoo trained once and committed: checked, not trained")
    data_from: Annotated[str | None, PlainValidator(_profile_name)] = Field(None, description="sweeps: the profile whose corpus, tokenizer and rows are reused")
    corpus: Corpus = Field(default_factory=Corpus, description="the text: where it comes from, what is held out")
    tokenizer: Tokenizer = Field(default_factory=Tokenizer, description="how text becomes tokens")
    model: Model = Field(default_factory=Model, description="the architecture of a zoo, the context of every profile")
    train: Train | None = Field(None, description="a zoo trained here, one model per seed")
    models: Models | None = Field(None, description="real checkpoints instead of a zoo")
    analysis: Analysis = Field(default_factory=Analysis, description="the correlation pass and neuron statistics")
    book: Book = Field(default_factory=Book, description="the chapters' parameters")
    grid: Grid | None = Field(None, description="sweeps: the zoos over widths, depths and budgets")
    snapshots: Snapshots | None = Field(None, description="sweeps: one point's zoo saved during training")

    @model_validator(mode="after")
    def _consistent(self):
        if (self.train is None) == (self.models is None):
            raise ValueError("a profile has either a train: section (a zoo) or a models: section (real checkpoints)")
        if self.train is not None:
            missing = [k for k in ("n_layer", "d_model", "d_mlp", "n_head") if getattr(self.model, k) is None]
            if missing:
                raise ValueError(f"a zoo profile must set model.{', model.'.join(missing)} (e.g. model.n_layer=2 "
                                 "model.d_model=64 model.d_mlp=256 model.n_head=4)")
            if self.model.d_model % self.model.n_head:
                raise ValueError(f"model.d_model={self.model.d_model} is not divisible by model.n_head={self.model.n_head}")
            seeds = self.train.seeds
            if self.analysis.reference_seed not in seeds:
                ref = self.analysis.reference_seed
                raise ValueError(f"analysis.reference_seed={ref} is not among train.seeds {seeds}; set "
                                 f"analysis.reference_seed={seeds[0]} (or another of them), or add {ref} to "
                                 f"train.seeds (e.g. train.seeds={sorted(seeds + [ref])})")
            stray = [p for p in self.analysis.partners or [] if isinstance(p, int) and p not in seeds]
            if stray:
                raise ValueError(f"analysis.partners: seed(s) {stray} not among train.seeds {seeds}")
            reference = self.analysis.reference_seed
        else:
            reference = self.models.reference
            if reference in self.models.partners:
                raise ValueError(f"models.partners names the reference {reference!r} itself; remove it from "
                                 "models.partners (the reference is compared with the others)")
        if self.book.threshold == "control" and (self.train is None or not self.analysis.control):
            why = ("analysis.control=false" if self.train is not None else
                   "real checkpoints have none here")
            fix = "set analysis.control=true or" if self.train is not None else ""
            raise ValueError(f"book.threshold=control needs the untrained control ({why}); {fix} set a number, "
                             f"e.g. book.threshold={paper.THRESHOLD}".replace("  ", " "))
        partners = self.analysis.partners or []
        if reference in partners:
            raise ValueError(f"analysis.partners={partners} names the reference {reference!r} itself; remove it "
                             "(the reference is compared with its partners; null: every other member)")
        if len(set(map(str, partners))) < len(partners):
            raise ValueError(f"analysis.partners={partners} names a member twice; list each partner once")
        return self


SECTIONS: dict[str, type[Section]] = {"corpus": Corpus, "tokenizer": Tokenizer, "model": Model, "train": Train,
                                      "models": Models, "analysis": Analysis, "book": Book, "grid": Grid,
                                      "snapshots": Snapshots}
TOP_LEVEL = ("description", "shipped", "data_from")


def defaults(section: type[Section]) -> dict:
    """The section's keys that have a default, with it."""
    return {k: f.get_default(call_default_factory=True) for k, f in section.model_fields.items() if not f.is_required()}


# What every profile gets unless it says otherwise (model: only the context; a zoo's architecture has no default).
DEFAULTS = {"corpus": defaults(Corpus), "tokenizer": defaults(Tokenizer), "model": {"n_ctx": Model().n_ctx},
            "analysis": defaults(Analysis), "book": defaults(Book)}
# What a zoo profile's `train:` and `model:` sections get unless they say otherwise: the trainer's speed options
# measured fastest here (`make bench-train`). `threads` is part of the recipe: a seed's bytes depend on it.
TRAIN_DEFAULTS = defaults(Train)
MODEL_DEFAULTS = {"activation": Model().activation}
