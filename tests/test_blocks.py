"""orthoscope.models.blocks: a model's repeated blocks, found by one rule."""
from torch import nn

from orthoscope.models import MLP, TinyTransformer
from orthoscope.models.blocks import repeated_blocks


def test_llama_decoder_layers_are_the_blocks():
    from orthoscope.models.llama import build_llama, llama_config

    model = build_llama(llama_config("tiny", vocab_size=32, n_ctx=16))
    names = [name for name, _ in repeated_blocks(model)]
    assert names == ["model.model.layers.0", "model.model.layers.1"]
    assert {type(b).__name__ for _, b in repeated_blocks(model)} == {"LlamaDecoderLayer"}


def test_a_block_is_not_searched_again_and_singletons_are_not_blocks():
    inner = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    model = nn.Sequential(nn.Embedding(4, 2), nn.ModuleList([nn.Sequential(inner), nn.Sequential(nn.Linear(2, 2))]))
    assert [name for name, _ in repeated_blocks(model)] == ["1.0", "1.1"]
    assert repeated_blocks(nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Embedding(3, 2))) == []


def test_small_models_have_blocks():
    transformer = TinyTransformer(vocab_size=11, n_ctx=8, n_layers=3)
    assert [name for name, _ in repeated_blocks(transformer)] == ["blocks.0", "blocks.1", "blocks.2"]
    assert [name for name, _ in repeated_blocks(MLP(4, (8, 8), 3))] == ["layers.0", "layers.1", "layers.2"]
