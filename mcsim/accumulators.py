"""Host-side accumulators that merge exactly, whatever the chunking.

* Histograms on fixed bins and first-passage month counts are integers: merging is addition,
  exact and order-free.
* Means and variances come from sums of x and x^2 over one pairwise tree fixed by the path
  indices (:class:`SumTree`), so they are bit-identical for any chunk size, device count or
  number of processes.

Money bins are signed and logarithmic: for ``|x| >= 1`` dollar, the bin of x spans a factor
``10^(1/bins_per_decade)`` (0.46% at the default 500 per decade), so a quantile read off the
bins is known to that relative width; ``|x| < 1`` falls in a zero bin; beyond
``10^max_exponent`` in overflow bins; NaN and inf in a bin of their own (never in a
quantile).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from .events import table as events_table

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
        """(lower, upper) edge of every bin but NaN's; overflow bins have an infinite edge.

        Read-only arrays, computed once per layout: a report reads them for every quantile
        (thousands of times), and the scalar pows below cost milliseconds each time."""
        return _edges(self)

    def _edges(self) -> tuple[np.ndarray, np.ndarray]:
        k, b = self.per_sign, self.bins_per_decade
        # k+1 magnitude edges, each by the C library's scalar pow: NumPy's vectorised
        # power differs by an ulp between CPUs (AVX-512 or not), and so would every
        # quantile read off the bins
        mags = np.array([10.0 ** (self.min_exponent + i / b) for i in range(k + 1)])
        lo = np.empty(self.num_bins - 1)
        hi = np.empty(self.num_bins - 1)
        lo[0], hi[0] = -np.inf, -mags[k]
        lo[1:k + 1] = -mags[k:0:-1]                             # bin K-j: (-m[j+1], -m[j]]
        hi[1:k + 1] = -mags[k - 1::-1]
        lo[k + 1], hi[k + 1] = -mags[0], mags[0]
        lo[k + 2:2 * k + 2] = mags[:k]
        hi[k + 2:2 * k + 2] = mags[1:]
        lo[2 * k + 2], hi[2 * k + 2] = mags[k], np.inf
        lo.setflags(write=False)
        hi.setflags(write=False)
        return lo, hi


@functools.lru_cache(maxsize=16)
def _edges(bins: MoneyBins) -> tuple[np.ndarray, np.ndarray]:
    return bins._edges()


@dataclass
class Moments:
    """Count, mean and sum of squared deviations of S statistics (float64), final form."""

    count: np.ndarray  # (S,) int64
    mean: np.ndarray   # (S,)
    m2: np.ndarray     # (S,)

    def variance(self) -> np.ndarray:
        n = self.count.astype(np.float64)
        return np.where(n > 1, self.m2 / np.maximum(n - 1, 1), np.nan)

    def stderr(self) -> np.ndarray:
        """Monte Carlo standard error of each mean: sqrt(var / n)."""
        n = self.count.astype(np.float64)
        return np.sqrt(self.variance() / np.maximum(n, 1))


class SumTree:
    """Sums of x and x^2 over path indices by one fixed pairwise tree, whoever computes them.

    The tree is the complete binary tree over blocks of :data:`BLOCK` consecutive paths
    (leaf = block, missing leaves = zeros). The device sums whole aligned subtrees (a chunk
    of 2^k blocks starting at a multiple of 2^k); here they are combined with their
    siblings, left + right, as they arrive; :meth:`total` completes the tree with zeros. Each
    node's value is therefore fixed by the path indices alone, so the sums are bit-identical
    for any chunk size, device count or number of processes (which merge their node sets).
    Only additions of float64 happen, which round identically on every IEEE machine.

    Precision: pairwise summation errs by about eps * log2(paths) relative to the sum of
    |x| (1e-14 at 10^9 paths); the variance ``(sum x^2 - (sum x)^2 / n)`` then loses
    eps * log2(paths) * (mean^2 / variance) relative, 1e-8 even for a coefficient of variation
    of 0.001, far below its own Monte Carlo error.
    """

    def __init__(self, num_stats: int) -> None:
        self.num_stats = num_stats
        self.nodes: dict[tuple[int, int], tuple[int, np.ndarray, np.ndarray]] = {}

    def insert(self, level: int, index: int, count: int, s1, s2) -> None:
        """Add the node (level, index) = blocks ``index*2^level ..`` of 2^level blocks."""
        node = (int(count), np.asarray(s1, np.float64), np.asarray(s2, np.float64))
        key = (level, index)
        while (level, index ^ 1) in self.nodes:
            other = self.nodes.pop((level, index ^ 1))
            left, right = (other, node) if index & 1 else (node, other)
            node = (left[0] + right[0], left[1] + right[1], left[2] + right[2])
            level, index = level + 1, index >> 1
            key = (level, index)
        if key in self.nodes:
            raise ValueError(f"paths of tree node {key} were added twice")
        self.nodes[key] = node

    def merge(self, other: SumTree) -> None:
        """Fold in the nodes of another tree (disjoint paths, e.g. another process's)."""
        for (level, index), (c, s1, s2) in sorted(other.nodes.items()):
            self.insert(level, index, c, s1, s2)

    def total(self) -> tuple[int, np.ndarray, np.ndarray]:
        """(count, sum x, sum x^2) at the root; the tree is left as it is."""
        if not self.nodes:
            zero = np.zeros(self.num_stats)
            return 0, zero, zero.copy()
        work = SumTree(self.num_stats)
        work.nodes = dict(self.nodes)
        while len(work.nodes) > 1 or next(iter(work.nodes))[1] != 0:
            level, index = min(work.nodes)  # the lowest level first
            c, s1, s2 = work.nodes.pop((level, index))
            if index & 1:
                raise ValueError(f"tree node {(level, index)} has no left sibling: "
                                 "paths are missing")
            z = np.zeros(self.num_stats)  # the missing right sibling: all-zero leaves
            work.insert(level + 1, index >> 1, c, s1 + z, s2 + z)
        c, s1, s2 = next(iter(work.nodes.values()))
        return c, s1 + 0.0, s2 + 0.0  # +0.0: never a -0.0 that a longer tree would not give

    def moments(self) -> Moments:
        c, s1, s2 = self.total()
        n = max(c, 1)
        mean = s1 / n
        # beyond float64's range (a $1e200 investment squared) the variance is undefined:
        # NaN, reported as a null standard error, not a warning
        with np.errstate(over="ignore", invalid="ignore"):
            m2 = np.maximum(s2 - s1 * mean, 0.0)  # cancellation guarded as the class says
        return Moments(np.full(self.num_stats, c, np.int64), mean, m2)

    def state(self) -> dict[str, np.ndarray]:
        """The nodes as arrays (for checkpoints and for gathering across processes)."""
        keys = sorted(self.nodes)
        return {"keys": np.array(keys, np.int64).reshape(-1, 2),
                "count": np.array([self.nodes[k][0] for k in keys], np.int64),
                "s1": np.array([self.nodes[k][1] for k in keys]).reshape(-1, self.num_stats),
                "s2": np.array([self.nodes[k][2] for k in keys]).reshape(-1, self.num_stats)}

    @classmethod
    def from_state(cls, num_stats: int, state: dict[str, np.ndarray]) -> SumTree:
        tree = cls(num_stats)
        for (level, index), c, s1, s2 in zip(state["keys"], state["count"], state["s1"],
                                             state["s2"], strict=True):
            tree.insert(int(level), int(index), int(c), s1, s2)
        return tree


@dataclass
class Accumulator:
    """Everything a run keeps: fixed-size whatever the number of paths (the sum tree holds
    at most one node per level, about log2(paths / BLOCK))."""

    num_stats: int
    num_bins: int
    num_months: int
    #: rows of the sum tree (default num_stats; a weighted run keeps 3 S + 2)
    tree_stats: int | None = None
    #: first-passage events counted (default: :func:`mcsim.events.table`'s length)
    num_events: int | None = None
    histogram: np.ndarray = field(init=False)          # (S, B) int64
    tree: SumTree = field(init=False)
    #: paths by the first month of each event, in :class:`~mcsim.layout.StatLayout`'s
    #: event order ([:, T]: not by the horizon)
    event_counts: np.ndarray = field(init=False)       # (E, T+1) int64
    #: paths with a NaN or inf, by the first month one appeared ([T]: not located)
    nonfinite_months: np.ndarray = field(init=False)   # (T+1,) int64
    paths: int = 0

    #: the integer arrays, by name: what :meth:`add_counts` takes and checkpoints keep
    COUNTS = ("histogram", "event_counts", "nonfinite_months")

    def __post_init__(self) -> None:
        if self.num_events is None:
            self.num_events = len(events_table())
        self.histogram = np.zeros((self.num_stats, self.num_bins), np.int64)
        self.tree_stats = self.tree_stats or self.num_stats
        self.tree = SumTree(self.tree_stats)
        self.event_counts = np.zeros((self.num_events, self.num_months + 1), np.int64)
        self.nonfinite_months = np.zeros(self.num_months + 1, np.int64)

    @property
    def nonfinite_paths(self) -> int:
        return int(self.nonfinite_months.sum())

    @property
    def moments(self) -> Moments:
        return self.tree.moments()

    def counts(self) -> dict[str, np.ndarray]:
        """The integer arrays by name (:data:`COUNTS`)."""
        return {k: getattr(self, k) for k in self.COUNTS}

    def add_counts(self, histogram, event_counts, nonfinite_months) -> None:
        """Add integer counts (exact, in any order). Each must have its own shape: a
        missing or mis-shaped one is an error, never a silent zero."""
        for name, value in (("histogram", histogram), ("event_counts", event_counts),
                            ("nonfinite_months", nonfinite_months)):
            mine = getattr(self, name)
            value = np.asarray(value, np.int64)
            if value.shape != mine.shape:
                raise ValueError(f"{name} of shape {value.shape}, expected {mine.shape}")
            mine += value

    def merge(self, other: Accumulator) -> None:
        """Fold in another accumulator over disjoint paths (another process's)."""
        self.add_counts(**other.counts())
        self.paths += other.paths
        self.tree.merge(other.tree)
