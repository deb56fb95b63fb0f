"""The Python API: load a config, change any key, simulate, get :class:`Results`.

    >>> import mcsim                                                   # doctest: +SKIP
    >>> config = mcsim.load_config("configs/base.toml")
    >>> results = mcsim.simulate(config, paths=100_000, overrides={"deal.revenue_share": 0.1})
    >>> results.quantile_frame("cumulative_azure_spend", (5, 50, 95)).tail()

Every kind of run goes through here: :func:`simulate` (one config, optionally to a
precision target), :func:`run_sweep` (a grid of overrides, batched where shapes allow),
:func:`reproduce` (a run again from its summary.json), and :func:`run` / :func:`run_batch`
(the engine's runs as Results, no conditioning). A config with ``[observations]`` gets its
conditioned pass from :func:`add_conditioned`, the one place that runs it. The CLI is a thin
layer over these functions. Bad input raises :class:`mcsim.config.ConfigError` naming the
Python argument (``target_se``, ``grid``) or the config key.
"""

from __future__ import annotations

import json
import math
import sys
import warnings
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from . import precision
from .accumulators import BLOCK, Accumulator
from .config import Config, ConfigError, load_config, parse_config
from .engine import RunOutput, batch_key, max_batch
from .engine import run_batch as engine_run_batch
from .engine.parameters import parameter_table
from .engine.smc import PosteriorSource, smc_posterior
from .facts import facts_vs_model
from .layout import StatLayout
from .overrides import grid_points, with_overrides
from .posterior import posterior_table
from .results import ConditionedResults, PosteriorResults, Results
from .x64 import enable_x64


def _results(out: RunOutput) -> Results:
    """The engine's output for one config as :class:`Results` (weighted:
    :class:`ConditionedResults`)."""
    if out.reference_loglik is not None:
        return ConditionedResults(out.config, out.layout, out.bins, out.accumulator, out.info,
                                  reference_loglik=out.reference_loglik)
    return Results(out.config, out.layout, out.bins, out.accumulator, out.info)


def run_batch(configs: list[Config], **options) -> list[Results]:
    """:func:`mcsim.engine.run_batch` as one :class:`Results` per config (options as
    there: ``chunk_size``, ``devices``, ``checkpoint``, ``weighted``, ...)."""
    return [_results(out) for out in engine_run_batch(configs, **options)]


def run(config: Config, **options) -> Results:
    """One config's engine run as :class:`Results`, without the conditioned pass (see
    :func:`simulate`). Options as :func:`mcsim.engine.run_batch`."""
    return run_batch([config], **options)[0]


#: engine options that belong to the prior pass only (the conditioned pass is not
#: checkpointed: it is the shorter of the two and is run again whole)
_PRIOR_ONLY = ("checkpoint", "checkpoint_interval", "resume", "checkpoint_at_end",
               "stages", "should_stop")


def add_conditioned(results: list[Results], dtype: str = "float32", progress: bool | None = None,
              **options) -> list[Results]:
    """Each of ``results`` (one batch: configs sharing a batch key) with the same paths'
    conditioned results attached as ``.conditioned``: the second, weighted pass. A small
    effective sample size raises a ``UserWarning``."""
    options = {k: v for k, v in options.items() if k not in _PRIOR_ONLY}
    if results and results[0].config.conditioning.method == "smc":
        conditioned = [smc_conditioned(r.config, dtype, progress, **options) for r in results]
        for c in conditioned:
            if c.warning:
                warnings.warn(c.warning, UserWarning, stacklevel=3)
        return [replace(r, conditioned=c) for r, c in zip(results, conditioned, strict=True)]
    configs = [r.config.with_simulation(paths=r.num_paths) for r in results]
    conditioned = run_batch(configs, dtype=dtype, progress=progress, weighted=True, **options)
    for c in conditioned:
        if c.warning:
            warnings.warn(c.warning, UserWarning, stacklevel=3)
    return [replace(r, conditioned=c) for r, c in zip(results, conditioned, strict=True)]


