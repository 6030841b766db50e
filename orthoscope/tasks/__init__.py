"""Tasks: data + the metrics that make sense for it. Every task follows ``orthoscope.tasks.base.Task``."""
from .base import Task
from .dataset import DatasetTask
from .digits import Digits
from .modular import ModularArithmetic
from .tinylang import TinyLang
from .tokenfile import TokenFile

__all__ = ["Task", "DatasetTask", "ModularArithmetic", "Digits", "TinyLang", "TokenFile"]
