"""Probes for Kolmogorov–Arnold networks: the curve on every edge, edge importance, and pykan-style fit error.

Works on the fast ``orthoscope.models.kan.KANLinear`` (alone, in a ``KAN``, in an MLP or a transformer KAN-FFN) and
on ``orthoscope.models.pykan_bridge.PyKAN``. Keys (``"<metric>/<module path>"``; a PyKAN's layers are
``kan.act_fun.<l>``):

* ``edge_curve/<path>``: ``[in, out, P]`` — ``φ_ij`` sampled at the P points of ``edge_curve_x/<path>`` ``[in, P]``
  (the range the layer's inputs take on the evaluation set, or the grid range);
* ``edge_score/<path>``: ``[in, out]`` attribution scores (pykan's, the ones ``prune`` thresholds) and
  ``edge_score_sum/<path>`` their sum (a scalar the Dashboard can draw);
* ``rmse/<split>``: root-mean-square error on every evaluation set (what pykan's ``fit`` logs as "loss").
"""
from __future__ import annotations

import contextlib

import torch

from .base import Probe
from ..core.keys import key


def kan_attribution(edge_std: list[torch.Tensor], node_std: list[torch.Tensor]):
    """pykan's backward attribution (``MultKAN.attribute``) for a stack of sum-node KAN layers.

    ``edge_std[l]``: ``[in_l, out_l]`` batch std of each edge's output φ_ij(x_i); ``node_std[l]``: ``[out_l]`` batch
    std of each layer output. Output scores start as the identity; going backwards,
    ``edge[K, i, j] = edge_std[i, j]·node[K, j]/(node_std[j] + 1e-4)`` and ``node[K, i] = Σ_j edge[K, i, j]``.
    Returns ``(edge_scores [in_l, out_l] per layer, node_scores [width_l] per layer incl. inputs)``, averaged over
    the outputs K.
    """
    n_out = edge_std[-1].shape[1]
    node = torch.eye(n_out, dtype=edge_std[-1].dtype, device=edge_std[-1].device)
    edges, nodes = [], [node.mean(0)]
    for e_std, n_std in zip(reversed(edge_std), reversed(node_std)):
        edge = e_std.unsqueeze(0) * (node / (n_std + 1e-4)).unsqueeze(1)      # [K, in, out]
        node = edge.sum(2)
        edges.append(edge.mean(0))
        nodes.append(node.mean(0))
    return edges[::-1], nodes[::-1]


def _kan_layers(model):
    """``[(path, KANLinear)]`` of a model, in module order."""
    from ..models.kan import KANLinear

    return [(p, m) for p, m in model.named_modules() if isinstance(m, KANLinear)]


def _is_pykan(model) -> bool:
    return type(model).__name__ == "PyKAN" and hasattr(model, "kan")


@contextlib.contextmanager
def _input_ranges(layers):
    """Forward hooks that record the min/max of every listed layer's inputs; always removed."""
    ranges, handles = {}, []

    def hook(path):
        def record(module, args):
            x = args[0].detach().reshape(-1, args[0].shape[-1])
            lo, hi = x.min(0).values, x.max(0).values
            if path in ranges:
                lo, hi = torch.minimum(lo, ranges[path][0]), torch.maximum(hi, ranges[path][1])
            ranges[path] = (lo, hi)
        return record

    try:
        for path, layer in layers:
            handles.append(layer.register_forward_pre_hook(hook(path)))
        yield ranges
    finally:
        for h in handles:
            h.remove()


def _eval_inputs(view, split: str, max_examples: int):
    sets = view.task.eval_sets()
    if split not in sets:
        raise ValueError(f"split {split!r} not in the task's evaluation sets {sorted(sets)}")
    return sets[split][0][:max_examples]


