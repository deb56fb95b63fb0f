"""Which per-path statistics a run reduces, and in which rows of the accumulators."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .months import MonthGrid

#: Calendar-year flows reported per year (MODEL.md "What every run reports", item 2).
ANNUAL_FLOWS = ("azure_spend", "azure_inference_spend", "revenue", "revenue_share")
#: Per-path totals at the horizon (item 5), $.
HORIZON_TOTALS = ("cumulative_revenue", "cumulative_profit", "microsoft_receipts",
                  "microsoft_net", "deepest_cumulative_loss")
#: Horizon totals that are never negative by construction (the others are profits and nets).
NON_NEGATIVE_TOTALS = ("cumulative_revenue", "microsoft_receipts", "deepest_cumulative_loss")
#: The groups of rows a Results can be asked for.
GROUPS = ("cumulative_azure_spend", *ANNUAL_FLOWS, "horizon")


@dataclass(frozen=True)
class StatLayout:
    """Rows of the [S, ...] statistic arrays: cumulative Azure spend at every month (T rows),
    then each annual flow for every calendar year (Y rows each), then the horizon totals."""

    grid: MonthGrid

    @property
    def num_years(self) -> int:
        return len(self.grid.years)

    @property
    def num_stats(self) -> int:
        return self.grid.num_months + len(ANNUAL_FLOWS) * self.num_years + len(HORIZON_TOTALS)

    def rows(self, group: str) -> slice:
        """Row slice of ``"cumulative_azure_spend"``, an annual flow, or ``"horizon"``."""
        T, Y = self.grid.num_months, self.num_years
        if group == "cumulative_azure_spend":
            return slice(0, T)
        if group in ANNUAL_FLOWS:
            k = ANNUAL_FLOWS.index(group)
            return slice(T + k * Y, T + (k + 1) * Y)
        if group == "horizon":
            start = T + len(ANNUAL_FLOWS) * Y
            return slice(start, start + len(HORIZON_TOTALS))
        hint = (f" ({group} is a row of \"horizon\")" if group in HORIZON_TOTALS else "")
        raise ValueError(f"group = {group!r}: expected one of {', '.join(GROUPS)}{hint}")

    def non_negative(self) -> np.ndarray:
        """bool [S]: rows never negative by construction (cumulative spend, every annual
        flow, and :data:`NON_NEGATIVE_TOTALS`), whose intervals therefore start at $0."""
        out = np.ones(self.num_stats, bool)
        h = self.rows("horizon").start
        for k, name in enumerate(HORIZON_TOTALS):
            out[h + k] = name in NON_NEGATIVE_TOTALS
        return out

    def row(self, name: str) -> int:
        """Row of one horizon total."""
        if name not in HORIZON_TOTALS:
            raise ValueError(f"name = {name!r}: expected one of {', '.join(HORIZON_TOTALS)}")
        return self.rows("horizon").start + HORIZON_TOTALS.index(name)
