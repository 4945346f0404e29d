"""A latency histogram with HdrHistogram's bucket layout, built and merged with numpy.

Workers reduce a window's latencies to one of these, and the driver merges them, so percentiles
over many processes come from a few kilobytes per window instead of every sample. The layout is
HdrHistogram's with lowest discernible value 1: with `significant_digits` d there are
2**ceil(log2(2 * 10**d)) sub-buckets (2048 for d=3), values below that are exact, and above it a
bucket spans at most 1/1024 of its values (for d=3). A percentile is its bucket's midpoint, so it is
within `relative_error` (half a bucket, 1/2048 for d=3) of the sample's value. Values are integers
from 0 to 2**63 - 1 (ns: 292 years); count, sum, min, max and the moments behind the standard
deviation are kept exactly, not from buckets.
"""

from __future__ import annotations

import base64
import math
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from loadgen.stats import percentile_index


def _half_magnitude(significant_digits: int) -> int:
    """log2 of half the sub-bucket count, as HdrHistogram derives it."""
    if not 1 <= significant_digits <= 5:
        raise ValueError("significant_digits must be 1 to 5")
    return math.ceil(math.log2(2 * 10**significant_digits)) - 1


def _bucket_index(values: np.ndarray, half_magnitude: int) -> np.ndarray:
    """HdrHistogram's counts index of each value: shift b keeps its top half_magnitude+1 bits."""
    # frexp's exponent is the bit length. Above 2**53 a value just below a power of two rounds up
    # to it, one bit too many: the shift is then one more, which lands on the same counts index.
    _, bits = np.frexp(values.astype(np.float64))
    shift = np.maximum(bits - (half_magnitude + 1), 0)
    return (shift << half_magnitude) + (values >> shift)


def _lowest_and_width(index: np.ndarray, half_magnitude: int) -> tuple[np.ndarray, np.ndarray]:
    """The lowest value of each bucket and how many values it spans (the inverse of _bucket_index)."""
    shift = np.maximum((index >> half_magnitude) - 1, 0)
    return (index - (shift << half_magnitude)) << shift, np.left_shift(1, shift)


