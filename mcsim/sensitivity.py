"""What drives the questions a config asks: Sobol indices of every uncertain parameter.

The factors are the independent uniforms of the uncertain parameters (before the Gaussian
copula: with correlated parameters, a parameter's index then covers what its own innovation
adds, the copula's shared part going to the parameters it is correlated with, in the
order of :data:`mcsim.parameters.PARAMETER_NAMES`) plus one group factor, ``monthly_shocks``:
all the random month-to-month shocks of a path together. Rows of A use the shock streams
of paths 0..N-1, rows of B those of paths N..2N-1; AB_i takes A's shocks, and the shock
factor's own radial matrix is A's parameters with B's shocks. So every index has its
textbook meaning, and the shocks' indices say how much of the spread is irreducible
month-to-month noise rather than parameter uncertainty.

The design's rows enter the engine's own kernel
(:func:`mcsim.engine.kernel.build_kernel`) with their uniforms in place of the paths'
counter-based ones: the same copula, inverse CDFs, model and kernel dtype as ordinary runs.

Outputs (:func:`available_outputs`), per design row, any of:

* ``cumulative_azure_spend``: cumulative Azure spend at the horizon, $;
* every horizon total of the config's run (:attr:`mcsim.layout.StatLayout.horizon_totals`:
  ``cumulative_revenue``, ..., and with version 3's mechanisms ``funding_to_find``,
  ``pv_microsoft_whole_position`` ...), $;
* every event's month (:mod:`mcsim.events`): ``repayment_month``, ``funding_gap_month``,
  ``cap_reached_month``, ... : months from the start until the event; a path where it does
  not happen by the horizon counts as the month after the horizon (censored: indices of a
  censored output describe the censored variable);
* every event's "by the month" indicator: ``repaid_by``, ``funding_gap_by``,
  ``cap_reached_by``, ... : 1 if the event happens by ``by_month``, else 0 (its variance is
  p (1 - p)).

**The default outputs** (:func:`default_outputs`) follow the questions a researcher asks of
the config, in the order of the run's headline, one output per question, a quantity rather
than a yes/no wherever one exists (a month or an amount carries the timing and the size that
a probability by one date throws away):

1. ``cumulative_azure_spend``: what the deal is worth to Azure (every config);
2. ``funding_gap_month`` (a config with ``[funding]``): when OpenAI's cash runs out, the
   question of December 2026 (will the money last?), censored where it never does;
3. Microsoft's whole position (a config with its equity stake): its present value,
   ``pv_microsoft_whole_position``, where the config has a discount rate (what the position
   is worth today, comparable with the $13B invested; the undiscounted sum adds 2040
   dollars to 2024 dollars and is mostly the horizon's equity value by construction), else
   ``microsoft_whole_position``;
4. ``repayment_month`` and ``repaid_by``: the deal's original question (open under the
   2019 terms of configs/v1_base.toml; under today's every path is repaid by 2030-12, and
   ``repaid_by`` is left out, below).

**An output with no variance over the design** (all base rows equal: under today's terms
every path is repaid by 2030-12, so ``repaid_by`` is 1 on every row) has no indices (0 / 0).
It is left out of the result with one warning naming it and why ("repaid_by left out of
the sensitivity study: every path is repaid by 2030-12 ..."), default or asked for; when
every output asked for is such, :func:`sensitivity` refuses with one line
(:class:`~mcsim.errors.ConfigError`). No NaN rows are printed or written;
:attr:`SensitivityResult.left_out` keeps the reasons.

Sobol indices say how much of an output's variance a parameter carries, not in which
direction it pushes. Beside them, over the 2N base rows (A and B: independent draws from the
prior), :meth:`SensitivityResult.frame` gives two signed measures per parameter, each of the
parameter's *marginal* association (a parameter correlated with others through the copula
carries theirs too):

* ``rank_correlation``: Spearman's rank correlation of the parameter with the output, with a
  Fisher-z interval (standard error sqrt(1.06 / (n - 3)), Fieller et al., 1957);
* ``top_minus_bottom_decile``: the output's mean on the rows whose parameter is in its top
  decile minus its mean on those in the bottom decile, in the output's unit (months, $ or
  probability), with the standard error of a difference of two independent means.

:meth:`SensitivityResult.drivers_frame` turns it round: on the rows with the highest (and the
lowest) 10% of an output, each parameter's mean percentile (its rank in its own prior,
0-100; 50 = those rows say nothing about it).
"""

