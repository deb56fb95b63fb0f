"""Hypothesis strategies for VALID configs covering MODEL.md's whole vocabulary (version 1
and the version-2 additions A-D), and the checks that a run of one must pass (used by
``test_valid_configs.py`` and by anyone who wants to hunt for crashes with many more
examples). Half the configs use version 2's keys (``configs(v2=True/False)`` forces it).

What the generator covers:

* horizons from 1 month to 50 years, any start month (years 1990-2199);
* every parameter as a bare number or as each distribution kind in each of its forms
  (normal mean/sd or p5/p95; lognormal median/sigma or p5/p95; uniform; triangular; pert;
  beta), with or without truncation (min and/or max, possibly beyond the natural support),
  always inside the parameter's domain (``mcsim.parameters.DOMAINS``); half-lives also from
  unbounded positive distributions (lognormal, normal truncated at 0 from below only);
* the rate companions ``NAME_inf``/``NAME_halflife`` of the five decaying rates, both or
  neither, as numbers or distributions;
* random positive-definite rank correlations between drawn parameters (from random
  factor models; a random subset of the pairs is kept and the implied normal-copula
  matrix ``2 sin(pi r / 6)`` is checked the way mcsim checks it);
* random positive-definite 5x5 shock correlations (identity, random factor models, nearly
  singular ones);
* every deal field in every combination (absent, zero, one, tiny, huge; revenue_share_end
  before the start, inside, after the horizon; recoup_from each way, both, either order);
* version 2 (in half the configs):
  - ``[[deal.change]]`` tables (0-4), ``from`` months strictly increasing after the start
    (some after the horizon), each setting a non-empty subset of the eight term fields
    (shares 0, 1 or any; caps as [deal]'s; ``revenue_share_end`` / ``revenue_share_cap_from``
    any month from before the start to after the horizon);
  - ``[deal]``'s ``revenue_share_cap_from`` (any month), ``revenue_share_paid_before_start``
    (0 to 1e300 $), ``reverse_share``, the commitment triple (0 to 1e18 $, ``from`` from the
    start to past the horizon, ``by`` from ``from`` to past the horizon) and ``recoup_from``
    as any ordered non-empty selection of profit_share, revenue_share, azure_margin;
  - each alternative form (``api_markup_0`` + ``api_markup_drift``,
    ``training_intensity_0`` + ``training_intensity_drift``, ``other_opex_intensity_0`` +
    ``other_opex_intensity_drift``) instead of version 1's, independently;
    ``microsoft_ai_revenue_0`` + ``microsoft_ai_revenue_growth`` whenever some
    reverse_share > 0 and at random otherwise; ``azure_gross_margin`` at random; the new
    rates' ``_inf`` / ``_halflife`` companions; all of them numbers or distributions, and
    rank-correlated like any drawn parameter.
* version 3 (``configs(v3=True)``: a non-empty set of E, F, G, each drawn on its own, as
  MODEL.md H allows; ``v3=`` a set forces those; the default draws none):
  - E, ``[funding]``: ``cash_0`` a bare number (0 now and then) or any distribution kind and
    form on [0, 1e15] $ (truncated at 0 where its support reaches below), rank-correlated
    with the other drawn parameters half the time; ``rounds`` absent, empty, or 1-6 months
    strictly increasing inside the run (the start and the horizon month included now and
    then), $0 (float or integer), 5e-324, up to 1e15, integers;
  - F, ``[simulation] discount_rate``: 0 (float or integer), tiny, up to 5 per year, 50 and
    1e300 (every month after the first discounted to exactly 0), and "X%/yr" / "X% per
    year" strings from 0% to 1000%;
  - G, ``microsoft_equity_stake`` (a number, 0 and 1 included, or a distribution on
    [0, 1]) with ``valuation_multiple`` (1e-2 to 1e2, any distribution kind), both or
    neither, correlated like any drawn parameter.

Magnitudes are "valid but extreme" within a budget that keeps every path's money far from
float32's range (about e^88): per-rate drift over the horizon at most ``RATE_BUDGET`` in
log, random walks at most ``VOL_BUDGET`` (vol * sqrt(years)), levels inside boxes (tokens
up to 1e13 a month, ...). So a NaN or inf in a run is a bug, not an overflow the config
asked for. Mean-reversion speeds stay well below 24 per year (the explicit monthly Euler step of
MODEL.md is unstable beyond), and a negative logistic user growth only comes with users far
below their cap (above it, MODEL.md's logistic update explodes). Version 2's levels keep
the budgets of the ones they replace: a markup (1e-2 to 1e2) times the inference spend, an
intensity (up to 3) times revenue, their drifts within ``RATE_BUDGET``; Microsoft's AI
revenue in training spend's box; a commitment's shortfall (a flow) at most 1e18 $. Version
3 adds no float32 flow: cash, present values and the equity value are float64 sums of the
float32 flows above, and only its parameters are drawn in float32, so they stay far below
float32's largest number (cash_0 and each round at most 1e15 $, ``FUNDING_CAP``: the
funding itself stays inside the histogram's +-1e16 $; the multiple at most 1e2 times a
revenue inside its budget; discount factors exp(-r s) lie in [0, 1] for any r >= 0).

The checks (:func:`check_summary`) are version 1's (quantiles in order and inside their
intervals, first-passage months consistent with their cdf, sums of annual means equal to
the cumulative and horizon means, no null or non-finite value, the deal's forced outcomes)
extended to all 14 annual flows, the year-end stocks and the four first-passage months,
plus version 2's identities (see :func:`_v2_identities`, :func:`_stock_checks`,
:func:`_event_checks`), each exact or with its rounding tolerance stated where it is made;
and for a version-3 config (:func:`run_and_check_v3`) version 3's blocks of the summary
(the funding-gap month, cash, the new horizon totals) and its invariants path by path
(:func:`check_v3_paths`) and in the summary (:func:`check_v3_summary`).
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import math
import re
import warnings
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from hypothesis import strategies as st
from scipy import stats

Z95 = 1.6448536
RATE_BUDGET = 5.0   # max |rate| * years (log units) at the centre of a rate's box
VOL_BUDGET = 1.0    # max vol * sqrt(years)
MAX_SPEED = 6.0     # mean reversion per year at the box edge (tails reach ~3x: k*dt < 2)
SIGMA_MAX = 1.0     # widest lognormal sigma (log) of a level
MONEY_CAP = 1e16    # mcsim's histogram: values beyond +-1e16 $ fall in open-ended overflow bins

# -------------------------------------------------------------------------------------
# boxes: where a parameter's values live


@dataclass(frozen=True)
class Box:
    """``real``: values in [-hi, hi]; ``pos``: magnitudes in [lo, hi] (log scale);
    ``unit``: values in [lo, hi] inside [0, 1]. ``zero_ok``: a bare 0 (or a support
    reaching 0) is allowed; ``closed``: the domain includes 0 and 1 (closed unit)."""

    kind: str
    lo: float
    hi: float
    zero_ok: bool = False
    closed: bool = False
    domain_low: float | None = None   # the parameter's domain (None: unbounded)
    domain_high: float | None = None
    unbounded_ok: bool = True          # distributions with an infinite support end allowed


def _boxes(years: float) -> dict[str, Box]:
    R = RATE_BUDGET / years
    vol = VOL_BUDGET / math.sqrt(years)
    pos = lambda lo, hi, zero=False: Box("pos", lo, hi, zero, domain_low=0.0)  # noqa: E731
    unit_open = lambda lo, hi: Box("unit", lo, hi, domain_low=0.0, domain_high=1.0)  # noqa
    unit_closed = lambda lo, hi: Box("unit", lo, hi, True, True, 0.0, 1.0)  # noqa: E731
    real = Box("real", 0.0, R)
    return {
        "gpu_price_0": pos(1e-3, 1e2),
        "gpu_price_drift": real,
        "gpu_price_vol": pos(1e-9, vol, True),
        "utilization_0": unit_open(1e-3, 1 - 1e-6),
        "utilization_mean": unit_open(1e-3, 1 - 1e-6),
        "utilization_speed": pos(1e-6, MAX_SPEED, True),
        "utilization_vol": pos(1e-9, vol, True),
        "tokens_0": pos(1e3, 1e13),
        "token_growth_0": real,
        "token_growth_inf": real,
        "token_growth_halflife": pos(1e-3, 1e3),
        "token_vol": pos(1e-9, vol, True),
        "tokens_per_gpu_hour_0": pos(1e2, 1e7),
        "efficiency_growth": real,
        "users_0": pos(1e2, 1e10),
        "users_cap": pos(1e2, 1e11),
        "users_growth": Box("real", 0.0, min(R, 12.0 * MAX_SPEED / 12.0)),
        "users_vol": pos(1e-9, vol, True),
        "conversion_0": unit_open(1e-9, 1 - 1e-9),
        "conversion_mean": unit_open(1e-9, 1 - 1e-9),
        "conversion_speed": pos(1e-6, MAX_SPEED, True),
        "conversion_vol": pos(1e-9, vol, True),
        "subscription_arpu": pos(1e-3, 1e3, True),
        "api_revenue_per_mtok_0": pos(1e-4, 1e2, True),
        "api_price_drift": real,
        "api_token_share": unit_closed(0.0, 1.0),
        "training_spend_0": pos(1.0, 1e11, True),
        "training_growth": real,
        "azure_share_0": unit_closed(0.0, 1.0),
        "azure_share_inf": unit_closed(0.0, 1.0),
        "azure_share_halflife": pos(1e-3, 1e3),
        "other_opex_0": pos(1.0, 1e11, True),
        "other_opex_growth": real,
        # version 2 (B): the alternative forms' levels replace v1's levels with the same
        # budgets: a markup multiplies the inference spend (up to 1e2 x, as v1's API price
        # tops out at 1e2 $/Mtok), an intensity multiplies revenue (up to 3 x, the
        # spend then bounded by revenue as training spend is by its box); their drifts,
        # like every rate, within RATE_BUDGET over the horizon
        "api_markup_0": pos(1e-2, 1e2),
        "api_markup_drift": real,
        "training_intensity_0": pos(1e-4, 3.0, True),
        "training_intensity_drift": real,
        "other_opex_intensity_0": pos(1e-4, 3.0, True),
        "other_opex_intensity_drift": real,
        "microsoft_ai_revenue_0": pos(1.0, 1e11, True),
        "microsoft_ai_revenue_growth": real,
        "azure_gross_margin": unit_closed(0.0, 1.0),
    }


#: Version 1's levels and rates that a version-2 alternative form replaces (MODEL.md v2 B,
#: ``mcsim.parameters.ALTERNATIVE_FORMS``), and version 2's other optional parameters.
V2_FORMS = {
    "api": (("api_revenue_per_mtok_0", "api_price_drift"), ("api_markup_0", "api_markup_drift")),
    "training": (("training_spend_0", "training_growth"),
                 ("training_intensity_0", "training_intensity_drift")),
    "opex": (("other_opex_0", "other_opex_growth"),
             ("other_opex_intensity_0", "other_opex_intensity_drift")),
}
V2_FORM_NAMES = tuple(n for _, v2 in V2_FORMS.values() for n in v2)
REVERSE_PARAMETERS = ("microsoft_ai_revenue_0", "microsoft_ai_revenue_growth")
V2_OPTIONAL = REVERSE_PARAMETERS + ("azure_gross_margin",)


DECAYING = ("gpu_price_drift", "efficiency_growth", "training_growth", "api_price_drift",
            "other_opex_growth", "microsoft_ai_revenue_growth", "api_markup_drift",
            "training_intensity_drift", "other_opex_intensity_drift")
#: Term fields a ``[[deal.change]]`` may set (MODEL.md v2 A; ``mcsim.config.CHANGE_TERMS``).
CHANGE_TERMS = ("revenue_share", "revenue_share_end", "revenue_share_cap",
                "revenue_share_cap_from", "profit_share_until_recouped", "profit_share_after",
                "profit_cap", "reverse_share")

# -------------------------------------------------------------------------------------
# TOML text


def fmt(x) -> str:
    """A TOML literal for a Python value (floats round-trip exactly)."""
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, str):
        return json.dumps(x)
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        if not math.isfinite(x):
            raise ValueError(f"not a finite number: {x}")
        r = repr(x)
        return r if ("." in r or "e" in r or "inf" in r) else r + ".0"
    if isinstance(x, list | tuple):
        return "[" + ", ".join(fmt(v) for v in x) + "]"
    if isinstance(x, dict):
        return "{ " + ", ".join(f"{k} = {fmt(v)}" for k, v in x.items()) + " }"
    raise TypeError(type(x))


def to_toml(cfg: dict) -> str:
    """The TOML text of a config dict; ``deal["change"]`` (a list of tables) is written as
    ``[[deal.change]]`` array-of-tables after ``[deal]``'s own keys."""
    lines = []
    for table in ("simulation", "parameters", "parameter_correlation", "shocks", "deal",
                  "funding"):
        if table not in cfg:
            continue
        lines.append(f"[{table}]")
        for k, v in cfg[table].items():
            if table == "deal" and k == "change":
                continue
            if table in ("parameter_correlation", "shocks") and isinstance(v, list):
                lines.append(f"{k} = [")
                lines.extend(f"  {fmt(row)}," for row in v)
                lines.append("]")
            else:
                lines.append(f"{k} = {fmt(v)}")
        lines.append("")
        if table == "deal":
            for change in cfg["deal"].get("change", []):
                lines.append("[[deal.change]]")
                lines.extend(f"{k} = {fmt(v)}" for k, v in change.items())
                lines.append("")
    return "\n".join(lines)


