"""Public facts and where the model puts them: "facts vs model".

Each :class:`Fact` is a checkable figure from ``calibration.md`` (the row it comes from is
its ``source``): a flow summed over a window of months (several flows summed, e.g. Azure
spend plus net revenue share = "paid to Microsoft"), or a stock at a month (weekly active
users in October 2025). :func:`facts_vs_model` runs the config's own first paths through
the engine's kernel (:func:`mcsim.engine.kernel.build_kernel` with ``record_flows``) and
gives each fact's model distribution (p5, p25, p50, p75, p95) and the fact's percentile in
it, with that percentile's Monte Carlo standard error ``sqrt(q (1 - q) / n)``.

``firm`` facts (filings, and leaks that several outlets confirmed) are the ones a default
config should put between the model's 25th and 75th percentiles; the others inside its
central 90%.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np

from .config import Config
from .engine.kernel import KernelSpec, kernel_inputs
from .layout import STOCKS
from .months import MonthGrid, parse_month
from .qmc import sobol_points_for

#: Paths the comparison is computed from, and per compiled call.
FACT_PATHS = 16384
CALL_PATHS = 2048


@dataclass(frozen=True)
class Fact:
    """A public figure: ``flows`` summed over months ``start``..``end`` (inclusive), or
    ``stock`` at month ``end``; ``value`` in the flow's or stock's unit."""

    name: str
    value: float
    start: str
    end: str
    source: str                      # the row of calibration.md
    flows: tuple[str, ...] = ()
    stock: str | None = None
    firm: bool = False

    @property
    def unit(self) -> str:
        return "$" if self.flows else {"weekly_active_users": "users",
                                       "paying_subscribers": "subscribers"}.get(
            self.stock or "", "")


#: The checkable facts of calibration.md (§ = its section; the row's quantity in quotes).
FACTS: tuple[Fact, ...] = (
    Fact("Azure inference spend 2024", 3.77e9, "2024-01", "2024-12",
         '§3 "Azure inference spend" (leak, Nov 2025)', ("azure_inference_spend",), firm=True),
    Fact("Azure inference spend H1 2025", 5.02e9, "2025-01", "2025-06",
         '§3 "Azure inference spend" (leak)', ("azure_inference_spend",)),
    Fact("Azure inference spend Q1-Q3 2025", 8.67e9, "2025-01", "2025-09",
         '§3 "Azure inference spend" (leak)', ("azure_inference_spend",), firm=True),
    Fact("Net revenue share paid 2024", 0.4938e9, "2024-01", "2024-12",
         '§3 "Net revenue share paid" (leak)', ("net_revenue_share",), firm=True),
    Fact("Net revenue share paid H1 2025", 0.4547e9, "2025-01", "2025-06",
         '§3 "Net revenue share paid" (leak)', ("net_revenue_share",)),
    Fact("Net revenue share paid Q1-Q3 2025", 0.8659e9, "2025-01", "2025-09",
         '§3 "Net revenue share paid" (leak)', ("net_revenue_share",), firm=True),
    Fact("Revenue 2024", 3.7e9, "2024-01", "2024-12",
         '§3 "Audited 2025 accounts" (2024 revenue); §4 "2024"', ("revenue",), firm=True),
    Fact("Revenue H1 2025", 4.3e9, "2025-01", "2025-06", '§4 "H1 2025"', ("revenue",)),
    Fact("Revenue 2025", 13.07e9, "2025-01", "2025-12",
         '§3 "Audited 2025 accounts" (leak, FT-verified)', ("revenue",), firm=True),
    Fact("Revenue Q1 2026", 5.7e9, "2026-01", "2026-03", '§4 "Q1 2026"', ("revenue",)),
    Fact("Paid to Microsoft 2025", 17.2e9, "2025-01", "2025-12",
         '§3 "Paid to Microsoft in 2025"', ("paid_to_microsoft",), firm=True),
    Fact("Operating loss 2025 (profit)", -20.92e9, "2025-01", "2025-12",
         '§3 "Audited 2025 accounts": operating loss $20.92B', ("profit",), firm=True),
    Fact("Operating loss 2024 (profit: revenue less costs)", 3.7e9 - 12.48e9, "2024-01",
         "2024-12", '§3 "Audited 2025 accounts": 2024 revenue $3.7B, costs $12.48B',
         ("profit",)),
    Fact("Weekly active users Feb 2025", 400e6, "2025-02", "2025-02",
         '§5 "ChatGPT weekly active users"', stock="weekly_active_users"),
    Fact("Weekly active users Aug 2025", 700e6, "2025-08", "2025-08",
         '§5 "ChatGPT weekly active users"', stock="weekly_active_users"),
    Fact("Weekly active users Oct 2025", 800e6, "2025-10", "2025-10",
         '§5 "ChatGPT weekly active users" (6 Oct 2025)', stock="weekly_active_users",
         firm=True),
    Fact("Weekly active users Feb 2026", 900e6, "2026-02", "2026-02",
         '§5 "ChatGPT weekly active users" (27 Feb 2026)', stock="weekly_active_users",
         firm=True),
    Fact("Paying subscribers Jul 2025", 35e6, "2025-07", "2025-07",
         '§5 "Paying subscribers"', stock="paying_subscribers"),
    Fact("Paying subscribers Feb 2026", 50e6, "2026-02", "2026-02",
         '§5 "Paying subscribers" (Turley)', stock="paying_subscribers", firm=True),
    # version 3: the 2026 figures of section 9 (neither firm: press reports, "P")
    # §9 "Operating margin, Q1 2026": non-GAAP -122%, ~-$6.95B on ~$5.7B revenue. The
    # model's "operating loss" is its profit P (revenue less compute, other opex, the net
    # revenue share and any commitment shortfall: MODEL.md v2 D), before Microsoft's profit
    # share, as for the audited 2025 operating loss in FACTS: a profit share is a claim on
    # profit, not an operating cost (and it is 0 here: the waterfall ended in Oct 2025 and
    # the quarter is a loss). Not firm: a press report of a non-GAAP figure, which leaves
    # out items (stock compensation) that the model's other opex includes.
    Fact("Operating loss Q1 2026 (profit)", -6.95e9, "2026-01", "2026-03",
         '§9 "Operating margin, Q1 2026" (non-GAAP -122% of ~$5.7B)', ("profit",)),
    # §9 "Revenue, Q1 2026": run-rate $2B/month in March 2026 (~$25B annualised in Feb):
    # the model's revenue in the month of March 2026. Not firm: a press report of a
    # run-rate, which has no fixed definition.
    Fact("Revenue run-rate Mar 2026 (one month)", 2.0e9, "2026-03", "2026-03",
         '§9 "Revenue, Q1 2026" ($2B/month, Mar 2026)', ("revenue",)),
)


def facts_in(config: Config, facts: Sequence[Fact] = FACTS) -> list[Fact]:
    """The facts whose months lie inside the config's simulation."""
    first, last = (parse_month(m) for m in (config.grid.labels[0], config.grid.labels[-1]))
    return [f for f in facts if first <= parse_month(f.start) and parse_month(f.end) <= last]


