"""The fast KAN layer against pykan itself: bases, outputs, gradients, grid updates, refinement, conversion; the
kernel seam op; out-of-grid behaviour; drop-in use in the MLP and the transformer; KAN probes."""
import warnings

import pytest
import torch

from orthoscope import kernels
from orthoscope.models import MLP, TinyTransformer
from orthoscope.models.kan import KAN, KANFeedForward, KANLinear, use_kan_layers
from orthoscope.kernels.bspline import bspline_basis, grid_from_samples, kan_spline_torch, matmul_nt, uniform_grid

kan_spline_mod = pytest.importorskip("kan.spline")
KANLayer = pytest.importorskip("kan.KANLayer").KANLayer

SHAPES = [(5, 3, 3, 4), (1, 1, 2, 3), (10, 2, 4, 1), (7, 5, 2, 2), (3, 3, 6, 5)]     # (G, k, in, out)


def _inputs(n, d, scale, seed, dtype=torch.float32):
    return (torch.rand(n, d, generator=torch.Generator().manual_seed(seed), dtype=dtype) * 2 - 1) * scale


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-13), (torch.float32, 1e-6)])
@pytest.mark.parametrize("G,k", [(5, 3), (1, 1), (10, 2), (4, 5)])
def test_basis_equals_pykan_b_batch(dtype, tol, G, k):
    grid = uniform_grid(3, G, k, (-1.0, 1.0), dtype=dtype)
    x = _inputs(400, 3, 1.0 + 2.0 * k / G, seed=G + k, dtype=dtype)       # covers the extension and beyond
    x[:4, 0] = grid[0, [0, k, -k - 1, -1]]                                 # exactly on knots, incl. both ends
    torch.testing.assert_close(bspline_basis(x, grid, k), kan_spline_mod.B_batch(x, grid, k), rtol=0, atol=tol)
    nonuniform = grid_from_samples(torch.randn(200, 3, dtype=dtype), G, k)
    torch.testing.assert_close(bspline_basis(x, nonuniform, k), kan_spline_mod.B_batch(x, nonuniform, k),
                               rtol=0, atol=tol)


def _compare_layers(theirs, ours, x, tol):
    """Outputs and gradients (input, coef, scale_base, scale_sp) of a pykan KANLayer and a KANLinear."""
    gy = torch.randn(x.shape[0], ours.out_features, generator=torch.Generator().manual_seed(1), dtype=x.dtype)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = theirs(xa)[0], ours(xb)
    torch.testing.assert_close(yb, ya, rtol=0, atol=tol)
    params_a = [theirs.coef, theirs.scale_base, theirs.scale_sp]
    params_b = [ours.coef, ours.scale_base, ours.scale_sp]
    ga = torch.autograd.grad(ya, [xa, *params_a], gy)
    gb = torch.autograd.grad(yb, [xb, *params_b], gy)
    for name, a, b in zip(["x", "coef", "scale_base", "scale_sp"], ga, gb):
        torch.testing.assert_close(b, a, rtol=0, atol=tol * max(1.0, float(a.abs().max())), msg=f"grad {name}")


