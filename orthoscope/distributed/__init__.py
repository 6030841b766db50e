"""The distributed seam: how a ``Run`` executes under ``torchrun``, with PyTorch's own machinery.

* ``seam`` — process group, DDP or FSDP2 (``fully_shard`` on a ``DeviceMesh``), each rank's share of the global
  batch, probes that read sharded weights (its public names are re-exported here);
* ``sharding`` — per-block FSDP2: each repeated block its own ``fully_shard`` unit, prefetch, fp32/bf16 policy;
* ``matrices`` — whole-matrix optimizers (Muon, Pion, Hyperball) across ranks: each matrix updated by one owner;
* ``checkpoint`` — sharded checkpoints with ``torch.distributed.checkpoint`` (save at one world size, resume at
  another), and ``matrix_state`` — the owned matrix optimizer state in them;
* ``pretrained`` — a model built on the meta device, sharded, then filled: local Hugging Face safetensors (each rank
  reads only its rows) or a random init seeded per parameter.

See docs/distributed.md.
"""
from .seam import (ENV_MODE, MODES, DistributedError, Seam, full, full_state, global_batch_size,  # noqa: F401
                   init_process_group, local, resolve_mode, setup, sharded_grad_norm, under_torchrun, write_rows)

__all__ = ["DistributedError", "Seam", "setup", "under_torchrun", "resolve_mode", "init_process_group",
           "global_batch_size", "sharded_grad_norm", "write_rows", "local", "full", "full_state", "MODES",
           "ENV_MODE"]
