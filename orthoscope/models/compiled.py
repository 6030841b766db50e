"""``torch.compile`` of a model's repeated blocks, in place: the switch behind ``compile: true`` in a run config.

    compile_blocks(model)                          # each block of repeated_blocks(model), inductor
    compile_blocks(model, backend="aot_eager")     # any torch.compile keyword: backend, mode, fullgraph, dynamic

Compiling block by block, not the whole model, is what torchtitan does for its Llama (``torch.compile`` of each
``TransformerBlock``, before FSDP2 wraps them): every block has the same code, so Inductor's graph cache compiles it
about once, a graph break stays inside one block, and the loss, the optimizer and the probes outside the blocks
stay eager. The blocks are ``orthoscope.models.blocks.repeated_blocks(model)`` — the one rule per-block FSDP2 and
activation checkpointing use too.

**How.** Each block's ``forward`` becomes a compiled function bound to the block (an attribute of the instance), so:
parameter names and ``state_dict`` keys are unchanged (``torch.compile(block)`` set back into its container would
insert ``_orig_mod.`` into every name, breaking adapters' targets, probes' module rules and checkpoints); hooks on
the block itself (FSDP2's per-block all-gathers, activation probes) run eagerly around the compiled forward; an
adapter attached after compiling (``Run`` attaches the method's adapter after the model is built) is inside the
block when it is first called, which is when Dynamo traces it. The compiled function is a small trampoline in this
file that calls the class's ``forward``: ``torch.compile`` of a function that lives in ``torch.nn`` itself
(``nn.Linear.forward``, ``Module._call_impl`` — what ``nn.Module.compile()`` compiles) is skipped *silently* by
Dynamo in this torch (frame in its skipfiles list; measured: no graph at all), whereas a trampoline is traced and the
``torch.nn`` code inlined into its graph.

A deep copy of a compiled model is compiled too (the bound method is re-bound to the copy); compiled code is never
saved in checkpoints (only weights are).
"""
from __future__ import annotations

import types

from torch import nn

from .blocks import repeated_blocks

OPTIONS = ("backend", "mode", "fullgraph", "dynamic")
MARK = "compile_options"          # the model attribute that records how its blocks were compiled (run.config reads it)


def compile_blocks(model: nn.Module, **options) -> list[str]:
    """Compile each of ``repeated_blocks(model)`` in place with ``torch.compile(**options)``; returns their names.

    ``options``: ``backend`` (default ``"inductor"``; a name or a backend function), ``mode``, ``fullgraph``, ``dynamic`` — as ``torch.compile``.
    Raises ``ValueError`` when the model repeats no block, is compiled already, or an option is unknown, and
    ``RuntimeError`` when this Python/torch cannot compile at all."""
    check_options(options, "compile_blocks")
    if getattr(model, MARK, None) is not None:
        raise ValueError(f"compile_blocks: this {type(model).__name__} is compiled already "
                         f"(options {getattr(model, MARK)!r}); compile a model once")
    blocks = repeated_blocks(model)
    if not blocks:
        raise ValueError(f"compile_blocks: {type(model).__name__} has no repeated blocks to compile (a block is a "
                         "child of an nn.ModuleList/nn.Sequential whose class occurs twice or more there; "
                         "orthoscope.models.blocks); compile the whole model yourself with torch.compile(model)")
    import torch._dynamo                       # heavy: only when compiling (binds torch here too)

    if not torch._dynamo.is_dynamo_supported():
        raise RuntimeError("compile_blocks: torch.compile is not supported on this Python/torch build "
                           f"(torch {torch.__version__}); train without compile")
    for _, block in blocks:
        compiled = torch.compile(_forward_of(type(block)), **options)
        block.forward = types.MethodType(compiled, block)
    setattr(model, MARK, dict(options))
    return [name for name, _ in blocks]


def compile_options(model: nn.Module) -> dict | None:
    """The options ``compile_blocks`` compiled ``model``'s blocks with (``{}``: the defaults), or ``None``."""
    options = getattr(model, MARK, None)
    return None if options is None else dict(options)


def check_options(options: dict, where: str) -> None:
    """A clear ``ValueError`` for an option ``torch.compile`` would not take (checked before anything compiles)."""
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ValueError(f"{where}: unknown option {unknown[0]!r}; valid options: {list(OPTIONS)}")
    kinds = {"backend": (str,), "mode": (str, type(None)), "fullgraph": (bool,), "dynamic": (bool, type(None))}
    for name, value in options.items():
        if name == "backend" and callable(value):       # a backend function (Python only; a config names one)
            continue
        if not isinstance(value, kinds[name]):
            allowed = " or ".join("null" if k is type(None) else k.__name__ for k in kinds[name])
            raise ValueError(f"{where}: option {name!r} must be {allowed}, got {value!r:.60}")


_TRAMPOLINES: dict[type, types.FunctionType] = {}


def _forward_of(cls: type):
    """A function ``forward(self, ...)`` calling ``cls.forward`` — traced by Dynamo even where ``cls.forward`` lives
    in ``torch.nn`` (module docstring) — with a code object of its own per class.

    Dynamo keeps its compiled graphs (and its recompile limit, 8) per code object. One trampoline for every class
    would pool every compiled block of the process — decoder layers, Linear stacks, each in train and eval mode —
    under one limit, past which it silently runs eagerly; per class, blocks share a cache exactly as the instances
    of one class share ``torch.compile(block)``'s (the class's own ``forward``)."""
    if cls not in _TRAMPOLINES:
        def forward(self, *args, **kwargs):
            return cls.forward(self, *args, **kwargs)

        own = forward.__code__.replace(co_name=f"{cls.__name__}_forward")       # a new code object
        _TRAMPOLINES[cls] = types.FunctionType(own, forward.__globals__, own.co_name, None, forward.__closure__)
    return _TRAMPOLINES[cls]
