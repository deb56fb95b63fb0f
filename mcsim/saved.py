"""Finished results kept in a checkpoint directory, so that a resumed sweep skips them.

A sweep (:func:`mcsim.api.run_sweep` with ``checkpoint=``) saves each point once its batch
is done, one file per point (``sweep-point-K.npz``, K its index in grid order), and a
resumed sweep reads back every point of a batch that is complete instead of running it
again. A batch is kept or redone whole: a batched point's last bits depend on the points
it ran with (:class:`mcsim.engine.run.RunInfo` ``batch``), so running a batch's missing
points in a smaller batch would not give the numbers an uninterrupted sweep gives.

A point's file holds what its :class:`Results` took simulation to get: the prior pass's
accumulator and run facts; the importance-weighted pass's accumulator, facts and
reference log-likelihood; or an SMC posterior's runs (particles, predictions, steps) and
each run's forecast. The tables (parameters, facts vs model) are computed again from the
config (:func:`mcsim.api.with_tables`: the same numbers, fixed by the config). Loaded, a
point's Results are the ones the uninterrupted sweep has, bit for bit.

Each file's identity names the sweep (base config, grid, paths, seed, dtype, batching,
device type) and the point (its values, its batch, its config's text): a changed sweep is
refused with what changed (:func:`mcsim.checkpoint.read_arrays`).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from . import checkpoint as ckpt
from .accumulators import BLOCK, Accumulator, MoneyBins
from .config import Config, ConfigError
from .engine import KernelOptions, RunInfo, RunOutput
from .engine.smc import STEP_FIELDS, SMCPosterior, SMCRun, SMCSettings, latent_layout, step_from_row
from .layout import StatLayout
from .results import ConditionedResults, PosteriorResults, Results

FORMAT = "mcsim.sweep-point/1"
_ACCUMULATOR_KEYS = (*Accumulator.COUNTS, "scalars", "tree_keys", "tree_count", "tree_s1",
                     "tree_s2")


def point_file(directory: str | Path, index: int) -> Path:
    """The file of a sweep's point ``index`` (grid order)."""
    return Path(directory) / f"sweep-point-{index}.npz"


def point_files(directory: str | Path, count: int) -> list[str]:
    """The names of a sweep's ``count`` point files (for removing them once written)."""
    return [point_file(directory, i).name for i in range(count)]


def sweep_identity(config: Config, grid: Mapping[str, list[Any]], *, dtype: str,
                   batch: bool, options: Mapping[str, Any], device: str) -> dict:
    """What a sweep's saved points must share with the sweep resuming them (JSON-ready)."""
    from ._version import __version__

    sim = config.simulation
    return {"format": FORMAT,
            "config_sha256": hashlib.sha256(config.source_text.encode()).hexdigest(),
            "grid": json.loads(json.dumps(dict(grid), default=str)),
            "paths": sim.paths, "seed": sim.seed, "dtype": dtype, "batch": batch,
            "options": json.loads(json.dumps(dict(options), sort_keys=True, default=repr)),
            "device_kind": device, "mcsim_version": __version__}


def point_identity(sweep: Mapping, index: int, point: Mapping[str, Any], config: Config,
                   members: list[int]) -> dict:
    """A point's identity: the sweep's, and the point's index, values, batch and config."""
    return {**sweep, "point": index, "values": json.loads(json.dumps(dict(point),
                                                                     default=str)),
            "batch_members": list(members),
            "point_config_sha256": hashlib.sha256(config.source_text.encode()).hexdigest()}


# -- Results to arrays, and back ---------------------------------------------------------


def info_text(info: RunInfo) -> str:
    return json.dumps({**info._asdict(), "options": info.options._asdict()})


def info_from_text(text: str) -> RunInfo:
    d = json.loads(text)
    return RunInfo(**{**d, "options": KernelOptions(**d["options"])})


def _run_arrays(prefix: str, res: Results) -> dict[str, np.ndarray]:
    acc = res.accumulator
    arrays = {f"{prefix}_{k}": v for k, v in ckpt.accumulator_arrays(acc, 0).items()}
    arrays[f"{prefix}_shape"] = np.array([acc.num_stats, acc.num_bins, acc.num_months,
                                          acc.tree_stats, acc.num_events], np.int64)
    arrays[f"{prefix}_info"] = np.array(info_text(res.info))
    return arrays


