"""Per-path parameter distributions, all sampled by inverse CDF of a uniform (MODEL.md).

Every distribution maps uniforms in (0, 1) to values in float64 through ``ppf``; truncation
to ``[min, max]`` maps ``u`` to ``F(min) + u*(F(max) - F(min))`` first, so copulas and
quasi-random points pass through unchanged. Shapes: ``ppf`` and ``cdf`` are elementwise.

A truncated normal or lognormal is computed in standard-normal units z on whichever side of
the median holds the range, in log space where the range lies in a tail
(:class:`NormalTruncation`): ``F^-1`` near 1 would lose every digit of a range 7 sd out,
and a range 40 sd out has a mass below float64's smallest number.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np
from scipy.interpolate import CubicSpline, PPoly
from scipy.special import betainc, betaincinv, betaln, log_ndtr, ndtr, ndtri, ndtri_exp

#: z of the 95th percentile of the standard normal; MODEL.md fixes this constant.
Z95 = 1.6448536

#: Accepted field sets of each ``dist`` (alternatives in order), plus the common min/max.
FIELD_SETS: dict[str, tuple[tuple[str, ...], ...]] = {
    "normal": (("mean", "sd"), ("p5", "p95")),
    "lognormal": (("median", "sigma"), ("p5", "p95")),
    "uniform": (("low", "high"),),
    "triangular": (("low", "mode", "high"),),
    "pert": (("low", "mode", "high"),),
    "beta": (("alpha", "beta"),),
}
TRUNCATION_FIELDS = ("min", "max")
PERT_LAMBDA = 4.0
#: Beta-family quantiles are tabulated against z = ndtri(u) on [-Z_TABLE, Z_TABLE]
#: (u from 1e-17 to 1 - 1e-17, beyond any 52-bit uniform) with TABLE_POINTS knots.
Z_TABLE = 8.5
TABLE_POINTS = 16385
#: Knots each half of a beta table runs past z = 0 (see Distribution._beta_table).
BETA_TABLE_OVERLAP = 64
#: The ranges of a truncated distribution of the beta family, triangular: at least this
#: much probability mass, so that ``F(min) + u*(F(max) - F(min))`` resolves it.
MIN_TABULATED_MASS = 1e-12


@dataclass(frozen=True)
class NormalTruncation:
    """A standard normal truncated to [zl, zh], in the form its inverse CDF is computed in.

    ``flip``: the range lies above the median (zl > 0), so it is drawn as -Z with Z on
    [a, b] = [-zh, -zl] and the uniform 1 - u; otherwise [a, b] = [zl, zh]. Either way
    a <= 0. ``tail`` (b <= 0): the range lies below the median, and the draw is
    ``ndtri_exp(lb + log(v + (1 - v) r))`` with ``r = Phi(a)/Phi(b)`` (log space: exact
    however far out). Otherwise the range straddles the median and the draw is
    ``ndtri(pa + v m)`` below it and ``-ndtri(qb + (1 - v) m)`` above it, each from its own
    end (``pa = Phi(a)``, ``qb = Phi(-b)``, ``m = Phi(b) - Phi(a)``).
    """

    flip: bool
    a: float
    b: float
    la: float   # log Phi(a)
    lb: float   # log Phi(b)
    pa: float   # Phi(a)
    qb: float   # Phi(-b)
    m: float    # Phi(b) - Phi(a), the mass (straddling ranges)

    @classmethod
    def of(cls, zl: float, zh: float) -> NormalTruncation:
        flip = zl > 0.0
        a, b = (-zh, -zl) if flip else (zl, zh)
        la, lb = float(log_ndtr(a)), float(log_ndtr(b))
        return cls(flip, a, b, la, lb, float(ndtr(a)), float(ndtr(-b)),
                   float(ndtr(b) - ndtr(a)))

    @property
    def tail(self) -> bool:
        return self.b <= 0.0

    def log_mass(self) -> float:
        """log of the probability mass of [zl, zh] (-inf: none float64 can represent)."""
        if self.tail:
            if not self.lb > -math.inf:
                return -math.inf
            return self.lb + math.log(-math.expm1(self.la - self.lb)) \
                if self.la < self.lb else -math.inf
        return math.log(self.m) if self.m > 0 else -math.inf

    def ppf(self, u: np.ndarray) -> np.ndarray:
        """z of the truncated standard normal at uniforms u (float64, elementwise)."""
        v = 1.0 - u if self.flip else u
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            if self.tail:
                r = math.exp(self.la - self.lb)
                z = ndtri_exp(self.lb + np.log(v + (1.0 - v) * r))
            else:
                p = self.pa + v * self.m
                q = self.qb + (1.0 - v) * self.m
                z = np.where(p <= 0.5, ndtri(p), -ndtri(q))
        z = np.clip(z, self.a, self.b)
        return -z if self.flip else z

    def cdf(self, z: np.ndarray) -> np.ndarray:
        """CDF of the truncated standard normal at z (float64, elementwise)."""
        w = np.clip(-z if self.flip else z, self.a, self.b)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            if self.tail:
                lw = log_ndtr(w)
                denom = -math.expm1(self.la - self.lb)
                f = (np.exp(lw - self.lb) - math.exp(self.la - self.lb)) / denom
                g = -np.expm1(lw - self.lb) / denom  # 1 - f, from its own end
            else:
                f = (ndtr(w) - self.pa) / self.m
                g = (ndtr(-w) - self.qb) / self.m
        return np.clip(g if self.flip else f, 0.0, 1.0)


@functools.lru_cache(maxsize=512)
def beta_quantile_table(al: float, be: float) -> PPoly:
    """Cubic splines of the beta quantile's logs against z = ndtri(u), on z in
    [-Z_TABLE, Z_TABLE]: of log x for z < 0 and of log(1 - x) for z >= 0 (one PPoly on
    the shared knots; :func:`beta_from_table` turns its value into x).

    In z the quantile is smooth even where it is steep in u, and in log space its tails
    are too (x ~ (u a B(a, b))^(1/a) near 0): with 16385 knots x comes back to ~1e-14
    absolute and its tails to ~1e-12 relative, for every shape from 0.05 to 1000 (see
    tests/test_distributions.py). SciPy's betaincinv costs ~2 us a value (ten PERT
    parameters would cost more than the whole simulation), and it fails at the tails of
    some shapes (NaN for beta(0.51, 1.025) beyond u = 1 - 5e-17): each knot it gets
    wrong is solved again by :func:`beta_log_tail_quantile`.

    Cached by shape: a config read again (every ``with_overrides``, every test) has new
    :class:`Distribution` objects with the same shapes, and a table costs ~45 ms.
    """
    z = np.linspace(-Z_TABLE, Z_TABLE, TABLE_POINTS)
    mid = TABLE_POINTS // 2  # z[mid] == 0 exactly
    # each half from its own tail, so that u near 1 keeps its precision; each spline
    # runs OVERLAP knots past z = 0, so that its end condition stays out of the range
    # it serves (at z = 0 it cost 1e-10 for beta(0.05, 0.05))
    e = BETA_TABLE_OVERLAP
    lower = CubicSpline(z[:mid + 1 + e], beta_log_tail_quantile(al, be, z[:mid + 1 + e]))
    upper = CubicSpline(z[mid - e:], beta_log_tail_quantile(be, al, -z[mid - e:]))
    table = PPoly(np.concatenate([lower.c[:, :mid], upper.c[:, e:]], axis=1), z)
    table.c.setflags(write=False)  # one table serves every caller of this shape
    table.x.setflags(write=False)
    return table


@dataclass(frozen=True)
class Distribution:
    """One parameter's distribution in canonical form.

    ``kind`` is one of :data:`FIELD_SETS`; ``params`` holds the canonical fields
    (normal: mean, sd; lognormal: median, sigma; uniform: low, high; triangular/pert: low,
    mode, high; beta: alpha, beta). ``lower``/``upper`` are the truncation bounds
    (infinite when absent).

    Example:
        >>> d = Distribution("lognormal", {"median": 2.0, "sigma": 0.3})
        >>> float(d.ppf(np.array([0.5]))[0])
        2.0
    """

    kind: str
    params: dict[str, float] = field(default_factory=dict)
    lower: float = -math.inf
    upper: float = math.inf

    # --- the untruncated distribution ---------------------------------------------------
    def _cdf0(self, x: np.ndarray) -> np.ndarray:
        p, k = self.params, self.kind
        x = np.asarray(x, dtype=np.float64)
        if k == "normal":
            return ndtr((x - p["mean"]) / p["sd"])
        if k == "lognormal":
            with np.errstate(divide="ignore", invalid="ignore"):
                z = np.log(np.where(x > 0, x, np.nan) / p["median"]) / p["sigma"]
            return np.where(x > 0, ndtr(np.nan_to_num(z, nan=-np.inf)), 0.0)
        if k == "uniform":
            return np.clip((x - p["low"]) / (p["high"] - p["low"]), 0.0, 1.0)
        if k == "triangular":
            a, c, b = p["low"], p["mode"], p["high"]
            xc = np.clip(x, a, b)
            # a mode a subnormal away from an end overflows the branch np.where discards
            with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
                left = _triangle_part(xc - a, b - a, c - a) if c > a else np.zeros_like(xc)
                right = 1.0 - _triangle_part(b - xc, b - a, b - c) if b > c \
                    else np.ones_like(xc)
            return np.where(xc <= c, left if c > a else 0.0, right)
        if k == "pert":
            a, b = p["low"], p["high"]
            al, be = self.pert_shape()
            return betainc(al, be, np.clip((x - a) / (b - a), 0.0, 1.0))
        if k == "beta":
            return betainc(p["alpha"], p["beta"], np.clip(x, 0.0, 1.0))
        raise ValueError(f"unknown distribution {k!r}")

    def _ppf0(self, u: np.ndarray) -> np.ndarray:
        p, k = self.params, self.kind
        u = np.asarray(u, dtype=np.float64)
        if k == "normal":
            return p["mean"] + p["sd"] * ndtri(u)
        if k == "lognormal":
            return p["median"] * np.exp(p["sigma"] * ndtri(u))
        if k == "uniform":
            return p["low"] + (p["high"] - p["low"]) * u
        if k == "triangular":
            a, c, b = p["low"], p["mode"], p["high"]
            split = (c - a) / (b - a)
            left = a + np.sqrt(u * (b - a) * (c - a))
            right = b - np.sqrt((1.0 - u) * (b - a) * (b - c))
            return np.where(u < split, left, right)
        if k == "pert":
            a, b = p["low"], p["high"]
            return a + (b - a) * self._beta_quantile(u)
        if k == "beta":
            return self._beta_quantile(u)
        raise ValueError(f"unknown distribution {k!r}")

    def _beta_shape(self) -> tuple[float, float]:
        if self.kind == "pert":
            return self.pert_shape()
        return self.params["alpha"], self.params["beta"]

    @functools.cached_property
    def _beta_table(self) -> PPoly:
        """:func:`beta_quantile_table` of this distribution's beta shape."""
        return beta_quantile_table(*(float(v) for v in self._beta_shape()))

    def _beta_quantile(self, u: np.ndarray) -> np.ndarray:
        """Beta(alpha, beta) quantile at u from the splines in z (absolute error ~1e-14)."""
        z = np.clip(ndtri(u), -Z_TABLE, Z_TABLE)
        return beta_from_table(z, self._beta_table(z))

    def pert_shape(self) -> tuple[float, float]:
        """Beta shape (alpha, beta) of a PERT(low, mode, high) with lambda = 4."""
        a, c, b = self.params["low"], self.params["mode"], self.params["high"]
        return (1.0 + PERT_LAMBDA * (c - a) / (b - a), 1.0 + PERT_LAMBDA * (b - c) / (b - a))

    def natural_support(self) -> tuple[float, float]:
        k, p = self.kind, self.params
        if k == "normal":
            return -math.inf, math.inf
        if k == "lognormal":
            return 0.0, math.inf
        if k in ("uniform", "triangular", "pert"):
            return p["low"], p["high"]
        return 0.0, 1.0  # beta

    # --- truncated ------------------------------------------------------------------------
    def support(self) -> tuple[float, float]:
        """Support [a, b] after truncation (ends may be infinite)."""
        a, b = self.natural_support()
        return max(a, self.lower), min(b, self.upper)

    @property
    def truncated(self) -> bool:
        return math.isfinite(self.lower) or math.isfinite(self.upper)

    def truncation_mass(self) -> tuple[float, float]:
        """(F(min), F(max)) of the untruncated CDF (for the normal family see
        :meth:`normal_truncation`, which keeps the digits this loses in a tail)."""
        lo = float(self._cdf0(np.array(self.lower))) if math.isfinite(self.lower) else 0.0
        hi = float(self._cdf0(np.array(self.upper))) if math.isfinite(self.upper) else 1.0
        return lo, hi

    def standard_bounds(self) -> tuple[float, float]:
        """[min, max] in standard-normal units of a normal or lognormal."""
        p = self.params
        if self.kind == "normal":
            return ((self.lower - p["mean"]) / p["sd"], (self.upper - p["mean"]) / p["sd"])

        def z(x: float) -> float:
            if x <= 0.0:
                return -math.inf
            if math.isinf(x):
                return math.inf
            return (math.log(x) - math.log(p["median"])) / p["sigma"]

        return z(self.lower), z(self.upper)

    def normal_truncation(self) -> NormalTruncation:
        """The truncation of a normal or lognormal (kept for the device's arguments)."""
        return NormalTruncation.of(*self.standard_bounds())

    def uniform_range(self) -> tuple[float, float]:
        """[low, high] of a uniform after truncation: a truncated uniform is a uniform."""
        return max(self.params["low"], self.lower), min(self.params["high"], self.upper)

    def log_mass(self) -> float:
        """log of the probability mass between min and max (-inf where none, or none that
        float64 can represent)."""
        if not self.truncated:
            return 0.0
        if self.kind in ("normal", "lognormal"):
            return self.normal_truncation().log_mass()
        if self.kind == "uniform":
            lo, hi = self.uniform_range()
            return math.log((hi - lo) / (self.params["high"] - self.params["low"])) \
                if hi > lo else -math.inf
        f_lo, f_hi = self.truncation_mass()
        return math.log(f_hi - f_lo) if f_hi > f_lo else -math.inf

    def resolvable(self) -> bool:
        """Whether the truncated draws can follow the distribution: the normal family and
        the uniform are exact for any positive mass; the others map u to F(min) +
        u*(F(max) - F(min)) and need :data:`MIN_TABULATED_MASS` of it."""
        lm = self.log_mass()
        if self.kind in ("normal", "lognormal", "uniform"):
            return lm > -math.inf
        return lm >= math.log(MIN_TABULATED_MASS)

    def ppf(self, u: np.ndarray) -> np.ndarray:
        """Inverse CDF of the (truncated) distribution at uniforms ``u`` in (0, 1)."""
        u = np.asarray(u, dtype=np.float64)
        if not self.truncated:
            return self._ppf0(u)
        if self.kind in ("normal", "lognormal"):
            z = self.normal_truncation().ppf(u)
            p = self.params
            x = p["mean"] + p["sd"] * z if self.kind == "normal" \
                else p["median"] * np.exp(p["sigma"] * z)
        elif self.kind == "uniform":
            lo, hi = self.uniform_range()
            x = lo + (hi - lo) * u
        else:
            f_lo, f_hi = self.truncation_mass()
            x = self._ppf0(f_lo + u * (f_hi - f_lo))
        return np.clip(x, self.lower, self.upper)  # only rounding at the ends

    def cdf(self, x: np.ndarray) -> np.ndarray:
        """CDF of the (truncated) distribution."""
        if not self.truncated:
            return self._cdf0(x)
        x = np.asarray(x, dtype=np.float64)
        if self.kind in ("normal", "lognormal"):
            p = self.params
            if self.kind == "normal":
                z = (x - p["mean"]) / p["sd"]
            else:
                with np.errstate(divide="ignore", invalid="ignore"):
                    z = np.where(x > 0, np.log(np.where(x > 0, x, 1.0) / p["median"])
                                 / p["sigma"], -np.inf)
            f = self.normal_truncation().cdf(z)
        elif self.kind == "uniform":
            lo, hi = self.uniform_range()
            f = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
        else:
            f_lo, f_hi = self.truncation_mass()
            f = np.clip((self._cdf0(x) - f_lo) / (f_hi - f_lo), 0.0, 1.0)
        return np.where(x < self.lower, 0.0, np.where(x >= self.upper, 1.0, f))

    def describe(self) -> str:
        fields = ", ".join(f"{k}={v:g}" for k, v in self.params.items())
        trunc = ""
        if math.isfinite(self.lower):
            trunc += f", min={self.lower:g}"
        if math.isfinite(self.upper):
            trunc += f", max={self.upper:g}"
        return f"{self.kind}({fields}{trunc})"


