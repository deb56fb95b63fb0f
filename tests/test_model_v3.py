"""MODEL.md version 3 ("Version 3 additions": E OpenAI's funding, cash and funding gap;
F present values; G Microsoft's equity and whole position; H small print; "Readings
pinned"): the NumPy reference against numbers worked out by hand below, the JAX kernel
against the reference path by path (float64 and float32), each mechanism alone and in
combination, and a version-2 config without any of it.

The hand world (:data:`HAND_WORLD`, no shocks, no growth unless a case adds it), over the
12 months of 2024 (t = 0..11) unless a case says otherwise:

- subscriptions S = W c arpu = 1000 * 0.5 * 10 = 5000; API A = share D pi / 1e6 =
  0.5 * 1e8 * 10 / 1e6 = 500; revenue V = 5500;
- inference I = D / eta / u * p = 1e8 / 1e6 / 0.5 * 5 = 1000; training R = 500;
  compute X = 1500; Azure share a = 0.8, Azure spend Z = 1200; other opex O = 1000;
- profit before the revenue share V - X - O = 3000.

Every config here has the same version-2 structure (Microsoft's Azure margin given, and
revenue share paid before the start, so a deal timeline; MODEL.md pins that the latter is no
receipt of the run and so not in any present value), so that a hand case and a random case
on the same grid and version-3 mechanisms share one compiled kernel (module cache
:func:`_compiled`): the hand path runs as N identical paths with zero shocks. The 12-month
runs are whole calendar years (a month scan without padding compiles in about 2/3 of the
time); the 6- and 18-month runs start in July, so that partial calendar years, and
year-end cash at a year end before the horizon, are checked too.

The kernel is run through :func:`mcsim.engine.kernel.scan_months` with the version-3 run
terms of :func:`mcsim.engine.kernel.run_terms` and the events of the run's
:class:`~mcsim.engine.kernel.KernelSpec`, and read through the run's
:class:`~mcsim.layout.StatLayout` rows: every row (cumulative Azure spend, calendar-year
flows, year-end stocks with the cash, every horizon total) and every event month.
"""

from __future__ import annotations

import functools
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import MINIMAL_PARAMETERS, minimal_config_text, money_scale

import mcsim
from mcsim import reference
from mcsim.draws import ParameterSampler, to_dtype
from mcsim.engine.kernel import KernelSpec, run_terms, scan_months
from mcsim.layout import (
    ANNUAL_FLOWS,
    HORIZON_TOTALS,
    STOCKS,
    V3_MECHANISMS,
    StatLayout,
    v3_stocks,
    v3_totals,
)
from mcsim.months import MonthGrid
from mcsim.rng import parameter_uniforms

mcsim.enable_x64()

START, HORIZON = '"2024-01"', '"2024-12"'
#: the hand world's levels and rates (TOML literals)
HAND_LEVELS = {
    "gpu_price_0": "5.0", "gpu_price_drift": "0.0",
    "utilization_0": "0.5", "utilization_mean": "0.5",
    "tokens_0": "1e8", "token_growth_0": "0.0", "token_growth_inf": "0.0",
    "token_growth_halflife": "1.0", "tokens_per_gpu_hour_0": "1e6", "efficiency_growth": "0.0",
    "users_0": "1000.0", "users_cap": "1e15", "users_growth": "0.0",
    "conversion_0": "0.5", "conversion_mean": "0.5",
    "subscription_arpu": "10.0", "api_revenue_per_mtok_0": "10.0", "api_price_drift": "0.0",
    "api_token_share": "0.5", "training_spend_0": "500.0", "training_growth": "0.0",
    "azure_share_0": "0.8", "azure_share_inf": "0.8", "azure_share_halflife": "1.0",
    "other_opex_0": "1000.0", "other_opex_growth": "0.0",
}
#: what makes a world random: volatilities and mean-reversion speeds
RANDOMNESS = ("gpu_price_vol", "utilization_speed", "utilization_vol", "token_vol",
              "users_vol", "conversion_speed", "conversion_vol")
HAND_WORLD = HAND_LEVELS | {k: "0.0" for k in RANDOMNESS}
#: the hand world's levels with version 1's volatilities, other opex uncertain: profit
#: P = 3000 - M - (O - 1000) is positive on some paths and negative on others
RANDOM_WORLD = HAND_LEVELS | {k: MINIMAL_PARAMETERS[k] for k in RANDOMNESS} | {
    "other_opex_0": '{ dist = "uniform", low = 2000.0, high = 5500.0 }',
    "azure_gross_margin": '{ dist = "uniform", low = 0.1, high = 0.4 }'}
#: paths of a kernel run (a hand case runs its one path N times, to share the compile)
N = 48
#: kernel event name -> the reference's month
EVENT_MONTH = {"repayment": "repayment_month", "credit_exhaustion": "credit_exhaustion_month",
               "cap_reached": "cap_reached_month", "commitment_met": "commitment_met_month",
               "funding_gap": "funding_gap_month"}