from __future__ import annotations

import hashlib
import time
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import jax
import numpy as np

from . import checkpoint, locks, sobol
from .config import Config, ConfigError
from .engine.kernel import KernelSpec, kernel_inputs
from .engine.progress import say, ticking
from .events import event_output_names
from .layout import StatLayout
from .x64 import enable_x64

SHOCK_FACTOR = "monthly_shocks"
#: the outputs of a config without version 3's funding and equity (see
#: :func:`default_outputs` for a config's own)
OUTPUTS = ("cumulative_azure_spend", "repayment_month", "repaid_by")
#: what a path does when an event happens, for the one-line "no variance" reasons ("every
#: path is repaid by 2030-12"); an event not named here "reaches <its name>"
EVENT_PHRASES = {"repayment": "is repaid",
                 "credit_exhaustion": "exhausts its Azure credits",
                 "cap_reached": "reaches the revenue-share cap",
                 "commitment_met": "meets the Azure commitment by spend",
                 "funding_gap": "runs out of cash (the funding gap)"}
#: rows per compiled call (a power of two; the last call is padded)
ROWS_PER_CALL = 8192
#: the wide-interval warning: a first-order index's interval wider than this, or a
#: first-order lower bound below ``-FIRST_LOW_FLOOR``, means the design is too small
MAX_FIRST_WIDTH = 0.2
FIRST_LOW_FLOOR = 0.05


@dataclass(frozen=True)
class StudyOutput:
    """One output a study can measure (:func:`available_outputs`)."""

    name: str
    #: ``"money"`` ($: cumulative Azure spend or a horizon total), ``"month"`` (an event's
    #: month, censored at the horizon) or ``"by"`` (1 if the event happens by the month)
    kind: str
    #: the per-row value it is made of (:func:`evaluate_rows`): ``cumulative_azure_spend``,
    #: a horizon total, or an event's month (``<event>_month``, ``repayment_month``)
    quantity: str
    #: the event of a month or a "by" output
    event: str | None = None


def available_outputs(config: Config) -> dict[str, StudyOutput]:
    """Every output a study of ``config`` can measure, by name: cumulative Azure spend, the
    horizon totals of its run, and each of its events' month and "by" indicator (module
    docstring)."""
    layout = StatLayout.of(config)
    out = {"cumulative_azure_spend": StudyOutput("cumulative_azure_spend", "money",
                                                 "cumulative_azure_spend")}
    for name in layout.horizon_totals:
        out[name] = StudyOutput(name, "money", name)
    for event in layout.event_names:
        month, by = event_output_names(event)
        out[month] = StudyOutput(month, "month", month, event)
        out[by] = StudyOutput(by, "by", month, event)
    return out


def default_outputs(config: Config) -> tuple[str, ...]:
    """The outputs a study of ``config`` measures unless told (module docstring, "The
    default outputs"): cumulative Azure spend; the funding-gap month with ``[funding]``;
    Microsoft's whole position with its equity stake (present value with a discount rate);
    the repayment month and P(repaid by the month). Those with no variance on the design
    are left out when the study has run, each with a one-line warning."""
    available = available_outputs(config)
    names = ["cumulative_azure_spend"]
    if "funding_gap_month" in available:
        names.append("funding_gap_month")
    for position in ("pv_microsoft_whole_position", "microsoft_whole_position"):
        if position in available:
            names.append(position)
            break
    names += ["repayment_month", "repaid_by"]
    return tuple(names)


def no_variance_reason(output: StudyOutput, value: float, grid, by_month: str) -> str:
    """Why ``output`` has no variance, in words, when every base row has ``value``: "every
    path is repaid by 2030-12", "no path runs out of cash ... by the horizon (2040-12)",
    "every path has microsoft_equity_value = $0"."""
    if output.kind == "money":
        return f"every path has {output.name} = {_money(value)}"
    does = EVENT_PHRASES.get(output.event, f"reaches {output.event}")
    T = grid.num_months
    if output.kind == "by":
        return f"{'every' if value else 'no'} path {does} by {by_month}"
    if value >= T:
        return f"no path {does} by the horizon ({grid.labels[-1]})"
    return f"every path {does} in {grid.labels[int(value)]}"


