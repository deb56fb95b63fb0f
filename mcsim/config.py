"""Config: parse and validate a TOML file into a frozen, typed :class:`Config`.

Every error is a :class:`ConfigError` whose one-line message names the dotted key, the value
received and what was expected, e.g.
``deal.revenue_share = 1.5: expected a number in [0, 1]``. Unknown keys are rejected with
the nearest valid name. Nothing here touches JAX, devices or files other than the config.
"""

from __future__ import annotations

import copy
import difflib
import math
import os
import stat
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .distributions import (
    FIELD_SETS,
    MIN_TABULATED_MASS,
    TRUNCATION_FIELDS,
    Distribution,
    canonical_fields,
)
from .errors import _MISSING, ConfigError
from .layout import ALL_STOCKS, ANNUAL_FLOWS, SIGNED_FLOWS, SIGNED_STOCKS, STOCK_UNITS
from .months import MonthGrid, parse_month
from .parameters import (
    ALTERNATIVE_FORMS,
    ALWAYS_REQUIRED,
    DECAYING_RATES,
    DOMAINS,
    FUNDING_PARAMETERS,
    PARAMETER_INDEX,
    PARAMETER_NAMES,
    REVERSE_SHARE_PARAMETERS,
    SHOCK_NAMES,
)
from .rates import RATE_FORMS, RATE_PARAMETERS, log_rate, parse_percent

#: Defaults for the optional [simulation] keys.
DEFAULT_PATHS = 100_000
DEFAULT_SEED = 0
MAX_PATHS = 2**32  # path index is one 32-bit Threefry counter word
MAX_MONTHS = 12 * 200
DEFAULT_MAX_NONFINITE = 1e-3
#: A config file larger than this is refused before it is read (configs are a few kB).
MAX_CONFIG_BYTES = 10 * 1024 * 1024
#: Tables and arrays nest at most this deep (a valid config needs 4: deeper documents are
#: refused before anything recurses over them).
MAX_NESTING = 32
RECOUP_SOURCES = ("profit_share", "revenue_share", "azure_margin")
#: simulation.variance_reduction: plain Monte Carlo, antithetic pairs, scrambled Sobol points
VARIANCE_REDUCTION = ("none", "antithetic", "sobol")
#: Monthly flows an observation may sum over a window (the annual flows of the report,
#: MODEL.md v2 C), and the stocks it may observe at a month.
OBSERVABLE_FLOWS = ANNUAL_FLOWS
OBSERVABLE_STOCKS = ALL_STOCKS
OBSERVATION_KEYS = ("flow", "flows", "stock", "month", "start", "end", "value", "sd",
                    "rel_sd", "error", "dof", "bias")
#: An observation's error: Gaussian, or Student's t with ``dof`` degrees of freedom.
OBSERVATION_ERRORS = ("normal", "student_t")
#: Distributions a bias factor may have: positive support and a closed-form quantile.
BIAS_KINDS = ("lognormal", "uniform", "triangular")
#: [conditioning] methods: tempered sequential Monte Carlo, or importance sampling of the
#: prior paths (version 1's weighting).
CONDITIONING_METHODS = ("smc", "importance")
#: SMC moves (mcsim.engine.smc): the population-preconditioned Crank-Nicolson move (each
#: half of the particles moves in a Gaussian fitted on the other half, held fixed through
#: the step) or plain pCN (one step size for every latent direction, version 2's move).
SMC_MOVES = ("preconditioned", "pcn")
CONDITIONING_KEYS = ("method", "particles", "ess_fraction", "moves", "runs", "seed", "move",
                     "mixing_threshold")
MIN_PARTICLES, MAX_PARTICLES = 64, 2**24
MAX_MOVES = 1000
MAX_RUNS = 1000


@dataclass(frozen=True)
class SimulationConfig:
    """``[simulation]``: the month grid and the Monte Carlo sizes.

    start, horizon: ``"YYYY-MM"``, both inclusive. paths: number of sampled futures.
    seed: integer in [0, 2^63). chunk_size: paths per device call (None: engine default).
    max_nonfinite_fraction: above this fraction of paths with a NaN or inf, the run fails
    (naming the likely parameter) instead of reporting on the rest.
    """

    start: str
    horizon: str
    paths: int = DEFAULT_PATHS
    seed: int = DEFAULT_SEED
    chunk_size: int | None = None
    max_nonfinite_fraction: float = DEFAULT_MAX_NONFINITE
    #: "none", "antithetic" (path 2k+1 mirrors path 2k: uniforms 1-u, shocks -z) or
    #: "sobol" (parameters from a scrambled Sobol sequence indexed by path)
    variance_reduction: str = "none"
    #: version 3, F: log rate per year for present values (None: no present values)
    discount_rate: float | None = None

    @property
    def grid(self) -> MonthGrid:
        return MonthGrid.from_labels(self.start, self.horizon)


@dataclass(frozen=True)
class FundingConfig:
    """``[funding]`` (MODEL.md version 3, E): OpenAI's known raises, ``(month, $)`` pairs,
    months strictly increasing inside the run. Its ``cash_0`` is a model parameter
    (``Config.parameters["cash_0"]``): a number or a distribution like any other."""

    rounds: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class Observation:
    """One ``[observations.NAME]`` entry (MODEL.md v2 C): the model's value of ``series``
    (annual flows summed over months ``start``..``end`` inclusive, or one stock at month
    ``start == end``), times the ``bias`` factor, was observed to be ``value`` with an error
    of scale ``sd`` (in the value's unit), Gaussian or Student's t with ``dof`` degrees of
    freedom. Observations' errors are independent."""

    name: str
    series: tuple[str, ...]   # annual-flow names (layout.ANNUAL_FLOWS), or ONE stock name
    start: str                # "YYYY-MM"; for a stock, the observed month (start == end)
    end: str
    value: float              # observed value ($ for flows; the stock's unit for stocks)
    sd: float                 # absolute error sd (rel_sd * |value| when rel_sd was given)
    error: str = "normal"     # "normal" or "student_t"
    dof: float = math.inf     # student_t degrees of freedom (> 0; inf for normal)
    bias: Distribution | float | None = None  # multiplicative factor on the model's value

    @property
    def stock(self) -> bool:
        """True when ``series`` is one stock (observed at month ``start``)."""
        return len(self.series) == 1 and self.series[0] in ALL_STOCKS

    @property
    def flow(self) -> str:
        """``"+".join(series)``: a label (kept for version-1 callers)."""
        return "+".join(self.series)


@dataclass(frozen=True)
class ConditioningConfig:
    """``[conditioning]``: how a config's observations condition the run (without
    observations it does nothing)."""

    method: str = "smc"          # tempered sequential Monte Carlo, or importance sampling
    # 16 runs x 1,024 particles: the runs' spread (every error of a posterior statistic)
    # has 15 degrees of freedom, not 4 x 16,384's 3; the 16 runs move together in one call
    # (mcsim.engine.smc.run_groups), and with the preconditioned move they are worth
    # ~10x the effective paths per CPU-second of 4 x 4,096 pCN particles with 10 moves a
    # step (benchmarks/smc_mixing.py, two runs: x9.3-10.0 of the medians over 4 seeds,
    # x10.5-11.0 pooled)
    particles: int = 1024        # particles per SMC run (>= 64, <= 2**24)
    ess_fraction: float = 0.5    # each tempering step keeps this fraction effective (0, 1)
    # at most 15 moves a step rather than 20: the last tempering steps reach the cap either
    # way, and their 16th-20th moves buy less than they cost (effective paths per move of a
    # group: ~145 with 15, ~118 with 20, 3 seeds each on configs/observed.toml; the
    # effective fraction stays ~73%)
    moves: int = 15              # the most moves per tempering step (1..1000)
    runs: int = 16               # independent SMC runs (>= 2; their spread is the MC error)
    seed: int | None = None      # None: simulation.seed
    move: str = "preconditioned"  # the SMC move: one of SMC_MOVES
    # a step stops moving once the particles' before/after correlation is below this
    # (mcsim.engine.smc.mixing_correlation, the mean over the runs moved together); 0:
    # always ``moves`` moves. 0.2 rather than 0.1: the same effective paths (each step's
    # leftover correlation is shed by the next steps' moves) for ~20% fewer moves
    # (benchmarks/smc_mixing.py)
    mixing_threshold: float = 0.2