# --- building configs --------------------------------------------------------------------


def v3_config(horizon=HORIZON, *, start=START, world=HAND_WORLD, parameters=None, deal=None,
              funding=None, discount_rate=None, equity=None, correlation=None):
    """A config from ``start`` to ``horizon`` in ``world``, with parameter entries replaced,
    ``[deal]`` entries added (over investment 13e9, a margin of 0 and $7000 of revenue share
    paid before the start), ``[funding]`` (a dict: ``cash_0``, ``rounds``),
    ``simulation.discount_rate``, ``equity`` = (stake, multiple) and ``correlation`` (the
    rank-correlation pairs): TOML literals."""
    params = {"azure_gross_margin": "0.0", **world, **(parameters or {})}
    if equity is not None:
        params.update(microsoft_equity_stake=equity[0], valuation_multiple=equity[1])
    simulation = {"start": start, "horizon": horizon, "paths": "16"}
    if discount_rate is not None:
        simulation["discount_rate"] = discount_rate
    text = minimal_config_text(
        simulation=simulation, parameters=params,
        deal={"revenue_share_paid_before_start": "7000.0", **(deal or {})},
        funding=funding,
        parameter_correlation=None if correlation is None else {"pairs": correlation})
    return mcsim.parse_config_text(text)


def reference_run(cfg, theta, normals):
    return reference.simulate_reference(theta, cfg.deal, cfg.grid, normals,
                                        cfg.shock_correlation, funding=cfg.funding,
                                        discount_rate=cfg.simulation.discount_rate)


def hand_run(cfg):
    """(theta, reference) of the one path of a hand-world config (no shocks)."""
    theta = ParameterSampler(cfg).draw(0, 1)
    return theta, reference_run(cfg, theta, np.zeros((cfg.grid.num_months, 1, 5)))


def random_run(cfg, n=N, seed=20251028):
    """(theta, normals, reference) of n paths of a random-world config."""
    theta = ParameterSampler(cfg).draw(0, n)
    normals = np.random.default_rng(seed).standard_normal((cfg.grid.num_months, n, 5))
    normals[0] = 0.0
    return theta, normals, reference_run(cfg, theta, normals)


# --- the kernel on given theta and normals -----------------------------------------------


@functools.cache
def _compiled(grid, feats, events, chol):
    """The kernel's month scan, jitted, for one grid and set of mechanisms (cached: the
    theta, the deal's and version 3's run terms and the normals are traced)."""
    last = grid.num_months - 1

    def run(th, deal, z):
        def shocks(t):  # row t + 1 drives the step from month t to t + 1
            zt = jax.lax.dynamic_index_in_dim(z, jnp.minimum(t + 1, last), keepdims=False)
            zt = jnp.where(t < last, zt, jnp.zeros_like(zt))
            return tuple(zt[..., k] for k in range(5))

        out = scan_months(th, deal, shocks, chol, grid, z.shape[1], feats=feats,
                          events=events)
        return out.stats, out.event_months

    return jax.jit(run)


@pytest.fixture(scope="module", autouse=True)
def _free_compiled_kernels():
    """The module's compiled kernels are shared by its tests, and freed after them."""
    yield
    _compiled.cache_clear()


def kernel_outputs(cfg, theta, normals, dtype=np.float64):
    """The kernel on ``theta`` and ``normals`` [T, n, 5], by name: ``horizon`` name -> [n],
    ``stocks`` name -> [Y, n], ``annual`` name -> [Y, n], ``cumulative_azure_spend``
    [T, n], ``events`` name -> [n]; and the layout."""
    spec = KernelSpec.for_config(cfg, "float64")
    layout = spec.layout
    assert layout.signature() == StatLayout.of(cfg).signature()
    fn = _compiled(cfg.grid, spec.features, spec.events, spec.cholesky)
    th = {k: jnp.asarray(v) for k, v in to_dtype(theta, dtype).items()}
    stats, months = fn(th, run_terms(cfg), jnp.asarray(normals, dtype))
    stats, months = np.asarray(stats), np.asarray(months)
    assert stats.shape == (layout.num_stats, normals.shape[1])
    return {"horizon": {k: stats[layout.row(k)] for k in layout.horizon_totals},
            "stocks": {k: stats[layout.rows(k)] for k in layout.stocks},
            "annual": {k: stats[layout.rows(k)] for k in ANNUAL_FLOWS},
            "cumulative_azure_spend": stats[layout.rows("cumulative_azure_spend")],
            "events": {e: months[layout.event_index(e)] for e in layout.event_names}}, layout


