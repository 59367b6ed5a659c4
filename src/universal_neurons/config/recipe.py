"""Which zoo a profile means: the shipped zoo's manifest, read, and whether a profile still has its recipe."""

from __future__ import annotations

import json
from pathlib import Path

from ..core.errors import UserError
from ..core.paths import shown

MANIFEST = "manifest.json"
RECIPE = ("corpus", "tokenizer", "model", "train")  # the profile sections a shipped zoo was trained with

def read_manifest(zoo_dir: Path) -> dict:
    path = Path(zoo_dir) / MANIFEST
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except ValueError:
        raise UserError(f"{shown(path)} is not valid JSON; restore it with `git checkout -- {shown(path)}`") from None


# ---- which zoo a profile means -----------------------------------------------------------------------------
def _recipe_key(recipe: dict) -> str:
    r = json.loads(json.dumps(recipe))  # the manifest's JSON types
    r.get("train", {}).pop("seeds", None)
    return json.dumps(r, sort_keys=True)


def describes_shipped(profile, sections=RECIPE) -> bool:
    """True if the profile (with its overrides) has the shipped zoo's recipe in these sections, or the zoo
    is not trained yet; an override (other tokens, tokenizer, width, ...) means a zoo trained here instead.
    `sections=("corpus", "tokenizer")`: whether the shipped tokenizer is the profile's."""
    if profile.shipped_dir is None:
        return False
    man = read_manifest(profile.shipped_dir)
    if not man:
        return True
    return (_recipe_key({k: man["recipe"][k] for k in sections})
            == _recipe_key({k: profile.cfg[k] for k in sections}))


def _flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in tree.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def recipe_differences(profile) -> list[str]:
    """`key=value (shipped: value)` for every recipe key (seeds aside) where the profile, with its overrides,
    differs from its shipped zoo's manifest; empty without a `shipped:` folder or manifest, or when it matches."""
    man = read_manifest(profile.shipped_dir) if profile.shipped_dir is not None else {}
    if not man or describes_shipped(profile):
        return []
    mine = _flat(json.loads(json.dumps({k: profile.cfg.get(k, {}) for k in RECIPE})))
    theirs = _flat({k: man["recipe"].get(k, {}) for k in RECIPE})
    keys = [k for k in dict.fromkeys([*mine, *theirs]) if k != "train.seeds" and mine.get(k) != theirs.get(k)]
    return [f"{k}={mine.get(k, '(unset)')} (shipped: {theirs.get(k, '(unset)')})" for k in keys]


def recipe_note(profile) -> str | None:
    """One line for `universal-neurons zoo` when a profile with a `shipped:` zoo no longer has its recipe (an
    override of corpus, tokenizer, model or train): what differs, and that its zoo is trained here instead."""
    diff = recipe_differences(profile)
    if not diff:
        return None
    return (f"note: profile {profile.name!r} differs from the shipped zoo {shown(profile.shipped_dir)} in "
            f"{', '.join(diff)}: its {len(profile.seeds)} seed(s) are trained here into {shown(profile.trained_dir)} "
            f"({profile.cfg['train']['tokens']:,} tokens each), not read from the shipped zoo; drop those overrides "
            "to use it")