def _accumulator(data: Mapping[str, np.ndarray], prefix: str, path: Path) -> Accumulator:
    S, B, T, tree, events = (int(v) for v in data[f"{prefix}_shape"])
    acc = Accumulator(S, B, T, tree, events)
    ckpt.fill_accumulator(acc, {k: data[f"{prefix}_{k}"] for k in _ACCUMULATOR_KEYS}, path)
    return acc


def results_arrays(res: Results) -> dict[str, np.ndarray]:
    """What a point's Results took simulation to get, as a checkpoint's arrays."""
    arrays = _run_arrays("prior", res)
    arrays["bins"] = np.array([res.bins.bins_per_decade, res.bins.min_exponent,
                               res.bins.max_exponent], np.int64)
    arrays["precision"] = np.array(json.dumps(res.precision))
    cond = res.conditioned
    if isinstance(cond, PosteriorResults):
        arrays["conditioned"] = np.array("smc")
        for r, run in enumerate(cond.posterior.runs):
            p = f"smc{r}"
            arrays.update({
                f"{p}_z": run.z, f"{p}_loglik": run.loglik, f"{p}_predicted": run.predicted,
                f"{p}_prior_z": run.prior_z, f"{p}_prior_predicted": run.prior_predicted,
                f"{p}_steps": np.array([[getattr(s, f) for f in STEP_FIELDS]
                                        for s in run.steps], np.float64
                                       ).reshape(len(run.steps), len(STEP_FIELDS)),
                f"{p}_scalars": np.array([run.run, run.distinct, run.seconds,
                                          run.evaluations], np.float64),
                f"{p}_moves_after_tempering": np.array(run.moves_after_tempering, np.int64)})
        for r, one in enumerate(cond.run_results):
            arrays.update(_run_arrays(f"forecast{r}", one))
    elif isinstance(cond, ConditionedResults):
        arrays["conditioned"] = np.array("importance")
        arrays.update(_run_arrays("weighted", cond))
        arrays["reference_loglik"] = np.array(cond.reference_loglik, np.float64)
    else:
        arrays["conditioned"] = np.array("none")
    return arrays


def results_from_arrays(data: Mapping[str, np.ndarray], config: Config, dtype: str,
                        path: Path) -> Results:
    """The Results that :func:`results_arrays` saved (without their tables), for
    ``config``, the point's config."""
    try:
        bins = MoneyBins(*(int(v) for v in data["bins"]))
        layout = StatLayout.of(config)
        res = Results(config, layout, bins, _accumulator(data, "prior", path),
                      info_from_text(str(data["prior_info"])),
                      precision=json.loads(str(data["precision"])))
        kind = str(data["conditioned"])
        cfg = config.with_simulation(paths=res.num_paths)
        if kind == "importance":
            cond = ConditionedResults(cfg, layout, bins, _accumulator(data, "weighted", path),
                                      info_from_text(str(data["weighted_info"])),
                                      reference_loglik=float(data["reference_loglik"]))
        elif kind == "smc":
            cond = _posterior_from_arrays(data, cfg, layout, bins, dtype, path)
        else:
            cond = None
    except (KeyError, ValueError, TypeError) as exc:
        raise ConfigError("resume", str(path), f"a readable mcsim checkpoint, but it is "
                          f"damaged ({type(exc).__name__}: {exc}); delete it to run the "
                          "point again") from None
    from dataclasses import replace

    return replace(res, conditioned=cond)


