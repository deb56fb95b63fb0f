"""Checkpoints: a run's accumulators, saved every so often, so that a killed run resumes.

A checkpoint holds everything the host keeps (integer counts, the sum tree's nodes, paths
done) and the first path of the next call. Because every number is fixed by the path
indices alone, a run resumed from it gives bit-identical results to one never stopped.
It is refused unless it was written by the same run: the same config text and effective
settings, seed, dtype, device type, chunk and layout; the message names what differs.

Files are written to a temporary name unique to the writing process, flushed to disk and
renamed, so a kill at any moment leaves the previous checkpoint or the new one, never a torn
file, and two processes never write one temporary file. A checkpoint that is torn anyway
(copied half-way, a disk error) is refused in one line naming the file, never a traceback.
One process at a time writes a checkpoint directory (:mod:`mcsim.locks`).

The same files keep other long work for a resume: the SMC phase of a conditioned run
(:mod:`mcsim.engine.smc`), a sweep's finished points (:mod:`mcsim.saved`) and a sensitivity
study's evaluated rows (:mod:`mcsim.sensitivity`), each through :func:`write_arrays` and
:func:`read_arrays`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import sys
import zipfile
import zlib
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from .accumulators import Accumulator, SumTree
from .config import ConfigError
from .layout import StatLayout

#: /3: the event months as one [E, T+1] array, and the statistic layout in the identity
FORMAT = "mcsim.checkpoint/3"


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
        # the rows and events the arrays hold: a layout changed between versions is a
        # one-line refusal naming it, not a broadcast error while merging
        "layout": StatLayout.of(config).signature(),
    }


def checkpoint_file(directory: str | Path, process_index: int, num_processes: int) -> Path:
    """The accumulators' checkpoint of one process of a run."""
    return Path(directory) / f"process-{process_index}-of-{num_processes}.npz"


def temporary_file(path: Path) -> Path:
    """Where ``path`` is written before its rename: named by this process, so two
    processes never write (and tear) one temporary file, and a killed writer's leftover is
    recognised as such (:func:`remove_checkpoints`)."""
    return path.with_name(f"{path.name}.{os.getpid()}.tmp")


_TEMPORARY = re.compile(r"^(?P<name>.+\.npz)\.(?P<pid>\d+)\.tmp$")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # ours: the writer is done with it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_checkpoints(directory: str | Path, num_processes: int, *,
                       remove_directory: bool, names: Iterable[str] = ()) -> None:
    """Delete the checkpoint files of a finished run and nothing else: every process's
    accumulators and SMC states, the extra ``names`` (a sweep's points, a study's rows),
    and the temporary files of these whose writer is no longer running; then the directory
    itself when ``remove_directory`` (mcsim created it) and it is empty."""
    directory = Path(directory)
    ours: set[str] = set(names)
    prefixes = []
    for i in range(num_processes):
        f = checkpoint_file(directory, i, num_processes)
        ours.add(f.name)
        # this version's SMC group states only: another version's (``.smc-run-R``, before
        # the runs moved in groups) were not written by this run
        prefixes.append(f"{f.stem}.smc-group-")
    try:
        entries = [e.name for e in directory.iterdir()]
    except OSError:
        entries = []
    for name in entries:
        match = _TEMPORARY.match(name)
        base = match["name"] if match else name
        if not (base in ours or (base.startswith(tuple(prefixes)) and base.endswith(".npz"))):
            continue
        if match and _pid_alive(int(match["pid"])):
            continue  # another process is writing it
        with contextlib.suppress(OSError):
            (directory / name).unlink()
    if remove_directory:
        with contextlib.suppress(OSError):
            directory.rmdir()  # only when empty


def write_arrays(path: Path, identity: Mapping, arrays: Mapping[str, np.ndarray], *,
                 compress: bool = True) -> str | None:
    """Write ``arrays`` and ``identity`` (JSON) to ``path`` atomically: a temporary file of
    this process, fsync, rename. None when written, else the reason (a full disk, a
    read-only directory): the temporary file is removed and the caller decides whether
    that is a warning (a checkpoint is insurance, not a result)."""
    tmp = temporary_file(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _write(tmp, identity, arrays, compress)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        return exc.strerror or str(exc)
    return None


def _write(tmp: Path, identity: Mapping, arrays: Mapping[str, np.ndarray],
           compress: bool) -> None:
    with open(tmp, "wb") as f:
        save = np.savez_compressed if compress else np.savez
        save(f, identity=np.array(json.dumps(identity, sort_keys=True)), **arrays)
        f.flush()
        os.fsync(f.fileno())


#: what a torn, truncated or foreign file raises from np.load and its members' reads
_UNREADABLE = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error,
               TypeError, AttributeError, IndexError)


