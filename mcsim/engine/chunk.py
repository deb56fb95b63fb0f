"""The compiled chunk reduction: one call runs a chunk of paths on every local device and
folds their statistics into fixed-size summaries.

On each device (``shard_map`` over the path axis) the kernel of :mod:`mcsim.engine.kernel`
computes the per-path statistics of :mod:`mcsim.layout`; they are reduced to integer
histograms and month counts (:class:`ChunkCounts`, kept on the device between calls) and
to one node of the pairwise sum tree per device (:class:`ChunkNode`,
:class:`mcsim.accumulators.SumTree`). Nothing of size [paths, months] outlives a call.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from ..accumulators import MoneyBins
from ..layout import StatLayout
from .conditioning import likelihood_weights, path_bias_normals, weighted_rows
from .kernel import (
    KernelInputs,
    KernelSpec,
    build_kernel,
    fused_unsupported,
    pair_sums,
    pairwise_sum,
    path_is_finite,
)
from .plan import CPU_OPTIONS, KernelOptions


class ChunkCounts(NamedTuple):
    """Integer counts kept on the devices between chunks, one row per local device."""

    histogram: jax.Array         # (D, copies, S, B) int32
    event_counts: jax.Array      # (D, E, T+1) int32: paths by each event's first month
    nonfinite_months: jax.Array  # (D, T+1) int32: paths with a NaN/inf, by first month


class ChunkNode(NamedTuple):
    """Each device's node of the sum tree for its paths of one call (see SumTree)."""

    count: jax.Array  # (D,) int32: finite paths
    s1: jax.Array     # (D, S) float64: sum of x
    s2: jax.Array     # (D, S) float64: sum of x^2




@functools.lru_cache(maxsize=32)
def chunk_kernel(spec: KernelSpec, bins: MoneyBins, shard: int, devices: tuple,
                 options: KernelOptions = CPU_OPTIONS, sobol: bool = False,
                 batch: int = 0, latent: bool = False) -> Callable:
    """The jit-compiled call ``(inputs, counts, chunk_start, num_valid, uniforms, windows,
    shocks) -> (counts, node)`` that runs ``shard`` paths on each of ``devices`` and folds them
    into the device-resident counts (cached per static shape).

    Antithetic pairs (``spec.antithetic``): the sum tree holds the pairs' means, so that
    standard errors are those of the pairs. ``sobol``: the call takes the paths' parameter
    uniforms, sharded like the paths. ``spec.observed`` non-empty: a weighted
    (conditioned) run; counts are sums of integer likelihood weights and the tree's rows
    are :func:`mcsim.engine.conditioning.weighted_rows`. ``batch`` G > 0: G points
    (configs that differ only in traced numbers) in one call, vmapped over a leading axis
    of the inputs (but the shock key), counts and windows; the same paths and shocks.
    ``latent``: a posterior forecast (:class:`mcsim.engine.smc.PosteriorSource`): the call
    takes each path's uniforms and its replayed shock normals ``shocks`` [n, K, 5].
    """
    fused = options.fused and fused_fallback(spec, options, batch, latent) is None
    if fused:  # imported here: Pallas is imported only by runs that use it
        from .fused import build_fused_kernel

        kernel = build_fused_kernel(spec)
    else:
        kernel = build_kernel(spec)
    layout = spec.layout
    S, E = layout.num_stats, len(layout.events)
    bin_scale = layout.bin_scale()
    first_scaled = int(np.flatnonzero(bin_scale != 1.0)[0])
    pairs = spec.antithetic
    weighted = bool(spec.observed)
    count_type = jnp.int64 if weighted else jnp.int32

    def run_shard(inputs, counts: ChunkCounts, chunk_start, num_valid, uniforms, windows,
                  shocks):
        d = jax.lax.axis_index("paths")
        offset = d.astype(jnp.uint32) * jnp.uint32(shard)
        local = jnp.arange(shard, dtype=jnp.uint32)
        paths = chunk_start + offset + local
        out = kernel(inputs, paths, uniforms=uniforms if sobol or latent else None,
                     windows=windows,
                     latent_shocks=shocks.transpose(1, 0, 2) if latent else None)
        stats, first_bad = out.stats, out.first_bad
        # A path with a NaN or inf anywhere is counted and kept out of every statistic,
        # month counts included: never mixed into a quantile, never silently dropped.
        # (Antithetic pairs go together: a pair is the unit of the error.)
        valid = (offset + local).astype(jnp.int64) < num_valid
        path_finite = path_is_finite((out,))
        ok = valid & path_finite
        bad = (valid & ~path_finite).astype(count_type)
        if pairs:
            ok = jnp.repeat(ok[0::2] & ok[1::2], 2)
        w = ok.astype(count_type)
        if weighted:
            w = jnp.where(ok, likelihood_weights(out.observed_sums, windows,
                                                 path_bias_normals(windows, paths)), 0)

        # bins are assigned in float32: its rounding (6e-8) is far inside a bin (4.6e-3) and
        # log10 costs half as much; the assignment is still a pure function of the value.
        # Clipped first to float32's range: a finite float64 sum beyond it (a $1e300 net)
        # belongs in the overflow bin, not, cast to inf, in the NaN bin (a non-finite
        # path's own values land anywhere: its weight is 0)
        copy = (local % jnp.uint32(options.hist_copies)).astype(jnp.int32)
        f32_max = float(np.finfo(np.float32).max)
        # stocks are binned scaled into the money range (prices and shares are below $1)
        scaled = jnp.concatenate([stats[:first_scaled],
                                  stats[first_scaled:] * bin_scale[first_scaled:, None]])
        idx = bins.index(jnp.clip(scaled, -f32_max, f32_max).astype(jnp.float32), jnp) \
            + (jnp.arange(S, dtype=jnp.int32) * bins.num_bins)[:, None] \
            + (copy * (S * bins.num_bins))[None, :]
        weights = jnp.broadcast_to(w, stats.shape)
        hist = counts.histogram[0].reshape(-1).at[idx.ravel()].add(weights.ravel())

        x = jnp.where(ok, stats, 0.0)
        if weighted:
            rows = weighted_rows(x, w.astype(jnp.float64), pairs)
        elif pairs:
            rows = 0.5 * pair_sums(x, True)  # the pairs' means
        else:
            rows = x
        # max(., 0) keeps each square a rounded product of its own: next to the tree's
        # first add, LLVM contracts x*x + y*y into a fused multiply-add for some chunk
        # shapes only (measured), which changed the last bit of a variance
        rows2 = jnp.maximum(rows * rows, 0.0)
        units = ok[0::2] if pairs else ok
        node = ChunkNode(jnp.sum(units, dtype=jnp.int32)[None], pairwise_sum(rows)[None],
                         pairwise_sum(rows2)[None])
        # every event's month counted in one scatter over the [E, T+1] table
        months = out.event_months
        new = ChunkCounts(
            hist.reshape(1, options.hist_copies, S, bins.num_bins),
            counts.event_counts.at[0, jnp.arange(E)[:, None], months].add(
                jnp.broadcast_to(w, months.shape)),
            counts.nonfinite_months.at[0, first_bad].add(bad))
        return new, node

    mesh = Mesh(np.array(devices), ("paths",))
    rep, split = P(), P(None, "paths") if batch else P("paths")
    counts_spec = ChunkCounts(*(split,) * len(ChunkCounts._fields))
    body = run_shard
    if batch:
        body = jax.vmap(run_shard, in_axes=(KernelInputs(0, 0, None), 0, None, None, None,
                                            0 if weighted else None, None))
    sharded = jax.shard_map(body, mesh=mesh,
                            in_specs=(rep, counts_spec, rep, rep, P("paths"), rep,
                                      P("paths")),
                            out_specs=(counts_spec, ChunkNode(split, split, split)),
                            check_vma=False)
    return jax.jit(sharded, donate_argnums=(1,))


