"""Per-path parameters drawn on the device, inside the simulation kernel.

The same recipe as :class:`mcsim.draws.ParameterSampler` (the host's float64 reference):
uniforms keyed by (seed, path, parameter) -> Gaussian copula -> inverse CDF -> rounded into
the parameter's domain in the kernel dtype. Drawing on the device removes the host from the
loop (on a GPU the host's SciPy draws would cost more than the simulation) and lets XLA fuse
the draws into the kernel. The two agree to float64 rounding (a test checks 1e-12), not bit
for bit: XLA's ``ndtri`` and ``log`` are not NumPy's. Every number the engine reports uses
these device draws, so runs stay bit-identical among themselves whatever the chunking.

Numbers that a config may change (distribution fields, constants, the seed) are traced
arguments, so a sweep over them reuses one compiled kernel; the structure (which parameter
has which distribution, the copula's factor) is static.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import ndtr, ndtri

from .distributions import Z_TABLE, Distribution
from .draws import copula_matrix
from .parameters import (
    DECAYING_RATES,
    DOMAINS,
    FLOAT64_PARAMETERS,
    LOGIT_PARAMETERS,
    PARAMETER_INDEX,
    PARAMETER_NAMES,
)
from .rng import STREAM_PARAMETERS, stream_key, threefry2x32

_F64 = jnp.float64


class SamplerStructure(NamedTuple):
    """What a compiled kernel depends on (hashable): kinds, copula, domain clips."""

    constants: tuple[str, ...]               # names of fixed parameters
    uncertain: tuple[str, ...]               # names drawn, in stream (column) order
    columns: tuple[int, ...]                 # stream index j of each uncertain parameter
    kinds: tuple[str, ...]                   # Distribution kind of each uncertain one
    copula_columns: tuple[int, ...]          # positions in ``uncertain``
    copula_factor: tuple[tuple[float, ...], ...]
    companions: tuple[str, ...]              # decaying rates with no _inf/_halflife given
    #: per uncertain one: a normal or lognormal with min or max (drawn by
    #: :func:`_truncated_ndtri`; the others keep the plain ndtri(u))
    truncated_normal: tuple[bool, ...] = ()


#: Fields of each kind, in the order of the per-kind argument arrays.
_KIND_FIELDS = {"normal": ("mean", "sd"), "lognormal": ("median", "sigma"),
                "uniform": ("low", "high"), "triangular": ("low", "mode", "high"),
                "pert": ("low", "mode", "high"), "beta": ("alpha", "beta")}


def _domain_bounds(name: str, dtype) -> tuple[float, float]:
    """(low, high) clip of :func:`mcsim.draws.to_dtype` for ``name`` in ``dtype``."""
    dtype = np.dtype(dtype)
    dom = DOMAINS[name]
    lo, hi = -np.inf, np.inf
    if math.isfinite(dom.low):
        if not dom.low_open:
            lo = dtype.type(dom.low)
        elif dom.low == 0:
            lo = np.finfo(dtype).tiny
        else:
            lo = np.nextafter(dtype.type(dom.low), dtype.type(np.inf))
    if math.isfinite(dom.high):
        hi = (np.nextafter(dtype.type(dom.high), dtype.type(-np.inf)) if dom.high_open
              else dtype.type(dom.high))
    return float(lo), float(hi)


class DeviceSampler:
    """Static structure plus traced arguments of a config's parameter draws.

    Example:
        >>> s = DeviceSampler(config)                                   # doctest: +SKIP
        >>> theta = jax.jit(lambda a, p: s.draw(a, p, jnp.float32))(s.arguments(),
        ...                                                        jnp.arange(8, dtype=jnp.uint32))
    """

    def __init__(self, config) -> None:
        params = config.parameters
        uncertain = tuple(config.uncertain_parameters())
        copula_cols, factor = (), ()
        if config.correlation_pairs:
            names, m = copula_matrix(config.correlation_pairs)
            copula_cols = tuple(uncertain.index(n) for n in names)
            factor = tuple(map(tuple, np.linalg.cholesky(m).tolist()))
        self.structure = SamplerStructure(
            tuple(n for n in PARAMETER_NAMES
                  if n in params and not isinstance(params[n], Distribution)),
            uncertain, tuple(PARAMETER_INDEX[n] for n in uncertain),
            tuple(params[n].kind for n in uncertain), copula_cols, factor,
            tuple(r for r in DECAYING_RATES if r in params and f"{r}_inf" not in params),
            tuple(params[n].kind in _NORMAL_FAMILY and params[n].truncated
                  for n in uncertain))
        self._config = config

    @classmethod
    def from_structure(cls, structure: SamplerStructure) -> DeviceSampler:
        """A sampler that can only :meth:`draw` (what a cached kernel needs)."""
        sampler = cls.__new__(cls)
        sampler.structure = structure
        sampler._config = None
        return sampler

    def arguments(self) -> dict:
        """Traced inputs (float64 arrays over the uncertain parameters): the seed's key,
        truncation, each kind's fields, the beta tables, the constants."""
        st, params = self.structure, self._config.parameters
        k0, k1 = stream_key(self._config.simulation.seed, STREAM_PARAMETERS)
        dists = [params[n] for n in st.uncertain]
        mass = np.array([d.truncation_mass() for d in dists]).reshape(-1, 2)
        out: dict = {
            "key": np.array([k0, k1], np.uint32),
            "constants": np.array([float(params[n]) for n in st.constants], np.float64),
            "f_lo": mass[:, 0], "f_span": mass[:, 1] - mass[:, 0],
            "lower": np.array([d.lower for d in dists], np.float64),
            "upper": np.array([d.upper for d in dists], np.float64),
        }
        for kind, fields in _KIND_FIELDS.items():
            members = [d for d in dists if d.kind == kind]
            if members:
                out[kind] = np.array([[d.params[f] for f in fields] for d in members],
                                     np.float64).T
        if "uniform" in out:  # a truncated uniform is the uniform on the intersection
            out["uniform"] = np.array([d.uniform_range() for d in dists
                                       if d.kind == "uniform"], np.float64).T
        cut = [d.normal_truncation() for d, t in zip(dists, st.truncated_normal, strict=True)
               if t]
        if cut:  # NormalTruncation's fields, one column per truncated normal or lognormal
            out["normal_cut"] = np.array([[float(c.flip), c.a, c.b, c.la, c.lb, c.pa, c.qb,
                                           c.m] for c in cut], np.float64).T
        tables = [d._beta_table for d in dists if d.kind in ("beta", "pert")]
        if tables:
            out["knots"] = np.asarray(tables[0].x)  # the same z grid for every table
            out["coef"] = np.stack([np.asarray(t.c) for t in tables])  # (m, 4, K-1)
        return out

    def uniforms(self, args: dict, paths, antithetic: bool = False):
        """Independent uniforms [n, m] of the uncertain parameters for ``paths`` (uint32).

        Keyed by (seed, path, parameter). With ``antithetic``, path 2k+1 takes ``1 - u`` of
        path 2k (exact in float64: u is an odd multiple of 2^-53).
        """
        st = self.structure
        cols = jnp.asarray(np.array(st.columns, np.uint32))
        base = paths & jnp.uint32(0xFFFFFFFE) if antithetic else paths
        w0, w1 = threefry2x32(args["key"][0], args["key"][1], base[:, None],
                              cols[None, :], jnp)
        hi = (w0 >> jnp.uint32(6)).astype(_F64)
        lo = (w1 >> jnp.uint32(6)).astype(_F64)
        u = (hi * 2.0**26 + lo + 0.5) * 2.0**-52  # [n, m]
        if antithetic:
            u = jnp.where((paths & jnp.uint32(1))[:, None] == 1, 1.0 - u, u)
        return u

    def draw(self, args: dict, paths, dtype, uniforms=None, antithetic: bool = False) -> dict:
        """theta for the path indices ``paths`` (uint32 [n]): name -> ``dtype`` [n].

        Runs under jit; ``args`` is :meth:`arguments` (as device arrays). ``uniforms``
        [n, m] replaces the independent uniforms of :meth:`uniforms` (Sobol points, or a
        sensitivity design's rows); they go through the same copula and inverse CDFs. Each
        operation acts on all parameters of a kind at once ([n, m] arrays): one ``ndtri``
        in the compiled program instead of thirty keeps compilation short.
        """
        st = self.structure
        n = paths.shape[0]
        theta = {}
        if st.uncertain:
            u = uniforms if uniforms is not None else self.uniforms(args, paths, antithetic)
            if st.copula_columns:
                cc = np.array(st.copula_columns)
                z = ndtri(u[:, cc])
                terms = []
                for i in range(len(cc)):
                    acc = jnp.zeros((n,), _F64)
                    for j in range(i + 1):  # the host's term order (lower_triangular_apply)
                        if st.copula_factor[i][j] != 0.0:
                            acc = acc + st.copula_factor[i][j] * z[:, j]
                    terms.append(acc)
                tiny, one_minus = np.finfo(np.float64).tiny, np.nextafter(1.0, 0.0)
                u = u.at[:, cc].set(jnp.clip(ndtr(jnp.stack(terms, axis=1)), tiny,
                                             one_minus))
            x = jnp.clip(_ppf_columns(st, args, u), args["lower"], args["upper"])
            for k, name in enumerate(st.uncertain):
                theta[name] = x[:, k]
        for k, name in enumerate(st.constants):
            theta[name] = jnp.full((n,), args["constants"][k], _F64)
        for rate in st.companions:
            theta[f"{rate}_inf"] = theta[rate]
            theta[f"{rate}_halflife"] = jnp.ones((n,), _F64)
        out = {}
        for name, x in theta.items():
            lo, hi = _domain_bounds(name, dtype)
            out[name] = jnp.clip(x.astype(dtype), dtype(lo), dtype(hi))
            if name in FLOAT64_PARAMETERS:
                # version 3's money and the factors of Microsoft's equity enter float64 sums
                # only: kept as drawn ($13B is $12,999,999,488 in float32, and a valid
                # $1e39 is inf there), see mcsim.draws.to_dtype
                lo, hi = _domain_bounds(name, _F64)
                out[f"_f64_{name}"] = jnp.clip(x, lo, hi)
        # the logit states' targets and starts, from the float64 draws: 1 - 1e-10 is
        # 1 - 6e-8 in float32, whose logit (16.6 instead of 23.0) would move the level the
        # logit reverts to (see mcsim.draws.to_dtype)
        for name in LOGIT_PARAMETERS:
            lo, hi = _domain_bounds(name, _F64)
            x = jnp.clip(theta[name], lo, hi)
            out[f"_logit_{name}"] = (jnp.log(x) - jnp.log1p(-x)).astype(dtype)
        return out


