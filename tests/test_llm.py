"""The LLM recipe end to end on a tiny Llama (hidden 64, 2 layers, TinyLang's vocabulary): every method trains
through the same ``Run``, probes observe a sample of layers, the wrapper/task/config pieces behave, and the Triton
kernels (in the CPU interpreter, set before they are imported) train the model exactly as the torch twins do."""
import os

os.environ["TRITON_INTERPRET"] = "1"

import math  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

pytest.importorskip("transformers")

from orthoscope import Run  # noqa: E402
from orthoscope.recipes.llm import (METHODS, CausalLM, SyntheticTokens, TokenTask, build_llama, llama_config,  # noqa: E402
                            llm_method, llm_probes, sample_layers)
from orthoscope.tasks.tinylang import TinyLang  # noqa: E402


@pytest.fixture(scope="module")
def task():
    return TokenTask(TinyLang(n_ctx=16, batch_size=4, n_sentences=300), n_eval=8)


@pytest.fixture(scope="module")
def config(task):
    return llama_config("tiny", task.vocab_size, task.n_ctx)


def snapshot(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("name", METHODS)
def test_every_method_trains_a_tiny_llama(name, task, config):
    model = build_llama(config, seed=0)
    before = snapshot(model)
    run = Run(model, task, llm_method(name), probes=llm_probes(model, every=2), seed=0)
    run.train(3, progress=False)
    assert math.isfinite(run.last_loss) and run.step_count == 3
    assert len(run.history["loss/batch"].values) == 3
    keys = run.history.keys()
    assert "loss/val" in keys and "grad_norm/total" in keys
    spectra = [k for k in keys if k.startswith("sv_entropy/")]
    assert spectra and all(".layers.0." in k or ".layers.1." in k for k in spectra)
    changed = {n for n, p in run.model.named_parameters() if n not in before or not torch.equal(p, before[n])}
    assert changed, f"{name}: nothing trained"
    if name in ("lora", "oft"):                      # adapters: the base model is frozen
        assert all(n not in before for n in changed), sorted(changed)[:3]


def test_poet_memory_mode_equals_plain(task, config):
    losses = []
    for name in ("poet", "poet_mem"):
        run = Run(build_llama(config, seed=0), task, llm_method(name), probes=[], seed=0)
        run.train(3, progress=False)
        losses.append([v for v in run.history["loss/batch"].values])
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["oft", "poet_mem"])
def test_triton_kernels_train_the_llama_like_the_twins(name, config):
    """OFT (CNP + rotation) and POET memory mode (CNP + permuted rotations + recompute) on the real Llama: a step
    with every seam op on its Triton kernel gives the twins' loss and updated weights (2 windows of 8 tokens: the
    interpreter is slow)."""
    pytest.importorskip("triton")
    from orthoscope import kernels

    task = TokenTask(TinyLang(n_ctx=8, batch_size=2, n_sentences=200), n_eval=2)
    runs = {}
    for impl in ("torch", "triton"):
        with kernels.use(impl):
            runs[impl] = Run(build_llama(config, seed=0), task, llm_method(name, block=16), probes=[], seed=0)
            runs[impl].train(1, progress=False)
    assert runs["triton"].history["loss/batch"].values == pytest.approx(runs["torch"].history["loss/batch"].values,
                                                                         rel=1e-5)
    for (n, a), (_, b) in zip(runs["triton"].model.named_parameters(), runs["torch"].model.named_parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=n)


def test_wrapper_returns_logits_and_checkpointing_keeps_gradients(config):
    x = torch.randint(0, config.vocab_size, (2, 8), generator=torch.Generator().manual_seed(0))
    grads = []
    for checkpointing in (False, True):
        model = build_llama(config, seed=3, checkpointing=checkpointing)
        logits = model(x)
        assert isinstance(model, CausalLM) and logits.shape == (2, 8, config.vocab_size)
        assert logits.dtype == torch.float32
        logits.square().mean().backward()
        grads.append(model.model.model.layers[0].mlp.down_proj.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])
    with pytest.raises(ValueError, match="input_ids must be an int64 tensor"):
        model(x.float())


