"""Host-side accumulators that merge exactly, whatever the chunking.

* Histograms on fixed bins and first-passage month counts are integers: merging is addition,
  exact and order-free.
* Moments (count, mean, sum of squared deviations) come per fixed block of path indices
  (:data:`BLOCK` paths, reduced on the device by a fixed halving tree) and are merged here
  strictly in block order with Chan's formula. The reduction tree is therefore fixed by the
  path indices alone, so means are bit-identical for any chunk size.

Money bins are signed and logarithmic: for ``|x| >= 1`` dollar, the bin of x spans a factor
``10^(1/bins_per_decade)`` (0.46% at the default 500 per decade), so a quantile read off the
bins is known to that relative width; ``|x| < 1`` falls in a zero bin; beyond
``10^max_exponent`` in overflow bins; NaN and inf in a bin of their own (never in a
quantile).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Paths per moment block: the leaves of the fixed reduction tree. Chunk sizes are multiples.
BLOCK = 1024


@dataclass(frozen=True)
class MoneyBins:
    """Signed logarithmic bins for dollar amounts.

    Layout of the ``num_bins`` indices, in increasing value: 0 = x <= -10^max_exponent;
    1..K = negative magnitudes, largest first; K+1 = |x| < 10^min_exponent (the zero bin);
    K+2..2K+1 = positive magnitudes; 2K+2 = x >= 10^max_exponent (finite);
    2K+3 = NaN or inf (``nan_bin``, never in a quantile).
    """

    bins_per_decade: int = 500
    min_exponent: int = 0
    max_exponent: int = 16

    @property
    def per_sign(self) -> int:
        return self.bins_per_decade * (self.max_exponent - self.min_exponent)

    @property
    def num_bins(self) -> int:
        return 2 * self.per_sign + 4

    @property
    def nan_bin(self) -> int:
        return self.num_bins - 1

    @property
    def relative_width(self) -> float:
        """Ratio minus one of a bin's upper to lower edge."""
        return 10.0 ** (1.0 / self.bins_per_decade) - 1.0

    def index(self, x, xp=np):
        """Bin index (int32) of each value of x (float array; numpy or jax.numpy)."""
        k = self.per_sign
        mag = xp.abs(x)
        with np.errstate(divide="ignore", invalid="ignore"):
            j = xp.floor((xp.log10(xp.maximum(mag, 10.0 ** self.min_exponent))
                          - self.min_exponent) * self.bins_per_decade)
        j = xp.clip(xp.where(xp.isnan(j), 0, j), 0, k - 1).astype(xp.int32)
        small = mag < 10.0 ** self.min_exponent
        big = mag >= 10.0 ** self.max_exponent
        pos = xp.where(big, 2 * k + 2, k + 2 + j)
        neg = xp.where(big, 0, k - j)
        idx = xp.where(small, k + 1, xp.where(x > 0, pos, neg))
        return xp.where(xp.isfinite(x), idx, self.nan_bin).astype(xp.int32)

    def edges(self) -> tuple[np.ndarray, np.ndarray]:
        """(lower, upper) edge of every bin but NaN's; overflow bins have an infinite edge."""
        k, b = self.per_sign, self.bins_per_decade
        mags = 10.0 ** (self.min_exponent + np.arange(k + 1) / b)  # k+1 magnitude edges
        lo = np.empty(self.num_bins - 1)
        hi = np.empty(self.num_bins - 1)
        lo[0], hi[0] = -np.inf, -mags[k]
        lo[1:k + 1] = -mags[k:0:-1]                             # bin K-j: (-m[j+1], -m[j]]
        hi[1:k + 1] = -mags[k - 1::-1]
        lo[k + 1], hi[k + 1] = -mags[0], mags[0]
        lo[k + 2:2 * k + 2] = mags[:k]
        hi[k + 2:2 * k + 2] = mags[1:]
        lo[2 * k + 2], hi[2 * k + 2] = mags[k], np.inf
        return lo, hi


@dataclass
class Moments:
    """Running count, mean and sum of squared deviations of S statistics (float64)."""

    count: np.ndarray  # (S,) int64
    mean: np.ndarray   # (S,)
    m2: np.ndarray     # (S,)

    @classmethod
    def zeros(cls, size: int) -> Moments:
        return cls(np.zeros(size, np.int64), np.zeros(size), np.zeros(size))

    def merge(self, count, mean, m2) -> None:
        """Chan et al.'s pairwise update with another (count, mean, m2), in place."""
        n_a = self.count.astype(np.float64)
        n_b = np.asarray(count).astype(np.float64)
        n = n_a + n_b
        safe = np.where(n > 0, n, 1.0)
        delta = mean - self.mean
        self.mean = np.where(n_b > 0, self.mean + delta * (n_b / safe), self.mean)
        self.m2 = np.where(n_b > 0, self.m2 + m2 + delta * delta * (n_a * n_b / safe), self.m2)
        self.count = self.count + np.asarray(count, np.int64)

    def variance(self) -> np.ndarray:
        n = self.count.astype(np.float64)
        return np.where(n > 1, self.m2 / np.maximum(n - 1, 1), np.nan)

    def stderr(self) -> np.ndarray:
        """Monte Carlo standard error of each mean: sqrt(var / n)."""
        n = self.count.astype(np.float64)
        return np.sqrt(self.variance() / np.maximum(n, 1))


@dataclass
class Accumulator:
    """Everything a run keeps: fixed-size whatever the number of paths."""

    num_stats: int
    num_bins: int
    num_months: int
    histogram: np.ndarray = field(init=False)          # (S, B) int64
    moments: Moments = field(init=False)
    repayment_counts: np.ndarray = field(init=False)   # (T+1,) int64; [T] = censored
    credit_counts: np.ndarray = field(init=False)      # (T+1,) int64
    nonfinite_paths: int = 0
    paths: int = 0
    blocks_merged: int = 0

    def __post_init__(self) -> None:
        self.histogram = np.zeros((self.num_stats, self.num_bins), np.int64)
        self.moments = Moments.zeros(self.num_stats)
        self.repayment_counts = np.zeros(self.num_months + 1, np.int64)
        self.credit_counts = np.zeros(self.num_months + 1, np.int64)

    def add_chunk(self, chunk, num_valid: int) -> None:
        """Fold one chunk's device summary in (chunks must come in path order)."""
        self.histogram += np.asarray(chunk.histogram, np.int64)
        self.repayment_counts += np.asarray(chunk.repayment_counts, np.int64)
        self.credit_counts += np.asarray(chunk.credit_counts, np.int64)
        self.nonfinite_paths += int(chunk.nonfinite_paths)
        self.paths += num_valid
        counts = np.asarray(chunk.block_count)
        means = np.asarray(chunk.block_mean)
        m2s = np.asarray(chunk.block_m2)
        for b in range(counts.shape[1]):  # strictly in block (path-index) order
            if counts[:, b].any():
                self.moments.merge(counts[:, b], means[:, b], m2s[:, b])
                self.blocks_merged += 1
