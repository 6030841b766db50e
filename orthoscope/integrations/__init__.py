"""Thin adapters of the recorder (``orthoscope.observe``) to the trainers people already run.

    from orthoscope.integrations.hf import OrthoscopeCallback            # transformers.Trainer(callbacks=[...])
    from orthoscope.integrations.lightning import OrthoscopeCallback     # lightning.Trainer(callbacks=[...])

Each imports its framework when imported itself (never on ``import orthoscope``) and names the extra to install
when it is missing. A loop under torchrun (DDP or FSDP2) needs no adapter: ``orthoscope.observe`` on every rank.
See docs/own_loop.md.
"""
