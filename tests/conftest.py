"""Shared fixtures. Figures render with Agg in tests (no display needed); set before anything imports pyplot."""
import os

os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402


@pytest.fixture
def make_run():
    """``make_run(weight_decay=1.0, name="run", every=2)``: a seeded tiny modular-addition MLP run (p = 11) with
    the default probes every ``every`` steps; not yet trained."""
    import torch

    from orthoscope import AdamW, Run
    from orthoscope.models import MLP
    from orthoscope.probes import default_probes
    from orthoscope.tasks import ModularArithmetic

    def make(weight_decay: float = 1.0, name: str = "run", every: int = 2, lr: float = 3e-3, loss=None):
        torch.manual_seed(0)
        task = ModularArithmetic(p=11, train_frac=0.5)
        model = MLP(vocab_size=11, n_tokens=2, d_embed=8, hidden=(16,), d_out=11)
        return Run(model, task, AdamW(lr=lr, weight_decay=weight_decay), loss=loss, probes=default_probes(every),
                   seed=0, name=name)

    return make
