"""The negative control's members (analysis.untrained): fresh models of each member's shape and tokenizer, in the
control's own run folder, whose predictions are near uniform (an independent check: their loss is close to
log(vocabulary), far above the trained member's)."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from universal_neurons import load_profile
from universal_neurons.runs import control


def test_the_members_of_a_control_are_untrained_stand_ins_other_sources_stay():
    prof = load_profile("smoke", "analysis.untrained=true")
    trained = load_profile("smoke").members()
    assert prof.members(trained=True) == trained
    assert prof.members() == [str(prof.root / "untrained" / Path(m).name) for m in trained]
    assert prof.root != load_profile("smoke").root and prof.data_dir == load_profile("smoke").data_dir
    other = "/somewhere/untrained-seed-12345"  # the universality chapter's own control partner is kept as given
    assert prof.members(partners=[other]) == [prof.members()[0], other]


@pytest.mark.usefixtures("one_thread")
def test_untrained_members_are_fresh_models_of_the_members_shapes(smoke_zoo, smoke_data):
    from transformers import AutoModelForCausalLM

    prof = load_profile("smoke", "analysis.untrained=true")
    paths = control.untrained_members(prof)
    assert [str(p) for p in paths] == prof.members()
    rows = torch.from_numpy(np.asarray(smoke_data[1].tokens[:8], dtype=np.int64))
    losses = []
    for src, path in zip(prof.members(trained=True), paths):
        a, b = (json.loads((Path(x) / "config.json").read_text()) for x in (src, path))
        assert {k: a[k] for k in ("n_layer", "n_embd", "n_inner", "vocab_size")} == \
            {k: b[k] for k in ("n_layer", "n_embd", "n_inner", "vocab_size")}
        assert (Path(src) / "tokenizer.json").read_text() == (Path(path) / "tokenizer.json").read_text()
        with torch.no_grad():
            losses.append([float(AutoModelForCausalLM.from_pretrained(x)(rows, labels=rows).loss) for x in (src, path)])
    vocab = json.loads((Path(paths[0]) / "config.json").read_text())["vocab_size"]
    for trained_loss, untrained_loss in losses:
        assert abs(untrained_loss - math.log(vocab)) < 0.1 * math.log(vocab)  # near uniform
        assert untrained_loss > trained_loss + 1.0
    # each member has its own initialisation
    w = [AutoModelForCausalLM.from_pretrained(p).transformer.h[0].mlp.c_fc.weight for p in paths]
    assert not torch.equal(w[0], w[1])
    assert control.untrained_members(prof) == paths  # saved once
