"""Which per-path statistics a run reduces, and in which rows of the accumulators."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from .events import Event
from .events import table as events_table
from .months import MonthGrid

#: Calendar-year flows reported per year (MODEL.md "What every run reports", item 2, then
#: version 2's additions, C), $ per year.
V1_ANNUAL_FLOWS = ("azure_spend", "azure_inference_spend", "revenue", "revenue_share")
V2_ANNUAL_FLOWS = ("inference_spend", "training_spend", "other_opex", "compute_spend",
                   "profit", "net_revenue_share", "reverse_revenue_share",
                   "azure_commitment_shortfall", "microsoft_azure_margin",
                   "paid_to_microsoft")
ANNUAL_FLOWS = V1_ANNUAL_FLOWS + V2_ANNUAL_FLOWS
#: Annual flows that can be negative (the others never are, by construction).
SIGNED_FLOWS = ("profit", "net_revenue_share", "paid_to_microsoft")
#: Levels at the last month of each calendar year (version 2, C), with their units.
STOCKS = ("weekly_active_users", "paying_subscribers", "tokens_per_month", "gpu_price",
          "azure_share")
#: Version 3's stock (MODEL.md "Version 3 additions", E): OpenAI's cash, signed (negative:
#: money still to be found); a row only of a layout with ``funding``.
V3_STOCKS = {"funding": ("cash",)}
STOCK_UNITS = {"weekly_active_users": "users", "paying_subscribers": "subscribers",
               "tokens_per_month": "tokens per month",
               "gpu_price": "$ per H100-equivalent GPU-hour",
               "azure_share": "fraction of compute spend",
               "cash": "$ (negative: money still to be found)"}
#: Stocks that can be negative.
SIGNED_STOCKS = ("cash",)
#: A stock's values times this lie in the money histogram's range ($1 to $10^16): prices
#: and shares are below 1, token counts beyond 10^16.
STOCK_BIN_SCALE = {"weekly_active_users": 1.0, "paying_subscribers": 1.0,
                   "tokens_per_month": 1e-6, "gpu_price": 1e6, "azure_share": 1e9}


class HorizonTotals(NamedTuple):
    """Per-path totals at the horizon (MODEL.md item 5, then version 2's), $. Its fields
    are the horizon rows of the statistics, in this order: the kernels build it by
    keyword (:func:`mcsim.model.horizon_totals`) and the reports read it by name."""

    cumulative_revenue: Any            # sum of V
    cumulative_profit: Any             # sum of P
    microsoft_receipts: Any            # profit share + revenue share paid in the run
    microsoft_net: Any                 # receipts - investment
    deepest_cumulative_loss: Any       # -min(0, running sum of P - q)
    microsoft_economic_return: Any     # receipts + Microsoft's Azure margin
    microsoft_economic_net: Any        # economic return - investment


HORIZON_TOTALS = HorizonTotals._fields
#: Version 3's horizon totals (MODEL.md "Version 3 additions", E-G), $, after version 2's and
#: only in a layout whose config uses their mechanism (a config using none keeps version
#: 2's rows exactly): each is keyed by the mechanisms it needs, all of them.
V3_TOTALS: tuple[tuple[frozenset, tuple[str, ...]], ...] = (
    # max(0, -min_t K_t): outside money a path still needs beyond its cash and rounds
    (frozenset({"funding"}), ("funding_to_find",)),
    # sums of the discounted monthly flows (money before the start is not discounted)
    (frozenset({"discount"}), ("pv_cumulative_azure_spend", "pv_cumulative_profit",
                               "pv_microsoft_economic_return", "pv_microsoft_economic_net")),
    # stake x valuation multiple x the last 12 months' revenue; economic return + equity
    (frozenset({"equity"}), ("microsoft_equity_value", "microsoft_whole_position")),
    # the equity value discounted from the horizon's month; the position's present value
    (frozenset({"discount", "equity"}), ("pv_microsoft_equity_value",
                                         "pv_microsoft_whole_position")),
)
#: Version 3's mechanisms, each optional and standing alone (MODEL.md H).
V3_MECHANISMS = ("funding", "discount", "equity")
#: Horizon totals that are never negative by construction (the others are profits and nets).
NON_NEGATIVE_TOTALS = ("cumulative_revenue", "microsoft_receipts", "deepest_cumulative_loss",
                       "microsoft_economic_return", "funding_to_find",
                       "pv_cumulative_azure_spend", "pv_microsoft_economic_return",
                       "microsoft_equity_value", "microsoft_whole_position",
                       "pv_microsoft_equity_value", "pv_microsoft_whole_position")
#: Every stock and every horizon total any layout may have.
ALL_STOCKS = STOCKS + tuple(s for v in V3_STOCKS.values() for s in v)
ALL_HORIZON_TOTALS = HORIZON_TOTALS + tuple(n for _, names in V3_TOTALS for n in names)
#: The groups of rows a Results can be asked for (a stock of version 3 only when its
#: layout has it).
GROUPS = ("cumulative_azure_spend", *ANNUAL_FLOWS, *ALL_STOCKS, "horizon")


def v3_mechanisms(config: Any) -> frozenset:
    """The version-3 mechanisms a config uses (MODEL.md H: each stands alone): ``funding``
    with a [funding] table, ``discount`` with simulation.discount_rate, ``equity`` with
    parameters.microsoft_equity_stake."""
    on = {"funding": getattr(config, "funding", None) is not None,
          "discount": getattr(config.simulation, "discount_rate", None) is not None,
          "equity": "microsoft_equity_stake" in config.parameters}
    return frozenset(m for m in V3_MECHANISMS if on[m])


def v3_stocks(v3: frozenset) -> tuple[str, ...]:
    """Version 3's stocks of a layout using the mechanisms ``v3``."""
    return tuple(s for m in V3_MECHANISMS if m in v3 for s in V3_STOCKS.get(m, ()))


def v3_totals(v3: frozenset) -> tuple[str, ...]:
    """Version 3's horizon totals of a layout using the mechanisms ``v3``, in row order."""
    return tuple(n for needs, names in V3_TOTALS if needs <= v3 for n in names)


@dataclass(frozen=True)
class StatLayout:
    """Rows of the [S, ...] statistic arrays: cumulative Azure spend at every month (T rows),
    then each annual flow for every calendar year (Y rows each), each stock at every
    year's last month (Y rows each), then the horizon totals."""

    grid: MonthGrid
    #: the first-passage events, counted as one [E, T+1] array beside the rows
    #: (:mod:`mcsim.events`; the table in force when the layout is made, less the events
    #: of a version-3 mechanism the config does not use)
    events: tuple[Event, ...] = None  # type: ignore[assignment]
    #: the version-3 mechanisms the config uses (:data:`V3_MECHANISMS`): their stocks,
    #: totals and events are rows of this layout, and no one else's
    v3: frozenset = frozenset()

    def __post_init__(self):
        object.__setattr__(self, "v3", frozenset(self.v3))
        unknown = self.v3 - set(V3_MECHANISMS)
        if unknown:
            raise ValueError(f"v3 = {sorted(unknown)}: expected mechanisms among "
                             f"{', '.join(V3_MECHANISMS)}")
        if self.events is None:
            object.__setattr__(self, "events", events_table(self.v3))

    @classmethod
    def of(cls, config: Any, grid: MonthGrid | None = None) -> StatLayout:
        """The layout of ``config``'s run (on ``grid``, default its own)."""
        return cls(grid or config.grid, v3=v3_mechanisms(config))

    @property
    def stocks(self) -> tuple[str, ...]:
        """The stocks of this layout: version 2's, then version 3's in use."""
        return STOCKS + v3_stocks(self.v3)

    @property
    def horizon_totals(self) -> tuple[str, ...]:
        """The horizon totals of this layout: version 2's, then version 3's in use."""
        return HORIZON_TOTALS + v3_totals(self.v3)

    @property
    def event_names(self) -> tuple[str, ...]:
        return tuple(e.name for e in self.events)

    def event_index(self, name: str) -> int:
        """Row of event ``name`` in the [E, T+1] event counts."""
        names = self.event_names
        if name not in names:
            raise ValueError(f"event = {name!r}: expected one of {', '.join(names)}")
        return names.index(name)

    def signature(self) -> dict:
        """What a checkpoint of this layout must match: the rows' and the events' names
        and sizes (a change of layout between versions is then a clear refusal)."""
        return {"months": self.grid.num_months, "years": self.num_years,
                "annual_flows": list(ANNUAL_FLOWS), "stocks": list(self.stocks),
                "horizon_totals": list(self.horizon_totals),
                "events": list(self.event_names), "num_stats": self.num_stats}

    @property
    def num_years(self) -> int:
        return len(self.grid.years)

    @property
    def num_stats(self) -> int:
        return self.grid.num_months + (len(ANNUAL_FLOWS) + len(self.stocks)) \
            * self.num_years + len(self.horizon_totals)

    def rows(self, group: str) -> slice:
        """Row slice of ``"cumulative_azure_spend"``, an annual flow, or ``"horizon"``."""
        T, Y = self.grid.num_months, self.num_years
        if group == "cumulative_azure_spend":
            return slice(0, T)
        if group in ANNUAL_FLOWS:
            k = ANNUAL_FLOWS.index(group)
            return slice(T + k * Y, T + (k + 1) * Y)
        if group in self.stocks:
            k = len(ANNUAL_FLOWS) + self.stocks.index(group)
            return slice(T + k * Y, T + (k + 1) * Y)
        if group == "horizon":
            start = T + (len(ANNUAL_FLOWS) + len(self.stocks)) * Y
            return slice(start, start + len(self.horizon_totals))
        groups = ("cumulative_azure_spend", *ANNUAL_FLOWS, *self.stocks, "horizon")
        if group in ALL_STOCKS:
            raise ValueError(f"group = {group!r}: not a stock of this run (it needs "
                             "[funding] in the config); expected one of " + ", ".join(groups))
        hint = (f" ({group} is a row of \"horizon\")" if group in ALL_HORIZON_TOTALS else "")
        raise ValueError(f"group = {group!r}: expected one of {', '.join(groups)}{hint}")

    def non_negative(self) -> np.ndarray:
        """bool [S]: rows never negative by construction (cumulative spend, every annual
        flow, and :data:`NON_NEGATIVE_TOTALS`), whose intervals therefore start at $0."""
        out = np.ones(self.num_stats, bool)
        for flow in SIGNED_FLOWS:
            out[self.rows(flow)] = False
        for stock in SIGNED_STOCKS:
            if stock in self.stocks:
                out[self.rows(stock)] = False
        h = self.rows("horizon").start
        for k, name in enumerate(self.horizon_totals):
            out[h + k] = name in NON_NEGATIVE_TOTALS
        return out

    def bin_scale(self) -> np.ndarray:
        """float64 [S]: the factor each row is multiplied by before it is binned (1 but for
        the stocks, :data:`STOCK_BIN_SCALE`); quantiles are divided by it again."""
        out = np.ones(self.num_stats)
        for name, scale in STOCK_BIN_SCALE.items():
            out[self.rows(name)] = scale
        return out

    def row(self, name: str) -> int:
        """Row of one horizon total."""
        if name not in self.horizon_totals:
            raise ValueError(f"name = {name!r}: expected one of "
                             f"{', '.join(self.horizon_totals)}")
        return self.rows("horizon").start + self.horizon_totals.index(name)
