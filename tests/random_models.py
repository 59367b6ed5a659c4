"""The small random HookedTransformer that the unit tests of entropy, attention and the explorer share."""

from transformer_lens import HookedTransformer, HookedTransformerConfig


def random_model(n_layers: int = 2, processed: bool = True, seed: int = 0) -> HookedTransformer:
    """GPT-2-like (LayerNorm, gelu_new), d_model 32, 4 heads of 8, d_mlp 64, vocabulary 50, context 16, in eval
    mode; `processed`: LayerNorm folded, writing weights and unembedding centred, as `load_model` does."""
    cfg = HookedTransformerConfig(n_layers=n_layers, d_model=32, d_head=8, n_heads=4, d_mlp=64, d_vocab=50, n_ctx=16,
                                  act_fn="gelu_new", normalization_type="LN", seed=seed)
    m = HookedTransformer(cfg)
    if processed:
        m.process_weights_(fold_ln=True, center_writing_weights=True, center_unembed=True)
    return m.eval()
