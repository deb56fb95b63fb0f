"""The device kernel: every per-path statistic of a run, from one place.

A kernel is bound once to its static settings, a hashable :class:`KernelSpec` (the month
grid, the dtype, the parameter sampler's structure, the shock correlation, antithetic
pairs, the observed flows, the loop's unroll), in the way blackjax's ``build_kernel``
binds its static settings: :func:`build_kernel` returns a pure function of the traced
inputs, a :class:`KernelInputs` pytree (the sampler's arguments, the deal terms and the
shock stream's key, from :func:`kernel_inputs`), and of the path indices. Every caller
goes through it and composes it with what it needs (``jit``, ``vmap``, ``shard_map``):
runs and sweeps (:mod:`mcsim.engine.chunk`), the likelihood reference pass
(:mod:`mcsim.engine.conditioning`), the non-finite diagnosis
(:mod:`mcsim.engine.diagnosis`), sensitivity designs (:mod:`mcsim.sensitivity`) and saved
sample paths (:mod:`mcsim.sample_paths`).

The month loop itself, :func:`scan_months`, is the only scan over months in mcsim; it
takes the month's shocks from a function of the month, so the same loop runs on the
counter-based streams of a run or on given normals (:func:`flows_from_normals`, for tests
against the NumPy reference).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .. import events as events_table
from .. import model
from ..config import Config
from ..device_draws import DeviceSampler, SamplerStructure
from ..layout import ANNUAL_FLOWS, STOCKS, StatLayout, v3_stocks, v3_totals
from ..months import MonthGrid
from ..rng import STREAM_SHOCKS, shock_words, stream_key, words_to_uniform
from ..x64 import enable_x64

DTYPES = {"float32": jnp.float32, "float64": jnp.float64}


def shock_cholesky(config: Config) -> tuple[tuple[float, ...], ...]:
    """Lower Cholesky factor of the monthly shocks' correlation, as a hashable static."""
    return tuple(map(tuple, np.linalg.cholesky(np.array(config.shock_correlation))))


class KernelSpec(NamedTuple):
    """What a kernel is compiled for: hashable, so compiled kernels are cached on it.

    ``observed``: per observation, the series whose sum over its window the kernel
    returns (a conditioned run): annual-flow names summed, or one stock name (its window
    is one month). ``unroll``: months per step of the compiled loop (a layout
    choice, see :class:`mcsim.engine.plan.KernelOptions`). ``record_flows``: also return
    every month's flows ([T, n] each: saved sample paths only).
    """

    structure: SamplerStructure
    grid: MonthGrid
    dtype: str
    cholesky: tuple
    antithetic: bool = False
    observed: tuple[tuple[str, ...], ...] = ()
    unroll: int = 1
    record_flows: bool = False
    #: the version-2 mechanisms the config uses (:class:`mcsim.model.Features`)
    features: model.Features = model.Features()
    #: the first-passage events whose months it returns (:mod:`mcsim.events`; None: the
    #: table in force)
    events: tuple | None = None

    @classmethod
    def for_config(cls, config: Config, dtype: str = "float32", *, grid: MonthGrid | None = None,
                   observed: bool = False, unroll: int = 1,
                   record_flows: bool = False) -> KernelSpec:
        """The spec of ``config``'s run (its own grid unless ``grid`` is given; its
        observations' flows when ``observed``)."""
        if dtype not in DTYPES:
            raise ValueError(f"dtype = {dtype!r}: expected one of {', '.join(DTYPES)}")
        grid = grid or config.grid
        return cls(DeviceSampler(config).structure, grid, dtype,
                   shock_cholesky(config),
                   config.simulation.variance_reduction == "antithetic",
                   tuple(o.series for o in config.observations) if observed else (),
                   unroll, record_flows, model.features(config, grid),
                   events_table.table(model.features(config, grid).v3))

    @property
    def sampler(self) -> DeviceSampler:
        return DeviceSampler.from_structure(self.structure)

    @property
    def layout(self) -> StatLayout:
        """The rows and events the kernel's statistics fill."""
        return StatLayout(self.grid, self.events, self.features.v3)