# -------------------------------------------------------------------------------------
# distributions


def _frozen(spec: dict):
    """The untruncated distribution of a spec (a dict with ``dist``), as SciPy's frozen
    distribution: the generator's own arithmetic, independent of mcsim's."""
    k = spec["dist"]
    if k == "normal":
        if "mean" in spec:
            m, s = spec["mean"], spec["sd"]
        else:
            m, s = (spec["p5"] + spec["p95"]) / 2, (spec["p95"] - spec["p5"]) / (2 * Z95)
        return stats.norm(loc=m, scale=s)
    if k == "lognormal":
        if "median" in spec:
            m, s = spec["median"], spec["sigma"]
        else:
            m = math.sqrt(spec["p5"] * spec["p95"])
            s = math.log(spec["p95"] / spec["p5"]) / (2 * Z95)
        return stats.lognorm(s, scale=m)
    if k == "uniform":
        return stats.uniform(loc=spec["low"], scale=spec["high"] - spec["low"])
    if k == "triangular":
        a, c, b = spec["low"], spec["mode"], spec["high"]
        return stats.triang((c - a) / (b - a), loc=a, scale=b - a)
    if k == "pert":
        a, c, b = spec["low"], spec["mode"], spec["high"]
        return stats.beta(1 + 4 * (c - a) / (b - a), 1 + 4 * (b - c) / (b - a), loc=a,
                          scale=b - a)
    if k == "beta":
        return stats.beta(spec["alpha"], spec["beta"])
    raise ValueError(k)


def _ppf(spec: dict, u: float) -> float:
    """Quantile of the untruncated distribution of a spec."""
    return float(_frozen(spec).ppf(u))


def _natural_support(spec: dict) -> tuple[float, float]:
    k = spec["dist"]
    if k == "normal":
        return -math.inf, math.inf
    if k == "lognormal":
        return 0.0, math.inf
    if k == "beta":
        return 0.0, 1.0
    return spec["low"], spec["high"]


_u_log = st.floats(0.0, 1.0)


@st.composite
def _log_between(draw, lo: float, hi: float) -> float:
    """A float log-uniform in [lo, hi] (lo > 0)."""
    t = draw(_u_log)
    x = float(math.exp(math.log(lo) + t * (math.log(hi) - math.log(lo))))
    return min(max(x, lo), hi)


@st.composite
def _spread(draw, scale: float) -> float:
    """A positive spread from tiny (1e-9 * scale) to scale."""
    return draw(_log_between(scale * 1e-9, scale))


