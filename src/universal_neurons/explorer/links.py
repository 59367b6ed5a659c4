"""Which neurons get an explorer page, and the links to them: the compared group of the reference, a seeded
contrast sample, their twins in the other members and the neurons the chapters discuss. Chapters link their tables
here (`links`) without loading a model."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from ..config.profile import name_of
from ..runs import neuron_tables
from ..runs.neuron_tables import twin
from ..runs.selection import compared_group
from .pages import page_path

N_CONTRAST = 10  # non-compared neurons of the reference with a page, for contrast
PAIR = re.compile(r"L(\d+)\.(\d+) →")  # an attention pair "L0.90 → L1.H1": its neuron


def discussed(prof) -> dict[str, dict[tuple[int, int], str]]:
    """Per member: the neurons the entropy and attention chapters discuss, read from the tables those chapters
    write in the run folder (tables/entropy_runs.csv: the entropy and anti-entropy candidates, not the random
    neurons; tables/attention_ablations.csv: the neurons of the ablated pairs), each with where it is discussed.
    Empty when the chapters have not run."""
    out: dict[str, dict[tuple[int, int], str]] = {}
    folder = Path(prof.tables_dir)

    def add(model, layer, neuron, what):
        seen = out.setdefault(str(model), {})
        key = (int(layer), int(neuron))
        seen[key] = f"{seen[key]}; {what}" if key in seen and what not in seen[key] else seen.get(key, what)

    try:
        runs = pd.read_csv(folder / "entropy_runs.csv", usecols=["model", "role", "layer", "neuron"])
    except (OSError, ValueError):
        runs = None
    if runs is not None:
        for (m, role, l, n), _ in runs.groupby(["model", "role", "layer", "neuron"], sort=False):
            if not str(role).startswith("random"):
                add(m, l, n, f"entropy chapter: {role}")
    try:
        pairs = pd.read_csv(folder / "attention_ablations.csv", usecols=["model", "pair"]).drop_duplicates()
    except (OSError, ValueError):
        pairs = None
    if pairs is not None:
        for m, pair in pairs.itertuples(index=False):
            if (hit := PAIR.match(str(pair))) is not None:
                add(m, hit[1], hit[2], f"attention chapter: {pair}")
    return out


def neuron_id(layer: int, neuron: int) -> str:
    """The id chapter tables print: L<layer>.<neuron>."""
    return f"L{int(layer)}.{int(neuron)}"


def selection(prof) -> dict[str, list[tuple[int, int, str]]]:
    """Per member name (reference first): its neurons with a page, (layer, neuron, role) with role "universal"
    (the compared group's universal neurons) or "top" (the top by excess standing in when too few are universal, as
    the chapters compare), "contrast", "twin" or "discussed" (a neuron the entropy or attention chapter discusses,
    `discussed`, that has no page otherwise)."""
    res = neuron_tables.load_results(prof)
    live = res.neurons[~res.neurons["is_dead"].astype(bool)].reset_index(drop=True)
    group = compared_group(prof, live)
    names = [name_of(s) for s in prof.members()]
    chosen = [(int(l), int(n)) for l, n in zip(live.loc[group.mask, "layer"], live.loc[group.mask, "neuron"])]
    rest = live.loc[~group.mask, ["layer", "neuron"]].to_numpy()
    pick = np.random.default_rng(0).choice(len(rest), size=min(N_CONTRAST, len(rest)), replace=False)
    role = "universal" if group.is_universal else "top"
    out = {names[0]: [(l, n, role) for l, n in chosen] +
           [(int(rest[i][0]), int(rest[i][1]), "contrast") for i in sorted(pick)]}
    for k, m in enumerate(names[1:], 1):
        twins = dict.fromkeys(twin(res.neurons, l, n, k)[:2] for l, n in chosen)  # ordered, distinct
        out[m] = [(l, n, "twin") for l, n in twins]
    for m, neurons in discussed(prof).items():
        if m in out:
            have = {(l, n) for l, n, _ in out[m]}
            out[m] += [(l, n, "discussed") for l, n in neurons if (l, n) not in have]
    return out


def page_href(prof, model: str, layer: int, neuron: int, depth: int = 2) -> str:
    """The relative link from a book page `depth` folders below the site root (book/generated/: 2) to a neuron's
    explorer page."""
    return "../" * depth + f"neurons/{prof.run_name}/" + page_path(model, layer, neuron)


def links(prof, model: str | None = None) -> dict[str, str]:
    """{"L<l>.<n>": href} of the member's neurons with a page (default: the reference), for chapter tables."""
    sel = selection(prof)
    model = model or next(iter(sel))
    return {neuron_id(l, n): page_href(prof, model, l, n) for l, n, _ in sel.get(model, [])}


