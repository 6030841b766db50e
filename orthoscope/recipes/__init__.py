"""Recipes: ready-made ways to train one kind of model with a ``Run``.

* ``llm`` — a Hugging Face Llama built from a config, with the methods and probes configured for it
  (``llm_method``, ``llm_probes``; the model is ``orthoscope.models.llama``, the tasks ``orthoscope.tasks.tokens``);
* ``kan_fit`` — fitting a KAN to a formula as pykan does (its task, objective, LBFGS, grid update, refine, prune).

The toy models of the physics-of-learning papers are recipes too, in ``orthoscope.zoo``; so are the arena's
finetune-and-forget comparisons (``orthoscope.arena``) and the course checks (``orthoscope.course``).
"""
