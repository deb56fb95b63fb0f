"""Engine: runs the model over chunks of path indices and reduces them on the fly.

For each call, on every local device (``shard_map`` over the path axis), one jit-compiled
kernel draws the paths' parameters and each month's shocks from counter-based generators
keyed by (seed, path, ...), scans the months with :mod:`mcsim.model`, and reduces the
per-path statistics of :mod:`mcsim.layout` to fixed-size summaries: integer histograms and
month counts kept on the device between calls, and one node of the pairwise sum tree per
device (:class:`mcsim.accumulators.SumTree`). Under ``jax.distributed`` each process runs a
contiguous share of the paths and the accumulators are merged. Nothing of size [paths,
months] ever exists beyond one call, so memory does not grow with the number of paths, and
every number is fixed by the config and its seed alone.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from . import checkpoint as ckpt
from . import model
from .accumulators import BLOCK, Accumulator, MoneyBins, SumTree
from .config import Config, ConfigError
from .device_draws import DeviceSampler
from .layout import ANNUAL_FLOWS, StatLayout
from .months import MonthGrid
from .qmc import sobol_points_for
from .rng import STREAM_SHOCKS, shock_words, stream_key, words_to_uniform

DTYPES = {"float32": jnp.float32, "float64": jnp.float64}
DEFAULT_CHUNK_CPU = 32 * BLOCK
DEFAULT_CHUNK_ACCELERATOR = 1024 * BLOCK


class KernelOptions(NamedTuple):
    """How the kernel is laid out for a device; never what it computes.

    ``unroll``: months per step of the compiled loop. On a GPU one step is a few kernels
    that read and write every path's state from device memory, so unrolling lets XLA keep
    the state in registers across several months; on the CPU it only lengthens compilation.
    ``hist_copies``: histogram copies that paths are spread over (path index mod copies),
    summed at the end: on a GPU, contended atomic adds to the few busiest bins otherwise
    serialize. ``hist_copies`` never changes a result. ``unroll`` changes the fused code,
    and so, like another device type, the last bits of float32 arithmetic (fused
    multiply-adds across months): for a given device type and options the results are
    bit-identical whatever the chunking, devices or processes, and the options are
    recorded in the provenance.
    """

    unroll: int = 1
    hist_copies: int = 1


CPU_OPTIONS = KernelOptions()
#: measured fastest on an H100 (benchmarks/results/gpu-nvidia_h100_80gb_hbm3-layouts.json)
GPU_OPTIONS = KernelOptions(unroll=8, hist_copies=32)


def default_kernel_options(device=None) -> KernelOptions:
    device = device or jax.local_devices()[0]
    return CPU_OPTIONS if device.platform == "cpu" else GPU_OPTIONS


class ChunkCounts(NamedTuple):
    """Integer counts kept on the devices between chunks, one row per local device."""

    histogram: jax.Array         # (D, copies, S, B) int32
    repayment_counts: jax.Array  # (D, T+1) int32
    credit_counts: jax.Array     # (D, T+1) int32
    nonfinite_months: jax.Array  # (D, T+1) int32: paths with a NaN/inf, by first month


class ChunkNode(NamedTuple):
    """Each device's node of the sum tree for its paths of one call (see SumTree)."""

    count: jax.Array  # (D,) int32: finite paths
    s1: jax.Array     # (D, S) float64: sum of x
    s2: jax.Array     # (D, S) float64: sum of x^2


#: Per-device counts are int32; they go to the host's int64 before this many paths.
INT32_PATHS = 2**31 - 1


