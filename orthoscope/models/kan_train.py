"""Moved: the KAN fitting recipe (a task, pykan's objective and optimizer, the grid interventions, ``hellokan``) is a
trainer, so it now lives beside the other trainers as ``orthoscope.kan_train`` (docs/design.md, "Layers"). This
alias keeps ``from orthoscope.models.kan_train import …`` working; it will be removed in a later release."""
import warnings as _warnings

from ..kan_train import *  # noqa: F401,F403
from ..kan_train import (LBFGS, Adam, FunctionTask, GridUpdate, KANLoss, Prune, Refine, begin_fit,  # noqa: F401
                         hellokan)

_warnings.warn("orthoscope.models.kan_train moved to orthoscope.kan_train", DeprecationWarning, stacklevel=2)
