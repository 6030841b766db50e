"""Shared fixtures. Figures render with Agg in tests (no display needed); set before anything imports pyplot."""
import os

os.environ.setdefault("MPLBACKEND", "Agg")
# The Triton kernels run in Triton's CPU interpreter here. Triton reads this when it is first imported, and
# torch._inductor (test_kan_compiled's torch.compile) imports it too — so it must be set before any test module loads.
os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

# Property tests draw the same examples on every run (derandomized, no example database): CI is reproducible, and a
# failure seen once is seen again. Run with --hypothesis-profile=explore to draw fresh random examples.
settings.register_profile("ci", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile("ci")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Every test runs with one torch intra-op thread. The models here are tiny: a second thread only adds
    synchronization, and on a loaded 2-core machine OpenMP's spinning makes small ops up to ~100× slower. One thread
    is also what ``scripts/test.sh`` (OMP_NUM_THREADS=1) and the subprocesses the tests start use."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


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


@pytest.hookimpl(trylast=True)          # after -k / -m have deselected: only what will run counts
def pytest_collection_modifyitems(config, items):
    """A notebook's plain smoke run (test_notebooks.py, nbclient) is skipped when the same notebook is also collected
    for test_browser_notebooks.py and that test can run (Chromium and Playwright present): the browser test runs it
    twice in a real JupyterLab, checks that no cell raised and that every figure has pixels, so the plain run would
    only repeat the first of those runs (~20 s a notebook). Without Chromium, or with the browser test deselected, the
    plain run stays."""
    import importlib.util

    from test_browser import CHROMIUM

    in_browser = {item.callspec.params["path"].name for item in items
                  if item.nodeid.startswith("tests/test_browser_notebooks.py::") and hasattr(item, "callspec")}
    if not in_browser or not os.path.exists(CHROMIUM) or importlib.util.find_spec("playwright") is None:
        return
    for item in items:
        if (item.originalname == "test_notebook_runs_in_smoke_mode"
                and item.callspec.params["path"].name in in_browser):
            item.add_marker(pytest.mark.skip(reason="run twice in JupyterLab by tests/test_browser_notebooks.py"))
