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
import re
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from .config import CHANGE_TERMS, Config, ConfigError, parse_config
from .months import parse_month
from .rates import is_percent_text

TABLES = ("simulation", "parameters", "parameter_correlation", "shocks", "deal",
          "observations", "conditioning", "funding")


def with_overrides(config: Config, overrides: Mapping[str, Any]) -> Config:
    """A copy of ``config`` with keys replaced, validated as if they were in the file.

    Keys are dotted, ``"TABLE.KEY"`` (``"deal.revenue_share"``,
    ``"parameters.tokens_0"``, ``"simulation.horizon"``); an item of an array of tables is
    ``KEY[i]``, counting from 0 as the config's own errors do: ``"deal.change[1].
    revenue_share_cap"`` is the second ``[[deal.change]]``'s cap. A value may be a number,
    a string, a list or a distribution table (a dict such as ``{"dist": "lognormal", "p5":
    1e13, "p95": 5e13}``). A rate may be a log rate per year or a string ``"-40%/yr"``
    (:mod:`mcsim.rates`). An unknown table, an index out of range or a bad value raises
    ConfigError naming the key.

    Fixing a drawn parameter to a number (``{"parameters.gpu_price_drift_inf": -0.51}``)
    drops the ``[parameter_correlation]`` pairs that name it, with one ``UserWarning``
    naming them; unless the same overrides set ``parameter_correlation.pairs``, whose pairs
    are then checked as written. Setting a ``[deal]`` term that a ``[[deal.change]]`` sets
    again (``deal.revenue_share_cap`` under ``configs/base.toml``'s 2026-04 change) warns
    that the value holds only until that change, naming it.
    """
    if not overrides:
        return config
    raw = copy.deepcopy(config.resolved)
    for key, value in overrides.items():
        table, _, name = str(key).partition(".")
        if table not in TABLES or not name:
            raise ConfigError(f"overrides[{key!r}]", value,
                              f"a key 'TABLE.KEY' with TABLE one of {', '.join(TABLES)}")
        _set(raw.setdefault(table, {}), str(key), table, _steps(str(key), name, value),
             value)
    _keep_rounds_inside(raw, overrides)
    dropped = _drop_pairs_of_fixed(raw, overrides)
    note = json.dumps({str(k): v for k, v in overrides.items()}, default=str, sort_keys=True)
    out = parse_config(raw, source_text=f"{config.source_text}\n# overrides: {note}\n",
                       source_path=config.source_path)
    # after the checks: a refused value drops nothing and warns of nothing
    for message in dropped + _superseded_terms(out, overrides):
        warnings.warn(message, UserWarning, stacklevel=2)
    return out


_STEP = re.compile(r"([^\[\]]+)((?:\[\d+\])*)")


def _steps(key: str, name: str, value: Any) -> list[str | int]:
    """``"change[1].revenue_share_cap"`` -> ``["change", 1, "revenue_share_cap"]``."""
    steps: list[str | int] = []
    for part in name.split("."):
        match = _STEP.fullmatch(part)
        if not match:
            raise ConfigError(key, value, "TABLE.KEY, an item of an array of tables as "
                              "KEY[i] with i counting from 0 (e.g. "
                              "deal.change[1].revenue_share_cap)")
        steps.append(match[1])
        steps += [int(i) for i in re.findall(r"\d+", match[2])]
    return steps


def _set(node: dict, key: str, where: str, steps: list[str | int], value: Any) -> None:
    """Put ``value`` at ``steps`` under ``node`` (the table ``where``), making missing
    tables on the way; an index must name an existing item of an existing array."""
    for depth, step in enumerate(steps):
        if isinstance(step, int) and not 0 <= step < len(node):
            raise ConfigError(key, value, f"an index of an existing item: {where} has "
                              f"{_items(where, node)}; indices count from 0")
        if depth == len(steps) - 1:
            node[step] = copy.deepcopy(value)
            return
        following = steps[depth + 1]
        if isinstance(step, int):
            child, inner = node[step], f"{where}[{step}]"
        else:
            inner = f"{where}.{step}"
            child = node.get(step) if isinstance(following, int) else \
                node.setdefault(step, {})
        if isinstance(following, int) and not isinstance(child, list):
            has = "not in the config" if child is None else \
                f"{type(child).__name__} {child!r}"
            raise ConfigError(key, value, f"an index into an array of tables, but {inner} "
                              f"is {has}")
        if not isinstance(following, int) and isinstance(child, list):
            raise ConfigError(key, value, f"a key inside a table, but {inner} is an array "
                              f"of tables: name an item, e.g. {inner}[0].{following} "
                              "(indices count from 0)")
        if not isinstance(following, int) and not isinstance(child, dict):
            # e.g. parameters.conversion_0.mean on a number
            raise ConfigError(key, value,
                              f"a key inside a table, but {inner} is "
                              f"{type(child).__name__} {child!r}, not a table (set "
                              f"{inner} itself, e.g. to {{ dist = ..., ... }})")
        node, where = child, inner


def _items(where: str, items: list) -> str:
    """How many items an array has, and (for [[deal.change]]) from which months."""
    if not items:
        return "no items"
    count = f"{len(items)} item{'s' * (len(items) != 1)}"
    months = [c.get("from") for c in items if isinstance(c, dict)]
    if where == "deal.change" and all(isinstance(m, str) for m in months):
        return count + " (" + ", ".join(f"[{i}] from {m}" for i, m in enumerate(months)) \
            + ")"
    return count