def beta_log_tail_quantile(a: float, b: float, z: np.ndarray) -> np.ndarray:
    """log y of the Beta(a, b) quantile y at the lower-tail probabilities ndtr(z), z <= 0.

    SciPy's betaincinv where it is right; where it is not (NaN at the far tail of some
    shapes, an underflow to 0 or a subnormal without digits, a value whose betainc misses
    the target), y is solved again in log space: by bisection of log betainc, which is
    ``a log y - log(a B(a, b))`` to float64 rounding once y < 1e-300.
    """
    z = np.asarray(z, dtype=np.float64)
    p, logp = ndtr(z), log_ndtr(z)
    with np.errstate(divide="ignore", invalid="ignore"):
        y = betaincinv(a, b, p)
        logy = np.log(y)
        bad = ~np.isfinite(logy) | ~(y > 1e-290)
        ok = ~bad
        yo = y[ok]
        # d log I / d log y: how much a relative error in y moves betainc's value
        kappa = np.exp(a * np.log(yo) + b * np.log1p(-yo) - betaln(a, b)
                       - np.log(p[ok])) / np.maximum(1.0 - yo, 1e-300)
        miss = np.abs(betainc(a, b, yo) - p[ok]) > 1e-10 * p[ok] * (1.0 + kappa)
    bad[np.flatnonzero(ok)[miss]] = True
    if bad.any():
        logy[bad] = _solve_log_beta_quantile(a, b, logp[bad])
    return logy


