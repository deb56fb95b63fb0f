"""The report's CSV tables (:func:`write_tables`): cumulative Azure spend by month, annual
flows, stocks, the first-passage CDFs and month quantiles, and the horizon totals, each
quantile with its 95% interval; with conditioned results the same tables again, suffixed
``_conditioned``.

Every table but repayment_cdf.csv is a frame of :class:`~mcsim.results.Results` written
as it is (:func:`write_frame`): the header is the frame's index names followed by its
columns, so CSV and API share one column scheme: ``p5``, ``p5_low``, ``p5_high``, ...
(the quantile and its 95% interval), ``mean``, ``mean_se`` (its standard error); months
as ``YYYY-MM``; years as integers with a ``partial`` flag (True/False); an undefined or
open (infinite) value, or a month beyond the horizon, as an empty cell.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..results import DEFAULT_PERCENTILES
from .format import write_csv
from .summary import parameter_unit, posterior_blocks

if TYPE_CHECKING:
    import pandas as pd

    from ..results import Results

#: the tables :func:`write_tables` writes for every run (and again with ``_conditioned``
#: before ``.csv`` for conditioned results), besides parameters.csv and the SMC tables
RESULT_TABLES = ("cumulative_azure_spend.csv", "annual.csv", "stocks.csv",
                 "repayment_cdf.csv", "event_quantiles.csv", "horizon_totals.csv")


def _frame_cell(v):
    """A frame's value as a CSV cell: a Period as ``YYYY-MM``, NaT as empty, numpy
    scalars as Python ones (floats then go through :func:`write_csv`'s format)."""
    import pandas as pd

    if v is pd.NaT or v is None:
        return ""
    if isinstance(v, pd.Period):
        return str(v)
    if isinstance(v, np.bool_ | bool):
        return bool(v)
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    return v


def write_frame(frame: pd.DataFrame, path: Path) -> None:
    """``frame`` as a CSV file: its index names, then its columns, one row per row."""
    index_names = list(frame.index.names)
    rows = []
    for key, values in zip(frame.index, frame.itertuples(index=False, name=None),
                           strict=True):
        key = key if isinstance(key, tuple) else (key,)
        rows.append([_frame_cell(v) for v in (*key, *values)])
    write_csv(path, index_names + list(frame.columns), rows)


def write_result_tables(results: Results, out: Path, suffix: str = "",
                        percentiles: Sequence[float] = DEFAULT_PERCENTILES) -> list[Path]:
    """:data:`RESULT_TABLES` of one set of results, ``suffix`` before ``.csv``; returns
    the paths written."""
    grid = results.grid

    def path(name: str) -> Path:
        return out / name.replace(".csv", f"{suffix}.csv")

    frames = {"cumulative_azure_spend.csv": results.quantile_frame("cumulative_azure_spend",
                                                                   percentiles),
              "annual.csv": results.annual_frame(percentiles),
              "stocks.csv": results.stock_frame(percentiles),
              "event_quantiles.csv": results.event_quantile_frame(percentiles),
              "horizon_totals.csv": results.quantile_frame("horizon", percentiles)}
    for name, frame in frames.items():
        write_frame(frame, path(name))
    # every event's CDF and its error, two columns each, in the event table's order
    events = results.layout.events
    dists = [results.event(e.name) for e in events]
    write_csv(path("repayment_cdf.csv"),
              ["month", *(f"{e.probability_column}{s}" for e in events for s in ("", "_se"))],
              [[grid.label(t), *(v for d in dists for v in (d.cdf[t], d.cdf_se[t]))]
               for t in range(grid.num_months)])
    return [path(name) for name in RESULT_TABLES]


def write_tables(results: Results, out: Path,
                 percentiles: Sequence[float] = DEFAULT_PERCENTILES) -> None:
    """cumulative_azure_spend.csv, annual.csv, stocks.csv, repayment_cdf.csv (every
    first-passage month's CDF), event_quantiles.csv (their months at each percentile),
    horizon_totals.csv and (when computed) parameters.csv (with each parameter's
    ``unit``, :func:`~mcsim.report.summary.parameter_unit`) in ``out``; with conditioned
    results the same six tables of them, ``*_conditioned.csv``; with an SMC posterior also
    posterior_parameters.csv, posterior_predictive.csv and smc_steps.csv
    (:func:`write_posterior_tables`)."""
    write_result_tables(results, out, "", percentiles)
    if results.parameter_table:
        table = results.parameter_table
        # each parameter's unit beside its name (the table mixes $, log rates, fractions)
        columns = ["parameter", "unit"] + [k for k in next(iter(table["prior"].values()))]
        write_csv(out / "parameters.csv", ["weighting"] + columns,
                  [[which, name, parameter_unit(name)] + list(row.values())
                   for which in ("prior", "conditioned") if table.get(which)
                   for name, row in table[which].items()])
    cond = results.conditioned
    if cond is not None:
        write_result_tables(cond, out, "_conditioned", percentiles)
        if getattr(cond, "posterior", None) is not None:
            write_posterior_tables(posterior_blocks(cond), out)


#: smc_steps.csv's columns: one row per (SMC run, tempering step)
STEP_COLUMNS = ("run", "step", "temperature", "ess", "ess_over_particles",
                "distinct_after_resampling", "moves", "mixing", "acceptance", "rho")


def write_posterior_tables(blocks: dict, out: Path) -> None:
    """An SMC posterior's tables (:func:`mcsim.report.summary.posterior_blocks`):
    posterior_parameters.csv (every drawn parameter and bias factor, prior vs posterior,
    sorted by the shift's size), posterior_predictive.csv (every observation) and
    smc_steps.csv (every run's tempering steps, with each step's moves and mixing
    diagnostic)."""
    for name, rows in (("posterior_parameters.csv", blocks["posterior_parameters"]),
                       ("posterior_predictive.csv", blocks["posterior_predictive"])):
        header = list(rows[0]) if rows else []
        write_csv(out / name, header, [[_cell(r[k]) for k in header] for r in rows])
    diag = blocks["smc"]
    n = diag["particles"]
    steps = []
    for run in diag["runs_detail"]:
        # moves and mixing per step (a summary of a version without them: empty cells)
        moves = run.get("moves") or [None] * run["steps"]
        mixing = run.get("mixing") or [None] * run["steps"]
        for k in range(run["steps"]):
            ess = run["ess"][k]
            steps.append([run["run"], k + 1, _cell(run["temperature"][k]), _cell(ess),
                          _cell(ess / n if ess is not None else None),
                          run["distinct_after_resampling"][k], _cell(moves[k]),
                          _cell(mixing[k]), _cell(run["acceptance"][k]),
                          _cell(run["rho"][k])])
    write_csv(out / "smc_steps.csv", list(STEP_COLUMNS), steps)


def _cell(v):
    """A CSV cell: null (undefined) as an empty cell, like a non-finite number."""
    return math.nan if v is None else v
