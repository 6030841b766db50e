"""Read-only observers of a run (DESIGN §3). See ``base.Probe``; pure math lives in ``metrics``."""
from .base import Probe, weight_matrices
from .esd import ESD, PowerLawFit, alpha_over_time, esd_eigenvalues, fit_power_law
from .geometry import ActivationGeometry, CapabilityDrift, WeightGeometry
from .harmonic import CenterGeometry, DistanceMargin
from .kan import EdgeCurves, EdgeImportance, FitError
from .lr import LearningRate
from .orthogonal import OrthogonalityError, RotationCosine, SpectrumDrift
from .sharpness import Sharpness
from .spectrum import Energy, Spectrum, WeightNorm
from .training import Evaluate, GradNorm


def default_probes(every: int = 20) -> list[Probe]:
    """Evaluation loss/accuracy, spectra of every weight matrix, weight norms, HE (s = 1) and gradient norm.

    ``every = 20`` keeps them under 10% of a run's time: evaluating a full-batch task forwards the whole table (for
    the demo, twice the training set) and costs ~0.7 of a training step, so every 10 steps cost +11% of CPU time on
    the demo run and every 20 about half that (benchmarks/bench_spine.py; BENCHMARKS.md, "Spine")."""
    return [Evaluate(every), Spectrum(every), WeightNorm(every), Energy(every, s=(1,)), GradNorm(every)]


__all__ = ["Probe", "Evaluate", "GradNorm", "LearningRate", "Spectrum", "WeightNorm", "Energy", "default_probes",
           "weight_matrices",
           "WeightGeometry", "ActivationGeometry", "CapabilityDrift",
           "OrthogonalityError", "RotationCosine", "SpectrumDrift",
           "CenterGeometry", "DistanceMargin", "EdgeCurves", "EdgeImportance", "FitError",
           "Sharpness",
           "ESD", "PowerLawFit", "fit_power_law", "esd_eigenvalues", "alpha_over_time"]