def default_chunk_size(grid: MonthGrid | None = None, device=None) -> int:
    """Paths per device per call.

    CPU: 32768 (the working set stays near the caches). Accelerators: a quarter of the
    device's memory over :func:`bytes_per_path`, so that the kernel's buffers and XLA's
    scratch fit with room to spare; never above 2^22.
    """
    device = device or jax.local_devices()[0]
    if device.platform == "cpu":
        return DEFAULT_CHUNK_CPU
    stats = device.memory_stats() or {}
    limit = stats.get("bytes_limit")
    if not limit or grid is None:
        return DEFAULT_CHUNK_ACCELERATOR
    fit = int(limit // 4 // bytes_per_path(grid))
    return max(BLOCK, min(2**22, 1 << (fit.bit_length() - 1)))


def bytes_per_path(grid: MonthGrid) -> int:
    """Upper estimate of the kernel's device memory per path of a chunk, bytes.

    The scan's per-month outputs (cumulative Azure spend in float64 and four flows in at
    most float64), then each statistic's float64 value, float32 copy, bin index, weight and
    square, plus the parameters and state. ``tests/test_engine.py`` checks it against XLA's
    own memory analysis of the compiled kernel.
    """
    T = grid.num_months
    S = StatLayout(grid).num_stats
    return 8 * T * (1 + len(ANNUAL_FLOWS)) + 40 * S + 2048


def round_chunk(chunk_size: int, num_paths: int, num_devices: int = 1) -> int:
    """Paths per device per call: BLOCK times a power of two (a whole subtree of the sum
    tree), at least ``chunk_size`` unless the run needs fewer."""
    per_device = -(-num_paths // num_devices)
    needed = max(1, -(-per_device // BLOCK))
    blocks = min(max(1, -(-chunk_size // BLOCK)), needed)
    return BLOCK << (blocks - 1).bit_length()


def shock_cholesky(config: Config) -> tuple[tuple[float, ...], ...]:
    """Lower Cholesky factor of the monthly shocks' correlation, as a hashable static."""
    return tuple(map(tuple, np.linalg.cholesky(np.array(config.shock_correlation))))


def pairwise_sum(x):
    """Sum over the last axis (a power of two) by the complete binary tree of adjacent pairs.

    Elementwise adds only, in an order fixed by position: the same bits for any batch shape
    or backend reduction strategy, and a chunk's tree is a subtree of the run's.
    """
    while x.shape[-1] > 1:
        x = x[..., 0::2] + x[..., 1::2]
    return x[..., 0]


def standard_normals(words, dtype):
    """Normals by the inverse error function of 23-bit uniforms (exact in float32)."""
    out = []
    for w in words:
        u = words_to_uniform(w, jnp, dtype)
        out.append(jnp.sqrt(dtype(2.0)) * jax.lax.erf_inv(dtype(2.0) * u - dtype(1.0)))
    return tuple(out)


class PathStatistics(NamedTuple):
    """What :func:`shard_statistics` computes for n paths."""

    stats: jax.Array          # [S, n] float64: StatLayout's rows
    final: model.State        # the state after the last month
    first_bad: jax.Array      # [n] int32: first month with a non-finite running sum (T: none)
    observed_sums: jax.Array  # [O, n] float64: each observation's flow summed over its window


#: Likelihood weights are counted in units of 2^-20 (integers): integer adds are exact in
#: any order, so weighted histograms are as reproducible as plain counts; the rounding
#: (at most 2^-21 per path) is far below the Monte Carlo error of any weighted statistic.
WEIGHT_ONE = 2**20


def pair_streams(paths, antithetic: bool):
    """(shock stream of each path, which paths mirror it): under antithetic pairs path
    2k+1 takes path 2k's stream, negated; otherwise each its own, none mirrored."""
    if not antithetic:
        return paths, None
    return paths & jnp.uint32(0xFFFFFFFE), (paths & jnp.uint32(1)) == 1


def month_shocks(shock_key, shock_paths, month, dtype, mirrored=None) -> tuple:
    """The five standard normal shocks of ``month`` from each path's stream, negated where
    ``mirrored`` (see :func:`pair_streams`); not yet correlated."""
    z = standard_normals(shock_words(shock_key, shock_paths, month, jnp), dtype)
    return z if mirrored is None else tuple(jnp.where(mirrored, -zk, zk) for zk in z)


def shard_statistics(sampler: DeviceSampler, grid: MonthGrid, dtype, cholesky: tuple,
                     args, deal, shock_key, paths, unroll: int = 1, *, uniforms=None,
                     shock_paths=None, antithetic: bool = False,
                     observed: tuple[str, ...] = (), windows=None) -> PathStatistics:
    """Every per-path statistic of :class:`StatLayout` for the path indices ``paths``.

    ``uniforms`` [n, m] replaces the paths' parameter uniforms (Sobol points, sensitivity
    designs); ``shock_paths`` [n] (uint32) names whose monthly shocks each row uses
    (default: its own path's). ``antithetic``: path 2k+1 mirrors path 2k (uniforms 1 - u,
    shocks -z). ``observed``: flow names whose sums over ``windows`` (``start``/``end``
    month indices [O], inclusive) are returned, for likelihood weights. Pure: the engine's
    kernel, the sensitivity designs and the non-finite diagnosis share it.
    """
    T = grid.num_months
    num_years = len(grid.years)
    year_of = grid.year_of_month()
    theta = model.prepare(sampler.draw(args, paths, dtype, uniforms=uniforms,
                                       antithetic=antithetic))
    state = model.initial_state(theta, deal, T)
    own_streams, mirrored = pair_streams(paths, antithetic)
    shock_paths = own_streams if shock_paths is None else shock_paths

    year_index = jnp.asarray(year_of, jnp.int32)
    n = paths.shape[0]

    def body(carry, t):
        state, annual, first_bad, obs = carry
        state, flows = model.month_flows(theta, deal, state, t)
        # every flow feeds one of these running sums, and a NaN or inf never leaves a sum:
        # the first month a path's sum is not finite is the first month of a bad flow
        sums = state.cum_azure_spend + state.cum_revenue + state.cum_profit \
            + state.openai_cash + state.cum_profit_share
        first_bad = jnp.where(~jnp.isfinite(sums) & (first_bad == T), t, first_bad)
        # calendar-year sums carried in float64 and added month by month in calendar
        # order (deterministic); carrying them costs far less than stacking every
        # month's flows and summing afterwards
        y = year_index[t]
        monthly = jnp.stack([getattr(flows, f).astype(jnp.float64) for f in ANNUAL_FLOWS])
        zero = jnp.int32(0)
        year = jax.lax.dynamic_slice(annual, (zero, y, zero), (len(ANNUAL_FLOWS), 1, n))
        annual = jax.lax.dynamic_update_slice(annual, year + monthly[:, None, :],
                                              (zero, y, zero))
        if observed:
            inside = (windows["start"] <= t) & (t <= windows["end"])
            flow = jnp.stack([monthly[ANNUAL_FLOWS.index(f)] for f in observed])
            obs = obs + jnp.where(inside[:, None], flow, 0.0)
        cum_azure = state.cum_azure_spend
        z = month_shocks(shock_key, shock_paths, t + 1, dtype, mirrored)
        state = model.advance(theta, state, model.correlate(z, cholesky), t)
        return (state, annual, first_bad, obs), cum_azure

    annual0 = jnp.zeros((len(ANNUAL_FLOWS), num_years, n), jnp.float64)
    never = jnp.full((n,), T, jnp.int32)
    obs0 = jnp.zeros((len(observed), n), jnp.float64)
    (final, annual, first_bad, obs), cum_azure = jax.lax.scan(
        body, (state, annual0, never, obs0), jnp.arange(T, dtype=jnp.int32), unroll=unroll)
    receipts = final.cum_profit_share + final.cum_revenue_share  # float64 already
    horizon = [final.cum_revenue, final.cum_profit, receipts, receipts - deal.investment,
               -final.min_openai_cash]
    stats = jnp.concatenate([cum_azure, annual.reshape(-1, n), jnp.stack(horizon)])
    return PathStatistics(stats, final, first_bad, obs)


#: A path's weight relative to the reference is capped at e^12 (int64 headroom: 2^20 e^12
#: < 2^38 per path). The reference is the best path of the whole run
#: (:func:`reference_log_likelihood`), so no path reaches the cap: it only guards against
#: a last-bit difference between the reference's compiled program and the run's.
MAX_RELATIVE_LOGLIK = 12.0


def log_likelihood(observed_sums, windows):
    """Each path's log-likelihood of the observations (independent Gaussian errors), [n]."""
    r = (observed_sums - windows["value"][:, None]) / windows["sd"][:, None]
    return -0.5 * jnp.sum(r * r, axis=0)


def likelihood_weights(observed_sums, windows):
    """Each path's likelihood of the observations relative to the run's best path
    (``windows["reference"]``, see :func:`reference_log_likelihood`), in units of 2^-20
    (int64 [n]). Relative, so that tight observations, which leave every path far below
    the Gaussian's peak, still give integer weights of full resolution (the constant
    cancels in every self-normalized statistic). A path with a NaN or inf sum gets 0.
    """
    rel = jnp.minimum(log_likelihood(observed_sums, windows) - windows["reference"],
                      MAX_RELATIVE_LOGLIK)
    w = jnp.round(jnp.exp(rel) * WEIGHT_ONE)
    return jnp.where(jnp.isfinite(w), w, 0.0).astype(jnp.int64)


#: Paths per call of the reference pass.
PILOT_PATHS = 8192


def reference_log_likelihood(config: Config, dtype: str = "float32") -> float:
    """The best log-likelihood among all the run's paths (the same draws, shocks and
    variance reduction), the unit of the weights. A maximum is exact and order-free, so
    it is a function of the config alone and the weights do not depend on the chunking;
    and since no path of the run beats it, no weight is ever clipped. The pass simulates
    the months up to the last observed one only (a few percent of a run's time for
    observations near the start).

    Raises ConfigError when no path has a finite, non-zero likelihood: conditioning on
    observations nothing can explain is undefined.
    """
    sampler = DeviceSampler(config)
    last = max(config.grid.index(o.end) for o in config.observations)
    grid = MonthGrid(config.grid.start, max(last + 1, 1))
    total = config.simulation.paths
    n = min(PILOT_PATHS, total + total % 2)  # whole antithetic pairs (PILOT_PATHS is even)
    source = sobol_points_for(config)
    pilot = _pilot_kernel(sampler.structure, grid, dtype, shock_cholesky(config),
                          tuple(o.flow for o in config.observations),
                          config.simulation.variance_reduction == "antithetic", n)
    args = jax.tree.map(jnp.asarray, sampler.arguments())
    deal = model.deal_terms(config.deal, grid)
    key = jnp.asarray(stream_key(config.simulation.seed, STREAM_SHOCKS), jnp.uint32)
    windows = observation_windows(config)
    best = -np.inf
    for start in range(0, total, n):
        points = None if source is None else jnp.asarray(source.points(start, n))
        best = max(best, float(pilot(args, deal, key, points, windows,
                                     jnp.uint32(start % 2**32), jnp.int64(total - start))))
    if not np.isfinite(best):
        names = [o.name for o in config.observations]
        raise ConfigError("observations", names, "values that some simulated path can "
                          "explain: every path's likelihood of them is 0 in float64 (an sd "
                          "far too small for the spread of the paths, or a value in the "
                          "wrong units?)")
    return best


@functools.lru_cache(maxsize=16)
def _pilot_kernel(structure, grid: MonthGrid, dtype_name: str, cholesky: tuple,
                  observed: tuple[str, ...], antithetic: bool, n: int) -> Callable:
    """The best log-likelihood of ``n`` paths from ``start`` (those below ``remaining``),
    compiled once per shape (a sweep's conditioned points, or a second run, reuse it)."""
    sampler = DeviceSampler.from_structure(structure)

    @jax.jit
    def pilot(args, deal, key, uniforms, windows, start, remaining):
        local = jnp.arange(n, dtype=jnp.uint32)
        out = shard_statistics(sampler, grid, DTYPES[dtype_name], cholesky, args, deal, key,
                               start + local, uniforms=uniforms,
                               antithetic=antithetic, observed=observed, windows=windows)
        ll = log_likelihood(out.observed_sums, windows)
        ok = jnp.all(jnp.isfinite(out.stats), axis=0) & jnp.isfinite(ll) \
            & (local.astype(jnp.int64) < remaining)
        return jnp.max(jnp.where(ok, ll, -jnp.inf))

    return pilot


def _unit_sums(v, pairs: bool):
    """Sum adjacent paths into antithetic pairs (the units whose spread is the error)."""
    return v[..., 0::2] + v[..., 1::2] if pairs else v


@functools.lru_cache(maxsize=32)
def chunk_kernel(structure, grid: MonthGrid, dtype_name: str, cholesky: tuple,
                 bins: MoneyBins, shard: int, devices: tuple,
                 options: KernelOptions = CPU_OPTIONS, reduction: str = "none",
                 observed: tuple[str, ...] = (), batch: int = 0) -> Callable:
    """The jit-compiled call that runs ``shard`` paths on each of ``devices`` and folds
    them into the device-resident counts (cached per static shape).

    ``reduction``: "none", "antithetic" (the sum tree then holds antithetic pairs' means, so
    that standard errors are those of the pairs) or "sobol" (the call takes the paths'
    parameter uniforms, sharded like the paths). ``observed`` non-empty: a weighted
    (conditioned) run; counts are sums of integer likelihood weights
    (:data:`WEIGHT_ONE` = weight 1) and the tree's rows are :func:`weighted_rows`.
    ``batch`` G > 0: G points (configs that differ only in traced numbers: deal terms,
    distribution fields, constants, observation values) in one call, vmapped over a
    leading axis of the arguments, deal terms and counts; the same paths and shocks.
    """
    dtype = DTYPES[dtype_name]
    layout = StatLayout(grid)
    S = layout.num_stats
    sampler = DeviceSampler.from_structure(structure)
    pairs = reduction == "antithetic"
    weighted = bool(observed)
    count_type = jnp.int64 if weighted else jnp.int32

    def run_shard(args, deal, shock_key, counts: ChunkCounts, chunk_start, num_valid,
                  uniforms, windows):
        d = jax.lax.axis_index("paths")
        offset = d.astype(jnp.uint32) * jnp.uint32(shard)
        local = jnp.arange(shard, dtype=jnp.uint32)
        paths = chunk_start + offset + local
        out = shard_statistics(sampler, grid, dtype, cholesky, args, deal, shock_key, paths,
                               options.unroll,
                               uniforms=uniforms if reduction == "sobol" else None,
                               antithetic=pairs, observed=observed, windows=windows)
        stats, final, first_bad = out.stats, out.final, out.first_bad
        # A path with a NaN or inf anywhere is counted and kept out of every statistic,
        # month counts included: never mixed into a quantile, never silently dropped.
        # (Antithetic pairs go together: a pair is the unit of the error.)
        valid = (offset + local).astype(jnp.int64) < num_valid
        path_finite = jnp.all(jnp.isfinite(stats), axis=0)
        ok = valid & path_finite
        bad = (valid & ~path_finite).astype(count_type)
        if pairs:
            ok = jnp.repeat(ok[0::2] & ok[1::2], 2)
        w = ok.astype(count_type)
        if weighted:
            w = jnp.where(ok, likelihood_weights(out.observed_sums, windows), 0)

        # bins are assigned in float32: its rounding (6e-8) is far inside a bin (4.6e-3) and
        # log10 costs half as much; the assignment is still a pure function of the value.
        # Clipped first to float32's range: a finite float64 sum beyond it (a $1e300 net)
        # belongs in the overflow bin, not, cast to inf, in the NaN bin (a non-finite
        # path's own values land anywhere: its weight is 0)
        copy = (local % jnp.uint32(options.hist_copies)).astype(jnp.int32)
        f32_max = float(np.finfo(np.float32).max)
        idx = bins.index(jnp.clip(stats, -f32_max, f32_max).astype(jnp.float32), jnp) \
            + (jnp.arange(S, dtype=jnp.int32) * bins.num_bins)[:, None] \
            + (copy * (S * bins.num_bins))[None, :]
        weights = jnp.broadcast_to(w, stats.shape)
        hist = counts.histogram[0].reshape(-1).at[idx.ravel()].add(weights.ravel())

        x = jnp.where(ok, stats, 0.0)
        if weighted:
            rows = weighted_rows(x, w.astype(jnp.float64), pairs)
        elif pairs:
            rows = 0.5 * _unit_sums(x, True)  # the pairs' means
        else:
            rows = x
        # max(., 0) keeps each square a rounded product of its own: next to the tree's
        # first add, LLVM contracts x*x + y*y into a fused multiply-add for some chunk
        # shapes only (measured), which changed the last bit of a variance
        rows2 = jnp.maximum(rows * rows, 0.0)
        units = ok[0::2] if pairs else ok
        node = ChunkNode(jnp.sum(units, dtype=jnp.int32)[None], pairwise_sum(rows)[None],
                         pairwise_sum(rows2)[None])
        new = ChunkCounts(
            hist.reshape(1, options.hist_copies, S, bins.num_bins),
            counts.repayment_counts.at[0, final.repayment_month].add(w),
            counts.credit_counts.at[0, final.credit_month].add(w),
            counts.nonfinite_months.at[0, first_bad].add(bad))
        return new, node

    mesh = Mesh(np.array(devices), ("paths",))
    rep, split = P(), P(None, "paths") if batch else P("paths")
    counts_spec = ChunkCounts(split, split, split, split)
    body = run_shard
    if batch:
        body = jax.vmap(run_shard, in_axes=(0, 0, None, 0, None, None, None,
                                            0 if observed else None))
    sharded = jax.shard_map(body, mesh=mesh,
                            in_specs=(rep, rep, rep, counts_spec, rep, rep, P("paths"), rep),
                            out_specs=(counts_spec, ChunkNode(split, split, split)),
                            check_vma=False)
    return jax.jit(sharded, donate_argnums=(3,))


def weighted_rows(x, q, pairs: bool = False):
    """The sum tree's rows for a weighted run, per unit k (a path, or an antithetic pair):
    ``[a_k (S), b_k, b_k a_k (S), c_k (S), d_k]`` with ``a = sum q x``, ``b = sum q``,
    ``c = sum q x^2`` and ``d = sum q^2`` over the unit. Their sums and sums of squares give
    the weighted mean ``sum a / sum b``, its delta-method error
    ``sum (a - mean b)^2 / (sum b)^2`` (over units), the weighted variance and the
    effective number of paths ``(sum q)^2 / sum q^2``
    (:func:`mcsim.conditioning.weighted_moments`)."""
    a = _unit_sums(q * x, pairs)
    b = _unit_sums(q, pairs)
    c = _unit_sums(q * x * x, pairs)
    d = _unit_sums(q * q, pairs)
    return jnp.concatenate([a, b[None, :], b * a, c, d[None, :]])


def zero_counts(grid: MonthGrid, bins: MoneyBins, devices: tuple,
                options: KernelOptions = CPU_OPTIONS, weighted: bool = False,
                batch: int = 0) -> ChunkCounts:
    """Fresh device counts, one row per device, laid out as the kernel expects (made on
    the devices: with histogram copies they are hundreds of MB). int32 counts of paths, or
    int64 sums of integer weights in a weighted run; a leading axis of ``batch`` points."""
    return _count_functions(grid, bins, devices, options, weighted, batch)[0]()


def device_counts_total(counts: ChunkCounts, grid: MonthGrid, bins: MoneyBins,
                        devices: tuple, options: KernelOptions = CPU_OPTIONS,
                        weighted: bool = False, batch: int = 0):
    """The counts summed over histogram copies on the devices, then copied to the host."""
    return jax.device_get(_count_functions(grid, bins, devices, options, weighted,
                                           batch)[1](counts))


@functools.lru_cache(maxsize=32)
def _count_functions(grid: MonthGrid, bins: MoneyBins, devices: tuple,
                     options: KernelOptions, weighted: bool = False, batch: int = 0):
    D, T = len(devices), grid.num_months
    S = StatLayout(grid).num_stats
    lead = (batch,) if batch else ()
    sharding = NamedSharding(Mesh(np.array(devices), ("paths",)),
                             P(None, "paths") if batch else P("paths"))
    shape = ChunkCounts(lead + (D, options.hist_copies, S, bins.num_bins), lead + (D, T + 1),
                        lead + (D, T + 1), lead + (D, T + 1))
    kind = jnp.int64 if weighted else jnp.int32
    zeros = jax.jit(lambda: ChunkCounts(*(jnp.zeros(s, kind) for s in shape)),
                    out_shardings=ChunkCounts(*(sharding,) * 4))
    # int32 is enough: the engine flushes before any device passes 2^31 - 1 paths
    total = jax.jit(lambda c: c._replace(histogram=c.histogram.sum(axis=-3)))
    return zeros, total


class RunInfo(NamedTuple):
    """How a run was done: enough to reproduce and to judge its speed."""

    paths: int
    seed: int
    chunk_size: int          # paths per device per call
    dtype: str
    device: str
    num_devices: int         # over all processes
    jax_version: str
    seconds: float
    compile_seconds: float
    num_processes: int = 1
    options: KernelOptions = KernelOptions()
    #: points run together in one batched kernel (1: alone). Batching changes the fused
    #: code, so a batched point agrees with its own run to float32 rounding, not bit for bit
    batch: int = 1


def process_units(num_units: int, process_index: int, process_count: int) -> range:
    """The contiguous share of ``num_units`` chunk-sized units that one process runs."""
    base, extra = divmod(num_units, process_count)
    start = process_index * base + min(process_index, extra)
    return range(start, start + base + (process_index < extra))


def run(config: Config, **options):
    """Simulate ``config.simulation.paths`` futures and reduce them to a :class:`Results`.

    Options as :func:`run_batch` (which this is, for one config).

    Example:
        >>> results = run(load_config("configs/base.toml").with_simulation(paths=10_000))
        ... # doctest: +SKIP
    """
    return run_batch([config], **options)[0]


def max_batch(grid: MonthGrid, *, weighted: bool = False, bins: MoneyBins | None = None,
              device=None) -> int:
    """Most points one batched call may hold: their device counts (histogram copies x
    statistics x bins each, int32 or int64 when weighted) within a quarter of the device's
    memory; 64 on a CPU (host memory, one histogram copy: ~20 MB a point)."""
    device = device or jax.local_devices()[0]
    if device.platform == "cpu":
        return 64
    bins = bins or MoneyBins()
    options = default_kernel_options(device)
    per_point = options.hist_copies * StatLayout(grid).num_stats * bins.num_bins \
        * (8 if weighted else 4)
    limit = (device.memory_stats() or {}).get("bytes_limit", 16 * 2**30)
    return max(1, int(limit // 4 // per_point))


def batch_key(config: Config) -> tuple:
    """What configs must share to run in one batched call: every static shape of the
    kernel, the paths and the seed (points then differ only in traced numbers)."""
    sim = config.simulation
    return (config.grid, sim.paths, sim.seed, sim.variance_reduction, sim.chunk_size,
            DeviceSampler(config).structure, shock_cholesky(config),
            tuple(o.flow for o in config.observations))


def run_batch(configs: list[Config], *, chunk_size: int | None = None, dtype: str = "float32",
        bins: MoneyBins | None = None, progress: bool | None = None,
        devices: list | None = None, options: KernelOptions | None = None,
        checkpoint: str | Path | None = None, checkpoint_interval: float = 60.0,
        resume: bool = False, checkpoint_at_end: bool = True,
        stages: list[int] | None = None,
        should_stop: Callable[[Accumulator], bool] | None = None,
        weighted: bool = False):
    """Simulate configs that share a :func:`batch_key` in one batched kernel (one config:
    an ordinary run); returns one :class:`Results` per config, each exactly what its own
    run would give.

    Paths are sharded over every local device; under ``jax.distributed`` (several
    processes) each process runs a contiguous share of the paths and the accumulators are
    merged, so every process returns the whole run's results. The numbers depend only on
    the config and its seed: not on the chunk size, the devices or the processes.

    Args:
        config: a validated config (its paths and seed are used).
        chunk_size: paths per device per call (rounded up to 1024 times a power of two);
            default from the device (:func:`default_chunk_size`).
        dtype: ``"float32"`` (default) or ``"float64"`` for the kernel's drivers and flows;
            running sums and reported statistics are float64 either way.
        bins: money histogram bins (default 500 per decade, $1 to $10^16).
        progress: show a progress bar (default: on a terminal, for runs over 2 s).
        devices: the local devices to shard over (default: all of them).
        options: the kernel's layout for the device (default
            :func:`default_kernel_options`); the results do not depend on it.
        checkpoint: a directory to save the accumulators in every ``checkpoint_interval``
            seconds and at the end (one file per process; :mod:`mcsim.checkpoint`).
        resume: continue from the checkpoint there, if any (refused, with a ConfigError
            naming what differs, when it was written by a different run).
        checkpoint_at_end: also save the complete run (a resume then reads the results
            back); the CLI turns it off, since it writes the report instead.
        stages, should_stop: stop early. After the first ``stages[k]`` paths (multiples of
            1024), ``should_stop(accumulator)`` is asked; on True the run ends there, and
            its results are exactly those of a run of that many paths (see
            :mod:`mcsim.precision`). One process only.
        weighted: run the same paths weighted by their likelihood of the config's
            ``[observations]`` and return the conditioned results
            (:class:`mcsim.conditioning.ConditionedResults`).

    Returns:
        :class:`mcsim.results.Results`.

    Example:
        >>> low, high = run_batch([config, with_overrides(config, {"deal.investment": 2e10})])
        ... # doctest: +SKIP
    """
    from .results import Results

    config = configs[0]
    G = len(configs)
    batch = G if G > 1 else 0
    if batch:
        key = batch_key(config)
        for other in configs[1:]:
            if batch_key(other) != key:
                raise ValueError("configs of a batch must share their grid, paths, seed, "
                                 "variance reduction, distribution kinds, correlations "
                                 "and observed flows (mcsim.engine.batch_key)")
        if stages or checkpoint is not None:
            raise ValueError("a batch of configs runs without stages or checkpoints")
    if dtype not in DTYPES:
        raise ValueError(f"dtype = {dtype!r}: expected one of {', '.join(DTYPES)}")
    if weighted and not config.observations:
        raise ConfigError("observations", {}, "at least one observation to condition on")
    grid = config.grid
    reduction = config.simulation.variance_reduction
    bins = bins or MoneyBins()
    devices = tuple(devices or jax.local_devices())
    num_paths = config.simulation.paths
    nproc, pid = jax.process_count(), jax.process_index()
    D = len(devices)
    requested = chunk_size or config.simulation.chunk_size \
        or max(BLOCK, default_chunk_size(grid, devices[0]) // max(G, 1))  # memory per call
    shard = round_chunk(requested, num_paths, D * nproc)
    if stages:
        if nproc > 1:
            raise ValueError("stopping early (stages) runs in one process only")
        step = np.gcd.reduce(np.array(stages, np.int64))
        while shard > BLOCK and step % shard:  # calls must end on every stage boundary
            shard //= 2
        if step % shard:
            raise ValueError(f"stages must be multiples of {BLOCK} paths")
    level = (shard // BLOCK).bit_length() - 1  # the sum tree's level of one shard
    cholesky = shock_cholesky(config)
    sampler = DeviceSampler(config)
    options = options or default_kernel_options(devices[0])
    observed = tuple(o.flow for o in config.observations) if weighted else ()
    kernel = chunk_kernel(sampler.structure, grid, dtype, cholesky, bins, shard, devices,
                          options, reduction, observed, batch)
    no_uniforms, windows = plain_inputs(devices)
    references = [reference_log_likelihood(c, dtype) for c in configs] if weighted else []
    if weighted:
        windows = _stacked([{**observation_windows(c), "reference": jnp.float64(r)}
                            for c, r in zip(configs, references, strict=True)], batch)
    uniform_sharding = NamedSharding(Mesh(np.array(devices), ("paths",)), P("paths"))
    sobol = sobol_points_for(config)
    deal = _stacked([model.deal_terms(c.deal, grid) for c in configs], batch)
    shock_key = jnp.asarray(stream_key(config.simulation.seed, STREAM_SHOCKS), jnp.uint32)
    args = _stacked([DeviceSampler(c).arguments() for c in configs], batch)
    layout = StatLayout(grid)
    accs = [Accumulator(layout.num_stats, bins.num_bins, grid.num_months,
                        tree_stats=3 * layout.num_stats + 2 if weighted else None)
            for _ in configs]
    acc = accs[0]

    units = process_units(-(-num_paths // shard), pid, nproc)
    limit = min(units.stop * shard, num_paths)  # this process's paths end here
    bounds = sorted({b for b in (stages or []) if units.start * shard < b < limit} | {limit})
    starts, seg_start = [], units.start * shard
    for seg_end in bounds:  # calls never cross a stage boundary
        starts += [(s, seg_end) for s in range(seg_start, seg_end, D * shard)]
        seg_start = seg_end
    bar = _progress_bar(limit - units.start * shard, progress)
    counts = zero_counts(grid, bins, devices, options, weighted, batch)
    since_flush = 0

    def per_point(tree):
        """The host copy of a call's output, one per config."""
        return [jax.tree.map(lambda a, g=g: a[g], tree) for g in range(G)] if batch \
            else [tree]

    def flush(counts):
        host = device_counts_total(counts, grid, bins, devices, options, weighted, batch)
        for a, h in zip(accs, per_point(host), strict=True):
            a.add_counts(h.histogram.sum(axis=0), h.repayment_counts.sum(0),
                         h.credit_counts.sum(0), h.nonfinite_months.sum(0))
        return zero_counts(grid, bins, devices, options, weighted, batch)

    def collect(start, node, end):
        for a, n in zip(accs, per_point(jax.device_get(node)), strict=True):
            for d in range(D):
                if start + d * shard < end:
                    a.tree.insert(level, (start + d * shard) // shard, int(n.count[d]),
                                  n.s1[d], n.s2[d])

    ckpt_file = identity = None
    if checkpoint is not None:
        ckpt_file = ckpt.checkpoint_file(checkpoint, pid, nproc)
        identity = ckpt.run_identity(config, dtype=dtype, shard=shard, devices=devices,
                                     num_processes=nproc, process_index=pid,
                                     options=options, bins=bins)
        identity.update(variance_reduction=reduction, weighted=weighted)
        saver = ckpt.Checkpointer(ckpt_file, identity)
        if resume and ckpt_file.exists():
            next_start = ckpt.load(ckpt_file, identity, acc)
            starts = [(s, e) for s, e in starts if s >= next_start]
            if bar is not None:
                bar.update(acc.paths)

    t_begin = time.perf_counter()
    last_save = t_begin
    compile_seconds = 0.0
    pending = None
    def settle():
        """Bring every call so far into ``acc`` (tree nodes and counts); devices restart."""
        nonlocal pending, counts, since_flush
        if pending is not None:
            collect(*pending)
            pending = None
        counts = flush(counts)
        since_flush = 0

    for i, (start, seg_end) in enumerate(starts):
        if since_flush + shard > INT32_PATHS:  # a device's int32 counts could overflow
            settle()
        valid = min(D * shard, seg_end - start)
        uniforms = no_uniforms if sobol is None else jax.device_put(
            sobol.points(start, D * shard), uniform_sharding)
        counts, node = kernel(args, deal, shock_key, counts, jnp.uint32(start % 2**32),
                              jnp.int64(valid), uniforms, windows)
        since_flush += shard
        if i == 0:
            jax.block_until_ready(node)
            compile_seconds = time.perf_counter() - t_begin  # first call: compile + 1 chunk
        if pending is not None:  # read the previous call's node while this one runs
            collect(*pending)
        pending = (start, node, seg_end)
        for a in accs:
            a.paths += valid
        if bar is not None:
            bar.update(valid)
        if should_stop is not None and start + D * shard >= seg_end and seg_end < limit:
            settle()  # a stage is complete: ask whether it is enough
            if should_stop(acc):
                break
        if ckpt_file is not None and time.perf_counter() - last_save >= checkpoint_interval \
                and i + 1 < len(starts):
            settle()
            saver.save(acc, starts[i + 1][0])
            last_save = time.perf_counter()
    settle()
    if ckpt_file is not None and checkpoint_at_end:  # a resume just reads the results back
        saver.save(acc, limit)
    if bar is not None:
        bar.close()
    if nproc > 1:
        accs = [_merge_across_processes(a) for a in accs]
    seconds = time.perf_counter() - t_begin
    for c, a in zip(configs, accs, strict=True):
        check_nonfinite(c, a, dtype)
    info = RunInfo(acc.paths if stages else num_paths, config.simulation.seed, shard, dtype,
                   f"{devices[0].platform}:{devices[0].device_kind}", D * nproc,
                   jax.__version__, seconds, compile_seconds, nproc, options, max(G, 1))
    if weighted:
        from .conditioning import ConditionedResults

        return [ConditionedResults(c, layout, bins, a, info, reference_loglik=r)
                for c, a, r in zip(configs, accs, references, strict=True)]
    return [Results(c, layout, bins, a, info) for c, a in zip(configs, accs, strict=True)]


def _stacked(trees: list, batch: int):
    """One point's tree as device arrays, or G points' stacked on a leading axis."""
    if not batch:
        return jax.tree.map(jnp.asarray, trees[0])
    return jax.tree.map(lambda *xs: jnp.stack([jnp.asarray(x) for x in xs]), *trees)


def plain_inputs(devices: tuple) -> tuple:
    """The kernel's last two arguments for an unweighted run without Sobol points: no
    uniforms (an empty array sharded like the paths) and no observation windows."""
    sharding = NamedSharding(Mesh(np.array(devices), ("paths",)), P("paths"))
    no_uniforms = jax.device_put(np.zeros((len(devices), 0)), sharding)
    return no_uniforms, {**{k: jnp.zeros((0,), t) for k, t in (
        ("start", jnp.int32), ("end", jnp.int32), ("value", jnp.float64),
        ("sd", jnp.float64))}, "reference": jnp.float64(0.0)}


def observation_windows(config: Config) -> dict:
    """The observations' month windows (indices, inclusive), values and errors, as the
    kernel's traced arguments (a new value or window reuses the compiled kernel)."""
    grid, obs = config.grid, config.observations
    return {"start": jnp.array([grid.index(o.start) for o in obs], jnp.int32),
            "end": jnp.array([grid.index(o.end) for o in obs], jnp.int32),
            "value": jnp.array([o.value for o in obs], jnp.float64),
            "sd": jnp.array([o.sd for o in obs], jnp.float64)}


def check_nonfinite(config: Config, acc: Accumulator, dtype: str) -> None:
    """Fail when more paths than ``simulation.max_nonfinite_fraction`` had a NaN or inf.

    Raises ConfigError naming how many paths, the first month and the likely parameter.
    """
    bad, limit = acc.nonfinite_paths, config.simulation.max_nonfinite_fraction
    if bad <= limit * max(acc.paths, 1):
        return
    months = np.flatnonzero(acc.nonfinite_months[:-1])
    first = config.grid.label(int(months[0])) if len(months) else "an unlocated month"
    likely = diagnose_nonfinite(config, dtype)
    raise ConfigError(
        "simulation.max_nonfinite_fraction", limit,
        f"at most that fraction of paths with a NaN or inf, but {bad:,} of {acc.paths:,} "
        f"({bad / max(acc.paths, 1):.3%}) had one, first in {first}"
        + (f"; likely parameter: {likely}" if likely else "")
        + " (narrow that parameter's range, or raise the limit to report on the others)")


def diagnose_nonfinite(config: Config, dtype: str, chunk: int = 8192,
                       max_chunks: int = 8) -> str | None:
    """The uncertain parameter whose values best tell the paths with a NaN or inf apart.

    Runs the first chunks again, keeping each path's parameters and finiteness; for every
    parameter, the mean percentile (rank among the chunk's paths) of the bad paths; the one
    farthest from the 50th is named. None when nothing is uncertain or no bad path is found.
    """
    sampler = DeviceSampler(config)
    names = sampler.structure.uncertain
    if not names:
        return None
    grid, jd = config.grid, DTYPES[dtype]
    chol = shock_cholesky(config)
    anti = config.simulation.variance_reduction == "antithetic"
    sobol = sobol_points_for(config)

    @jax.jit
    def per_path(args, deal, key, paths, u):
        # the run's own paths: its mirrors or Sobol points
        stats = shard_statistics(sampler, grid, jd, chol, args, deal, key, paths,
                                 uniforms=u, antithetic=anti).stats
        theta = sampler.draw(args, paths, jnp.float64, uniforms=u, antithetic=anti)
        return jnp.all(jnp.isfinite(stats), axis=0), jnp.stack([theta[n] for n in names], 1)

    args = jax.tree.map(jnp.asarray, sampler.arguments())
    deal = model.deal_terms(config.deal, grid)
    key = jnp.asarray(stream_key(config.simulation.seed, STREAM_SHOCKS), jnp.uint32)
    finite, values = [], []
    for c in range(max_chunks):
        if c * chunk >= config.simulation.paths:
            break
        u = None if sobol is None else jnp.asarray(sobol.points(c * chunk, chunk))
        ok, theta = jax.device_get(per_path(args, deal, key, jnp.uint32(c * chunk)
                                            + jnp.arange(chunk, dtype=jnp.uint32), u))
        finite.append(ok)
        values.append(theta)
        if sum(int((~f).sum()) for f in finite) >= 50:
            break
    finite, values = np.concatenate(finite), np.concatenate(values)
    if finite.all():
        return None
    n, bad = len(finite), int((~finite).sum())
    wider = " (money beyond float32's range? --dtype float64 reaches 1e308)" \
        if dtype == "float32" else ""
    if bad == n:
        return "none: every path has a NaN or inf, so no parameter tells them apart" + wider
    from scipy.stats import rankdata

    pct = 100.0 * (rankdata(values, axis=0) - 0.5) / n
    mean_bad = pct[~finite].mean(axis=0)
    k = int(np.argmax(np.abs(mean_bad - 50.0)))
    # the mean percentile of `bad` paths drawn at random, without replacement, has
    # sd 100/sqrt(12) * sqrt((n - bad) / (n bad)): name a parameter only beyond 4 of them
    noise = 100.0 / np.sqrt(12.0) * np.sqrt((n - bad) / (n * bad))
    if abs(mean_bad[k] - 50.0) <= 4.0 * noise:
        return "none stands out: the paths with a NaN or inf are spread over every " \
            "parameter's range" + wider
    return (f"{names[k]} (the paths with a NaN or inf sit at its "
            f"{mean_bad[k]:.0f}th percentile on average)")


def _merge_across_processes(acc: Accumulator) -> Accumulator:
    """Every process's accumulator, gathered and merged in process order."""
    from jax.experimental import multihost_utils

    state = acc.tree.state()
    max_nodes = 2 * 64  # one node per level per process, with room to spare
    n = len(state["count"])
    pad = np.zeros((max_nodes, 2 + 1 + 2 * acc.tree_stats))
    pad[:n, :2] = state["keys"]
    pad[:n, 2] = state["count"]
    pad[:n, 3:3 + acc.tree_stats] = state["s1"]
    pad[:n, 3 + acc.tree_stats:] = state["s2"]
    local = {"histogram": acc.histogram, "repay": acc.repayment_counts,
             "credit": acc.credit_counts, "nonfinite": acc.nonfinite_months,
             "scalars": np.array([acc.paths, n], np.int64),
             "nodes": pad}
    every = multihost_utils.process_allgather(local)
    merged = Accumulator(acc.num_stats, acc.num_bins, acc.num_months, acc.tree_stats)
    for p in range(every["scalars"].shape[0]):
        paths, n = (int(v) for v in every["scalars"][p])
        other = Accumulator(acc.num_stats, acc.num_bins, acc.num_months, acc.tree_stats)
        other.add_counts(every["histogram"][p], every["repay"][p], every["credit"][p],
                         every["nonfinite"][p])
        other.paths = paths
        rows = every["nodes"][p][:n]
        S = acc.tree_stats
        other.tree = SumTree.from_state(S, {"keys": rows[:, :2].astype(np.int64),
                                            "count": rows[:, 2].astype(np.int64),
                                            "s1": rows[:, 3:3 + S], "s2": rows[:, 3 + S:]})
        merged.merge(other)
    return merged


def _progress_bar(total: int, progress: bool | None):
    if progress is False:
        return None
    import sys

    from tqdm import tqdm

    # by default only on a terminal; ``delay`` keeps it hidden for runs under 2 s
    if progress is None and not sys.stderr.isatty():
        return None
    return tqdm(total=total, unit="path", unit_scale=True, desc="mcsim", mininterval=0.5,
                delay=0.0 if progress else 2.0, smoothing=0.1)
