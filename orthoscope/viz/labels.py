"""Words for the Dashboard: a one-line explanation of a layer, for a student who has not read the model's code.

    describe_layer(run.model, "layers.0")
    # 'layers.0 — hidden layer 1 (Linear, 32 inputs → 32 outputs): its weight is a 32 × 32 matrix with 32
    #  singular values'

The role is guessed from the module path (embedding, attention projections, MLP up/down, output head, hidden layer);
the shape comes from the module's ``weight``. A path the model does not have (a watched run directory has no model)
gives the path alone.
"""
from __future__ import annotations

import re

_OUTPUT_ROLE = "the output layer (features → logits of the answers)"
# (pattern on the last path component or the whole path, role) — first match wins
_ROLES = (
    (r"(^|\.)(embed|embedding|wte|tok_emb|embed_tokens)$", "the token embedding (one row per token)"),
    (r"(^|\.)(wpe|pos_emb|pos_embed)$", "the position embedding (one row per position)"),
    (r"(^|\.)(q_proj|query|wq)$", "the query projection of self-attention"),
    (r"(^|\.)(k_proj|key|wk)$", "the key projection of self-attention"),
    (r"(^|\.)(v_proj|value|wv)$", "the value projection of self-attention"),
    (r"(^|\.)(o_proj|out_proj|wo)$", "the output projection of self-attention"),
    (r"(^|\.)(up|up_proj|fc1|gate_proj|c_fc)$", "the MLP's expanding matrix (width → MLP width)"),
    (r"(^|\.)(down|down_proj|fc2|c_proj)$", "the MLP's contracting matrix (MLP width → width)"),
    (r"(^|\.)(head|lm_head|unembed|readout|out|output)$", _OUTPUT_ROLE),
    (r"(^|\.)layers\.(\d+)$", "hidden layer {n}"),
)


def layer_role(path: str) -> str | None:
    """A human name for the module at ``path`` from its name alone (``"layers.0"`` → ``"hidden layer 1"``)."""
    for pattern, role in _ROLES:
        m = re.search(pattern, path)
        if m:
            return role.format(n=int(m.group(2)) + 1) if "{n}" in role else role
    return None


def _is_output_layer(model, path: str) -> bool:
    """The model's last module with a 2-D weight, when it is not an embedding: what computes the logits (an MLP's
    last ``layers.<i>`` is its output layer, not a hidden one)."""
    last = None
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        if getattr(weight, "ndim", 0) == 2 and type(module).__name__ != "Embedding":
            last = name
    return last == path


def describe_layer(model, path: str) -> str:
    """One line: the module's role, type and weight shape, and how many singular values it has."""
    role = layer_role(path)
    if (role is None or role.startswith("hidden layer")) and hasattr(model, "named_modules") and \
            _is_output_layer(model, path):
        role = _OUTPUT_ROLE
    module = None
    if model is not None:
        try:
            module = model.get_submodule(path)
        except (AttributeError, TypeError):
            module = None
    weight = getattr(module, "weight", None)
    shape = tuple(getattr(weight, "shape", ()))
    head = f"{path} — {role}" if role else path
    if len(shape) != 2:
        return head
    rows, cols = shape
    kind = type(module).__name__
    if kind == "Embedding":
        what = f"{kind}, {rows} tokens × {cols} features"
    else:
        what = f"{kind}, {cols} inputs → {rows} outputs"
    return f"{head} ({what}): its weight is a {rows} × {cols} matrix with {min(rows, cols)} singular values"


__all__ = ["describe_layer", "layer_role"]
