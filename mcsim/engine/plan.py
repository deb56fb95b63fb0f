"""Planning a run: how many paths per call, which calls this process makes, which configs
may share one batched kernel, and how the kernel is laid out for the device.

Nothing here touches the numbers: a plan only decides how the work is cut, and the
engine's results are the same for every plan of the same config and seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import jax
import numpy as np

from ..accumulators import BLOCK, MoneyBins
from ..config import Config, ConfigError
from ..layout import ANNUAL_FLOWS, StatLayout
from ..months import MonthGrid
from .kernel import KernelSpec

DEFAULT_CHUNK_CPU = 2 * BLOCK
DEFAULT_CHUNK_ACCELERATOR = 1024 * BLOCK
#: Per-device counts are int32; they go to the host's int64 before this many paths.
INT32_PATHS = 2**31 - 1


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
    recorded in the provenance. ``fused`` likewise (another program: on a GPU, other
    math libraries).
    """

    unroll: int = 1
    hist_copies: int = 1
    #: the fused month loop (:mod:`mcsim.engine.fused`, one Pallas kernel whose paths keep
    #: their state in registers for every month) instead of the scan, where it applies: an
    #: unweighted, unbatched run (the scan runs the rest). Built for GPUs; on the CPU it
    #: runs in Pallas' interpret mode, slowly, for tests.
    fused: bool = False


CPU_OPTIONS = KernelOptions()
#: measured fastest on an H100 (benchmarks/results/gpu-nvidia_h100_80gb_hbm3-layouts.json)
GPU_OPTIONS = KernelOptions(unroll=8, hist_copies=32)


def default_kernel_options(device=None) -> KernelOptions:
    device = device or jax.local_devices()[0]
    return CPU_OPTIONS if device.platform == "cpu" else GPU_OPTIONS


def default_chunk_size(grid: MonthGrid | None = None, device=None) -> int:
    """Paths per device per call.

    CPU: 2048. With one device per core (:mod:`mcsim.cpu_devices`) a small call keeps each
    device's month loop on its own core and its ~60 arrays in that core's cache: measured
    on 2 cores (10^6 paths of ``configs/base.toml``), 2048 paths per device ran in 12.0 s
    where 4096 took 14.9 s and 32768 15.6 s. Accelerators: a quarter of the
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


def process_units(num_units: int, process_index: int, process_count: int) -> range:
    """The contiguous share of ``num_units`` chunk-sized units that one process runs."""
    base, extra = divmod(num_units, process_count)
    start = process_index * base + min(process_index, extra)
    return range(start, start + base + (process_index < extra))


def batch_key(config: Config) -> tuple:
    """What configs must share to run in one batched call: every static shape of the
    kernel, the paths and the seed (points then differ only in traced numbers)."""
    sim = config.simulation
    return (KernelSpec.for_config(config, observed=True), sim.paths, sim.seed,
            sim.variance_reduction, sim.chunk_size)


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


@dataclass(frozen=True)
class RunPlan:
    """How one process cuts its share of a run into calls.

    ``shard``: paths per device per call (a whole subtree of the sum tree, at ``level``);
    ``calls``: (first path, end of its stage) of each call this process makes, in order,
    never crossing a stage boundary; ``first``/``limit``: this process's paths.
    """

    shard: int
    level: int
    num_devices: int
    calls: tuple[tuple[int, int], ...]
    first: int
    limit: int

    @property
    def paths_per_call(self) -> int:
        return self.num_devices * self.shard

    def resumed(self, next_start: int) -> RunPlan:
        """The plan of the calls from ``next_start`` on (after a checkpoint)."""
        calls = tuple((s, e) for s, e in self.calls if s >= next_start)
        return RunPlan(self.shard, self.level, self.num_devices, calls, self.first,
                       self.limit)


def plan_run(num_paths: int, requested_chunk: int, num_devices: int, *,
             process_index: int = 0, process_count: int = 1,
             stages: list[int] | None = None) -> RunPlan:
    """The calls of one process: chunks of ``requested_chunk`` paths per device (rounded,
    :func:`round_chunk`), halved until every stage boundary falls between calls.

    Raises ConfigError (``stages``) for stages in a multi-process run or not multiples of
    1024 paths.
    """
    shard = round_chunk(requested_chunk, num_paths, num_devices * process_count)
    if stages:
        if process_count > 1:
            raise ConfigError("stages", stages, "no stages in a run of several processes "
                              "(stopping early runs in one process only)")
        step = np.gcd.reduce(np.array(stages, np.int64))
        while shard > BLOCK and step % shard:  # calls must end on every stage boundary
            shard //= 2
        if step % shard:
            raise ConfigError("stages", stages, f"multiples of {BLOCK} paths")
    level = (shard // BLOCK).bit_length() - 1  # the sum tree's level of one shard
    units = process_units(-(-num_paths // shard), process_index, process_count)
    first = units.start * shard
    limit = min(units.stop * shard, num_paths)  # this process's paths end here
    bounds = sorted({b for b in (stages or []) if first < b < limit} | {limit})
    calls, seg_start = [], first
    for seg_end in bounds:  # calls never cross a stage boundary
        calls += [(s, seg_end) for s in range(seg_start, seg_end, num_devices * shard)]
        seg_start = seg_end
    return RunPlan(shard, level, num_devices, tuple(calls), first, limit)