def hand_outputs(cfg):
    """The one hand path's outputs by the reference and by the kernel (run as N identical
    paths, of which the first is read), each as ``horizon`` name -> float, ``stocks``
    name -> [Y], ``events`` name -> int."""
    theta, ref = hand_run(cfg)
    T = cfg.grid.num_months
    many = {k: np.repeat(v, N) for k, v in theta.items()}
    ker, layout = kernel_outputs(cfg, many, np.zeros((T, N, 5)))
    for group in ("horizon", "stocks", "events"):  # N identical paths
        for name, value in ker[group].items():
            np.testing.assert_array_equal(value, np.broadcast_to(value[..., :1], value.shape),
                                          err_msg=name)
    stocks = reference.year_end_stocks(ref, cfg.grid)
    by_ref = {"horizon": {k: float(ref[k][0]) for k in layout.horizon_totals},
              "stocks": {k: stocks[k][:, 0] for k in layout.stocks},
              "events": {e: int(ref[EVENT_MONTH[e]][0]) for e in layout.event_names}}
    by_kernel = {"horizon": {k: float(v[0]) for k, v in ker["horizon"].items()},
                 "stocks": {k: v[:, 0] for k, v in ker["stocks"].items()},
                 "events": {e: int(v[0]) for e, v in ker["events"].items()}}
    return ref, {"reference": by_ref, "kernel": by_kernel}


def close(got, want, rtol=1e-12, atol=1e-7, msg=""):
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=msg)


def geometric(a: int, b: int, x: float) -> float:
    """sum over t = a..b-1 of exp(x t), in closed form."""
    return math.exp(x * a) * math.expm1(x * (b - a)) / math.expm1(x)


# --- (a) E: cash, rounds, the funding gap, by hand ----------------------------------------

#: P = 5500 - 1500 - 5000 = -1000 every month, no revenue share, no profit share (the loss
#: pool only deepens): K_t = cash_0 - 1000 (t + 1) + the rounds so far
LOSING = {"other_opex_0": "5000.0"}


def test_cash_with_rounds_in_the_first_middle_and_last_months():
    """cash_0 = 2750, rounds of 500 in the start's month (2024-01, t = 0), 3000 in 2024-07
    (t = 6) and 4000 in the horizon's month (2024-12, t = 11):
    K = 2250, 1250, 250, -750, -1750, -2750, -750, -1750, -2750, -3750, -4750, -1750
    (2024-12, with the last round: the year-end cash). The first K < 0 is t = 3
    (2024-04); the deepest is -4750 at t = 10, so 4750 is still to be found (without the
    last round it would be 5750, at t = 11)."""
    cfg = v3_config(parameters=LOSING, funding={
        "cash_0": "2750.0",
        "rounds": '[["2024-01", 500.0], ["2024-07", 3000.0], ["2024-12", 4000.0]]'})
    ref, outputs = hand_outputs(cfg)
    K = [2250, 1250, 250, -750, -1750, -2750, -750, -1750, -2750, -3750, -4750, -1750]
    close(ref["cash"][:, 0], K)
    close(ref["funding_round"], [500, 0, 0, 0, 0, 0, 3000, 0, 0, 0, 0, 4000], atol=0)
    for src, out in outputs.items():
        close(out["stocks"]["cash"], [-1750], msg=src)
        assert out["events"]["funding_gap"] == 3, src
        close(out["horizon"]["funding_to_find"], 4750.0, msg=src)
        # the deepest cumulative loss is version 2's, from start, without cash or rounds
        close(out["horizon"]["deepest_cumulative_loss"], 12000.0, msg=src)


def test_a_round_in_the_start_month_is_added_in_month_0():
    """cash_0 = 700 and a round of 500 dated the start's month: K_0 = 700 - 1000 + 500 =
    200 >= 0, K_1 = -800: the gap is month 1. A round ignored, or added a month late,
    would give K_0 = -300 and a gap in month 0."""
    cfg = v3_config(parameters=LOSING, funding={"cash_0": "700.0",
                                                "rounds": '[["2024-01", 500.0]]'})
    ref, outputs = hand_outputs(cfg)
    close(ref["cash"][:3, 0], [200, -800, -1800])
    for src, out in outputs.items():
        assert out["events"]["funding_gap"] == 1, src
        close(out["horizon"]["funding_to_find"], 10800.0, msg=src)  # K_11 = -10800
        close(out["stocks"]["cash"], [-10800], msg=src)


#: a world whose money is exact in floating point: one token at one GPU-hour per token at
#: $1, utilization 1/2 (logit 0): inference I = exp(0) / 0.5 = 2; no revenue (arpu and API
#: share 0), no training, no other opex: P = -2 exactly every month
EXACT = {"tokens_0": "1.0", "tokens_per_gpu_hour_0": "1.0", "gpu_price_0": "1.0",
         "subscription_arpu": "0.0", "api_token_share": "0.0", "training_spend_0": "0.0",
         "other_opex_0": "0.0"}


