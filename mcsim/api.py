"""The Python API: load a config, change any key, simulate, get :class:`Results`.

    >>> import mcsim                                                   # doctest: +SKIP
    >>> config = mcsim.load_config("configs/base.toml")
    >>> results = mcsim.simulate(config, paths=100_000, overrides={"deal.revenue_share": 0.1})
    >>> results.quantile_frame("cumulative_azure_spend", (5, 50, 95)).tail()

The CLI is a thin layer over these functions.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .config import Config, ConfigError, load_config, parse_config

TABLES = ("simulation", "parameters", "parameter_correlation", "shocks", "deal",
          "observations")


def with_overrides(config: Config, overrides: Mapping[str, Any]) -> Config:
    """A copy of ``config`` with keys replaced, validated as if they were in the file.

    Keys are dotted, ``"TABLE.KEY"`` (``"deal.revenue_share"``,
    ``"parameters.tokens_0"``, ``"simulation.horizon"``); a value may be a number, a
    string, a list or a distribution table (a dict such as ``{"dist": "lognormal", "p5":
    1e13, "p95": 5e13}``). An unknown table or a bad value raises ConfigError naming the key.
    """
    if not overrides:
        return config
    raw = copy.deepcopy(config.resolved)
    for key, value in overrides.items():
        table, _, name = str(key).partition(".")
        if table not in TABLES or not name:
            raise ConfigError(f"overrides[{key!r}]", value,
                              f"a key 'TABLE.KEY' with TABLE one of {', '.join(TABLES)}")
        node = raw.setdefault(table, {})
        parts = name.split(".")
        for depth, part in enumerate(parts[:-1]):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):  # e.g. parameters.conversion_0.mean on a number
                inner = ".".join([table, *parts[:depth + 1]])
                raise ConfigError(str(key), value,
                                  f"a key inside a table, but {inner} is "
                                  f"{type(node).__name__} {node!r}, not a table (set "
                                  f"{inner} itself, e.g. to {{ dist = ..., ... }})")
        node[parts[-1]] = copy.deepcopy(value)
    note = json.dumps({str(k): v for k, v in overrides.items()}, default=str, sort_keys=True)
    return parse_config(raw, source_text=f"{config.source_text}\n# overrides: {note}\n",
                        source_path=config.source_path)


def parse_override(text: str) -> tuple[str, Any]:
    """``"TABLE.KEY=VALUE"`` (VALUE a TOML literal: ``0.1``, ``"2030-12"``, ``{ dist =
    "normal", mean = 0, sd = 1 }``) as a (key, value) pair for :func:`with_overrides`."""
    import tomllib

    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError("--set", text, "TABLE.KEY=VALUE")
    try:
        parsed = tomllib.loads(f"v = {value.strip()}")["v"]
    except RecursionError:
        raise ConfigError(f"--set {key.strip()}", "<nested too deeply>",
                          "a TOML value nested at most 32 deep") from None
    except tomllib.TOMLDecodeError:
        raise ConfigError(f"--set {key.strip()}", value,
                          "a TOML value (a number, a \"quoted string\", [a, list] or "
                          "{ an = inline, table = 1 })") from None
    return key.strip(), parsed


def reproduce(summary_path: str | Path, **run_options):
    """Run again the run whose ``summary.json`` is given, from its provenance alone.

    Raises ConfigError when the file is not a summary or its config text does not match
    its recorded sha256.
    """
    import hashlib

    from .engine import run
    from .report import json_restore

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
        results = condition_results(results, dtype, run_options=run_options)
    return results, prov


def simulate(config: Config | str | Path, *, paths: int | None = None,
             seed: int | None = None, overrides: Mapping[str, Any] | None = None,
             dtype: str = "float32", progress: bool | None = None,
             target_se: Mapping[str, float | str] | None = None,
             first_check: int | None = None, condition: bool | None = None,
             **run_options):
    """Simulate a config and reduce it to :class:`mcsim.results.Results`.

    Args:
        config: a :class:`Config` or the path of a TOML file.
        paths, seed: override ``[simulation]`` (None: the config's).
        overrides: dotted keys to replace first (see :func:`with_overrides`).
        dtype: ``"float32"`` (default) or ``"float64"`` for the kernel.
        progress: show a progress bar (default: on a terminal, for long runs).
        target_se: {STAT: standard error} to reach (``"1%"``: of the estimate); the run
            stops at the first look where all are met, or at ``paths`` (the budget). See
            :mod:`mcsim.precision` for the statistics and the stopping rule.
        first_check: paths at the first look (default 65,536; a multiple of 1024).
        condition: also run the same paths weighted by their likelihood of the config's
            ``[observations]`` (default: when it has any), as ``results.conditioned``
            (:mod:`mcsim.conditioning`); a second pass, so about twice the time. A small
            effective sample size raises a ``UserWarning``.
        **run_options: passed to :func:`mcsim.engine.run` (``chunk_size``, ``devices``,
            ``checkpoint``, ``resume``, ...).

    Returns:
        Results: quantiles with intervals, means with standard errors, month distributions,
        DataFrames (``*_frame``) and plots on matplotlib Axes (``plot_*``).
    """
    from .engine import run

    if not isinstance(config, Config):
        config = load_config(config)
    config = with_overrides(config, overrides or {})
    config = config.with_simulation(paths=paths, seed=seed)
    if condition is None:
        condition = bool(config.observations)
    if not target_se:
        results = run(config, dtype=dtype, progress=progress, **run_options)
        return condition_results(results, dtype, progress, run_options) if condition else results
    from dataclasses import replace

    from . import precision
    from .layout import StatLayout

    if config.simulation.variance_reduction == "sobol":
        raise ConfigError("simulation.variance_reduction", "sobol",
                          '"none" or "antithetic" with a precision target (Sobol points\' '
                          "errors are not the i.i.d. formula's, so a target could not be "
                          "checked)")

    targets = {}
    for stat, value in target_se.items():
        name, number, relative = precision.parse_target(f"{stat}={value}")
        targets[name] = (number, relative)
    layout = StatLayout(config.grid)
    pairs = config.simulation.variance_reduction == "antithetic"
    results = run(config, dtype=dtype, progress=progress,
                  stages=precision.stages(config.simulation.paths,
                                          first_check or precision.FIRST_CHECK),
                  should_stop=precision.stopping_rule(targets, layout, pairs), **run_options)
    results = replace(results,
                      precision=precision.report(results.accumulator, layout, targets, pairs))
    return condition_results(results, dtype, progress, run_options) if condition else results


def condition_results(results, dtype: str = "float32", progress=None,
                      run_options: dict | None = None, conditioned=None):
    """``results`` with the same paths' conditioned results attached (run here, unless
    ``conditioned`` is given)."""
    import warnings
    from dataclasses import replace

    from .engine import run

    if conditioned is None:
        options = {k: v for k, v in (run_options or {}).items()
                   if k not in ("checkpoint", "checkpoint_interval", "resume")}
        config = results.config.with_simulation(paths=results.num_paths)
        conditioned = run(config, dtype=dtype, progress=progress, weighted=True, **options)
    if conditioned.warning:
        warnings.warn(conditioned.warning, UserWarning, stacklevel=3)
    return replace(results, conditioned=conditioned)
