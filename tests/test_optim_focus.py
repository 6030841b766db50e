"""FOCUS: parity with the reference update written out, γ = 0 is Signum, the first step has no attraction,
weight decay acts through the parameter EMA, and FOCUS behaves as claimed on the narrowing-valley toy."""
import math

import pytest
import torch
from torch import nn

from orthoscope.optim import FOCUS, focus_update


def reference_focus(theta, grads, lr, betas, gamma, wd):
    """liuyz0/FOCUS focus.py, transcribed: m, p̄ EMAs; p̂ = p̄/(1−β2ᵗ); θ −= lr(sign m + γ sign(θ − p̂)); θ −= lr·wd·p̂."""
    m, pbar = torch.zeros_like(theta), torch.zeros_like(theta)
    for t, g in enumerate(grads, start=1):
        m = betas[0] * m + (1 - betas[0]) * g
        pbar = betas[1] * pbar + (1 - betas[1]) * theta
        phat = pbar / (1 - betas[1] ** t)
        theta = theta - lr * (torch.sign(m) + gamma * torch.sign(theta - phat))
        if wd:
            theta = theta - lr * wd * phat
    return theta


@pytest.mark.parametrize("gamma, wd", [(0.1, 0.0), (0.2, 0.3), (0.0, 0.0)])
def test_matches_reference(gamma, wd):
    g = torch.Generator().manual_seed(0)
    theta0 = torch.randn(5, 4, generator=g, dtype=torch.float64)
    grads = [torch.randn(5, 4, generator=g, dtype=torch.float64) for _ in range(12)]
    p = nn.Parameter(theta0.clone())
    opt = FOCUS([p], lr=0.05, betas=(0.9, 0.95), gamma=gamma, weight_decay=wd)
    for grad in grads:
        p.grad = grad.clone()
        opt.step()
    expect = reference_focus(theta0, grads, 0.05, (0.9, 0.95), gamma, wd)
    assert torch.allclose(p.detach(), expect, atol=1e-12)


def test_gamma_zero_is_signum():
    g = torch.Generator().manual_seed(1)
    p = nn.Parameter(torch.randn(7))
    theta, m = p.detach().clone(), torch.zeros(7)
    opt = FOCUS([p], lr=0.1, betas=(0.8, 0.999), gamma=0.0)
    for _ in range(6):
        grad = torch.randn(7, generator=g)
        p.grad = grad
        opt.step()
        m = 0.8 * m + 0.2 * grad
        theta = theta - 0.1 * torch.sign(m)
    assert torch.allclose(p.detach(), theta, atol=1e-6)


def test_first_step_has_no_attraction_and_bias_correction_is_exact():
    theta, grad = torch.tensor([1.0, -2.0, 3.0]), torch.tensor([0.5, 0.5, -0.5])
    p, m, pbar = theta.clone(), torch.zeros(3), torch.zeros(3)
    focus_update(p, grad, m, pbar, step=1, lr=0.1, betas=(0.9, 0.999), gamma=5.0, weight_decay=0.0)
    assert torch.allclose(p, theta - 0.1 * torch.sign(grad))       # p̂₁ = θ₀, so sign(θ − p̂) = 0


def test_weight_decay_acts_on_the_ema():
    """With β2 = 0 the EMA is θ itself, so FOCUS's decay is plain decoupled decay θ ← θ − lr·wd·θ."""
    p = nn.Parameter(torch.tensor([2.0, -4.0]))
    p.grad = torch.zeros(2)                                          # sign(0) = 0: only the decay moves θ
    FOCUS([p], lr=0.1, betas=(0.9, 0.0), gamma=0.3, weight_decay=0.5).step()
    assert torch.allclose(p.detach(), torch.tensor([2.0, -4.0]) * (1 - 0.05))


def test_bad_arguments():
    p = nn.Parameter(torch.zeros(2))
    with pytest.raises(ValueError, match="gamma must be a finite number ≥ 0, got -1"):
        FOCUS([p], gamma=-1)
    with pytest.raises(ValueError, match=r"betas\[1\] must lie in \[0, 1\), got 1.0"):
        FOCUS([p], betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="weight_decay must be a finite number ≥ 0"):
        FOCUS([p], weight_decay=float("nan"))


def valley_run(opt_name, noise, steps=400, seed=0):
    """FOCUS's narrowing valley (Toy/syn-exp-6): L = ½a·u²v² − c·u, (u, v) = rotation(π/6)·θ, a=10, c=0.1,
    multiplicative gradient noise g ⊙ N(1, noise²). Returns the progress u along the valley."""
    a, c, ang = 10.0, 0.1, math.pi / 6
    rot = torch.tensor([[math.cos(ang), -math.sin(ang)], [math.sin(ang), math.cos(ang)]], dtype=torch.float64)
    theta = nn.Parameter(torch.tensor([0.5, 0.5], dtype=torch.float64) @ rot)     # starts at u = v = 0.5
    gen = torch.Generator().manual_seed(seed)
    opt = (FOCUS([theta], lr=0.01, betas=(0.9, 0.9), gamma=0.2) if opt_name == "focus"
           else torch.optim.Adam([theta], lr=0.01))
    for _ in range(steps):
        opt.zero_grad()
        u, v = rot @ theta
        (0.5 * a * u**2 * v**2 - c * u).backward()
        theta.grad *= 1 + noise * torch.randn(2, generator=gen, dtype=torch.float64)
        opt.step()
    return (rot @ theta.detach())[0].item()


def test_focus_advances_further_than_adam_in_a_noisy_narrowing_valley():
    """The paper's Fig. 2 claim, at one high-noise point: FOCUS moves further along the valley than Adam."""
    focus = sum(valley_run("focus", 2.0, seed=s) for s in range(3))
    adam = sum(valley_run("adam", 2.0, seed=s) for s in range(3))
    assert focus > adam, (focus, adam)
