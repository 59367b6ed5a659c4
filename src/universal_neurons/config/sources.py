"""Where a model source's files are: a local folder, a hub id or a TransformerLens alias, resolved to a folder
holding config.json (fetched only when online). Nothing heavy is imported until a name must be looked up."""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

from ..core.errors import UserError

STANFORD_REVISION = "checkpoint-400000"  # the Stanford CRFM repos' `main` moved during 2022


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")


def hub_id(source: str) -> str:
    """Map a TransformerLens alias (e.g. `stanford-gpt2-small-a`) to its hub id; other names pass through."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from transformer_lens.loading_from_pretrained import get_official_model_name
    try:
        return get_official_model_name(source)
    except ValueError:
        return source


HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")  # owner/name


def _known_name(source: str) -> bool:
    """True for a hub id (owner/name) or a name TransformerLens knows (gpt2, an alias such as gpt2-small)."""
    if HUB_ID.match(source):
        return True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from transformer_lens.loading_from_pretrained import OFFICIAL_MODEL_NAMES
    return source in OFFICIAL_MODEL_NAMES or hub_id(source) != source


def resolve_checkpoint(source, revision: str | None = None) -> Path:
    """A local folder holding config.json for `source` (a folder, a hub id or an alias); fetched if online."""
    path = Path(str(source)).expanduser()
    if (path / "config.json").is_file():
        return path
    looks_local = str(source).startswith((".", "/", "~")) or path.exists() or os.sep + "seed-" in str(source)
    if looks_local:
        raise UserError(f"no checkpoint at {path} (no config.json there); train the zoo with "
                        "`make zoo PROFILE=<name>` or pass a folder saved with save_pretrained")
    if not _known_name(str(source)):
        seed = re.fullmatch(r"seed-(\d+)", str(source))
        hint = (f"; a zoo's member is given by its seed, e.g. analysis.partners=[{seed[1]}]" if seed else
                "; give a folder saved with save_pretrained, or a hub id such as stanford-crfm/alias-gpt2-small-x21")
        raise UserError(f"model {str(source)!r} is neither a local folder (no config.json at {path.absolute()}) nor a "
                        f"hub id (owner/name){hint}")
    repo = hub_id(str(source))
    if revision is None and repo.startswith("stanford-crfm/"):
        revision = STANFORD_REVISION
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo, revision=revision, local_files_only=_offline(),
                                      allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model", "*.bin"]))
    except Exception as e:  # hub errors come in many classes; all mean the same to the user
        where = "the Hugging Face cache (HF_HUB_OFFLINE=1)" if _offline() else "the Hugging Face hub"
        raise UserError(f"model {source!r} (hub id {repo}, revision {revision or 'main'}) not found in {where}: "
                        f"{type(e).__name__}; fetch it on a machine online with `hf download {repo}"
                        f"{' --revision ' + revision if revision else ''}` or pass a local folder") from None


