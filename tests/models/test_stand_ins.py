"""Stand-ins of the paper's models: the shapes the paper studies (its section 2: GPT2-small and Pythia-160m with
12 x 3,072 neurons, GPT2-medium with 24 x 4,096)."""

import pytest

from universal_neurons import UserError
from universal_neurons.models.stand_ins import neurons


def test_the_shapes_are_the_papers():
    assert neurons("gpt2-small") == (12, 3072)
    assert neurons("gpt2-medium") == (24, 4096)
    assert neurons("pythia-160m") == (12, 3072)
    assert neurons("tiny") == (2, 256)  # 4 x n_embd
    assert neurons("tiny-neox") == (2, 256)
    with pytest.raises(UserError, match="unknown stand-in shape 'gpt2-xl'; choose one of gpt2-small"):
        neurons("gpt2-xl")
