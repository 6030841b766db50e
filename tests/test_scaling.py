"""orthoscope.zoo.scaling: power-law fits recover planted exponents; sweeps collect what they are given."""
import math

import numpy as np
import pytest

from orthoscope.zoo.scaling import PowerLawFit, SweepResult, fit_power_law, plot_power_law, sweep


def planted(slope=-0.7, noise=0.1, n=25, seed=0, prefactor=3.0):
    rng = np.random.default_rng(seed)
    x = np.geomspace(10, 1e4, n)
    y = prefactor * x ** slope * np.exp(noise * rng.standard_normal(n))
    return x, y


@pytest.mark.parametrize("method", ["ols", "theil_sen"])
@pytest.mark.parametrize("slope", [-1.0, -0.4, -1 / 3, 0.5])
def test_fit_recovers_planted_exponent(method, slope):
    x, y = planted(slope=slope, noise=0.1)
    fit = fit_power_law(x, y, method=method)
    assert abs(fit.slope - slope) < 0.05
    assert fit.ci[0] < fit.slope < fit.ci[1]
    assert math.isclose(fit.exponent, -fit.slope)


def test_exact_power_law_is_exact():
    x = np.array([1.0, 2.0, 4.0, 8.0, 16.0])
    fit = fit_power_law(x, 5.0 * x ** -1.25)
    assert fit.slope == pytest.approx(-1.25, abs=1e-12)
    assert fit.prefactor == pytest.approx(5.0, rel=1e-12)
    assert fit.r2 == pytest.approx(1.0)
    np.testing.assert_allclose(fit.predict([32.0]), 5.0 * 32.0 ** -1.25)


def test_ols_interval_matches_textbook_formula():
    x, y = planted(noise=0.3, n=10, seed=3)
    fit = fit_power_law(x, y, confidence=0.9)
    from scipy import stats

    res = stats.linregress(np.log(x), np.log(y))
    half = stats.t.ppf(0.95, len(x) - 2) * res.stderr
    assert fit.slope == pytest.approx(res.slope, rel=1e-12)
    assert fit.ci == pytest.approx((res.slope - half, res.slope + half), rel=1e-10)


def test_ols_interval_coverage_is_about_nominal():
    # 200 noisy data sets: the 95 % interval should contain the true slope ~95 % of the time.
    hits = sum(fit_power_law(*planted(slope=-0.5, noise=0.3, n=8, seed=s)).contains(-0.5) for s in range(200))
    assert 0.89 <= hits / 200 <= 0.99


def test_theil_sen_shrugs_off_an_outlier():
    x, y = planted(slope=-1.0, noise=0.02, n=20)
    y[3] *= 50.0
    assert abs(fit_power_law(x, y, method="theil_sen").slope + 1.0) < 0.05
    assert abs(fit_power_law(x, y, method="ols").slope + 1.0) > 0.1


@pytest.mark.parametrize("x, y, match", [
    ([1, 2], [1, 2], "at least 3 points"),
    ([1, 2, 3], [1, 0, 3], "y must be finite and > 0"),
    ([1, -2, 3], [1, 2, 3], "x must be finite and > 0"),
    ([1, 2, 3], [1, 2], "same length"),
    ([2, 2, 2], [1, 2, 3], "two distinct"),
])
def test_fit_rejects_bad_data(x, y, match):
    with pytest.raises(ValueError, match=match):
        fit_power_law(x, y)


def test_fit_rejects_bad_options():
    x, y = planted()
    with pytest.raises(ValueError, match="method"):
        fit_power_law(x, y, method="huber-ish")
    with pytest.raises(ValueError, match="confidence"):
        fit_power_law(x, y, confidence=1.5)


def test_sweep_collects_sizes_by_seeds():
    calls = []

    def fn(size, seed):
        calls.append((size, seed))
        return {"loss": 2.0 * size ** -1.0 * (1 + 0.01 * seed), "other": float(seed)}

    result = sweep(fn, sizes=[4, 8, 16, 32], seeds=[0, 1, 2], progress=False)
    assert calls == [(s, r) for s in (4, 8, 16, 32) for r in (0, 1, 2)]
    assert result.sizes == [4, 8, 16, 32] and result.metrics == ["loss", "other"]
    x, y = result.points("loss")
    assert x.shape == y.shape == (12,)
    sizes, means = result.mean("loss")
    np.testing.assert_allclose(sizes, [4, 8, 16, 32])
    assert result.fit("loss").slope == pytest.approx(-1.0, abs=1e-3)
    assert list(result.to_frame().columns) == ["size", "seed", "loss", "other"]
    with pytest.raises(KeyError, match="no metric"):
        result.points("missing")


def test_sweep_float_results_are_metric_value():
    result = sweep(lambda s, r: float(s), sizes=[1, 2, 3], progress=False)
    assert result.points()[1].tolist() == [1.0, 2.0, 3.0]


def test_empty_sweep_is_a_clear_error():
    with pytest.raises(ValueError, match="empty `sizes`"):
        sweep(lambda s, r: 1.0, sizes=[])
    with pytest.raises(ValueError, match="empty `seeds`"):
        sweep(lambda s, r: 1.0, sizes=[1], seeds=[])
    with pytest.raises(TypeError, match="must return floats"):
        sweep(lambda s, r: "x", sizes=[1], progress=False)
    assert SweepResult([]).metrics == []


def test_plot_power_law_draws_points_line_and_band():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x, y = planted()
    fig, ax = plt.subplots()
    out = plot_power_law(ax, x, y, fit=fit_power_law(x, y), label="data", reference_slope=-1)
    assert out is ax and ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert len(ax.lines) == 2 and len(ax.collections) == 2        # fit + reference; scatter + band
    assert "slope" in ax.get_legend().get_texts()[1].get_text()
    plt.close(fig)


def test_powerlawfit_str_mentions_interval():
    fit = PowerLawFit(-1.0, 1.0, (-1.1, -0.9), "ols", 0.95, 5)
    assert "[-1.100, -0.900]" in str(fit)
