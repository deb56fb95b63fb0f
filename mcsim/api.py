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

import sys
import warnings
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from . import precision
from .config import Config, ConfigError, load_config, parse_config
from .engine import batch_key, max_batch
from .engine import run_batch as engine_run_batch
from .engine.parameters import parameter_table
from .engine.progress import progress_bar, progress_shown, say, ticking
from .engine.smc import PosteriorSource, smc_posterior
from .facts import facts_vs_model
from .layout import StatLayout
from .overrides import grid_points, with_overrides
from .posterior import posterior_table
from .results import ConditionedResults, PosteriorResults, Results
from .saved import PointStore, posterior_results, results_of, sweep_identity
from .x64 import enable_x64

#: the engine's output for one config as Results (weighted: ConditionedResults)
_results = results_of


def run_batch(configs: list[Config], **options) -> list[Results]:
    """:func:`mcsim.engine.run_batch` as one :class:`Results` per config (options as
    there: ``chunk_size``, ``devices``, ``checkpoint``, ``weighted``, ...)."""
    return [_results(out) for out in engine_run_batch(configs, **options)]


def run(config: Config, **options) -> Results:
    """One config's engine run as :class:`Results`, without the conditioned pass (see
    :func:`simulate`). Options as :func:`mcsim.engine.run_batch`."""
    return run_batch([config], **options)[0]


#: engine options that belong to the prior pass only (importance sampling's weighted pass
#: is not checkpointed: it is as long as the prior pass and is run again whole; SMC's
#: tempering, most of an SMC run's time, is checkpointed by :func:`smc_conditioned`)
_PRIOR_ONLY = ("checkpoint", "checkpoint_interval", "resume", "checkpoint_at_end",
               "stages", "should_stop")
_SMC_CHECKPOINT = ("checkpoint", "checkpoint_interval", "resume")


def add_conditioned(results: list[Results], dtype: str = "float32", progress: bool | None = None,
              **options) -> list[Results]:
    """Each of ``results`` (one batch: configs sharing a batch key) with the same paths'
    conditioned results attached as ``.conditioned``: the second, weighted pass. A small
    effective sample size raises a ``UserWarning``."""
    saving = {k: v for k, v in options.items() if k in _SMC_CHECKPOINT}
    options = {k: v for k, v in options.items() if k not in _PRIOR_ONLY}
    if results and results[0].config.conditioning.method == "smc":
        conditioned = [smc_conditioned(r.config, dtype, progress, **options, **saving)
                       for r in results]
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
                    checkpoint: str | Path | None = None, resume: bool = False,
                    checkpoint_interval: float = 60.0, **options) -> PosteriorResults:
    """The config conditioned on its observations by tempered SMC
    (:mod:`mcsim.engine.smc`): ``conditioning.runs`` independent runs of
    ``conditioning.particles`` particles, each particle then forecast as one path of an
    ordinary run over the whole grid; the runs pooled, with errors from their spread.
    With a ``checkpoint`` directory the tempering runs' states are saved there (and
    ``resume`` continues them); the forecasts, short ordinary runs, are run again."""
    enable_x64()
    devices = options.get("devices")
    c = config.conditioning
    say(progress, f"conditioning on {len(config.observations)} observations by SMC: "
                  f"{c.runs} runs of {c.particles:,} particles moved together, tempered to "
                  f"temperature 1 (at most {c.moves} moves per step, fewer once they have "
                  "mixed; the first step compiles)")
    # on a terminal by default, as the bars are: the tempering is most of a conditioned
    # run's time (106 s of silence at 100,000 paths when only --progress showed it). Each
    # step's line (mcsim.engine.smc writes it) is printed above a line that ticks with
    # the time spent, so a compile or a slow step is not silent either
    step_line, bar = None, None
    if progress_shown(progress):
        bar = progress_bar(None, True if progress else None, desc="mcsim: SMC",
                           bar_format="{desc} [{elapsed}]{postfix}")

        def step_line(line: str) -> None:
            if bar is None:
                print(f"mcsim: SMC {line}", file=sys.stderr, flush=True)
                return
            bar.write(f"mcsim: SMC {line}", file=sys.stderr)
            bar.set_postfix_str(f"last: {line.split(':')[0]}", refresh=False)
    try:
        posterior = smc_posterior(config, dtype, tuple(devices) if devices else None,
                                  step_line, checkpoint=checkpoint, resume=resume,
                                  checkpoint_interval=checkpoint_interval)
    finally:
        if bar is not None:
            bar.close()
    N = posterior.settings.particles
    say(progress, f"SMC done: forecasting each run's {N:,} posterior particles over the "
                  f"whole grid ({posterior.settings.runs} short runs)")
    forecast = config.with_simulation(paths=N, variance_reduction="none")
    outs = [engine_run_batch([forecast], dtype=dtype, progress=progress,
                             posterior=PosteriorSource(posterior, r, dtype), **options)[0]
            for r in range(posterior.settings.runs)]
    return posterior_results(config, posterior, outs)


