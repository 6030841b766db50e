"""The textbook FLOP count of training a Llama: 6·N·D plus the attention term (Kaplan et al. 2020; PaLM, App. B).

One token through one forward pass costs 2 FLOPs per weight of every matrix it is multiplied by (a multiply and an
add), so 2·N for the N weights of the linear layers (attention projections, MLP, the LM head — embedding lookups are
gathers, not FLOPs). The backward pass costs twice the forward (one product for the gradient of the input, one for
the gradient of the weight), so a training step costs

    6 · N · B·T  +  12 · L · T · d · B·T

where the second term is attention itself: per layer and token, Q·Kᵀ and (softmax)·V are two products over the T
positions of the window with head dimension × heads = d, 2·2·T·d forward, times 3 for training. It counts the full
T×T score matrix, as ``FlopCounterMode`` does for a causal mask too (a kernel that skips the masked half does half
that work; MFU conventions differ on this, PaLM counts it whole).

What ``Run`` measures is ``torch.utils.flop_counter.FlopCounterMode`` (``orthoscope.training.throughput``), which
charges a fused attention's backward five products, not four: the flash/memory-efficient kernels recompute Q·Kᵀ
rather than keep the T×T scores. ``recomputed_scores=True`` adds that 2·L·T·d·B·T; tests/test_throughput.py checks
that the two agree exactly on a Llama (matmuls 6·N·B·T, attention 14·L·T·d·B·T).
"""
from __future__ import annotations


def llama_matmul_params(config) -> int:
    """N: the weights of a ``LlamaConfig``'s linear layers (q, k, v, o, gate, up, down per layer, and the LM head)."""
    d, ff, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    head_dim = getattr(config, "head_dim", None) or d // config.num_attention_heads
    q = o = d * config.num_attention_heads * head_dim
    kv = 2 * d * config.num_key_value_heads * head_dim
    return layers * (q + kv + o + 3 * d * ff) + d * config.vocab_size


def llama_train_flops(config, batch: int, seq_len: int, recomputed_scores: bool = False) -> int:
    """FLOPs of one training step (forward + backward) of a ``LlamaConfig`` on ``batch`` windows of ``seq_len``
    tokens (module docstring): ``6·N·B·T + 12·L·T·(heads·head_dim)·B·T``, with 14 instead of 12 when the
    attention backward recomputes the scores (``recomputed_scores``: what ``FlopCounterMode`` charges)."""
    tokens = batch * seq_len
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    per_token = 14 if recomputed_scores else 12
    attention = per_token * config.num_hidden_layers * seq_len * config.num_attention_heads * head_dim * tokens
    return 6 * llama_matmul_params(config) * tokens + attention