#: Term fields a ``[[deal.change]]`` may set (MODEL.md v2 A); the rest of [deal] is run-level.
CHANGE_TERMS = ("revenue_share", "revenue_share_end", "revenue_share_cap",
                "revenue_share_cap_from", "profit_share_until_recouped", "profit_share_after",
                "profit_cap", "reverse_share")


@dataclass(frozen=True)
class DealChange:
    """One ``[[deal.change]]``: the terms it sets, in force from month ``start`` on."""

    start: str                  # the ``from`` month, "YYYY-MM"
    terms: tuple[tuple[str, Any], ...]  # (field of CHANGE_TERMS, value) pairs, as in DealConfig

    def get(self, name: str, default: Any = None) -> Any:
        return dict(self.terms).get(name, default)


@dataclass(frozen=True)
class DealConfig:
    """``[deal]``: the terms in force from the start (fixed numbers, $), run-level fields,
    and the later changes of terms (MODEL.md version 2, A)."""

    investment: float
    revenue_share: float = 0.0
    revenue_share_end: str | None = None
    revenue_share_cap: float | None = None
    profit_share_until_recouped: float = 0.75
    profit_share_after: float = 0.49
    profit_cap: float | None = None
    loss_carryforward: bool = True
    recoup_from: tuple[str, ...] = ("profit_share",)
    azure_credits: float | None = None
    losses_before_start: float = 0.0
    #: version 2 (each default reproduces version 1)
    revenue_share_cap_from: str | None = None   # None: the start
    revenue_share_paid_before_start: float = 0.0
    reverse_share: float = 0.0
    azure_commitment: float | None = None
    azure_commitment_from: str | None = None
    azure_commitment_by: str | None = None
    changes: tuple[DealChange, ...] = ()

    def term_values(self, name: str) -> list[Any]:
        """The values a term field takes over the run: the initial one, then each change's."""
        return [getattr(self, name)] + [c.get(name) for c in self.changes
                                        if name in dict(c.terms)]


@dataclass(frozen=True)
class Config:
    """A validated config. ``parameters`` maps every given parameter name to a float or a
    :class:`Distribution`; ``correlation_pairs`` are Spearman rank correlations;
    ``shock_correlation`` is the 5x5 matrix of the monthly shocks."""

    simulation: SimulationConfig
    parameters: dict[str, float | Distribution]
    deal: DealConfig
    correlation_pairs: tuple[tuple[str, str, float], ...] = ()
    shock_correlation: tuple[tuple[float, ...], ...] = tuple(
        tuple(1.0 if i == j else 0.0 for j in range(5)) for i in range(5))
    source_text: str = ""
    source_path: str = ""
    #: ``[observations]``: what the paths are conditioned on (empty: prior only)
    observations: tuple[Observation, ...] = ()
    #: ``[conditioning]``: how they are conditioned on
    conditioning: ConditioningConfig = ConditioningConfig()
    #: ``[funding]``: OpenAI's cash and funding rounds (None: no funding outputs)
    funding: FundingConfig | None = None
    #: the TOML document after ``extends`` was resolved (JSON-ready), for provenance
    resolved: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def grid(self) -> MonthGrid:
        return self.simulation.grid

    def uncertain_parameters(self) -> list[str]:
        """Names of the parameters drawn per path, in stream-index order."""
        return [n for n in PARAMETER_NAMES
                if isinstance(self.parameters.get(n), Distribution)]

    def with_simulation(self, **changes: Any) -> Config:
        """A copy with [simulation] fields replaced (validated)."""
        raw = {k: getattr(self.simulation, k) for k in SIMULATION_KEYS}
        for k, v in changes.items():
            if v is not None:
                raw[k] = v
        raw = {k: v for k, v in raw.items() if v is not None}
        sim = _parse_simulation(raw)
        resolved = copy.deepcopy(self.resolved)
        if resolved:  # keep the document in step, for provenance and overrides
            resolved["simulation"] = {**resolved.get("simulation", {}), **{
                k: v for k, v in changes.items() if v is not None}}
        observations = self.observations
        if observations and sim.grid != self.grid:  # windows must stay inside the grid
            observations = _parse_observations(self.resolved.get("observations", {}),
                                               sim.grid)
        funding = self.funding
        if funding is not None and sim.grid != self.grid:
            # a run cut short by the program keeps the rounds inside it: one after its
            # horizon changes none of its months (a config file that does so is an error,
            # MODEL.md E); one before a later start is still an error
            last = sim.grid.num_months - 1
            kept = tuple((m, d) for m, d in funding.rounds if sim.grid.index(m) <= last)
            for i, (month, _) in enumerate(kept):
                if sim.grid.index(month) < 0:
                    raise ConfigError(f"funding.rounds[{i}][0]", month, "a month within the "
                                      f"simulation, {sim.grid.label(0)} to "
                                      f"{sim.grid.label(last)} (a round before the start "
                                      "belongs in funding.cash_0)")
            funding = FundingConfig(kept)
            if resolved.get("funding"):
                resolved["funding"]["rounds"] = [list(r) for r in kept]
        return replace(self, simulation=sim, resolved=resolved, observations=observations,
                       funding=funding)


# --------------------------------------------------------------------------------------
# small checkers


def _home_table(key: str) -> str | None:
    """The table a key belongs in, where it is one of a table's own keys (a model
    parameter in [parameters], a deal term in [deal], ...)."""
    homes = {"parameters": PARAMETER_NAMES, "deal": DEAL_KEYS,
             "simulation": SIMULATION_KEYS, "conditioning": CONDITIONING_KEYS}
    return next((table for table, keys in homes.items() if key in keys), None)


def _unknown(key: str, valid: list[str] | tuple[str, ...], prefix: str) -> ConfigError:
    home = _home_table(key)
    if home is not None and not (prefix == f"{home}." or prefix.startswith(f"{home}.")):
        # a key of another table (a v2 parameter written under [deal], say): say where
        where = f"[{prefix.rstrip('.')}]" if prefix else "the top level"
        listed = f", one of: {', '.join(valid)}" if len(valid) <= 12 else ""
        return ConfigError(f"{prefix}{key}", _UNKNOWN,
                           f"a key of {where}{listed} (did you mean {home}.{key}? {key} "
                           f"belongs in [{home}])")
    close = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.6)
    hint = f"a known key (did you mean {prefix}{close[0]}?)" if close else \
        f"one of: {', '.join(valid)}" if len(valid) <= 12 else "a known key (see MODEL.md)"
    return ConfigError(f"{prefix}{key}", _UNKNOWN, hint)


class _UnknownKey:
    def __repr__(self) -> str:
        return "<unknown key>"


_UNKNOWN = _UnknownKey()


class _BigInt:
    """An integer too long to print (or to convert to float): shown by its digit count."""

    def __init__(self, value: int) -> None:
        self.digits = len(str(abs(value))) if abs(value) < 10**4000 else None

    def __repr__(self) -> str:
        size = f"{self.digits} digits" if self.digits else "over 4000 digits"
        return f"<an integer of {size}>"