def smc_conditioned(config: Config, dtype: str = "float32", progress: bool | None = None,
                    **options) -> PosteriorResults:
    """The config conditioned on its observations by tempered SMC
    (:mod:`mcsim.engine.smc`): ``conditioning.runs`` independent runs of
    ``conditioning.particles`` particles, each particle then forecast as one path of an
    ordinary run over the whole grid; the runs pooled, with errors from their spread."""
    enable_x64()
    devices = options.get("devices")
    say = None
    if progress:
        def say(line: str) -> None:
            print(line, file=sys.stderr, flush=True)
    posterior = smc_posterior(config, dtype, tuple(devices) if devices else None, say)
    N = posterior.settings.particles
    forecast = config.with_simulation(paths=N, variance_reduction="none")
    outs = [engine_run_batch([forecast], dtype=dtype, progress=progress,
                             posterior=PosteriorSource(posterior, r, dtype), **options)[0]
            for r in range(posterior.settings.runs)]
    pooled = _pooled([o.accumulator for o in outs], N)
    info = outs[0].info._replace(paths=pooled.paths,
                                 seconds=sum(r.seconds for r in posterior.runs)
                                 + sum(o.info.seconds for o in outs))
    return PosteriorResults(forecast.with_simulation(paths=pooled.paths), outs[0].layout,
                            outs[0].bins, pooled, info,
                            run_results=[_results(o) for o in outs], posterior=posterior)