def test_cash_of_exactly_zero_is_no_gap():
    """The gap is the first month with K_t < 0, strictly: from cash_0 = 6, K = 4, 2, 0
    (month 2: not a gap), -2 (month 3: the gap). Nothing is to be found until K < 0:
    K_11 = 6 - 24 = -18."""
    cfg = v3_config(parameters=EXACT, funding={"cash_0": "6.0"})
    ref, outputs = hand_outputs(cfg)
    np.testing.assert_array_equal(ref["profit"][:, 0], -2.0)
    np.testing.assert_array_equal(ref["cash"][:4, 0], [4.0, 2.0, 0.0, -2.0])
    for src, out in outputs.items():
        assert out["events"]["funding_gap"] == 3, src
        assert out["horizon"]["funding_to_find"] == 18.0, src
        assert out["stocks"]["cash"][0] == -18.0, src


def test_cash_never_negative_censors_the_gap_and_finds_nothing():
    """The hand world's P = 3000, profit share q = 0.75 * 3000 = 2250 (far from the 13e9
    line): K_t = 0 + 750 (t + 1) from cash_0 = 0 (cash counts P - q, not P). Never below
    $0: the gap month is censored (T = 12) and nothing is to be found."""
    cfg = v3_config(funding={"cash_0": "0.0"})
    ref, outputs = hand_outputs(cfg)
    close(ref["cash"][:, 0], 750.0 * np.arange(1, 13))
    for src, out in outputs.items():
        assert out["events"]["funding_gap"] == 12, src
        assert out["horizon"]["funding_to_find"] == 0.0, src
        close(out["stocks"]["cash"], [9000.0], msg=src)
        close(out["horizon"]["deepest_cumulative_loss"], 0.0, msg=src)


def test_funding_to_find_counts_only_what_cash_and_rounds_do_not_cover():
    """The losing world with cash_0 = 20000: K_11 = 20000 - 12000 = 8000 >= 0, censored,
    nothing to find, though the deepest cumulative loss (from start, version 2) is 12000."""
    cfg = v3_config(parameters=LOSING, funding={"cash_0": "20000.0"})
    _, outputs = hand_outputs(cfg)
    for src, out in outputs.items():
        assert out["events"]["funding_gap"] == 12, src
        assert out["horizon"]["funding_to_find"] == 0.0, src
        close(out["horizon"]["deepest_cumulative_loss"], 12000.0, msg=src)
        close(out["stocks"]["cash"], [8000.0], msg=src)


# --- (a) F: present values, by hand --------------------------------------------------------

#: revenue share 0.2 (M = 1100), P = 3000 - 1100 = 1900, q = 0.75 * 1900 = 1425 (Q reaches
#: 17100 < the investment of 20000: no split), Z = 1200, Azure margin 0.25 * 1200 = 300:
#: Microsoft's economic return 1425 + 1100 + 300 = 2825 a month
PV_PARAMETERS = {"azure_gross_margin": "0.25"}
PV_DEAL = {"investment": "20000.0", "revenue_share": "0.2"}


@pytest.mark.parametrize("rate", [0.12, 0.0, 0.5])
def test_present_values(rate):
    """Month t's factor exp(-rate t / 12); G = sum over t = 0..11: each present value is
    the monthly flow times G; the net subtracts the undiscounted investment. The $7000 of
    revenue share paid before the start is in neither the return nor its present value."""
    cfg = v3_config(parameters=PV_PARAMETERS, deal=PV_DEAL, discount_rate=repr(rate))
    ref, outputs = hand_outputs(cfg)
    G = geometric(0, 12, -rate / 12) if rate else 12.0
    close(ref["discount_factor"], np.exp(-rate * np.arange(12) / 12))
    for src, out in outputs.items():
        h = out["horizon"]
        close(h["microsoft_economic_return"], 12 * 2825.0, msg=src)  # undiscounted, as v2
        close(h["pv_cumulative_azure_spend"], 1200.0 * G, msg=src)
        close(h["pv_cumulative_profit"], 1900.0 * G, msg=src)
        close(h["pv_microsoft_economic_return"], 2825.0 * G, msg=src)
        close(h["pv_microsoft_economic_net"], 2825.0 * G - 20000.0, msg=src)
        if rate > 0:
            assert h["pv_microsoft_economic_return"] < h["microsoft_economic_return"] - 1.0
        else:
            close(h["pv_microsoft_economic_return"], h["microsoft_economic_return"])


