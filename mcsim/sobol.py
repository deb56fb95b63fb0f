"""Sobol variance-based sensitivity indices: design, estimators and bootstrap intervals.

Pure NumPy/SciPy (no SALib). The scheme is the radial ("pick-freeze") one of Saltelli et al.
(2010): two independent base matrices A and B of ``N`` rows and ``k`` factors, and for each
factor i the matrix AB_i, which is A with column i taken from B. The model is run on the
``N * (k + 2)`` rows; then

* first order (Saltelli et al., 2010), f_B centred: ``V_i = mean((f_B - m) * (f_AB_i - f_A))``,
* total order (Jansen, 1999):           ``VT_i = mean((f_A - f_AB_i)**2) / 2``,

(m the mean of f_A and f_B), each divided by the total variance
``V = var(concatenate([f_A, f_B]))`` (ddof=0, like the numerators, which are plain
means). ``S_i = V_i / V`` is the share of the output variance due to factor i alone;
``ST_i = VT_i / V`` the share due to factor i with all its interactions.

Uncertainty: a bootstrap over the ``N`` base rows. Row n of A, of B and of every AB_i come
from the same design point, so one resample of row indices is applied to all of them; that
keeps the correlation between the estimators' terms, which is large (it is why they work).

Typical use::

    A, B = design(num_base=2**14, num_factors=3, seed=1)
    AB = radial_matrices(A, B)                       # [k, N, k]
    f_A, f_B, f_AB = ishigami(A), ishigami(B), ishigami(AB)
    indices = estimate(f_A, f_B, f_AB, names=("x1", "x2", "x3"))
    indices.to_frame()
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

# Uniforms are clipped into [2^-53, 1 - 2^-53]: strictly inside (0, 1), so inverse CDFs
# downstream stay finite, while moving no point by more than one float64 ulp near 1.
_UNIFORM_LOW = 2.0**-53
_UNIFORM_HIGH = 1.0 - 2.0**-53

# Bootstrap resamples are drawn as a block of [block, N] row counts; this many entries per
# block (2^22: 32 MiB of float64 counts, plus as much for the drawn indices) keeps memory
# modest at N = 2^16 whatever the number of factors, since the counts do not depend on k.
_BOOTSTRAP_BLOCK_ENTRIES = 2**22


def _power_of_two_exponent(num_base: int) -> int:
    """log2(num_base), or ValueError naming ``num_base`` when it is not a power of two >= 2."""
    try:
        value = operator.index(num_base)
    except TypeError:
        raise ValueError(
            f"num_base={num_base!r}: expected an integer power of two >= 2"
        ) from None
    if isinstance(num_base, bool) or value < 2 or value & (value - 1):
        raise ValueError(f"num_base={num_base!r}: expected an integer power of two >= 2")
    return value.bit_length() - 1


def design(num_base: int, num_factors: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Base matrices A and B for the radial Sobol scheme.

    Returns ``(A, B)``, each float64 [num_base, num_factors] of uniforms strictly inside
    (0, 1): the first and second halves of the columns of one scrambled Sobol sequence of
    dimension ``2 * num_factors``. Taking both from one sequence (rather than two sequences)
    makes A and B jointly low-discrepancy, i.e. each row of [A, B] is a well spread point.

    ``num_base`` must be a power of two >= 2 (Sobol points are balanced only in blocks of
    2^m); ``seed`` fixes the scrambling.
    """
    m = _power_of_two_exponent(num_base)
    try:
        k = operator.index(num_factors)
    except TypeError:
        k = 0
    if isinstance(num_factors, bool) or k < 1:
        raise ValueError(f"num_factors={num_factors!r}: expected an integer >= 1")
    from scipy.stats import qmc  # here: scipy.stats costs 0.3 s of every start

    sampler = qmc.Sobol(d=2 * k, scramble=True, seed=np.random.default_rng(seed))
    points = sampler.random_base2(m)  # [num_base, 2k] in [0, 1)
    # Scrambled points can land on 0 exactly; inverse CDFs need the open interval.
    points = np.clip(points, _UNIFORM_LOW, _UNIFORM_HIGH)
    return np.ascontiguousarray(points[:, :k]), np.ascontiguousarray(points[:, k:])


