"""One path runner: every kind of run that is not the report's main run goes through here.

:func:`run_paths` is the host loop (the plan of calls, ``shard_map`` over every local device,
padding of the last call, the valid-and-finite mask, the progress bar) around one compiled
call per (kernels, reducer, shard, devices). What a kind of run keeps of its paths is a
**reducer** (the GUIDE's ``Moments.merge`` habit):

* :meth:`Reducer.update`, on each device, from the kernels' :class:`PathStatistics` of its
  ``shard`` paths, their indices and the mask, returns an array pytree for that device,
  each array with a leading axis of one (``shard_map`` stacks the devices on it);
* :meth:`Reducer.init` / :meth:`Reducer.merge` keep the host state, merging each call's
  per-device results exactly, in path order;
* :meth:`Reducer.state_dict` gives the state as named arrays (checkpoints, gathering).

A reducer's device part is its dataclass fields: frozen and hashable, so the compiled call
is cached on it. Two reducers cover the runs outside the main one:

* :class:`TreeSums`: per-path rows summed over the same pairwise tree as the run's means
  (:class:`mcsim.accumulators.SumTree`), so means and standard errors are the same bits for
  any chunk size or device count (paired differences, :mod:`mcsim.paired`);
* :class:`PathRows`: per-path values kept for the first ``limit`` paths, in path order
  (facts, sensitivity's design rows).

A new kind of run is then a short caller: its kernels' specs and inputs, a reducer, and
:func:`run_paths`. (The report's main run, :func:`mcsim.engine.run.run_batch`, keeps its
own loop for its histograms on the devices, stages, checkpoints and processes.)
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from ..accumulators import SumTree
from .kernel import (
    KernelInputs,
    KernelSpec,
    PathStatistics,
    build_kernel,
    pairwise_sum,
    path_is_finite,
)
from .plan import RunPlan, plan_run
from .progress import progress_bar


class Reducer:
    """What a kind of run keeps of its paths (see the module docstring)."""

    def update(self, outs: tuple[PathStatistics, ...], paths: jax.Array, valid: jax.Array,
               finite: jax.Array, windows: Any = None) -> Any:
        raise NotImplementedError

    def init(self) -> Any:
        raise NotImplementedError

    def merge(self, state: Any, start: int, shard: int, level: int, result: Any,
              num_paths: int) -> Any:
        raise NotImplementedError

    def state_dict(self, state: Any) -> dict[str, np.ndarray]:
        raise NotImplementedError


@dataclass(frozen=True)
class TreeSums(Reducer):
    """Rows of per-path values summed over the run's pairwise tree: the host state is a
    :class:`SumTree` of ``num_rows`` rows plus the count of valid non-finite paths.

    ``values(outs) -> [num_rows, n] float64`` is a static, hashable function (a module-level
    function or a frozen dataclass) of the kernels' outputs. A path not finite under any
    kernel contributes zeros and is not counted, as in the run's own tree.
    """

    values: Callable
    num_rows: int

    def update(self, outs, paths, valid, finite, windows=None):
        ok = valid & finite
        x = jnp.where(ok, self.values(outs).astype(jnp.float64), 0.0)
        # max(., 0): each square a rounded product of its own, as in chunk.py's tree rows
        return {"count": jnp.sum(ok, dtype=jnp.int32)[None],
                "s1": pairwise_sum(x)[None], "s2": pairwise_sum(jnp.maximum(x * x, 0.0))[None],
                "bad": jnp.sum(valid & ~finite, dtype=jnp.int32)[None]}

    def init(self):
        return {"tree": SumTree(self.num_rows), "bad": 0}

    def merge(self, state, start, shard, level, result, num_paths):
        for d in range(len(result["count"])):
            first = start + d * shard
            if first < num_paths:
                state["tree"].insert(level, first // shard, int(result["count"][d]),
                                     np.asarray(result["s1"][d], np.float64),
                                     np.asarray(result["s2"][d], np.float64))
                state["bad"] += int(result["bad"][d])
        return state

    def state_dict(self, state):
        return {**{f"tree_{k}": v for k, v in state["tree"].state().items()},
                "bad": np.array(state["bad"], np.int64)}


@dataclass(frozen=True)
class PathRows(Reducer):
    """Per-path values of the first ``limit`` paths, in path order: ``values(outs)`` returns
    a dict of arrays whose last axis is the path; the host state is those arrays
    ([..., limit]) and ``finite`` (bool [limit])."""

    values: Callable
    limit: int
    #: ``values`` takes ``(outs, paths, windows)`` (a likelihood needs them), not ``outs``
    full: bool = False

    def update(self, outs, paths, valid, finite, windows=None):
        # a leading axis of one per device: shard_map stacks the devices' results on it
        values = self.values(outs, paths, windows) if self.full else self.values(outs)
        return {k: v[None] for k, v in {**values, "finite": finite}.items()}

    def init(self):
        return {}

    def merge(self, state, start, shard, level, result, num_paths):
        for d in range(len(result["finite"])):
            first = start + d * shard
            keep = min(shard, self.limit - first)
            if keep <= 0:
                continue
            for name, value in result.items():
                v = np.asarray(value[d])
                if name not in state:
                    state[name] = np.zeros(v.shape[:-1] + (self.limit,), v.dtype)
                state[name][..., first:first + keep] = v[..., :keep]
        return state

    def state_dict(self, state):
        return dict(state)


@dataclass(frozen=True)
class MaxOf(Reducer):
    """The largest of a per-path value over the valid, finite paths whose value is finite
    (a maximum: exact and order-free): ``values(outs, paths, windows) -> [n]`` float64."""

    values: Callable

    def update(self, outs, paths, valid, finite, windows=None):
        v = self.values(outs, paths, windows)
        ok = valid & finite & jnp.isfinite(v)
        return jnp.max(jnp.where(ok, v, -jnp.inf))[None]

    def init(self):
        return -np.inf

    def merge(self, state, start, shard, level, result, num_paths):
        return max(state, float(np.max(result)))

    def state_dict(self, state):
        return {"max": np.array(state)}


@functools.lru_cache(maxsize=32)
def _sharded_call(specs: tuple[KernelSpec, ...], reducer: Reducer, shard: int,
                  devices: tuple, with_uniforms: bool, with_shock_paths: bool) -> Callable:
    """The compiled call: ``(inputs, start, num_valid, uniforms, shock_paths, windows) ->
    per-device results`` for ``shard`` paths on each device (cached on its static
    arguments)."""
    kernels = [build_kernel(spec) for spec in specs]

    def per_device(inputs, start, num_valid, uniforms, shock_paths, windows):
        d = jax.lax.axis_index("paths")
        offset = d.astype(jnp.uint32) * jnp.uint32(shard)
        local = jnp.arange(shard, dtype=jnp.uint32)
        paths = start + offset + local
        valid = (offset + local).astype(jnp.int64) < num_valid
        outs = tuple(k(i, paths, uniforms=uniforms if with_uniforms else None,
                       shock_paths=shock_paths if with_shock_paths else None,
                       windows=windows)
                     for k, i in zip(kernels, inputs, strict=True))
        return reducer.update(outs, paths, valid, path_is_finite(outs), windows)

    mesh = Mesh(np.array(devices), ("paths",))
    split = P("paths")
    sharded = jax.shard_map(per_device, mesh=mesh,
                            in_specs=(P(), P(), P(), split, split, P()), out_specs=split,
                            check_vma=False)
    return jax.jit(sharded)


class _ReducerHost:
    """A :class:`Reducer`'s host state as the host loop (:func:`run_calls`) drives it: a
    call's results are read while the next call runs."""

    def __init__(self, reducer: Reducer, plan: RunPlan, num_paths: int, state: Any) -> None:
        self.reducer, self.plan, self.num_paths = reducer, plan, num_paths
        self.state = reducer.init() if state is None else state
        self.pending: tuple[int, Any] | None = None

    @property
    def first(self) -> Any:
        return self.state

    def before_call(self) -> None:
        pass

    def submit(self, start: int, result: Any, stage_end: int, valid: int) -> None:
        self.settle()
        self.pending = (start, result)

    def settle(self) -> None:
        if self.pending is not None:
            start, result = self.pending
            self.state = self.reducer.merge(self.state, start, self.plan.shard,
                                            self.plan.level, jax.device_get(result),
                                            self.num_paths)
            self.pending = None