@dataclass(frozen=True)
class _FactSeries:
    """What each fact reads of the kernel's recorded months, per path (the device part of
    the facts' reduction: hashable). ``series``: per fact, (flow names or one stock name,
    first month, last month). A fact's flows come back month by month and are summed on
    the host, in NumPy's order, as before the path runner (the same bits)."""

    series: tuple[tuple[tuple[str, ...], int, int], ...]

    def __call__(self, outs):
        out = outs[0]
        rows = {}
        for i, (names, a, b) in enumerate(self.series):
            if names[0] in STOCKS:
                rows[f"fact{i}"] = getattr(out.stocks, names[0])[b].astype(jnp.float64)
            else:  # [flows, months, n]
                rows[f"fact{i}"] = jnp.stack([getattr(out.flows, k)[a:b + 1]
                                              .astype(jnp.float64) for k in names])
        return rows


def fact_values(config: Config, facts: Sequence[Fact], dtype: str = "float32",
                num_paths: int | None = None) -> np.ndarray:
    """Each fact's value on each of the config's first paths, run on every local device
    (:func:`mcsim.engine.runner.run_paths`): [F, n] float64 (paths with a NaN or inf are
    left out)."""
    from .engine.runner import PathRows, run_paths

    # months after the last fact change none before it: simulate up to it only (in a
    # 2024-2040 run the facts end in 2026, and the loop was a tenth of the command's time)
    last = max((config.grid.index(f.end) for f in facts), default=0)
    grid = MonthGrid(config.grid.start, last + 1)
    n = min(num_paths or FACT_PATHS, config.simulation.paths)
    series = _FactSeries(tuple(
        ((f.stock,) if f.stock is not None else tuple(f.flows), grid.index(f.start),
         grid.index(f.end)) for f in facts))
    source = sobol_points_for(config)
    rows = run_paths([KernelSpec.for_config(config, dtype, grid=grid, record_flows=True)],
                     [kernel_inputs(config, grid)], PathRows(series, n), n,
                     chunk_size=CALL_PATHS,
                     uniforms=None if source is None else source.points(0, n))
    values = []
    for i, (names, _, _) in enumerate(series.series):
        x = rows[f"fact{i}"]
        values.append(x if names[0] in STOCKS else sum(f.sum(axis=0) for f in x))
    values = np.stack(values) if values else np.zeros((0, n))
    return values[:, rows["finite"]]


def facts_vs_model(config: Config, facts: Sequence[Fact] | None = None,
                   dtype: str = "float32", num_paths: int | None = None) -> list[dict]:
    """One row per fact inside the run: the fact, its source, the model's p5..p95 and the
    fact's percentile in the model (with its standard error)."""
    facts = facts_in(config, FACTS if facts is None else facts)
    if not facts:
        return []
    values = fact_values(config, facts, dtype, num_paths)
    n = values.shape[1]
    rows = []
    for f, v in zip(facts, values, strict=True):
        q = np.quantile(v, [0.05, 0.25, 0.5, 0.75, 0.95])
        below = float(np.mean(v < f.value) + 0.5 * np.mean(v == f.value))
        rows.append({"name": f.name, "value": f.value, "unit": f.unit, "source": f.source,
                     "firm": f.firm, "window": [f.start, f.end],
                     "measures": list(f.flows) or [f.stock],
                     "model": {f"p{p}": float(x) for p, x in zip((5, 25, 50, 75, 95), q,
                                                                 strict=True)},
                     "percentile": 100.0 * below,
                     "percentile_se": 100.0 * float(np.sqrt(max(below * (1 - below), 0.25 / n)
                                                            / n)),
                     "paths": n})
    return rows