@pytest.mark.parametrize("name", ["adamw", "poet"])
def test_bf16_autocast_path_trains_with_fp32_weights(name, task, config):
    """The autocast path (bf16 on CUDA) checked on the CPU: matmuls run in bf16 inside the forward, the logits come
    back fp32, weights, gradients and optimizer state stay fp32, and training matches fp32 training to bf16 accuracy."""
    losses = {}
    for devices in ((), ("cpu",)):
        model = build_llama(config, seed=0)
        model.autocast_devices = devices
        seen = []
        hook = model.model.lm_head.register_forward_hook(lambda m, i, out: seen.append(out.dtype))
        run = Run(model, task, llm_method(name), probes=[], seed=0)
        run.train(4, progress=False)
        hook.remove()
        assert seen and set(seen) == ({torch.bfloat16} if devices else {torch.float32})
        assert model(task.batch(torch.Generator().manual_seed(0))[0][:1]).dtype == torch.float32
        assert all(p.dtype == torch.float32 for p in model.parameters())
        assert all(p.grad is None or p.grad.dtype == torch.float32 for p in model.parameters())
        states = [t for st in run.optimizer.state.values() for t in st.values() if torch.is_tensor(t) and t.numel() > 1]
        assert states and all(t.dtype == torch.float32 for t in states)
        losses[devices] = run.history["loss/batch"].values
    assert all(math.isfinite(v) for v in losses[("cpu",)])
    assert losses[("cpu",)] == pytest.approx(losses[()], rel=3e-2)          # bf16 has 8 bits of mantissa
    assert losses[("cpu",)] != losses[()]                                    # … and was used


def test_same_seed_same_model(config):
    a, b = build_llama(config, seed=5), build_llama(config, seed=5)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_llama_config_sizes_and_errors():
    big = llama_config("1b")
    assert (big.hidden_size, big.num_hidden_layers, big.intermediate_size, big.vocab_size) == (2048, 22, 5632, 32000)
    assert llama_config("tiny", 50, n_ctx=8, num_hidden_layers=3).num_hidden_layers == 3
    with pytest.raises(ValueError, match="size must be one of"):
        llama_config("huge", 10)
    with pytest.raises(ValueError, match="vocab_size must be an int ≥ 2"):
        llama_config("tiny")


def test_synthetic_tokens_follow_the_bigram_table():
    task = SyntheticTokens(vocab_size=50, n_ctx=12, batch_size=3, branching=2, seed=1)
    x, y = task.batch(torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (3, 12)
    assert torch.equal(x[:, 1:], y[:, :-1])
    assert all(int(b) in task.successors[int(a)].tolist() for a, b in zip(x.flatten(), y.flatten()))
    assert task.floor == pytest.approx(math.log(2))
    assert set(task.eval_sets()) == {"val"}
    with pytest.raises(ValueError, match="branching \\(9\\) cannot exceed vocab_size \\(5\\)"):
        SyntheticTokens(vocab_size=5, branching=9)


def test_token_task_moves_and_caps(task):
    x, y = task.batch(torch.Generator().manual_seed(0))
    assert x.shape == (4, 16) and x.device == task.device
    assert all(v[0].shape[0] <= 8 for v in task.eval_sets().values())
    assert task.vocab_size == task.task.vocab_size           # forwarded to the wrapped task


def test_sample_layers_and_probe_rules(config):
    assert sample_layers(22) == [0, 10, 21]
    assert sample_layers(2) == [0, 1] and sample_layers(1, 1) == [0]
    model = build_llama(llama_config("tiny", 40, 8, num_hidden_layers=5), seed=0)
    spectrum = llm_probes(model, layers=[3])[1]
    from orthoscope.probes import weight_matrices

    paths = [p for p, _ in weight_matrices(model, spectrum.modules)]
    assert len(paths) == 7 and all(".layers.3." in p for p in paths)
    with pytest.raises(ValueError, match="layers must be indices in \\[0, 5\\)"):
        llm_probes(model, layers=[5])


def test_llm_method_rejects_unknown():
    with pytest.raises(ValueError, match="method must be one of"):
        llm_method("sgd-ish")
    assert llm_method("poet_mem").memory_mode and not llm_method("poet").memory_mode