def _money(value: float) -> str:
    for scale, unit in ((1e12, "T"), (1e9, "B"), (1e6, "M")):
        if abs(value) >= scale:
            return f"${value / scale:,.4g}{unit}"
    return f"${value:,.4g}"


@dataclass(frozen=True)
class SensitivityResult:
    """Sobol indices of each output, with what produced them. The outputs are the keys of
    ``indices``, in the order asked for; the first is the study's lead (the default of the
    methods' ``output``)."""

    indices: dict[str, sobol.SobolIndices]  # output name -> indices over the factors
    by_month: str                           # the month of ``repaid_by`` (and ``<event>_by``)
    num_base: int
    num_rows: int                           # model evaluations, N (k + 3)
    seed: int
    output_means: dict[str, float]          # over the rows of A and B
    seconds: float
    #: the uncertain parameters, in the columns' order of ``base_percentiles``
    parameters: tuple[str, ...] = ()
    #: [2N, parameters]: each base row's (A's, then B's) parameters as prior CDF ranks in
    #: (0, 1), after the copula (so a parameter's rank is that of its value)
    base_percentiles: np.ndarray | None = field(default=None, repr=False)
    #: output name -> [2N] its values on the base rows (A's, then B's)
    base_outputs: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    #: the wide-interval warnings emitted (empty when the design was large enough)
    warnings: tuple[str, ...] = ()
    #: output name -> why it was left out: no variance over the design ("every path is
    #: repaid by 2030-12"); its warning said so in one line
    left_out: dict[str, str] = field(default_factory=dict)

    @property
    def outputs(self) -> tuple[str, ...]:
        """The outputs measured, the lead first."""
        return tuple(self.indices)

    @property
    def lead(self) -> str:
        """The first output: the default of the methods' ``output``."""
        return next(iter(self.indices))

    def frame(self):
        """One long table: (output, factor) -> first, total and their intervals, and the
        signed measures ``rank_correlation`` (with ``rank_correlation_low`` and ``_high``,
        its 95% Fisher-z interval) and ``top_minus_bottom_decile`` (output units, with
        ``top_minus_bottom_decile_se``); NaN for the monthly shocks (no direction) and for
        an output that is constant on the base rows."""
        import pandas as pd

        frames = {}
        for k, v in self.indices.items():
            f = v.to_frame()
            d = self.direction_frame(k)
            frames[k] = f.join(d) if d is not None else f
        return pd.concat(frames, names=["output", "factor"])

    def direction_frame(self, output: str | None = None):
        """The signed measures of ``output`` (default: the lead output) per parameter
        (index ``factor``), or None when the result carries no base rows."""
        import pandas as pd

        output = self._check_output(output)
        if self.base_percentiles is None or output not in self.base_outputs:
            return None
        stats = direction(self.base_percentiles, self.base_outputs[output])
        return pd.DataFrame(stats, index=pd.Index(list(self.parameters), name="factor"))

    def drivers_frame(self, output: str | None = None, fraction: float = 0.1):
        """What drives the highest and the lowest ``fraction`` of ``output`` (default: the
        lead output): on those base rows, each parameter's mean percentile (its rank in its
        prior, 0-100; 50 = no information) with its standard error.

        Rows tied with the cut-off are all included (``num_rows`` says how many there are:
        more than ``fraction`` of the rows when many share the cut-off value, as censored
        repayment months and the 0/1 ``repaid_by`` do). Long form: index (``group``,
        ``parameter``), group ``"top"`` (the highest values) then ``"bottom"``, each sorted
        by ``|mean_percentile - 50|``, largest first. Columns: ``mean_percentile``,
        ``mean_percentile_se``, ``num_rows``, ``share`` (num_rows over all base rows),
        ``cutoff`` (the output's value at the cut, in its unit).
        """
        import pandas as pd

        output = self._check_output(output)
        if not 0.0 < fraction <= 0.5:
            raise ValueError(f"fraction={fraction!r}: expected a number in (0, 0.5]")
        if self.base_percentiles is None:
            raise ValueError("this SensitivityResult carries no base rows (made by an "
                             "older mcsim?): run mcsim.sensitivity again")
        y = self.base_outputs[output]
        P = 100.0 * self.base_percentiles
        n = len(y)
        pieces = {}
        for group, rows, cutoff in (("top", *_tail(y, fraction, upper=True)),
                                    ("bottom", *_tail(y, fraction, upper=False))):
            sel = P[rows]
            m = len(sel)
            mean = sel.mean(axis=0) if m else np.full(P.shape[1], np.nan)
            se = sel.std(axis=0, ddof=1) / np.sqrt(m) if m > 1 else np.full(P.shape[1],
                                                                               np.nan)
            f = pd.DataFrame({"mean_percentile": mean, "mean_percentile_se": se,
                              "num_rows": m, "share": m / n, "cutoff": cutoff},
                             index=pd.Index(list(self.parameters), name="parameter"))
            f = f.iloc[np.argsort(-np.abs(mean - 50.0), kind="stable")]
            pieces[group] = f
        return pd.concat(pieces, names=["group", "parameter"])

    def plot_tornado(self, ax=None, output: str | None = None, top: int = 12,
                     by: str = "sobol"):
        """Signed tornado chart of ``output`` (default: the lead output) on ``ax`` (or a new
        one); returns it. See
        :func:`mcsim.plots_sensitivity.plot_tornado`."""
        from . import plots_sensitivity

        return plots_sensitivity.plot_tornado(self, ax, output=output, top=top, by=by)

    def plot_drivers(self, ax=None, output: str | None = None, fraction: float = 0.1,
                     top: int = 12):
        """What drives the top and bottom ``fraction`` of ``output``; returns the Axes. See
        :func:`mcsim.plots_sensitivity.plot_drivers`."""
        from . import plots_sensitivity

        return plots_sensitivity.plot_drivers(self, ax, output=output, fraction=fraction,
                                              top=top)

    def _check_output(self, output: str | None) -> str:
        """``output``, or the lead output for None; a clear error for one not measured
        (saying why when it was left out for having no variance)."""
        if output is None:
            return self.lead
        if output not in self.indices:
            why = (f" ({output} was left out: {self.left_out[output]})"
                   if output in self.left_out else "")
            raise ValueError(f"output={output!r}: expected one of "
                             f"{', '.join(self.indices)}{why}")
        return output

    def top(self, output: str | None = None, k: int = 3) -> list[tuple[str, float]]:
        """The ``k`` factors with the largest total index for ``output`` (default: the
        lead output)."""
        output = self._check_output(output)
        idx = self.indices[output]
        order = np.argsort(-np.nan_to_num(idx.total, nan=-np.inf))[:k]
        return [(idx.names[i], float(idx.total[i])) for i in order]