def radial_matrices(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """The k "A with column i from B" matrices.

    ``A``, ``B``: [N, k]. Returns AB of shape [k, N, k] (dtype of ``A``), where ``AB[i]`` is
    A with column i replaced by column i of B. Memory is k times that of A (about 470 MiB
    in float64 at N = 2^16, k = 30); evaluate the model on ``AB[i]`` one at a time if that
    is too much.
    """
    A = np.asarray(A)
    B = np.asarray(B)
    if A.ndim != 2 or A.shape != B.shape:
        raise ValueError(
            f"A and B must be 2-d arrays of the same shape [N, k]; got {A.shape} and {B.shape}"
        )
    k = A.shape[1]
    AB = np.repeat(A[np.newaxis], k, axis=0)
    factor = np.arange(k)
    AB[factor, :, factor] = B.T  # the advanced indices give a [k, N] view: row i <- B[:, i]
    return AB


@dataclass(frozen=True, eq=False)
class SobolIndices:
    """Sobol indices of one model output, with bootstrap uncertainty.

    Arrays are float64 [k], in the order of ``names`` (and read-only). The bounds are the
    bootstrap percentile interval at level ``confidence``; ``*_se`` are the standard
    deviations of the bootstrap replicates (standard errors of the estimates). All are NaN
    when the output is constant (``variance == 0``): indices are undefined then.
    """

    names: tuple[str, ...]
    first: np.ndarray  # S_i, first-order indices
    total: np.ndarray  # ST_i, total-order indices
    first_low: np.ndarray
    first_high: np.ndarray
    total_low: np.ndarray
    total_high: np.ndarray
    first_se: np.ndarray
    total_se: np.ndarray
    confidence: float
    num_base: int  # N, rows of A (the model ran N * (k + 2) times)
    num_bootstrap: int
    variance: float  # total output variance estimate V (ddof=0), in output units squared

    def to_frame(self) -> pd.DataFrame:
        """One row per factor (index ``factor``), sorted by descending total index (NaN last).

        Columns: first, first_low, first_high, first_se, total, total_low, total_high,
        total_se.
        """
        import pandas as pd  # here: pandas costs 0.2 s of every start

        frame = pd.DataFrame(
            {
                "first": self.first,
                "first_low": self.first_low,
                "first_high": self.first_high,
                "first_se": self.first_se,
                "total": self.total,
                "total_low": self.total_low,
                "total_high": self.total_high,
                "total_se": self.total_se,
            },
            index=pd.Index(list(self.names), name="factor"),
        )
        # Stable sort so that ties (and the all-NaN case) keep the factors' order.
        return frame.sort_values("total", ascending=False, kind="stable", na_position="last")


def _readonly(array: np.ndarray) -> np.ndarray:
    array = np.array(array, dtype=np.float64)
    array.setflags(write=False)
    return array


def _as_outputs(f_A, f_B, f_AB, names) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple]:
    """Validated float64 copies: f_A [N], f_B [N], f_AB [k, N], names (k distinct str)."""
    f_A = np.asarray(f_A, dtype=np.float64)
    f_B = np.asarray(f_B, dtype=np.float64)
    f_AB = np.asarray(f_AB, dtype=np.float64)
    if f_A.ndim != 1 or f_A.shape[0] < 2:
        raise ValueError(f"f_A must be a 1-d array [N] with N >= 2; got shape {f_A.shape}")
    if f_B.shape != f_A.shape:
        raise ValueError(f"f_B must have the shape of f_A {f_A.shape}; got {f_B.shape}")
    names = tuple(names) if not isinstance(names, str) else (names,)
    k = len(names)
    if f_AB.shape != (k, f_A.shape[0]):
        raise ValueError(
            f"f_AB must have shape [k, N] = {(k, f_A.shape[0])} (k = len(names) = {k}, "
            f"N = len(f_A)); got {f_AB.shape}"
        )
    if k < 1 or not all(isinstance(name, str) for name in names):
        raise ValueError(f"names must be a non-empty sequence of str; got {names!r}")
    if len(set(names)) != k:
        raise ValueError(f"names must be distinct; got {names!r}")
    for label, values in (("f_A", f_A), ("f_B", f_B), ("f_AB", f_AB)):
        if not np.all(np.isfinite(values)):
            raise ValueError(f"{label} has non-finite values (NaN or inf); outputs must be finite")
    return f_A, f_B, f_AB, names


