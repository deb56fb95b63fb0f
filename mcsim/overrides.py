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
from collections.abc import Mapping, Sequence
from typing import Any

from .config import Config, ConfigError, parse_config

TABLES = ("simulation", "parameters", "parameter_correlation", "shocks", "deal",
          "observations", "conditioning")


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
        raise ConfigError("overrides", text, "TABLE.KEY=VALUE")
    try:
        parsed = tomllib.loads(f"v = {value.strip()}")["v"]
    except RecursionError:
        raise ConfigError(f"overrides[{key.strip()!r}]", "<nested too deeply>",
                          "a TOML value nested at most 32 deep") from None
    except tomllib.TOMLDecodeError:
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
