"""Reparametrizations attached to unmodified models by module path: POET, OFT, BOFT, QOFT, LoRA, …"""
from .core import (AdapterLayer, adapter_layers, apply_adapter, mark_only_adapters_trainable, matched_modules,
                   merge_all, remove_adapters, unmerge_all)
from .registry import ADAPTERS, AdaptedLayer, AdapterConfig, AdapterMethod, attach, list_targets, register_adapter
from .lora import LoRA, LoRAConfig
from .sora import SoRA, SoRAConfig
from .oft import OFT, OFTConfig
from .boft import BOFT, BOFTConfig
from .qoft import QOFT, QOFTConfig
from .poet import POET, POETLinear, count_poet_parameters, poet_layers
from .peft_format import from_peft, load_peft, save_peft, to_peft
from .hf import out_in_weight, shared_weights

__all__ = ["AdapterLayer", "apply_adapter", "matched_modules", "adapter_layers", "mark_only_adapters_trainable",
           "merge_all", "unmerge_all", "remove_adapters",
           # finetuning adapters (docs/adapters.md)
           "ADAPTERS", "AdaptedLayer", "AdapterConfig", "AdapterMethod", "attach", "list_targets", "register_adapter",
           "LoRA", "LoRAConfig", "SoRA", "SoRAConfig", "OFT", "OFTConfig", "BOFT", "BOFTConfig", "QOFT", "QOFTConfig",
           # POET pretraining (docs/ortho.md)
           "POET", "POETLinear", "count_poet_parameters", "poet_layers",
           # peft's on-disk format (OFT, LoRA, SoRA as LoRA, BOFT) and Hugging Face helpers (docs/adapters.md)
           "save_peft", "load_peft", "to_peft", "from_peft", "out_in_weight", "shared_weights"]
