"""Precision on demand: run until named standard errors reach their targets.

Stopping rule. The run is looked at after ``first_check * 2^k`` paths (k = 0, 1, 2, ...;
``first_check`` 65,536 by default) and stops at the first look where every named standard
error is at or below its target, or at the path budget (``simulation.paths``). Because
the paths are fixed by their indices, a run stopped after n paths is exactly the run of n
paths: same seed, same numbers, whatever the chunking or devices.

Why this rule: looks on a doubling schedule are few (about log2(budget / first_check)),
and no look comes before ``first_check`` paths, where the standard error is itself estimated
to about 1/sqrt(2 n) relative; stopping when an estimated SE first falls below a target
then keeps the 95% intervals' coverage close to nominal (Chow and Robbins, 1965). A test
measures the coverage over many seeds (``tests/test_precision_on_demand.py``).

Statistics (``STAT=VALUE``; VALUE in the statistic's units, or ``N%`` of its estimate):

* ``cumulative_azure_spend``: mean cumulative Azure spend at the horizon, $;
* ``p_not_repaid``: P(Microsoft not repaid by the horizon), a probability;
* ``p_credits_left``: P(Azure credits not exhausted by the horizon);
* any horizon total, e.g. ``microsoft_net``: its mean, $.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

from .accumulators import Accumulator
from .config import ConfigError
from .layout import ALL_HORIZON_TOTALS, StatLayout

FIRST_CHECK = 65536
#: what a precision target may name (a version-3 total only when the config has its key)
STATS = ("cumulative_azure_spend", "p_not_repaid", "p_credits_left", *ALL_HORIZON_TOTALS)


def parse_targets(target_se: Mapping[str, float | str]) -> dict[str, tuple[float, bool]]:
    """``{STAT: VALUE}`` (VALUE a positive number, or ``"N%"`` of the estimate) ->
    ``{STAT: (value, relative)}`` (a relative value as a fraction).

    Raises ConfigError naming ``target_se`` (an unknown statistic) or ``target_se[STAT]``
    (a value that is not a positive number or percentage).
    """
    out = {}
    for stat, value in target_se.items():
        if stat not in STATS:
            raise ConfigError("target_se", stat, f"a statistic, one of {', '.join(STATS)}")
        text = value.strip() if isinstance(value, str) else value
        relative = isinstance(text, str) and text.endswith("%")
        try:
            if isinstance(text, bool):
                raise ValueError
            number = float(text.rstrip("%") if isinstance(text, str) else text)
        except (TypeError, ValueError):
            number = math.nan
        if not math.isfinite(number) or number <= 0:
            raise ConfigError(f"target_se[{stat!r}]", value,
                              "a positive number (or \"N%\" of the estimate)")
        out[stat] = (number / 100.0 if relative else number, relative)
    return out


def estimate(acc: Accumulator, layout: StatLayout, stat: str,
             pairs: bool = False) -> tuple[float, float]:
    """(estimate, standard error) of one statistic from the accumulators so far. With
    antithetic ``pairs``, a probability's error counts pairs (an upper bound, see
    :attr:`mcsim.results.Results.pair_factor`); a mean's comes from the pairs' means."""
    if stat in ("p_not_repaid", "p_credits_left"):
        event = "repayment" if stat == "p_not_repaid" else "credit_exhaustion"
        counts = acc.event_counts[layout.event_index(event)]
        n = max(int(counts.sum()), 1)  # the paths counted (a non-finite path's pair is not)
        p = counts[-1] / n
        units = n / 2 if pairs else n
        return float(p), float(math.sqrt(max(p * (1 - p), 0.0) / units))
    row = layout.grid.num_months - 1 if stat == "cumulative_azure_spend" else layout.row(stat)
    m = acc.moments
    return float(m.mean[row]), float(m.stderr()[row])


def stopping_rule(targets: Mapping[str, tuple[float, bool]], layout: StatLayout,
                  pairs: bool = False) -> Callable[[Accumulator], bool]:
    """``should_stop(acc)``: every named SE at or below its target."""
    def should_stop(acc: Accumulator) -> bool:
        for stat, (value, relative) in targets.items():
            est, se = estimate(acc, layout, stat, pairs)
            limit = value * abs(est) if relative else value
            if not se <= limit:
                return False
        return True
    return should_stop


def stages(budget: int, first_check: int = FIRST_CHECK) -> list[int]:
    """The looks: first_check * 2^k below the budget."""
    out, n = [], first_check
    while n < budget:
        out.append(n)
        n *= 2
    return out


def report(acc: Accumulator, layout: StatLayout, targets, pairs: bool = False) -> dict:
    """What was asked and reached, for summary.json."""
    out = {}
    for stat, (value, relative) in targets.items():
        est, se = estimate(acc, layout, stat, pairs)
        out[stat] = {"target_se": value * abs(est) if relative else value,
                     "target": f"{value * 100:g}% of the estimate" if relative
                     else f"{value:.6g}",
                     "estimate": est, "se": se,
                     "met": bool(se <= (value * abs(est) if relative else value))}
    return {"paths_used": acc.paths, "targets": out,
            "rule": "looks after first_check * 2^k paths; stop at the first look with every "
                    "SE at or below its target, or at the path budget"}


def _value_text(stat: str, x: float) -> str:
    """A standard error in the statistic's unit: a probability as is, money in $B."""
    if stat.startswith("p_"):
        return f"{x:.4f}"
    return f"${x / 1e9:,.3g}B"


def stop_text(report: dict, budget: int) -> str:
    """Why a run with a precision target stopped where it did, in one line for the
    terminal: every target met at a look (with the paths used of the budget), or the
    budget spent with the targets still unmet named. ``report``: :func:`report`'s dict."""
    used = report["paths_used"]
    targets = report["targets"]

    def one(stat: str, t: dict) -> str:
        sign = "<=" if t["met"] else ">"
        return f"{stat} SE {_value_text(stat, t['se'])} {sign} {_value_text(stat, t['target_se'])}"

    unmet = {s: t for s, t in targets.items() if not t["met"]}
    if not unmet:
        early = "" if used >= budget else f", {budget - used:,} paths of the budget unused"
        return (f"precision target met: stopped at {used:,} of {budget:,} paths{early} ("
                + "; ".join(one(s, t) for s, t in targets.items()) + ")")
    return (f"precision target NOT met: the budget of {budget:,} paths was spent ("
            + "; ".join(one(s, t) for s, t in unmet.items())
            + "); raise --paths or loosen --target-se")


__all__ = ["FIRST_CHECK", "STATS", "estimate", "parse_targets", "report", "stages",
           "stop_text", "stopping_rule"]