def speed_settings(compile_cache: bool | str | Path = True) -> None:
    """What the command line does first, done by the API's entry points where it is safe.

    * Compiled kernels kept on disk (:mod:`mcsim.compile_cache`): the same executables, so
      the same numbers, without the ~6-8 s compile in a later process (a notebook restarted,
      a script run again, a sweep of changed numbers). ``compile_cache``: True (default)
      for ``$MCSIM_CACHE_DIR``, else ``~/.cache/mcsim/xla``; a folder; or False to leave
      JAX as it is. ``MCSIM_CACHE_DIR=off`` turns it off too, and a cache folder the
      program already gave JAX is kept (mcsim's is then not used). JAX's cache is one per
      process: the program's own jitted functions are kept there too.
    * One CPU device per core (:mod:`mcsim.cpu_devices`): only possible before JAX starts
      its CPU backend (the device count is fixed then), so only when nothing has run on a
      device yet; afterwards the run uses the devices JAX has (``results.info.num_devices``).
      Call :func:`mcsim.use_cpu_cores` first thing to be sure of it;
      ``MCSIM_CPU_DEVICES=1`` (or a count JAX was already given) keeps one device. The
      numbers are the same bits for any count.
    """
    from jax._src import xla_bridge

    from .compile_cache import use_compile_cache
    from .cpu_devices import use_cpu_cores

    if not xla_bridge.backends_are_initialized():
        use_cpu_cores()
    if compile_cache is False:
        return
    if use_compile_cache(None if compile_cache is True else compile_cache) is not None:
        # JAX decides once per process whether its cache is on (at its first compile): a
        # program that compiled before this call had it decided off
        from jax.experimental.compilation_cache import compilation_cache

        compilation_cache.reset_cache()


