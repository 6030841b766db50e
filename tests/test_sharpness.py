"""Sharpness probe: λ_max and top-k against the dense Hessian, Hutchinson's trace, adapters, read-only-ness, FSDP2."""
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn
from torch.func import functional_call

from orthoscope import SGD, Run
from orthoscope.methods.losses import cross_entropy, mse
from orthoscope.probes import Sharpness
from orthoscope.probes.sharpness import HessianOperator, hutchinson_trace, lanczos


class View:
    """What the probe reads: the model, the optimizer (for 2/η) and, as a fallback, the loss function."""

    def __init__(self, model, optimizer=None, loss_fn=None):
        self.model, self.optimizer, self.loss_fn, self.step_count = model, optimizer, loss_fn, 0


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2)).double()


def tiny_batch(seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(16, 3, generator=g, dtype=torch.float64), torch.randn(16, 2, generator=g, dtype=torch.float64)


def dense_hessian(model, loss_fn, batch):
    """H of the loss w.r.t. the trainable parameters (flattened in ``model.parameters()`` order), by
    ``torch.autograd.functional.hessian`` — the reference the probe is checked against."""
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    params = dict(model.named_parameters())
    shapes = [params[n].shape for n in names]
    flat0 = torch.cat([params[n].detach().reshape(-1) for n in names])

    def loss_of(flat):
        chunks = torch.split(flat, [s.numel() for s in shapes])
        replaced = {n: c.view(s) for n, c, s in zip(names, chunks, shapes)}
        return loss_fn(functional_call(model, replaced, (batch[0],)), batch[1])

    return torch.autograd.functional.hessian(loss_of, flat0)


def test_top_eigenvalues_equal_the_dense_hessians():
    model, batch = tiny_model(), tiny_batch()
    H = dense_hessian(model, mse, batch)
    exact = torch.linalg.eigvalsh(H).flip(0)
    assert H.shape == (32, 32)
    out = Sharpness(batch, mse, iters=20, k=3)(View(model))
    assert out["sharpness/total"] == pytest.approx(exact[0].item(), rel=1e-4)
    for i in range(3):
        assert out[f"hessian_eig/{i + 1}"] == pytest.approx(exact[i].item(), rel=1e-4)
    # the dense Hessian of a tanh net is indefinite: λ_max is the largest *algebraic* eigenvalue, not max |λ|
    assert exact[-1] < 0


def test_cross_entropy_and_iters_at_least_n_give_every_eigenvalue():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 3)).double()      # 21 parameters
    x = torch.randn(10, 2, dtype=torch.float64)
    y = torch.randint(0, 3, (10,))
    exact = torch.linalg.eigvalsh(dense_hessian(model, cross_entropy, (x, y))).flip(0)
    op = HessianOperator(model, cross_entropy, (x, y))
    res = lanczos(op, op.n, k=5, iters=40, generator=torch.Generator().manual_seed(0))
    assert res.iterations <= 21
    torch.testing.assert_close(torch.tensor(res.eigenvalues, dtype=torch.float64), exact[:5], rtol=1e-6, atol=1e-9)
    assert max(res.residuals) < 1e-6


def test_hutchinson_trace_is_unbiased_and_exact_for_a_diagonal_hessian():
    model, batch = tiny_model(), tiny_batch()
    H = dense_hessian(model, mse, batch)
    out = Sharpness(batch, mse, trace_samples=400, seed=3)(View(model))
    est, se = out["hessian_trace/total"], out["hessian_trace_se/total"]
    assert se > 0 and abs(est - H.trace().item()) < 4 * se
    # a diagonal operator: zᵀDz = Σ d_i z_i² = tr D for every Rademacher z, so the estimate is exact and se = 0
    d = torch.tensor([3.0, -1.0, 0.5, 2.0], dtype=torch.float64)
    mean, se = hutchinson_trace(lambda v: d * v, 4, 5, generator=torch.Generator().manual_seed(0))
    assert mean == pytest.approx(d.sum().item(), abs=1e-12) and se == pytest.approx(0.0, abs=1e-12)


def test_only_trainable_parameters_count_for_adapters():
    from orthoscope.adapters.lora import LoRA

    model = LoRA(rank=2, alpha=2.0, targets=["0", "2"]).attach(tiny_model())
    with torch.no_grad():                              # B = 0 at init; move it so the LoRA Hessian is not trivial
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.3 * torch.randn_like(p))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert 0 < trainable < sum(p.numel() for p in model.parameters())
    batch = tiny_batch()
    H = dense_hessian(model, mse, batch)
    assert H.shape == (trainable, trainable)
    out = Sharpness(batch, mse, iters=trainable)(View(model))
    assert out["sharpness/total"] == pytest.approx(torch.linalg.eigvalsh(H)[-1].item(), rel=1e-4)
    op = HessianOperator(model, mse, batch)
    assert op.n == trainable