_NORMAL_FAMILY = ("normal", "lognormal")


def _ppf_columns(st: SamplerStructure, args: dict, u_all):
    """Inverse CDFs (truncated) of every column of the uniforms u [n, m]
    (Distribution.ppf's formulas), each kind computed once over its columns: the normal
    family in standard-normal units (:func:`_truncated_ndtri` where truncated), the
    uniform on its truncated range, the others at F(min) + u (F(max) - F(min))."""
    kinds = st.kinds
    v = args["f_lo"] + u_all * args["f_span"]
    out = v
    truncated = st.truncated_normal or (False,) * len(kinds)
    plain_z = [k for k, kind in enumerate(kinds) if kind not in ("uniform", "triangular")
               and not truncated[k]]
    z = ndtri(v[:, np.array(plain_z)]) if plain_z else None
    zpos = {k: i for i, k in enumerate(plain_z)}
    cut = [k for k in range(len(kinds)) if truncated[k]]
    if cut:  # truncated normal family: z from the uniform itself, on the range's side
        zc = _truncated_ndtri(u_all[:, np.array(cut)], args["normal_cut"])
        z = zc if z is None else jnp.concatenate([z, zc], axis=1)
        zpos.update({k: len(plain_z) + i for i, k in enumerate(cut)})
    spline_cols = [k for k, kind in enumerate(kinds) if kind in ("beta", "pert")]
    for kind in _KIND_FIELDS:
        ks = [k for k, kd in enumerate(kinds) if kd == kind]
        if not ks:
            continue
        p = args[kind]  # [fields, len(ks)]
        u = (u_all if kind == "uniform" else v)[:, np.array(ks)]
        if kind == "normal":
            x = p[0] + p[1] * z[:, np.array([zpos[k] for k in ks])]
        elif kind == "lognormal":
            x = p[0] * jnp.exp(p[1] * z[:, np.array([zpos[k] for k in ks])])
        elif kind == "uniform":
            x = p[0] + (p[1] - p[0]) * u
        elif kind == "triangular":
            a, c, b = p[0], p[1], p[2]
            left = a + jnp.sqrt(u * (b - a) * (c - a))
            right = b - jnp.sqrt(jnp.maximum(1.0 - u, 0.0) * (b - a) * (b - c))
            x = jnp.where(u < (c - a) / (b - a), left, right)
        else:  # beta, pert: the host's spline in z = ndtri(u)
            tables = np.array([spline_cols.index(k) for k in ks])
            q = _beta_quantile(args, tables, z[:, np.array([zpos[k] for k in ks])])
            x = q if kind == "beta" else p[0] + (p[2] - p[0]) * q
        out = out.at[:, np.array(ks)].set(x)
    return out