def simulate(config: Config | str | Path, *, paths: int | None = None,
             seed: int | None = None, overrides: Mapping[str, Any] | None = None,
             dtype: str = "float32", progress: bool | None = None,
             target_se: Mapping[str, float | str] | None = None,
             first_check: int | None = None, condition: bool | None = None,
             compile_cache: bool | str | Path = True, **run_options) -> Results:
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
        compile_cache: keep compiled kernels on disk, so a later process skips their
            compile (default True; False to opt out, or a folder); with one CPU device per
            core when JAX has not started yet: see :func:`speed_settings`. A second call in
            the same process with changed numbers (not shapes) compiles nothing either way.
        **run_options: passed to :func:`mcsim.engine.run_batch` (``chunk_size``,
            ``devices``, ``checkpoint``, ``resume``, ...).

    Returns:
        Results: quantiles with intervals, means with standard errors, month distributions,
        DataFrames (``*_frame``) and plots on matplotlib Axes (``plot_*``).
    """
    enable_x64()
    speed_settings(compile_cache)
    if not isinstance(config, Config):
        config = load_config(config)
    config = with_overrides(config, overrides or {})
    config = config.with_simulation(paths=paths, seed=seed)
    if condition is None:
        condition = bool(config.observations)
    if not target_se:
        prior_options = dict(run_options)
        if condition and run_options.get("checkpoint") is not None:
            # the conditioned pass comes next: a resume during it must not redo the prior
            prior_options["checkpoint_at_end"] = True
        results = run(config, dtype=dtype, progress=progress, **prior_options)
    else:
        results = _run_to_precision(config, target_se, first_check, dtype=dtype,
                                    progress=progress, **run_options)
    if condition:
        results = add_conditioned([results], dtype, progress, **run_options)[0]
    return with_tables(results, dtype, progress)


def with_tables(results: Results, dtype: str = "float32",
                progress: bool | None = False) -> Results:
    """``results`` with its parameter table (as drawn, and conditioned when it has
    conditioned results) and its facts-vs-model table attached (each from the run's own
    first paths, :mod:`mcsim.engine.parameters`, :mod:`mcsim.facts`)."""
    # seconds (a compile of its own when new): said, so the terminal is not silent
    say(progress, "tables: the parameters as drawn and facts vs model (from the run's "
                  "first paths)")
    config = results.config.with_simulation(paths=results.num_paths)
    cond = results.conditioned
    with ticking(progress, "mcsim: tables"):  # 13 s after an SMC run, on 2 busy cores
        table = parameter_table(config, dtype,
                                conditioned=isinstance(cond, ConditionedResults))
        if isinstance(cond, PosteriorResults) and table:  # SMC: the posterior particles'
            table["conditioned"] = {
                r["parameter"]: {"p5": r["posterior_p5"], "p50": r["posterior_p50"],
                                 "p95": r["posterior_p95"], "mean": r["posterior_mean"],
                                 "mean_se": r["posterior_mean_se"]}
                for r in posterior_table(config, cond.posterior)
                if not r["parameter"].startswith("bias:")}
        facts = facts_vs_model(config, dtype=dtype) or None
    return replace(results, parameter_table=table or None, facts=facts)


def _run_to_precision(config: Config, target_se: Mapping[str, float | str],
                      first_check: int | None, **run_options) -> Results:
    """A run that stops at the first look where every target is met (mcsim.precision)."""
    if config.simulation.variance_reduction == "sobol":
        # two settings clash: name both (the CLI renames target_se to --target-se)
        raise ConfigError("target_se", dict(target_se), 'no precision target with '
                          'simulation.variance_reduction = "sobol" (--variance-reduction '
                          "on the command line): Sobol points' errors are not the i.i.d. "
                          "formula's, so a target could not be checked; drop the target "
                          'or set simulation.variance_reduction to "none" or "antithetic"')
    targets = precision.parse_targets(target_se)
    layout = StatLayout.of(config)
    for stat in targets:
        if stat in precision.STATS[3:] and stat not in layout.horizon_totals:
            raise ConfigError("target_se", stat, "a statistic this config reports: "
                              f"{stat} needs a version-3 key it does not give "
                              "([funding], simulation.discount_rate or "
                              "parameters.microsoft_equity_stake)")
    pairs = config.simulation.variance_reduction == "antithetic"
    results = run(config, stages=precision.stages(config.simulation.paths,
                                                   first_check or precision.FIRST_CHECK),
                  should_stop=precision.stopping_rule(targets, layout, pairs), **run_options)
    return replace(results,
                   precision=precision.report(results.accumulator, layout, targets, pairs))


def run_sweep(config: Config, grid: Mapping[str, list[Any]], *, batch: bool = True,
              dtype: str = "float32", progress: bool | None = None,
              checkpoint: str | Path | None = None, resume: bool = False,
              compile_cache: bool | str | Path = True,
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

    With a ``checkpoint`` directory each point is saved there once its batch is done
    (:mod:`mcsim.saved`; the directory is locked for this process meanwhile), and
    ``resume`` reads back the points of every finished batch instead of running them: the
    same results as a sweep never stopped. A point saved by another sweep (another config,
    grid, paths, seed, dtype or batching) is refused, naming what differs.

    ``progress`` (default: on a terminal): each batch's bar, and a line as each point's
    tables are made. ``compile_cache``: as :func:`simulate`'s.
    """
    enable_x64()
    speed_settings(compile_cache)
    points = grid_points(grid)
    with warnings.catch_warnings(record=True) as caught:  # e.g. a pair dropped: once
        warnings.simplefilter("always", UserWarning)
        configs = [with_overrides(config, point) for point in points]
    for message in dict.fromkeys(str(w.message) for w in caught):
        warnings.warn(message, UserWarning, stacklevel=2)
    unbatched = not batch or bool(simulate_options.get("target_se"))
    if unbatched:
        batches = [[i] for i in range(len(points))]
    else:
        groups: dict[tuple, list[int]] = {}
        for i, c in enumerate(configs):
            groups.setdefault(batch_key(c), []).append(i)
        # groups too big for the device's memory run as several batches
        size = max_batch(config.grid, weighted=bool(config.observations))
        batches = [m[k:k + size] for m in groups.values() for k in range(0, len(m), size)]
    if checkpoint is None:
        return _sweep_batches(points, configs, batches, unbatched, None, dtype, progress,
                              simulate_options)
    import jax

    from . import locks

    devices = simulate_options.get("devices") or jax.local_devices()
    identity = sweep_identity(config, grid, dtype=dtype, batch=not unbatched,
                              options=simulate_options,
                              device=f"{devices[0].platform}:{devices[0].device_kind}")
    store = PointStore(checkpoint, identity, resume, dtype)
    with locks.hold(locks.checkpoint_lock_file(checkpoint), key="checkpoint",
                    value=str(checkpoint), what="checkpoint directory"):
        return _sweep_batches(points, configs, batches, unbatched, store, dtype, progress,
                              simulate_options)