def test_probe_is_read_only_and_reports_two_over_lr():
    model, batch = tiny_model(), tiny_batch()
    model.train()
    for p in model.parameters():
        p.grad = torch.full_like(p, 7.0)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    rng = torch.get_rng_state()
    opt = torch.optim.SGD([{"params": list(model[0].parameters()), "lr": 0.1},
                           {"params": list(model[2].parameters()), "lr": 0.25}])
    out = Sharpness(batch, "mse")(View(model, opt))
    assert out["two_over_lr/total"] == pytest.approx(2 / 0.25)            # the largest lr: the tightest edge
    assert model.training and torch.equal(torch.get_rng_state(), rng)
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n]) and torch.equal(p.grad, torch.full_like(p, 7.0))


def test_in_a_run_the_probe_uses_the_runs_loss_and_records_on_schedule():
    from orthoscope.zoo.lottery import Square1D

    task = Square1D(n_train=32)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(1, 8), nn.Tanh(), nn.Linear(8, 1)).double()
    run = Run(model, task, SGD(lr=0.05), probes=[Sharpness(task.batch(None), every=5, iters=10)], seed=0)
    run.train(10, progress=False)
    h = run.history
    assert h["sharpness/total"].steps == [0, 5, 10]
    assert h["two_over_lr/total"].values == pytest.approx([40.0] * 3)
    exact = torch.linalg.eigvalsh(dense_hessian(run.model, mse, (task.x_train, task.y_train)))[-1].item()
    assert h["sharpness/total"].values[-1] == pytest.approx(exact, rel=1e-4)


def test_bad_arguments_are_named():
    batch = tiny_batch()
    with pytest.raises(TypeError, match="batch"):
        Sharpness(batch[0])
    with pytest.raises(ValueError, match="iters"):
        Sharpness(batch, iters=0)
    with pytest.raises(ValueError, match="k=3 eigenvalues"):
        Sharpness(batch, k=3, iters=2)
    with pytest.raises(ValueError, match="loss function"):
        Sharpness(batch)(View(tiny_model()))
    frozen = tiny_model().requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        Sharpness(batch, mse)(View(frozen))


def test_fsdp2_sharded_models_are_refused_clearly(tmp_path):
    # One gloo process with a 1-rank mesh is enough to make fully_shard turn the parameters into DTensors.
    script = textwrap.dedent(f"""
        import torch, torch.distributed as dist
        from torch import nn
        from torch.distributed.fsdp import fully_shard
        from orthoscope.probes import Sharpness
        dist.init_process_group("gloo", init_method="file://{tmp_path}/store", rank=0, world_size=1)
        try:
            model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
            fully_shard(model)
            try:
                Sharpness((torch.randn(4, 3), torch.randn(4, 1)), "mse")(type("V", (), dict(model=model))())
            except ValueError as exc:
                print("REFUSED:", exc)
        finally:
            dist.destroy_process_group()
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "REFUSED: Sharpness cannot measure an FSDP2-sharded model" in done.stdout


@pytest.mark.filterwarnings("ignore:orthoscope Dashboard. ipympl")
def test_dashboard_draws_the_sharpness_panel_with_the_two_over_lr_line(make_run):
    from orthoscope.viz import Dashboard

    plain = make_run()
    plain.train(2, progress=False)
    dash = Dashboard(plain)
    assert "sharpness" not in dash.axes                          # only when a run measures sharpness
    dash.close()
    run = make_run(name="sharp")
    run.probes.append(Sharpness(run.task.batch(run.generator), every=2, iters=8))
    run.train(4, progress=False)
    dash = Dashboard(run, layer="layers.0")
    ax = dash.axes["sharpness"]
    lines = {ln.get_label(): ln for ln in ax.lines}
    assert list(lines["λ_max"].get_ydata()) == pytest.approx(run.history["sharpness/total"].values)
    assert list(lines["2/η"].get_ydata()) == pytest.approx([2 / 3e-3] * 3)         # make_run's AdamW lr 3e-3
    assert ax.get_xlabel() == "step" and "λ_max" in ax.get_ylabel() and "2/η" in ax.get_title()
    dash.close()
    forced = Dashboard(plain, sharpness=True)                    # asked for, nothing recorded: the panel says so
    assert "add a Sharpness probe" in forced.axes["sharpness"].texts[0].get_text()
    forced.close()
