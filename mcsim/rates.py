"""Rates per year: the model's log rates and the "% per year" a reader thinks in.

Every rate parameter (:data:`RATE_PARAMETERS`: the drifts and growths whose unit is "per
year, in log", and the ``_inf`` companions of the decaying rates) is a **log rate per year**
r: a level moves by a factor exp(r) a year. "GPU prices fall 40% a year" is a factor 0.6,
i.e. r = ln(0.6) = -0.511. A config or an override may give such a rate as a string
``"-40%/yr"`` (also ``"-40 %/yr"``, ``"+25%/yr"``, ``"-40%/year"``, ``"-40% per year"``):
it is read as ``log_rate(-40)``. The document keeps the string as written (provenance);
the parsed config holds the log rate.
"""

from __future__ import annotations

import math
import re

from .parameters import UNITS

#: Parameters that are log rates per year (their unit says "per year, in log").
RATE_PARAMETERS: tuple[str, ...] = tuple(n for n, u in UNITS.items()
                                         if "per year, in log" in u)

#: What a rate may be given as (in errors and docs).
RATE_FORMS = ('a log rate per year (e.g. -0.51) or a percentage per year like "-40%/yr" '
              "(above -100%)")

_PERCENT = re.compile(r"^\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*%\s*"
                      r"(?:/\s*(?:yr|year)|per\s+year)\s*$")


def log_rate(percent: float) -> float:
    """The log rate per year of an annual change of ``percent`` %: ln(1 + percent/100).
    ``log_rate(-40)`` = -0.511. Raises ValueError at or below -100%."""
    if not percent > -100.0:
        raise ValueError(f"an annual change of {percent:g}% is not above -100%")
    return math.log1p(percent / 100.0)


def percent_per_year(log_rate: float) -> float:
    """The annual change in % of a log rate per year: 100 (exp(r) - 1).
    ``percent_per_year(-0.511)`` = -40.0."""
    return 100.0 * math.expm1(log_rate)


def format_rate(log_rate: float) -> str:
    """``"-0.511 (-40.0%/yr)"``: a log rate per year with its annual change."""
    return f"{log_rate:.3g} ({percent_per_year(log_rate):+.1f}%/yr)"


def parse_percent(text: str) -> float | None:
    """The percentage of ``"-40%/yr"`` (-40.0), or None when ``text`` is not of that form."""
    if not isinstance(text, str):
        return None
    m = _PERCENT.match(text)
    return float(m.group(1)) if m else None


def is_percent_text(value: object) -> bool:
    """Whether ``value`` is a string of the "% per year" form."""
    return parse_percent(value) is not None  # type: ignore[arg-type]