def test_present_value_of_a_growing_profit():
    """A flow growing at the discount rate has a present value of its first month's value
    per month: API revenue A_t = 500 exp(0.12 t / 12) (api_price_drift = 0.12), so
    P_t = 2500 + A_t and at rate 0.12 the discounted profit is 2500 G + 500 * 12."""
    cfg = v3_config(parameters={"api_price_drift": "0.12"}, discount_rate="0.12")
    _, outputs = hand_outputs(cfg)
    G = geometric(0, 12, -0.01)
    for src, out in outputs.items():
        close(out["horizon"]["pv_cumulative_profit"], 2500.0 * G + 6000.0, msg=src)
        close(out["horizon"]["pv_microsoft_economic_return"], 0.75 * (2500.0 * G + 6000.0),
              msg=src)


# --- (a) G: equity and the whole position, by hand ----------------------------------------

#: API revenue grows 1% a month (A_t = 500 e^{0.01 t}), so the last 12 months differ from
#: any other 12: V_t = 5000 + 500 e^{0.01 t}, P_t = 2500 + 500 e^{0.01 t}, q = 0.75 P
GROWING = {"api_price_drift": "0.12"}
STAKE, MULTIPLE = 0.25, 10.0
#: (start, horizon, months): July to December, the calendar year 2024, 2024-01..2025-01,
#: July 2024 to December 2025
HORIZONS = [('"2024-07"', '"2024-12"', 6), (START, HORIZON, 12), (START, '"2025-01"', 13),
            ('"2024-07"', '"2025-12"', 18)]


@pytest.mark.parametrize("start,horizon,T", [h for h in HORIZONS if h[2] != 13],
                         ids=[f"T{t}" for _, _, t in HORIZONS if t != 13])
def test_equity_value_and_whole_position(start, horizon, T):
    """Equity = stake * multiple * revenue over months max(T - 12, 0)..T-1 (all months of
    a run shorter than 12); whole position = economic return + equity; with the discount
    rate 0.12, the equity is discounted by the horizon month's factor exp(-0.01 (T - 1))
    and the position's present value is the return's present value plus that. Cash from
    5e4 never runs out here. (The 13-month run is the reference's alone, below: one compile
    less.)"""
    cfg = v3_config(horizon, start=start, parameters=GROWING,
                    equity=(repr(STAKE), repr(MULTIPLE)), discount_rate="0.12",
                    funding={"cash_0": "5e4"})
    ref, outputs = hand_outputs(cfg)
    first = max(T - 12, 0)
    trailing = 5000.0 * (T - first) + 500.0 * geometric(first, T, 0.01)
    equity = STAKE * MULTIPLE * trailing
    economic = 0.75 * (2500.0 * T + 500.0 * geometric(0, T, 0.01))
    pv_economic = 0.75 * (2500.0 * geometric(0, T, -0.01) + 500.0 * T)
    pv_equity = equity * math.exp(-0.01 * (T - 1))
    close(ref["trailing_revenue"], trailing)
    for src, out in outputs.items():
        h = out["horizon"]
        close(h["microsoft_economic_return"], economic, msg=src)
        close(h["microsoft_equity_value"], equity, msg=src)
        close(h["microsoft_whole_position"], economic + equity, msg=src)
        close(h["pv_microsoft_economic_return"], pv_economic, msg=src)
        close(h["pv_microsoft_equity_value"], pv_equity, msg=src)
        close(h["pv_microsoft_whole_position"], pv_economic + pv_equity, msg=src)
        assert out["events"]["funding_gap"] == T, src
        assert h["funding_to_find"] == 0.0, src


def test_trailing_revenue_is_the_last_twelve_months():
    """The boundary: a 12-month run counts all its months, a 13-month run drops month 0
    (the same world, so the 13-month value is the 12-month one plus V_12 minus V_0)."""
    v = {}
    for start, horizon, T in HORIZONS[1:3]:
        cfg = v3_config(horizon, start=start, parameters=GROWING, equity=("1.0", "1.0"))
        _, ref = hand_run(cfg)
        v[T] = ref
        close(ref["microsoft_equity_value"], ref["revenue"][max(T - 12, 0):, 0].sum())
    close(v[13]["microsoft_equity_value"],
          v[12]["microsoft_equity_value"] + v[13]["revenue"][12, 0] - v[13]["revenue"][0, 0])


# --- (b) the kernel against the reference, path by path -----------------------------------


def money_scales(cfg, theta, ref):
    """Per-path scale of the run's money [n]: the flows' (revenue, compute, |profit|),
    the cash and rounds, and the equity's (stake x multiple x revenue)."""
    scale = money_scale(ref).sum(axis=0)
    if cfg.funding is not None:
        scale = scale + theta["cash_0"] + sum(d for _, d in cfg.funding.rounds)
    if "microsoft_equity_stake" in theta:
        scale = scale * (1.0 + theta["microsoft_equity_stake"] * theta["valuation_multiple"])
    return scale