def _tail(y: np.ndarray, fraction: float, upper: bool) -> tuple[np.ndarray, float]:
    """(row indices, cutoff) of the highest (``upper``) or lowest ``fraction`` of ``y``,
    every row tied with the cut-off included."""
    m = max(1, int(np.ceil(fraction * len(y))))
    ordered = np.sort(y)
    cutoff = float(ordered[-m] if upper else ordered[m - 1])
    rows = np.flatnonzero(y >= cutoff if upper else y <= cutoff)
    return rows, cutoff


def _ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks along axis 0 (ties share their mean rank)."""
    from scipy.stats import rankdata

    return rankdata(x, axis=0, method="average")


def direction(percentiles: np.ndarray, y: np.ndarray, confidence: float = 0.95) -> dict:
    """Signed measures of ``y`` [n] against each column of ``percentiles`` [n, k] (the
    parameters' prior CDF ranks): Spearman's rank correlation with its Fisher-z interval,
    and the mean of ``y`` where the parameter is in its top decile minus where it is in its
    bottom decile, with a standard error. Each float64 [k]; NaN where ``y`` is constant."""
    from scipy.special import ndtri

    P = np.asarray(percentiles, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n, k = P.shape
    nan = np.full(k, np.nan)
    out = {"rank_correlation": nan, "rank_correlation_low": nan,
           "rank_correlation_high": nan, "top_minus_bottom_decile": nan,
           "top_minus_bottom_decile_se": nan}
    if n < 4 or np.all(y == y[0]):
        return out
    rp = _ranks(P)
    ry = _ranks(y)
    rp = rp - rp.mean(axis=0)
    ry = ry - ry.mean()
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (rp * ry[:, None]).sum(axis=0) / np.sqrt((rp**2).sum(axis=0) * (ry**2).sum())
    rho = np.clip(rho, -1.0, 1.0)
    # Fisher z with the Spearman variance of Fieller, Hartley and Pearson (1957)
    half = ndtri(0.5 + 0.5 * confidence) * np.sqrt(1.06 / (n - 3))
    z = np.arctanh(np.clip(rho, -1 + 1e-15, 1 - 1e-15))
    low, high = np.tanh(z - half), np.tanh(z + half)
    diff, se = np.empty(k), np.empty(k)
    for j in range(k):
        lo_cut, hi_cut = np.quantile(P[:, j], [0.1, 0.9])
        top, bottom = y[P[:, j] >= hi_cut], y[P[:, j] <= lo_cut]
        diff[j] = top.mean() - bottom.mean()
        se[j] = np.sqrt(top.var(ddof=1) / len(top) + bottom.var(ddof=1) / len(bottom))
    return {"rank_correlation": rho, "rank_correlation_low": low,
            "rank_correlation_high": high, "top_minus_bottom_decile": diff,
            "top_minus_bottom_decile_se": se}


def prior_percentiles(config: Config, uniforms: np.ndarray) -> np.ndarray:
    """The parameters' prior CDF ranks of design rows: the independent ``uniforms``
    [n, k] through the Gaussian copula (as :meth:`mcsim.device_draws.DeviceSampler.draw`
    does), in (0, 1). A parameter's value is its inverse CDF at its rank."""
    from scipy.special import ndtr
    from scipy.special import ndtri as host_ndtri

    from .device_draws import DeviceSampler

    st = DeviceSampler(config).structure
    u = np.array(uniforms, dtype=np.float64)
    if st.copula_columns:
        cc = np.array(st.copula_columns)
        L = np.array(st.copula_factor)
        u[:, cc] = np.clip(ndtr(host_ndtri(u[:, cc]) @ L.T), np.finfo(np.float64).tiny,
                           np.nextafter(1.0, 0.0))
    return u


def wide_interval_warnings(indices: dict[str, sobol.SobolIndices], num_base: int
                           ) -> list[str]:
    """One line per output whose first-order intervals are too wide for the design: any
    interval wider than :data:`MAX_FIRST_WIDTH` or a lower bound below
    ``-FIRST_LOW_FLOOR``."""
    lines = []
    for output, idx in indices.items():
        width = np.asarray(idx.first_high) - np.asarray(idx.first_low)
        low = np.asarray(idx.first_low)
        if not np.isfinite(width).any():
            continue
        worst = int(np.nanargmax(width))
        too_wide = np.nanmax(width) > MAX_FIRST_WIDTH
        too_low = np.nanmin(low) < -FIRST_LOW_FLOOR
        if too_wide or too_low:
            what = []
            if too_wide:
                what.append(f"widest first-order interval {np.nanmax(width):.2f} "
                            f"({idx.names[worst]}) > {MAX_FIRST_WIDTH}")
            if too_low:
                j = int(np.nanargmin(low))
                what.append(f"first-order lower bound {low[j]:.2f} ({idx.names[j]}) < "
                            f"-{FIRST_LOW_FLOOR}")
            # widths shrink as 1/sqrt(N): the size that would bring the widest to the limit
            ratio = max(4.0, (np.nanmax(width) / MAX_FIRST_WIDTH) ** 2)
            suggest = num_base << int(np.ceil(np.log2(ratio)))
            lines.append(f"sensitivity of {output}: Sobol intervals too wide for "
                         f"N = {num_base:,} base rows ({'; '.join(what)}); increase "
                         f"--base-rows (num_base), e.g. to {suggest:,}")
    return lines


ROWS_FILE = "sensitivity-rows.npz"


class RowCheckpoint:
    """A study's evaluated design rows, saved every ``interval`` seconds in a checkpoint
    directory (:data:`ROWS_FILE`) so that a killed study resumes where it was. A row's
    outputs depend only on the config and the row, and a resumed study evaluates the same
    blocks of rows, so it gives the same numbers as one never stopped."""

    FORMAT = "mcsim.sensitivity-rows/2"

    def __init__(self, directory: str | Path, config: Config, uniforms: np.ndarray,
                 shock_paths: np.ndarray, dtype: str, interval: float = 60.0,
                 resume: bool = False,
                 quantities: tuple[str, ...] = ("repayment_month", "cumulative_azure_spend")
                 ) -> None:
        from ._version import __version__

        device = jax.local_devices()[0]
        design = hashlib.sha256(np.ascontiguousarray(uniforms).tobytes()
                                + np.ascontiguousarray(shock_paths).tobytes()).hexdigest()
        self.file = Path(directory) / ROWS_FILE
        self.identity = {
            "format": self.FORMAT,
            "config_sha256": hashlib.sha256(config.source_text.encode()).hexdigest(),
            "rows": int(len(uniforms)), "design_sha256": design, "dtype": dtype,
            "rows_per_call": ROWS_PER_CALL, "quantities": list(quantities),
            "device_kind": f"{device.platform}:{device.device_kind}",
            "mcsim_version": __version__}
        self.interval, self.resume, self.quantities = interval, resume, tuple(quantities)
        self._last = time.perf_counter()

    def load(self) -> dict[str, np.ndarray] | None:
        """The rows saved so far (None: nothing saved, or not resuming)."""
        if not self.resume or not self.file.exists():
            return None
        data = checkpoint.read_arrays(self.file, self.identity,
                                      what="a checkpoint of this same sensitivity study")
        if not {*self.quantities, "finite"} <= set(data):
            raise ConfigError("resume", str(self.file), "a readable mcsim checkpoint, but "
                              "it lacks the rows' outputs; delete it to start from the "
                              "beginning")
        return data

    def due(self) -> bool:
        return time.perf_counter() - self._last >= self.interval

    def save(self, done: dict[str, list[np.ndarray]]) -> None:
        checkpoint.Checkpointer(self.file, self.identity).write(
            {k: np.concatenate(v) for k, v in done.items()})
        self._last = time.perf_counter()


@dataclass(frozen=True)
class _DesignOutputs:
    """The per-row quantities of a design row (the device part of its reduction: hashable):
    statistics' rows and events' rows, each with its name."""

    stat_rows: tuple[tuple[str, int], ...]   # (name, row of the [S, n] statistics)
    event_rows: tuple[tuple[str, int], ...]  # (name, row of the [E, n] event months)

    def __call__(self, outs):
        out = outs[0]
        values = {name: out.stats[row] for name, row in self.stat_rows}
        values.update({name: out.event_months[row] for name, row in self.event_rows})
        return values


def _quantity_rows(layout: StatLayout, quantities: tuple[str, ...]) -> _DesignOutputs:
    """Where each quantity is in the kernel's statistics: ``cumulative_azure_spend`` (its
    horizon month), a horizon total, or an event's month (``repayment_month``,
    ``<event>_month``)."""
    months = {event_output_names(e)[0]: i for i, e in enumerate(layout.event_names)}
    stats, events = [], []
    for q in quantities:
        if q == "cumulative_azure_spend":
            stats.append((q, layout.grid.num_months - 1))
        elif q in layout.horizon_totals:
            stats.append((q, layout.row(q)))
        elif q in months:
            events.append((q, months[q]))
        else:
            raise ValueError(f"quantity = {q!r}: expected cumulative_azure_spend, one of "
                             f"{', '.join(layout.horizon_totals)} or one of "
                             f"{', '.join(months)}")
    return _DesignOutputs(tuple(stats), tuple(events))


def evaluate_rows(config: Config, uniforms: np.ndarray, shock_paths: np.ndarray,
                  dtype: str = "float32", saver: RowCheckpoint | None = None,
                  progress: bool | None = None,
                  quantities: tuple[str, ...] = ("repayment_month", "cumulative_azure_spend")
                  ) -> dict[str, np.ndarray]:
    """Run the model on design rows: parameter uniforms [n, m] and shock path indices [n],
    on every local device (:func:`mcsim.engine.runner.run_paths`).

    Returns each of ``quantities`` and ``finite`` (bool) per row: an event's month (int, T
    when it does not happen by the horizon: ``repayment_month``, ``funding_gap_month``,
    ...), ``cumulative_azure_spend`` ($, at the horizon) or a horizon total ($). With a
    ``saver`` (made for the same ``quantities``), the rows done are
    saved every block of :data:`ROWS_PER_CALL` rows (when due) and, when it resumes, read
    back instead of evaluated again: a row's outputs depend on the config and the row
    alone, never on the rows evaluated with it.
    """
    from .engine.runner import PathRows, run_paths

    # the design's rows are not the run's paths: no antithetic mirrors
    spec = KernelSpec.for_config(config, dtype)._replace(antithetic=False)
    outputs = _quantity_rows(spec.layout, tuple(quantities))
    inputs = kernel_inputs(config)
    n = len(uniforms)
    names = (*dict.fromkeys(quantities), "finite")
    done: dict[str, list[np.ndarray]] = {k: [] for k in names}
    first = 0
    saved = saver.load() if saver is not None else None
    if saved is not None:  # whole blocks' rows: the study goes on where it stopped
        first = len(saved["finite"])
        if first % ROWS_PER_CALL and first < n:
            raise ConfigError("resume", str(saver.file), f"a checkpoint of whole blocks of "
                              f"{ROWS_PER_CALL} rows (it holds {first})")
        for k in done:
            done[k].append(saved[k])
    # blocks of rows between checkpoints (one block without a saver)
    block = ROWS_PER_CALL if saver is not None else max(n - first, 1)
    for s in range(first, n, block):
        e = min(n, s + block)
        rows = run_paths([spec], [inputs], PathRows(outputs, e - s), e - s,
                         uniforms=np.asarray(uniforms[s:e], np.float64),
                         shock_paths=np.asarray(shock_paths[s:e], np.uint32),
                         progress=progress)
        for k in names:
            done[k].append(rows[k])
        if saver is not None and e < n and saver.due():
            saver.save(done)
    return {k: np.concatenate(v)[:n] for k, v in done.items()}


def default_by_month(config: Config) -> str:
    """December 2030 when inside the horizon (the amendment's revenue share ends then),
    else the horizon."""
    grid = config.grid
    return "2030-12" if "2030-12" in grid.labels else grid.labels[-1]


def sensitivity(config: Config, *, num_base: int = 4096, by_month: str | None = None,
                outputs: str | list[str] | tuple[str, ...] | None = None,
                num_bootstrap: int = 1000, confidence: float = 0.95,
                dtype: str = "float32", checkpoint: str | Path | None = None,
                resume: bool = False, checkpoint_interval: float = 60.0,
                progress: bool | None = None) -> SensitivityResult:
    """Sobol first- and total-order indices of every uncertain parameter and of the
    monthly shocks, for each of ``outputs`` (default :func:`default_outputs`: the config's
    own questions; any of :func:`available_outputs`), with bootstrap intervals.

    ``num_base`` (N, a power of two) rows in each base matrix: N (k + 3) model runs for k
    parameters, whatever the number of outputs (they are read from the same rows).
    ``by_month``: the month of the "by" outputs (``repaid_by``, ``funding_gap_by``, ...;
    default :func:`default_by_month`). The design is seeded by ``simulation.seed``, each
    output's bootstrap by the seed and the output's name (its intervals do not depend on
    the other outputs asked for). An output with no variance on the design is left out with
    a one-line warning (:attr:`SensitivityResult.left_out`); when all are, a
    :class:`~mcsim.errors.ConfigError` says why in one line. With a ``checkpoint`` directory
    the evaluated rows are saved there every ``checkpoint_interval`` seconds
    (:class:`RowCheckpoint`; the directory locked for this process meanwhile), and
    ``resume`` goes on from them: the same result. ``progress`` (default: on a terminal):
    a line per stage (the design's rows, the bootstrap) and the rows' progress bar.
    """
    enable_x64()
    t0 = time.perf_counter()
    names = list(config.uncertain_parameters())
    if not names:
        raise ConfigError("parameters", "(all fixed)", "at least one parameter with a "
                          "distribution, to measure sensitivity to")
    grid = config.grid
    by_month = by_month or default_by_month(config)
    if by_month not in grid.labels:
        raise ConfigError("by_month", by_month, f"a month from {grid.labels[0]} to "
                          f"{grid.labels[-1]}")
    if num_base < 2 or num_base & (num_base - 1):
        raise ConfigError("num_base", num_base, "a power of two >= 2")
    available = available_outputs(config)
    if outputs is None:
        asked = default_outputs(config)
    else:
        asked = tuple(dict.fromkeys([outputs] if isinstance(outputs, str) else outputs))
        if not asked:
            raise ConfigError("outputs", "(none)", "at least one output, among "
                              + ", ".join(available))
        for name in asked:
            if name not in available:
                raise ConfigError("outputs", name, "an output of this config: one of "
                                  + ", ".join(available))
    specs = [available[name] for name in asked]
    quantities = tuple(dict.fromkeys(o.quantity for o in specs))
    seed = config.simulation.seed
    k, N = len(names), num_base
    A, B = sobol.design(N, k, seed)
    AB = sobol.radial_matrices(A, B)  # [k, N, k]
    base_a = np.arange(N, dtype=np.uint32)
    base_b = base_a + np.uint32(N)
    # blocks: A, B, AB_0..AB_{k-1}, then A's parameters with B's shocks
    uniforms = np.concatenate([A, B, AB.reshape(k * N, k), A])
    shocks = np.concatenate([base_a, base_b, np.tile(base_a, k), base_b])
    say(progress, f"sensitivity: {len(uniforms):,} model runs ({N:,} rows x ({k} "
                  f"parameters + 3)) for {', '.join(asked)}")
    if checkpoint is None:
        out = evaluate_rows(config, uniforms, shocks, dtype, quantities=quantities,
                            progress=progress)
    else:
        saver = RowCheckpoint(checkpoint, config, uniforms, shocks, dtype,
                              checkpoint_interval, resume, quantities)
        with locks.hold(locks.checkpoint_lock_file(checkpoint), key="checkpoint",
                        value=str(checkpoint), what="checkpoint directory"):
            out = evaluate_rows(config, uniforms, shocks, dtype, saver,
                                quantities=quantities, progress=progress)
    say(progress, f"sensitivity: Sobol indices with {num_bootstrap:,} bootstrap resamples "
                  f"for each of {len(specs)} output{'s' * (len(specs) != 1)}")
    if not out["finite"].all():
        bad = int((~out["finite"]).sum())
        raise ConfigError("parameters", f"{bad} of {len(uniforms)} design rows",
                          "finite flows on every row (narrow the ranges that give NaN or "
                          "inf; `mcsim run` names the likely parameter)")
    by = grid.index(by_month)
    factors = tuple(names) + (SHOCK_FACTOR,)
    indices, means, base, left_out = {}, {}, {}, {}
    # the bootstrap takes seconds: a line ticking on the terminal meanwhile
    with ticking(progress, "mcsim: sensitivity: bootstrap"):
        for o in specs:
            q = out[o.quantity]
            f = (q <= by).astype(np.float64) if o.kind == "by" else q.astype(np.float64)
            blocks = f.reshape(k + 3, N)
            f_A, f_B, f_AB = blocks[0], blocks[1], blocks[2:]
            ab = np.concatenate([f_A, f_B])  # the base rows, whose variance the indices divide
            if np.all(ab == ab[0]):
                left_out[o.name] = no_variance_reason(o, float(ab[0]), grid, by_month)
                continue
            idx = sobol.estimate(f_A, f_B, f_AB, factors, num_bootstrap=num_bootstrap,
                                 confidence=confidence, seed=[seed, zlib.crc32(o.name.encode())])
            if idx.variance == 0.0:  # values that differ by rounding alone
                left_out[o.name] = (f"{o.name} differs between paths by rounding alone "
                                    f"(about {ab.mean():.6g})")
                continue
            indices[o.name], base[o.name], means[o.name] = idx, ab, float(ab.mean())
    if not indices:
        raise ConfigError("outputs", ", ".join(asked), "an output that varies over the "
                          "design's paths (" + "; ".join(left_out.values()) + ")")
    for name, why in left_out.items():
        warnings.warn(f"{name} left out of the sensitivity study: {why}, so it has no "
                      "variance to apportion", UserWarning, stacklevel=2)
    lines = wide_interval_warnings(indices, N)
    for line in lines:
        warnings.warn(line, UserWarning, stacklevel=2)
    percentiles = prior_percentiles(config, np.concatenate([A, B]))
    return SensitivityResult(indices, by_month, N, len(uniforms), seed, means,
                             time.perf_counter() - t0, tuple(names), percentiles, base,
                             tuple(lines), left_out)