def _posterior_from_arrays(data, config: Config, layout: StatLayout, bins: MoneyBins,
                           dtype: str, path: Path) -> PosteriorResults:
    settings = SMCSettings.for_config(config)
    posterior = SMCPosterior(settings, latent_layout(config), dtype=dtype)
    outs = []
    N = settings.particles
    forecast = config.with_simulation(paths=N, variance_reduction="none")
    for r in range(settings.runs):
        p = f"smc{r}"
        steps = [step_from_row(row) for row in data[f"{p}_steps"]]
        run, distinct, seconds, evaluations = data[f"{p}_scalars"]
        posterior.runs.append(SMCRun(int(run), steps, data[f"{p}_z"], data[f"{p}_loglik"],
                                     data[f"{p}_predicted"], data[f"{p}_prior_z"],
                                     data[f"{p}_prior_predicted"], int(distinct),
                                     float(seconds), int(evaluations),
                                     # none in a file of an older version
                                     int(data.get(f"{p}_moves_after_tempering", 0))))
        outs.append(RunOutput(forecast, layout, bins, _accumulator(data, f"forecast{r}", path),
                              info_from_text(str(data[f"forecast{r}_info"]))))
    return posterior_results(config, posterior, outs)


# -- the conditioned results of an SMC posterior (shared with mcsim.api) ----------------------


def results_of(out: RunOutput) -> Results:
    """The engine's output for one config as :class:`Results` (weighted:
    :class:`ConditionedResults`)."""
    if out.reference_loglik is not None:
        return ConditionedResults(out.config, out.layout, out.bins, out.accumulator, out.info,
                                  reference_loglik=out.reference_loglik)
    return Results(out.config, out.layout, out.bins, out.accumulator, out.info)


def pooled_accumulator(accumulators: list[Accumulator], particles: int) -> Accumulator:
    """The runs' accumulators as one, run r's paths taking the r-th aligned subtree of
    the sum tree (each run's root is a node at the level of ``particles``), so the pooled
    sums are fixed by the runs alone, like any run's."""
    first = accumulators[0]
    out = Accumulator(first.num_stats, first.num_bins, first.num_months, first.tree_stats,
                      first.num_events)
    level = max(0, math.ceil(math.log2(-(-particles // BLOCK))))
    for r, a in enumerate(accumulators):
        out.add_counts(**a.counts())
        out.paths += a.paths
        out.tree.insert(level, r, *a.tree.total())
    return out


def posterior_results(config: Config, posterior: SMCPosterior,
                      outs: list[RunOutput]) -> PosteriorResults:
    """An SMC posterior and its runs' forecasts (``outs``, one per run) as
    :class:`PosteriorResults`: the runs pooled, with errors from their spread."""
    N = posterior.settings.particles
    forecast = config.with_simulation(paths=N, variance_reduction="none")
    pooled = pooled_accumulator([o.accumulator for o in outs], N)
    info = outs[0].info._replace(paths=pooled.paths,
                                 seconds=sum(r.seconds for r in posterior.runs)
                                 + sum(o.info.seconds for o in outs))
    return PosteriorResults(forecast.with_simulation(paths=pooled.paths), outs[0].layout,
                            outs[0].bins, pooled, info,
                            run_results=[results_of(o) for o in outs], posterior=posterior)


class PointStore:
    """A sweep's saved points in its checkpoint directory: :meth:`load` (None when not
    resuming or not saved yet) and :meth:`save` (a warning, not a failure, when the disk
    refuses: a checkpoint is insurance)."""

    def __init__(self, directory: str | Path, identity: Mapping, resume: bool,
                 dtype: str) -> None:
        self.directory, self.identity = Path(directory), dict(identity)
        self.resume, self.dtype = resume, dtype

    def load(self, index: int, point: Mapping[str, Any], config: Config,
             members: list[int]) -> Results | None:
        f = point_file(self.directory, index)
        if not self.resume or not f.exists():
            return None
        data = ckpt.read_arrays(f, point_identity(self.identity, index, point, config,
                                                  members),
                                what="a finished point of this same sweep")
        return results_from_arrays(data, config, self.dtype, f)

    def save(self, index: int, point: Mapping[str, Any], config: Config, members: list[int],
             results: Results) -> None:
        f = point_file(self.directory, index)
        identity = point_identity(self.identity, index, point, config, members)
        smc = isinstance(results.conditioned, PosteriorResults)  # normals: incompressible
        ckpt.Checkpointer(f, identity).write(results_arrays(results), compress=not smc)