def run_calls(plan: RunPlan, call: Callable[[int, int], Any], host, *, bar=None,
              should_stop: Callable[[Any], bool] | None = None, saver=None) -> float:
    """The one host loop over a plan's calls, for every kind of run: ``call(start,
    valid)`` runs one call on the devices (asynchronously); ``host`` takes its output
    (``before_call``, ``submit``, ``settle``; ``host.first`` is what ``should_stop`` and
    ``saver`` see). At a stage's end ``should_stop`` may end the run; a due ``saver`` saves
    (with the next call's first path). Returns the first call's seconds (compile + one
    call)."""
    t_begin = time.perf_counter()
    compile_seconds = 0.0
    for i, (start, stage_end) in enumerate(plan.calls):
        host.before_call()
        valid = min(plan.paths_per_call, stage_end - start)
        output = call(start, valid)
        if i == 0:
            jax.block_until_ready(output)
            compile_seconds = time.perf_counter() - t_begin  # first call: compile + 1 chunk
        host.submit(start, output, stage_end, valid)
        if bar is not None:
            bar.update(valid)
        if should_stop is not None and start + plan.paths_per_call >= stage_end \
                and stage_end < plan.limit:
            host.settle()  # a stage is complete: ask whether it is enough
            if should_stop(host.first):
                break
        if saver is not None and saver.due() and i + 1 < len(plan.calls):
            host.settle()
            saver.save(host.first, plan.calls[i + 1][0])
    host.settle()
    return compile_seconds


