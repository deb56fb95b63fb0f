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

TABLES = ("simulation", "parameters", "parameter_correlation", "shocks", "deal")


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
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = copy.deepcopy(value)
    note = json.dumps({str(k): v for k, v in overrides.items()}, default=str, sort_keys=True)
    return parse_config(raw, source_text=f"{config.source_text}\n# overrides: {note}\n",
                        source_path=config.source_path)


def simulate(config: Config | str | Path, *, paths: int | None = None,
             seed: int | None = None, overrides: Mapping[str, Any] | None = None,
             dtype: str = "float32", progress: bool | None = None, **run_options):
    """Simulate a config and reduce it to :class:`mcsim.results.Results`.

    Args:
        config: a :class:`Config` or the path of a TOML file.
        paths, seed: override ``[simulation]`` (None: the config's).
        overrides: dotted keys to replace first (see :func:`with_overrides`).
        dtype: ``"float32"`` (default) or ``"float64"`` for the kernel.
        progress: show a progress bar (default: on a terminal, for long runs).
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
    return run(config, dtype=dtype, progress=progress, **run_options)