def _superseded_terms(config: Config, overrides: Mapping[str, Any]) -> list[str]:
    """One line per overridden ``[deal]`` term that a ``[[deal.change]]`` inside the grid
    sets again: the value given is the term from the start until that change only. (The
    text holds no value, so a sweep's points give one identical line.)"""
    horizon = parse_month(config.grid.labels[-1])
    messages = []
    for key in overrides:
        table, _, name = str(key).partition(".")
        if table != "deal" or name not in CHANGE_TERMS:
            continue
        later = [(i, c) for i, c in enumerate(config.deal.changes)
                 if name in dict(c.terms) and parse_month(c.start) <= horizon]
        if not later or any(str(k).startswith(f"deal.change[{i}].{name}")
                            for i, _ in later for k in overrides):
            continue
        i, change = later[0]
        more = f" (and {len(later) - 1} later change{'s' * (len(later) > 2)})" \
            if len(later) > 1 else ""
        messages.append(
            f"deal.{name} is the term from the start ({config.grid.labels[0]}) only until "
            f"deal.change[{i}] (from {change.start}) sets it to "
            f"{_shown(change.get(name))}{more}: the value given does not apply from "
            f"{change.start} on; to change that term, set deal.change[{i}].{name}")
    return messages


def _shown(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _keep_rounds_inside(raw: dict, overrides: Mapping[str, Any]) -> None:
    """A horizon moved earlier by the overrides (a run cut short on purpose) keeps the
    funding rounds inside the run: one after it changes none of its months. A round the
    config file itself dates after its horizon is still an error (MODEL.md E), as are
    rounds the overrides set."""
    if "simulation.horizon" not in overrides or "funding.rounds" in overrides:
        return
    funding, horizon = raw.get("funding"), raw.get("simulation", {}).get("horizon")
    rounds = funding.get("rounds") if isinstance(funding, dict) else None
    if not isinstance(rounds, list) or not isinstance(horizon, str):
        return
    try:
        last = parse_month(horizon)
        funding["rounds"] = [r for r in rounds if not (
            isinstance(r, list) and r and isinstance(r[0], str) and parse_month(r[0]) > last)]
    except ValueError:
        return  # a malformed month: parse_config names it


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
        # funding.cash_0 is a parameter written in [funding]
        is_parameter = table == "parameters" or (table, name) == ("funding", "cash_0")
        if not is_parameter or "." in name or isinstance(value, dict):
            continue
        named = [p for p in pairs if isinstance(p, list) and name in p[:2]]
        if not named:
            continue
        pairs = [p for p in pairs if not (isinstance(p, list) and name in p[:2])]
        shown = "; ".join(f"[{p[0]}, {p[1]}, {p[2]}]" if len(p) == 3 else str(p)
                          for p in named)
        messages.append(f"{table}.{name} is now a fixed number: dropped "
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


def parse_overrides(texts: Sequence[str]) -> dict[str, Any]:
    """Several ``TABLE.KEY=VALUE`` (the CLI's repeated ``--set``) as one dict of overrides.
    A key given twice is refused rather than the last one silently winning: the other
    value would be dropped without a word."""
    out: dict[str, Any] = {}
    given: dict[str, str] = {}
    for text in texts:
        key, value = parse_override(text)
        if key in out:
            raise ConfigError("overrides", text, f"each key set once, but {key} is also set "
                              f"by {given[key]!r}")
        out[key], given[key] = value, text
    return out


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
    """``["deal.revenue_share=0.1,0.2", ...]`` -> {key: [values]} (TOML literals).

    A key given in two specs, or a value given twice for one key, is refused: the grid
    would silently hold fewer points than asked (a second spec for a key replaced the
    first) or repeat one. Refusing, rather than taking the union of two specs, keeps
    one spec per key, which is what the sweep's table and folder names are built on, and
    the message says how to list several values in one spec."""
    grid: dict[str, list[Any]] = {}
    given: dict[str, str] = {}
    for spec in specs:
        key, sep, values = spec.partition("=")
        if not sep or not split_values(values):
            raise ConfigError("grid", spec, "TABLE.KEY=V1,V2,... (TOML values)")
        key = key.strip()
        if key in grid:
            raise ConfigError("grid", spec, f"each key once, but {key} is also swept by "
                              f"{given[key]!r} (list every value in one: "
                              f"{key}=V1,V2,...)")
        parsed = [parse_override(f"{key}={v}")[1] for v in split_values(values)]
        for i, v in enumerate(parsed):
            if any(_same(v, w) for w in parsed[:i]):
                raise ConfigError("grid", spec, f"distinct values, but {v!r} is given "
                                  "twice (the two points would be the same run)")
        grid[key], given[key] = parsed, spec
    return grid


def _same(a: Any, b: Any) -> bool:
    """Equal values (1 and 1.0 are; true and 1 are not)."""
    return isinstance(a, bool) == isinstance(b, bool) and a == b


def grid_points(grid: Mapping[str, list[Any]]) -> list[dict[str, Any]]:
    """The Cartesian product, first key varying slowest."""
    keys = list(grid)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*grid.values())]
