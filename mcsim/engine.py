"""Engine: runs the model over chunks of path indices and reduces them on the fly.

For each chunk ``[i0, i0+n)`` one jit-compiled call: draws each month's shocks from the
counter-based generator keyed by (seed, path, month, shock), scans the months with
:mod:`mcsim.model`, and reduces the per-path statistics of :mod:`mcsim.layout` to fixed-size
summaries (histograms, block moments, first-passage counts). Nothing of size [paths, months]
ever exists beyond one chunk, so memory does not grow with the number of paths.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import model
from .accumulators import BLOCK, Accumulator, MoneyBins
from .config import Config
from .draws import ParameterSampler, to_dtype
from .layout import ANNUAL_FLOWS, StatLayout
from .months import MonthGrid
from .rng import STREAM_SHOCKS, shock_words, stream_key, words_to_uniform

DTYPES = {"float32": jnp.float32, "float64": jnp.float64}
DEFAULT_CHUNK_CPU = 32 * BLOCK
DEFAULT_CHUNK_ACCELERATOR = 1024 * BLOCK


class ChunkSummary(NamedTuple):
    """What one chunk returns to the host (fixed size for a given chunk size)."""

    histogram: jax.Array         # (S, B) int32
    block_count: jax.Array       # (S, nb) int32: finite paths per block
    block_mean: jax.Array        # (S, nb) float64
    block_m2: jax.Array          # (S, nb) float64
    repayment_counts: jax.Array  # (T+1,) int32
    credit_counts: jax.Array     # (T+1,) int32
    nonfinite_paths: jax.Array   # () int32: paths with a NaN/inf in any statistic


def default_chunk_size() -> int:
    """Paths per device call: small on the CPU (cache), large on accelerators."""
    platform = jax.devices()[0].platform
    return DEFAULT_CHUNK_CPU if platform == "cpu" else DEFAULT_CHUNK_ACCELERATOR


def round_chunk(chunk_size: int, num_paths: int) -> int:
    """Chunk size used: a multiple of BLOCK, no larger than the run needs."""
    needed = -(-num_paths // BLOCK) * BLOCK
    chunk = -(-chunk_size // BLOCK) * BLOCK
    return max(BLOCK, min(chunk, needed))


def tree_sum(x):
    """Sum over the last axis (length a power of two) by a fixed halving tree.

    Elementwise adds only, so the result does not depend on the batch shape or the backend's
    reduction strategy: part of the bit-for-bit reproducibility contract.
    """
    while x.shape[-1] > 1:
        h = x.shape[-1] // 2
        x = x[..., :h] + x[..., h:]
    return x[..., 0]


def standard_normals(words, dtype):
    """Normals by the inverse error function of 23-bit uniforms (exact in float32)."""
    out = []
    for w in words:
        u = words_to_uniform(w, jnp, dtype)
        out.append(jnp.sqrt(dtype(2.0)) * jax.lax.erf_inv(dtype(2.0) * u - dtype(1.0)))
    return tuple(out)


@functools.lru_cache(maxsize=32)
def chunk_kernel(grid: MonthGrid, dtype_name: str, cholesky: tuple, bins: MoneyBins,
                 chunk_size: int) -> Callable:
    """The jit-compiled function that runs and reduces one chunk (cached per static shape)."""
    dtype = DTYPES[dtype_name]
    T = grid.num_months
    layout = StatLayout(grid)
    year_of = grid.year_of_month()
    num_years = layout.num_years
    nb = chunk_size // BLOCK

    def run_chunk(theta, deal, key, path_start, num_valid) -> ChunkSummary:
        n = chunk_size
        paths = path_start + jnp.arange(n, dtype=jnp.uint32)
        state = model.initial_state(theta, deal, T)

        def body(state, t):
            state, flows = model.month_flows(theta, deal, state, t)
            monthly = jnp.stack([getattr(flows, f) for f in ANNUAL_FLOWS])
            cum_azure = state.cum_azure_spend
            z = standard_normals(shock_words(key, paths, t + 1, jnp), dtype)
            state = model.advance(theta, state, model.correlate(z, cholesky), t)
            return state, (cum_azure, monthly)

        final, (cum_azure, monthly) = jax.lax.scan(body, state,
                                                   jnp.arange(T, dtype=jnp.int32))
        # annual sums in float64, month by month in calendar order (deterministic)
        annual = []
        for k in range(len(ANNUAL_FLOWS)):
            for y in range(num_years):
                months = np.flatnonzero(year_of == y)
                acc = monthly[months[0], k].astype(jnp.float64)
                for m in months[1:]:
                    acc = acc + monthly[m, k].astype(jnp.float64)
                annual.append(acc)
        receipts = final.cum_profit_share + final.cum_revenue_share  # float64 already
        horizon = [final.cum_revenue, final.cum_profit, receipts,
                   receipts - deal.investment,
                   -final.min_openai_cash]
        stats = jnp.concatenate([cum_azure, jnp.stack(annual), jnp.stack(horizon)])  # [S, n]
        # A path with a NaN or inf anywhere is counted and kept out of every statistic,
        # month counts included: never mixed into a quantile, never silently dropped.
        valid = jnp.arange(n) < num_valid
        path_finite = jnp.all(jnp.isfinite(stats), axis=0)
        ok = valid & path_finite
        nonfinite = jnp.sum(valid & ~path_finite, dtype=jnp.int32)

        # bins are assigned in float32: its rounding (6e-8) is far inside a bin (4.6e-3) and
        # log10 costs half as much; the assignment is still a pure function of the value
        idx = bins.index(stats.astype(jnp.float32), jnp) + (jnp.arange(layout.num_stats,
                                                                       dtype=jnp.int32)
                                                            * bins.num_bins)[:, None]
        weights = jnp.broadcast_to(ok, stats.shape).astype(jnp.int32)
        hist = jnp.zeros(layout.num_stats * bins.num_bins, jnp.int32)
        hist = hist.at[idx.ravel()].add(weights.ravel()).reshape(layout.num_stats, -1)

        f = jnp.broadcast_to(ok, stats.shape).reshape(layout.num_stats, nb, BLOCK)
        x = jnp.where(f, stats.reshape(layout.num_stats, nb, BLOCK), 0.0)
        count = tree_sum(f.astype(jnp.int32))
        # an explicit reciprocal: XLA rewrites x / c as x * (1/c) for some shapes and not
        # others, which changed the last bit of a block mean with the chunk size
        mean = tree_sum(x) * (1.0 / jnp.maximum(count, 1).astype(jnp.float64))
        dev = jnp.where(f, x - mean[..., None], 0.0)
        m2 = tree_sum(dev * dev)

        w = ok.astype(jnp.int32)
        repay = jnp.zeros(T + 1, jnp.int32).at[final.repayment_month].add(w)
        credit = jnp.zeros(T + 1, jnp.int32).at[final.credit_month].add(w)
        return ChunkSummary(hist, count, mean, m2, repay, credit, nonfinite)

    return jax.jit(run_chunk)


class RunInfo(NamedTuple):
    """How a run was done: enough to reproduce and to judge its speed."""

    paths: int
    seed: int
    chunk_size: int
    dtype: str
    device: str
    num_devices: int
    jax_version: str
    seconds: float
    compile_seconds: float


def run(config: Config, *, chunk_size: int | None = None, dtype: str = "float32",
        bins: MoneyBins | None = None, progress: bool | None = None):
    """Simulate ``config.simulation.paths`` futures and reduce them to a :class:`Results`.

    Args:
        config: a validated config (its paths and seed are used).
        chunk_size: paths per device call (rounded up to a multiple of 1024); default
            from the device. The numbers do not depend on it.
        dtype: ``"float32"`` (default) or ``"float64"`` for the kernel's drivers and waterfall;
            reported sums are float64 either way.
        bins: money histogram bins (default 500 per decade, $1 to $10^16).
        progress: show a progress bar (default: when the run is long enough to need one).

    Returns:
        :class:`mcsim.results.Results`.

    Example:
        >>> results = run(load_config("configs/base.toml").with_simulation(paths=10_000))
        ... # doctest: +SKIP
    """
    from .results import Results

    if dtype not in DTYPES:
        raise ValueError(f"dtype = {dtype!r}: expected one of {', '.join(DTYPES)}")
    grid = config.grid
    bins = bins or MoneyBins()
    num_paths = config.simulation.paths
    chunk = round_chunk(chunk_size or config.simulation.chunk_size or default_chunk_size(),
                        num_paths)
    cholesky = tuple(map(tuple, np.linalg.cholesky(np.array(config.shock_correlation))))
    kernel = chunk_kernel(grid, dtype, cholesky, bins, chunk)
    jdtype = DTYPES[dtype]
    deal = model.deal_terms(config.deal, grid)
    key = jnp.asarray(stream_key(config.simulation.seed, STREAM_SHOCKS), jnp.uint32)
    sampler = ParameterSampler(config)
    layout = StatLayout(grid)
    acc = Accumulator(layout.num_stats, bins.num_bins, grid.num_months)

    starts = list(range(0, num_paths, chunk))
    bar = _progress_bar(num_paths, progress)

    def launch(start):
        theta = sampler.draw(start, chunk)
        theta = {k: jnp.asarray(v, jdtype) for k, v in to_dtype(theta, jdtype).items()}
        return kernel(theta, deal, key, jnp.uint32(start % 2**32),
                      jnp.int32(min(chunk, num_paths - start)))

    t_begin = time.perf_counter()
    compile_seconds = 0.0
    pending = launch(starts[0])
    if starts:
        jax.block_until_ready(pending)
        compile_seconds = time.perf_counter() - t_begin  # first call: compile + one chunk
    for i, start in enumerate(starts):
        nxt = launch(starts[i + 1]) if i + 1 < len(starts) else None  # overlap host draws
        acc.add_chunk(jax.device_get(pending), min(chunk, num_paths - start))
        if bar is not None:
            bar.update(min(chunk, num_paths - start))
        pending = nxt
    if bar is not None:
        bar.close()
    seconds = time.perf_counter() - t_begin
    devices = jax.devices()
    info = RunInfo(num_paths, config.simulation.seed, chunk, dtype,
                   f"{devices[0].platform}:{devices[0].device_kind}", len(devices),
                   jax.__version__, seconds, compile_seconds)
    return Results(config, layout, bins, acc, info)


def _progress_bar(total: int, progress: bool | None):
    if progress is False:
        return None
    import sys

    from tqdm import tqdm

    # by default only on a terminal; ``delay`` keeps it hidden for runs under 2 s
    if progress is None and not sys.stderr.isatty():
        return None
    return tqdm(total=total, unit="path", unit_scale=True, desc="mcsim", mininterval=0.5,
                delay=0.0 if progress else 2.0)