def _nesting_depth_error(doc: Any) -> ConfigError | None:
    """A ConfigError naming the first value nested deeper than :data:`MAX_NESTING`, found
    without recursion (a deep document would exhaust Python's stack)."""
    stack: list[tuple[Any, str, int]] = [(doc, "", 0)]
    while stack:
        node, key, depth = stack.pop()
        if depth > MAX_NESTING:
            key = key if len(key) <= 80 else key[:77] + "..."
            return ConfigError(key or "<document>", _Nested(),
                               f"tables and arrays nested at most {MAX_NESTING} deep")
        if isinstance(node, dict):
            stack.extend((v, f"{key}.{k}" if key else str(k), depth + 1)
                         for k, v in node.items())
        elif isinstance(node, list):
            stack.extend((v, f"{key}[{i}]", depth + 1) for i, v in enumerate(node))
    return None


class _Nested:
    def __repr__(self) -> str:
        return f"<a value nested more than {MAX_NESTING} deep>"


def _check_keys(table: dict, valid: list[str] | tuple[str, ...], prefix: str) -> None:
    for key in table:
        if key not in valid:
            raise _unknown(key, valid, prefix)


def _number(value: Any, key: str, expected: str = "a finite number") -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(key, value, expected)
    try:
        x = float(value)
    except OverflowError:  # an integer beyond float64's range (> ~1.8e308)
        raise ConfigError(key, _BigInt(value), expected) from None
    if not math.isfinite(x):
        raise ConfigError(key, value, expected)
    return x


def _in_range(value: Any, key: str, lo: float, hi: float | None = None,
              lo_open: bool = False) -> float:
    hi_txt = "inf)" if hi is None else f"{hi:g}]"
    expected = f"a number in {'(' if lo_open else '['}{lo:g}, {hi_txt}"
    x = _number(value, key, expected)
    if (x <= lo if lo_open else x < lo) or (hi is not None and x > hi):
        raise ConfigError(key, value, expected)
    return x


def _integer(value: Any, key: str, lo: int, hi: int) -> int:
    expected = f"an integer in [{lo}, {hi}]"
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer() and lo <= value <= hi:
            return int(value)
        raise ConfigError(key, value, expected)
    if not lo <= value <= hi:
        raise ConfigError(key, value, expected)
    return value


def _month(value: Any, key: str) -> str:
    try:
        parse_month(value)
    except ValueError as exc:
        raise ConfigError(key, value, f"a month \"YYYY-MM\" ({exc})") from None
    return value


def _table(raw: dict, key: str, required: bool = True) -> dict:
    if key not in raw:
        if required:
            raise ConfigError(key, _MISSING, "a table [" + key + "]")
        return {}
    value = raw[key]
    if not isinstance(value, dict):
        raise ConfigError(key, value, "a table [" + key + "]")
    return value


# --------------------------------------------------------------------------------------
# sections

SIMULATION_KEYS = ("start", "horizon", "paths", "seed", "chunk_size",
                   "max_nonfinite_fraction", "variance_reduction", "discount_rate")
FUNDING_KEYS = ("cash_0", "rounds")


def _parse_simulation(raw: dict) -> SimulationConfig:
    _check_keys(raw, SIMULATION_KEYS, "simulation.")
    for key in ("start", "horizon"):
        if key not in raw:
            raise ConfigError(f"simulation.{key}", _MISSING, "a month \"YYYY-MM\"")
    start = _month(raw["start"], "simulation.start")
    horizon = _month(raw["horizon"], "simulation.horizon")
    n_months = parse_month(horizon) - parse_month(start) + 1
    if n_months < 1:
        raise ConfigError("simulation.horizon", horizon,
                          f"a month not before simulation.start ({start})")
    if n_months > MAX_MONTHS:
        raise ConfigError("simulation.horizon", horizon,
                          f"at most {MAX_MONTHS} months after simulation.start ({start})")
    paths = _integer(raw.get("paths", DEFAULT_PATHS), "simulation.paths", 1, MAX_PATHS)
    seed = _integer(raw.get("seed", DEFAULT_SEED), "simulation.seed", 0, 2**63 - 1)
    chunk = raw.get("chunk_size")
    if chunk is not None:
        chunk = _integer(chunk, "simulation.chunk_size", 1, 2**26)
    max_bad = _in_range(raw.get("max_nonfinite_fraction", DEFAULT_MAX_NONFINITE),
                        "simulation.max_nonfinite_fraction", 0.0, 1.0)
    reduction = raw.get("variance_reduction", "none")
    if reduction not in VARIANCE_REDUCTION:
        raise ConfigError("simulation.variance_reduction", reduction,
                          "one of " + ", ".join(f'"{v}"' for v in VARIANCE_REDUCTION))
    if reduction == "antithetic" and paths % 2:
        raise ConfigError("simulation.paths", paths,
                          "an even number with variance_reduction = \"antithetic\" (pairs)")
    discount = raw.get("discount_rate")
    if discount is not None:
        expected = "a finite log rate per year >= 0 (e.g. 0.08, or \"8%/yr\" for ln 1.08)"
        discount = _rate(discount, "simulation.discount_rate", expected)
        # (a percentage beyond float64's range, "1e400%/yr", is an infinite rate)
        if not 0.0 <= discount < math.inf:
            raise ConfigError("simulation.discount_rate", raw["discount_rate"], expected)
    return SimulationConfig(start, horizon, paths, seed, chunk, max_bad, reduction, discount)


def _parse_funding(raw: dict, grid: MonthGrid) -> tuple[FundingConfig, float | Distribution]:
    """``[funding]``: its rounds, and ``cash_0`` (a parameter, returned to join them)."""
    _check_keys(raw, FUNDING_KEYS, "funding.")
    if "cash_0" not in raw:
        raise ConfigError("funding.cash_0", _MISSING, "$ available to OpenAI at the start "
                          "(>= 0): a number or a distribution table {dist = ...}")
    value = raw["cash_0"]
    if isinstance(value, dict):
        cash_0: float | Distribution = _parse_distribution("cash_0", value, "funding")
    else:
        cash_0 = _number(value, "funding.cash_0", "a number >= 0 ($) or a distribution "
                         "table {dist = ...}")
        if not cash_0 >= 0.0:
            raise ConfigError("funding.cash_0", value, "a number >= 0 ($)")
    rounds = raw.get("rounds", [])
    pair = 'a list of ["YYYY-MM", dollars] pairs, e.g. [["2025-03", 40e9]]'
    if not isinstance(rounds, list):
        raise ConfigError("funding.rounds", rounds, pair)
    out: list[tuple[str, float]] = []
    for i, item in enumerate(rounds):
        key = f"funding.rounds[{i}]"
        if not isinstance(item, list) or len(item) != 2:
            raise ConfigError(key, item, '["YYYY-MM", dollars]')
        month = _month(item[0], f"{key}[0]")
        if not 0 <= grid.index(month) < grid.num_months:
            why = ("a round before the start belongs in funding.cash_0" if
                   grid.index(month) < 0 else "a round after the horizon is outside the run")
            raise ConfigError(f"{key}[0]", month, "a month within the simulation, "
                              f"{grid.label(0)} to {grid.label(grid.num_months - 1)} ({why})")
        dollars = _number(item[1], f"{key}[1]", "a finite number of dollars >= 0")
        if not dollars >= 0.0:
            raise ConfigError(f"{key}[1]", item[1], "a finite number of dollars >= 0")
        if out and parse_month(month) <= parse_month(out[-1][0]):
            raise ConfigError(f"{key}[0]", month, "a month after the previous round's "
                              f"({out[-1][0]}): rounds in strictly increasing months")
        out.append((month, dollars))
    return FundingConfig(tuple(out)), cash_0


def _grid_month(value: Any, key: str, grid: MonthGrid) -> str:
    """A month "YYYY-MM" inside the simulation's grid."""
    month = _month(value, key)
    first, last = grid.labels[0], grid.labels[-1]
    if not parse_month(first) <= parse_month(month) <= parse_month(last):
        raise ConfigError(key, month, f"a month within the simulation, {first} to {last}")
    return month