@st.composite
def real_value_spec(draw, box: Box):
    """A number or distribution for a real-valued rate in [-R, R]."""
    R = box.hi
    centre = draw(st.one_of(st.just(0.0), st.floats(-R, R), st.floats(-R / 20, R / 20)))
    s = draw(_spread(R / 5))
    s = max(s, abs(centre) * 1e-9, R * 1e-9)
    kinds = ["number", "normal", "normal_p", "uniform", "triangular", "pert", "lognormal",
             "lognormal_p"] + (["beta"] if R >= 1.0 else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "number":
        return centre
    if kind == "normal":
        spec = {"dist": "normal", "mean": centre, "sd": s}
    elif kind == "normal_p":
        spec = {"dist": "normal", "p5": centre - Z95 * s, "p95": centre + Z95 * s}
    elif kind in ("uniform", "triangular", "pert"):
        lo, hi = max(centre - 2 * s, -R), min(centre + 2 * s, R)
        if not hi > lo:
            lo, hi = centre - s, centre + s
        spec = {"dist": kind, "low": lo, "high": hi}
        if kind != "uniform":
            t = draw(st.one_of(st.just(0.0), st.just(1.0), st.floats(0.0, 1.0)))
            mode = min(max(lo + t * (hi - lo), lo), hi)
            spec = {"dist": kind, "low": lo, "mode": mode, "high": hi}
    elif kind.startswith("lognormal"):
        median = draw(_log_between(R * 1e-4, R / 10))
        sig = draw(_log_between(1e-6, max(math.log(R / median) / 5, 2e-6)))
        if kind == "lognormal":
            spec = {"dist": "lognormal", "median": median, "sigma": sig}
        else:
            spec = {"dist": "lognormal", "p5": median * math.exp(-Z95 * sig),
                    "p95": median * math.exp(Z95 * sig)}
    else:
        spec = {"dist": "beta", "alpha": draw(_log_between(0.2, 50.0)),
                "beta": draw(_log_between(0.2, 50.0))}
    return draw(_truncate(spec, box))


@st.composite
def pos_value_spec(draw, box: Box, name: str):
    """A number or distribution for a non-negative level / scale with magnitudes in a box."""
    lo, hi = box.lo, box.hi
    mag = draw(_log_between(lo, hi))
    kinds = ["number", "lognormal", "lognormal_p", "normal", "normal_p", "uniform",
             "triangular", "pert"]
    if lo <= 0.5 and not name.startswith(("utilization", "tokens_per_gpu")):
        kinds.append("beta")
    halflife = name.endswith("_halflife")
    kind = draw(st.sampled_from(kinds))
    if kind == "number":
        if box.zero_ok and draw(st.booleans()) and draw(st.booleans()):
            return 0.0
        return mag
    # widest spread in log that keeps the box's extreme within the budget
    sig_max = SIGMA_MAX if not halflife else 3.0
    if kind.startswith("lognormal"):
        sig = draw(_log_between(1e-9, sig_max))
        med = mag / math.exp(3 * sig) if mag * math.exp(3 * sig) > hi else mag
        if kind == "lognormal":
            spec = {"dist": "lognormal", "median": med, "sigma": sig}
        else:
            spec = {"dist": "lognormal", "p5": med * math.exp(-Z95 * sig),
                    "p95": med * math.exp(Z95 * sig)}
    elif kind.startswith("normal"):
        frac = draw(_log_between(1e-9, 0.5))
        sd = mag * frac
        spec = ({"dist": "normal", "mean": mag, "sd": sd} if kind == "normal" else
                {"dist": "normal", "p5": mag - Z95 * sd, "p95": mag + Z95 * sd})
        if spec.get("p95", 1.0) <= spec.get("p5", 0.0):
            spec = {"dist": "normal", "mean": mag, "sd": sd}
    elif kind in ("uniform", "triangular", "pert"):
        f = draw(_log_between(1e-9, 1.0))
        low = mag * (1 - f) if not (box.zero_ok and draw(st.booleans())) else 0.0
        if not halflife and not box.zero_ok:
            low = max(low, mag * 1e-3)  # positive levels: keep away from 0 (they divide)
        high = mag * (1 + f)
        if not high > low:
            high = low * (1 + 1e-6) + 1e-300
        spec = {"dist": kind, "low": low, "high": high}
        if kind != "uniform":
            t = draw(st.one_of(st.just(0.0), st.just(1.0), st.floats(0.0, 1.0)))
            spec = {"dist": kind, "low": low, "mode": min(max(low + t * (high - low), low),
                                                           high), "high": high}
    else:
        spec = {"dist": "beta", "alpha": draw(_log_between(0.5 if halflife else 1.0, 50.0)),
                "beta": draw(_log_between(0.2, 50.0))}
    spec = draw(_truncate(spec, box))
    # a level that divides (or a price, whose log is taken) must not sit near 0: keep the
    # lower tail away from it where the natural support reaches 0 (normal truncated at 0
    # has a density there, harmless for multiplicative levels)
    return spec


@st.composite
def unit_value_spec(draw, box: Box, name: str):
    """A number or distribution inside (0, 1) (or [0, 1] for a closed domain)."""
    lo, hi = box.lo, box.hi
    closed = box.closed
    divides = name.startswith("utilization")
    centre = draw(st.one_of(st.floats(lo, hi), _log_between(max(lo, 1e-12), 0.5),
                            st.sampled_from([lo, hi, 0.5])))
    if not closed:
        centre = min(max(centre, 1e-9 if not divides else 1e-3), 1 - 1e-9)
    kinds = ["number", "beta", "uniform", "triangular", "pert", "normal", "normal_p",
             "lognormal", "lognormal_p"]
    kind = draw(st.sampled_from(kinds))
    if kind == "number":
        if closed:
            return draw(st.sampled_from([0.0, 1.0, centre, centre]))
        return centre
    if kind == "beta":
        a = draw(_log_between(1.0 if divides else 0.3, 300.0))
        b = draw(_log_between(0.2, 300.0))
        spec = {"dist": "beta", "alpha": a, "beta": b}
    elif kind in ("uniform", "triangular", "pert"):
        w = draw(_log_between(1e-9, 1.0))
        low = max(centre - w, 0.0 if not divides else 1e-3)
        high = min(centre + w, 1.0)
        if not high > low:
            low, high = (0.4, 0.6)
        spec = {"dist": kind, "low": low, "high": high}
        if kind != "uniform":
            t = draw(st.one_of(st.just(0.0), st.just(1.0), st.floats(0.0, 1.0)))
            spec = {"dist": kind, "low": low, "mode": min(max(low + t * (high - low), low),
                                                           high), "high": high}
    elif kind.startswith("normal"):
        sd = draw(_log_between(1e-9, 1.0)) + centre * 1e-9
        spec = ({"dist": "normal", "mean": centre, "sd": sd} if kind == "normal" else
                {"dist": "normal", "p5": centre - Z95 * sd, "p95": centre + Z95 * sd})
        if spec.get("p95", 1.0) <= spec.get("p5", 0.0):
            spec = {"dist": "normal", "mean": centre, "sd": sd}
    else:
        med = min(max(centre, 1e-6), 0.9)
        sig = draw(_log_between(1e-9, 1.5))
        spec = ({"dist": "lognormal", "median": med, "sigma": sig} if kind == "lognormal"
                else {"dist": "lognormal", "p5": med * math.exp(-Z95 * sig),
                      "p95": med * math.exp(Z95 * sig)})
    spec = draw(_truncate(spec, box))
    if divides:  # the utilization divides the inference spend: keep its tail off 0
        spec["min"] = max(spec.get("min", 0.0), 1e-4) if spec["dist"] != "beta" or \
            spec["alpha"] < 1.0 else spec.get("min", 0.0)
        if spec.get("min") == 0.0:
            del spec["min"]
        _fix_mass(spec)
    return spec


def _fix_mass(spec: dict) -> None:
    """Drop a min/max pair that would leave (almost) no mass, keeping the spec valid."""
    lo, hi = spec.get("min", -math.inf), spec.get("max", math.inf)
    if lo >= hi:
        spec.pop("min", None)
        return
    mass = _cdf(spec, hi) - _cdf(spec, lo)
    if not mass > 1e-6:
        spec.pop("min", None)


def _cdf(spec: dict, x: float) -> float:
    if not math.isfinite(x):
        return 0.0 if x < 0 else 1.0
    return float(_frozen(spec).cdf(x))


@st.composite
def _truncate(draw, spec: dict, box: Box):
    """Optionally add min and/or max (with mass inside), then force the domain's ends."""
    spec = dict(spec)
    how = draw(st.sampled_from(["none", "none", "min", "max", "both", "outside"]))
    a, b = _natural_support(spec)
    if how in ("min", "both"):
        spec["min"] = _ppf(spec, draw(st.floats(0.0005, 0.45)))
    if how in ("max", "both"):
        spec["max"] = _ppf(spec, draw(st.floats(0.55, 0.9995)))
    if how == "outside":  # bounds beyond the natural support: no-op truncation
        if math.isfinite(a):
            spec["min"] = a - (abs(a) + 1.0)
        if math.isfinite(b):
            spec["max"] = b + (abs(b) + 1.0)
    # the domain: the truncated support must lie inside it
    if box.domain_low is not None:
        lo = spec.get("min", -math.inf)
        if max(a, lo) < box.domain_low:
            spec["min"] = box.domain_low
    if box.domain_high is not None:
        hi = spec.get("max", math.inf)
        if min(b, hi) > box.domain_high:
            spec["max"] = box.domain_high
    if not box.unbounded_ok and not math.isfinite(min(b, spec.get("max", math.inf))):
        spec["max"] = _ppf(spec, 0.9999)
    # values as floats; keep min < max with mass inside
    for k in ("min", "max"):
        if k in spec:
            spec[k] = float(spec[k])
    _fix_mass(spec)
    if "max" in spec and "min" in spec and not spec["max"] > spec["min"]:
        del spec["max"]
    return spec


@st.composite
def value_spec(draw, name: str, box: Box):
    if box.kind == "real":
        return draw(real_value_spec(box))
    if box.kind == "unit":
        return draw(unit_value_spec(box, name))
    return draw(pos_value_spec(box, name))


# -------------------------------------------------------------------------------------
# correlations


def spearman_to_normal(r: float) -> float:
    return 2.0 * math.sin(math.pi * r / 6.0)


def copula_min_eig(names: list[str], pairs: list) -> float:
    pos = {n: i for i, n in enumerate(names)}
    m = np.eye(len(names))
    for a, b, r in pairs:
        m[pos[a], pos[b]] = m[pos[b], pos[a]] = spearman_to_normal(r)
    return float(np.linalg.eigvalsh(m).min())


@st.composite
def correlation_pairs(draw, drawn: list[str], prefer: tuple[str, ...] = ()):
    """A positive-definite set of Spearman pairs among ``drawn`` (maybe empty). Names in
    ``prefer`` (version 3's drawn parameters: rare among ~40 otherwise) come first, so they
    are among the correlated ones whenever there are pairs (no extra draw without them)."""
    if len(drawn) < 2 or draw(st.integers(0, 3)) == 0:
        return []
    k = draw(st.integers(2, min(len(drawn), 8)))
    names = draw(st.permutations(drawn))[:k]
    if prefer:
        names = list(prefer) + [n for n in names if n not in prefer][:max(k - len(prefer),
                                                                           1)]
        k = len(names)
    nf = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    strength = draw(st.sampled_from([0.3, 1.0, 3.0, 10.0]))
    F = rng.normal(size=(k, nf)) * strength
    cov = F @ F.T + np.diag(rng.uniform(0.05, 1.0, size=k))
    d = np.sqrt(np.diag(cov))
    corr = cov / np.outer(d, d)
    spear = (6 / math.pi) * np.arcsin(corr / 2)
    idx = [(i, j) for i in range(k) for j in range(i + 1, k)]
    keep = [p for p, flag in zip(idx, draw(st.lists(st.booleans(), min_size=len(idx),
                                                    max_size=len(idx))), strict=True)
            if flag] or idx[:1]
    pairs = []
    for i, j in keep:
        r = round(float(spear[i, j]), 6)
        r = min(max(r, -0.999), 0.999)
        if draw(st.booleans()):
            pairs.append([names[i], names[j], r])
        else:
            pairs.append([names[j], names[i], r])
    # keep dropping the last pair until the kept subset is positive definite
    while pairs and copula_min_eig(names, pairs) <= 1e-8:
        pairs.pop()
    return pairs


@st.composite
def shock_matrix(draw):
    kind = draw(st.sampled_from(["absent", "identity", "factor", "factor", "near_singular",
                                 "sparse"]))
    if kind == "absent":
        return None
    if kind == "identity":
        return [[1.0 if i == j else 0.0 for j in range(5)] for i in range(5)]
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    nf = draw(st.integers(1, 4))
    scale = 30.0 if kind == "near_singular" else draw(st.sampled_from([0.3, 1.0, 3.0]))
    F = rng.normal(size=(5, nf)) * scale
    cov = F @ F.T + np.diag(rng.uniform(0.01, 1.0, size=5))
    d = np.sqrt(np.diag(cov))
    c = cov / np.outer(d, d)
    if kind == "sparse":
        mask = rng.random((5, 5)) < 0.5
        mask = mask | mask.T
        c = np.where(mask, c, 0.0)
    c = np.round(c, 6)
    c = (c + c.T) / 2
    np.fill_diagonal(c, 1.0)
    while np.linalg.eigvalsh(c).min() <= 1e-8:  # shrink toward identity until PD
        c = np.round(0.9 * c, 6)
        np.fill_diagonal(c, 1.0)
    return [[float(v) for v in row] for row in c]


# -------------------------------------------------------------------------------------
# months and the deal


def fmt_month(absolute: int) -> str:
    return f"{absolute // 12:04d}-{absolute % 12 + 1:02d}"


@st.composite
def money(draw, lo=1e-2, hi=1e15):
    return draw(st.one_of(st.just(0.0), _log_between(lo, hi), _log_between(lo, hi),
                          st.sampled_from([5e-324, 1e-300, 1.0, 13e9, 1e300])))


_SHARE = st.one_of(st.just(0.0), st.just(1.0), st.floats(0.0, 1.0))
#: every non-empty ordered selection of version 2's three recouping sources
RECOUP_V2 = [list(p) for k in (1, 2, 3) for p in itertools.permutations(
    ("profit_share", "revenue_share", "azure_margin"), k)]


@st.composite
def commitment_money(draw):
    """An Azure take-or-pay amount: its shortfall is a flow (Azure spend, costs), so unlike
    the caps it stays inside the money budget (at most 1e18 $)."""
    return draw(st.one_of(st.just(0.0), _log_between(1e-2, 1e18), _log_between(1e6, 1e13),
                          st.sampled_from([5e-324, 1.0, 250e9])))


@st.composite
def month_near(draw, start: int, months: int, before: int = 30, after: int = 30) -> str:
    """A month from ``before`` months before the start to ``after`` past the horizon."""
    return fmt_month(start + draw(st.integers(-before, months - 1 + after)))


@st.composite
def change_table(draw, start: int, months: int, month: int) -> dict:
    """One ``[[deal.change]]`` from absolute month ``month``: a non-empty subset of the
    term fields, each drawn as [deal]'s are."""
    change: dict = {"from": fmt_month(month)}
    for k in draw(st.lists(st.sampled_from(CHANGE_TERMS), min_size=1, unique=True)):
        if k in ("revenue_share", "profit_share_until_recouped", "profit_share_after",
                 "reverse_share"):
            change[k] = draw(_SHARE)
        elif k in ("revenue_share_cap", "profit_cap"):
            change[k] = draw(money())
        else:  # revenue_share_end, revenue_share_cap_from: any month
            change[k] = draw(month_near(start, months))
    return change


@st.composite
def deal_table(draw, start: int, months: int, v2: bool = False):
    deal: dict = {}
    # tiny and huge investments now and then (1e300: means and variances of the net
    # against it near float64's range)
    deal["investment"] = draw(st.one_of(_log_between(1e-2, 1e15), _log_between(1e-2, 1e15),
                                        _log_between(1e-2, 1e15), st.sampled_from(
                                            [1e-300, 5e-324, 1.0, 13e9, 1e18, 1e300])))
    share = _SHARE
    for k in ("revenue_share", "profit_share_until_recouped", "profit_share_after"):
        if draw(st.booleans()):
            deal[k] = draw(share)
    if draw(st.booleans()):
        deal["revenue_share_end"] = fmt_month(start + draw(st.integers(-30, months + 30)))
    for k in ("revenue_share_cap", "profit_cap", "azure_credits", "losses_before_start"):
        if draw(st.booleans()):
            deal[k] = draw(money())
    if draw(st.booleans()):
        deal["loss_carryforward"] = draw(st.booleans())
    if not v2:
        if draw(st.booleans()):
            deal["recoup_from"] = draw(st.sampled_from([
                ["profit_share"], ["revenue_share"], ["profit_share", "revenue_share"],
                ["revenue_share", "profit_share"]]))
        return deal
    # version 2 (MODEL.md A, B): the run-level fields, then the timeline of changes
    if draw(st.booleans()):
        deal["recoup_from"] = draw(st.sampled_from(RECOUP_V2))
    if draw(st.booleans()):
        deal["revenue_share_cap_from"] = draw(month_near(start, months))
    if draw(st.booleans()):
        deal["revenue_share_paid_before_start"] = draw(money())
    if draw(st.booleans()):
        deal["reverse_share"] = draw(share)
    if draw(st.booleans()):
        first = start + draw(st.one_of(st.just(0), st.integers(0, months + 12)))
        deal["azure_commitment"] = draw(commitment_money())
        deal["azure_commitment_from"] = fmt_month(first)
        deal["azure_commitment_by"] = fmt_month(first + draw(st.one_of(
            st.just(0), st.integers(0, months + 30))))
    n = draw(st.integers(0, 4))
    if n:
        offsets = sorted(draw(st.lists(st.integers(1, months + 30), min_size=n, max_size=n,
                                       unique=True)))
        deal["change"] = [draw(change_table(start, months, start + k)) for k in offsets]
    return deal


# -------------------------------------------------------------------------------------
# the whole config


#: Version 3's mechanisms (MODEL.md E, F, G; ``mcsim.layout.V3_MECHANISMS``), each
#: optional and standing alone (H).
V3_MECHANISMS = ("funding", "discount", "equity")
EQUITY_PARAMETERS = ("microsoft_equity_stake", "valuation_multiple")
#: $ of cash at the start and of one round: up to MONEY_CAP / 10, so cash (a float64
#: running sum of them and the budget-bound flows) stays inside the histogram's range.
FUNDING_CAP = 1e15


def _v3_boxes() -> dict[str, Box]:
    return {
        # NON_NEGATIVE: a bare 0, distributions reaching 0 (truncated there)
        "cash_0": Box("pos", 1.0, FUNDING_CAP, True, domain_low=0.0),
        # CLOSED_UNIT: 0 and 1 themselves, distributions on [0, 1]
        "microsoft_equity_stake": Box("unit", 0.0, 1.0, True, True, 0.0, 1.0),
        # POSITIVE: a multiple of trailing revenue (1e-2 to 1e2: the equity value stays
        # within two orders of the revenue's budget)
        "valuation_multiple": Box("pos", 1e-2, 1e2, domain_low=0.0),
    }


@st.composite
def round_dollars(draw):
    """One round's $: 0, tiny, up to FUNDING_CAP, some as TOML integers."""
    return draw(st.one_of(st.just(0.0), _log_between(1e-2, FUNDING_CAP),
                          _log_between(1e6, 1e11), st.integers(0, 10**15),
                          st.sampled_from([5e-324, 1.0, 6.6e9, FUNDING_CAP, 0])))


@st.composite
def funding_table(draw, start: int, months: int) -> dict:
    """``[funding]``: ``cash_0`` (a number or a distribution on [0, FUNDING_CAP]) and maybe
    ``rounds``: 0-6 months strictly increasing inside the run, the start and the horizon
    month now and then (a round in the start month is added in month 0)."""
    table: dict = {"cash_0": draw(value_spec("cash_0", _v3_boxes()["cash_0"]))}
    how = draw(st.sampled_from(["some", "edges", "absent", "some", "empty", "edges"]))
    if how == "empty":
        table["rounds"] = []
    elif how != "absent":
        n = draw(st.integers(1, min(6, months)))
        offsets = set(draw(st.lists(st.integers(0, months - 1), min_size=n, max_size=n,
                                    unique=True)))
        if how == "edges":
            offsets |= {0, months - 1}
        table["rounds"] = [[fmt_month(start + k), draw(round_dollars())]
                           for k in sorted(offsets)]
    if draw(st.booleans()):  # TOML order does not matter
        table = dict(reversed(list(table.items())))
    return table


@st.composite
def discount_rate(draw):
    """``[simulation] discount_rate``: a log rate per year >= 0, as a number (0, tiny, up to
    5, now and then 50 or 1e300: every month after the first then discounted to 0, still
    finite) or as "X%/yr" (0% to 1000%). The factors are float64 (exp(-r s) in [0, 1])."""
    return draw(st.one_of(
        st.just(0.0), st.just(0), st.floats(0.0, 0.5), _log_between(1e-9, 5.0),
        st.sampled_from([1e-300, 50.0, 1e300]),
        st.sampled_from(["0%/yr", "8%/yr", "3.5%/yr", "0.0 %/yr", "12% per year"]),
        st.floats(0.0, 1000.0).map(lambda x: f"{x:.6g}%/yr")))


@st.composite
def configs(draw, v2: bool | None = None, v3: bool | None | Collection[str] = False
            ) -> dict:
    """A valid config as a dict of tables (see :func:`to_toml`). ``v2``: use version 2's
    keys (None: half the time). ``v3``: use version 3's: True, a non-empty set of
    :data:`V3_MECHANISMS`, each drawn independently of the others; a collection of them,
    exactly those; None, half the time; False, the default, none (and not one draw more
    than before: the derandomized CI set of version 1 and 2 configs is unchanged)."""
    months = draw(st.one_of(st.integers(1, 24), st.integers(1, 600),
                            st.sampled_from([1, 2, 12, 13, 600])))
    start = draw(st.integers(1990 * 12, 2199 * 12))
    years = max(months, 1) / 12.0
    boxes = _boxes(years)
    if v2 is None:
        v2 = draw(st.booleans())
    # one form of each alternative item (version 2's only in a version-2 config)
    forms = {item: (v2 and draw(st.booleans())) for item in V2_FORMS}
    names = [n for n in boxes if n not in V2_FORM_NAMES and n not in V2_OPTIONAL]
    for item, (v1_form, v2_form) in V2_FORMS.items():
        if forms[item]:
            names = [n for n in names if n not in v1_form] + list(v2_form)
    params: dict = {}
    for name in names:
        params[name] = draw(value_spec(name, boxes[name]))
    # a negative logistic growth explodes above the cap (MODEL.md's update): only with
    # users far below their cap
    ug = params["users_growth"]
    if _may_be_negative(ug):
        u0_hi = _upper(params["users_0"], boxes["users_0"].hi)
        cap_lo = _lower(params["users_cap"])
        if not (math.isfinite(u0_hi) and cap_lo > 0 and u0_hi * 1e4 < cap_lo):
            params["users_growth"] = abs(ug) if isinstance(ug, float) else \
                {"dist": "uniform", "low": 0.0, "high": boxes["users_growth"].hi}
    deal = draw(deal_table(start, months, v2))
    if v2:
        # the reverse share's base: required once some reverse_share > 0, else optional
        needs_base = any(t.get("reverse_share", 0.0) > 0 for t in
                         [deal, *deal.get("change", [])])
        if needs_base or draw(st.booleans()):
            for name in REVERSE_PARAMETERS:
                params[name] = draw(value_spec(name, boxes[name]))
        if draw(st.booleans()):
            params["azure_gross_margin"] = draw(value_spec("azure_gross_margin",
                                                           boxes["azure_gross_margin"]))
    for rate in DECAYING:
        if rate in params and draw(st.booleans()):
            params[f"{rate}_inf"] = draw(value_spec(f"{rate}_inf", boxes[rate]))
            params[f"{rate}_halflife"] = draw(value_spec(f"{rate}_halflife",
                                                         boxes["token_growth_halflife"]))
    if v3 is None:
        v3 = draw(st.booleans())
    mechanisms: set = set()
    if v3 is True:
        mechanisms = {m for m in V3_MECHANISMS if draw(st.booleans())} or \
            {draw(st.sampled_from(V3_MECHANISMS))}
    elif v3:
        mechanisms = set(v3)
    if mechanisms:
        if "equity" in mechanisms:  # both or neither (MODEL.md G)
            for name in EQUITY_PARAMETERS:
                params[name] = draw(value_spec(name, _v3_boxes()[name]))
    order = list(params)
    params = {k: params[k] for k in draw(st.permutations(order))}
    cfg: dict = {"simulation": {"start": fmt_month(start),
                                "horizon": fmt_month(start + months - 1)}}
    if draw(st.booleans()):
        cfg["simulation"]["paths"] = draw(st.integers(1, 10**6))
    if draw(st.booleans()):
        cfg["simulation"]["seed"] = draw(st.one_of(st.integers(0, 2**63 - 1),
                                                   st.sampled_from([0, 2**63 - 1])))
    if "discount" in mechanisms:
        cfg["simulation"]["discount_rate"] = draw(discount_rate())
    cfg["parameters"] = params
    drawn = [n for n, v in params.items() if isinstance(v, dict)]
    prefer: tuple[str, ...] = ()
    if "funding" in mechanisms:
        cfg["funding"] = draw(funding_table(start, months))
        if isinstance(cfg["funding"]["cash_0"], dict):
            drawn.append("cash_0")  # a parameter like any other: rank-correlated too
    if mechanisms:
        # version 3's drawn parameters among the correlated ones, half the time
        v3_drawn = tuple(n for n in ("cash_0",) + EQUITY_PARAMETERS if n in drawn)
        if v3_drawn and draw(st.booleans()):
            prefer = tuple(draw(st.permutations(v3_drawn)))[:draw(st.integers(
                1, len(v3_drawn)))]
    pairs = draw(correlation_pairs(drawn, prefer))
    if pairs:
        cfg["parameter_correlation"] = {"pairs": pairs}
    shocks = draw(shock_matrix())
    if shocks is not None:
        cfg["shocks"] = {"correlation": shocks}
    cfg["deal"] = deal
    return cfg


def _may_be_negative(spec) -> bool:
    if isinstance(spec, float):
        return spec < 0
    a, b = _natural_support(spec)
    return max(a, spec.get("min", -math.inf)) < 0


def _upper(spec, default: float) -> float:
    if isinstance(spec, float):
        return spec
    a, b = _natural_support(spec)
    hi = min(b, spec.get("max", math.inf))
    return hi if math.isfinite(hi) else _ppf(spec, 1 - 1e-9)


def _lower(spec) -> float:
    if isinstance(spec, float):
        return spec
    a, b = _natural_support(spec)
    lo = max(a, spec.get("min", -math.inf))
    return lo if lo > 0 else _ppf(spec, 1e-9)


# -------------------------------------------------------------------------------------
# running and checking


#: stderr lines a run may print, each with why it is allowed. mcsim prints nothing on
#: stderr for a valid config run in-process with the progress bar off (no terminal), so
#: the list is empty: every stderr line, and every Python warning, is a finding.
ALLOWED_STDERR: list[tuple[str, str]] = []


class RunFailure(AssertionError):
    """A valid config failed: ``kind`` is crash, refusal, stderr, warning or invariant."""

    def __init__(self, kind: str, step: str, message: str):
        self.kind, self.step = kind, step
        super().__init__(f"[{kind}] {step}: {message}")


def _strict_json(text: str):
    def bad(c):
        raise ValueError(f"non-strict JSON constant {c}")
    return json.loads(text, parse_constant=bad)


def run_cli(argv: list[str]) -> tuple[int, str, str, list[str]]:
    """``mcsim.cli.main(argv)`` in-process: (exit code, stdout, stderr, warnings)."""
    from mcsim.cli import main

    out, err = io.StringIO(), io.StringIO()
    with warnings.catch_warnings(record=True) as caught, \
            contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        warnings.simplefilter("always")
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse
            code = exc.code if isinstance(exc.code, int) else 1
    return code, out.getvalue(), err.getvalue(), \
        [f"{w.category.__name__}: {w.message} ({w.filename}:{w.lineno})" for w in caught]


def _unexplained(stderr: str) -> list[str]:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    return [ln for ln in lines if not any(re.search(p, ln) for p, _ in ALLOWED_STDERR)]


def run_and_check(text: str, workdir: Path, dtypes=("float32", "float64"),
                  paths: int = 2048) -> dict:
    """Validate and run a config text through the CLI and check its summaries.

    Raises :class:`RunFailure`; returns {dtype: summary} on success.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "config.toml"
    path.write_text(text, encoding="utf-8")
    cfg = _toml(text)
    code, out, err, warns = run_cli(["validate", str(path)])
    _expect_ok("validate", code, out, err, warns)
    summaries = {}
    for dtype in dtypes:
        out_dir = workdir / f"out_{dtype}"
        argv = ["run", str(path), "--paths", str(paths), "--no-plots", "--out", str(out_dir)]
        if dtype != "float32":
            argv += ["--dtype", dtype]
        step = f"run {dtype}"
        try:
            code, out, err, warns = run_cli(argv)
        except Exception as exc:  # noqa: BLE001 - any exception is a crash
            import traceback

            raise RunFailure("crash", step, "".join(traceback.format_exception(exc))[-3000:]) \
                from None
        _expect_ok(step, code, out, err, warns)
        summary = _strict_json((out_dir / "summary.json").read_text())
        problems = check_summary(summary, cfg, paths, dtype)
        if problems:
            raise RunFailure("invariant", step, "; ".join(problems[:8]))
        summaries[dtype] = summary
    return summaries


def _toml(text: str) -> dict:
    import tomllib

    return tomllib.loads(text)


def _expect_ok(step: str, code, out: str, err: str, warns: list[str]) -> None:
    if code == 2:
        raise RunFailure("refusal", step, err.strip()[-2000:])
    if code != 0:
        raise RunFailure("crash", step, f"exit {code}: {err.strip()[-2000:]}")
    extra = _unexplained(err)
    if extra:
        raise RunFailure("stderr", step, " | ".join(extra)[:2000])
    if warns:
        raise RunFailure("warning", step, " | ".join(warns)[:2000])


# --- the invariants of a summary --------------------------------------------------------

PCTS = ("p5", "p25", "p50", "p75", "p95")
NOT_BY = "not by the horizon"
BIN = 10 ** (1 / 500)  # one histogram bin (relative)


def _tol_le(a: float, b: float, rel: float = 1e-9) -> bool:
    """a <= b up to rounding."""
    return a <= b or a <= b + rel * max(abs(a), abs(b), 1.0)


def _bin_le(a: float, b: float) -> bool:
    """a <= b up to one histogram bin (pathwise a <= b; quantiles read off bins)."""
    return a <= b * BIN + 1.0 if b >= 0 else a <= b / BIN + 1.0


def _nulls(x, path="") -> list[str]:
    out = []
    if x is None:
        return [path]
    if isinstance(x, dict):
        for k, v in x.items():
            if path == "" and k == "provenance":
                continue
            out += _nulls(v, f"{path}.{k}" if path else k)
    elif isinstance(x, list):
        for i, v in enumerate(x):
            out += _nulls(v, f"{path}[{i}]")
    return out


def _allowed_null(path: str, s: dict) -> bool:
    # a month quantile (or its interval end) beyond the horizon: null with its label
    m = re.fullmatch(rf"({'|'.join(EVENTS + V3_EVENTS)})\.quantiles\.(p\d+)\."
                     r"(month|ci95_low|ci95_high)", path)
    if m:
        q = s[m.group(1)]["quantiles"][m.group(2)]
        label = q["label" if m.group(3) == "month" else m.group(3) + "_label"]
        return label == NOT_BY
    if path == "nonfinite.first_month":
        return s["nonfinite"]["paths"] == 0
    if path.startswith("headline."):
        # the headline repeats figures of the blocks checked here (mcsim.report.headline),
        # null meaning: no note, a month beyond the horizon, an open interval end, a figure
        # given a condition no path met (the shortfall given it is paid)
        return re.fullmatch(r"headline\.items\[\d+\]\.(note|rows\[\d+\]\.(month|ci95_low|"
                            r"ci95_high|mean|mean_se|(p5|median|p95)\.(value|ci95_low|"
                            r"ci95_high)))", path) is not None
    if path.startswith("stocks.") and not path.startswith("stocks.cash."):
        # (version 3's cash is money, signed: the money rule below)
        # a stock is a positive level far inside the histogram's range once scaled (the
        # boxes keep users under 1e16, tokens under 1e22, prices under 1e10 $/GPU-hour),
        # and 2048 paths bound every percentile's interval on both sides: no value or
        # interval end is null (beyond_range is: null means inside the range)
        return re.fullmatch(r"stocks\.\w+\.quantiles\.p\d+\.beyond_range\[\d+\]",
                            path) is not None
    # money quantiles: beyond_range is null inside the histogram's range; the value is null
    # where beyond_range says "above"/"below"; an interval end is null (unbounded) where it
    # lies beyond the range, which only the rows reaching the range's edge can do
    m = re.fullmatch(r"(.+)\.quantiles\.(p\d+)\.(value|ci95_low|ci95_high|beyond_range)"
                     r"(?:\[(\d+)\])?", path)
    if m:
        block = _get(s, m.group(1))["quantiles"]
        i = None if m.group(4) is None else int(m.group(4))
        at = lambda p, f: block[p][f] if i is None else block[p][f][i]  # noqa: E731
        if m.group(3) == "beyond_range":
            return True
        if m.group(3) == "value":
            return at(m.group(2), "beyond_range") in ("above", "below")
        side = "above" if m.group(3) == "ci95_high" else "below"
        edge = s["method"].get("histogram_range", [-1e16, 1e16])
        lim = edge[1] if side == "above" else edge[0]
        return any(at(p, "beyond_range") == side or (
            at(p, "value") is not None and abs(at(p, "value")) >= abs(lim) / 100)
            for p in PCTS)
    return False


def _get(s: dict, dotted: str):
    for part in dotted.split("."):
        s = s[part]
    return s


def _as_number(v, beyond) -> float | None:
    if v is not None:
        return v
    return {"above": math.inf, "below": -math.inf}.get(beyond)


def _quantile_rows(block: dict, n: int | None):
    """Yield (index, {p: (value, lo, hi)}) of a quantile block (lists or scalars); a value
    beyond the histogram's range is +-inf, a null interval end +-inf (unbounded)."""
    q = block["quantiles"]

    def row(get):
        out = {}
        for p in PCTS:
            v = _as_number(get(p, "value"), get(p, "beyond_range"))
            lo, hi = get(p, "ci95_low"), get(p, "ci95_high")
            out[p] = (v, -math.inf if lo is None else lo, math.inf if hi is None else hi)
        return out

    if n is None:
        yield None, row(lambda p, f: q[p].get(f))
        return
    for i in range(n):
        yield i, row(lambda p, f, i=i: q[p][f][i] if f in q[p] else None)


#: The first-passage months of a summary (version 1's two, version 2's two), and version 3's
#: (in a summary only with its mechanism: [funding]).
EVENTS = ("repayment", "credit_exhaustion", "revenue_share_cap_reached", "azure_commitment_met")
V3_EVENTS = ("funding_gap",)
#: Annual flows (mcsim.layout.ANNUAL_FLOWS) and which of them may be negative.
ANNUAL = ("azure_spend", "azure_inference_spend", "revenue", "revenue_share", "inference_spend",
          "training_spend", "other_opex", "compute_spend", "profit", "net_revenue_share",
          "reverse_revenue_share", "azure_commitment_shortfall", "microsoft_azure_margin",
          "paid_to_microsoft")
#: Flows that may be negative: profit, the net revenue share (M - reverse) and so "paid to
#: Microsoft" (Z + net: a reverse share above Azure spend and M makes it negative).
SIGNED = ("profit", "net_revenue_share", "paid_to_microsoft")
STOCKS = ("weekly_active_users", "paying_subscribers", "tokens_per_month", "gpu_price",
          "azure_share")
HORIZON = ("cumulative_revenue", "cumulative_profit", "microsoft_receipts", "microsoft_net",
           "deepest_cumulative_loss", "microsoft_economic_return", "microsoft_economic_net")
NON_NEGATIVE_HORIZON = ("cumulative_revenue", "microsoft_receipts", "deepest_cumulative_loss",
                        "microsoft_economic_return")
#: Relative rounding of a linear identity between two reported sums (annual or horizon
#: means), relative to the sum of the magnitudes involved. In float64 runs every sum
#: (month by month over <= 2400 months, pairwise over paths) is within ~(T + log2 n) 2^-53
#: < 1e-12 of exact: ``REL64`` = 1e-9 leaves three orders of margin. In float32 runs
#: the monthly flows are float32 values, and XLA may compute "the same" float32 flow in
#: more than one fusion, each rounded its own way (LLVM contracts a*b + c into an FMA in
#: some fusions only: an Azure margin row and the economic return's cumulative margin
#: were measured 2.2e-9 apart): two rows then agree to float32's 2^-24 ~ 6e-8 per
#: operation, so ``REL32`` = 1e-6 (a few operations, with margin).
REL64 = 1e-9
REL32 = 1e-6


def _terms(deal: dict, name: str) -> list:
    """The values a deal term takes over the run: [deal]'s (None when absent), then each
    change's that sets it (changes after the horizon included: conservative)."""
    return [deal.get(name)] + [c[name] for c in deal.get("change", []) if name in c]


def _month_index(label: str, start: str) -> int:
    """Index of month ``label`` on the grid starting at ``start`` (may be < 0 or >= T)."""
    (y, m), (y0, m0) = (map(int, label.split("-")), map(int, start.split("-")))
    return (y - y0) * 12 + (m - m0)


def _close(a: float, b: float, scale: float, rel: float) -> bool:
    """|a - b| within ``rel`` of ``scale`` (a sum of the magnitudes involved), or 1e-300."""
    return abs(a - b) <= rel * scale + 1e-300


def check_summary(s: dict, cfg: dict, paths: int, dtype: str = "float64") -> list[str]:
    """Every invariant of one summary.json; returns the violations (empty: fine)."""
    bad: list[str] = []
    T = s["grid"]["months"]
    sim = cfg["simulation"]
    rel = REL32 if dtype == "float32" else REL64
    if s["schema"] != "mcsim.summary/3":
        bad.append(f"schema {s['schema']}")
    if s["paths"] != paths:
        bad.append(f"paths {s['paths']} != {paths}")
    if s["grid"]["start"] != sim["start"] or s["grid"]["horizon"] != sim["horizon"]:
        bad.append(f"grid {s['grid']} vs {sim}")
    if s["nonfinite_paths"] != 0:
        bad.append(f"{s['nonfinite_paths']} paths with a NaN or inf "
                   f"(first {s['nonfinite']['first_month']}) dropped silently")
    for p in _nulls(s):
        if not _allowed_null(p, s):
            bad.append(f"null at {p}")
            break

    def quantile_checks(label: str, block: dict, n: int | None):
        for i, row in _quantile_rows(block, n):
            where = label if i is None else f"{label}[{i}]"
            vals = [row[p][0] for p in PCTS]
            if any(v is None for v in vals):
                continue  # reported as a null above
            if any(not _tol_le(a, b) for a, b in zip(vals, vals[1:], strict=False)):
                bad.append(f"{where}: quantiles out of order {vals}")
            for p in PCTS:
                v, lo, hi = row[p]
                if not (_tol_le(lo, v) and _tol_le(v, hi)):
                    bad.append(f"{where}.{p}: value {v} outside its interval [{lo}, {hi}]")

    cum = s["cumulative_azure_spend"]
    if len(cum["months"]) != T or len(cum["mean"]) != T:
        bad.append("cumulative_azure_spend: wrong length")
    quantile_checks("cumulative_azure_spend", cum, T)
    for p in PCTS:
        v = cum["quantiles"][p]["value"]
        for t in range(1, T):
            if v[t] is not None and v[t - 1] is not None and not _tol_le(v[t - 1], v[t]):
                bad.append(f"cumulative_azure_spend.{p} decreases at month {t}: "
                           f"{v[t - 1]} -> {v[t]}")
                break
        if v[0] is not None and v[0] < 0:
            bad.append(f"cumulative_azure_spend.{p} negative")
    m = cum["mean"]
    if all(x is not None for x in m):
        if any(not _tol_le(a, b) for a, b in zip(m, m[1:], strict=False)):
            bad.append("cumulative_azure_spend.mean decreases")
        if m[0] < 0:
            bad.append("cumulative_azure_spend.mean negative")
    ann = s["annual"]
    Y = len(ann["years"])
    y0, y1 = int(sim["start"][:4]), int(sim["horizon"][:4])
    if Y != y1 - y0 + 1:
        bad.append(f"annual: {Y} years for {sim['start']}..{sim['horizon']}")
    for flow in ANNUAL:
        if flow not in ann:
            bad.append(f"annual.{flow} missing")
            continue
        quantile_checks(f"annual.{flow}", ann[flow], Y)
        if len(ann[flow]["mean"]) != Y:
            bad.append(f"annual.{flow}: wrong length")
        if flow in SIGNED:
            continue
        for y in range(Y):
            for p in PCTS:
                v = ann[flow]["quantiles"][p]["value"][y]
                if v is not None and v < 0:
                    bad.append(f"annual.{flow}[{y}].{p} = {v} < 0")
            mv = ann[flow]["mean"][y]
            if mv is not None and mv < 0:
                bad.append(f"annual.{flow}[{y}].mean = {mv} < 0")
    if bad:
        return bad  # the flows below are all there, each of the right length
    # pathwise a <= b between flows of a year: their quantiles too (to a bin). Each holds
    # in floating point as well: a*I <= I and g*Z <= Z for a, g in [0, 1]; M = min(owed,
    # room) <= rho*V; fl(I + R) >= I, R; Z + F >= F; M - reverse <= M; Z + net >= net
    pathwise = [("azure_inference_spend", "azure_spend"), ("revenue_share", "revenue"),
                ("azure_inference_spend", "inference_spend"),
                ("inference_spend", "compute_spend"), ("training_spend", "compute_spend"),
                ("microsoft_azure_margin", "azure_spend"),
                ("azure_commitment_shortfall", "azure_spend"),
                ("net_revenue_share", "revenue_share"),
                ("net_revenue_share", "paid_to_microsoft")]
    for y in range(Y):
        for p in PCTS:
            q = lambda f, p=p, y=y: ann[f]["quantiles"][p]["value"][y]  # noqa: E731
            for a, b in pathwise:
                if q(a) is None or q(b) is None:
                    continue
                if not _bin_le(q(a), q(b)):
                    bad.append(f"annual {y} {p}: {a} {q(a)} > {b} {q(b)}")

    mean = lambda f: ann[f]["mean"]  # noqa: E731
    total = lambda f: sum(ann[f]["mean"])  # noqa: E731
    hor = s["horizon"]
    inv = s["investment"]
    try:
        # sums: the annual means add up to the cumulative / horizon means
        # (rel: a float32 run's annual Azure spend, shortfall included, is float32 values)
        if not math.isclose(total("azure_spend"), m[-1], rel_tol=rel, abs_tol=1e-3):
            bad.append(f"annual azure means sum {total('azure_spend')} != cumulative {m[-1]}")
        if not math.isclose(total("revenue"), hor["cumulative_revenue"]["mean"],
                            rel_tol=1e-9, abs_tol=1e-3):
            bad.append("annual revenue means do not sum to cumulative revenue")
        for net, gross in (("microsoft_net", "microsoft_receipts"),
                           ("microsoft_economic_net", "microsoft_economic_return")):
            if not math.isclose(hor[net]["mean"], hor[gross]["mean"] - inv, rel_tol=1e-9,
                                abs_tol=1e-6 * max(1.0, abs(inv))):
                bad.append(f"{net} mean != {gross} - investment")
        bad += _v2_identities(s, cfg, rel, mean, total)
    except TypeError:
        pass  # a null, reported above
    v3_names = [k for k in hor if k not in HORIZON]  # version 3's, with their mechanism
    for name in HORIZON + tuple(v3_names):
        quantile_checks(f"horizon.{name}", hor[name], None)
    for name in NON_NEGATIVE_HORIZON + tuple(k for k in v3_names if k in V3_NON_NEGATIVE):
        v = hor[name]["quantiles"]["p5"]["value"]
        if v is not None and v < 0:
            bad.append(f"horizon.{name}.p5 = {v} < 0")
    bad += _stock_checks(s, quantile_checks)
    # the four first-passage months, and version 3's
    for ev in EVENTS + tuple(e for e in V3_EVENTS if e in s):
        b = s[ev]
        cdf = b["cdf"]["probability"]
        if len(cdf) != T or b["cdf"]["months"] != cum["months"]:
            bad.append(f"{ev}: cdf length")
            continue
        if any(not 0.0 <= x <= 1.0 for x in cdf):
            bad.append(f"{ev}: cdf outside [0, 1]")
        if any(b2 < a for a, b2 in zip(cdf, cdf[1:], strict=False)):
            bad.append(f"{ev}: cdf decreases")
        cens = b["probability_not_by_horizon"]
        if not abs((1.0 - cdf[-1]) - cens) <= 1e-12:
            bad.append(f"{ev}: 1 - P(by horizon) = {1 - cdf[-1]} != P(not) = {cens}")
        se = b["cdf"]["se"]
        if any(not 0.0 <= x <= 0.5 for x in se) or not 0 <= b[
                "probability_not_by_horizon_se"] <= 0.5:
            bad.append(f"{ev}: standard errors outside [0, 0.5]")
        labels = cum["months"]
        prev = -1
        for p in PCTS:
            q = b["quantiles"][p]
            for fld, lab in (("month", "label"), ("ci95_low", "ci95_low_label"),
                             ("ci95_high", "ci95_high_label")):
                if (q[fld] is None) != (q[lab] == NOT_BY) or (
                        q[fld] is not None and (q[fld] != q[lab] or q[fld] not in labels)):
                    bad.append(f"{ev}.{p}.{fld}: {q[fld]!r} with label {q[lab]!r}")
            def idx(f, q=q, labels=labels):
                return T if q[f] is None else labels.index(q[f])
            if not idx("ci95_low") <= idx("month") <= idx("ci95_high"):
                bad.append(f"{ev}.{p}: month outside its interval")
            k = idx("month")
            frac = float(p[1:]) / 100
            if k < prev:
                bad.append(f"{ev}: month quantiles out of order at {p}")
            prev = k
            if k < T and not (cdf[k] >= frac - 1e-12 and (k == 0 or cdf[k - 1] < frac)):
                bad.append(f"{ev}.{p} = {q['month']} disagrees with the cdf")
            if k == T and not cdf[-1] < frac + 1e-12:
                bad.append(f"{ev}.{p} not by the horizon but P(by horizon) = {cdf[-1]}")
    bad += _event_checks(s, cfg)
    return bad


def _fixed(params: dict, name: str):
    """A parameter's value if it is a bare number, else None (a distribution or absent)."""
    v = params.get(name)
    return v if isinstance(v, float | int) and not isinstance(v, bool) else None


def _v2_identities(s: dict, cfg: dict, rel: float, mean, total) -> list[str]:
    """Version 2's accounting identities between annual and horizon means (MODEL.md v2 B-D).

    Each is linear in per-path values, so it holds for the means up to rounding: ``rel``
    (the dtype's, see ``REL64``/``REL32``) of the sum of the magnitudes of the terms (every
    term is a non-negative flow, so the sum of their means bounds the per-path sums of
    magnitudes). A flow that is structurally zero (no reverse share, no commitment, no
    margin parameter) is checked to be exactly 0."""
    bad: list[str] = []
    deal, params = cfg["deal"], cfg["parameters"]
    hor = s["horizon"]
    Y = len(s["annual"]["years"])
    F = "azure_commitment_shortfall"
    for y in range(Y):
        M, rev, Z = mean("revenue_share")[y], mean("reverse_revenue_share")[y], \
            mean("azure_spend")[y]
        net, paid = mean("net_revenue_share")[y], mean("paid_to_microsoft")[y]
        # net = M - reverse, each month (float64 in the kernel)
        if not _close(net, M - rev, M + rev, rel):
            bad.append(f"annual {y}: net revenue share {net} != revenue share {M} - reverse "
                       f"{rev}")
        # paid to Microsoft = Azure spend (shortfall included) + net revenue share
        if not _close(paid, Z + net, Z + M + rev, rel):
            bad.append(f"annual {y}: paid to Microsoft {paid} != Azure {Z} + net {net}")
        # X = I + R in the kernel's dtype (float32: one rounding of 2^-24 per month)
        inf_, tr, X = mean("inference_spend")[y], mean("training_spend")[y], \
            mean("compute_spend")[y]
        if not _close(X, inf_ + tr, inf_ + tr, rel):
            bad.append(f"annual {y}: compute {X} != inference {inf_} + training {tr}")
        # P = V - X - O - M + reverse - F: V - X - O in the kernel's dtype, the rest float64
        V, O, Fy = mean("revenue")[y], mean("other_opex")[y], mean(F)[y]
        P = mean("profit")[y]
        if not _close(P, V - X - O - M + rev - Fy, V + X + O + M + rev + Fy, rel):
            bad.append(f"annual {y}: profit {P} != V - X - O - M + reverse - F = "
                       f"{V - X - O - M + rev - Fy}")
        # Microsoft's Azure margin: g (Z + F), g drawn in the kernel's dtype
        g = _fixed(params, "azure_gross_margin")
        marg = mean("microsoft_azure_margin")[y]
        if "azure_gross_margin" not in params and marg != 0.0:
            bad.append(f"annual {y}: Azure margin {marg} without azure_gross_margin")
        if g is not None and not _close(marg, g * Z, Z, rel):
            bad.append(f"annual {y}: Azure margin {marg} != {g} x Azure spend {Z}")
        if not _tol_le(marg, Z, rel):
            bad.append(f"annual {y}: Azure margin {marg} > Azure spend {Z}")
    # the horizon: cumulative profit sums the monthly profits (float64)
    scale = sum(total(f) for f in ("revenue", "compute_spend", "other_opex", "revenue_share",
                                   "reverse_revenue_share", F))
    if not _close(hor["cumulative_profit"]["mean"], total("profit"), scale, rel):
        bad.append(f"cumulative profit {hor['cumulative_profit']['mean']} != the annual "
                   f"profits' sum {total('profit')}")
    # economic return = receipts + Azure margin >= receipts (margin >= 0 on every path)
    rec, eco = hor["microsoft_receipts"]["mean"], hor["microsoft_economic_return"]["mean"]
    margin = total("microsoft_azure_margin")
    if not _close(eco, rec + margin, rec + margin, rel):
        bad.append(f"economic return {eco} != receipts {rec} + Azure margin {margin}")
    if not _tol_le(rec, eco):
        bad.append(f"economic return {eco} < receipts {rec}")
    if (g := params.get("azure_gross_margin", 0.0)) == 0.0 and not _close(eco, rec, rec, rel):
        # no margin: the same per-path values (up to the duplicated fusions' rounding)
        bad.append(f"economic return {eco} != receipts {rec} with no Azure margin ({g})")
    # receipts = profit share + revenue share paid in the run (>= the latter); the paid
    # before the start is kept apart from the run's sums (issue 26), so however large it
    # is it cannot absorb them
    if not total("revenue_share") <= rec + rel * (rec + total("revenue_share")):
        bad.append(f"receipts {rec} < revenue share paid {total('revenue_share')}")
    # what the deal's terms force
    rs = _terms(deal, "revenue_share")
    if all((v or 0.0) == 0.0 for v in rs) and total("revenue_share") != 0.0:
        bad.append(f"revenue share paid {total('revenue_share')} with every revenue_share 0")
    caps = _terms(deal, "revenue_share_cap")
    start = cfg["simulation"]["start"]
    cap_froms = _terms(deal, "revenue_share_cap_from")
    if caps[0] is not None and all(c is None or _month_index(c, start) <= 0
                                   for c in cap_froms):
        # a cap in force from the start, counting everything paid in the run (and before
        # it): what is paid never exceeds the largest cap the run has (a lowered cap pays
        # nothing, never takes back)
        top = max(caps)
        if total("revenue_share") > top * (1 + 1e-9) + 1e-3:
            bad.append(f"revenue share paid {total('revenue_share')} > cap {top}")
    if all((v or 0.0) == 0.0 for v in _terms(deal, "reverse_share")):
        for y in range(Y):
            if mean("reverse_revenue_share")[y] != 0.0:
                bad.append(f"annual {y}: reverse share paid with every reverse_share 0")
            # no reverse share: net is the same per-path values as M
            if not _close(mean("net_revenue_share")[y], mean("revenue_share")[y],
                          mean("revenue_share")[y], rel):
                bad.append(f"annual {y}: net revenue share != revenue share without a "
                           "reverse share")
    # the commitment's shortfall: paid only in month `by` (the year holding it), at most
    # the commitment; nothing without a commitment or with `by` beyond the horizon
    commit = deal.get("azure_commitment")
    T = s["grid"]["months"]
    by_year = None
    if commit is not None and _month_index(deal["azure_commitment_by"], start) < T:
        by_year = int(deal["azure_commitment_by"][:4]) - int(start[:4])
    for y in range(Y):
        fy = mean(F)[y]
        qs = [s["annual"][F]["quantiles"][p]["value"][y] for p in PCTS]
        if y != by_year and (fy != 0.0 or any(v != 0.0 for v in qs)):
            bad.append(f"annual {y}: commitment shortfall {fy} (quantiles {qs}) outside "
                       f"the year of azure_commitment_by (commitment {commit})")
        if commit is not None and not _tol_le(fy, commit):
            bad.append(f"annual {y}: commitment shortfall {fy} > commitment {commit}")
        if commit is not None and any(v is not None and not _bin_le(v, commit) for v in qs):
            bad.append(f"annual {y}: shortfall quantiles {qs} > commitment {commit}")
    met = s["azure_commitment_met"]
    if by_year is not None and met["probability_not_by_horizon"] == 0.0 and \
            not mean(F)[by_year] <= rel * commit:
        # met by spend on every path: the sum at `by` reaches the commitment, F = 0 (up to
        # the float32 rounding of a sum computed in two fusions: rel of the commitment)
        bad.append(f"commitment met on every path but a shortfall {mean(F)[by_year]} paid")
    return bad


def _stock_checks(s: dict, quantile_checks) -> list[str]:
    """Year-end stocks (MODEL.md v2 C): finite, non-negative quantiles (a level below the
    scaled histogram's $1 reads as 0); tokens and the GPU price are exps of random walks
    whose drift and volatility the budgets bound (never below e^-30 of their boxes), so
    their means are > 0; users (and subscribers) are >= 0 only: MODEL.md's explicit
    logistic step takes users far above their cap to exactly 0 in one month (a valid
    config may start there); Azure's share lies in [0, 1]."""
    bad: list[str] = []
    st_ = s.get("stocks")
    if st_ is None:
        return ["stocks missing"]
    Y = len(s["annual"]["years"])
    if st_.get("years") != s["annual"]["years"]:
        bad.append("stocks: years differ from the annual flows'")
    for name in STOCKS:
        if name not in st_:
            bad.append(f"stocks.{name} missing")
            continue
        blk = st_[name]
        if len(blk["mean"]) != Y:
            bad.append(f"stocks.{name}: wrong length")
            continue
        quantile_checks(f"stocks.{name}", blk, Y)
        for y in range(Y):
            vals = [blk["quantiles"][p]["value"][y] for p in PCTS]
            mv = blk["mean"][y]
            if any(v is None or not math.isfinite(v) or v < 0 for v in vals):
                bad.append(f"stocks.{name}[{y}]: quantiles {vals} not finite and >= 0")
            if mv is None:
                continue
            if name == "azure_share":
                # a = a_inf + (a_0 - a_inf) 2^(-s/h) in [0, 1], rounded in float32: 1e-6
                if not -1e-6 <= mv <= 1 + 1e-6:
                    bad.append(f"stocks.azure_share[{y}].mean = {mv} outside [0, 1]")
                if any(v is not None and v > BIN * (1 + 1e-12) for v in vals):
                    bad.append(f"stocks.azure_share[{y}]: quantiles {vals} above 1 (a bin)")
            elif name in ("tokens_per_month", "gpu_price") and not mv > 0:
                bad.append(f"stocks.{name}[{y}].mean = {mv}: not > 0")
    if "cash" in st_:  # version 3's cash: money, signed, finite at every year end
        blk = st_["cash"]
        if len(blk["mean"]) != Y:
            bad.append("stocks.cash: wrong length")
        else:
            quantile_checks("stocks.cash", blk, Y)
            if any(m is None or not math.isfinite(m) for m in blk["mean"]):
                bad.append(f"stocks.cash.mean = {blk['mean']}: not finite")
    return bad


def _event_checks(s: dict, cfg: dict) -> list[str]:
    """What the deal's terms force on the four first-passage months (exact)."""
    bad: list[str] = []
    deal, params = cfg["deal"], cfg["parameters"]
    start = cfg["simulation"]["start"]
    T = s["grid"]["months"]
    hor = s["horizon"]
    credits = deal.get("azure_credits")
    ce = s["credit_exhaustion"]
    if credits is None and ce["probability_not_by_horizon"] != 1.0:
        bad.append("credits exhausted without azure_credits")
    if credits == 0.0 and ce["cdf"]["probability"][0] != 1.0:
        bad.append("azure_credits = 0 not exhausted in the first month")
    # the revenue-share cap: never reached without one; a cap of 0 in force from the
    # start (its cap_from, if any, not after the start: before cap_from a cap neither
    # counts nor limits) is reached in the first month (cumulative M >= 0)
    caps = _terms(deal, "revenue_share_cap")
    cr = s["revenue_share_cap_reached"]
    if all(c is None for c in caps) and cr["probability_not_by_horizon"] != 1.0:
        bad.append(f"cap reached without a revenue_share_cap "
                   f"(P(not) = {cr['probability_not_by_horizon']})")
    from_start = all(c is None or _month_index(c, start) <= 0
                     for c in _terms(deal, "revenue_share_cap_from"))
    if caps[0] == 0.0 and from_start and cr["cdf"]["probability"][0] != 1.0:
        bad.append("revenue_share_cap = 0 not reached in the first month "
                   f"(P = {cr['cdf']['probability'][0]})")
    # the commitment: met only inside its window from..by; a commitment of 0 is met in
    # month `from`; never without one
    cm = s["azure_commitment_met"]
    cdf = cm["cdf"]["probability"]
    if deal.get("azure_commitment") is None:
        if cm["probability_not_by_horizon"] != 1.0:
            bad.append("commitment met without an azure_commitment")
    else:
        f = _month_index(deal["azure_commitment_from"], start)
        b = _month_index(deal["azure_commitment_by"], start)
        if any(cdf[t] != 0.0 for t in range(min(f, T))):
            bad.append(f"commitment met before azure_commitment_from (month {f})")
        if b < T and any(cdf[t] != cdf[b] for t in range(b, T)):
            bad.append(f"commitment met after azure_commitment_by (month {b})")
        if deal["azure_commitment"] == 0.0 and f < T and cdf[f] != 1.0:
            bad.append(f"azure_commitment = 0 not met in its first month (P = {cdf[f]})")
    # repayment: what counts toward recouping (MODEL.md v2 A, B) is at most, pathwise,
    # the receipts (or the economic return, with the Azure margin counted) plus the revenue
    # share paid before the start
    recoup = deal.get("recoup_from", ["profit_share"])
    rep = s["repayment"]
    pbs = deal.get("revenue_share_paid_before_start", 0.0) if "revenue_share" in recoup \
        else 0.0
    no_margin = params.get("azure_gross_margin", 0.0) == 0.0
    # no revenue share is ever paid: every rate 0, or every cap 0 (from the start: a
    # month reaching a cap of 0 pays what is left of it, nothing)
    rs_zero = all((v or 0.0) == 0.0 for v in _terms(deal, "revenue_share")) or (
        all(c == 0.0 for c in caps) and from_start)
    ps_zero = all((v if v is not None else 0.75) == 0.0
                  for v in _terms(deal, "profit_share_until_recouped")) or \
        all(v == 0.0 for v in _terms(deal, "profit_cap"))
    never = (("profit_share" not in recoup or ps_zero)
             and ("revenue_share" not in recoup or (rs_zero and pbs == 0.0))
             and ("azure_margin" not in recoup or no_margin))
    if never and rep["probability_not_by_horizon"] != 1.0:
        bad.append("repaid although nothing can count toward recouping")
    if pbs >= s["investment"] and rep["cdf"]["probability"][0] != 1.0:
        bad.append(f"revenue share paid before the start {pbs} >= investment "
                   f"{s['investment']} but not repaid in the first month")
    inv = s["investment"]
    counted = "microsoft_economic_return" if "azure_margin" in recoup else \
        "microsoft_receipts"
    rec = hor[counted]
    by_horizon = 1.0 - rep["probability_not_by_horizon"]
    if rec["mean"] == 0.0 and pbs < inv and by_horizon > 0.0:
        # non-negative per-path totals, all exactly 0
        bad.append(f"P(repaid by the horizon) = {by_horizon} with no {counted} at all and "
                   f"{pbs} paid before the start (investment {inv!r})")
    for p in PCTS:
        hi = rec["quantiles"][p]["ci95_high"]
        # (with a paid-before-start, recouped and receipts + pbs differ by its rounding)
        if hi is not None and (hi + pbs) * (1 + 1e-9) < inv and \
                by_horizon > 1.0 - float(p[1:]) / 100 + 1e-9:
            bad.append(f"P(repaid by the horizon) = {by_horizon} but at least {p[1:]}% of "
                       f"paths received under {hi} (+ {pbs} before the start) < investment "
                       f"{inv}")
            break
    return bad


# --- version 3: funding, present values, Microsoft's whole position ---------------------
#
# A generated version-3 config is validated and run by the command line in float32 (the
# default dtype): its summary.json passes every check above (version 3's event, stock and
# horizon totals included) and :func:`check_v3_summary`; and the same paths go through the
# run's kernel (KernelSpec, float32), whose per-path rows give the path-by-path invariants
# (:func:`check_v3_paths`) and must agree with the summary (same paths, same rows).

#: Relative rounding between two float64 running sums of the same monthly flows taken in a
#: different order or grouping (<= 2400 months: ~2400 x 2^-53 < 3e-13), with margin.
REL_SUMS = 1e-9
#: Version 3's horizon totals that are never negative (``mcsim.layout.NON_NEGATIVE_TOTALS``).
V3_NON_NEGATIVE = ("funding_to_find", "pv_cumulative_azure_spend",
                   "pv_microsoft_economic_return", "microsoft_equity_value",
                   "microsoft_whole_position", "pv_microsoft_equity_value",
                   "pv_microsoft_whole_position")


def v3_mechanisms(cfg: dict) -> frozenset:
    """The version-3 mechanisms a config dict uses."""
    return frozenset(m for m, on in (
        ("funding", "funding" in cfg),
        ("discount", "discount_rate" in cfg["simulation"]),
        ("equity", "microsoft_equity_stake" in cfg["parameters"])) if on)


def _per_path(config, paths: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """The run's kernel (float32) on paths 0 .. paths-1: stats [S, n], event months
    [E, n] and the drawn parameters (float64 copies of the kernel's values)."""
    import jax
    import jax.numpy as jnp

    from mcsim.engine.kernel import DTYPES, KernelSpec, build_kernel, kernel_inputs

    spec = KernelSpec.for_config(config, "float32")
    kernel, sampler = build_kernel(spec), spec.sampler

    @jax.jit
    def run(inputs, idx):
        theta = sampler.draw(inputs.args, idx, DTYPES["float32"], antithetic=spec.antithetic)
        out = kernel(inputs, idx)
        return out.stats, out.event_months, theta

    stats, months, theta = jax.device_get(run(kernel_inputs(config),
                                              jnp.arange(paths, dtype=jnp.uint32)))
    theta = {k: np.broadcast_to(np.asarray(v, np.float64), (paths,)) for k, v in theta.items()
             if not k.startswith("_")}
    return np.asarray(stats, np.float64), np.asarray(months), theta


def run_and_check_v3(text: str, workdir: Path, paths: int = 1024) -> dict:
    """Validate and run a version-3 config text with the command line (float32), check its
    summary (:func:`check_summary`, :func:`check_v3_summary`), run the same paths through
    its kernel and check them (:func:`check_v3_paths`). Raises :class:`RunFailure`;
    returns the summary."""
    from mcsim import load_config
    from mcsim.layout import StatLayout

    summary = run_and_check(text, workdir, dtypes=("float32",), paths=paths)["float32"]
    cfg = _toml(text)
    step = "kernel float32, path by path"
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            config = load_config(Path(workdir) / "config.toml")
            stats, months, theta = _per_path(config, paths)
    except Exception as exc:  # noqa: BLE001 - any exception is a crash
        import traceback

        raise RunFailure("crash", step, "".join(traceback.format_exception(exc))[-3000:]) \
            from None
    if caught:
        raise RunFailure("warning", step, " | ".join(
            f"{w.category.__name__}: {w.message} ({w.filename}:{w.lineno})"
            for w in caught)[:2000])
    layout = StatLayout.of(config)
    problems = check_v3_paths(layout, stats, months, theta, cfg, config)
    problems += check_v3_summary(summary, layout, stats, months, cfg)
    if problems:
        raise RunFailure("invariant", step, "; ".join(problems[:8]))
    return summary


def _le(a, b, scale, rel: float = REL_SUMS) -> np.ndarray:
    """a <= b path by path, up to ``rel`` of ``scale`` (arrays)."""
    return a <= b + rel * np.abs(scale) + 1e-300


def check_v3_paths(layout, stats: np.ndarray, months: np.ndarray, theta: dict, cfg: dict,
                   config) -> list[str]:
    """Version 3's invariants (MODEL.md E-H), path by path, of the kernel's float32 rows
    ``stats`` [S, n], event months ``months`` [E, n] and drawn parameters ``theta``:

    * the layout has exactly the config's mechanisms' rows, stock and event; every row finite;
    * funding: funding_to_find >= 0, and 0 exactly when the funding-gap month is censored;
      cash at each year end >= -funding_to_find (>= 0 on a path without a gap); the funding
      still to be found between the deepest cumulative loss less cash_0 and all rounds, and
      less cash_0 alone (bit for bit the deepest loss with no cash and no rounds);
    * present values of a non-negative flow (Azure spend, Microsoft's economic return)
      between the horizon month's discount factor times the undiscounted total and that
      total (equal with a rate of 0, as the present value of profit); the economic net's
      present value against the undiscounted investment;
    * equity value >= 0, at most stake x multiple x cumulative revenue (equal when the run
      is at most 12 months; the last calendar year's revenue when it ends in a December),
      0 with a stake of 0; whole position = economic return + equity value; its present
      value = the economic return's + the equity value discounted from the horizon."""
    from mcsim.layout import HORIZON_TOTALS, v3_stocks, v3_totals

    bad: list[str] = []
    T = layout.grid.num_months
    n = stats.shape[1]
    want = v3_mechanisms(cfg)
    if layout.v3 != want:
        return [f"layout mechanisms {sorted(layout.v3)} != the config's {sorted(want)}"]
    if layout.horizon_totals != HORIZON_TOTALS + v3_totals(want):
        bad.append(f"horizon totals {layout.horizon_totals}")
    if layout.stocks != STOCKS + v3_stocks(want):
        bad.append(f"stocks {layout.stocks} with mechanisms {sorted(want)}")
    if ("funding_gap" in layout.event_names) != ("funding" in want):
        bad.append(f"events {layout.event_names} with mechanisms {sorted(want)}")
    finite = np.isfinite(stats)
    if not finite.all():
        row = int(np.argwhere(~finite)[0][0])
        bad.append(f"a non-finite row {row} of {stats.shape[0]} on "
                   f"{int((~finite.all(0)).sum())} paths")
    if bad:
        return bad
    h = {name: stats[layout.row(name)] for name in layout.horizon_totals}
    econ = h["microsoft_economic_return"]
    inv = float(config.deal.investment)
    annual = lambda f: stats[layout.rows(f)]  # noqa: E731 - [Y, n]
    # the magnitudes of a path's monthly flows, summed: every running sum's scale
    flows_scale = sum(np.abs(annual(f)).sum(0) for f in (
        "revenue", "compute_spend", "other_opex", "revenue_share", "reverse_revenue_share",
        "azure_commitment_shortfall", "microsoft_azure_margin")) + h["microsoft_receipts"]

    def fail(mask: np.ndarray, what: str) -> None:
        if mask.any():
            i = int(np.argmax(mask))
            bad.append(f"{what} on {int(mask.sum())} of {n} paths (path {i})")

    for name in V3_NON_NEGATIVE:
        if name in h:
            fail(~(h[name] >= 0), f"{name} < 0")
    if "funding" in want:
        find = h["funding_to_find"]
        gap = months[layout.event_index("funding_gap")]
        fail((find == 0) != (gap == T), "funding_to_find == 0 with a funding gap, or > 0 "
             "without one")
        cash = stats[layout.rows("cash")]  # [Y, n]: K at each year's last month
        fail(~(cash.min(0) >= -find), "a year-end cash below -funding_to_find")
        fail((gap == T) & ~(cash.min(0) >= 0), "a negative year-end cash without a gap")
        c0 = np.asarray(theta.get("_f64_cash_0", theta["cash_0"]), np.float64)
        fail(~(c0 >= 0), "cash_0 drawn < 0")
        rounds = float(sum(d for _, d in config.funding.rounds))
        deepest = h["deepest_cumulative_loss"]
        sc = flows_scale + c0 + rounds
        # K_t = cash_0 + rounds so far + (P - q) so far: between cash_0 + the running sum
        # of P - q (the deepest loss's) and cash_0 + all rounds + that running sum
        fail(~_le(find, np.maximum(0.0, deepest - c0), sc),
             "funding_to_find > max(0, deepest cumulative loss - cash_0)")
        fail(~_le(np.maximum(0.0, deepest - c0 - rounds), find, sc),
             "funding_to_find < deepest cumulative loss - cash_0 - all rounds")
        if rounds == 0.0:
            fail((c0 == 0.0) & (find != deepest), "funding_to_find != the deepest "
                 "cumulative loss with no cash and no rounds")
    if "discount" in want:
        r = config.simulation.discount_rate
        hd = math.exp(-r * (max(T - 1, 0) / 12.0))  # the horizon month's factor
        azure = stats[layout.rows("cumulative_azure_spend")][-1]
        for pv, total in (("pv_cumulative_azure_spend", azure),
                          ("pv_microsoft_economic_return", econ)):
            sc = np.abs(total) + flows_scale
            fail(~_le(h[pv], total, sc), f"{pv} > its undiscounted total")
            fail(~_le(hd * total, h[pv], sc), f"{pv} < the horizon's factor {hd} x its "
                 "undiscounted total")
            if r == 0.0:
                fail(~_le(np.abs(h[pv] - total), 0.0, sc), f"{pv} != its total at rate 0")
        if r == 0.0:
            fail(~_le(np.abs(h["pv_cumulative_profit"] - h["cumulative_profit"]), 0.0,
                      flows_scale), "pv_cumulative_profit != cumulative profit at rate 0")
        # the investment was paid before the start: not discounted
        fail(~_le(np.abs(h["pv_microsoft_economic_net"] - (
            h["pv_microsoft_economic_return"] - inv)), 0.0,
            np.abs(h["pv_microsoft_economic_return"]) + inv),
            "pv_microsoft_economic_net != pv economic return - investment")
    if "equity" in want:
        eq, whole = h["microsoft_equity_value"], h["microsoft_whole_position"]
        # the kernel takes version 3's parameters as drawn, in float64 (_f64_NAME)
        stake, mult = (np.asarray(theta.get(f"_f64_{n}", theta[n]), np.float64)
                       for n in ("microsoft_equity_stake", "valuation_multiple"))
        fail(~((stake >= 0) & (stake <= 1) & (mult > 0)), "a stake outside [0, 1] or a "
             "multiple <= 0 drawn")
        fail(~_le(np.abs(whole - (econ + eq)), 0.0, np.abs(econ) + eq),
             "whole position != economic return + equity value")
        fail((stake == 0) & (eq != 0), "equity value != 0 with a stake of 0")
        cap = stake * mult * h["cumulative_revenue"]
        fail(~_le(eq, cap, cap), "equity value > stake x multiple x cumulative revenue")
        if T <= 12:
            fail(~_le(np.abs(eq - cap), 0.0, cap), "equity value != stake x multiple x "
                 "revenue of a run of at most 12 months")
        elif layout.grid.label(T - 1).endswith("-12"):
            # the annual row sums the kernel's float32 monthly revenue: its rounding
            last = stake * mult * annual("revenue")[-1]
            fail(~_le(np.abs(eq - last), 0.0, last, REL32), "equity value != stake x "
                 "multiple x the last calendar year's revenue (a run ending in December)")
        if "discount" in want:
            pv_eq, pv_whole = h["pv_microsoft_equity_value"], h["pv_microsoft_whole_position"]
            fail(~_le(np.abs(pv_eq - hd * eq), 0.0, eq), "pv equity value != the horizon's "
                 f"factor {hd} x equity value")
            fail(~_le(pv_eq, eq, eq), "pv equity value > equity value")
            fail(~_le(np.abs(pv_whole - (h["pv_microsoft_economic_return"] + pv_eq)), 0.0,
                      h["pv_microsoft_economic_return"] + pv_eq),
                 "pv whole position != pv economic return + pv equity value")
            fail(~_le(pv_whole, whole, np.abs(whole) + flows_scale),
                 "pv whole position > whole position")
    return bad


def check_v3_summary(s: dict, layout, stats: np.ndarray, months: np.ndarray,
                     cfg: dict) -> list[str]:
    """Version 3 in a float32 run's summary.json, against the same paths' kernel rows:
    exactly the config's version-3 blocks; every version-3 horizon mean the per-path mean
    (float64 sums in another order: REL_SUMS of the mean magnitude), each year's mean cash
    too; the funding gap's cdf the per-path months'; P(no gap by the horizon) = 1 exactly
    when the mean funding to find is 0; mean whole position = mean economic return + mean
    equity value; a present value's mean <= its undiscounted mean."""
    from mcsim.layout import v3_totals

    bad: list[str] = []
    want = v3_mechanisms(cfg)
    hor = s["horizon"]
    names = v3_totals(want)
    extra = [k for k in hor if k not in HORIZON and k not in names]
    if extra or any(k not in hor for k in names):
        bad.append(f"summary horizon blocks {list(hor)} for mechanisms {sorted(want)}")
        return bad
    if ("funding_gap" in s) != ("funding" in want) or \
            ("cash" in s["stocks"]) != ("funding" in want):
        bad.append(f"funding_gap / stocks.cash in the summary with {sorted(want)}")
        return bad
    n = stats.shape[1]
    for name in names:
        m = hor[name]["mean"]
        x = stats[layout.row(name)]
        if m is None or not math.isfinite(m) or \
                abs(m - x.mean()) > REL_SUMS * np.abs(x).mean() + 1e-300:
            bad.append(f"horizon.{name}.mean = {m} != the per-path mean {x.mean()!r}")
    if "funding" in want:
        T = layout.grid.num_months
        cash = stats[layout.rows("cash")]
        for y, m in enumerate(s["stocks"]["cash"]["mean"]):
            if m is None or abs(m - cash[y].mean()) > REL_SUMS * np.abs(cash[y]).mean() + 1e-300:
                bad.append(f"stocks.cash.mean[{y}] = {m} != the per-path mean "
                           f"{cash[y].mean()!r}")
        gap = months[layout.event_index("funding_gap")]
        counts = np.bincount(gap, minlength=T + 1)
        cdf = np.cumsum(counts[:T]) / n
        got = s["funding_gap"]["cdf"]["probability"]
        if not np.allclose(got, cdf, rtol=0, atol=1e-12):
            bad.append("funding_gap.cdf differs from the per-path months'")
        never = s["funding_gap"]["probability_not_by_horizon"]
        if (never == 1.0) != (hor["funding_to_find"]["mean"] == 0.0):
            bad.append(f"P(no funding gap by the horizon) = {never} with a mean funding to "
                       f"find of {hor['funding_to_find']['mean']}")
    if "equity" in want:
        e, q, w = (hor[k]["mean"] for k in ("microsoft_economic_return",
                                             "microsoft_equity_value",
                                             "microsoft_whole_position"))
        if not abs(w - (e + q)) <= REL_SUMS * (abs(e) + q) + 1e-300:
            bad.append(f"mean whole position {w} != economic return {e} + equity {q}")
    if "discount" in want:
        azure = s["cumulative_azure_spend"]["mean"][-1]
        for pv, total in (("pv_cumulative_azure_spend", azure),
                          ("pv_microsoft_economic_return",
                           hor["microsoft_economic_return"]["mean"])):
            if not _tol_le(hor[pv]["mean"], total, REL_SUMS):
                bad.append(f"mean {pv} {hor[pv]['mean']} > its undiscounted mean {total}")
    return bad
