"""A GPT-style transformer small enough for a CPU: pre-LayerNorm blocks, causal self-attention, ReLU/GELU MLP.

Module names follow Llama (``attn.q_proj, k_proj, v_proj, o_proj``, ``mlp.up, mlp.down``) so the same adapter
rules work on it and on a Hugging Face ``LlamaForCausalLM``.

``attn_rate`` α interpolates attention with a constant (uniform) attention, as in Clock & Pizza:
``A = α·softmax(QKᵀ/√d) + (1 − α)·uniform``; α = 1 is the standard transformer.
``readout="last"`` returns logits of the last position ``[B, V]`` (classification tasks such as modular
arithmetic); ``"all"`` returns ``[B, T, V]`` (language modelling).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class TransformerConfig:
    vocab_size: int = field(default=97, metadata={"help": "input vocabulary size"})
    n_ctx: int = field(default=3, metadata={"help": "maximum sequence length"})
    d_model: int = field(default=128, metadata={"help": "residual width"})
    n_heads: int = field(default=4, metadata={"help": "attention heads (d_model must be divisible)"})
    n_layers: int = field(default=1, metadata={"help": "number of blocks"})
    d_mlp: int = field(default=512, metadata={"help": "MLP hidden width"})
    n_out: int | None = field(default=None, metadata={"help": "output classes (default: vocab_size)"})
    tied: bool = field(default=False, metadata={"help": "unembedding tied to the token embedding"})
    layer_norm: bool = field(default=True, metadata={"help": "pre-LayerNorm blocks (False: none, as in Nanda)"})
    causal: bool = field(default=True, metadata={"help": "causal attention mask"})
    attn_rate: float = field(default=1.0, metadata={"help": "α in [0,1]: α·softmax + (1−α)·uniform attention"})
    activation: str = field(default="relu", metadata={"help": "relu or gelu"})
    readout: str = field(default="last", metadata={"help": "'last' → [B, V] logits, 'all' → [B, T, V]"})
    dropout: float = field(default=0.0, metadata={"help": "dropout on attention output and MLP output"})

    def __post_init__(self):
        if self.n_out is None:
            self.n_out = self.vocab_size
        for name in ("vocab_size", "n_ctx", "d_model", "n_heads", "n_layers", "d_mlp", "n_out"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} must be divisible by n_heads={self.n_heads}")
        if not 0.0 <= self.attn_rate <= 1.0:
            raise ValueError(f"attn_rate must lie in [0, 1], got {self.attn_rate}")
        if self.readout not in ("last", "all"):
            raise ValueError(f"readout must be 'last' or 'all', got {self.readout!r}")
        if self.tied and self.n_out != self.vocab_size:
            raise ValueError("tied unembedding needs n_out == vocab_size")
        if self.activation not in ("relu", "gelu"):
            raise ValueError(f"activation must be 'relu' or 'gelu', got {self.activation!r}")


class Attention(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.cfg = cfg
        self.q_proj = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.k_proj = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.v_proj = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.o_proj = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        H = self.cfg.n_heads
        q, k, v = (proj(x).view(B, T, H, D // H).transpose(1, 2) for proj in (self.q_proj, self.k_proj, self.v_proj))
        scores = q @ k.transpose(-1, -2) / math.sqrt(D // H)                    # (B, H, T, T)
        allowed = torch.ones(T, T, dtype=torch.bool, device=x.device)
        if self.cfg.causal:
            allowed = allowed.tril()
        pattern = scores.masked_fill(~allowed, float("-inf")).softmax(-1)
        if self.cfg.attn_rate < 1.0:                                            # Clock & Pizza attention rate
            uniform = allowed.float() / allowed.sum(-1, keepdim=True)
            pattern = self.cfg.attn_rate * pattern + (1.0 - self.cfg.attn_rate) * uniform
        y = (pattern @ v).transpose(1, 2).reshape(B, T, D)                     # (B, T, D)
        return self.drop(self.o_proj(y))


class FeedForward(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.up = nn.Linear(cfg.d_model, cfg.d_mlp)
        self.down = nn.Linear(cfg.d_mlp, cfg.d_model)
        self.act = nn.ReLU() if cfg.activation == "relu" else nn.GELU()
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x):
        return self.drop(self.down(self.act(self.up(x))))


class Block(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model) if cfg.layer_norm else nn.Identity()
        self.attn = Attention(cfg)
        self.ln2 = nn.LayerNorm(cfg.d_model) if cfg.layer_norm else nn.Identity()
        self.mlp = FeedForward(cfg)

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class TinyTransformer(nn.Module):
    """``TinyTransformer(TransformerConfig(...))`` or ``TinyTransformer(vocab_size=..., n_ctx=..., ...)``."""

    def __init__(self, cfg: TransformerConfig | None = None, **kwargs):
        super().__init__()
        if cfg is None:
            cfg = TransformerConfig(**kwargs)
        elif kwargs:
            raise TypeError("pass either a TransformerConfig or keyword arguments, not both")
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos_embed = nn.Embedding(cfg.n_ctx, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(cfg.d_model) if cfg.layer_norm else nn.Identity()
        self.unembed = None if cfg.tied else nn.Linear(cfg.d_model, cfg.n_out, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        B, T = tokens.shape
        if T > self.cfg.n_ctx:
            raise ValueError(f"sequence length {T} exceeds n_ctx={self.cfg.n_ctx}")
        x = self.embed(tokens) + self.pos_embed(torch.arange(T, device=tokens.device))   # (B, T, D)
        for block in self.blocks:
            x = block(x)
        x = self.ln_f(x)
        if self.cfg.readout == "last":
            x = x[:, -1]
        return F.linear(x, self.embed.weight) if self.unembed is None else self.unembed(x)


def tiny_lm(task, d_model: int = 64, n_heads: int = 4, n_layers: int = 2, d_mlp: int = 256,
            seed: int = 0):
    """The causal ``TinyTransformer`` sized for ``task`` (a ``TinyLang``: its ``vocab_size`` and ``n_ctx``;
    ``readout="all"``), initialized from ``seed`` — the model the optimizer comparison notebook and
    ``benchmarks/bench_optimizers.py`` train."""
    torch.manual_seed(seed)
    return TinyTransformer(vocab_size=task.vocab_size, n_ctx=task.n_ctx, d_model=d_model, n_heads=n_heads,
                           n_layers=n_layers, d_mlp=d_mlp, readout="all", causal=True)
