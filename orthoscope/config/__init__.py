"""A run as data and as a job: its config, the run directory it trains into, and the ``orthoscope train`` command.

* ``format`` — the config's keys, defaults, checks, overrides and files (YAML/JSON), and the registries of every
  task, model, method and probe a config may name (its public names are re-exported here);
* ``specs`` — the task, model and probe sections: a notebook object described as data, and built back;
* ``build`` — a ``Run`` from a config and back (``build_run``, ``run_config``; ``Run.from_config`` and
  ``run.config`` call these);
* ``rundir`` — the run directory (config, streamed History, sharded checkpoints with retention, resume);
* ``train`` — ``python -m orthoscope train CONFIG key=value …``;
* ``method_settings`` — every method's settings and defaults (``python -m orthoscope methods``, docs/methods.md).

See docs/scale.md.
"""
from .build import build_run, from_config, run_config  # noqa: F401
from .format import (DEFAULTS, KEYS, METHOD_MODULES, ConfigError, apply_overrides, construct, describe,  # noqa: F401
                     load_config, method_classes, model_classes, normalize, parse_yaml, probe_classes, save_config,
                     task_classes)

__all__ = ["load_config", "save_config", "apply_overrides", "normalize", "parse_yaml", "describe", "construct",
           "method_classes", "task_classes", "model_classes", "probe_classes", "ConfigError", "DEFAULTS", "KEYS",
           "METHOD_MODULES", "build_run", "from_config", "run_config"]