def run_paths(specs: Sequence[KernelSpec], inputs: Sequence[KernelInputs], reducer: Reducer,
              num_paths: int, *, chunk_size: int | None = None, devices=None,
              progress: bool | None = None, uniforms: Any = None,
              shock_paths: np.ndarray | None = None, windows: Any = None,
              state: Any = None) -> Any:
    """Run paths ``0 .. num_paths - 1`` of each kernel spec (all on the same path indices:
    common random numbers) on every local device and reduce them with ``reducer``; the
    reducer's host state.

    ``uniforms`` [num_paths, m] (or a source with ``points(start, n)``, such as
    :func:`mcsim.qmc.sobol_points_for`'s) and ``shock_paths`` [num_paths] replace the paths'
    parameter uniforms and shock streams (design rows, Sobol points). ``windows``: the
    observations' windows of specs with observed flows
    (:func:`mcsim.engine.conditioning.observation_windows`). ``chunk_size``: paths per
    device per call (default 8192, rounded to :data:`~mcsim.accumulators.BLOCK` times a
    power of two; results do not depend on it). ``state``: a state to go on from.
    """
    devices = tuple(devices or jax.local_devices())
    plan = plan_run(num_paths, chunk_size or 8192, len(devices))
    call = _sharded_call(tuple(specs), reducer, plan.shard, devices, uniforms is not None,
                         shock_paths is not None)
    sharding = NamedSharding(Mesh(np.array(devices), ("paths",)), P("paths"))
    per_call = plan.paths_per_call
    windows = {} if windows is None else windows

    def sharded(a: np.ndarray, start: int, fill, dtype) -> jax.Array:
        """Rows ``start ..`` of a per-path array for one call, padded to the call."""
        out = np.full((per_call,) + a.shape[1:], fill, dtype)
        part = a[start:start + per_call]
        out[:len(part)] = part
        return jax.device_put(out, sharding)

    empty = jax.device_put(np.zeros((len(devices), 0)), sharding)

    def one_call(start: int, valid: int):
        if uniforms is None:
            u = empty
        elif hasattr(uniforms, "points"):  # a point source: this call's rows only
            u = jax.device_put(uniforms.points(start, per_call), sharding)
        else:
            u = sharded(uniforms, start, 0.5, np.float64)
        sp = empty if shock_paths is None else sharded(shock_paths, start, 0, np.uint32)
        return call(tuple(inputs), jnp.uint32(start % 2**32), jnp.int64(valid), u, sp,
                    windows)

    host = _ReducerHost(reducer, plan, num_paths, state)
    bar = progress_bar(num_paths, progress)
    run_calls(plan, one_call, host, bar=bar)
    if bar is not None:
        bar.close()
    return host.state

__all__ = ["MaxOf", "PathRows", "Reducer", "TreeSums", "path_is_finite", "run_calls",
           "run_paths"]
