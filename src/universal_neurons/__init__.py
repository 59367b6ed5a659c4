"""Universal Neurons companion: corpus, tokenizer, zoo, loader and the paper's analyses."""

import warnings

from .config.profile import Profile, load_profile
from .core.errors import UserError

# tqdm.auto (imported by TransformerLens) warns in notebooks without ipywidgets; the book has no widgets.
warnings.filterwarnings("ignore", message="IProgress not found")


def load_model(source, device: str = "cpu", revision: str | None = None, tokenizer=None):
    """Load a zoo folder, local HF checkpoint, hub id or TransformerLens alias (see `loading.load_model`)."""
    from .models.loading import load_model as _load

    return _load(source, device=device, revision=revision, tokenizer=tokenizer)


__all__ = ["Profile", "UserError", "load_model", "load_profile"]
