"""Models: MLP and TinyTransformer shapes, module names, tied unembedding, attention rate, causality, bad configs."""
import pytest
import torch
import torch.nn.functional as F

from orthoscope.models import MLP, TinyTransformer, TransformerConfig


def tiny(**kw):
    torch.manual_seed(0)
    cfg = dict(vocab_size=11, n_ctx=4, d_model=16, n_heads=2, d_mlp=32)
    cfg.update(kw)
    return TinyTransformer(**cfg)


def test_mlp_vector_and_token_inputs():
    torch.manual_seed(0)
    m = MLP(d_in=5, hidden=(7, 6), d_out=3)
    assert m(torch.randn(4, 5)).shape == (4, 3)
    assert [n for n, _ in m.named_modules() if n.startswith("layers.")] == ["layers.0", "layers.1", "layers.2"]
    tok = MLP(vocab_size=10, n_tokens=3, d_embed=4, hidden=(8,), d_out=10)
    x = torch.randint(0, 10, (6, 3))
    out = tok(x)
    assert out.shape == (6, 10) and tok.layers[0].in_features == 12
    # the embedding of [a, b, c] is concatenated in token order
    h = torch.cat([tok.embed.weight[x[:, i]] for i in range(3)], 1)
    assert torch.allclose(out, tok.layers[1](torch.relu(tok.layers[0](h))))


def test_mlp_init_scale_multiplies_every_parameter():
    torch.manual_seed(0)
    a = MLP(d_in=3, hidden=(4,), d_out=2)
    torch.manual_seed(0)
    b = MLP(d_in=3, hidden=(4,), d_out=2, init_scale=3.0)
    assert all(torch.allclose(3.0 * p, q) for p, q in zip(a.parameters(), b.parameters()))


@pytest.mark.parametrize("kwargs, message", [
    (dict(d_in=3, activation="swish"), "activation must be one of"),
    (dict(d_in=None), "d_in must be a positive int"),
    (dict(d_in=3, hidden=(0,)), r"layer sizes must be positive ints, got \[3, 0, 10\]"),
    (dict(vocab_size=5), "token inputs need n_tokens > 0"),
])
def test_mlp_bad_configs(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MLP(**kwargs)


def test_mlp_hidden_must_be_a_sequence():
    with pytest.raises(TypeError, match=r"hidden must be a tuple of layer widths, e.g. \(128,\).*got 128"):
        MLP(d_in=3, hidden=128)
    assert MLP(d_in=3, hidden=[4, 5], d_out=2)(torch.zeros(1, 3)).shape == (1, 2)


def test_transformer_shapes_and_llama_style_names():
    model = tiny(n_layers=2)
    x = torch.randint(0, 11, (5, 4))
    assert model(x).shape == (5, 11)
    assert tiny(readout="all")(x).shape == (5, 4, 11)
    assert tiny(n_out=3)(x).shape == (5, 3)
    names = {n for n, _ in model.named_modules()}
    for path in ("blocks.1.attn.q_proj", "blocks.1.attn.k_proj", "blocks.1.attn.v_proj", "blocks.1.attn.o_proj",
                 "blocks.1.mlp.up", "blocks.1.mlp.down", "embed", "pos_embed", "unembed"):
        assert path in names


def test_tied_unembedding_shares_the_embedding():
    tied, untied = tiny(tied=True), tiny(tied=False)
    assert tied.unembed is None and untied.unembed is not None
    n_params = lambda m: sum(p.numel() for p in m.parameters())
    assert n_params(untied) - n_params(tied) == 11 * 16
    x = torch.randint(0, 11, (3, 4))
    feats = {}
    tied.ln_f.register_forward_hook(lambda mod, inp, out: feats.setdefault("h", out))
    logits = tied(x)
    assert torch.allclose(logits, feats["h"][:, -1] @ tied.embed.weight.T, atol=1e-6)
    logits.sum().backward()
    assert tied.embed.weight.grad is not None


def test_causal_attention_ignores_later_tokens():
    model = tiny(readout="all")
    x = torch.randint(0, 11, (2, 4))
    y = x.clone()
    y[:, -1] = (y[:, -1] + 1) % 11
    a, b = model(x), model(y)
    assert torch.allclose(a[:, :3], b[:, :3], atol=1e-6) and not torch.allclose(a[:, 3], b[:, 3])
    bidirectional = tiny(readout="all", causal=False)
    assert not torch.allclose(bidirectional(x)[:, 0], bidirectional(y)[:, 0])


def test_attention_rate_mixes_softmax_with_uniform():
    torch.manual_seed(1)
    x = torch.randn(2, 4, 16)
    outs = {}
    for rate in (0.0, 0.3, 1.0):
        model = tiny(attn_rate=rate)
        outs[rate] = model.blocks[0].attn(x)
    attn = tiny(attn_rate=0.0).blocks[0].attn
    # α = 0: position t attends uniformly to positions ≤ t, so y_t = o_proj(mean_{s≤t} v_s)
    v = attn.v_proj(x)
    mean_v = v.cumsum(1) / torch.arange(1, 5).view(1, 4, 1)
    assert torch.allclose(outs[0.0], attn.o_proj(mean_v), atol=1e-5)
    # the output is linear in the pattern, so α = 0.3 is the same mix of the two extremes
    assert torch.allclose(outs[0.3], 0.3 * outs[1.0] + 0.7 * outs[0.0], atol=1e-5)


def test_transformer_attention_matches_torch_sdpa():
    model = tiny()
    attn = model.blocks[0].attn
    x = torch.randn(3, 4, 16)
    B, T, D, H = 3, 4, 16, 2
    q, k, v = (p(x).view(B, T, H, D // H).transpose(1, 2) for p in (attn.q_proj, attn.k_proj, attn.v_proj))
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, D)
    assert torch.allclose(attn(x), attn.o_proj(ref), atol=1e-5)


@pytest.mark.parametrize("kwargs, message", [
    (dict(d_model=10, n_heads=4), "d_model=10 must be divisible by n_heads=4"),
    (dict(attn_rate=1.5), r"attn_rate must lie in \[0, 1\], got 1.5"),
    (dict(readout="mean"), "readout must be 'last' or 'all'"),
    (dict(tied=True, n_out=3), "tied unembedding needs n_out == vocab_size"),
    (dict(activation="tanh"), "activation must be 'relu' or 'gelu'"),
    (dict(n_layers=0), "n_layers must be positive, got 0"),
    (dict(n_heads=0), "n_heads must be positive, got 0"),
])
def test_transformer_bad_configs(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TransformerConfig(**kwargs)


def test_transformer_input_checks():
    with pytest.raises(ValueError, match="sequence length 5 exceeds n_ctx=4"):
        tiny()(torch.zeros(1, 5, dtype=torch.long))
    with pytest.raises(TypeError, match="either a TransformerConfig or keyword arguments"):
        TinyTransformer(TransformerConfig(), d_model=8)
