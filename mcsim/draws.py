"""Per-path parameters theta: uniforms keyed by (seed, path, parameter) -> copula -> inverse CDF.

The result is a dict ``name -> float64 array [n]`` holding every name of
:data:`mcsim.parameters.PARAMETER_NAMES`; absent rate companions are filled so that the rate
is constant (``NAME_inf = NAME``, ``NAME_halflife = 1``: then ``r(s) = r_0`` exactly).
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr, ndtri

from .distributions import Distribution, spearman_to_normal
from .parameters import DECAYING_RATES, PARAMETER_INDEX, PARAMETER_NAMES
from .rng import parameter_uniforms

_ONE_MINUS = np.nextafter(1.0, 0.0)


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
        u = parameter_uniforms(self.seed, path_start, num_paths, self.indices)
        if self.copula_cholesky is not None:
            cols = [self.uncertain.index(n) for n in self.copula_names]
            z = ndtri(u[:, cols]) @ self.copula_cholesky.T
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
            if f"{rate}_inf" not in theta:
                theta[f"{rate}_inf"] = theta[rate].copy()
                theta[f"{rate}_halflife"] = np.ones(n)
        return theta

    def draw(self, path_start: int, num_paths: int) -> dict[str, np.ndarray]:
        """theta for paths ``path_start .. path_start+num_paths-1``: name -> float64 [n]."""
        return self.from_uniforms(self.uniforms(path_start, num_paths))