def fused_fallback(spec: KernelSpec, options: KernelOptions, batch: int = 0,
                   latent: bool = False) -> str | None:
    """Why a run that asked for the fused month loop (``options.fused``) runs the scan
    instead (None: it did not ask, or it gets the fused loop): the run reports it
    (provenance and terminal) rather than falling back in silence."""
    if not options.fused:
        return None
    reasons = [r for r in (fused_unsupported(spec),
                           "batched sweep points" if batch else None,
                           "a posterior forecast (replayed shocks)" if latent else None) if r]
    return "; ".join(reasons) or None


def no_uniforms(devices: tuple) -> jax.Array:
    """The uniforms argument of a call without Sobol points: an empty array sharded like
    the paths."""
    sharding = NamedSharding(Mesh(np.array(devices), ("paths",)), P("paths"))
    return jax.device_put(np.zeros((len(devices), 0)), sharding)


def zero_counts(layout: StatLayout, bins: MoneyBins, devices: tuple,
                options: KernelOptions = CPU_OPTIONS, weighted: bool = False,
                batch: int = 0) -> ChunkCounts:
    """Fresh device counts, one row per device, laid out as the kernel expects (made on
    the devices: with histogram copies they are hundreds of MB). int32 counts of paths, or
    int64 sums of integer weights in a weighted run; a leading axis of ``batch`` points."""
    return _count_functions(layout, bins, devices, options, weighted, batch)[0]()


def device_counts_total(counts: ChunkCounts, layout: StatLayout, bins: MoneyBins,
                        devices: tuple, options: KernelOptions = CPU_OPTIONS,
                        weighted: bool = False, batch: int = 0):
    """The counts summed over histogram copies on the devices, then copied to the host."""
    return jax.device_get(_count_functions(layout, bins, devices, options, weighted,
                                           batch)[1](counts))


@functools.lru_cache(maxsize=32)
def _count_functions(layout: StatLayout, bins: MoneyBins, devices: tuple,
                     options: KernelOptions, weighted: bool = False, batch: int = 0):
    D, T = len(devices), layout.grid.num_months
    S, num_events = layout.num_stats, len(layout.events)
    lead = (batch,) if batch else ()
    sharding = NamedSharding(Mesh(np.array(devices), ("paths",)),
                             P(None, "paths") if batch else P("paths"))
    shape = ChunkCounts(lead + (D, options.hist_copies, S, bins.num_bins),
                        lead + (D, num_events, T + 1), lead + (D, T + 1))
    kind = jnp.int64 if weighted else jnp.int32
    zeros = jax.jit(lambda: ChunkCounts(*(jnp.zeros(s, kind) for s in shape)),
                    out_shardings=ChunkCounts(*(sharding,) * len(ChunkCounts._fields)))
    # int32 is enough: the engine flushes before any device passes 2^31 - 1 paths
    total = jax.jit(lambda c: c._replace(histogram=c.histogram.sum(axis=-3)))
    return zeros, total