class KernelInputs(NamedTuple):
    """The traced inputs of a kernel (a pytree): a new value never recompiles it."""

    args: dict             # the parameter sampler's arguments (DeviceSampler.arguments)
    deal: model.DealTerms  # float64 device scalars
    shock_key: jax.Array   # uint32 [2]: the key of the monthly shock streams


def kernel_inputs(config: Config, grid: MonthGrid | None = None) -> KernelInputs:
    """``config``'s traced inputs as device arrays (on ``grid``, default its own). Switches
    on JAX's 64-bit mode (:func:`mcsim.x64.enable_x64`): the deal terms are float64."""
    enable_x64()
    grid = grid or config.grid
    return KernelInputs(jax.tree.map(jnp.asarray, DeviceSampler(config).arguments()),
                        run_terms(config, grid),
                        jnp.asarray(stream_key(config.simulation.seed, STREAM_SHOCKS),
                                    jnp.uint32))


def stacked_inputs(configs: list[Config]) -> KernelInputs:
    """The inputs of configs that share a spec, stacked on a leading axis (a batch), except
    the shock key, which they share (same seed)."""
    enable_x64()
    args = jax.tree.map(lambda *xs: jnp.stack([jnp.asarray(x) for x in xs]),
                        *[DeviceSampler(c).arguments() for c in configs])
    deal = jax.tree.map(lambda *xs: jnp.stack([jnp.asarray(x) for x in xs]),
                        *[run_terms(c) for c in configs])
    return KernelInputs(args, deal, kernel_inputs(configs[0]).shock_key)


def run_terms(config: Config, grid: MonthGrid | None = None) -> model.DealTerms:
    """The deal's terms and version 3's run terms (rounds, discount rate) of ``config`` on
    ``grid`` (default its own), as the kernel takes them."""
    grid = grid or config.grid
    return model.deal_terms(config.deal, grid, model.features(config, grid),
                            funding=config.funding,
                            discount_rate=config.simulation.discount_rate)


class PathStatistics(NamedTuple):
    """What a kernel computes for n paths."""

    stats: jax.Array          # [S, n] float64: StatLayout's rows
    final: model.State        # the state after the last month
    first_bad: jax.Array      # [n] int32: first month with a non-finite running sum (T: none)
    observed_sums: jax.Array  # [O, n] float64: each observation's flow summed over its window
    flows: model.Flows | None = None    # [T, n] each, with KernelSpec.record_flows
    stocks: model.Stocks | None = None  # [T, n] each, with KernelSpec.record_flows
    #: [E, n] int32: each event's first month (T: not by the horizon), in the order of
    #: the spec's events (:mod:`mcsim.events`)
    event_months: jax.Array | None = None


def standard_normals(words, dtype):
    """Normals by the inverse error function of 23-bit uniforms (exact in float32)."""
    out = []
    for w in words:
        u = words_to_uniform(w, jnp, dtype)
        out.append(jnp.sqrt(dtype(2.0)) * jax.lax.erf_inv(dtype(2.0) * u - dtype(1.0)))
    return tuple(out)


def pair_streams(paths, antithetic: bool):
    """(shock stream of each path, which paths mirror it): under antithetic pairs path
    2k+1 takes path 2k's stream, negated; otherwise each its own, none mirrored."""
    if not antithetic:
        return paths, None
    return paths & jnp.uint32(0xFFFFFFFE), (paths & jnp.uint32(1)) == 1


def pairwise_sum(x):
    """Sum over the last axis (a power of two) by the complete binary tree of adjacent pairs.

    Elementwise adds only, in an order fixed by position: the same bits for any batch shape
    or backend reduction strategy, and a chunk's tree is a subtree of the run's.
    """
    while x.shape[-1] > 1:
        x = x[..., 0::2] + x[..., 1::2]
    return x[..., 0]


def path_is_finite(outs: tuple) -> jax.Array:
    """bool [n]: every reported statistic of the path is finite under every kernel (the one
    rule for leaving a path out: a NaN or inf is never mixed into a statistic)."""
    ok = jnp.all(jnp.isfinite(outs[0].stats), axis=0)
    for out in outs[1:]:
        ok = ok & jnp.all(jnp.isfinite(out.stats), axis=0)
    return ok