def estimate(
    f_A: np.ndarray,
    f_B: np.ndarray,
    f_AB: np.ndarray,
    names: Sequence[str],
    *,
    num_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> SobolIndices:
    """First- and total-order Sobol indices from the radial design's model outputs.

    ``f_A``: [N] outputs on the rows of A; ``f_B``: [N] on B; ``f_AB``: [k, N], row i on
    ``AB[i]`` (see :func:`radial_matrices`); ``names``: the k factors' names. Outputs may be
    indicators or integers (cast to float64); they must be finite.

    Estimators (module docstring): Saltelli et al. (2010) first order, Jansen (1999) total
    order, over ``V = var(concatenate([f_A, f_B]))`` with ddof=0. Both are consistent, not
    unbiased; small negative first-order estimates of unimportant factors are sampling
    noise and are kept as they are (clipping would bias the intervals).

    Uncertainty: ``num_bootstrap`` resamples of the N row indices with replacement (the same
    resample for A, B and every AB_i), from ``np.random.default_rng(seed)``; percentile
    interval at level ``confidence``, and standard errors as the replicates' std (ddof=1).
    Resamples in which the output happens to be constant (possible for rare events at small
    N) have undefined indices and are left out of the interval and standard error.

    Constant output: when all of ``f_A`` and ``f_B`` are equal (e.g. an event that never or
    always happens in the sample), ``V == 0`` and every index, bound and standard error is
    NaN, with ``variance == 0.0``; no division by zero is made and no warning is emitted.
    """
    f_A, f_B, f_AB, names = _as_outputs(f_A, f_B, f_AB, names)
    if isinstance(num_bootstrap, bool) or operator.index(num_bootstrap) < 2:
        raise ValueError(f"num_bootstrap={num_bootstrap!r}: expected an integer >= 2")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence={confidence!r}: expected a number in (0, 1)")
    num_bootstrap = operator.index(num_bootstrap)
    num_base = f_A.shape[0]
    k = len(names)

    # Per-row terms [N, 2k + 2] whose means give every estimate: the estimators are means
    # over the base rows, so a bootstrap replicate is (row counts) @ terms / N, one matrix
    # product per block of replicates rather than k gathered copies of the outputs.
    shift = 0.5 * (f_A.mean() + f_B.mean())  # V is shift-invariant; centering avoids the
    g_A, g_B = f_A - shift, f_B - shift  # cancellation in mean(g^2) - mean(g)^2 below
    terms = np.column_stack(
        [
            # first-order numerator terms, [N, k], with f_B centred: E[f_AB - f_A] = 0, so
            # the estimate stays consistent, and the term mean * (f_AB - f_A), whose noise
            # grows with the output's mean (a repayment month ~ 150), is gone
            (g_B * (f_AB - f_A)).T,
            0.5 * ((f_A - f_AB) ** 2).T,  # total-order numerator terms, [N, k]
            0.5 * (g_A + g_B),  # for the mean of concatenate([f_A, f_B]) (shifted)
            0.5 * (g_A**2 + g_B**2),  # for its mean square
        ]
    )

    def indices(means: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(first, total, V, usable) from term means [..., 2k + 2]."""
        variance = means[..., -1] - means[..., -2] ** 2
        # A resample whose outputs are all equal has V == 0 up to rounding, which is a few
        # ulps of the mean square; such replicates are unusable (indices undefined).
        usable = variance > 64 * np.finfo(np.float64).eps * means[..., -1]
        safe = np.where(usable, variance, 1.0)[..., np.newaxis]
        return means[..., :k] / safe, means[..., k : 2 * k] / safe, variance, usable

    first, total, variance, usable = indices(terms.mean(axis=0))
    if not usable or (np.all(f_A == f_A[0]) and np.all(f_B == f_A[0])):
        # Constant output: V is 0 (or rounding noise), the indices are undefined.
        nan = _readonly(np.full(k, np.nan))
        return SobolIndices(
            names=names, first=nan, total=nan, first_low=nan, first_high=nan, total_low=nan,
            total_high=nan, first_se=nan, total_se=nan, confidence=float(confidence),
            num_base=num_base, num_bootstrap=num_bootstrap, variance=0.0,
        )

    rng = np.random.default_rng(seed)
    block = max(1, _BOOTSTRAP_BLOCK_ENTRIES // num_base)
    first_reps, total_reps, usable_reps = [], [], []
    for start in range(0, num_bootstrap, block):
        size = min(block, num_bootstrap - start)
        rows = rng.integers(0, num_base, size=(size, num_base))
        # Counts of each row in each resample: bincount over (replicate, row) pairs.
        offsets = (np.arange(size) * num_base)[:, np.newaxis]
        counts = np.bincount((rows + offsets).ravel(), minlength=size * num_base)
        means = counts.reshape(size, num_base).astype(np.float64) @ terms / num_base
        rep_first, rep_total, _, usable = indices(means)
        first_reps.append(rep_first)
        total_reps.append(rep_total)
        usable_reps.append(usable)
    usable = np.concatenate(usable_reps)
    first_reps = np.concatenate(first_reps)[usable]  # [usable replicates, k]
    total_reps = np.concatenate(total_reps)[usable]

    def summarize(reps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(low, high, se) of replicates [R, k]; NaN when fewer than 2 are usable."""
        if reps.shape[0] < 2:
            nan = np.full(k, np.nan)
            return nan, nan, nan
        tail = 0.5 * (1.0 - confidence)
        low, high = np.quantile(reps, [tail, 1.0 - tail], axis=0)
        return low, high, reps.std(axis=0, ddof=1)

    first_low, first_high, first_se = summarize(first_reps)
    total_low, total_high, total_se = summarize(total_reps)
    return SobolIndices(
        names=names,
        first=_readonly(first),
        total=_readonly(total),
        first_low=_readonly(first_low),
        first_high=_readonly(first_high),
        total_low=_readonly(total_low),
        total_high=_readonly(total_high),
        first_se=_readonly(first_se),
        total_se=_readonly(total_se),
        confidence=float(confidence),
        num_base=num_base,
        num_bootstrap=num_bootstrap,
        variance=float(variance),
    )


def ishigami(X: np.ndarray, a: float = 7.0, b: float = 0.1) -> np.ndarray:
    """The Ishigami test function on uniforms.

    ``X``: [..., 3] uniforms in (0, 1), mapped to x = -pi + 2 pi X in (-pi, pi). Returns
    [...] values of ``sin(x1) + a sin(x2)^2 + b x3^4 sin(x1)``; so ``ishigami(A)`` is [N] and
    ``ishigami(radial_matrices(A, B))`` is [3, N].
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim < 1 or X.shape[-1] != 3:
        raise ValueError(f"X must have a last axis of 3 factors; got shape {X.shape}")
    x = np.pi * (2.0 * X - 1.0)
    x1, x2, x3 = x[..., 0], x[..., 1], x[..., 2]
    return np.sin(x1) + a * np.sin(x2) ** 2 + b * x3**4 * np.sin(x1)


def ishigami_indices(a: float = 7.0, b: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Closed-form (first, total) Sobol indices of :func:`ishigami`, each float64 [3].

    Partial variances (Ishigami and Homma, 1990; Sobol and Levitan, 1999):
    V1 = b pi^4/5 + b^2 pi^8/50 + 1/2, V2 = a^2/8, V3 = 0, V13 = b^2 pi^8/18 - b^2 pi^8/50,
    V = V1 + V2 + V13. For a = 7, b = 0.1: S = (0.3139, 0.4424, 0), ST = (0.5576, 0.4424,
    0.2437).
    """
    pi4, pi8 = np.pi**4, np.pi**8
    v1 = b * pi4 / 5 + b**2 * pi8 / 50 + 0.5
    v2 = a**2 / 8
    v13 = b**2 * pi8 / 18 - b**2 * pi8 / 50
    v = a**2 / 8 + b * pi4 / 5 + b**2 * pi8 / 18 + 0.5
    first = np.array([v1, v2, 0.0]) / v
    total = np.array([v1 + v13, v2, v13]) / v
    return first, total


# (first, total) for the standard a = 7, b = 0.1.
ISHIGAMI_INDICES: tuple[np.ndarray, np.ndarray] = tuple(_readonly(x) for x in ishigami_indices())