def _pooled(accumulators: list[Accumulator], particles: int) -> Accumulator:
    """The runs' accumulators as one, run r's paths taking the r-th aligned subtree of
    the sum tree (each run's root is a node at the level of ``particles``), so the pooled
    sums are fixed by the runs alone, like any run's."""
    first = accumulators[0]
    out = Accumulator(first.num_stats, first.num_bins, first.num_months, first.tree_stats)
    level = max(0, math.ceil(math.log2(-(-particles // BLOCK))))
    for r, a in enumerate(accumulators):
        out.add_counts(a.histogram, a.repayment_counts, a.credit_counts, a.nonfinite_months,
                       a.cap_counts, a.commitment_counts)
        out.paths += a.paths
        out.tree.insert(level, r, *a.tree.total())
    return out


def simulate(config: Config | str | Path, *, paths: int | None = None,
             seed: int | None = None, overrides: Mapping[str, Any] | None = None,
             dtype: str = "float32", progress: bool | None = None,
             target_se: Mapping[str, float | str] | None = None,
             first_check: int | None = None, condition: bool | None = None,
             **run_options) -> Results:
    """Simulate a config and reduce it to :class:`mcsim.results.Results`.

    Args:
        config: a :class:`Config` or the path of a TOML file.
        paths, seed: override ``[simulation]`` (None: the config's).
        overrides: dotted keys to replace first (see :func:`mcsim.with_overrides`).
        dtype: ``"float32"`` (default) or ``"float64"`` for the kernel.
        progress: show a progress bar (default: on a terminal, for long runs).
        target_se: {STAT: standard error} to reach (``"1%"``: of the estimate); the run
            stops at the first look where all are met, or at ``paths`` (the budget). See
            :mod:`mcsim.precision` for the statistics and the stopping rule.
        first_check: paths at the first look (default 65,536; a multiple of 1024).
        condition: also run the same paths weighted by their likelihood of the config's
            ``[observations]`` (default: when it has any), as ``results.conditioned``
            (:mod:`mcsim.engine.conditioning`); a second pass, so about twice the time. A
            small effective sample size raises a ``UserWarning``.
        **run_options: passed to :func:`mcsim.engine.run_batch` (``chunk_size``,
            ``devices``, ``checkpoint``, ``resume``, ...).

    Returns:
        Results: quantiles with intervals, means with standard errors, month distributions,
        DataFrames (``*_frame``) and plots on matplotlib Axes (``plot_*``).
    """
    enable_x64()
    if not isinstance(config, Config):
        config = load_config(config)
    config = with_overrides(config, overrides or {})
    config = config.with_simulation(paths=paths, seed=seed)
    if condition is None:
        condition = bool(config.observations)
    if not target_se:
        results = run(config, dtype=dtype, progress=progress, **run_options)
    else:
        results = _run_to_precision(config, target_se, first_check, dtype=dtype,
                                    progress=progress, **run_options)
    if condition:
        results = add_conditioned([results], dtype, progress, **run_options)[0]
    return with_tables(results, dtype)


def with_tables(results: Results, dtype: str = "float32") -> Results:
    """``results`` with its parameter table (as drawn, and conditioned when it has
    conditioned results) and its facts-vs-model table attached (each from the run's own
    first paths, :mod:`mcsim.engine.parameters`, :mod:`mcsim.facts`)."""
    config = results.config.with_simulation(paths=results.num_paths)
    cond = results.conditioned
    table = parameter_table(config, dtype, conditioned=isinstance(cond, ConditionedResults))
    if isinstance(cond, PosteriorResults) and table:  # SMC: the posterior particles' own
        table["conditioned"] = {
            r["parameter"]: {"p5": r["posterior_p5"], "p50": r["posterior_p50"],
                             "p95": r["posterior_p95"], "mean": r["posterior_mean"],
                             "mean_se": r["posterior_mean_se"]}
            for r in posterior_table(config, cond.posterior)
            if not r["parameter"].startswith("bias:")}
    return replace(results, parameter_table=table or None,
                   facts=facts_vs_model(config, dtype=dtype) or None)


def _run_to_precision(config: Config, target_se: Mapping[str, float | str],
                      first_check: int | None, **run_options) -> Results:
    """A run that stops at the first look where every target is met (mcsim.precision)."""
    if config.simulation.variance_reduction == "sobol":
        raise ConfigError("simulation.variance_reduction", "sobol",
                          '"none" or "antithetic" with a precision target (Sobol points\' '
                          "errors are not the i.i.d. formula's, so a target could not be "
                          "checked)")
    targets = precision.parse_targets(target_se)
    layout = StatLayout(config.grid)
    pairs = config.simulation.variance_reduction == "antithetic"
    results = run(config, stages=precision.stages(config.simulation.paths,
                                                   first_check or precision.FIRST_CHECK),
                  should_stop=precision.stopping_rule(targets, layout, pairs), **run_options)
    return replace(results,
                   precision=precision.report(results.accumulator, layout, targets, pairs))


def run_sweep(config: Config, grid: Mapping[str, list[Any]], *, batch: bool = True,
              dtype: str = "float32", progress: bool | None = None,
              **simulate_options) -> list[tuple[dict[str, Any], Results]]:
    """Every point of the Cartesian ``grid`` of overrides ({key: [values]}), in grid order
    (first key slowest): [(point, Results)].

    Every point is validated first (a bad value fails before any run). Points that change
    only traced numbers (deal terms, distribution fields, constants, observation values)
    run together, one batched kernel call per chunk of paths for all of them, with the
    same paths and shocks; points that change a shape (the horizon, a distribution's kind,
    the seed or the number of paths) run in separate groups. ``batch=False`` runs the
    points one after the other instead (each then bit-identical to its own
    :func:`simulate`; batched, a point agrees with it to float32 rounding, about 1e-9
    relative in means: the fused code differs).

    A point that fixes a correlated parameter drops its pairs (:func:`with_overrides`):
    the warning is given once for the sweep. Each point's results are its prior and, with
    ``[observations]``, its ``.conditioned`` ones (:mod:`mcsim.report.sweep` reports the
    conditioned ones where present).
    """
    enable_x64()
    points = grid_points(grid)
    with warnings.catch_warnings(record=True) as caught:  # e.g. a pair dropped: once
        warnings.simplefilter("always", UserWarning)
        configs = [with_overrides(config, point) for point in points]
    for message in dict.fromkeys(str(w.message) for w in caught):
        warnings.warn(message, UserWarning, stacklevel=2)
    if not batch or simulate_options.get("target_se"):
        return [(p, simulate(c, dtype=dtype, progress=progress, **simulate_options))
                for p, c in zip(points, configs, strict=True)]
    groups: dict[tuple, list[int]] = {}
    for i, c in enumerate(configs):
        groups.setdefault(batch_key(c), []).append(i)
    results: list = [None] * len(points)
    # groups too big for the device's memory run as several batches
    size = max_batch(config.grid, weighted=bool(config.observations))
    batches = [m[k:k + size] for m in groups.values() for k in range(0, len(m), size)]
    for members in batches:
        group = [configs[i] for i in members]
        runs = run_batch(group, dtype=dtype, progress=progress, **simulate_options)
        if group[0].observations:
            runs = add_conditioned(runs, dtype, progress, **simulate_options)
        for i, r in zip(members, runs, strict=True):
            results[i] = with_tables(r, dtype)
    return list(zip(points, results, strict=True))


def reproduce(summary_path: str | Path, **run_options) -> tuple[Results, dict]:
    """Run again the run whose ``summary.json`` is given, from its provenance alone:
    (results, the summary's provenance).

    Raises ConfigError when the file is not a summary or its config text does not match
    its recorded sha256.
    """
    import hashlib

    from .report.format import json_restore

    enable_x64()
    try:
        prov = json.loads(Path(summary_path).read_text(encoding="utf-8"))["provenance"]
        raw, text = json_restore(prov["config_resolved"]), prov["config_text"]
        paths, seed, dtype = prov["paths"], prov["seed"], prov["dtype"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError("summary", str(summary_path),
                          f"a summary.json written by mcsim run ({exc!r})") from None
    if dtype not in ("float32", "float64"):
        raise ConfigError("provenance.dtype", dtype, '"float32" or "float64"')
    if not isinstance(paths, int) or isinstance(paths, bool) or paths < 1:
        raise ConfigError("provenance.paths", paths, "a positive integer")
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**63:
        raise ConfigError("provenance.seed", seed, "an integer in [0, 2^63)")
    if hashlib.sha256(text.encode()).hexdigest() != prov.get("config_sha256"):
        raise ConfigError("provenance.config_text", str(summary_path),
                          "text whose sha256 is provenance.config_sha256")
    config = parse_config(raw, source_text=text, source_path=prov.get("config_path", ""))
    config = config.with_simulation(paths=paths, seed=seed)
    results = run(config, dtype=dtype, **run_options)
    if prov.get("conditioned"):  # the run had its conditioned pass: so does the rerun
        results = add_conditioned([results], dtype, None, **run_options)[0]
    return with_tables(results, dtype), prov


def compare_paired(config_a: Config | str | Path, config_b: Config | str | Path, *,
                   paths: int | None = None, dtype: str = "float32"):
    """B minus A on common random numbers: both configs (or config files) run on the same
    path indices (same seed: the same parameter uniforms and shocks per path), the
    per-path differences accumulated in float64 (:func:`mcsim.paired.paired_difference`).

    Returns a pandas DataFrame, index ``statistic`` (cumulative Azure spend at the horizon,
    each horizon total, the repayment month censored at the month count, repaid by the
    horizon), columns ``mean_a``, ``se_a``, ``mean_b``, ``se_b``, ``difference`` (B - A),
    ``se_paired`` (sd of the per-path differences / sqrt(paths)) and ``se_unpaired``
    (sqrt(se_a^2 + se_b^2)); ``frame.attrs`` holds ``paths``, ``nonfinite_paths`` and
    ``horizon``. ``paths`` defaults to the configs' common ``simulation.paths``. The configs
    must share ``simulation.seed``, the grid (and ``paths``, unless given), with
    ``variance_reduction = "none"``: ConfigError naming the key otherwise.
    """
    from .paired import paired_difference

    configs = [load_config(c) if isinstance(c, str | Path) else c
               for c in (config_a, config_b)]
    return paired_difference(*configs, paths=paths, dtype=dtype).to_frame()
