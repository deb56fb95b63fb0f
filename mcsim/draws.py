"""Per-path parameters theta: uniforms keyed by (seed, path, parameter) -> copula -> inverse CDF.

The result is a dict ``name -> float64 array [n]`` holding every name of
:data:`mcsim.parameters.PARAMETER_NAMES`; absent rate companions are filled so that the rate
is constant (``NAME_inf = NAME``, ``NAME_halflife = 1``: then ``r(s) = r_0`` exactly).
It also holds ``_logit_NAME`` for each of :data:`LOGIT_PARAMETERS`, computed in float64
before any cast to the kernel's dtype (see :func:`to_dtype`).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import ndtr, ndtri

from .distributions import Distribution, spearman_to_normal
from .parameters import (
    DECAYING_RATES,
    DOMAINS,
    FLOAT64_PARAMETERS,
    LOGIT_PARAMETERS,
    PARAMETER_INDEX,
    PARAMETER_NAMES,
)
from .rng import parameter_uniforms

_ONE_MINUS = np.nextafter(1.0, 0.0)



def lower_triangular_apply(factor: np.ndarray, z: np.ndarray) -> np.ndarray:
    """``z @ factor.T`` for a lower-triangular factor, summed term by term in a fixed order.

    Not a BLAS matmul: its summation order may change with the number of rows, and then a
    path's parameters would depend on the chunk it is drawn in.
    """
    out = np.zeros_like(z)
    for i in range(factor.shape[0]):
        for j in range(i + 1):
            if factor[i, j] != 0.0:
                out[:, i] = out[:, i] + factor[i, j] * z[:, j]
    return out


def copula_matrix(pairs) -> tuple[list[str], np.ndarray]:
    """Names (stream order) and the normal-copula correlation matrix of rank-correlation pairs.

    Spearman rho becomes the normal correlation ``2 sin(pi rho / 6)``.
    """
    names = sorted({n for a, b, _ in pairs for n in (a, b)}, key=PARAMETER_INDEX.get)
    pos = {n: i for i, n in enumerate(names)}
    m = np.eye(len(names))
    for a, b, rho in pairs:
        r = spearman_to_normal(rho)
        m[pos[a], pos[b]] = m[pos[b], pos[a]] = r
    return names, m


def to_dtype(theta: dict[str, np.ndarray], dtype) -> dict[str, np.ndarray]:
    """theta in ``dtype``, each value rounded to the nearest representable number inside
    its parameter's domain.

    A draw from a distribution whose support touches an open end of the domain (a beta
    with beta < 1 for a utilization in (0, 1), say) can round onto that end: 1 - 1e-9 is
    1.0 in float32, and logit(1) is inf. The nearest float inside the domain is the correct
    rounding there, not a repair: the exact value lies inside.

    Version 3's parameters (:data:`~mcsim.parameters.FLOAT64_PARAMETERS`) are also kept
    as they are, in float64 (``_f64_NAME``): they enter float64 sums only.

    The logits the model needs (``_logit_NAME`` of :data:`LOGIT_PARAMETERS`) are added,
    computed from the values before the cast, where absent: 1 - 1e-10 rounds to 1 - 6e-8
    in float32, whose logit is 16.6 instead of 23.0, and a logit state reverting to the
    wrong level moves every later month's revenue.
    """
    dtype = np.dtype(dtype)
    theta = dict(theta)
    for name in FLOAT64_PARAMETERS:
        if name in theta and f"_f64_{name}" not in theta:
            theta[f"_f64_{name}"] = np.asarray(theta[name], np.float64)
    for name in LOGIT_PARAMETERS:
        if name in theta and f"_logit_{name}" not in theta:
            x = np.clip(np.asarray(theta[name], np.float64), np.finfo(np.float64).tiny,
                        _ONE_MINUS)
            theta[f"_logit_{name}"] = np.log(x) - np.log1p(-x)
    out = {}
    for name, values in theta.items():
        with np.errstate(over="ignore"):  # beyond the dtype's range: inf, flagged later
            x = np.asarray(values).astype(dtype)
        if name.startswith("_f64_"):  # kept in float64 (FLOAT64_PARAMETERS)
            out[name] = np.asarray(values, np.float64)
            continue
        if name.startswith("_"):  # derived in float64 above: rounded, nothing to clip
            out[name] = x
            continue
        dom = DOMAINS[name]
        if math.isfinite(dom.low):
            if not dom.low_open:
                lo = dtype.type(dom.low)
            elif dom.low == 0:  # the smallest normal number: devices flush subnormals
                lo = np.finfo(dtype).tiny
            else:
                lo = np.nextafter(dtype.type(dom.low), dtype.type(np.inf))
            x = np.maximum(x, lo)
        if math.isfinite(dom.high):
            hi = np.nextafter(dtype.type(dom.high), dtype.type(-np.inf)) if dom.high_open \
                else dtype.type(dom.high)
            x = np.minimum(x, hi)
        out[name] = x
    return out


class ParameterSampler:
    """Draws theta for any range of path indices of a config, reproducibly.

    Example:
        >>> sampler = ParameterSampler(config)            # doctest: +SKIP
        >>> theta = sampler.draw(path_start=0, num_paths=1000)
        >>> theta["gpu_price_0"].shape
        (1000,)
    """

    def __init__(self, config) -> None:
        self.parameters = config.parameters
        self.seed = config.simulation.seed
        self.uncertain = config.uncertain_parameters()
        self.indices = np.array([PARAMETER_INDEX[n] for n in self.uncertain], dtype=np.int64)
        self.copula_names: list[str] = []
        self.copula_cholesky = None
        if config.correlation_pairs:
            self.copula_names, m = copula_matrix(config.correlation_pairs)
            self.copula_cholesky = np.linalg.cholesky(m)

    def uniforms(self, path_start: int, num_paths: int) -> np.ndarray:
        """Uniforms [n, len(uncertain)] after the copula (independent ones pass unchanged)."""
        return self.correlated(parameter_uniforms(self.seed, path_start, num_paths,
                                                  self.indices))

    def correlated(self, u: np.ndarray) -> np.ndarray:
        """Independent uniforms [n, len(uncertain)] (the paths' own, antithetic mirrors or
        Sobol points) through the Gaussian copula."""
        u = np.array(u, np.float64)
        if self.copula_cholesky is not None:
            cols = [self.uncertain.index(n) for n in self.copula_names]
            z = lower_triangular_apply(self.copula_cholesky, ndtri(u[:, cols]))
            u[:, cols] = np.clip(ndtr(z), np.finfo(np.float64).tiny, _ONE_MINUS)
        return u

    def from_uniforms(self, u: np.ndarray) -> dict[str, np.ndarray]:
        """theta from uniforms [n, len(uncertain)] (copula already applied)."""
        n = u.shape[0]
        theta: dict[str, np.ndarray] = {}
        for name in PARAMETER_NAMES:
            spec = self.parameters.get(name)
            if isinstance(spec, Distribution):
                theta[name] = spec.ppf(u[:, self.uncertain.index(name)])
            elif spec is not None:
                theta[name] = np.full(n, float(spec))
        for rate in DECAYING_RATES:
            if rate in theta and f"{rate}_inf" not in theta:
                theta[f"{rate}_inf"] = theta[rate].copy()
                theta[f"{rate}_halflife"] = np.ones(n)
        return to_dtype(theta, np.float64)

    def draw(self, path_start: int, num_paths: int) -> dict[str, np.ndarray]:
        """theta for paths ``path_start .. path_start+num_paths-1``: name -> float64 [n]."""
        return self.from_uniforms(self.uniforms(path_start, num_paths))