def _sweep_batches(points: list[dict[str, Any]], configs: list[Config],
                   batches: list[list[int]], unbatched: bool, store: PointStore | None,
                   dtype: str, progress: bool | None, simulate_options: Mapping[str, Any]
                   ) -> list[tuple[dict[str, Any], Results]]:
    """Run (or, from ``store``, read back) each batch of points; saved as each ends."""
    import time

    results: list = [None] * len(points)
    t0, ran = time.perf_counter(), 0  # the points run here (not read back): the pace
    for members in batches:
        if store is not None:
            saved = [store.load(i, points[i], configs[i], members) for i in members]
            if all(r is not None for r in saved):  # a batch is kept or redone whole
                for i, r in zip(members, saved, strict=True):
                    results[i] = with_tables(r, dtype)
                continue
        group = [configs[i] for i in members]
        done = sum(r is not None for r in results)
        say(progress, f"sweep: point{'s' * (len(members) > 1)} "
            + (f"{done + 1}-{done + len(members)}" if len(members) > 1 else f"{done + 1}")
            + f" of {len(points)}: {group[0].simulation.paths:,} paths each"
            + (" (batched)" if len(members) > 1 else ""))
        if unbatched:
            runs = [simulate(group[0], dtype=dtype, progress=progress, **simulate_options)]
        else:
            runs = run_batch(group, dtype=dtype, progress=progress, **simulate_options)
            if group[0].observations:
                runs = add_conditioned(runs, dtype, progress, **simulate_options)
            runs = [with_tables(r, dtype, progress) for r in runs]
        for i, r in zip(members, runs, strict=True):
            results[i] = r
            if store is not None:
                store.save(i, points[i], configs[i], members, r)
        ran += len(members)
        done = sum(r is not None for r in results)
        if done < len(points):  # points done and time left, from the pace so far
            spent = time.perf_counter() - t0
            left = spent / ran * (len(points) - done)
            say(progress, f"sweep: {done} of {len(points)} points done in {spent:.0f} s; "
                          f"about {left:.0f} s left")
    return list(zip(points, results, strict=True))


def reproduce(summary_path: str | Path, **run_options) -> tuple[Results, dict]:
    """Run again the run whose ``summary.json`` is given, from its provenance alone:
    (results, the summary's provenance).

    Raises ConfigError when the file is not a summary or its config text does not match
    its recorded sha256.
    """
    import hashlib

    from .report.compare import load_provenance

    enable_x64()
    speed_settings(run_options.pop("compile_cache", True))
    # every key a rerun reads, checked first: one line naming the file and the key
    prov = load_provenance(summary_path)
    raw, text = prov["config_resolved"], prov["config_text"]
    paths, seed, dtype = prov["paths"], prov["seed"], prov["dtype"]
    if hashlib.sha256(text.encode()).hexdigest() != prov["config_sha256"]:
        raise ConfigError("provenance.config_text", "<text>", "text whose sha256 is "
                          "provenance.config_sha256", source=str(summary_path))
    try:
        config = parse_config(raw, source_text=text,
                              source_path=prov.get("config_path", ""))
    except ConfigError as exc:
        raise exc.with_source(str(summary_path)) from None
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
