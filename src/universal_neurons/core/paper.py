"""The paper's facts, in one place: every number the book quotes from Gurnee et al. (2024), with its source
(the paper's text, figures and tables), and its published neuron
tables, shipped in `paper_data/` (MIT, from wesg52/universal-neurons) and checked against their sha256.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from .checksum import file_sha256
from .errors import UserError

if TYPE_CHECKING:
    import pandas as pd

THRESHOLD = 0.5  # excess correlation above which a neuron is universal (section 4.1)

# Universal neurons / all neurons (section 4.1: 4.16%, 1.23%, 1.26%).
SHARES = {"GPT2-small-a": (1533, 36864), "GPT2-medium-a": (1211, 98304), "Pythia-160m": (465, 36864)}
# Universal neurons per layer (figure 2 / the published universal.csv).
PER_LAYER = {"GPT2-small-a": [222, 244, 101, 110, 71, 72, 56, 112, 101, 142, 125, 177],
             "GPT2-medium-a": [132, 140, 44, 40, 40, 30, 23, 21, 26, 24, 25, 17, 36, 36, 57, 52, 53, 56,
                               49, 55, 46, 52, 61, 96]}
D_MLP = {"GPT2-small-a": 3072, "GPT2-medium-a": 4096}
GAP_ALL, GAP_UNIVERSAL = 0.049, 0.105  # mean max-minus-min over partners of max_corr (text, figure 2b)
EXCESS_UNIVERSAL_MEAN = 0.59  # mean excess correlation of the universal neurons, "about 0.59" (text): per model,
# `excess_universal_means()` reads it from the published tables (0.587, 0.585, 0.587)

# Universal (U) / non-universal means of the neuron properties (section 4.2, figure 3; paper.md section 3).
_PROPERTY_MEANS = (
    [("GPT2-small-a", 0.045, 0.135, -0.82, -0.48, 0.95, 0.07, 7.2, 4.0, 0.83, 0.64),
     ("GPT2-medium-a", 0.049, 0.139, -0.49, -0.25, 1.10, 0.03, 8.1, 3.8, 0.66, 0.43),
     ("Pythia-160m", 0.062, 0.230, -0.07, -0.05, 0.85, -0.05, 7.1, 3.4, 2.06, 1.17)],
    ["model", "sparsity_U", "sparsity_nonU", "input_bias_U", "input_bias_nonU", "skew_U", "skew_nonU",
     "kurt_U", "kurt_nonU", "l2_penalty_U", "l2_penalty_nonU"])

# Prediction, suppression and partition neurons (section 5.1, figures 5, 6, 22-24; paper.md section 5), on the
# moments of c_v = cos(w_out, W_U[:, v]) over the vocabulary: prediction = vocab_kurt > 10 and vocab_skew > 0,
# suppression = vocab_kurt > 10 and vocab_skew < 0 (text); partition = vocab_var > 0.005 (the paper's notebook),
# a cut set for GPT2-medium, whose d_model is 1024 (section 1).
VOCAB_KURT_THRESHOLD = 10
PARTITION_VAR = 0.005
PARTITION_D_MODEL = 1024
# The text's examples in GPT2-medium-a: L19.1169 predicts years, L23.2042 suppresses "(", L18.3483 partitions the
# tokens by whether they start with a space.
EXAMPLE_NEURONS = {"prediction": "L19.1169", "suppression": "L23.2042", "partition": "L18.3483"}
# Universal GPT2-medium-a neurons with vocab_kurt > 10, of all its universal neurons (text: "289 of the 1,211").
HIGH_KURT_UNIVERSAL = (289, SHARES["GPT2-medium-a"][0])

# Mysteries (section 6, figure 9): the cosine between a neuron's w_in and w_out saturates near ±0.8 (text).
IN_OUT_COS_SATURATION = 0.8

# The models themselves: width and depth exact (section 1); training tokens are estimates the paper does not
# state (Stanford CRFM: 400,000 steps of 512 x 1,024 tokens; Pythia: about 3e11 tokens of the Pile).
_MODELS = [
    {"model": "GPT2-small-a", "d_mlp": 3072, "n_layer": 12, "tokens": 400_000 * 512 * 1024, "marker": "o"},
    {"model": "GPT2-medium-a", "d_mlp": 4096, "n_layer": 24, "tokens": 400_000 * 512 * 1024, "marker": "s"},
    {"model": "Pythia-160m", "d_mlp": 3072, "n_layer": 12, "tokens": 300e9, "marker": "^"},
]


@cache
def _frame(name: str) -> pd.DataFrame:
    import pandas as pd

    if name == "PROPERTY_MEANS":
        return pd.DataFrame(_PROPERTY_MEANS[0], columns=_PROPERTY_MEANS[1]).set_index("model")
    return pd.DataFrame(_MODELS).assign(share=lambda t: [SHARES[m][0] / SHARES[m][1] for m in t["model"]])


def __getattr__(name: str):
    """PROPERTY_MEANS and MODELS, the paper's two tables as data frames, built when first read (pandas is not
    imported by the modules that only need the numbers: the command line's configuration, the notebook recipe's
    helpers); a copy each time, so that no caller changes another's."""
    if name in ("PROPERTY_MEANS", "MODELS"):
        return _frame(name).copy()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

TABLE_DIRS = {"GPT2-small-a": "stanford-gpt2-small-a", "GPT2-medium-a": "stanford-gpt2-medium-a",
              "Pythia-160m": "pythia-160m"}


def folder() -> Path:
    """The published tables inside the package (paper_data/README.md: source and licence)."""
    from importlib.resources import files

    return Path(str(files("universal_neurons") / "paper_data" / "universal-neurons-paper"))


