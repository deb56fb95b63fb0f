"""Overrides: change any config key by its dotted name, and grids of such changes.

``with_overrides(config, {"deal.revenue_share": 0.1})`` is the one way a key is changed
after loading (the API's ``overrides=``, the CLI's ``--set``, a sweep's points); the
result is validated as if the value were in the file. The parsers read the CLI's text
form (``TABLE.KEY=VALUE``, TOML literals).
"""

from __future__ import annotations

import copy
import itertools
import json
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from .config import Config, ConfigError, parse_config
from .rates import is_percent_text

TABLES = ("simulation", "parameters", "parameter_correlation", "shocks", "deal",
          "observations", "conditioning")


def with_overrides(config: Config, overrides: Mapping[str, Any]) -> Config:
    """A copy of ``config`` with keys replaced, validated as if they were in the file.

    Keys are dotted, ``"TABLE.KEY"`` (``"deal.revenue_share"``,
    ``"parameters.tokens_0"``, ``"simulation.horizon"``); a value may be a number, a
    string, a list or a distribution table (a dict such as ``{"dist": "lognormal", "p5":
    1e13, "p95": 5e13}``). A rate may be a log rate per year or a string ``"-40%/yr"``
    (:mod:`mcsim.rates`). An unknown table or a bad value raises ConfigError naming the key.

    Fixing a drawn parameter to a number (``{"parameters.gpu_price_drift_inf": -0.51}``)
    drops the ``[parameter_correlation]`` pairs that name it, with one ``UserWarning``
    naming them; unless the same overrides set ``parameter_correlation.pairs``, whose pairs
    are then checked as written.
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
    dropped = _drop_pairs_of_fixed(raw, overrides)
    note = json.dumps({str(k): v for k, v in overrides.items()}, default=str, sort_keys=True)
    out = parse_config(raw, source_text=f"{config.source_text}\n# overrides: {note}\n",
                       source_path=config.source_path)
    for message in dropped:  # after the checks: a refused value drops nothing
        warnings.warn(message, UserWarning, stacklevel=2)
    return out


def _drop_pairs_of_fixed(raw: dict, overrides: Mapping[str, Any]) -> list[str]:
    """Drop the rank-correlation pairs that name a parameter the overrides fix to a number,
    with one warning per parameter; unless the overrides set the pairs themselves (then a
    pair naming a fixed parameter is the user's own, and is refused as in a file).
    Returns the warnings, one line per parameter."""
    if "parameter_correlation.pairs" in overrides or "parameter_correlation" in overrides:
        return []
    correlation = raw.get("parameter_correlation")
    pairs = correlation.get("pairs") if isinstance(correlation, dict) else None
    if not isinstance(pairs, list):
        return []
    messages = []
    for key, value in overrides.items():
        table, _, name = str(key).partition(".")
        if table != "parameters" or "." in name or isinstance(value, dict):
            continue
        named = [p for p in pairs if isinstance(p, list) and name in p[:2]]
        if not named:
            continue
        pairs = [p for p in pairs if not (isinstance(p, list) and name in p[:2])]
        shown = "; ".join(f"[{p[0]}, {p[1]}, {p[2]}]" if len(p) == 3 else str(p)
                          for p in named)
        messages.append(f"parameters.{name} is now a fixed number: dropped "
                        f"{len(named)} rank-correlation pair{'s' * (len(named) != 1)} "
                        f"naming it from parameter_correlation.pairs: {shown}")
    correlation["pairs"] = pairs
    return messages


def parse_override(text: str) -> tuple[str, Any]:
    """``"TABLE.KEY=VALUE"`` (VALUE a TOML literal: ``0.1``, ``"2030-12"``, ``{ dist =
    "normal", mean = 0, sd = 1 }``; or a rate as "% per year", ``-40%/yr``, quoted or not)
    as a (key, value) pair for :func:`with_overrides`."""
    import tomllib

    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError("overrides", text, "TABLE.KEY=VALUE")
    try:
        parsed = tomllib.loads(f"v = {value.strip()}")["v"]
    except RecursionError:
        raise ConfigError(f"overrides[{key.strip()!r}]", "<nested too deeply>",
                          "a TOML value nested at most 32 deep") from None
    except tomllib.TOMLDecodeError:
        if is_percent_text(value):  # -40%/yr unquoted: a rate as "% per year"
            return key.strip(), value.strip()
        raise ConfigError(f"overrides[{key.strip()!r}]", value,
                          "a TOML value (a number, a \"quoted string\", [a, list] or "
                          "{ an = inline, table = 1 })") from None
    return key.strip(), parsed


def split_values(text: str) -> list[str]:
    """``"0.1,0.2,{ dist = \\"normal\\", mean = 0, sd = 1 }"`` -> its top-level items: commas
    inside brackets, braces or quotes do not split."""
    items, depth, quote, start = [], 0, None, 0
    for i, ch in enumerate(text):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append(text[start:i].strip())
            start = i + 1
    items.append(text[start:].strip())
    return [item for item in items if item]


def parse_sweep(specs: Sequence[str]) -> dict[str, list[Any]]:
    """``["deal.revenue_share=0.1,0.2", ...]`` -> {key: [values]} (TOML literals)."""
    grid: dict[str, list[Any]] = {}
    for spec in specs:
        key, sep, values = spec.partition("=")
        if not sep or not split_values(values):
            raise ConfigError("grid", spec, "TABLE.KEY=V1,V2,... (TOML values)")
        grid[key.strip()] = [parse_override(f"{key}={v}")[1] for v in split_values(values)]
    return grid


def grid_points(grid: Mapping[str, list[Any]]) -> list[dict[str, Any]]:
    """The Cartesian product, first key varying slowest."""
    keys = list(grid)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*grid.values())]
