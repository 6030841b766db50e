"""MLP, optionally with token embeddings in front (for modular arithmetic: ``[a, b]`` → concat(E[a], E[b]) → MLP).

Layers are named ``embed``, ``layers.0``, ``layers.1``, … so probes and adapters can target them by path.
"""
from __future__ import annotations

import torch
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh}


class MLP(nn.Module):
    """``MLP(d_in, hidden, d_out)`` for vector inputs, or ``MLP(vocab_size=V, n_tokens=T, d_embed=E, ...)`` for
    token inputs ``[B, T]`` (then ``d_in`` is ignored and equals ``T·E``).

    ``init_scale`` multiplies every parameter after the default init (Omnigrok's α).
    """

    def __init__(self, d_in: int | None = None, hidden: tuple[int, ...] | list[int] = (256,), d_out: int = 10, *,
                 vocab_size: int | None = None, n_tokens: int | None = None, d_embed: int = 64,
                 activation: str = "relu", init_scale: float = 1.0, bias: bool = True):
        super().__init__()
        # The constructor's arguments, so a run config can rebuild this model (orthoscope.config).
        self.arguments = dict(d_in=d_in, hidden=list(hidden) if isinstance(hidden, (tuple, list)) else hidden,
                              d_out=d_out, vocab_size=vocab_size, n_tokens=n_tokens, d_embed=d_embed,
                              activation=activation, init_scale=init_scale, bias=bias)
        if not isinstance(hidden, (tuple, list)):
            raise TypeError(f"hidden must be a tuple of layer widths, e.g. (128,) or (256, 256); got {hidden!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        if vocab_size is not None:
            from ..core.validate import check_number

            check_number("vocab_size", vocab_size, low=1, integer=True)
            if not n_tokens or n_tokens <= 0:
                raise ValueError("token inputs need n_tokens > 0 together with vocab_size")
            self.embed = nn.Embedding(vocab_size, d_embed)
            d_in = n_tokens * d_embed
        else:
            self.embed = None
        if d_in is None or d_in <= 0:
            raise ValueError(f"d_in must be a positive int (or give vocab_size/n_tokens), got {d_in!r}")
        sizes = [d_in, *hidden, d_out]
        if any((not isinstance(s, int)) or s <= 0 for s in sizes):
            raise ValueError(f"layer sizes must be positive ints, got {sizes}")
        self.layers = nn.ModuleList(nn.Linear(a, b, bias=bias) for a, b in zip(sizes[:-1], sizes[1:]))
        self.act = ACTIVATIONS[activation]()
        if init_scale != 1.0:
            with torch.no_grad():
                for p in self.parameters():
                    p.mul_(init_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.embed is not None:
            x = self.embed(x).flatten(1)                 # (B, T·E)
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = self.act(x)
        return x
