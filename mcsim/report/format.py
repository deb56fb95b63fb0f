"""Formatting shared by the report's modules: dollars for people, open interval ends, strict
JSON for TOML documents, and the CSV cell format.

A leaf of :mod:`mcsim.report`: it imports no other module of the package (from the rest of
mcsim only :class:`~mcsim.accumulators.MoneyBins`, for the histogram's range).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import numpy as np

from ..accumulators import MoneyBins

#: the money histogram's range: a quantile beyond +-this is reported as +-inf
MONEY_RANGE = 10.0 ** MoneyBins().max_exponent


def _num(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _pkey(p: float) -> str:
    return f"p{p:g}"


def _beyond(v) -> str | None:
    """"above" / "below" for a quantile beyond the histogram's range (+-inf), else None."""
    v = float(v)
    return None if not math.isinf(v) else ("above" if v > 0 else "below")


def money_text(x: float | None) -> str:
    """Dollars for people: ``$1.23B``, ``-$45.6M``, ``$12,345``; ``n/a`` when undefined;
    ``> $10,000T`` beyond the histogram's range (+-inf, see :func:`histogram_quantiles`)."""
    if x is not None and math.isinf(x):
        edge = money_text(MONEY_RANGE)
        return f"> {edge}" if x > 0 else f"< -{edge}"
    if x is None or not math.isfinite(x):
        return "n/a"
    sign, a = ("-" if x < 0 else ""), abs(x)
    for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M")):
        if a >= scale:
            return f"{sign}${a / scale:.3g}{suffix}"  # 3 significant digits: enough for a CI
    return f"{sign}${a:,.0f}"


def interval_end_text(x: float) -> str:
    """An interval end: dollars, or ``-inf``/``inf`` where it is open (null in JSON)."""
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return money_text(x)


def json_safe(value: Any) -> Any:
    """A TOML document as strict JSON: inf and nan become {"__float__": "inf"} (see
    :func:`json_restore`)."""
    if isinstance(value, float) and not math.isfinite(value):
        return {"__float__": repr(value)}
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return value


def json_restore(value: Any) -> Any:
    """Inverse of :func:`json_safe`."""
    if isinstance(value, dict):
        if set(value) == {"__float__"}:
            return float(value["__float__"])
        return {k: json_restore(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_restore(v) for v in value]
    return value


def write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    """A CSV table: floats to 10 significant digits, an undefined (non-finite) cell empty."""
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for row in rows:
            w.writerow(["" if isinstance(v, float) and not math.isfinite(v) else
                        (f"{v:.10g}" if isinstance(v, float | np.floating) else v)
                        for v in row])
