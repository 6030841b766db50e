"""LoRA — low-rank additive adaptation (Hu et al. 2021, arXiv 2106.09685), the additive baseline.

    W' = W + s · B A,        A ∈ R^{r×in},  B ∈ R^{out×r},  s = α / r   (α / √r with ``rslora``)

``A`` starts Kaiming-uniform and ``B`` at zero (peft's default), so W' = W at initialization. Adapter parameters are
float32 on a half-precision base (activations are cast to them and the update back, as peft). The forward never forms
W': ``y = base(x) + s · (dropout(x) Aᵀ) Bᵀ``. Embeddings (``A ∈ R^{r×vocab}`` looked up, ``B ∈ R^{dim×r}``; A zero and
B normal at init, as peft) and Conv2d (``A`` a conv with the base kernel, ``B`` a 1×1 conv) are supported too.

The layers take an optional per-rank gate ``g`` (ΔW = s · B diag(g) A) so SoRA (``sora.py``) reuses them; a LoRA
layer has no gate. Parameter names start with the layer's prefix (``lora_A``, ``lora_B``; ``sora_A``, … for SoRA).

    >>> from torch import nn
    >>> from orthoscope.adapters import attach
    >>> model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    >>> model = attach(model, LoRAConfig(rank=2, targets=["0"]))
    >>> [n for n, p in model.named_parameters() if p.requires_grad]
    ['0.lora_A', '0.lora_B']
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..methods.base import check_positive
from .oft import adapter_dtype
from .registry import AdaptedLayer, AdapterConfig, AdapterMethod, register_adapter

__all__ = ["LoRAConfig", "LoRA", "LoRALinear", "LoRAConv1D", "LoRAEmbedding", "LoRAConv2d", "check_rank"]


def check_rank(rank) -> None:
    if isinstance(rank, bool) or not isinstance(rank, int) or rank <= 0:
        raise ValueError(f"rank must be a positive integer, got {rank!r}")


class _LowRank(AdaptedLayer):
    """Shared math: ΔW = s · B diag(g) A in the base layout; subclasses give shapes, init and the forward."""

    def __init__(self, base_layer: nn.Module, config, path: str = ""):
        super().__init__(base_layer, path)
        check_rank(config.rank)
        self.prefix = config.prefix
        self.rank = config.rank
        self.scaling = config.alpha / (math.sqrt(config.rank) if config.rslora else config.rank)
        self.dropout = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()
        a_shape, b_shape = self._shapes()
        kw = dict(dtype=adapter_dtype(base_layer.weight), device=base_layer.weight.device)
        self.register_parameter(self.prefix + "A", nn.Parameter(torch.empty(a_shape, **kw)))
        self.register_parameter(self.prefix + "B", nn.Parameter(torch.empty(b_shape, **kw)))
        if config.gated:
            self.register_parameter(self.prefix + "gate", nn.Parameter(torch.ones(self.rank, **kw)))
        self.reset_parameters()

    @property
    def A(self) -> torch.Tensor:
        return getattr(self, self.prefix + "A")

    @property
    def B(self) -> torch.Tensor:
        return getattr(self, self.prefix + "B")

    @property
    def gate(self) -> torch.Tensor | None:
        return getattr(self, self.prefix + "gate", None)

    def _shapes(self):
        raise NotImplementedError

    def reset_parameters(self) -> None:
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))     # peft's default LoRA init: A random, B zero
        nn.init.zeros_(self.B)

    def _delta_matrix(self, dtype=None) -> torch.Tensor:
        """s · B diag(g) A as a 2-D matrix [B rows, A columns] (A, B flattened to matrices)."""
        a, b = self.A.reshape(self.rank, -1), self.B.reshape(-1, self.rank)
        if self.gate is not None:
            a = self.gate[:, None] * a
        if dtype is not None:
            a, b = a.to(dtype), b.to(dtype)
        return self.scaling * (b @ a)

    def delta_weight(self, dtype=None) -> torch.Tensor:
        """ΔW in the base weight's layout."""
        return self._delta_matrix(dtype).reshape(self.base_weight().shape)

    def _merged_weight(self, w):
        return w + self.delta_weight(w.dtype)

    def _unmerged_weight(self, w):
        return w - self.delta_weight(w.dtype)

    def _gated(self, h: torch.Tensor, dim: int = -1) -> torch.Tensor:
        if self.gate is None:
            return h
        shape = [1] * h.dim()
        shape[dim] = self.rank
        return h * self.gate.view(shape)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, rank={self.rank}, scaling={self.scaling:.4g}"