def _log_betainc(a: float, b: float, t: np.ndarray) -> np.ndarray:
    """log I_{e^t}(a, b), elementwise; the leading term of the series below y = 1e-300."""
    with np.errstate(divide="ignore", over="ignore", under="ignore"):
        tiny = t < -690.0
        direct = np.log(betainc(a, b, np.exp(np.where(tiny, 0.0, t))))
        return np.where(tiny, a * t - math.log(a) - betaln(a, b), direct)


def _solve_log_beta_quantile(a: float, b: float, logp: np.ndarray) -> np.ndarray:
    """t = log y with log I_y(a, b) = logp (logp <= log 0.5), by bisection to float64."""
    logp = np.asarray(logp, dtype=np.float64)
    guess = (logp + math.log(a) + betaln(a, b)) / a  # the series' leading term
    hi = np.zeros_like(logp)
    lo = np.minimum(guess, 0.0) - 1.0
    for _ in range(64):  # widen until the bracket holds the root
        low = _log_betainc(a, b, lo) >= logp
        if not low.any():
            break
        lo = np.where(low, 2.0 * lo - 1.0, lo)
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        above = _log_betainc(a, b, mid) >= logp
        done = (mid == lo) | (mid == hi)
        hi, lo = np.where(above, mid, hi), np.where(above, lo, mid)
        if done.all():
            break
    return 0.5 * (lo + hi)