def pair_sums(v, pairs: bool):
    """Sum adjacent paths into antithetic pairs (the units whose spread is the error)."""
    return v[..., 0::2] + v[..., 1::2] if pairs else v


def month_shocks(shock_key, shock_paths, month, dtype, mirrored=None) -> tuple:
    """The five standard normal shocks of ``month`` from each path's stream, negated where
    ``mirrored`` (see :func:`pair_streams`); not yet correlated."""
    z = standard_normals(shock_words(shock_key, shock_paths, month, jnp), dtype)
    return z if mirrored is None else tuple(jnp.where(mirrored, -zk, zk) for zk in z)


def scan_months(theta: dict, deal: model.DealTerms, shocks: Callable, cholesky: tuple,
                grid: MonthGrid, n: int, *, unroll: int = 1,
                observed: tuple[tuple[str, ...], ...] = (),
                windows=None, record_flows: bool = False,
                feats: model.Features = model.V1_FEATURES,
                events: tuple | None = None) -> PathStatistics:
    """Run every month of n paths from drawn parameters ``theta`` (before
    :func:`mcsim.model.prepare`). ``shocks(t)``: the five independent normals that drive
    the step from month t into month t + 1 (the last month's are never used).

    The loop is nested: calendar years outside, their twelve months inside (``unroll``
    applies to the months). A year's flow sums and the drivers of its last month's levels
    are carried through its months and leave the loop once a year, so a month writes
    nothing but its cumulative Azure spend: writing every month into a [flows, years, n]
    table, and four float64 exponentials a month for levels kept only at year ends, took
    half the CPU kernel's time, on one core (XLA does not split an in-place update over
    threads). Months before the start and after the horizon pad the first and last
    calendar years; in them the carry is left as it was (a select per field, compiled in
    only for a grid with partial years), so the numbers are those of a plain month loop.
    """
    T = grid.num_months
    num_years = len(grid.years)
    first = grid.start % 12                   # the start's slot in its calendar year
    padded = first > 0 or (first + T) % 12 != 0
    theta = model.prepare(theta, feats)
    state = model.initial_state(theta, deal, T, feats)
    # stocks are needed every month only by saved paths and stock observations
    monthly_levels = record_flows or any(s[0] in STOCKS for s in observed)
    extra_stocks = v3_stocks(feats.v3)  # signed running sums of the state: ("cash",)
    acc = jnp.float64
    events = events_table.table() if events is None else events
    # events the model does not track are found here, after each month (none: no carry)
    watched = tuple(e for e in events if e.reached is not None)

    def month(carry, t):
        state, sums, drivers, first_bad, obs, watch = carry
        drivers = model.stock_drivers(state, theta, feats)
        if monthly_levels:
            levels = model.stocks_of(drivers)
        state, flows = model.month_flows(theta, deal, state, t, feats)
        first_bad = jnp.where(~model.running_sums_finite(state) & (first_bad == T), t,
                              first_bad)
        # calendar-year sums carried in float64 and added month by month in calendar
        # order (deterministic)
        monthly = [getattr(flows, f).astype(acc) for f in ANNUAL_FLOWS]
        sums = tuple(s + m for s, m in zip(sums, monthly, strict=True))
        if observed:
            level = dict(zip(STOCKS, (getattr(levels, s).astype(acc) for s in STOCKS),
                             strict=True)) if monthly_levels else {}
            level.update(_state_stocks(state, extra_stocks))  # after month t's flows
            inside = (windows["start"] <= t) & (t <= windows["end"])
            obs = obs + jnp.where(inside[:, None],
                                  jnp.stack([_observed_series(s, monthly, level)
                                             for s in observed]), 0.0)
        watch = tuple(jnp.where(e.reached(state, flows, deal) & (m == T), t, m)
                      for e, m in zip(watched, watch, strict=True))
        cum_azure = state.cum_azure_spend
        state = model.advance(theta, state, model.correlate(shocks(t), cholesky), t, feats)
        out = (cum_azure, flows, levels) if record_flows else cum_azure
        return (state, sums, drivers, first_bad, obs, watch), out

    def padded_month(carry, t):
        new, out = month(carry, t)
        inside = (t >= 0) & (t < T)
        return jax.tree.map(lambda a, b: jnp.where(inside, a, b), new, carry), out

    def year(carry, y):
        state, first_bad, obs, watch = carry
        sums = tuple(jnp.zeros((n,), acc) for _ in ANNUAL_FLOWS)
        drivers = model.stock_drivers(state, theta, feats)
        months = 12 * y - first + jnp.arange(12, dtype=jnp.int32)
        (state, sums, drivers, first_bad, obs, watch), out = jax.lax.scan(
            padded_month if padded else month, (state, sums, drivers, first_bad, obs, watch),
            months, unroll=unroll)
        level = model.stocks_of(drivers)
        # a running sum's year-end value is the state after the year's last month
        ends = [getattr(level, s).astype(acc) for s in STOCKS] \
            + list(_state_stocks(state, extra_stocks).values())
        return (state, first_bad, obs, watch), (jnp.stack(sums), jnp.stack(ends), out)

    never = jnp.full((n,), T, jnp.int32)
    obs0 = jnp.zeros((len(observed), n), acc)
    (final, first_bad, obs, watch), (annual, yearend, out) = jax.lax.scan(
        year, (state, never, obs0, tuple(never for _ in watched)),
        jnp.arange(num_years, dtype=jnp.int32))
    # [years, 12, ...] -> the grid's T months
    out = jax.tree.map(lambda x: x.reshape((12 * num_years,) + x.shape[2:])[first:first + T],
                       out)
    cum_azure, flows, levels = out if record_flows else (out, None, None)
    horizon = model.horizon_totals(final, deal, feats)
    extra = model.v3_horizon_totals(final, deal, theta, feats,
                                    horizon.microsoft_economic_return)
    # [years, rows, n] -> rows by year, as StatLayout lays them out
    stats = jnp.concatenate([cum_azure, annual.transpose(1, 0, 2).reshape(-1, n),
                             yearend.transpose(1, 0, 2).reshape(-1, n),
                             jnp.stack(tuple(horizon) + tuple(extra[name] for name in
                                                              v3_totals(feats.v3)))])
    return PathStatistics(stats, final, first_bad, obs, flows, levels,
                          event_months(final, events, dict(zip(watched, watch, strict=True))))