def read_arrays(path: Path, identity: Mapping, *, key: str = "resume",
                what: str = "a checkpoint of this same run") -> dict[str, np.ndarray]:
    """The arrays of the checkpoint at ``path``, read whole.

    Raises ConfigError (naming ``key``, the file, and what to do) when the file is not a
    readable mcsim checkpoint (garbage, truncated, damaged) or when its identity differs
    from ``identity`` (every differing entry is named).
    """
    try:
        with np.load(path, allow_pickle=False) as z:
            if "identity" not in z.files:
                raise ValueError("no identity record: not an mcsim checkpoint")
            saved = json.loads(str(z["identity"]))
            if not isinstance(saved, dict):
                raise ValueError("its identity record is not a table")
            data = {k: z[k] for k in z.files if k != "identity"}
    except _UNREADABLE as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        if "pickled" in reason:  # np.load's guess for a file that is not .npy/.npz
            reason = "not a NumPy archive"
        raise ConfigError(key, str(path), f"a readable mcsim checkpoint, but {path} is "
                          f"truncated or damaged ({type(exc).__name__}: {reason}); delete "
                          "it to start from the beginning") from None
    differ = [k for k in identity if saved.get(k) != identity[k]]
    if differ:
        shown = "; ".join(_difference(k, saved.get(k), identity[k]) for k in differ)
        hint = "start over without resuming, or give another checkpoint directory"
        if "devices" in differ:  # the command line makes one CPU device per core
            hint += f", or run on {saved.get('devices')} device(s): MCSIM_CPU_DEVICES=" \
                f"{saved.get('devices')} on the CPU"
        raise ConfigError(key, str(path), f"{what}, but in {path} {shown} ({hint})")
    return data


def _difference(key: str, was, now) -> str:
    """``key was X, now Y``; for a table (the layout), only its entries that differ."""
    if isinstance(was, dict) and isinstance(now, dict):
        return "; ".join(_difference(f"{key}.{k}", was.get(k), now.get(k))
                         for k in sorted(set(was) | set(now)) if was.get(k) != now.get(k))
    if isinstance(was, list) and isinstance(now, list) and all(
            isinstance(x, str) for x in was + now):  # names: which came, which went
        change = [f"+{x}" for x in now if x not in was] + [f"-{x}" for x in was if x not in now]
        return f"{key} changed ({', '.join(change) or 'reordered'})"
    return f"{key} was {_short(was)}, now {_short(now)}"


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def save(path: Path, identity: dict, acc: Accumulator, next_start: int) -> str | None:
    """Write atomically (:func:`write_arrays`). Compressed: the histograms are mostly
    empty bins (35 MB of int64 for 204 months, a few hundred kB compressed).

    A checkpoint is insurance, not a result: when it cannot be written (a full disk, a
    read-only directory) the temporary file is removed and the reason is returned (None
    when written): the engine warns once and the run goes on.
    """
    return write_arrays(path, identity, accumulator_arrays(acc, next_start))


class Checkpointer:
    """One checkpoint file: :func:`write_arrays` that warns once (on stderr) the first
    time the file cannot be written, and tries again at the next save."""

    def __init__(self, path: Path, identity: dict) -> None:
        self.path, self.identity, self.warned = path, identity, False

    def save(self, acc: Accumulator, next_start: int) -> bool:
        return self.write(accumulator_arrays(acc, next_start))

    def write(self, arrays: Mapping[str, np.ndarray], *, compress: bool = True) -> bool:
        failure = write_arrays(self.path, self.identity, arrays, compress=compress)
        if failure is not None and not self.warned:
            self.warned = True
            print(f"mcsim: warning: checkpoint {self.path} not written ({failure}); the "
                  "run goes on without it", file=sys.stderr)
        return failure is None


def accumulator_arrays(acc: Accumulator, next_start: int) -> dict[str, np.ndarray]:
    """An accumulator (and the next call's first path) as a checkpoint's arrays."""
    tree = acc.tree.state()
    return dict(**acc.counts(), scalars=np.array([acc.paths, next_start], np.int64),
                tree_keys=tree["keys"], tree_count=tree["count"], tree_s1=tree["s1"],
                tree_s2=tree["s2"])


def fill_accumulator(acc: Accumulator, data: Mapping[str, np.ndarray],
                     path: Path | None = None, key: str = "resume") -> int:
    """Fill ``acc`` from :func:`accumulator_arrays`' ``data``; the next call's first path.
    Arrays of the wrong shape (a damaged file whose identity still matched) are refused as
    unreadable."""
    try:
        # add_counts refuses a mis-shaped array (a damaged file whose identity matched)
        acc.add_counts(**{k: data[k] for k in Accumulator.COUNTS})
        acc.paths = int(data["scalars"][0])
        acc.tree = SumTree.from_state(acc.tree_stats, {
            "keys": data["tree_keys"], "count": data["tree_count"], "s1": data["tree_s1"],
            "s2": data["tree_s2"]})
        return int(data["scalars"][1])
    except _UNREADABLE as exc:
        raise ConfigError(key, str(path), f"a readable mcsim checkpoint, but {path} is "
                          f"damaged ({type(exc).__name__}: {exc}); delete it to start from "
                          "the beginning") from None


def load(path: Path, identity: dict, acc: Accumulator) -> int:
    """Fill ``acc`` from the checkpoint at ``path``; return the first path still to run.

    Raises ConfigError (key ``resume``) when the checkpoint is unreadable or was written
    by a different run.
    """
    return fill_accumulator(acc, read_arrays(path, identity), path)
