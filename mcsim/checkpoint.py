"""Checkpoints: a run's accumulators, saved every so often, so that a killed run resumes.

A checkpoint holds everything the host keeps (integer counts, the sum tree's nodes, paths
done) and the first path of the next call. Because every number is fixed by the path
indices alone, a run resumed from it gives bit-identical results to one never stopped.
It is refused unless it was written by the same run: the same config text and effective
settings, seed, dtype, device type, chunk and layout; the message names what differs.

Files are written to a temporary name, flushed to disk and renamed, so a kill at any moment
leaves the previous checkpoint or the new one, never a torn file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np

from .accumulators import Accumulator, SumTree
from .config import ConfigError

FORMAT = "mcsim.checkpoint/2"


def run_identity(config, *, dtype: str, shard: int, devices, num_processes: int,
                 process_index: int, options, bins) -> dict:
    """What must match for a checkpoint to be resumed (JSON-ready)."""
    from ._version import __version__

    sim = config.simulation
    return {
        "format": FORMAT,
        "config_sha256": hashlib.sha256(config.source_text.encode()).hexdigest(),
        "start": sim.start, "horizon": sim.horizon, "paths": sim.paths, "seed": sim.seed,
        "dtype": dtype, "chunk_size": shard, "devices": len(devices),
        "device_kind": f"{devices[0].platform}:{devices[0].device_kind}",
        "processes": num_processes, "process": process_index,
        "kernel_options": list(options), "bins": [bins.bins_per_decade, bins.min_exponent,
                                                  bins.max_exponent],
        "mcsim_version": __version__,
    }


def checkpoint_file(directory: str | Path, process_index: int, num_processes: int) -> Path:
    return Path(directory) / f"process-{process_index}-of-{num_processes}.npz"


def remove_checkpoints(directory: str | Path, num_processes: int, *,
                       remove_directory: bool) -> None:
    """Delete the checkpoint files of a finished run (every process's, and nothing else),
    then the directory itself when ``remove_directory`` (mcsim created it) and it is empty."""
    directory = Path(directory)
    for i in range(num_processes):
        f = checkpoint_file(directory, i, num_processes)
        for stale in (f, f.with_name(f.name + ".tmp")):
            with contextlib.suppress(OSError):
                stale.unlink()
    if remove_directory:
        with contextlib.suppress(OSError):
            directory.rmdir()  # only when empty


def save(path: Path, identity: dict, acc: Accumulator, next_start: int) -> str | None:
    """Write atomically: temp file, fsync, rename. Compressed: the histograms are mostly
    empty bins (35 MB of int64 for 204 months, a few hundred kB compressed).

    A checkpoint is insurance, not a result: when it cannot be written (a full disk, a
    read-only directory) the temporary file is removed and the reason is returned (None
    when written): the engine warns once and the run goes on.
    """
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _write(tmp, identity, acc, next_start)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        return exc.strerror or str(exc)
    return None


class Checkpointer:
    """One run's checkpoint file: :func:`save` that warns once (on stderr) the first time
    a checkpoint cannot be written, and tries again at the next save."""

    def __init__(self, path: Path, identity: dict) -> None:
        self.path, self.identity, self.warned = path, identity, False

    def save(self, acc: Accumulator, next_start: int) -> bool:
        failure = save(self.path, self.identity, acc, next_start)
        if failure is not None and not self.warned:
            self.warned = True
            print(f"mcsim: warning: checkpoint {self.path} not written ({failure}); the "
                  "run goes on without it", file=sys.stderr)
        return failure is None


def _write(tmp: Path, identity: dict, acc: Accumulator, next_start: int) -> None:
    tree = acc.tree.state()
    with open(tmp, "wb") as f:
        np.savez_compressed(f, identity=np.array(json.dumps(identity, sort_keys=True)),
                 histogram=acc.histogram, repayment_counts=acc.repayment_counts,
                 credit_counts=acc.credit_counts, nonfinite_months=acc.nonfinite_months,
                 cap_counts=acc.cap_counts, commitment_counts=acc.commitment_counts,
                 scalars=np.array([acc.paths, next_start], np.int64),
                 tree_keys=tree["keys"], tree_count=tree["count"], tree_s1=tree["s1"],
                 tree_s2=tree["s2"])
        f.flush()
        os.fsync(f.fileno())


def load(path: Path, identity: dict, acc: Accumulator) -> int:
    """Fill ``acc`` from the checkpoint at ``path``; return the first path still to run.

    Raises ConfigError (key ``resume``) when the checkpoint is unreadable or was written
    by a different run.
    """
    try:
        with np.load(path, allow_pickle=False) as z:
            saved = json.loads(str(z["identity"]))
            data = {k: z[k] for k in z.files if k != "identity"}
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError("resume", str(path), f"a readable mcsim checkpoint ({exc})") \
            from None
    differ = [k for k in identity if saved.get(k) != identity[k]]
    if differ:
        what = "; ".join(f"{k} was {saved.get(k)!r}, now {identity[k]!r}" for k in differ)
        hint = "start over without resuming"
        if "devices" in differ:  # the command line makes one CPU device per core
            hint += f", or run on {saved.get('devices')} device(s): MCSIM_CPU_DEVICES=" \
                f"{saved.get('devices')} on the CPU"
        raise ConfigError("resume", str(path),
                          f"a checkpoint of this same run, but {what} ({hint})")
    acc.add_counts(data["histogram"], data["repayment_counts"], data["credit_counts"],
                   data["nonfinite_months"], data["cap_counts"], data["commitment_counts"])
    acc.paths = int(data["scalars"][0])
    acc.tree = SumTree.from_state(acc.tree_stats, {
        "keys": data["tree_keys"], "count": data["tree_count"], "s1": data["tree_s1"],
        "s2": data["tree_s2"]})
    return int(data["scalars"][1])