def fused_unsupported(spec: KernelSpec) -> str | None:
    """Why the fused month loop (:mod:`mcsim.engine.fused`) cannot run ``spec`` (None: it
    can): observed flows, recorded flows, or an event found by a condition (one the model
    does not track in its state, :mod:`mcsim.events`)."""
    events = events_table.table() if spec.events is None else spec.events
    reasons = [why for why, on in (
        ("version 3's funding, present values or equity", bool(spec.features.v3)),
        ("observations (a conditioned run)", bool(spec.observed)),
        ("recorded flows (saved paths)", spec.record_flows),
        ("events found by a condition", any(e.reached is not None for e in events)))
        if on]
    return "; ".join(reasons) or None


def event_months(final: model.State, events: tuple | None,
                 watched: dict | None = None) -> jax.Array:
    """[E, n] int32: each event's first month, from the model's state fields or, for an
    event with a condition, from the month loop's record (``watched``: event -> [n])."""
    n = final.repayment_month.shape
    events = events_table.table() if events is None else events
    out = [jnp.broadcast_to(getattr(final, e.month_field), n) if e.month_field is not None
           else watched[e] for e in events]
    return jnp.stack(out) if out else jnp.zeros((0,) + n, jnp.int32)


def _state_stocks(state: model.State, names: tuple[str, ...]) -> dict:
    """Version 3's stocks that are running sums of the state, by name (float64 [n])."""
    fields = {"cash": "funding_cash"}
    return {name: getattr(state, fields[name]) for name in names}


