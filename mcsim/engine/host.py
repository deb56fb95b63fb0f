"""The host side of a run: one state object that brings each call's output into the
accumulators, saves and resumes checkpoints, and merges the processes of a distributed run.

:class:`HostReducer` holds everything the loop over calls changes (in the way diffrax keeps
its loop state in one ``State``): the device counts since the last flush, the call whose
sum-tree node is still to be read, the paths since the last flush (the int32 guard) and the
accumulators. The one host loop, :func:`mcsim.engine.runner.run_calls`, only calls its
methods (``before_call``, ``submit``, ``settle``, ``first``), as it does a reducer's.
"""

from __future__ import annotations

import time
from pathlib import Path

import jax
import numpy as np

from .. import checkpoint as ckpt
from ..accumulators import Accumulator, MoneyBins, SumTree
from ..layout import StatLayout
from .chunk import ChunkCounts, ChunkNode, device_counts_total, zero_counts
from .plan import INT32_PATHS, KernelOptions, RunPlan


class HostReducer:
    """The run's accumulators (one per config of a batch) and the loop state that feeds
    them.

    Between :meth:`settle` calls the device counts keep growing and the latest call's
    tree node is read only while the next call runs (:meth:`submit`), so the host never
    waits on the device in the steady state.
    """

    def __init__(self, accumulators: list[Accumulator], plan: RunPlan, layout: StatLayout,
                 bins: MoneyBins, devices: tuple, options: KernelOptions, weighted: bool,
                 batch: int) -> None:
        self.accumulators = accumulators
        self.plan = plan
        self._layout = (layout, bins, devices, options, weighted, batch)
        self.counts: ChunkCounts = zero_counts(*self._layout)
        self.pending: tuple[int, ChunkNode, int] | None = None  # (start, node, stage end)
        self.since_flush = 0  # paths per device since the counts were last flushed

    @property
    def first(self) -> Accumulator:
        return self.accumulators[0]

    def _per_point(self, tree) -> list:
        """The host copy of a call's output, one per config of the batch."""
        batch = self._layout[-1]
        return [jax.tree.map(lambda a, g=g: a[g], tree) for g in range(batch)] if batch \
            else [tree]

    def before_call(self) -> None:
        """Flush first when a device's int32 counts could overflow in the next call."""
        if self.since_flush + self.plan.shard > INT32_PATHS:
            self.settle()

    def submit(self, start: int, output: tuple[ChunkCounts, ChunkNode], stage_end: int,
               valid: int) -> None:
        """Take a call's output: the new device counts, and its node, which is read while
        the next call runs (the previous call's node is read now)."""
        counts, node = output
        self.counts = counts
        self.since_flush += self.plan.shard
        if self.pending is not None:
            self._collect(*self.pending)
        self.pending = (start, node, stage_end)
        for a in self.accumulators:
            a.paths += valid

    def _collect(self, start: int, node: ChunkNode, end: int) -> None:
        shard, level = self.plan.shard, self.plan.level
        for a, n in zip(self.accumulators, self._per_point(jax.device_get(node)), strict=True):
            for d in range(self.plan.num_devices):
                if start + d * shard < end:
                    a.tree.insert(level, (start + d * shard) // shard, int(n.count[d]),
                                  n.s1[d], n.s2[d])

    def settle(self) -> None:
        """Bring every call so far into the accumulators (tree nodes and counts); the
        devices' counts restart from zero."""
        if self.pending is not None:
            self._collect(*self.pending)
            self.pending = None
        host = device_counts_total(self.counts, *self._layout)
        for a, h in zip(self.accumulators, self._per_point(host), strict=True):
            # each array summed over the devices (its leading axis)
            a.add_counts(**{k: getattr(h, k).sum(axis=0) for k in Accumulator.COUNTS})
        self.counts = zero_counts(*self._layout)
        self.since_flush = 0

    def merged_across_processes(self) -> list[Accumulator]:
        """Every process's accumulators, merged in process order (the same on each)."""
        if jax.process_count() == 1:
            return self.accumulators
        return [_merge_across_processes(a) for a in self.accumulators]


class Checkpoints:
    """Saving the accumulators every ``interval`` seconds, and resuming from them."""

    def __init__(self, directory: str | Path, identity: dict, interval: float) -> None:
        pid, nproc = jax.process_index(), jax.process_count()
        self.file = ckpt.checkpoint_file(directory, pid, nproc)
        self._saver = ckpt.Checkpointer(self.file, identity)
        self.interval = interval
        self._last = time.perf_counter()

    def resume(self, acc: Accumulator) -> int | None:
        """Load the saved state into ``acc``; the next call's first path, or None."""
        if not self.file.exists():
            return None
        return ckpt.load(self.file, self._saver.identity, acc)

    def due(self) -> bool:
        return time.perf_counter() - self._last >= self.interval

    def save(self, acc: Accumulator, next_start: int) -> None:
        self._saver.save(acc, next_start)
        self._last = time.perf_counter()


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
    local = {**acc.counts(), "scalars": np.array([acc.paths, n], np.int64), "nodes": pad}
    every = multihost_utils.process_allgather(local)
    merged = Accumulator(acc.num_stats, acc.num_bins, acc.num_months, acc.tree_stats,
                         acc.num_events)
    for p in range(every["scalars"].shape[0]):
        paths, n = (int(v) for v in every["scalars"][p])
        other = Accumulator(acc.num_stats, acc.num_bins, acc.num_months, acc.tree_stats,
                            acc.num_events)
        other.add_counts(**{k: every[k][p] for k in Accumulator.COUNTS})
        other.paths = paths
        rows = every["nodes"][p][:n]
        S = acc.tree_stats
        other.tree = SumTree.from_state(S, {"keys": rows[:, :2].astype(np.int64),
                                            "count": rows[:, 2].astype(np.int64),
                                            "s1": rows[:, 3:3 + S], "s2": rows[:, 3 + S:]})
        merged.merge(other)
    return merged