class LoRALinear(_LowRank):
    def _shapes(self):
        return (self.rank, self.in_features), (self.out_features, self.rank)

    def adapted_forward(self, x):
        y = self.base_layer(x)
        h = self._gated(F.linear(self.dropout(x).to(self.A.dtype), self.A))  # [..., r]
        return y + (self.scaling * F.linear(h, self.B)).to(y.dtype)


class LoRAConv1D(LoRALinear):
    """LoRA on ``transformers``' Conv1D (``W[in, out]``, peft's ``fan_in_fan_out``): same forward, ΔW = s·(B A)ᵀ."""

    fan_in_fan_out = True

    def delta_weight(self, dtype=None):
        return self._delta_matrix(dtype).T


class LoRAEmbedding(_LowRank):
    """ΔE = s · (B diag(g) A)ᵀ with A ∈ R^{r×vocab}, B ∈ R^{dim×r}: row i of E gains s · B diag(g) A[:, i]."""

    def _shapes(self):
        return (self.rank, self.base_layer.num_embeddings), (self.base_layer.embedding_dim, self.rank)

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.A)                                # peft: embedding A zero, B normal
        nn.init.normal_(self.B)

    def delta_weight(self, dtype=None):
        return self._delta_matrix(dtype).T

    def adapted_forward(self, x):
        y = self.base_layer(x)
        h = self._gated(F.embedding(x, self.A.T, padding_idx=self.base_layer.padding_idx))   # [..., r]
        return y + (self.scaling * F.linear(h, self.B)).to(y.dtype)


class LoRAConv2d(_LowRank):
    """A is a conv with the base layer's kernel, stride, padding and dilation; B a 1×1 conv (groups = 1 only)."""

    def _shapes(self):
        conv = self.base_layer
        if conv.groups != 1:
            raise ValueError(f"LoRA on Conv2d {self.path!r}: groups={conv.groups} is not supported (only groups=1)")
        return (self.rank, conv.in_channels, *conv.kernel_size), (conv.out_channels, self.rank, 1, 1)

    def adapted_forward(self, x):
        y = self.base_layer(x)
        h = self._gated(self.base_layer._conv_forward(self.dropout(x).to(self.A.dtype), self.A, None), dim=1)
        return y + (self.scaling * F.conv2d(h, self.B)).to(y.dtype)                # h: [N, r, H', W']


@register_adapter
@dataclass
class LoRAConfig(AdapterConfig):
    """LoRA on Linear, Conv1D (transformers), Embedding and Conv2d modules."""

    rank: int = field(default=8, metadata={"help": "rank r of ΔW = s·B A (a positive integer)"})
    alpha: float = field(default=8.0, metadata={"help": "scale numerator: s = alpha / rank (alpha / √rank with "
                                                        "rslora); alpha = rank gives s = 1"})
    dropout: float = field(default=0.0, metadata={"help": "dropout on the input of the low-rank path (Linear, "
                                                          "Conv2d)"})
    rslora: bool = field(default=False, metadata={"help": "rank-stabilized scaling s = alpha / √rank"})

    adapter_name: ClassVar[str] = "lora"
    prefix: ClassVar[str] = "lora_"
    gated: ClassVar[bool] = False
    layers: ClassVar[dict] = {nn.Linear: LoRALinear, nn.Embedding: LoRAEmbedding, nn.Conv2d: LoRAConv2d}
    conv1d_layer: ClassVar[type] = LoRAConv1D

    def __post_init__(self):
        super().__post_init__()
        check_rank(self.rank)
        check_positive("alpha", self.alpha)
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout!r}")


@dataclass
class LoRA(AdapterMethod, LoRAConfig):
    """Method: attach LoRA to ``targets`` and train its parameters with AdamW.

    >>> method = LoRA(rank=4, alpha=8, targets=["q_proj", "v_proj"], lr=1e-3)
    """