def _observed_series(series: tuple[str, ...], monthly, level: dict):
    """One observation's monthly value: its flows summed in the given order, or its stock's
    level (its window is its one month)."""
    if series[0] in level:
        return level[series[0]]
    out = monthly[ANNUAL_FLOWS.index(series[0])]
    for name in series[1:]:
        out = out + monthly[ANNUAL_FLOWS.index(name)]
    return out


def replayed_shocks(fresh: Callable, latent) -> Callable:
    """Monthly shocks that replay ``latent`` [K, n, 5] (row t drives the step into month
    t + 1) for the first K steps, and take ``fresh(t)`` after: a conditioned path keeps the
    shocks its posterior particle was found with up to the last observed month."""
    K = latent.shape[0]

    def shocks(t):
        z = fresh(t)
        if K == 0:
            return z
        zl = jax.lax.dynamic_index_in_dim(latent, jnp.minimum(t, K - 1), keepdims=False)
        return tuple(jnp.where(t < K, zl[:, k].astype(zk.dtype), zk)
                     for k, zk in enumerate(z))

    return shocks


@functools.lru_cache(maxsize=64)
def build_kernel(spec: KernelSpec) -> Callable[..., PathStatistics]:
    """The per-path function of ``spec``: ``kernel(inputs, paths, uniforms=None,
    shock_paths=None, windows=None) -> PathStatistics``. Pure and traceable; callers jit,
    vmap or shard it.

    ``paths`` [n] uint32: the path indices (their parameter and shock streams).
    ``uniforms`` [n, m] replaces the paths' parameter uniforms (Sobol points, sensitivity
    designs); ``shock_paths`` [n] uint32 names whose monthly shocks each row uses
    (default: its own path's). Under antithetic pairs path 2k+1 mirrors path 2k (uniforms
    1 - u, shocks -z). ``windows``: the observations' ``start``/``end`` month indices [O]
    (inclusive), for a spec with ``observed`` flows. ``latent_shocks`` [K, n, 5]: the
    independent normals of the steps into months 1..K, replayed instead of the streams'
    (a posterior forecast, :mod:`mcsim.engine.smc`).
    """
    sampler = spec.sampler
    dtype = DTYPES[spec.dtype]

    def kernel(inputs: KernelInputs, paths, uniforms=None, shock_paths=None,
               windows=None, latent_shocks=None) -> PathStatistics:
        theta = sampler.draw(inputs.args, paths, dtype, uniforms=uniforms,
                             antithetic=spec.antithetic)
        own_streams, mirrored = pair_streams(paths, spec.antithetic)
        streams = own_streams if shock_paths is None else shock_paths

        def shocks(t):
            return month_shocks(inputs.shock_key, streams, t + 1, dtype, mirrored)

        return scan_months(
            theta, inputs.deal,
            shocks if latent_shocks is None else replayed_shocks(shocks, latent_shocks),
            spec.cholesky, spec.grid, paths.shape[0], unroll=spec.unroll,
            observed=spec.observed, windows=windows, record_flows=spec.record_flows,
            feats=spec.features, events=spec.events)

    return kernel


def flows_from_normals(theta: dict, deal: model.DealTerms, normals, cholesky: tuple,
                       grid: MonthGrid | int, feats: model.Features = model.V1_FEATURES):
    """Every month's flows of N paths from given parameters and independent normals
    [T, N, 5] (row t drives the step into month t; row 0 unused), through the kernel's own
    month loop: (final State, Flows of [T, N] arrays). For tests against
    :mod:`mcsim.reference`; ``grid`` may be a month count."""
    if isinstance(grid, int):
        grid = MonthGrid(0, grid)
    last = grid.num_months - 1

    def shocks(t):
        z = jax.lax.dynamic_index_in_dim(normals, jnp.minimum(t + 1, last), keepdims=False)
        z = jnp.where(t < last, z, jnp.zeros_like(z))  # the last step's are never used
        return tuple(z[..., k] for k in range(5))

    out = scan_months(theta, deal, shocks, cholesky, grid, normals.shape[1],
                      record_flows=True, feats=feats)
    return out.final, out.flows