def _beta_quantile(args: dict, tables: np.ndarray, z):
    """The beta quantiles (tables [m]) at z [n, m]: the cubic splines of log x (z < 0) and
    log(1 - x) (z >= 0) by Horner's rule, then x (distributions.beta_from_table)."""
    knots, coef = args["knots"], args["coef"][tables]  # (K,), (m, 4, K-1)
    z = jnp.clip(z, -Z_TABLE, Z_TABLE)
    h = (2.0 * Z_TABLE) / (knots.shape[0] - 1)
    i = jnp.clip(jnp.floor((z + Z_TABLE) / h).astype(jnp.int32), 0, knots.shape[0] - 2)
    d = z - knots[i]
    col = jnp.arange(len(tables))[None, :]
    s = ((coef[col, 0, i] * d + coef[col, 1, i]) * d + coef[col, 2, i]) * d + coef[col, 3, i]
    return jnp.clip(jnp.where(z < 0, jnp.exp(s), -jnp.expm1(s)), 0.0, 1.0)


def _truncated_ndtri(u, cut):
    """z of standard normals truncated to their ranges at uniforms u [n, k] (float64), the
    device form of :meth:`mcsim.distributions.NormalTruncation.ppf`; ``cut`` [8, k] holds
    (flip, a, b, log Phi(a), log Phi(b), Phi(a), Phi(-b), Phi(b) - Phi(a))."""
    flip, a, b, la, lb, pa, qb, m = (cut[i] for i in range(8))
    flipped = flip > 0.5
    v = jnp.where(flipped, 1.0 - u, u)
    # below the median: in log space, exact however far out the range lies
    r = jnp.exp(la - lb)
    z_tail = _ndtri_exp(lb + jnp.log(v + (1.0 - v) * r))
    # straddling the median: each half from its own end
    p = pa + v * m
    q = qb + (1.0 - v) * m
    z_mid = jnp.where(p <= 0.5, ndtri(jnp.minimum(p, 0.5)), -ndtri(jnp.minimum(q, 0.5)))
    z = jnp.clip(jnp.where(b <= 0.0, z_tail, z_mid), a, b)
    return jnp.where(flipped, -z, z)