def beta_from_table(z: np.ndarray, s: np.ndarray) -> np.ndarray:
    """x from the value ``s`` of :attr:`Distribution._beta_table` at z: e^s below z = 0,
    1 - e^s from z = 0 on (the device evaluates the same)."""
    return np.clip(np.where(z < 0, np.exp(s), -np.expm1(s)), 0.0, 1.0)


def canonical_fields(kind: str, given: dict[str, float]) -> dict[str, float]:
    """Convert an accepted field set to the canonical one (p5/p95 forms; see MODEL.md)."""
    if kind == "normal" and "p5" in given:
        p5, p95 = given["p5"], given["p95"]
        return {"mean": (p5 + p95) / 2.0, "sd": (p95 - p5) / (2.0 * Z95)}
    if kind == "lognormal" and "p5" in given:
        p5, p95 = given["p5"], given["p95"]
        return {"median": math.sqrt(p5 * p95), "sigma": math.log(p95 / p5) / (2.0 * Z95)}
    order = next(fs for fs in FIELD_SETS[kind] if set(fs) == set(given))
    return {name: given[name] for name in order}


def spearman_to_normal(rho: float) -> float:
    """Normal (Pearson) correlation of a Gaussian copula with Spearman rank correlation rho.

    For a bivariate normal, rho_S = (6/pi) asin(r/2), so r = 2 sin(pi rho_S / 6).
    """
    return 2.0 * math.sin(math.pi * rho / 6.0)


def _triangle_part(d, width: float, side: float):
    """d^2 / (width side), one side of the triangular CDF. When the product of the two
    widths underflows to 0 (a mode a subnormal distance from an end, still a valid
    distribution) the ratios are taken one at a time instead; otherwise the product form,
    whose last bits every result so far was computed with."""
    if width * side > 0.0:
        return d ** 2 / (width * side)
    return (d / width) * (d / side)
