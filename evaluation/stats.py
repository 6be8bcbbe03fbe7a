"""Uncertainty over users: bootstrap confidence intervals and a paired test between two methods.

Users are the unit of resampling: a metric is a mean of per-user values, so both the interval
and the A/B test resample (or sign-flip) those per-user values. NaN values (e.g. diversity of a
list with one item) are left out of the mean, as in the point estimate.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as sps


def _clean(values: np.ndarray) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64).ravel()
    return v[~np.isnan(v)]


def bootstrap_means(values: np.ndarray, n_boot: int = 1000, seed: int = 0, *, chunk: int = 100) -> np.ndarray:
    """Means of ``n_boot`` resamples (with replacement, same size) of the non-NaN ``values``.

    Replicate ``b`` uses the ``b``-th block of ``n`` draws of ``default_rng(seed).integers(0, n)``;
    replicates are drawn ``chunk`` at a time to bound memory.
    """
    v = _clean(values)
    n = len(v)
    if n == 0:
        return np.full(n_boot, np.nan)
    rng = np.random.default_rng(seed)
    out = np.empty(n_boot)
    for start in range(0, n_boot, chunk):
        m = min(chunk, n_boot - start)
        idx = rng.integers(0, n, size=(m, n))
        out[start : start + m] = v[idx].mean(axis=1)
    return out


def bootstrap_ci(
    values: np.ndarray, n_boot: int = 1000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` over users."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    means = bootstrap_means(values, n_boot, seed)
    if np.isnan(means).all():
        return (math.nan, math.nan)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def sign_flip_pvalue(diffs: np.ndarray, n_perm: int = 10_000, seed: int = 0, *, chunk: int = 200) -> float:
    """Two-sided paired randomisation test of mean(diffs) = 0.

    Under the null hypothesis each user's difference is as likely to have either sign; the
    p-value is (1 + #{|mean of sign-flipped diffs| >= |observed mean|}) / (1 + n_perm).
    """
    d = _clean(diffs)
    n = len(d)
    if n == 0:
        return math.nan
    observed = abs(d.mean())
    rng = np.random.default_rng(seed)
    extreme = 0
    tol = 1e-12 * max(1.0, observed)
    for start in range(0, n_perm, chunk):
        m = min(chunk, n_perm - start)
        signs = rng.integers(0, 2, size=(m, n), dtype=np.int8) * 2 - 1
        means = np.abs(signs @ d) / n
        extreme += int((means >= observed - tol).sum())
    return (1.0 + extreme) / (1.0 + n_perm)


def paired_test(
    a: np.ndarray,
    b: np.ndarray,
    *,
    n_boot: int = 1000,
    n_perm: int = 10_000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, float]:
    """Compare two methods on the same users: per-user values ``a`` and ``b`` (aligned).

    Returns the means, their difference (a - b) with a bootstrap interval, the sign-flip
    randomisation p-value and the paired t-test p-value. Users where either value is NaN
    are left out of both.
    """
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired_test needs values for the same users: shapes {a.shape} and {b.shape}")
    keep = ~(np.isnan(a) | np.isnan(b))
    a, b = a[keep], b[keep]
    d = a - b
    lo, hi = bootstrap_ci(d, n_boot=n_boot, level=level, seed=seed)
    if len(d) > 1 and np.ptp(d) > 0:
        t_p = float(sps.ttest_rel(a, b).pvalue)
    else:
        t_p = 1.0 if len(d) else math.nan
    return {
        "n_users": int(len(d)),
        "mean_a": float(a.mean()) if len(a) else math.nan,
        "mean_b": float(b.mean()) if len(b) else math.nan,
        "diff": float(d.mean()) if len(d) else math.nan,
        "diff_ci": [lo, hi],
        "p_value": sign_flip_pvalue(d, n_perm=n_perm, seed=seed),
        "p_value_ttest": t_p,
        "wins": int((d > 0).sum()),
        "losses": int((d < 0).sum()),
    }