def assert_kernel_is_the_reference(cfg, theta, normals, ref, rtol=1e-12, dtype=np.float64):
    """Every row of the kernel's statistics equals the reference's to ``rtol`` of the
    path's money scale, and every event month is the same (float64)."""
    out, layout = kernel_outputs(cfg, theta, normals, dtype)
    grid = cfg.grid
    scale = money_scales(cfg, theta, ref)                   # [n]
    # the reference computes exactly the version-3 outputs of the layout's mechanisms
    assert {k for k in reference.V3_HORIZON_TOTALS if k in ref} == set(v3_totals(layout.v3))
    assert {k for k in reference.V3_STOCKS if k in ref} == set(v3_stocks(layout.v3))

    def check(got, want, name):
        err = np.abs(got - want)
        bad = ~(err <= rtol * scale)
        assert not bad.any(), (f"{name}: {bad.sum()} of {bad.size} differ; worst "
                               f"{(err / scale).max():.3g} of the money scale")

    check(out["cumulative_azure_spend"], np.cumsum(ref["azure_spend"], axis=0),
          "cumulative_azure_spend")
    annual = reference.annual_sums(ref, grid)
    for name in ANNUAL_FLOWS:
        check(out["annual"][name], annual[name], name)
    year_end = reference.year_end_stocks(ref, grid)
    assert set(year_end) == set(layout.stocks)
    for name in STOCKS:  # levels: relative
        close(out["stocks"][name], year_end[name], rtol=1e-12 if dtype == np.float64
              else FLOAT32_RTOL, atol=0.0, msg=name)
    for name in v3_stocks(layout.v3):
        check(out["stocks"][name], year_end[name], name)
    for name in layout.horizon_totals:
        check(out["horizon"][name], ref[name], name)
    if dtype == np.float64:
        for event, months in out["events"].items():
            np.testing.assert_array_equal(months, ref[EVENT_MONTH[event]], err_msg=event)
    return out


#: the random world's deal: revenue share, an investment line some paths cross
RANDOM_DEAL = {"investment": "3000.0", "revenue_share": "0.2"}
RANDOM_EQUITY = ('{ dist = "uniform", low = 0.2, high = 0.3 }',
                 '{ dist = "lognormal", median = 10.0, sigma = 0.3 }')


def random_config(mechanisms, start=START, horizon=HORIZON):
    """The random world with the version-3 mechanisms named (a subset of
    :data:`V3_MECHANISMS`): cash from 0 to 8000, rounds in the first month, the seventh
    and the last."""
    grid = MonthGrid.from_labels(start.strip('"'), horizon.strip('"'))
    rounds = [(0, 1000.0), (6, 5000.0), (grid.num_months - 1, 3000.0)]
    funding = {"cash_0": '{ dist = "uniform", low = 0.0, high = 8000.0 }',
               "rounds": "[" + ", ".join(f'["{grid.label(t)}", {d}]' for t, d in rounds)
               + "]"}
    return v3_config(horizon, start=start, world=RANDOM_WORLD, deal=RANDOM_DEAL,
                     funding=funding if "funding" in mechanisms else None,
                     discount_rate="0.08" if "discount" in mechanisms else None,
                     equity=RANDOM_EQUITY if "equity" in mechanisms else None)


ALL_THREE = frozenset(V3_MECHANISMS)
ALONE_AND_TOGETHER = [frozenset({m}) for m in V3_MECHANISMS] + [ALL_THREE]


@pytest.fixture(scope="module")
def random_runs():
    """mechanisms -> (config, theta, normals, reference, kernel outputs) of the random
    world over 2024, for each mechanism alone and all three together."""
    out = {}
    for mechanisms in ALONE_AND_TOGETHER:
        cfg = random_config(mechanisms)
        theta, normals, ref = random_run(cfg)
        out[mechanisms] = (cfg, theta, normals, ref,
                           assert_kernel_is_the_reference(cfg, theta, normals, ref))
    return out


@pytest.mark.parametrize("mechanisms", ALONE_AND_TOGETHER,
                         ids=["+".join(sorted(m)) for m in ALONE_AND_TOGETHER])
def test_float64_kernel_is_the_reference(random_runs, mechanisms):
    """The comparison itself runs in the fixture (each compile once); here, that the
    random world does what it is for: the gap falls in different months on different
    paths, some paths never run out, present values and equity vary by path."""
    cfg, theta, _, ref, out = random_runs[mechanisms]
    T = cfg.grid.num_months
    if "funding" in mechanisms:
        gap = ref["funding_gap_month"]
        assert len(np.unique(gap[gap < T])) >= 4 and np.any(gap == T), np.bincount(gap)
        assert np.any(ref["funding_to_find"] == 0) and np.any(ref["funding_to_find"] > 0)
        np.testing.assert_array_equal(out["events"]["funding_gap"], gap)
    if "discount" in mechanisms:
        # discounting lowers a positive flow's sum: strictly, path by path
        assert np.all(ref["pv_cumulative_azure_spend"]
                      < ref["cumulative_azure_spend_total"])
    if "equity" in mechanisms:
        assert np.ptp(ref["microsoft_equity_value"]) > 0
    # the waterfall and the line crossed on some paths
    assert 0 < np.mean(ref["repayment_month"] < T) < 1


