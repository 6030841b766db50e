"""Moved: the B-spline math (the torch twin of ``orthoscope.kernels.kan_spline``) now lives in
``orthoscope.kernels.bspline``, below every caller of the kernel seam (docs/design.md, "Layers"). This alias keeps
``from orthoscope.models.kan_spline import …`` working; it will be removed in a later release."""
import warnings as _warnings

from ..kernels.bspline import *  # noqa: F401,F403
from ..kernels.bspline import (_cardinal_pieces, _uniform_spacing, bspline_basis, check_spline_args,  # noqa: F401
                               curve_to_coef, extend_grid, grid_from_samples, kan_spline_torch, matmul_nt,
                               uniform_grid)

_warnings.warn("orthoscope.models.kan_spline moved to orthoscope.kernels.bspline", DeprecationWarning, stacklevel=2)
