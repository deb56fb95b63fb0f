"""A run: configs in, accumulators and run facts out, as a sequence of named stages.

:func:`run_batch` reads top to bottom: check the batch, plan the calls, build the kernel
and its inputs, find the weights' reference (conditioned runs), resume, loop over the
calls, settle and merge, check for non-finite paths, report the facts. The numbers depend
only on the config and its seed: not on the chunk size, the devices or the processes.
:mod:`mcsim.api` turns the output into :class:`mcsim.results.Results`.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from .. import checkpoint as ckpt
from .. import locks
from ..accumulators import BLOCK, Accumulator, MoneyBins
from ..config import Config, ConfigError
from ..layout import StatLayout
from ..qmc import sobol_points_for
from ..x64 import enable_x64
from .chunk import chunk_kernel, fused_fallback, no_uniforms
from .conditioning import no_windows, observation_windows, reference_log_likelihood
from .diagnosis import check_nonfinite
from .host import Checkpoints, HostReducer
from .kernel import DTYPES, KernelSpec, kernel_inputs, stacked_inputs
from .plan import KernelOptions, batch_key, default_chunk_size, default_kernel_options, plan_run
from .progress import progress_bar
from .runner import run_calls


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
    #: why ``KernelOptions(fused=True)`` was not honoured (``options`` then records the
    #: scan that ran instead); None when it was, or was not asked for
    fused_fallback: str | None = None


class RunOutput(NamedTuple):
    """What the engine returns for each config of a run."""

    config: Config
    layout: StatLayout
    bins: MoneyBins
    accumulator: Accumulator
    info: RunInfo
    #: a weighted run's unit of the weights (the best path's log-likelihood), else None
    reference_loglik: float | None = None


def _holding_checkpoint_lock(run: Callable) -> Callable:
    """``run`` holding this process's lock on its checkpoint directory while it runs
    (:mod:`mcsim.locks`): a second process checkpointing into the same directory is
    refused instead of tearing or deleting this one's checkpoints."""

    @functools.wraps(run)
    def holding(configs: list[Config], **options) -> list[RunOutput]:
        directory = options.get("checkpoint")
        if directory is None:
            return run(configs, **options)
        lock = locks.checkpoint_lock_file(directory, jax.process_index(), jax.process_count())
        with locks.hold(lock, key="checkpoint", value=str(directory),
                        what="checkpoint directory"):
            return run(configs, **options)

    return holding