def _observed_series(spec: dict, key: str) -> tuple[tuple[str, ...], bool]:
    """An observation's ``flow`` / ``flows`` / ``stock`` as (series, is_stock)."""
    forms = [k for k in ("flow", "flows", "stock") if k in spec]
    flows_txt = "one of " + ", ".join(ANNUAL_FLOWS)
    if not forms:
        raise ConfigError(f"{key}.flow", _MISSING, "one of flow (an annual flow summed over "
                          "start..end), flows (a list of them, summed) or stock (a stock at "
                          "a month)")
    if len(forms) > 1:
        raise ConfigError(f"{key}.{forms[1]}", spec[forms[1]], f"only one of flow, flows or "
                          f"stock ({key}.{forms[0]} is given)")
    form = forms[0]
    value = spec[form]
    if form == "flow":
        if not isinstance(value, str) or value not in ANNUAL_FLOWS:
            raise ConfigError(f"{key}.flow", value, flows_txt)
        return (value,), False
    if form == "stock":
        if not isinstance(value, str) or value not in ALL_STOCKS:
            raise ConfigError(f"{key}.stock", value, "one of " + ", ".join(ALL_STOCKS))
        return (value,), True
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{key}.flows", value, "a non-empty list of distinct annual flows "
                          f"(summed), each {flows_txt}")
    for i, name in enumerate(value):
        if not isinstance(name, str) or name not in ANNUAL_FLOWS:
            raise ConfigError(f"{key}.flows[{i}]", name, flows_txt)
        if name in value[:i]:
            raise ConfigError(f"{key}.flows[{i}]", name, "each flow listed once")
    return tuple(value), False


def _parse_observation(name: str, spec: Any, grid: MonthGrid) -> Observation:
    key = f"observations.{name}"
    if not isinstance(spec, dict):
        raise ConfigError(key, spec, "a table with flow (or flows, or stock), its window "
                          "(start and end, or month), value and sd (or rel_sd)")
    _check_keys(spec, OBSERVATION_KEYS, key + ".")
    series, is_stock = _observed_series(spec, key)
    if is_stock:
        for k in ("start", "end"):
            if k in spec:
                raise ConfigError(f"{key}.{k}", spec[k], "no start/end with stock (a stock "
                                  'is observed at one month: give month = "YYYY-MM")')
        if "month" not in spec:
            raise ConfigError(f"{key}.month", _MISSING, 'the month the stock was observed, '
                              '"YYYY-MM"')
        start = end = _grid_month(spec["month"], f"{key}.month", grid)
    else:
        if "month" in spec:
            raise ConfigError(f"{key}.month", spec["month"], "no month with flow/flows (a "
                              "flow is summed over months start..end; month is for a stock)")
        for k in ("start", "end"):
            if k not in spec:
                raise ConfigError(f"{key}.{k}", _MISSING, 'a month "YYYY-MM" (the window '
                                  'is start..end, inclusive)')
        start = _grid_month(spec["start"], f"{key}.start", grid)
        end = _grid_month(spec["end"], f"{key}.end", grid)
        if parse_month(end) < parse_month(start):
            raise ConfigError(f"{key}.end", end, f"a month not before {key}.start ({start})")
    unit = STOCK_UNITS[series[0]] if is_stock else "$"
    signed = any(f in SIGNED_FLOWS + SIGNED_STOCKS for f in series)
    if "value" not in spec:
        raise ConfigError(f"{key}.value", _MISSING, f"the observed value ({unit})")
    if signed:
        value = _number(spec["value"], f"{key}.value", f"a finite number ({unit}; "
                        "negative allowed: a signed flow or OpenAI's cash)")
    else:
        value = _number(spec["value"], f"{key}.value", f"a number > 0 ({unit})")
        if not value > 0:
            raise ConfigError(f"{key}.value", spec["value"], f"a number > 0 ({unit}; only "
                              f"{', '.join(SIGNED_FLOWS + SIGNED_STOCKS)} can be "
                              "negative or 0)")
    if ("sd" in spec) == ("rel_sd" in spec):
        raise ConfigError(f"{key}.sd", spec.get("sd", _MISSING),
                          f"exactly one of sd ({unit}) or rel_sd (a fraction of |value|)")
    if "sd" in spec:
        sd = _in_range(spec["sd"], f"{key}.sd", 0.0, None, lo_open=True)
    else:
        rel = _in_range(spec["rel_sd"], f"{key}.rel_sd", 0.0, None, lo_open=True)
        if value == 0:
            raise ConfigError(f"{key}.rel_sd", spec["rel_sd"], f"sd ({unit}) instead: "
                              "rel_sd is a fraction of |value|, and value is 0")
        sd = rel * abs(value)
        if not (sd > 0 and math.isfinite(sd)):
            raise ConfigError(f"{key}.rel_sd", spec["rel_sd"], "a fraction whose sd, "
                              f"rel_sd x |value|, is a finite number > 0 (it is {sd:g})")
    error = spec.get("error", "normal")
    if not isinstance(error, str) or error not in OBSERVATION_ERRORS:
        raise ConfigError(f"{key}.error", error,
                          "one of " + ", ".join(f'"{e}"' for e in OBSERVATION_ERRORS))
    if error == "normal":
        if "dof" in spec:
            raise ConfigError(f"{key}.dof", spec["dof"], 'no dof with error = "normal" (set '
                              'error = "student_t" for a heavy-tailed error)')
        dof = math.inf
    else:
        if "dof" not in spec:
            raise ConfigError(f"{key}.dof", _MISSING, 'degrees of freedom, a number > 0 '
                              '(required with error = "student_t"; e.g. 4)')
        dof = _in_range(spec["dof"], f"{key}.dof", 0.0, None, lo_open=True)
    bias = _parse_bias(spec["bias"], f"{key}.bias") if "bias" in spec else None
    return Observation(name, series, start, end, value, sd, error, dof, bias)


def _parse_observations(raw: dict, grid: MonthGrid) -> tuple[Observation, ...]:
    return tuple(_parse_observation(name, spec, grid) for name, spec in raw.items())


def _parse_bias(value: Any, key: str) -> Distribution | float:
    """An observation's multiplicative bias factor: a number > 0, or a lognormal, uniform or
    triangular distribution (any field form of FIELD_SETS, canonical fields kept) whose
    support is > 0, untruncated."""
    if not isinstance(value, dict):
        x = _number(value, key, 'a number > 0 or a distribution table { dist = "lognormal", '
                    '... } (a positive factor on the model\'s value)')
        if not x > 0:
            raise ConfigError(key, value, "a number > 0 (a factor on the model's value)")
        return x
    expected_kind = ("one of " + ", ".join(BIAS_KINDS) + " (a positive factor with a "
                     "closed-form quantile)")
    if "dist" not in value:
        raise ConfigError(f"{key}.dist", _MISSING, expected_kind)
    kind = value["dist"]
    if not isinstance(kind, str) or kind not in BIAS_KINDS:
        raise ConfigError(f"{key}.dist", kind, expected_kind)
    allowed = sorted({f for fs in FIELD_SETS[kind] for f in fs})
    fields = {k: v for k, v in value.items() if k != "dist"}
    for f in fields:
        if f in TRUNCATION_FIELDS:
            raise ConfigError(f"{key}.{f}", fields[f], "no min/max on a bias factor (no "
                              "truncation: choose a distribution whose support is > 0)")
        if f not in allowed:
            raise _unknown(f, allowed, f"{key}.")
    given = {f: _number(v, f"{key}.{f}") for f, v in fields.items()}
    forms = FIELD_SETS[kind]
    if not any(set(fs) == set(given) for fs in forms):
        wanted = " or ".join("{" + ", ".join(fs) + "}" for fs in forms)
        raise ConfigError(key, value, f"{kind} with fields {wanted}")
    _check_shape(kind, given, key)
    if kind in ("uniform", "triangular") and not given["low"] > 0:
        raise ConfigError(f"{key}.low", given["low"], "a number > 0 (a bias factor's "
                          "support must be > 0)")
    return Distribution(kind, canonical_fields(kind, given))


