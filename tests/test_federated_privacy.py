"""The privacy accountant of party B's noisy releases against independent and published values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats

from musicrecall.federated.privacy import (
    gdp_delta,
    gdp_epsilon,
    gdp_mu,
    noise_for_epsilon,
    privacy_report,
    rdp_epsilon,
    release_sensitivity,
    zcdp_epsilon,
)


def hockey_stick(epsilon: float, mu: float) -> float:
    """delta(eps) of N(mu, 1) vs N(0, 1) by numerical integration of max(0, p - e^eps q): the definition,
    not the closed form."""
    p, q = stats.norm(mu, 1).pdf, stats.norm(0, 1).pdf
    val, _ = integrate.quad(lambda x: max(0.0, p(x) - math.exp(epsilon) * q(x)), -20, mu + 20, limit=400,
                            points=[epsilon / mu + mu / 2])
    return val


@pytest.mark.parametrize(("epsilon", "mu"), [(0.5, 1.0), (1.0, 1.0), (2.0, 2.0), (3.0, 0.7), (10.0, 4.0)])
def test_gdp_delta_is_the_hockey_stick_divergence_of_two_gaussians(epsilon, mu):
    assert gdp_delta(epsilon, mu) == pytest.approx(hockey_stick(epsilon, mu), rel=1e-5, abs=1e-12)


def test_one_gdp_gives_the_published_delta_at_epsilon_one():
    # the closed form (Balle & Wang 2018, Thm 8) at mu = 1, eps = 1; the integration test checks the curve
    assert gdp_delta(1.0, 1.0) == pytest.approx(0.1269, abs=1e-4)
    assert gdp_epsilon(1.0, gdp_delta(1.0, 1.0)) == pytest.approx(1.0, rel=1e-6)


def test_the_classic_gaussian_mechanism_calibration_is_respected():
    # Dwork & Roth (2014) Thm A.1: sigma = sqrt(2 ln(1.25/delta)) Delta / eps gives (eps, delta)-DP for eps < 1;
    # the tight accountant must find at most eps there (and not absurdly less: the classic bound is ~2x loose)
    for eps, delta in ((0.5, 1e-5), (0.9, 1e-6)):
        sigma_over_delta = math.sqrt(2 * math.log(1.25 / delta)) / eps
        tight = gdp_epsilon(1.0 / sigma_over_delta, delta)
        assert 0.3 * eps < tight <= eps


def test_composition_is_exact_and_the_bounds_are_ordered():
    # r releases at sigma compose to one mechanism with sqrt(r) times the sensitivity ratio
    assert gdp_mu(16, 2.0) == pytest.approx(4 * gdp_mu(1, 2.0))
    assert release_sensitivity(1.5) == 3.0
    for r, sigma in ((1, 1.0), (33, 1.0), (100, 8.0), (5, 20.0)):
        tight = gdp_epsilon(gdp_mu(r, sigma), 1e-5)
        rdp, _ = rdp_epsilon(r, sigma, 1e-5)
        assert tight <= rdp * (1 + 1e-9) <= zcdp_epsilon(r, sigma, 1e-5) * (1 + 1e-9)
        assert rdp < 1.6 * tight + 0.5  # the RDP bound is close to the exact curve here


def test_rdp_of_one_gaussian_matches_the_closed_form_optimum():
    # one release with s = Delta / sigma: eps(alpha) = alpha s^2 / 2 - (ln delta + ln alpha)/(alpha-1) + ln(1 - 1/alpha)
    s = 2.0 / 4.0
    alphas = np.linspace(1.01, 400, 400_000)
    brute = (alphas * s * s / 2 - (np.log(1e-5) + np.log(alphas)) / (alphas - 1) + np.log((alphas - 1) / alphas)).min()
    assert rdp_epsilon(1, 4.0, 1e-5)[0] == pytest.approx(brute, rel=2e-3)


def test_the_notebook_setting_explains_epsilon_121_and_the_noise_that_would_fix_it():
    # sigma = C (noise_multiplier 1) against sensitivity 2C: one release is already eps ~ 10; 33 releases
    # (3 epochs x up to 10 batches, validation, serving) compose to ~114 (tight), ~121 with zCDP
    rep = privacy_report(33, 1.0, 1.0, 1e-5)
    assert rep["epsilon_one_release"] == pytest.approx(10.0, abs=0.1)
    assert 100 < rep["epsilon"] < rep["epsilon_zcdp"] == pytest.approx(121.1, abs=0.1)
    for target in (1.0, 8.0):
        sigma = noise_for_epsilon(target, 33)
        assert privacy_report(33, sigma, 1.0)["epsilon"] == pytest.approx(target, rel=1e-4)
    assert math.isinf(privacy_report(33, 1.0, None)["epsilon"])
