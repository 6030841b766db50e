"""KANLinear(compile=True) (``orthoscope.models.kan_compiled``): outputs and every gradient equal the eager layer's,
for two configurations, two batch sizes, partial gradients, out-of-grid inputs and exact knots; fallbacks warn."""
import copy
import warnings

import pytest
import torch

from orthoscope.models.kan import KAN, KANLinear

pytest.importorskip("torch._inductor")


def _pair(seed, **kwargs):
    """An eager layer with non-trivial scales and mask, and a compile=True copy of it."""
    torch.manual_seed(seed)
    eager = KANLinear(5, 4, **kwargs)
    with torch.no_grad():
        eager.scale_sp.mul_(1 + torch.rand(5, 4))
        eager.mask[0, 0] = 0.0
    compiled = KANLinear(5, 4, compile=True, **kwargs)
    compiled.load_state_dict(eager.state_dict())
    return eager, compiled


def _inputs(batch, scale, seed, grid=None, k=None):
    x = (torch.rand(batch, 5, generator=torch.Generator().manual_seed(seed)) * 2 - 1) * scale
    if grid is not None:                                  # some inputs exactly on knots, incl. the range ends
        x[:4, 1] = grid[1, [0, k, -k - 1, -1]]
    return x


def _compiled_ran(y) -> bool:
    """Whether y came out of the compiled path (its autograd node, under at most a reshape)."""
    nodes = [y.grad_fn] + [f for f, _ in y.grad_fn.next_functions]
    return any(type(f).__name__ == "_CompiledKanBackward" for f in nodes if f is not None)


def _outputs_and_grads(layer, x, need_x=True):
    x = x.clone().requires_grad_(need_x)
    y = layer(x)
    assert _compiled_ran(y) == layer.use_compile
    y.backward(torch.linspace(-1, 1, y.numel()).view_as(y))      # a non-uniform upstream gradient
    grads = [x.grad] if need_x else []
    grads += [p.grad for p in (layer.coef, layer.scale_sp, layer.scale_base) if p.requires_grad]
    for p in (layer.coef, layer.scale_sp, layer.scale_base):
        p.grad = None
    return [y.detach()] + grads


@pytest.mark.parametrize("k,base_fun,outside", [(3, "silu", "zero"), (2, "identity", "clamp")])
def test_compiled_layer_equals_eager(k, base_fun, outside):
    eager, compiled = _pair(k, grid=4, k=k, base_fun=base_fun, outside=outside)
    for batch, seed in ((37, 1), (20, 2)):                # the second batch size recompiles (dynamic batch)
        x = _inputs(batch, 1.7, seed, eager.grid, k)      # partly beyond the grid range: both layers warn once
        with pytest.warns(RuntimeWarning, match="outside the grid range") if seed == 1 else warnings.catch_warnings():
            want = _outputs_and_grads(eager, x)
        with pytest.warns(RuntimeWarning, match="outside the grid range") if seed == 1 else warnings.catch_warnings():
            got = _outputs_and_grads(compiled, x)
        assert len(got) == len(want) == 5
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)
    # x without a gradient (a first layer) and a frozen scale: only the gradients asked for, still equal
    eager.scale_sp.requires_grad_(False)
    compiled.scale_sp.requires_grad_(False)
    x = _inputs(37, 0.9, 3)
    for g, w in zip(_outputs_and_grads(compiled, x, need_x=False), _outputs_and_grads(eager, x, need_x=False)):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)
    assert compiled(x[None]).shape == (1, 37, 4)                 # [..., in] inputs, as the eager layer


def test_compiled_base_zero_and_empty_batch():
    eager, compiled = _pair(5, grid=3, k=3, base_fun="zero")
    x = _inputs(16, 0.9, 4)
    for g, w in zip(_outputs_and_grads(compiled, x), _outputs_and_grads(eager, x)):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)
    empty = compiled(torch.zeros(0, 5, requires_grad=True))     # eager path: nothing to compile for
    assert empty.shape == (0, 4)


def test_compiled_falls_back_on_a_non_uniform_grid_with_a_warning():
    eager, compiled = _pair(7, grid=4, k=3)
    samples = _inputs(64, 0.8, 5) ** 3
    eager.update_grid(samples)
    compiled.update_grid(samples)
    x = _inputs(24, 0.5, 6)
    with pytest.warns(RuntimeWarning, match="not evenly spaced"):
        got = compiled(x.requires_grad_())
    assert not _compiled_ran(got)
    # (not bitwise: update_grid's least-squares solve rounds differently with the buffers' memory alignment)
    torch.testing.assert_close(got, eager(x), rtol=1e-6, atol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compiled(x)                                                 # warned once per layer


def test_compiled_without_a_cxx_compiler_warns_and_runs_eagerly():
    import torch._inductor.config as inductor_config

    eager, compiled = _pair(8, grid=4, k=3)
    x = _inputs(12, 0.5, 7)
    # torch's own config patch, not pytest's monkeypatch: undoing a monkeypatch of this config entry deleted it, and
    # every later Inductor compile in the process then failed ("config.cpp.cxx does not exist": test_throughput)
    with inductor_config.patch({"cpp.cxx": ("no-such-c++-compiler",)}), \
            pytest.warns(RuntimeWarning, match="needs a C\\+\\+ compiler"):
        got = compiled(x.requires_grad_())
    assert not _compiled_ran(got)
    torch.testing.assert_close(got, eager(x), rtol=0, atol=0)


def test_compile_argument():
    with pytest.raises(ValueError, match="compile must be True or False"):
        KANLinear(2, 3, compile="yes")
    model = KAN([2, 3, 1], compile=True)
    assert all(layer.use_compile for layer in model.layers) and "compile=True" in repr(model)
    assert copy.deepcopy(model).layers[0].use_compile