def _one_of(value: Any, key: str, choices: tuple[str, ...]) -> str:
    """``value`` if it is one of the strings ``choices``, else a ConfigError naming ``key``."""
    if not isinstance(value, str) or value not in choices:
        raise ConfigError(key, value, "one of " + ", ".join(f'"{c}"' for c in choices))
    return value


def _parse_conditioning(raw: dict) -> ConditioningConfig:
    _check_keys(raw, CONDITIONING_KEYS, "conditioning.")
    kw: dict[str, Any] = {}
    if "method" in raw:
        kw["method"] = _one_of(raw["method"], "conditioning.method", CONDITIONING_METHODS)
    if "particles" in raw:
        kw["particles"] = _integer(raw["particles"], "conditioning.particles",
                                   MIN_PARTICLES, MAX_PARTICLES)
    if "ess_fraction" in raw:
        expected = "a number in (0, 1)"
        f = _number(raw["ess_fraction"], "conditioning.ess_fraction", expected)
        if not 0.0 < f < 1.0:
            raise ConfigError("conditioning.ess_fraction", raw["ess_fraction"], expected)
        kw["ess_fraction"] = f
    if "moves" in raw:
        kw["moves"] = _integer(raw["moves"], "conditioning.moves", 1, MAX_MOVES)
    if "runs" in raw:
        kw["runs"] = _integer(raw["runs"], "conditioning.runs", 2, MAX_RUNS)
    if "seed" in raw:
        kw["seed"] = _integer(raw["seed"], "conditioning.seed", 0, 2**63 - 1)
    if "move" in raw:
        kw["move"] = _one_of(raw["move"], "conditioning.move", SMC_MOVES)
    if "mixing_threshold" in raw:
        expected = "a number in [0, 1) (0: always the most moves)"
        f = _number(raw["mixing_threshold"], "conditioning.mixing_threshold", expected)
        if not 0.0 <= f < 1.0:
            raise ConfigError("conditioning.mixing_threshold", raw["mixing_threshold"],
                              expected)
        kw["mixing_threshold"] = f
    return ConditioningConfig(**kw)


