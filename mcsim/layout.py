"""Which per-path statistics a run reduces, and in which rows of the accumulators."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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
STOCK_UNITS = {"weekly_active_users": "users", "paying_subscribers": "subscribers",
               "tokens_per_month": "tokens per month",
               "gpu_price": "$ per H100-equivalent GPU-hour",
               "azure_share": "fraction of compute spend"}
#: A stock's values times this lie in the money histogram's range ($1 to $10^16): prices
#: and shares are below 1, token counts beyond 10^16.
STOCK_BIN_SCALE = {"weekly_active_users": 1.0, "paying_subscribers": 1.0,
                   "tokens_per_month": 1e-6, "gpu_price": 1e6, "azure_share": 1e9}
#: Per-path totals at the horizon (item 5, then version 2's), $.
HORIZON_TOTALS = ("cumulative_revenue", "cumulative_profit", "microsoft_receipts",
                  "microsoft_net", "deepest_cumulative_loss", "microsoft_economic_return",
                  "microsoft_economic_net")
#: Horizon totals that are never negative by construction (the others are profits and nets).
NON_NEGATIVE_TOTALS = ("cumulative_revenue", "microsoft_receipts", "deepest_cumulative_loss",
                       "microsoft_economic_return")
#: The groups of rows a Results can be asked for.
GROUPS = ("cumulative_azure_spend", *ANNUAL_FLOWS, *STOCKS, "horizon")


@dataclass(frozen=True)
class StatLayout:
    """Rows of the [S, ...] statistic arrays: cumulative Azure spend at every month (T rows),
    then each annual flow for every calendar year (Y rows each), each stock at every
    year's last month (Y rows each), then the horizon totals."""

    grid: MonthGrid

    @property
    def num_years(self) -> int:
        return len(self.grid.years)

    @property
    def num_stats(self) -> int:
        return self.grid.num_months + (len(ANNUAL_FLOWS) + len(STOCKS)) * self.num_years \
            + len(HORIZON_TOTALS)

    def rows(self, group: str) -> slice:
        """Row slice of ``"cumulative_azure_spend"``, an annual flow, or ``"horizon"``."""
        T, Y = self.grid.num_months, self.num_years
        if group == "cumulative_azure_spend":
            return slice(0, T)
        if group in ANNUAL_FLOWS:
            k = ANNUAL_FLOWS.index(group)
            return slice(T + k * Y, T + (k + 1) * Y)
        if group in STOCKS:
            k = len(ANNUAL_FLOWS) + STOCKS.index(group)
            return slice(T + k * Y, T + (k + 1) * Y)
        if group == "horizon":
            start = T + (len(ANNUAL_FLOWS) + len(STOCKS)) * Y
            return slice(start, start + len(HORIZON_TOTALS))
        hint = (f" ({group} is a row of \"horizon\")" if group in HORIZON_TOTALS else "")
        raise ValueError(f"group = {group!r}: expected one of {', '.join(GROUPS)}{hint}")

    def non_negative(self) -> np.ndarray:
        """bool [S]: rows never negative by construction (cumulative spend, every annual
        flow, and :data:`NON_NEGATIVE_TOTALS`), whose intervals therefore start at $0."""
        out = np.ones(self.num_stats, bool)
        for flow in SIGNED_FLOWS:
            out[self.rows(flow)] = False
        h = self.rows("horizon").start
        for k, name in enumerate(HORIZON_TOTALS):
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
        if name not in HORIZON_TOTALS:
            raise ValueError(f"name = {name!r}: expected one of {', '.join(HORIZON_TOTALS)}")
        return self.rows("horizon").start + HORIZON_TOTALS.index(name)
