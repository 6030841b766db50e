"""Small models whose every weight is an ``nn.Linear`` or ``nn.Embedding``, so probes and adapters reach them."""
from .mlp import MLP
from .transformer import TinyTransformer, TransformerConfig, tiny_lm

__all__ = ["MLP", "TinyTransformer", "TransformerConfig", "tiny_lm"]