#: Below log p = -708 (p = 3e-308, float64's smallest normal numbers) ndtri(exp(log p))
#: has no digits left: Newton's method on log Phi takes over.
_FAR_LOG_P = -708.0


def _ndtri_exp(logp):
    """z with log Phi(z) = logp (logp <= log 0.5), float64: scipy.special.ndtri_exp."""
    direct = ndtri(jnp.exp(jnp.maximum(logp, _FAR_LOG_P)))
    t = -2.0 * jnp.minimum(logp, _FAR_LOG_P)
    z = -jnp.sqrt(t - jnp.log(t) - math.log(2.0 * math.pi))  # log Phi's leading terms
    for _ in range(4):  # quadratic from ~1e-3: 1e-6, 1e-12, 1e-16
        lz = _log_ndtr_far(z)
        log_pdf = -0.5 * z * z - 0.5 * math.log(2.0 * math.pi)
        z = z - (lz - jnp.minimum(logp, _FAR_LOG_P)) * jnp.exp(lz - log_pdf)
    return jnp.where(logp > _FAR_LOG_P, direct, z)


def _log_ndtr_far(z):
    """log Phi(z) for z < -30 by its asymptotic series to (2k-1)!!/z^2k, k = 8 (the last
    term is below 1e-17 there)."""
    w = 1.0 / (z * z)
    series, term = jnp.zeros_like(z), jnp.ones_like(z)
    for k in range(1, 9):
        term = -term * (2 * k - 1) * w
        series = series + term
    return -0.5 * z * z - jnp.log(-z) - 0.5 * math.log(2.0 * math.pi) + jnp.log1p(series)


def draw_on_device(config, path_start: int, num_paths: int, dtype=jnp.float64) -> dict:
    """theta for a range of paths, computed by the device recipe (for tests and audits)."""
    sampler = DeviceSampler(config)

    @jax.jit
    def f(args, start):
        return sampler.draw(args, start + jnp.arange(num_paths, dtype=jnp.uint32), dtype)

    out = f(sampler.arguments(), jnp.uint32(path_start % 2**32))
    return {k: np.asarray(v) for k, v in out.items()}