def read_table(relpath: str, root: Path | None = None) -> pd.DataFrame:
    """One published table (e.g. `pythia-160m/universal.csv`), checked against the folder's SHA256SUMS."""
    root = Path(root) if root is not None else folder()
    sums, path = root / "SHA256SUMS", root / relpath
    if not sums.is_file():
        raise UserError(f"{sums} is missing: restore it with `git checkout -- {root}`")
    expected = {name.removeprefix("./"): digest for digest, name in (ln.split() for ln in sums.read_text().splitlines())}
    if not path.is_file() or file_sha256(path) != expected.get(relpath):
        raise UserError(f"{path} is missing or differs from its checksum in {sums}: restore it with "
                        f"`git checkout -- {path}`")
    import pandas as pd

    return pd.read_csv(path)


def universal_tables(root: Path | None = None) -> dict[str, pd.DataFrame]:
    """The published universal.csv of each model: its universal neurons and their properties."""
    return {m: read_table(f"{d}/universal.csv", root) for m, d in TABLE_DIRS.items()}


# Neuron families (section 4.3, figures 4, 15-21; paper.md section 4), the rules on VR(v, y), the variance of the
# post-activation v explained by a binary feature y: unigram families = a feature with VR > 0.5 on >= 3 neurons;
# alphabet neurons = the best neuron per letter feature, kept if VR > 0.37 (18 of 26 letters in GPT2-medium);
# previous-token and syntax neurons = the top 25 by VR; position neurons = universal neurons with kurtosis < 2
# (not excess, as in activation_stats and the published tables, whose `kurt` is at least 1.34), ranked by the
# mutual information between position and firing (pre > 0).
UNIGRAM_VR, UNIGRAM_MIN_NEURONS = 0.5, 3
ALPHABET_VR = 0.37
ALPHABET_LETTERS = (18, 26)  # letters with an alphabet neuron in GPT2-medium, of all letters
TOP_PREVIOUS, TOP_SYNTAX = 25, 25
POSITION_KURTOSIS = 2.0

# Where each family sits in GPT2-medium-a, read in the outputs the reference repository committed with its paper
# notebooks (wesg52/universal-neurons, paper_notebooks/*.ipynb, the data behind figures 4 and 15-21) [R]; the
# paper's text names the families but not their layers. Layers of the neurons each notebook lists:
FAMILY_LAYERS_MEDIUM = {
    # unigram_neurons.ipynb: the 30 universal neurons of highest VR by one token feature (duplicate families aside)
    "unigram": (0,) * 14 + (1,) * 12 + (2,) * 3 + (10,),
    # alphabet_neurons.ipynb: the figure 4a examples, "a" L0.3825, "b" L1.3970, "c" L0.1761
    "alphabet": (0, 1, 0),
    # previous_token_neurons.ipynb: its top 25 are not printed; the figure 4b example is L4.3859 (previous comma)
    "previous": (4,),
    # syntax_neurons.ipynb: the top 25 by VR of a spaCy tag
    "syntax": (1, 0, 0, 3, 13, 4, 15, 12, 14, 14, 8, 13, 12, 7, 18, 5, 21, 11, 7, 1, 17, 12, 15, 2, 14),
    # position_neurons.ipynb: the universal neurons with kurtosis < 2
    "position": (5, 2, 1, 2, 2, 2, 1, 1, 2),
}
# unigram_neurons.ipynb: the 20 universal neurons of highest best-feature VR (0.99 to 0.89) are all in layers 0-1,
# which hold 272 of GPT2-medium-a's 1,211 universal neurons; their best features: 14 unigrams ("to", "of", "the",
# ...) and 6 other token features (comma, period, one digit, possessive pronoun).
TOP_EXPLAINED_LAYERS = (0, 1)

# Entropy neurons (section 5.2, figures 7 and 25; paper.md section 6). The neurons the reference studied
# (slurm/entropy_neuron_experiment.sh) [R]: the entropy neuron first, then its anti-entropy partner(s).
ENTROPY_NEURONS = {"GPT2-small-a": ((11, 3030), (11, 2859)), "GPT2-medium-a": ((23, 945), (22, 2882)),
                   "Pythia-160m": ((11, 1070), (10, 1205), (10, 2385))}
ENTROPY_ANTI_COS = -0.886  # cos of the w_out of GPT2-medium-a L23.945 and L22.2882 [P]
ENTROPY_VALUES = (-0.17, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0)  # the fixed activations (slurm/entropy_intervention.sh)
ENTROPY_RANDOM = 20  # random neurons of the last two layers, the baseline band [P]
NULL_DIMS_GPT2_SMALL = 12  # Stolfo et al.: bottom singular directions of W_U for gpt2-small (case_studies/*.py) [R]

# Attention (de)activation neurons (section 5.3, figures 8 and 26; paper.md section 7).
ATTENTION_EXAMPLE = ("GPT2-medium-a", (4, 3594), (5, 0))  # neuron L4.3594 -> head L5.H0 [P]
BOS_VALUE_RATIO = 19.4  # the median head's |W_O v_BOS| is 19.4 times smaller than for other tokens [P]


def excess_universal_means(root: Path | None = None) -> dict[str, float]:
    """The mean excess correlation of each model's universal neurons, from its published table."""
    return {m: float(t["excess_corr"].mean()) for m, t in universal_tables(root).items()}


def layer0_enrichment() -> dict[str, float]:
    """Per model of the published per-layer counts: layer 0's share of universal neurons over the whole model's
    (1 when universal neurons are spread evenly over the layers)."""
    return {m: (c[0] / D_MLP[m]) / (SHARES[m][0] / SHARES[m][1]) for m, c in PER_LAYER.items()}