@pytest.mark.parametrize("G,k,n_in,n_out", SHAPES)
def test_layer_outputs_and_gradients_equal_pykan(G, k, n_in, n_out):
    torch.manual_seed(G * 10 + k)
    theirs = KANLayer(n_in, n_out, num=G, k=k, noise_scale=0.5)
    with torch.no_grad():                                  # make the scales and mask non-trivial
        theirs.scale_sp.mul_(1 + torch.rand(n_in, n_out))
        theirs.mask[0, 0] = 0.0
    ours = KANLinear.from_pykan(theirs)
    x = _inputs(64, n_in, 1.0, seed=G)
    _compare_layers(theirs, ours, x, tol=1e-5)
    # after pykan's adaptive grid update on wider data: a non-uniform grid, inputs beyond the grid range
    samples = _inputs(256, n_in, 1.5, seed=7) ** 3
    theirs.update_grid_from_samples(samples)
    ours.update_grid(samples)
    torch.testing.assert_close(ours.grid, theirs.grid, rtol=0, atol=1e-6)
    torch.testing.assert_close(ours.coef, theirs.coef, rtol=0, atol=5e-5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        _compare_layers(theirs, KANLinear.from_pykan(theirs), _inputs(64, n_in, 2.0, seed=3), tol=1e-5)


def test_same_seed_initialization_and_round_trip():
    torch.manual_seed(0)
    theirs = KANLayer(3, 4, num=5, k=3, noise_scale=0.3)
    torch.manual_seed(0)
    ours = KANLinear(3, 4, grid=5, k=3)
    for name in ("grid", "coef", "scale_base", "scale_sp", "mask"):
        torch.testing.assert_close(getattr(ours, name), getattr(theirs, name), rtol=0, atol=1e-6)
    back = ours.to_pykan()
    x = _inputs(32, 3, 1.0, seed=5)
    torch.testing.assert_close(back(x)[0], ours(x), rtol=0, atol=1e-6)
    assert torch.get_default_dtype() == torch.float32


def test_refine_equals_pykan_grid_extension():
    torch.manual_seed(1)
    parent = KANLayer(2, 3, num=5, k=3)
    samples = _inputs(300, 2, 1.0, seed=2)
    parent.update_grid_from_samples(samples)                 # non-uniform parent grid
    child = KANLayer(2, 3, num=12, k=3)
    child.initialize_grid_from_parent(parent, samples)
    ours = KANLinear.from_pykan(parent).refine(12, samples)
    torch.testing.assert_close(ours.grid, child.grid, rtol=0, atol=1e-6)
    torch.testing.assert_close(ours.coef, child.coef, rtol=0, atol=1e-5)


def test_stack_from_pykan_multkan():
    from orthoscope.models.pykan_bridge import PyKAN

    wrapped = PyKAN([3, 4, 2], grid=4, k=3, seed=0, dtype=torch.float32)
    fast = KAN.from_pykan(wrapped.kan)
    x = _inputs(50, 3, 1.0, seed=8)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)    # hidden activations leave [-1, 1]
        torch.testing.assert_close(fast(x), wrapped(x), rtol=0, atol=1e-5)