@_holding_checkpoint_lock
def run_batch(configs: list[Config], *, chunk_size: int | None = None, dtype: str = "float32",
              bins: MoneyBins | None = None, progress: bool | None = None,
              devices: list | None = None, options: KernelOptions | None = None,
              checkpoint: str | Path | None = None, checkpoint_interval: float = 60.0,
              resume: bool = False, checkpoint_at_end: bool = True,
              stages: list[int] | None = None,
              should_stop: Callable[[Accumulator], bool] | None = None,
              weighted: bool = False, posterior=None) -> list[RunOutput]:
    """Simulate configs that share a :func:`mcsim.engine.plan.batch_key` in one batched
    kernel (one config: an ordinary run); one :class:`RunOutput` per config, each exactly
    what its own run would give.

    Paths are sharded over every local device; under ``jax.distributed`` (several
    processes) each process runs a contiguous share of the paths and the accumulators are
    merged, so every process returns the whole run's output.

    Args:
        configs: validated configs (their paths and seed are used).
        chunk_size: paths per device per call (rounded up to 1024 times a power of two);
            default from the device (:func:`mcsim.engine.plan.default_chunk_size`).
        dtype: ``"float32"`` (default) or ``"float64"`` for the kernel's drivers and flows;
            running sums and reported statistics are float64 either way.
        bins: money histogram bins (default 500 per decade, $1 to $10^16).
        progress: show a progress bar (default: on a terminal, for runs over 2 s).
        devices: the local devices to shard over (default: all of them).
        options: the kernel's layout for the device (default
            :func:`mcsim.engine.plan.default_kernel_options`).
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
            ``[observations]`` (:mod:`mcsim.engine.conditioning`).
        posterior: a :class:`mcsim.engine.smc.PosteriorSource`: path i is posterior
            particle i of an SMC run (its parameters, its shocks up to the last observed
            month, fresh shocks after); one config, ``paths`` = its particles.
    """
    enable_x64()
    # -- 1. the batch: configs that can share one kernel --------------------------------
    config, G = configs[0], len(configs)
    batch = G if G > 1 else 0
    _check_batch(configs, batch, stages, checkpoint, dtype, weighted)
    if posterior is not None and (batch or weighted or stages
                                  or config.simulation.variance_reduction != "none"):
        raise ConfigError("posterior", "a posterior forecast", "one config, unweighted, "
                          "without stages, with variance_reduction = \"none\"")
    grid, bins = config.grid, bins or MoneyBins()
    devices = tuple(devices or jax.local_devices())
    nproc, pid = jax.process_count(), jax.process_index()
    num_paths = config.simulation.paths

    # -- 2. the plan: paths per call, and this process's calls --------------------------
    requested = chunk_size or config.simulation.chunk_size \
        or max(BLOCK, default_chunk_size(grid, devices[0]) // max(G, 1))  # memory per call
    plan = plan_run(num_paths, requested, len(devices), process_index=pid,
                    process_count=nproc, stages=stages)

    # -- 3. the kernel and its traced inputs ---------------------------------------------
    options = options or default_kernel_options(devices[0])
    reduction = config.simulation.variance_reduction
    spec = KernelSpec.for_config(config, dtype, observed=weighted, unroll=options.unroll)
    latent = posterior is not None
    call = chunk_kernel(spec, bins, plan.shard, devices, options, reduction == "sobol",
                        batch, latent)
    fallback = fused_fallback(spec, options, batch, latent)
    if fallback is not None:  # said, never silent: the run goes on with the scan
        print(f"mcsim: warning: the fused month loop (KernelOptions(fused=True)) cannot run "
              f"this: {fallback}; the scan month loop runs instead", file=sys.stderr)
        options = options._replace(fused=False)
    inputs = stacked_inputs(configs) if batch else kernel_inputs(config)
    sobol = posterior if latent else sobol_points_for(config)
    if latent:  # fresh shocks after the last observed month: the forecast's own stream
        inputs = inputs._replace(shock_key=posterior.shock_key)
    uniform_sharding = NamedSharding(Mesh(np.array(devices), ("paths",)), P("paths"))
    empty_uniforms = no_uniforms(devices)

    # -- 4. a weighted run's unit of the weights: the best path of the run ---------------
    references = [reference_log_likelihood(c, dtype) for c in configs] if weighted else []
    windows = no_windows()
    if weighted:
        windows = [{**observation_windows(c), "reference": jnp.float64(r)}
                   for c, r in zip(configs, references, strict=True)]
        windows = jax.tree.map(lambda *xs: jnp.stack(xs), *windows) if batch else windows[0]

    # -- 5. the host state, resumed from a checkpoint when asked -------------------------
    layout = StatLayout.of(config, grid)
    accs = [Accumulator(layout.num_stats, bins.num_bins, grid.num_months,
                        tree_stats=3 * layout.num_stats + 2 if weighted else None,
                        num_events=len(layout.events))
            for _ in configs]
    reducer = HostReducer(accs, plan, layout, bins, devices, options, weighted, batch)
    bar = progress_bar(plan.limit - plan.first, progress)
    saver = None
    if checkpoint is not None:
        identity = ckpt.run_identity(config, dtype=dtype, shard=plan.shard, devices=devices,
                                     num_processes=nproc, process_index=pid,
                                     options=options, bins=bins)
        identity.update(variance_reduction=reduction, weighted=weighted)
        saver = Checkpoints(checkpoint, identity, checkpoint_interval)
        next_start = saver.resume(accs[0]) if resume else None
        if next_start is not None:
            plan = plan.resumed(next_start)
            if bar is not None:
                bar.update(accs[0].paths)

    # -- 6. the calls: the one host loop (engine/runner.run_calls) ---------------------
    def one_call(start: int, valid: int):
        uniforms = empty_uniforms if sobol is None else jax.device_put(
            sobol.points(start, plan.paths_per_call), uniform_sharding)
        shocks = empty_uniforms if not latent else jax.device_put(
            posterior.shocks(start, plan.paths_per_call), uniform_sharding)
        return call(inputs, reducer.counts, jnp.uint32(start % 2**32), jnp.int64(valid),
                    uniforms, windows, shocks)

    t_begin = time.perf_counter()
    compile_seconds = run_calls(plan, one_call, reducer, bar=bar, should_stop=should_stop,
                                saver=saver)

    # -- 7. save, merge ---------------------------------------------------------------------
    if saver is not None and checkpoint_at_end:  # a resume just reads the results back
        saver.save(reducer.first, plan.limit)
    if bar is not None:
        bar.close()
    accs = reducer.merged_across_processes()
    seconds = time.perf_counter() - t_begin

    # -- 8. non-finite paths, and the run's facts ----------------------------------------
    for c, a in zip(configs, accs, strict=True):
        check_nonfinite(c, a, dtype)
    info = RunInfo(accs[0].paths if stages else num_paths, config.simulation.seed,
                   plan.shard, dtype, f"{devices[0].platform}:{devices[0].device_kind}",
                   len(devices) * nproc, jax.__version__, seconds, compile_seconds, nproc,
                   options, max(G, 1), fallback)
    refs = references or [None] * G
    return [RunOutput(c, layout, bins, a, info, r)
            for c, a, r in zip(configs, accs, refs, strict=True)]


def _check_batch(configs: list[Config], batch: int, stages, checkpoint, dtype: str,
                 weighted: bool) -> None:
    """Refuse what cannot run: configs that cannot share a kernel, a batch with stages or
    checkpoints, an unknown dtype, a weighted run with nothing observed."""
    if batch:
        key = batch_key(configs[0])
        for other in configs[1:]:
            if batch_key(other) != key:
                raise ConfigError("configs", f"{len(configs)} configs",
                                  "configs that share their grid, paths, seed, variance "
                                  "reduction, distribution kinds, correlations and observed "
                                  "flows (mcsim.engine.batch_key)")
        if stages or checkpoint is not None:
            raise ConfigError("configs", f"{len(configs)} configs", "one config when "
                              "stopping early (stages) or checkpointing")
    if dtype not in DTYPES:
        raise ConfigError("dtype", dtype, f"one of {', '.join(DTYPES)}")
    if weighted and not configs[0].observations:
        raise ConfigError("observations", {}, "at least one observation to condition on")
