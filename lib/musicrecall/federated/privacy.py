"""Privacy accounting of party B's noisy embedding releases (the Gaussian mechanism with clipping).

**Mechanism.** Each time party A asks for user ``u``'s embedding, B computes ``e = f_B(x_u)``, clips it to
L2 norm ``C`` and releases ``e + N(0, (sigma C)^2 I)`` (:meth:`musicrecall.federated.party_b.PartyB.on_embed`).

**Neighbouring data and sensitivity.** Two tables that differ in *one user's features* (replace-one). The
clipped row of that user can move anywhere in the ball of radius ``C``, so the L2 sensitivity of one
release is ``Delta = 2C`` and one release is a Gaussian mechanism with ``Delta / (sigma C) = 2 / sigma``.

**Composition.** A user's row is released once per training batch the user is in (up to
``max_per_user`` plays per pass), once per validation (``RunConfig.validations_per_pass`` a pass, for
the validation users) and once at serving. There is **no
amplification by subsampling**: A chooses the batches and knows who is in each, so every release of
``u`` counts in full. ``r`` releases of Gaussian mechanisms compose *exactly* to one Gaussian mechanism
with ``mu = sqrt(r) * Delta / (sigma C) = 2 sqrt(r) / sigma`` (mu-Gaussian DP; Dong, Roth & Su, *Gaussian
Differential Privacy*, JRSS-B 2022, Cor. 3.3), whose (epsilon, delta) curve is exact (Balle & Wang,
*Improving the Gaussian mechanism*, ICML 2018, Thm 8):

    delta(eps) = Phi(-eps / mu + mu / 2) - e^eps Phi(-eps / mu - mu / 2).

:func:`gdp_epsilon` inverts it (the tight figure the notebook reports). :func:`rdp_epsilon` is the
Rényi-DP / moments accountant (Mironov, CSF 2017; Abadi et al., CCS 2016) with the RDP->(eps, delta)
conversion used by Opacus and TF-Privacy (Balle et al., AISTATS 2020, Thm 21): an upper bound, given so the
figure can be compared with papers that report it. :func:`zcdp_epsilon` (Bun & Steinke 2016) is the
older, looser bound.

**What the epsilon covers, and what it does not.** It bounds what the *released rows of user u* say
about *u's features*, with B's tower weights treated as fixed. B's tower is trained on every aligned
user's features without DP-SGD, so the weights, and therefore the later releases of *other* users,
also depend on ``u``: the figure is a per-row (local) guarantee of the released embeddings, not a DP
guarantee of the whole training. A's gradients (label information) are not protected at all.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import log_ndtr, ndtr

DEFAULT_ORDERS = tuple([1.0 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)) + [128, 256, 512, 1024])


def release_sensitivity(clip_norm: float) -> float:
    """L2 sensitivity of one clipped release under replace-one neighbours: ``2 C``."""
    return 2.0 * float(clip_norm)


def gdp_mu(releases: int, noise_multiplier: float) -> float:
    """``mu`` of ``releases`` Gaussian releases with noise ``sigma C`` and sensitivity ``2C``: ``2 sqrt(r) / sigma``."""
    if noise_multiplier <= 0:
        return math.inf
    return 2.0 * math.sqrt(releases) / noise_multiplier


def gdp_delta(epsilon: float, mu: float) -> float:
    """The exact delta at ``epsilon`` of a mu-GDP mechanism (computed in log space: no overflow at large eps)."""
    if mu <= 0:
        return 0.0
    a = ndtr(-epsilon / mu + mu / 2.0)
    b = math.exp(epsilon + log_ndtr(-epsilon / mu - mu / 2.0))
    return max(float(a - b), 0.0)


def gdp_epsilon(mu: float, delta: float = 1e-5, tol: float = 1e-9) -> float:
    """The smallest epsilon with ``gdp_delta(epsilon, mu) <= delta`` (bisection; delta(eps) is decreasing)."""
    if not math.isfinite(mu):
        return math.inf
    if mu <= 0 or gdp_delta(0.0, mu) <= delta:
        return 0.0
    lo, hi = 0.0, 1.0
    while gdp_delta(hi, mu) > delta:
        lo, hi = hi, 2.0 * hi
    while hi - lo > tol * max(1.0, hi):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if gdp_delta(mid, mu) > delta else (lo, mid)
    return hi


def rdp_epsilon(releases: int, noise_multiplier: float, delta: float = 1e-5,
                orders: tuple[float, ...] = DEFAULT_ORDERS) -> tuple[float, float]:
    """``(epsilon, best order)`` of the Rényi-DP accountant: one release is ``(alpha, alpha s^2 / 2)``-RDP with
    ``s = Delta / (sigma C) = 2 / sigma``, ``r`` releases add up, and the conversion is
    ``eps = rdp - (ln delta + ln alpha) / (alpha - 1) + ln((alpha - 1) / alpha)``."""
    if noise_multiplier <= 0:
        return math.inf, math.nan
    a = np.asarray(orders, dtype=np.float64)
    rdp = releases * a * (2.0 / noise_multiplier) ** 2 / 2.0
    eps = rdp - (math.log(delta) + np.log(a)) / (a - 1.0) + np.log((a - 1.0) / a)
    i = int(np.argmin(eps))
    return max(float(eps[i]), 0.0), float(a[i])


def zcdp_epsilon(releases: int, noise_multiplier: float, delta: float = 1e-5) -> float:
    """The zCDP bound: each release is ``rho = 2 / sigma^2``-zCDP, ``r`` releases ``r rho``, and
    ``eps = rho + 2 sqrt(rho ln(1/delta))`` (Bun & Steinke, TCC 2016, Prop. 1.3). Looser than :func:`gdp_epsilon`."""
    if noise_multiplier <= 0 or releases == 0:
        return math.inf if releases else 0.0
    rho = releases * 2.0 / noise_multiplier**2
    return rho + 2.0 * math.sqrt(rho * math.log(1.0 / delta))


def noise_for_epsilon(epsilon: float, releases: int, delta: float = 1e-5) -> float:
    """The noise multiplier ``sigma`` at which ``releases`` releases are exactly (epsilon, delta)-DP (tight)."""
    lo, hi = 1e-6, 1e3  # bisection on mu: gdp_epsilon grows with mu
    for _ in range(200):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if gdp_epsilon(mid, delta) < epsilon else (lo, mid)
    return 2.0 * math.sqrt(releases) / lo


def privacy_report(releases: int, noise_multiplier: float, clip_norm: float | None, delta: float = 1e-5
                   ) -> dict[str, float]:
    """Every figure of the accounting for one tower: sensitivity, mu, the tight epsilon (GDP), the RDP and
    zCDP bounds, and the per-release epsilon. Without clipping there is no bound (epsilon = inf)."""
    if not clip_norm or noise_multiplier <= 0:
        return {"releases": releases, "noise_multiplier": noise_multiplier, "clip_norm": float(clip_norm or 0.0),
                "sensitivity": math.inf, "delta": delta, "mu": math.inf, "epsilon": math.inf,
                "epsilon_rdp": math.inf, "epsilon_zcdp": math.inf, "epsilon_one_release": math.inf}
    mu = gdp_mu(releases, noise_multiplier)
    return {"releases": releases, "noise_multiplier": noise_multiplier, "clip_norm": float(clip_norm),
            "sensitivity": release_sensitivity(clip_norm), "delta": delta, "mu": mu,
            "epsilon": gdp_epsilon(mu, delta), "epsilon_rdp": rdp_epsilon(releases, noise_multiplier, delta)[0],
            "epsilon_zcdp": zcdp_epsilon(releases, noise_multiplier, delta),
            "epsilon_one_release": gdp_epsilon(gdp_mu(1, noise_multiplier), delta)}