def test_float64_kernel_is_the_reference_over_partial_years():
    """All three over 18 months, 2024-07..2025-12: a partial first calendar year, a full
    second one (year-end cash at 2024-12 and 2025-12), the trailing revenue of months
    6..17, a round in 2025-01 between the year ends."""
    cfg = random_config(ALL_THREE, '"2024-07"', '"2025-12"')
    theta, normals, ref = random_run(cfg, seed=7)
    assert_kernel_is_the_reference(cfg, theta, normals, ref)
    assert cfg.grid.num_months == 18 and len(cfg.grid.years) == 2


#: float32 bound, as a fraction of the path's money scale (levels: relative). The kernel's
#: float32 drivers round their log states each month: |log D| ~ 18.4 here, so half an ulp
#: is 9.5e-7 of relative error in D a month; 12 months of roundings all in one direction
#: (the worst case; a random walk gives ~3e-6) are 1.1e-5 of a flow. The float64 sums of
#: version 3 (cash, present values, trailing revenue) add nothing of their own but float32
#: flows, and the stake and multiple are rounded to float32 (6e-8 each). 3e-5 bounds all
#: of it; the measured worst is ~4e-7 (the whole position).
FLOAT32_RTOL = 3e-5


def test_float32_kernel_is_close_to_the_reference(random_runs):
    """The float32 kernel against the float64 reference, all three mechanisms: every row
    to FLOAT32_RTOL of the money scale; the funding-gap month the same but where the
    reference's cash, at the earlier of the two months, is within that rounding of $0."""
    cfg, theta, normals, ref, _ = random_runs[ALL_THREE]
    out = assert_kernel_is_the_reference(cfg, theta, normals, ref, rtol=FLOAT32_RTOL,
                                         dtype=np.float32)
    scale = money_scales(cfg, theta, ref)
    got, want = out["events"]["funding_gap"], ref["funding_gap_month"]
    differ = np.flatnonzero(got != want)
    paths = np.arange(got.size)
    at = np.minimum(got, want)[differ]
    assert np.all(np.abs(ref["cash"][at, paths[differ]]) <= FLOAT32_RTOL * scale[differ])
    assert differ.size <= 2, differ
    np.testing.assert_array_equal(out["events"]["repayment"][got == want],
                                  ref["repayment_month"][got == want])


# --- (c) each mechanism alone and together (MODEL.md H) -----------------------------------


def test_each_mechanism_stands_alone(random_runs):
    """The same paths (parameters drawn by name, the same normals) with one mechanism or
    all three: the version-2 rows and events are the same bit for bit, each mechanism's
    rows are the same alone as together, the rows of the others absent."""
    cfg3, theta3, normals3, _, all3 = random_runs[ALL_THREE]
    for mechanisms in ALONE_AND_TOGETHER[:-1]:
        cfg, theta, normals, _, out = random_runs[mechanisms]
        for name, value in theta.items():
            np.testing.assert_array_equal(value, theta3[name], err_msg=name)
        np.testing.assert_array_equal(normals, normals3)
        layout = StatLayout.of(cfg)
        assert layout.v3 == mechanisms
        for name in HORIZON_TOTALS:
            np.testing.assert_array_equal(out["horizon"][name], all3["horizon"][name],
                                          err_msg=name)
        for name in ANNUAL_FLOWS:
            np.testing.assert_array_equal(out["annual"][name], all3["annual"][name],
                                          err_msg=name)
        for name in v3_totals(mechanisms):
            np.testing.assert_array_equal(out["horizon"][name], all3["horizon"][name],
                                          err_msg=name)
        for name in layout.stocks:
            np.testing.assert_array_equal(out["stocks"][name], all3["stocks"][name],
                                          err_msg=name)
        for name in out["events"]:
            np.testing.assert_array_equal(out["events"][name], all3["events"][name],
                                          err_msg=name)
        others = set(v3_totals(ALL_THREE)) - set(v3_totals(mechanisms))
        assert not others & set(out["horizon"]), mechanisms
        assert ("funding_gap" in out["events"]) == ("funding" in mechanisms)
        assert ("cash" in out["stocks"]) == ("funding" in mechanisms)


#: MODEL.md E-G: the rows each combination of mechanisms adds, written out
EXPECTED_TOTALS = {
    frozenset(): (),
    frozenset({"funding"}): ("funding_to_find",),
    frozenset({"discount"}): ("pv_cumulative_azure_spend", "pv_cumulative_profit",
                              "pv_microsoft_economic_return", "pv_microsoft_economic_net"),
    frozenset({"equity"}): ("microsoft_equity_value", "microsoft_whole_position"),
}
SUBSETS = [frozenset(c) for k in range(4) for c in itertools.combinations(V3_MECHANISMS, k)]