class EdgeCurves(Probe):
    """The activation curve of every KAN edge, sampled at ``n_points`` points (see the module docstring).

    ``range="data"`` samples each input over the range it takes on ``split`` (one forward pass with hooks);
    ``range="grid"`` over the layer's grid range (no forward pass)."""

    name = "edge_curves"

    def __init__(self, every: int = 10, n_points: int = 32, range: str = "data", split: str = "train",
                 max_examples: int = 4096):
        super().__init__(every)
        if range not in ("data", "grid"):
            raise ValueError(f"range must be 'data' or 'grid', got {range!r}")
        if not isinstance(n_points, int) or n_points < 2:
            raise ValueError(f"n_points must be an int ≥ 2, got {n_points!r}")
        self.n_points, self.range, self.split, self.max_examples = n_points, range, split, max_examples
        self.needs_task = range == "data"

    @torch.no_grad()
    def __call__(self, view) -> dict:
        model = view.model
        x = _eval_inputs(view, self.split, self.max_examples) if self.range == "data" else None
        if _is_pykan(model):
            curves = model.edge_curves(self.n_points, x)
            paths = [f"kan.act_fun.{l}" for l in range(len(curves))]
        else:
            layers = _kan_layers(model)
            if not layers:
                raise ValueError("EdgeCurves found no KAN layers (KANLinear or PyKAN) in the model")
            ranges = {}
            if x is not None:
                was = model.training
                model.eval()
                try:
                    with _input_ranges(layers) as ranges:
                        model(x)
                finally:
                    model.train(was)
            paths, curves = [], []
            for path, layer in layers:
                lo, hi = ranges.get(path, (layer.grid[:, layer.k], layer.grid[:, -layer.k - 1]))
                t = torch.linspace(0, 1, self.n_points, dtype=layer.grid.dtype, device=layer.grid.device)
                xs = lo[:, None].to(t.dtype) + (hi - lo)[:, None].to(t.dtype) * t          # [in, P]
                phi = layer.edge_activations(xs.T.contiguous()).permute(1, 2, 0)          # [in, out, P]
                paths.append(path)
                curves.append((xs, phi))
        out = {}
        for path, (xs, phi) in zip(paths, curves):
            out[key("edge_curve", path)] = phi
            out[key("edge_curve_x", path)] = xs
        return out


class EdgeImportance(Probe):
    """pykan's edge attribution scores on ``split`` for a ``KAN`` or ``PyKAN`` (the scores ``prune`` uses)."""

    name = "edge_importance"
    needs_task = True

    def __init__(self, every: int = 10, split: str = "train", max_examples: int = 4096):
        super().__init__(every)
        self.split, self.max_examples = split, max_examples

    @torch.no_grad()
    def __call__(self, view) -> dict:
        model = view.model
        x = _eval_inputs(view, self.split, self.max_examples)
        if _is_pykan(model):
            scores = model.attribute(x)
            paths = [f"kan.act_fun.{l}" for l in range(len(scores))]
        else:
            from ..models.kan import KAN

            if not isinstance(model, KAN):
                raise ValueError(f"EdgeImportance needs a KAN or PyKAN model, got {type(model).__name__}")
            edge_std, node_std, a = [], [], x.to(model.layers[0].grid.dtype)
            for layer in model.layers:
                acts = layer.edge_activations(a)                               # [B, in, out]
                edge_std.append(acts.std(0))
                a = acts.sum(1)
                node_std.append(a.std(0))
            scores, _ = kan_attribution(edge_std, node_std)
            paths = [f"layers.{l}" for l in range(len(scores))]
        out = {}
        for path, s in zip(paths, scores):
            out[key("edge_score", path)] = s
            out[key("edge_score_sum", path)] = float(s.sum())
        return out


class FitError(Probe):
    """``rmse/<split>``: root-mean-square error of the model on every evaluation set, in eval mode."""

    name = "fit_error"
    needs_task = True

    def __init__(self, every: int = 1):
        super().__init__(every)

    @torch.no_grad()
    def __call__(self, view) -> dict:
        was = view.model.training
        view.model.eval()
        try:
            out = {}
            for split, (x, y) in view.task.eval_sets().items():
                pred = view.model(x)
                out[key("rmse", split)] = float(((pred - y.to(pred.dtype)) ** 2).mean().sqrt())
            return out
        finally:
            view.model.train(was)


def plot_edge_curves(fig, history, layer: str, step: int | None = None, max_edges: int = 64):
    """Draw the recorded curves of one KAN layer at the recorded step nearest ``step`` (default: the last) as an
    ``out × in`` grid of small panels on the matplotlib figure ``fig``. Returns the step drawn."""
    curves, xs = history[key("edge_curve", layer)], history[key("edge_curve_x", layer)]
    idx = len(curves.steps) - 1 if step is None else min(range(len(curves.steps)),
                                                         key=lambda i: abs(curves.steps[i] - step))
    phi, x = curves.values[idx], xs.values[idx]
    n_in, n_out = phi.shape[0], phi.shape[1]
    if n_in * n_out > max_edges:
        raise ValueError(f"layer {layer!r} has {n_in * n_out} edges; raise max_edges to draw them all")
    fig.clear()
    axes = fig.subplots(n_out, n_in, squeeze=False)
    for j in range(n_out):
        for i in range(n_in):
            ax = axes[j][i]
            ax.plot(x[i].numpy(), phi[i, j].numpy(), lw=1.2)
            ax.set_xticks([])
            ax.set_yticks([])
            if j == n_out - 1:
                ax.set_xlabel(f"in {i}", fontsize=7)
            if i == 0:
                ax.set_ylabel(f"out {j}", fontsize=7)
    fig.suptitle(f"{layer} — step {curves.steps[idx]}", fontsize=9)
    return curves.steps[idx]