def bucket_bounds(values: np.ndarray, significant_digits: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """The lowest and highest value equivalent to each value (sharing its bucket), as HdrHistogram's."""
    half_magnitude = _half_magnitude(significant_digits)
    lowest, width = _lowest_and_width(_bucket_index(np.asarray(values, np.int64), half_magnitude), half_magnitude)
    return lowest, lowest + width - 1


def _exact_sum(values: np.ndarray) -> int:
    # In two 32-bit halves, so neither int64 sum can overflow below 2**31 values.
    return (int((values >> 32).sum()) << 32) + int((values & 0xFFFFFFFF).sum())


@dataclass(frozen=True, eq=False)
class LatencyHistogram:
    """Counts of non-negative integer values (ns) per bucket, stored sparsely, with exact moments.

    Build one with `of`, combine with `merge`/`merged`; the result is as if built from the pooled
    values (the std to float precision: Chan et al.'s parallel algorithm).
    """

    buckets: np.ndarray  # sorted counts indices of the non-empty buckets (int64)
    counts: np.ndarray  # values in each of those buckets (int64)
    count: int
    total: int  # exact sum of the values
    min: int  # 0 when empty
    max: int
    m2: float  # sum of squared deviations from the mean
    significant_digits: int = 3

    @classmethod
    def of(cls, values: np.ndarray, significant_digits: int = 3) -> LatencyHistogram:
        """The histogram of some values (ns), all at once."""
        values = np.asarray(values, np.int64)
        if values.size and values.min() < 0:
            raise ValueError("histogram values must be non-negative")
        per_bucket = np.bincount(_bucket_index(values, _half_magnitude(significant_digits)))
        buckets = np.flatnonzero(per_bucket).astype(np.int64)
        count, total = int(values.size), _exact_sum(values)
        m2 = float(np.square(values - total / count).sum()) if count else 0.0
        low, high = (int(values.min()), int(values.max())) if count else (0, 0)
        return cls(buckets, per_bucket[buckets].astype(np.int64), count, total, low, high, m2, significant_digits)

    @classmethod
    def merged(cls, histograms: Iterable[LatencyHistogram]) -> LatencyHistogram:
        """One histogram of all the values of `histograms` (empty, with 3 digits, if there are none)."""
        histograms = list(histograms)
        digits = {h.significant_digits for h in histograms} or {3}
        if len(digits) > 1:
            raise ValueError("cannot merge histograms of different precision")
        parts = [h for h in histograms if h.count]
        if not parts:
            return cls.of(np.empty(0, np.int64), digits.pop())
        # Dense up to the highest bucket in use: 56k buckets (450 kB) at most with 3 digits.
        dense = np.zeros(max(int(h.buckets[-1]) for h in parts) + 1, np.int64)
        for h in parts:
            dense[h.buckets] += h.counts  # a part's buckets are distinct
        buckets = np.flatnonzero(dense)
        count, total, m2 = 0, 0, 0.0
        for h in parts:
            # Chan et al.: the spread between the parts' means adds to the sum of squares.
            delta = h.total / h.count - (total / count if count else 0.0)
            m2 += h.m2 + delta * delta * (count * h.count / (count + h.count))
            count, total = count + h.count, total + h.total
        low, high = min(h.min for h in parts), max(h.max for h in parts)
        return cls(buckets, dense[buckets], count, total, low, high, m2, digits.pop())

    def _packed(self) -> tuple[bytes, str]:
        # The gaps between buckets and the counts in the narrowest unsigned type, deflated: a tenth
        # or less of the int64 arrays, about HdrHistogram's own encoding's size.
        both = np.concatenate([np.diff(self.buckets, prepend=0), self.counts])
        dtype = np.min_scalar_type(both.max(initial=0))
        return zlib.compress(both.astype(dtype).tobytes(), 1), dtype.str

    def __reduce__(self):
        packed, dtype = self._packed()
        return _unpacked, (packed, dtype, self.count, self.total, self.min, self.max, self.m2, self.significant_digits)

    def to_dict(self) -> dict[str, Any]:
        """summary.json's form (docs/summary.md): the exact figures, and the buckets packed as on the wire, base64."""
        packed, dtype = self._packed()
        return {
            "significant_digits": self.significant_digits,
            "count": self.count,
            "sum": self.total,
            "min": self.min,
            "max": self.max,
            "m2": self.m2,
            "dtype": dtype,
            "buckets": base64.b64encode(packed).decode("ascii"),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LatencyHistogram:
        figures = (data["count"], data["sum"], data["min"], data["max"], data["m2"], data["significant_digits"])
        return _unpacked(base64.b64decode(data["buckets"]), data["dtype"], *figures)

    def merge(self, *others: LatencyHistogram) -> LatencyHistogram:
        return LatencyHistogram.merged((self, *others))

    @property
    def relative_error(self) -> float:
        """The most a percentile is off from the sample's value, relative to that value."""
        return 2.0 ** -(_half_magnitude(self.significant_digits) + 1)

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0

    @property
    def std(self) -> float:
        """Sample standard deviation (ddof=1, as perf_analyzer); 0 below two values."""
        return math.sqrt(self.m2 / (self.count - 1)) if self.count > 1 else 0.0

    def percentile(self, percentile: float) -> int:
        """The value at perf_analyzer's rank: its bucket's midpoint, kept within [min, max]; the
        lowest and highest ranks are the exact min and max."""
        rank = percentile_index(self.count, percentile)
        if rank == self.count - 1:
            return self.max
        if rank == 0:
            return self.min
        bucket = self.buckets[np.searchsorted(np.cumsum(self.counts), rank, side="right")]
        lowest, width = _lowest_and_width(bucket, _half_magnitude(self.significant_digits))
        return min(max(int(lowest + (width >> 1)), self.min), self.max)


def _unpacked(packed: bytes, dtype: str, *figures) -> LatencyHistogram:
    gaps, counts = np.split(np.frombuffer(zlib.decompress(packed), dtype).astype(np.int64), 2)
    return LatencyHistogram(np.cumsum(gaps), counts, *figures)