def test_kernel_seam_gradcheck_and_errors():
    g = torch.Generator().manual_seed(3)
    for grid in (uniform_grid(2, 4, 3, dtype=torch.float64),
                 grid_from_samples(torch.randn(100, 2, generator=g, dtype=torch.float64), 4, 3)):
        x = (torch.rand(6, 2, generator=g, dtype=torch.float64) * 2.4 - 1.2).requires_grad_()
        coef = torch.randn(2, 3, 7, generator=g, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(lambda a, c: kernels.kan_spline(a, grid, c, 3), (x, coef))
    with kernels.use("torch"):
        y = kernels.kan_spline(x, grid, coef, 3)
    torch.testing.assert_close(y, kan_spline_torch(x, grid, coef, 3))
    with pytest.raises(ValueError, match="shapes disagree"):
        kernels.kan_spline(x, grid, coef[..., :5], 3)
    with pytest.raises(ValueError, match="x\\[B, in\\]"):
        kernels.kan_spline(x[0], grid, coef, 3)
    with pytest.raises(RuntimeError, match="grid is not trainable"):
        kernels.kan_spline(x, grid.clone().requires_grad_(), coef, 3).sum().backward()


@pytest.mark.parametrize("base_fun", ["silu", "identity"])
@pytest.mark.parametrize("uniform", [True, False])
def test_kernel_seam_base_branch_folded_into_the_matmul(base_fun, uniform):
    """kan_spline(..., base_weight) = spline + b(x) @ base_weight, in value and in every gradient (gradcheck), with
    x partly outside the grid (masked B-splines) and partly inside."""
    g = torch.Generator().manual_seed(11)
    grid = (uniform_grid(3, 5, 3, dtype=torch.float64) if uniform else
            grid_from_samples(torch.randn(100, 3, generator=g, dtype=torch.float64), 5, 3))
    x = (torch.rand(9, 3, generator=g, dtype=torch.float64) * 3.6 - 1.8).requires_grad_()
    coef = torch.randn(3, 4, 8, generator=g, dtype=torch.float64, requires_grad=True)
    base = torch.randn(3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    fun = torch.nn.functional.silu if base_fun == "silu" else (lambda t: t)
    with kernels.use("torch"):
        y = kernels.kan_spline(x, grid, coef, 3, base, base_fun)
    torch.testing.assert_close(y, kan_spline_torch(x, grid, coef, 3) + fun(x) @ base, rtol=0, atol=1e-13)
    assert torch.autograd.gradcheck(lambda a, c, w: kan_spline_torch(a, grid, c, 3, w, base_fun), (x, coef, base))
    # only some inputs need a gradient: the others get none, and the ones asked for are unchanged
    full = torch.autograd.grad(kan_spline_torch(x, grid, coef, 3, base, base_fun).sum(), (x, coef, base))
    for i, needs in enumerate([(True, False, False), (False, True, False), (False, False, True)]):
        leaves = [t.detach().requires_grad_(n) for t, n in zip((x, coef, base), needs)]
        (got,) = torch.autograd.grad(kan_spline_torch(leaves[0], grid, leaves[1], 3, leaves[2], base_fun).sum(),
                                     [leaves[i]])
        torch.testing.assert_close(got, full[i], rtol=0, atol=1e-13)


def test_kernel_seam_empty_batch_and_bad_base():
    grid, coef = uniform_grid(2, 4, 3), torch.randn(2, 3, 7, requires_grad=True)
    base = torch.randn(2, 3, requires_grad=True)
    x = torch.zeros(0, 2, requires_grad=True)
    y = kan_spline_torch(x, grid, coef, 3, base)
    assert y.shape == (0, 3)
    y.sum().backward()
    assert x.grad.shape == (0, 2) and coef.grad.abs().max() == 0 and base.grad.abs().max() == 0
    assert bspline_basis(x.detach(), grid, 3).shape == (0, 2, 7)
    with pytest.raises(ValueError, match=r"base_weight must have shape \[in, out\] = \[2, 3\], got \(3, 2\)"):
        kan_spline_torch(torch.zeros(4, 2), grid, coef, 3, base.T)
    with pytest.raises(ValueError, match="base_fun must be one of"):
        kan_spline_torch(torch.zeros(4, 2), grid, coef, 3, base, "relu")


def test_matmul_nt_equals_a_times_w_transposed_for_any_strides():
    """The layer's products (oneDNN in fp32 on the CPU): a @ w.T for contiguous, transposed, sliced and expanded
    (stride-0, as ∂(y.sum())/∂y) operands, to fp32 rounding against float64; other dtypes and empty shapes too."""
    g = torch.Generator().manual_seed(5)
    a, w = torch.randn(50, 30, generator=g), torch.randn(20, 30, generator=g)
    cases = [(a, w), (a.T.contiguous().T, w.T.contiguous().T), (a[:, ::2], w[:, ::2]),
             (torch.ones(1, 30).expand(50, 30), w), (a, torch.randn(1, 30, generator=g).expand(20, 30))]
    for left, right in cases:
        got = matmul_nt(left, right)
        assert got.shape == (left.shape[0], right.shape[0]) and got.dtype == torch.float32
        torch.testing.assert_close(got.double(), left.double() @ right.double().T, rtol=0, atol=2e-5)
    torch.testing.assert_close(matmul_nt(a.double(), w.double()), a.double() @ w.double().T, rtol=0, atol=1e-13)
    assert matmul_nt(torch.zeros(0, 30), w).shape == (0, 20)
    assert matmul_nt(a, torch.zeros(0, 30)).shape == (50, 0)


def test_layer_base_fun_zero_and_identity_equal_pykan():
    for fun, name in ((torch.nn.Identity(), "identity"), (None, "zero")):
        torch.manual_seed(6)
        theirs = KANLayer(3, 2, num=4, k=2, base_fun=fun or torch.nn.SiLU())
        ours = KANLinear.from_pykan(theirs)
        if fun is None:                                         # pykan has no zero base: drop its base branch
            with torch.no_grad():
                theirs.scale_base.zero_()
            ours = KANLinear(3, 2, grid=4, k=2, base_fun="zero")
            ours.load_state_dict(KANLinear.from_pykan(theirs).state_dict())
        assert ours.base_fun == name
        x = _inputs(40, 3, 1.0, seed=4)
        _compare_layers(theirs, ours, x, tol=1e-5) if name == "identity" else \
            torch.testing.assert_close(ours(x), theirs(x)[0], rtol=0, atol=1e-5)


def test_outside_grid_warns_once_zero_and_clamp():
    torch.manual_seed(2)
    zero = KANLinear(1, 1, grid=5, k=3)
    clamp = KANLinear(1, 1, grid=5, k=3, outside="clamp")
    clamp.load_state_dict(zero.state_dict())
    inside = torch.tensor([[0.3]])
    far = torch.tensor([[5.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        torch.testing.assert_close(zero(inside), clamp(inside))            # no warning inside the grid
    with pytest.warns(RuntimeWarning, match="outside the grid range"):
        zero(far)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        zero(far)                                                           # warned once per layer
    silu = torch.nn.functional.silu(far) * zero.scale_base
    torch.testing.assert_close(zero(far), silu.detach())                    # pykan: spline is 0 far outside
    with pytest.warns(RuntimeWarning, match="nearest grid end"):
        y = clamp(far)
    edge = clamp.spline_coef()
    at_end = kernels.kan_spline(torch.tensor([[1.0]]), clamp.grid, edge, 3)
    torch.testing.assert_close(y, (silu + at_end).detach())


@pytest.mark.parametrize("kwargs,match", [
    (dict(grid=0), "grid must be an integer ≥ 1"), (dict(k=0), "k must be an integer ≥ 1"),
    (dict(grid=2.5), "grid must be"), (dict(outside="wrap"), "outside must be"),
    (dict(base_fun="relu"), "base_fun"), (dict(grid_range=(1, -1)), "grid_range"),
])
def test_bad_layer_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        KANLinear(2, 3, **kwargs)


@pytest.mark.parametrize("width", [[2, 0, 1], [0, 1], [3], [2, -1], [2, 1.5, 1]])
def test_bad_width(width):
    with pytest.raises(ValueError, match="width"):
        KAN(width)


@pytest.mark.filterwarnings("ignore:.*outside the grid range:RuntimeWarning")
def test_drop_in_mlp_and_transformer_kan_ffn():
    torch.manual_seed(4)
    mlp = use_kan_layers(MLP(d_in=3, hidden=(8,), d_out=2), grid=4, k=3)
    assert all(isinstance(layer, KANLinear) for layer in mlp.layers) and isinstance(mlp.act, torch.nn.Identity)
    x = torch.rand(64, 3) * 2 - 1
    target = torch.stack([x[:, 0] * x[:, 1], torch.sin(2 * x[:, 2])], 1)
    opt = torch.optim.Adam(mlp.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        opt.zero_grad()
        loss = ((mlp(x) - target) ** 2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]

    tf = use_kan_layers(TinyTransformer(vocab_size=7, n_ctx=3, d_model=8, n_heads=2, d_mlp=16), grid=3, k=2,
                        grid_range=(-3, 3))
    assert all(isinstance(b.mlp, KANFeedForward) for b in tf.blocks)
    out = tf(torch.randint(0, 7, (5, 3)))
    out.sum().backward()
    assert out.shape == (5, 7) and tf.blocks[0].mlp.up.coef.grad is not None
    with pytest.raises(ValueError, match="MLP and TinyTransformer"):
        use_kan_layers(torch.nn.Linear(2, 2))


def test_run_trains_fast_kan_with_grid_updates_and_probes():
    from orthoscope import Run
    from orthoscope.recipes.kan_fit import Adam, FunctionTask, GridUpdate, Refine
    from orthoscope.probes.kan import EdgeCurves, EdgeImportance, FitError

    task = FunctionTask(lambda x: torch.exp(torch.sin(torch.pi * x[:, 0]) + x[:, 1] ** 2), n_var=2,
                        train_num=200, test_num=200, dtype=torch.float32)
    torch.manual_seed(0)
    model = KAN([2, 3, 1], grid=3, k=3)
    probes = [FitError(10), EdgeCurves(10, n_points=16), EdgeImportance(10)]
    run = Run(model, task, Adam(lr=2e-2, interventions_=[GridUpdate(every=10, stop=40)]), probes=probes, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        run.train(60, progress=False)
        Refine(6).apply(run)
        run.train(20, progress=False)
    h = run.history
    assert h["rmse/test"].last() < 0.5 * h["rmse/test"].values[0]
    assert model.layers[0].grid_size == 6
    assert h["edge_curve/layers.0"].last().shape == (2, 3, 16)
    assert h["edge_curve_x/layers.1"].last().shape == (3, 16)
    assert h["edge_score/layers.1"].last().shape == (3, 1)


def test_edge_importance_equals_pykan_attribution():
    from orthoscope.models.pykan_bridge import PyKAN
    from orthoscope.probes.kan import kan_attribution

    wrapped = PyKAN([2, 3, 2], grid=3, k=3, seed=3, dtype=torch.float64)
    x = _inputs(100, 2, 1.0, seed=9, dtype=torch.float64)
    theirs = wrapped.attribute(x)
    fast = KAN.from_pykan(wrapped.kan)
    edge_std, node_std, a = [], [], x
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for layer in fast.layers:
            acts = layer.edge_activations(a)
            edge_std.append(acts.std(0))
            a = acts.sum(1)
            node_std.append(a.std(0))
    ours, _ = kan_attribution(edge_std, node_std)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_update_grid_keeps_the_grid_of_a_constant_input():
    torch.manual_seed(5)
    layer = KANLinear(2, 2, grid=4, k=3)
    before = layer.grid.clone()
    x = torch.stack([torch.linspace(-0.5, 0.5, 50), torch.zeros(50)], 1)   # input 1 is constant (a dead node)
    layer.update_grid(x)
    assert torch.equal(layer.grid[1], before[1]) and not torch.equal(layer.grid[0], before[0])
    xr = x.clone().requires_grad_()
    layer(xr).sum().backward()
    assert torch.isfinite(xr.grad).all() and torch.isfinite(layer.coef.grad).all()
