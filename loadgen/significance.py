"""Small-sample statistics for telling a change from noise: Student's t and a percentile's sampling error.

Pure functions over floats (and a LatencyHistogram), so `compare` needs no SciPy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from loadgen.histogram import LatencyHistogram

# The order-statistic interval read from a histogram is this many standard errors either side:
# a 95% interval, wide enough to span several buckets, narrow enough to stay inside the data.
ORDER_STATISTIC_Z = 1.959964
_EPSILON = 1e-15
_TINY = 1e-300
_MAX_TERMS = 10_000


def _beta_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function (modified Lentz's method)."""

    def nonzero(value: float) -> float:
        return value if abs(value) > _TINY else _TINY

    c, d = 1.0, 1.0 / nonzero(1.0 - (a + b) * x / (a + 1.0))
    fraction = d
    for m in range(1, _MAX_TERMS):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):  # fmt: skip
            d = 1.0 / nonzero(1.0 + numerator * d)
            c = nonzero(1.0 + numerator / c)
            fraction *= d * c
        if abs(d * c - 1.0) < _EPSILON:
            break
    return fraction


def regularized_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b), the regularized incomplete beta function, for a, b > 0 and 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    # The fraction converges fast on this side of the mean; the other side uses the symmetry I_x(a,b) = 1 - I_1-x(b,a).
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_fraction(a, b, x) / a
    return 1.0 - front * _beta_fraction(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with `df` degrees of freedom (any real df > 0)."""
    tail = 0.5 * regularized_beta(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The t with P(T <= t) = p (0 < p < 1), by bisection on `t_cdf`."""
    if not 0.0 < p < 1.0:
        raise ValueError("p must be between 0 and 1")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    low, high = 0.0, 1.0
    while t_cdf(high, df) < p:  # doubling: at most ~60 steps even for df near 0 and p near 1
        low, high = high, high * 2.0
    for _ in range(200):
        middle = (low + high) / 2.0
        if middle in (low, high):
            break
        low, high = (middle, high) if t_cdf(middle, df) < p else (low, middle)
    return (low + high) / 2.0


def welch_df(parts: Sequence[tuple[float, float]]) -> float:
    """Welch–Satterthwaite degrees of freedom of a sum of independent variances, each (variance, its df).

    It lies between the smallest part's df and the sum of all of them; with every variance 0, the sum.
    """
    total = sum(variance for variance, _ in parts)
    if total == 0.0:
        return sum(df for _, df in parts)
    return total * total / sum(variance * variance / df for variance, df in parts)


def window_standard_error(values: Sequence[float]) -> float:
    """Standard error of the mean of per-window figures: sample std / sqrt(k) (k >= 2)."""
    k = len(values)
    mean = sum(values) / k
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (k - 1) / k)


def mean_standard_error_ns(histogram: LatencyHistogram) -> float:
    """Sampling error of the mean latency: std / sqrt(n)."""
    return histogram.std / math.sqrt(histogram.count)


def percentile_standard_error_ns(histogram: LatencyHistogram, percentile: float) -> float:
    """Sampling error of a latency percentile, free of any assumed distribution.

    The sample's p-quantile lies between the order statistics of ranks n·p ± z·sqrt(n·p·(1−p))
    with probability ~95% (the binomial count below it): half that interval's width, read from
    the histogram, over z is the standard error. Ranks off either end are clipped to min and max,
    so with few samples beyond the percentile (p99 of a few hundred) it errs on the large side.
    """
    n, p = histogram.count, percentile / 100.0
    if n < 2:
        return 0.0
    centre, half = p * (n - 1), ORDER_STATISTIC_Z * math.sqrt(n * p * (1.0 - p))
    low_rank, high_rank = max(0, math.floor(centre - half)), min(n - 1, math.ceil(centre + half))
    low, high = (histogram.percentile(100.0 * rank / (n - 1)) for rank in (low_rank, high_rank))
    return (high - low) / (2.0 * ORDER_STATISTIC_Z)
