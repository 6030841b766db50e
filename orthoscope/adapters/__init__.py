"""Reparametrizations attached to unmodified models by module path: POET, OFT, BOFT, QOFT, LoRA, …"""
from .core import (AdapterLayer, adapter_layers, apply_adapter, mark_only_adapters_trainable, matched_modules,
                   merge_all, remove_adapters, unmerge_all)

__all__ = ["AdapterLayer", "apply_adapter", "matched_modules", "adapter_layers", "mark_only_adapters_trainable",
           "merge_all", "unmerge_all", "remove_adapters"]
