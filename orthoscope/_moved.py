"""Old import paths: the modules that moved when the package's folders took the shape of its layers (docs/design.md,
"Layers"), each still importable by its old name for a while, with a ``DeprecationWarning``.

``import orthoscope.run`` gives *the same module object* as ``import orthoscope.training.run`` (not a copy), so
classes keep their identity and a monkeypatch through either name reaches the code. One table, one finder — not a
stub file per old name: the root of the package stays the few modules that belong there.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import os
import sys
import warnings

MOVED = {
    "orthoscope.validate": "orthoscope.core.validate",
    "orthoscope.version": "orthoscope.core.version",
    "orthoscope.keys": "orthoscope.core.keys",
    "orthoscope.memory": "orthoscope.core.memory",
    "orthoscope.checkpoint": "orthoscope.core.checkpoint",
    "orthoscope.history": "orthoscope.core.history",
    "orthoscope.targets": "orthoscope.core.targets",
    "orthoscope.losses": "orthoscope.methods.losses",
    "orthoscope.schedules": "orthoscope.methods.schedules",
    "orthoscope.distributed_matrices": "orthoscope.distributed.matrices",
    "orthoscope.distributed_matrix_state": "orthoscope.distributed.matrix_state",
    "orthoscope.distributed_checkpoint": "orthoscope.distributed.checkpoint",
    "orthoscope.run": "orthoscope.training.run",
    "orthoscope.run_checks": "orthoscope.training.checks",
    "orthoscope.run_state": "orthoscope.training.state",
    "orthoscope.specs": "orthoscope.config.specs",
    "orthoscope.config_run": "orthoscope.config.build",
    "orthoscope.method_settings": "orthoscope.config.method_settings",
    "orthoscope.rundir": "orthoscope.config.rundir",
    "orthoscope.train": "orthoscope.config.train",
    "orthoscope.llm": "orthoscope.recipes.llm",
    "orthoscope.kan_train": "orthoscope.recipes.kan_fit",
    "orthoscope.scaling": "orthoscope.zoo.scaling",
    "orthoscope.report": "orthoscope.viz.report",
    "orthoscope.models.kan_train": "orthoscope.recipes.kan_fit",        # moved earlier (issue 12), moved again
    "orthoscope.models.kan_spline": "orthoscope.kernels.bspline",      # moved earlier (issue 12)
}
# orthoscope.methods, orthoscope.config and orthoscope.distributed became packages of the same name, which re-export
# what the old modules offered, so they need no alias.
_IN_BETWEEN = (__file__, os.path.join(os.path.dirname(__file__), "__init__.py"), importlib.__file__)


def _caller_stacklevel() -> int:
    """The ``stacklevel`` that points a warning at the code that wrote the import. ``warnings.warn`` itself skips the
    import system's frozen frames when it counts, so only the other frames in between are counted here: this module,
    ``importlib.import_module`` and the package root's ``__getattr__``."""
    def frozen(code):
        return "importlib" in code.co_filename and "_bootstrap" in code.co_filename

    frame, level = sys._getframe(1), 1                  # the frame that calls warnings.warn is level 1
    while frame.f_back is not None and (frozen(frame.f_code) or frame.f_code.co_filename in _IN_BETWEEN):
        frame = frame.f_back
        level += not frozen(frame.f_code)
    return level


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds an old name in ``MOVED`` and loads it as the module at the new name."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def __init__(self):
        self._real_specs = {}

    def create_module(self, spec):
        new = MOVED[spec.name]
        warnings.warn(f"{spec.name} moved to {new}; import it from there (the old name will be removed)",
                      DeprecationWarning, stacklevel=_caller_stacklevel())
        module = importlib.import_module(new)
        self._real_specs[spec.name] = module.__spec__
        return module

    def exec_module(self, module):
        # The import system has just set the module's __spec__ to the alias's; give it back its own, so the module
        # still knows its real name (importlib.reload, pickling by module name).
        module.__spec__ = self._real_specs[module.__spec__.name]


def install() -> None:
    if not any(isinstance(f, _Alias) for f in sys.meta_path):
        sys.meta_path.append(_Alias())