@pytest.mark.parametrize("mechanisms", SUBSETS,
                         ids=["+".join(sorted(m)) or "none" for m in SUBSETS])
def test_layout_rows_of_each_combination(mechanisms):
    """Every subset of the mechanisms: the layout's stocks, horizon totals and events are
    version 2's plus exactly those of its mechanisms (the equity's present values only
    with both a discount rate and an equity stake), and the reference computes the same
    ones."""
    cfg = random_config(mechanisms)
    layout = StatLayout.of(cfg)
    assert layout.v3 == mechanisms
    want = HORIZON_TOTALS + tuple(n for m in V3_MECHANISMS if m in mechanisms
                                  for n in EXPECTED_TOTALS[frozenset({m})])
    if {"discount", "equity"} <= mechanisms:
        want += ("pv_microsoft_equity_value", "pv_microsoft_whole_position")
    assert layout.horizon_totals == want
    assert layout.stocks == STOCKS + (("cash",) if "funding" in mechanisms else ())
    assert ("funding_gap" in layout.event_names) == ("funding" in mechanisms)
    theta, _, ref = random_run(cfg, n=4)
    assert {k for k in reference.V3_HORIZON_TOTALS if k in ref} == set(want) - set(
        HORIZON_TOTALS)
    assert ("cash" in ref) == ("funding_gap_month" in ref) == ("funding" in mechanisms)


# --- (d) a version-2 config has none of it -------------------------------------------------


def test_v2_config_has_no_v3_rows_events_or_stocks():
    cfg = v3_config(deal=PV_DEAL)
    assert cfg.funding is None and cfg.simulation.discount_rate is None
    for layout in (StatLayout.of(cfg), KernelSpec.for_config(cfg).layout):
        assert layout.v3 == frozenset()
        assert layout.stocks == STOCKS
        assert layout.horizon_totals == HORIZON_TOTALS
        assert "funding_gap" not in layout.event_names
        T, Y = cfg.grid.num_months, len(cfg.grid.years)
        assert layout.num_stats == T + (len(ANNUAL_FLOWS) + len(STOCKS)) * Y \
            + len(HORIZON_TOTALS)
        with pytest.raises(ValueError, match="funding"):
            layout.rows("cash")
    _, ref = hand_run(cfg)
    assert not set(ref) & (set(reference.V3_HORIZON_TOTALS) | set(reference.V3_STOCKS)
                           | {"funding_gap_month", "discount_factor", "trailing_revenue"})


# --- the reference's draws of version 3's parameters ---------------------------------------


def test_reference_draws_version_3_parameters_like_the_sampler():
    """cash_0 (given in [funding]), the stake and the multiple may be distributions and
    rank-correlated: the reference's recipe (MODEL.md's vocabulary with scipy) and
    ParameterSampler agree on the same uniforms."""
    cfg = v3_config(
        funding={"cash_0": '{ dist = "lognormal", p5 = 1e3, p95 = 1e4, max = 8e3 }'},
        equity=('{ dist = "beta", alpha = 3.0, beta = 8.0 }',
                '{ dist = "pert", low = 4.0, mode = 8.0, high = 20.0 }'),
        parameters={"users_growth": '{ dist = "normal", mean = 0.5, sd = 0.2 }'},
        correlation='[["cash_0", "valuation_multiple", -0.5], '
                    '["users_growth", "microsoft_equity_stake", 0.3]]')
    sampler = ParameterSampler(cfg)
    params = reference.parameter_table(cfg.resolved)
    assert reference.drawn_parameters(params) == sampler.uncertain
    assert set(reference.V3_PARAMETERS) <= set(sampler.uncertain)
    u = parameter_uniforms(cfg.simulation.seed, 0, 1000, sampler.indices)
    ours = reference.draw_parameters(params, cfg.resolved["parameter_correlation"]["pairs"], u)
    theirs = {k: v for k, v in sampler.draw(0, 1000).items() if not k.startswith("_")}
    assert sorted(ours) == sorted(theirs)
    for name, x in theirs.items():
        np.testing.assert_allclose(ours[name], x, rtol=1e-12, atol=1e-13 * np.abs(x).max(),
                                   err_msg=name)
    assert ours["cash_0"].max() <= 8e3
    # the copula bites: Spearman's rho near the asked -0.5 (1000 draws: se ~ 0.03)
    rho = np.corrcoef(np.argsort(np.argsort(ours["cash_0"])),
                      np.argsort(np.argsort(ours["valuation_multiple"])))[0, 1]
    assert abs(rho + 0.5) < 4 * 0.03, rho