def _parse_distribution(name: str, spec: dict, table: str = "parameters") -> Distribution:
    key = f"{table}.{name}"
    if "dist" not in spec:
        raise ConfigError(f"{key}.dist", _MISSING,
                          f"one of {', '.join(FIELD_SETS)} (or give a bare number)")
    kind = spec["dist"]
    if not isinstance(kind, str) or kind not in FIELD_SETS:
        close = difflib.get_close_matches(str(kind), list(FIELD_SETS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"{key}.dist", kind, f"one of {', '.join(FIELD_SETS)}{hint}")
    allowed = sorted({f for fs in FIELD_SETS[kind] for f in fs}) + list(TRUNCATION_FIELDS)
    fields = {k: v for k, v in spec.items() if k != "dist"}
    for f in fields:
        if f not in allowed:
            raise _unknown(f, allowed, f"{key}.")
    values = {f: _distribution_field(name, f, v, key) for f, v in fields.items()}
    given = {f: v for f, v in values.items() if f not in TRUNCATION_FIELDS}
    forms = FIELD_SETS[kind]
    if not any(set(fs) == set(given) for fs in forms):
        wanted = " or ".join("{" + ", ".join(fs) + "}" for fs in forms)
        raise ConfigError(key, spec, f"{kind} with fields {wanted} (plus optional min, max)")
    _check_shape(kind, given, key)
    dist = Distribution(kind, canonical_fields(kind, given),
                        values.get("min", -math.inf), values.get("max", math.inf))
    if dist.lower >= dist.upper:
        raise ConfigError(f"{key}.max", dist.upper, f"a number above min ({dist.lower:g})")
    if not dist.resolvable():
        if dist.kind in ("normal", "lognormal", "uniform"):  # exact: no mass at all
            raise ConfigError(key, spec, "min/max that keep some probability mass (the "
                              f"{kind} has support {_interval(dist.natural_support())}; "
                              "none of it that float64 can represent lies between them)")
        raise ConfigError(key, spec, "min/max that keep some probability mass: at least "
                          f"{MIN_TABULATED_MASS:g} for a {kind} (its draws map u to "
                          "F(min) + u (F(max) - F(min)))")
    domain = DOMAINS[name]
    a, b = dist.support()
    if not domain.contains_interval(a, b):
        raise ConfigError(key, spec, f"a distribution inside {name}'s domain "
                          f"{domain.describe()} (its support is [{a:g}, {b:g}]; "
                          "truncate it with min/max)")
    return dist


#: Fields of a rate's distribution that may be given as "% per year": values of the rate
#: itself (quantiles, support ends, mode; a normal's mean is its median). Not its scale
#: (sd, sigma) nor a shape (alpha, beta): "% per year" of a spread has no meaning.
RATE_VALUE_FIELDS = ("mean", "median", "p5", "p95", "low", "high", "mode", "min", "max")


def _rate(value: Any, key: str, expected: str = RATE_FORMS) -> float:
    """A log rate per year given as a number or as "-40%/yr" (-> ln(0.6))."""
    if isinstance(value, str):
        pct = parse_percent(value)
        if pct is None:
            raise ConfigError(key, value, expected)
        if not pct > -100.0:
            raise ConfigError(key, value, f"{RATE_FORMS}: a fall of 100% or more a year "
                              "has no log rate")
        return log_rate(pct)
    return _number(value, key, expected)


def _not_a_rate(key: str, value: Any, expected: str) -> ConfigError:
    """The error for a string given to a parameter that is not a rate."""
    if parse_percent(value) is not None:
        expected += (' ("%/yr" is only for rates, which are given as '
                     f"{RATE_FORMS.split(' (above')[0]}: "
                     f"{', '.join(RATE_PARAMETERS[:3])}, ...)")
    return ConfigError(key, value, expected)


def _distribution_field(name: str, f: str, v: Any, key: str) -> float:
    if name in RATE_PARAMETERS and isinstance(v, str):
        if f in RATE_VALUE_FIELDS:
            return _rate(v, f"{key}.{f}")
        raise ConfigError(f"{key}.{f}", v, "a finite number (a spread or shape of a log "
                          'rate per year: "%/yr" is only for its values, e.g. p5, p95, '
                          "mean, low, high)")
    if isinstance(v, str):
        raise _not_a_rate(f"{key}.{f}", v, "a finite number")
    return _number(v, f"{key}.{f}")


def _interval(ends: tuple[float, float]) -> str:
    return f"[{ends[0]:g}, {ends[1]:g}]"


def _check_shape(kind: str, g: dict[str, float], key: str) -> None:
    def bad(field: str, expected: str) -> ConfigError:
        return ConfigError(f"{key}.{field}", g[field], expected)

    if kind == "normal":
        if "sd" in g and not g["sd"] > 0:
            raise bad("sd", "a number > 0 (use a bare number for a fixed value)")
        if "p5" in g and not g["p95"] > g["p5"]:
            raise bad("p95", f"a number above p5 ({g['p5']:g})")
    elif kind == "lognormal":
        if "median" in g:
            if not g["median"] > 0:
                raise bad("median", "a number > 0")
            if not g["sigma"] > 0:
                raise bad("sigma", "a number > 0 (use a bare number for a fixed value)")
        else:
            if not g["p5"] > 0:
                raise bad("p5", "a number > 0")
            if not g["p95"] > g["p5"]:
                raise bad("p95", f"a number above p5 ({g['p5']:g})")
    elif kind == "uniform":
        if not g["high"] > g["low"]:
            raise bad("high", f"a number above low ({g['low']:g})")
    elif kind in ("triangular", "pert"):
        if not g["high"] > g["low"]:
            raise bad("high", f"a number above low ({g['low']:g})")
        if not g["low"] <= g["mode"] <= g["high"]:
            raise bad("mode", f"a number in [low, high] = [{g['low']:g}, {g['high']:g}]")
    elif kind == "beta":
        for f in ("alpha", "beta"):
            if not g[f] > 0:
                raise bad(f, "a number > 0")


def _check_reverse_share(deal: DealConfig, parameters: dict) -> None:
    """A reverse share needs the revenue it is a share of."""
    if max(deal.term_values("reverse_share")) > 0:
        for name in REVERSE_SHARE_PARAMETERS:
            if name not in parameters:
                raise ConfigError(f"parameters.{name}", _MISSING,
                                  "a number or a distribution (required when a "
                                  "reverse_share > 0: the reverse share is a share of "
                                  "Microsoft's revenue from OpenAI models)")


def _parse_parameters(raw: dict) -> dict[str, float | Distribution]:
    valid = [n for n in PARAMETER_NAMES if n not in FUNDING_PARAMETERS]
    if "cash_0" in raw:
        raise ConfigError("parameters.cash_0", raw["cash_0"], "no such parameter here: "
                          "OpenAI's cash at the start is funding.cash_0 (in [funding], "
                          "with its rounds)")
    _check_keys(raw, valid, "parameters.")
    has = ["microsoft_equity_stake" in raw, "valuation_multiple" in raw]
    if any(has) and not all(has):
        given, missing = (("microsoft_equity_stake", "valuation_multiple") if has[0]
                          else ("valuation_multiple", "microsoft_equity_stake"))
        raise ConfigError(f"parameters.{missing}", _MISSING,
                          f"a number or a distribution table: {given} is given, and "
                          "Microsoft's equity value needs both (or neither)")
    for name in ALWAYS_REQUIRED:
        if name not in raw:
            raise ConfigError(f"parameters.{name}", _MISSING,
                              "a number or a distribution table (all 33 model parameters "
                              "are required)")
    for item, forms in ALTERNATIVE_FORMS.items():
        given = [[n in raw for n in form] for form in forms]
        used = [any(g) for g in given]
        if all(used):
            raise ConfigError(f"parameters.{forms[1][0]}", raw[next(
                n for n in forms[1] if n in raw)], f"one form of {item}: either "
                f"{' + '.join(forms[0])} or {' + '.join(forms[1])}, not both")
        if not any(used):
            raise ConfigError(f"parameters.{forms[0][0]}", _MISSING,
                              f"a number or a distribution table: {item} is given either "
                              f"as {' + '.join(forms[0])} or as {' + '.join(forms[1])}")
        form = forms[used.index(True)]
        for name in form:
            if name not in raw:
                raise ConfigError(f"parameters.{name}", _MISSING,
                                  f"a number or a distribution table (with "
                                  f"{' and '.join(n for n in form if n != name)})")
    for rate in DECAYING_RATES:
        has = [f"{rate}_inf" in raw, f"{rate}_halflife" in raw]
        if any(has) and rate not in raw:
            name = f"{rate}_inf" if has[0] else f"{rate}_halflife"
            raise ConfigError(f"parameters.{name}", raw[name],
                              f"no companion of {rate}, which is not given (its form is "
                              "not used)")
        if any(has) and not all(has):
            missing = f"{rate}_halflife" if has[0] else f"{rate}_inf"
            raise ConfigError(f"parameters.{missing}", _MISSING,
                              f"both {rate}_inf and {rate}_halflife, or neither")
    out: dict[str, float | Distribution] = {}
    for name, value in raw.items():
        key = f"parameters.{name}"
        domain = DOMAINS[name]
        if isinstance(value, dict):
            # a half-life's draws are finite and > 0 whatever its distribution (the
            # domain check does the > 0): an unbounded one is fine, its huge draws give
            # 2^(-dt/h) -> 1, i.e. a rate that barely decays
            out[name] = _parse_distribution(name, value)
        elif name in RATE_PARAMETERS:
            out[name] = _rate(value, key, f"{RATE_FORMS}, or a distribution table "
                              "{dist = ...}")
        else:
            if isinstance(value, str):
                raise _not_a_rate(key, value, f"a number in {domain.describe()} or a "
                                  "distribution table {dist = ...}")
            x = _number(value, key, f"a number in {domain.describe()} or a distribution "
                        "table {dist = ...}")
            if not domain.contains(x):
                raise ConfigError(key, value, f"a number in {domain.describe()}")
            out[name] = x
    for name in EULER_RATES:
        low = out[name] if not isinstance(out[name], Distribution) else \
            out[name].support()[0]
        if low >= MAX_EULER_RATE:
            raise ConfigError(f"parameters.{name}", raw[name],
                              f"a rate below {MAX_EULER_RATE:g} per year: MODEL.md's monthly "
                              f"step moves the state by {name} x dt of its distance to the "
                              "target, which overshoots and diverges once that passes 2 "
                              "(dt = 1/12)")
    return out


#: Rates that pull a state toward a target by an explicit monthly (Euler) step: the step is
#: stable only while rate x dt < 2, i.e. below 24 per year. A fixed value (or every draw of a
#: distribution) at or above it diverges on every path, so it is refused; a distribution
#: reaching it only in a tail gives non-finite paths, counted and limited as any others.
EULER_RATES = ("utilization_speed", "conversion_speed", "users_growth")
MAX_EULER_RATE = 24.0


def _parse_correlation(raw: dict, params: dict) -> tuple[tuple[str, str, float], ...]:
    _check_keys(raw, ["pairs"], "parameter_correlation.")
    pairs = raw.get("pairs", [])
    key = "parameter_correlation.pairs"
    if not isinstance(pairs, list):
        raise ConfigError(key, pairs, "a list of [name, name, rho] triples")
    seen: set[frozenset] = set()
    out = []
    for i, pair in enumerate(pairs):
        k = f"{key}[{i}]"
        if not (isinstance(pair, list) and len(pair) == 3 and isinstance(pair[0], str)
                and isinstance(pair[1], str)):
            raise ConfigError(k, pair, "a triple [name, name, rho]")
        a, b, rho = pair
        for name in (a, b):
            if name not in PARAMETER_INDEX:
                close = difflib.get_close_matches(name, PARAMETER_NAMES, n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise ConfigError(k, pair, f"known parameter names{hint}")
            if not isinstance(params.get(name), Distribution):
                raise ConfigError(k, pair, f"parameters drawn per path ({name} is "
                                  f"{'fixed' if name in params else 'not given'})")
        if a == b:
            raise ConfigError(k, pair, "two different parameters")
        if frozenset((a, b)) in seen:
            raise ConfigError(k, pair, "each pair listed once")
        seen.add(frozenset((a, b)))
        r = _number(rho, f"{k}[2]", "a rank correlation in (-1, 1)")
        if not -1.0 < r < 1.0:
            raise ConfigError(f"{k}[2]", rho, "a rank correlation in (-1, 1) "
                              "(+-1 is not positive definite)")
        out.append((a, b, r))
    result = tuple(out)
    if result:
        from .draws import copula_matrix  # local: draws imports config types

        names, matrix = copula_matrix(result)
        eig = np.linalg.eigvalsh(matrix)
        if eig.min() <= 1e-10:
            raise ConfigError(key, pairs, "rank correlations whose normal-copula matrix "
                              f"(r = 2 sin(pi rho / 6)) is positive definite; its smallest "
                              f"eigenvalue is {eig.min():.3g} (never repaired silently)")
    return result


def _parse_shocks(raw: dict) -> tuple[tuple[float, ...], ...]:
    _check_keys(raw, ["correlation"], "shocks.")
    identity = tuple(tuple(1.0 if i == j else 0.0 for j in range(5)) for i in range(5))
    if "correlation" not in raw:
        return identity
    m = raw["correlation"]
    key = "shocks.correlation"
    expected = f"a 5x5 list of numbers (order: {', '.join(SHOCK_NAMES)})"
    if not (isinstance(m, list) and len(m) == 5 and all(isinstance(r, list) and len(r) == 5
                                                        for r in m)):
        raise ConfigError(key, m, expected)
    a = np.array([[_number(v, f"{key}[{i}][{j}]") for j, v in enumerate(row)]
                  for i, row in enumerate(m)])
    for i in range(5):
        if a[i, i] != 1.0:
            raise ConfigError(f"{key}[{i}][{i}]", m[i][i], "1 on the diagonal")
        for j in range(5):
            if a[i, j] != a[j, i]:
                raise ConfigError(f"{key}[{i}][{j}]", m[i][j],
                                  f"a symmetric matrix (entry [{j}][{i}] is {m[j][i]})")
            if abs(a[i, j]) > 1:
                raise ConfigError(f"{key}[{i}][{j}]", m[i][j], "a correlation in [-1, 1]")
    eig = np.linalg.eigvalsh(a)
    if eig.min() <= 1e-10:
        raise ConfigError(key, m, "a positive definite correlation matrix (smallest "
                          f"eigenvalue {eig.min():.3g}; never repaired silently)")
    return tuple(tuple(float(v) for v in row) for row in a)


DEAL_KEYS = ("investment", "revenue_share", "revenue_share_end", "revenue_share_cap",
             "profit_share_until_recouped", "profit_share_after", "profit_cap",
             "loss_carryforward", "recoup_from", "azure_credits", "losses_before_start",
             "revenue_share_cap_from", "revenue_share_paid_before_start", "reverse_share",
             "azure_commitment", "azure_commitment_from", "azure_commitment_by", "change")
COMMITMENT_KEYS = ("azure_commitment", "azure_commitment_from", "azure_commitment_by")


def _deal_terms(raw: dict, prefix: str) -> dict[str, Any]:
    """The term fields of [deal] or of one change, validated."""
    kw: dict[str, Any] = {}
    for k in ("revenue_share", "profit_share_until_recouped", "profit_share_after",
              "reverse_share"):
        if k in raw:
            kw[k] = _in_range(raw[k], f"{prefix}{k}", 0.0, 1.0)
    for k in ("revenue_share_cap", "profit_cap"):
        if k in raw:
            kw[k] = _in_range(raw[k], f"{prefix}{k}", 0.0)
    for k in ("revenue_share_end", "revenue_share_cap_from"):
        if k in raw:
            kw[k] = _month(raw[k], f"{prefix}{k}")
    return kw


def _parse_deal(raw: dict, grid: MonthGrid) -> DealConfig:
    _check_keys(raw, DEAL_KEYS, "deal.")
    if "investment" not in raw:
        raise ConfigError("deal.investment", _MISSING, "a number of dollars > 0")
    kw: dict[str, Any] = {"investment": _in_range(raw["investment"], "deal.investment",
                                                  0.0, None, lo_open=True)}
    kw.update(_deal_terms(raw, "deal."))
    for k in ("azure_credits", "losses_before_start", "revenue_share_paid_before_start",
              "azure_commitment"):
        if k in raw:
            kw[k] = _in_range(raw[k], f"deal.{k}", 0.0)
    if "loss_carryforward" in raw:
        if not isinstance(raw["loss_carryforward"], bool):
            raise ConfigError("deal.loss_carryforward", raw["loss_carryforward"],
                              "true or false")
        kw["loss_carryforward"] = raw["loss_carryforward"]
    if "recoup_from" in raw:
        r = raw["recoup_from"]
        if not (isinstance(r, list) and r and all(x in RECOUP_SOURCES for x in r)
                and len(set(r)) == len(r)):
            raise ConfigError("deal.recoup_from", r, "a non-empty list drawn from "
                              '["profit_share", "revenue_share", "azure_margin"], each once')
        kw["recoup_from"] = tuple(r)
    given = [k for k in COMMITMENT_KEYS if k in raw]
    if given and len(given) < 3:
        missing = next(k for k in COMMITMENT_KEYS if k not in raw)
        raise ConfigError(f"deal.{missing}", _MISSING, "azure_commitment, "
                          "azure_commitment_from and azure_commitment_by together (a "
                          "take-or-pay amount, $, and its first and last months)")
    if given:
        start = _month(raw["azure_commitment_from"], "deal.azure_commitment_from")
        by = _month(raw["azure_commitment_by"], "deal.azure_commitment_by")
        if parse_month(start) < parse_month(grid.labels[0]):
            raise ConfigError("deal.azure_commitment_from", start,
                              f"a month not before the start ({grid.labels[0]})")
        if parse_month(by) < parse_month(start):
            raise ConfigError("deal.azure_commitment_by", by,
                              f"a month not before deal.azure_commitment_from ({start})")
        kw["azure_commitment_from"], kw["azure_commitment_by"] = start, by
    kw["changes"] = _parse_changes(raw.get("change", []), grid)
    return DealConfig(**kw)


def _parse_changes(raw: Any, grid: MonthGrid) -> tuple[DealChange, ...]:
    """``[[deal.change]]``: tables with ``from`` (strictly increasing, after the start) and
    any of :data:`CHANGE_TERMS`."""
    if not isinstance(raw, list) or not all(isinstance(c, dict) for c in raw):
        raise ConfigError("deal.change", raw, "an array of tables [[deal.change]], each with "
                          "a month `from` and the terms it changes")
    out, last = [], parse_month(grid.labels[0])
    for i, table in enumerate(raw):
        prefix = f"deal.change[{i}]."
        for key in table:
            if key in DEAL_KEYS and key not in CHANGE_TERMS:
                raise ConfigError(f"{prefix}{key}", table[key], "only term fields in a "
                                  f"change ({', '.join(CHANGE_TERMS)}): {key} is run-level, "
                                  "set once in [deal]")
        _check_keys(table, ("from",) + CHANGE_TERMS, prefix)
        if "from" not in table:
            raise ConfigError(f"{prefix}from", _MISSING, 'the first month of the new terms '
                              '"YYYY-MM"')
        start = _month(table["from"], f"{prefix}from")
        if parse_month(start) <= last:
            after = "the start" if i == 0 else f"deal.change[{i - 1}].from"
            raise ConfigError(f"{prefix}from", start, f"a month after {after} "
                              f"({grid.labels[0] if i == 0 else out[-1].start}): changes "
                              "come in strictly increasing month order")
        last = parse_month(start)
        terms = _deal_terms(table, prefix)
        if not terms:
            raise ConfigError(prefix.rstrip("."), table, "at least one term to change")
        out.append(DealChange(start, tuple(terms.items())))
    return tuple(out)


TOP_KEYS = ("extends", "simulation", "parameters", "parameter_correlation", "shocks", "deal",
            "observations", "conditioning", "funding")
#: Tables of a parent config that a child's same-named table updates key by key; any other
#: table given in the child replaces the parent's whole (a new [deal] is a new deal, new
#: [observations] are a new set of facts).
MERGED_TABLES = ("simulation", "parameters", "conditioning", "funding")
MAX_EXTENDS_DEPTH = 8


def parse_config(raw: dict, *, source_text: str = "", source_path: str = "") -> Config:
    """Validate a parsed TOML document (a dict) into a :class:`Config`."""
    if not isinstance(raw, dict):
        raise ConfigError("<document>", raw, "a TOML table")
    too_deep = _nesting_depth_error(raw)
    if too_deep is not None:
        raise too_deep
    misplaced = _misplaced_funding_key(raw)
    if misplaced is not None:
        raise misplaced
    _check_keys(raw, TOP_KEYS, "")
    if "extends" in raw:
        raise ConfigError("extends", raw["extends"], "to be resolved by load_config (a "
                          "config read from a file); parse the parent's text instead")
    simulation = _parse_simulation(_table(raw, "simulation"))
    parameters = _parse_parameters(_table(raw, "parameters"))
    funding = None
    if "funding" in raw:
        funding, parameters["cash_0"] = _parse_funding(_table(raw, "funding"),
                                                       simulation.grid)
    correlation = _parse_correlation(_table(raw, "parameter_correlation", False), parameters)
    shocks = _parse_shocks(_table(raw, "shocks", False))
    deal = _parse_deal(_table(raw, "deal"), simulation.grid)
    _check_reverse_share(deal, parameters)
    observations = _parse_observations(_table(raw, "observations", False), simulation.grid)
    for obs in observations:
        if obs.stock and obs.series[0] == "cash" and funding is None:
            raise ConfigError(f"observations.{obs.name}.stock", "cash", "a [funding] table "
                              "in the config: cash is OpenAI's cash from funding.cash_0 and "
                              "its rounds")
    conditioning = _parse_conditioning(_table(raw, "conditioning", False))
    return Config(simulation, parameters, deal, correlation, shocks, source_text=source_text,
                  source_path=source_path, observations=observations,
                  conditioning=conditioning, resolved=copy.deepcopy(raw), funding=funding)


def _misplaced_funding_key(raw: dict) -> ConfigError | None:
    """The error for a key of [funding] (``cash_0``, ``rounds``) given at the top level, in
    another table or in a ``[[deal.change]]``: it belongs in [funding] (``cash_0`` is also a
    parameter's name, so the generic hint would send it to [parameters];
    ``parameters.cash_0`` has its own error)."""
    places: list[tuple[str, Any]] = [("", raw)]
    for name, table in raw.items():
        # (the keys of [observations] are names: an observation may be called rounds)
        if name not in ("funding", "observations") and isinstance(table, dict):
            places.append((f"{name}.", table))
    deal = raw.get("deal")
    changes = deal.get("change") if isinstance(deal, dict) else None
    if isinstance(changes, list):
        places += [(f"deal.change[{i}].", c) for i, c in enumerate(changes)]
    for prefix, table in places:
        if not isinstance(table, dict):
            continue
        for key in FUNDING_KEYS:
            if key in table and f"{prefix}{key}" != "parameters.cash_0":
                where = f"[{prefix.rstrip('.')}]" if prefix else "the top level"
                return ConfigError(f"{prefix}{key}", table[key], f"no {key} in {where} (did "
                                   f"you mean funding.{key}? OpenAI's cash at the start and "
                                   "its funding rounds belong in [funding])")
    return None


def _read_toml(path: Path) -> tuple[dict, str]:
    """The parsed document and text of a config file.

    Only a regular file of at most :data:`MAX_CONFIG_BYTES` is read: a FIFO would block
    forever and /dev/zero would never end, so both are refused before they are opened.
    """
    src = str(path)
    try:
        info = os.stat(path)  # follows links: a link to a regular file is fine
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError("<file>", src, "a regular file (not a directory, FIFO, "
                              "device or socket)", source=src)
        if info.st_size > MAX_CONFIG_BYTES:
            raise ConfigError("<file>", src, f"a config file of at most "
                              f"{MAX_CONFIG_BYTES // 2**20} MB ({info.st_size:,} bytes)",
                              source=src)
        with open(path, "rb") as f:  # a file growing after the check is cut off here
            data = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError("<file>", src, f"a readable file ({exc.strerror})",
                          source=src) from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError("<file>", src, f"a config file of at most "
                          f"{MAX_CONFIG_BYTES // 2**20} MB", source=src)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError("<file>", f"byte {exc.start}", "UTF-8 text", source=src) from None
    return _loads(text, src), text


def _loads(text: str, source: str) -> dict:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("<toml>", str(exc), "valid TOML", source=source) from None
    except RecursionError:  # tomllib recurses once per nested array or inline table
        raise ConfigError("<toml>", _Nested(), f"valid TOML with tables and arrays nested "
                          f"at most {MAX_NESTING} deep", source=source) from None


def _resolve_extends(path: Path, depth: int = 0, replaced: dict | None = None
                     ) -> tuple[dict, list[tuple[str, str]]]:
    """The document at ``path`` merged over the chain of configs it ``extends``.

    Returns the merged dict and the (path, text) of every file read, parent first. Each
    parent table a child replaced whole goes into ``replaced`` (table -> (child, parent,
    the parent's table, the child's)), so an error about a key the child dropped can say why.
    """
    raw, text = _read_toml(path)
    parent_name = raw.pop("extends", None)
    if parent_name is None:
        return raw, [(str(path), text)]
    if not isinstance(parent_name, str):
        raise ConfigError("extends", parent_name, "a path to a parent config",
                          source=str(path))
    if depth >= MAX_EXTENDS_DEPTH:
        raise ConfigError("extends", parent_name,
                          f"a chain of at most {MAX_EXTENDS_DEPTH} configs (a cycle?)",
                          source=str(path))
    parent_path = (path.parent / parent_name)
    if not parent_path.is_file():
        raise ConfigError("extends", parent_name, "an existing config file (relative to "
                          "this one)", source=str(path))
    merged, files = _resolve_extends(parent_path, depth + 1, replaced)
    for key, value in raw.items():
        if key in MERGED_TABLES and isinstance(value, dict) and \
                isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            if replaced is not None and isinstance(merged.get(key), dict):
                replaced[key] = (str(path), str(parent_path), merged[key], value)
            merged[key] = value
    return merged, files + [(str(path), text)]


def load_config(path: str | Path) -> Config:
    """Read, parse and validate a TOML config file. Raises :class:`ConfigError`.

    A config may name a parent with ``extends = "other.toml"`` (relative to itself): its
    [simulation], [parameters] and [conditioning] keys update the parent's, and any other
    table it gives (e.g. [deal], [observations]) replaces the parent's table whole.
    """
    path = Path(path)
    replaced: dict[str, tuple[str, str, dict, Any]] = {}
    raw, files = _resolve_extends(path, replaced=replaced)
    if len(files) == 1:
        text = files[0][1]
    else:
        text = "".join(f"# ===== {p} =====\n{t}\n" for p, t in files)
    try:
        return parse_config(raw, source_text=text, source_path=str(path))
    except ConfigError as exc:
        raise _replaced_note(exc, replaced).with_source(str(path)) from None


def _replaced_note(exc: ConfigError, replaced: dict[str, tuple[str, str, dict, Any]]
                   ) -> ConfigError:
    """``exc`` saying why a key is missing when a child's table replaced its parent's,
    which had the key: ``[[deal.change]]`` alone in a child makes a new [deal] of it."""
    table, _, name = exc.key.partition(".")
    if exc.value is not _MISSING or table not in replaced:
        return exc
    child, parent, before, now = replaced[table]
    if name not in before:
        return exc
    given = ", ".join(f"[[{table}.{k}]]" if isinstance(v, list) and v and
                      all(isinstance(x, dict) for x in v) else f"{table}.{k}"
                      for k, v in (now.items() if isinstance(now, dict) else ())) \
        or "nothing"
    return ConfigError(exc.key, exc.value, f"{exc.expected} ({child} gives {given}, so "
                       f"its [{table}] replaces the whole [{table}] of {parent}, the config "
                       f"it extends: repeat {table}.{name} in {child}, and any other "
                       f"[{table}] key it needs)", source=exc.source)


def parse_config_text(text: str, source_path: str = "<string>") -> Config:
    """Parse and validate TOML text (for tests and notebooks)."""
    return parse_config(_loads(text, source_path), source_text=text, source_path=source_path)


__all__ = ["ConditioningConfig", "Config", "ConfigError", "DealConfig", "Observation",
           "SimulationConfig", "load_config", "parse_config", "parse_config_text"]
