"""MODEL.md version 2 on hand-computed cases: the NumPy reference against numbers worked out
by hand below, and the float64 JAX kernel against the reference on the same theta and
normals (every flow, stock, first-passage month, running sum and reported statistic).

The hand world (:data:`HAND_WORLD`, no shocks, no growth unless a case adds it), 12 months
from 2024-07 to 2025-06 (t = 0..11; calendar years 2024 = t 0..5 and 2025 = t 6..11):

- subscriptions S = W c arpu = 1000 * 0.5 * 10 = 5000; API A = share D pi / 1e6 =
  0.5 * 1e8 * 10 / 1e6 = 500; revenue V = 5500;
- inference I = D / eta / u * p = 1e8 / 1e6 / 0.5 * 5 = 1000; training R = 500;
  compute X = 1500; Azure share a = 0.8, Azure spend Z = 1200; other opex O = 1000;
- profit before the revenue share V - X - O = 3000.

Two kernel disagreements with MODEL.md found here were fixed in the kernel and are tested
as such: a cap whose ``revenue_share_cap_from`` is after the month it comes into force, and
``"azure_margin"`` in ``recoup_from`` without the ``azure_gross_margin`` parameter.

Each case also runs in a stochastic world (the same levels with version 1's volatilities
and random normals) for the kernel-against-reference comparison, where the deal's lines
are crossed at different months on different paths.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import CONFIGS_DIR, MINIMAL_PARAMETERS, minimal_config_text, money_scale
from scipy.special import expit as _expit
from scipy.special import logit as _logit

import mcsim
from mcsim import load_config, model, reference
from mcsim.draws import ParameterSampler
from mcsim.engine import flows_from_normals, shock_cholesky
from mcsim.engine.kernel import scan_months
from mcsim.layout import ANNUAL_FLOWS, HORIZON_TOTALS, STOCKS, StatLayout
from mcsim.rng import parameter_uniforms, shock_normals_reference

mcsim.enable_x64()

T = 12
YEAR_2024, YEAR_2025 = slice(0, 6), slice(6, 12)
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
#: what makes the world random: volatilities and mean-reversion speeds
RANDOMNESS = ("gpu_price_vol", "utilization_speed", "utilization_vol", "token_vol",
              "users_vol", "conversion_speed", "conversion_vol")
HAND_WORLD = HAND_LEVELS | {k: "0.0" for k in RANDOMNESS}
STOCHASTIC_WORLD = HAND_LEVELS | {k: MINIMAL_PARAMETERS[k] for k in RANDOMNESS}
N_STOCHASTIC = 64

#: kernel final state -> reference first-passage month
MONTHS = {"repayment_month": "repayment_month", "credit_month": "credit_exhaustion_month",
          "cap_month": "cap_reached_month", "commit_month": "commitment_met_month"}
#: kernel final state -> reference running sum at the horizon
SUMS = {"cum_revenue_share": "cumulative_revenue_share", "cum_profit_share":
        "cumulative_profit_share", "cum_azure_spend": "cumulative_azure_spend_total",
        "cum_revenue": "cumulative_revenue", "cum_profit": "cumulative_profit",
        "cum_margin": "cumulative_azure_margin", "cum_reverse":
        "cumulative_reverse_revenue_share", "cum_commit": "commitment_counted"}


# --- building cases ----------------------------------------------------------------------


def config_text(parameters=None, deal=None, changes=(), world=HAND_WORLD):
    """A 12-month config in ``world`` with parameter entries replaced (None removes one),
    ``[deal]`` entries added and ``[[deal.change]]`` tables (dicts of TOML literals)."""
    text = minimal_config_text(
        simulation={"start": '"2024-07"', "horizon": '"2025-06"', "paths": "16"},
        parameters={**world, **(parameters or {})}, deal=deal or {})
    for change in changes:  # [deal] is the last table: the changes follow it
        text += "\n[[deal.change]]\n" + "".join(f"{k} = {v}\n" for k, v in change.items())
    return text


@dataclasses.dataclass(frozen=True)
class Case:
    parameters: dict
    deal: dict
    changes: tuple = ()

    def config(self, world=HAND_WORLD):
        return mcsim.parse_config_text(config_text(self.parameters, self.deal, self.changes,
                                                   world))


def hand_run(case: Case):
    """(config, theta, reference) of one path of the hand world (no shocks)."""
    cfg = case.config()
    theta = ParameterSampler(cfg).draw(0, 1)
    ref = reference.simulate_reference(theta, cfg.deal, cfg.grid, np.zeros((T, 1, 5)),
                                       cfg.shock_correlation)
    return cfg, theta, ref


def series(ref, name):
    """One path's [T] monthly values."""
    return ref[name][:, 0]


def close(got, want, rtol=1e-12, atol=1e-9, msg=""):
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=msg)


# --- the kernel on given theta and normals -----------------------------------------------


def run_kernel(cfg, theta, normals):
    """The float64 kernel on ``theta`` and ``normals`` [T, N, 5]: (final state, flows
    dict, stocks dict, stats [S, N]). Flows and the final state come from
    :func:`mcsim.engine.flows_from_normals`; the stocks and the reported statistics
    (calendar-year sums, year-end stocks, horizon totals) from the month scan it runs,
    :func:`mcsim.engine.kernel.scan_months`, on the same shocks."""
    grid = cfg.grid
    feats = model.features(cfg)
    deal = model.deal_terms(cfg.deal, grid, feats)
    chol = shock_cholesky(cfg)
    th = {k: jnp.asarray(v, jnp.float64) for k, v in theta.items()}
    z = jnp.asarray(normals, jnp.float64)
    final, flows = jax.jit(lambda th, d, z: flows_from_normals(th, d, z, chol, grid, feats))(
        th, deal, z)
    last = grid.num_months - 1

    def scan(th, d, z):
        def shocks(t):  # row t + 1 drives the step from month t to t + 1
            zt = jax.lax.dynamic_index_in_dim(z, jnp.minimum(t + 1, last), keepdims=False)
            zt = jnp.where(t < last, zt, jnp.zeros_like(zt))
            return tuple(zt[..., k] for k in range(5))
        return scan_months(th, d, shocks, chol, grid, z.shape[1], record_flows=True,
                           feats=feats)

    out = jax.jit(scan)(th, deal, z)
    flows = {k: np.asarray(v) for k, v in flows._asdict().items()}
    scan_flows = {k: np.asarray(v) for k, v in out.flows._asdict().items()}
    for name, value in flows.items():  # one kernel: the same numbers by either route
        close(np.broadcast_to(value, scan_flows[name].shape), scan_flows[name], rtol=1e-13,
              atol=0.0, msg=name)
    stocks = {k: np.asarray(v) for k, v in out.stocks._asdict().items()}
    return jax.device_get(final), flows, stocks, np.asarray(out.stats)


def assert_kernel_is_the_reference(cfg, theta, normals, ref):
    """Every output of the float64 kernel equals the reference's to 1e-9 of the money
    scale (flows: the month's; sums: the run's), with the same first-passage months."""
    final, flows, stocks, stats = run_kernel(cfg, theta, normals)
    grid = cfg.grid
    scale = money_scale(ref)                       # [T, N]
    run_scale = scale.sum(axis=0)                  # [N]
    for name in model.Flows._fields:
        got = np.broadcast_to(flows[name], scale.shape)
        err = (np.abs(got - ref[name]) / scale).max()
        assert err < 1e-9, (name, err)
    for name in STOCKS:
        close(stocks[name], ref[name], rtol=1e-9, atol=0.0, msg=name)
    for kernel_name, ref_name in MONTHS.items():
        np.testing.assert_array_equal(getattr(final, kernel_name), ref[ref_name],
                                      err_msg=kernel_name)
    for kernel_name, ref_name in SUMS.items():
        got = np.broadcast_to(getattr(final, kernel_name), run_scale.shape)
        want = ref[ref_name][-1] if ref[ref_name].ndim == 2 else ref[ref_name]
        assert np.all(np.abs(got - want) <= 1e-9 * run_scale), (kernel_name, got, want)
    close(-final.min_openai_cash, ref["deepest_cumulative_loss"], rtol=0.0,
          atol=1e-9 * run_scale.max())
    # the reported statistics: cumulative Azure spend, calendar-year sums, year-end stocks,
    # horizon totals
    layout = StatLayout(grid)
    close(stats[layout.rows("cumulative_azure_spend")], np.cumsum(ref["azure_spend"], axis=0),
          rtol=1e-9, atol=1e-9 * run_scale.max())
    annual = reference.annual_sums(ref, grid)
    assert set(annual) == set(ANNUAL_FLOWS)
    for name in ANNUAL_FLOWS:
        close(stats[layout.rows(name)], annual[name], rtol=0.0,
              atol=1e-9 * run_scale.max(), msg=name)
    year_end = reference.year_end_stocks(ref, grid)
    for name in STOCKS:
        close(stats[layout.rows(name)], year_end[name], rtol=1e-9, atol=0.0, msg=name)
    h = layout.rows("horizon")
    for k, name in enumerate(HORIZON_TOTALS):
        close(stats[h][k], ref[name], rtol=0.0, atol=1e-9 * run_scale.max(), msg=name)


def check_kernel(case: Case):
    """The kernel against the reference: on the hand world's path (no shocks), then on
    N_STOCHASTIC paths of the stochastic world (random normals)."""
    cfg, theta, ref = hand_run(case)
    assert_kernel_is_the_reference(cfg, theta, np.zeros((T, 1, 5)), ref)
    cfg = case.config(STOCHASTIC_WORLD)
    theta = ParameterSampler(cfg).draw(0, N_STOCHASTIC)
    normals = np.random.default_rng(20251028).standard_normal((T, N_STOCHASTIC, 5))
    normals[0] = 0.0
    ref = reference.simulate_reference(theta, cfg.deal, cfg.grid, normals,
                                       cfg.shock_correlation)
    assert_kernel_is_the_reference(cfg, theta, normals, ref)
    return ref


def test_hand_world_is_as_described():
    cfg, _, ref = hand_run(Case({}, {}))
    assert model.features(cfg) == model.V1_FEATURES
    for name, value in [("subscription_revenue", 5000.0), ("api_revenue", 500.0),
                        ("revenue", 5500.0), ("inference_spend", 1000.0),
                        ("training_spend", 500.0), ("compute_spend", 1500.0),
                        ("azure_spend", 1200.0), ("other_opex", 1000.0),
                        ("profit", 3000.0), ("weekly_active_users", 1000.0),
                        ("paying_subscribers", 500.0), ("tokens_per_month", 1e8),
                        ("gpu_price", 5.0), ("azure_share", 0.8)]:
        close(series(ref, name), value, msg=name)


# --- (a) a change of terms mid-run -------------------------------------------------------

CHANGE_OF_TERMS = Case(
    {}, {"investment": "5000.0", "revenue_share": "0.1"},
    ({"from": '"2024-10"', "revenue_share": "0.2"},                          # t = 3
     {"from": '"2025-01"', "profit_share_until_recouped": "0.0",              # t = 6
      "profit_share_after": "0.0"},
     {"from": '"2025-04"', "revenue_share_end": '"2025-05"'},                 # t = 9
     {"from": '"2027-01"', "revenue_share": "0.9"}))                          # after horizon


def test_change_of_terms_mid_run():
    cfg, _, ref = hand_run(CHANGE_OF_TERMS)
    assert model.features(cfg).timeline
    # M: 10% of 5500 for t < 3, then 20%, through revenue_share_end = 2025-05 (t = 10)
    m = np.array([550.0] * 3 + [1100.0] * 8 + [0.0])
    close(series(ref, "revenue_share"), m)
    profit = 3000.0 - m
    close(series(ref, "profit"), profit)
    # profit share: 75% of d = P until Q reaches 5000 (t = 2 crosses it: 1325 left at
    # 75%), then 49% of d; from t = 6 both rates are 0
    q0 = 0.75 * 2450.0
    q2 = 1325.0 + 0.49 * (2450.0 - 1325.0 / 0.75)
    q = np.array([q0, q0, q2] + [0.49 * 1900.0] * 3 + [0.0] * 6)
    close(series(ref, "profit_share"), q)
    assert ref["repayment_month"][0] == 2
    close(ref["microsoft_receipts"][0], q.sum() + m.sum())
    close(ref["microsoft_net"][0], q.sum() + m.sum() - 5000.0)
    close(ref["cumulative_profit"][0], profit.sum())
    close(ref["deepest_cumulative_loss"][0], 0.0)
    close(series(ref, "net_revenue_share"), m)
    close(series(ref, "paid_to_microsoft"), 1200.0 + m)
    annual = reference.annual_sums(ref, cfg.grid)
    close(annual["revenue_share"][:, 0], [m[YEAR_2024].sum(), m[YEAR_2025].sum()])
    close(annual["profit"][:, 0], [profit[YEAR_2024].sum(), profit[YEAR_2025].sum()])
    assert ref["cap_reached_month"][0] == T and ref["commitment_met_month"][0] == T


def test_change_of_terms_kernel():
    check_kernel(CHANGE_OF_TERMS)


PROFIT_CAP_CHANGES = Case(
    {}, {"investment": "1e5"},
    ({"from": '"2024-10"', "profit_cap": "1000.0"},    # t = 3: below Q = 6750
     {"from": '"2025-01"', "profit_cap": "8000.0"}))   # t = 6: raised again


def test_profit_cap_lowered_below_profit_share_pays_nothing():
    _, _, ref = hand_run(PROFIT_CAP_CHANGES)
    # 75% of 3000 = 2250 a month (Q = 6750 after t = 2); a cap of 1000 pays nothing and
    # takes nothing back; raised to 8000 it pays the 1250 left, then nothing
    q = np.array([2250.0] * 3 + [0.0] * 3 + [1250.0] + [0.0] * 5)
    close(series(ref, "profit_share"), q)
    close(series(ref, "cumulative_profit_share"), np.cumsum(q))
    assert ref["repayment_month"][0] == T


def test_profit_cap_changes_kernel():
    check_kernel(PROFIT_CAP_CHANGES)


# --- (a') every profit-share rate that can be 0, on either side of the line, before and
# after a change (issue 26: a rate of 0 until recouped, set when Q was already at the line,
# used to stop the profit share instead of paying profit_share_after)

#: d = 3000 every month (no revenue share, no losses); the change comes at t = 6 (2025-01)
LINE_RATES_BEFORE = [(0.75, 0.49), (0.0, 0.49), (0.75, 0.0), (0.0, 0.0)]
LINE_RATES_AFTER = [(0.5, 0.25), (0.0, 0.25), (0.5, 0.0), (0.0, 0.0)]
#: at 75% (2250 a month) 4000 is crossed at t = 1 and 10000 at t = 4, before the change;
#: 20000 after it (or never). None lies on a month's end exactly: the hand world's profit
#: is 3000 up to rounding, so a tie would be decided by the last bit.
LINE_INVESTMENTS = [4000.0, 10000.0, 20000.0]


def hand_profit_share(d: float, investment: float, rates: list[tuple[float, float]]):
    """MODEL.md's waterfall for one path, month by month in plain words: below the line pay
    r1 of d; a month that reaches the line pays r1 up to it and r2 of the rest; at or past
    the line pay r2 of d."""
    q_total, out = 0.0, []
    for r1, r2 in rates:
        if q_total >= investment:
            q = r2 * d
        elif r1 * d > investment - q_total:
            to_line = investment - q_total
            q = to_line + r2 * (d - to_line / r1)
        else:
            q = r1 * d
        q_total += q
        out.append(q)
    return np.array(out)


def line_case(before, after, investment):
    return Case({}, {"investment": repr(investment), "loss_carryforward": "false",
                     "profit_share_until_recouped": repr(before[0]),
                     "profit_share_after": repr(before[1])},
                ({"from": '"2025-01"', "profit_share_until_recouped": repr(after[0]),
                  "profit_share_after": repr(after[1])},))


@pytest.mark.parametrize("investment", LINE_INVESTMENTS)
@pytest.mark.parametrize("after", LINE_RATES_AFTER)
@pytest.mark.parametrize("before", LINE_RATES_BEFORE)
def test_profit_share_rates_of_zero_around_the_line(before, after, investment):
    _, _, ref = hand_run(line_case(before, after, investment))
    q = hand_profit_share(3000.0, investment, [before] * 6 + [after] * 6)
    close(series(ref, "profit_share"), q)
    close(ref["microsoft_receipts"][0], q.sum())
    repaid = np.flatnonzero(np.cumsum(q) >= investment)
    assert ref["repayment_month"][0] == (repaid[0] if repaid.size else T)


def test_zero_rate_until_recouped_after_the_line_pays_the_rate_after():
    # the case by hand: Q passes 4000 at t = 1; from t = 6 the rate until
    # recouped is 0, the rate after stays 0.49: 49% of d every month past the line
    _, _, ref = hand_run(line_case((0.75, 0.49), (0.0, 0.49), 4000.0))
    close(series(ref, "profit_share")[6:], 0.49 * 3000.0)
    close(series(ref, "profit_share")[2:6], 0.49 * 3000.0)


@pytest.mark.parametrize("before,after,investment", [((0.75, 0.49), (0.0, 0.49), 4000.0),
                                                     ((0.0, 0.49), (0.5, 0.0), 20000.0)])
def test_profit_share_rates_of_zero_kernel(before, after, investment):
    # the kernel against the reference (each compile is ~10 s: two cases, one on each
    # side of the change; the hand grid above pins the reference)
    check_kernel(line_case(before, after, investment))


# --- (b) a cap that counts from a later month; revenue share paid before the start --------

NO_PROFIT_SHARE = {"profit_share_until_recouped": "0.0", "profit_share_after": "0.0",
                   "recoup_from": '["revenue_share"]'}
CAP_FROM_START_WITH_PAID_BEFORE = Case(
    {}, {"investment": "4000.0", "revenue_share": "0.2",
         "revenue_share_paid_before_start": "2000.0", "revenue_share_cap": "1e6",
         **NO_PROFIT_SHARE},
    ({"from": '"2024-10"', "revenue_share_cap": "4000.0"},    # t = 3: already exceeded
     {"from": '"2025-01"', "revenue_share_cap": "7000.0"}))   # t = 6: 1700 of room


def test_cap_from_start_counts_revenue_share_paid_before_start():
    _, _, ref = hand_run(CAP_FROM_START_WITH_PAID_BEFORE)
    # 20% of 5500 = 1100 a month; counted toward the cap: 2000 + 1100 t. The cap lowered
    # to 4000 at t = 3 is already exceeded (5300): nothing (never negative); raised to
    # 7000 at t = 6: 1100, then the 600 left
    m = np.array([1100.0] * 3 + [0.0] * 3 + [1100.0, 600.0] + [0.0] * 4)
    close(series(ref, "revenue_share"), m)
    # the running sum is the run's: what was paid before the start is kept apart from it
    close(series(ref, "cumulative_revenue_share"), np.cumsum(m))
    assert ref["cap_reached_month"][0] == 3      # owed 1100 >= room -1300
    # recouping counts the 2000 paid before the start: 3100, 4200 >= 4000 at t = 1
    assert ref["repayment_month"][0] == 1
    # receipts are the run's: without the 2000
    close(ref["microsoft_receipts"][0], 5000.0)
    close(ref["microsoft_net"][0], 1000.0)
    close(series(ref, "profit"), 3000.0 - m)


def test_cap_from_start_with_paid_before_kernel():
    check_kernel(CAP_FROM_START_WITH_PAID_BEFORE)


CAP_FROM_LATER_MONTH = Case(
    {}, {"investment": "6000.0", "revenue_share": "0.2",
         "revenue_share_paid_before_start": "2000.0", **NO_PROFIT_SHARE},
    ({"from": '"2024-10"', "revenue_share_cap": "2500.0",               # t = 3
      "revenue_share_cap_from": '"2024-10"'},))


def test_cap_counts_from_a_later_month():
    _, _, ref = hand_run(CAP_FROM_LATER_MONTH)
    # no cap for t < 3; from t = 3 the cap counts what is paid from t = 3 on (neither the
    # 3300 paid before nor the 2000 paid before the start): 1100, 1100, then 300 left
    m = np.array([1100.0] * 5 + [300.0] + [0.0] * 6)
    close(series(ref, "revenue_share"), m)
    assert ref["cap_reached_month"][0] == 5
    # recouping counts everything: 3100, 4200, 5300, 6400 >= 6000 at t = 3
    assert ref["repayment_month"][0] == 3
    close(ref["microsoft_receipts"][0], m.sum())
    close(ref["cumulative_revenue_share"][-1, 0], m.sum())


def test_cap_counts_from_a_later_month_kernel():
    check_kernel(CAP_FROM_LATER_MONTH)


@pytest.mark.parametrize("paid_before", ["1e25", "1e300"])
def test_large_revenue_share_paid_before_start_keeps_the_run_receipts(paid_before):
    # issue 26: the payment before the start was added into the running sum and
    # subtracted again, so a large one absorbed the run's receipts (reported as 0)
    case = dataclasses.replace(CAP_FROM_LATER_MONTH, deal={
        **CAP_FROM_LATER_MONTH.deal, "revenue_share_paid_before_start": paid_before})
    _, _, ref = hand_run(case)
    m = np.array([1100.0] * 5 + [300.0] + [0.0] * 6)   # the cap from t = 3 as above
    close(series(ref, "revenue_share"), m)
    assert ref["cap_reached_month"][0] == 5
    assert ref["repayment_month"][0] == 0              # the payment before repays at once
    close(ref["microsoft_receipts"][0], m.sum())
    close(ref["cumulative_revenue_share"][-1, 0], m.sum())
    if paid_before == "1e300":
        check_kernel(case)


#: the cap in force from the start, counting from a month after it (t = 3)
CAP_FROM_AFTER_ITS_START = Case(
    {}, {"investment": "1e6", "revenue_share": "0.2", "revenue_share_cap": "1500.0",
         "revenue_share_cap_from": '"2024-10"', **NO_PROFIT_SHARE})


def test_cap_counting_from_a_later_month_does_not_bound_earlier_months():
    """MODEL.md A: "the cap bounds the revenue share paid from that month on (M_t summed
    over months >= cap_from); paid earlier does not count". Before cap_from nothing is
    counted, so nothing is bounded: 1100 a month for t < 3, then 1100 and the 400 left."""
    _, _, ref = hand_run(CAP_FROM_AFTER_ITS_START)
    m = np.array([1100.0] * 4 + [400.0] + [0.0] * 7)
    close(series(ref, "revenue_share"), m)
    assert ref["cap_reached_month"][0] == 4


def test_cap_counting_from_a_later_month_kernel():
    check_kernel(CAP_FROM_AFTER_ITS_START)


# --- (c) the Azure commitment --------------------------------------------------------------

SHORTFALL = Case(
    {}, {"investment": "1e6", "azure_credits": "15000.0", "azure_commitment": "20000.0",
         "azure_commitment_from": '"2024-09"', "azure_commitment_by": '"2025-02"'})  # t 2..7


def test_commitment_shortfall_is_paid_at_by():
    cfg, _, ref = hand_run(SHORTFALL)
    assert model.features(cfg).commitment
    # Z = 1200 a month; t = 2..7 count 7200; the shortfall 12800 is paid at t = 7
    f = np.zeros(T)
    f[7] = 12800.0
    close(series(ref, "azure_commitment_shortfall"), f)
    close(series(ref, "azure_spend"), 1200.0 + f)
    close(series(ref, "azure_spend_before_shortfall"), 1200.0)
    close(series(ref, "azure_inference_spend"), 800.0)
    close(series(ref, "paid_to_microsoft"), 1200.0 + f)
    profit = 3000.0 - f
    close(series(ref, "profit"), profit)
    assert ref["commitment_met_month"][0] == T
    close(ref["commitment_counted"][0], 7200.0)
    # credits of 15000 run out with the shortfall at t = 7 (without it: 14400 by t = 11)
    assert ref["credit_exhaustion_month"][0] == 7
    close(ref["cumulative_azure_spend_total"][0], 12 * 1200.0 + 12800.0)
    # the waterfall: 75% of 3000 through t = 6; the loss of 9800 at t = 7 is filled by
    # t = 8..10 (pool -800 after t = 10) and t = 11 distributes 2200
    q = np.array([2250.0] * 7 + [0.0] * 4 + [0.75 * 2200.0])
    close(series(ref, "profit_share"), q)
    # OpenAI's cash: 750 a month to 5250, then -9800: the deepest point is -4550
    close(ref["deepest_cumulative_loss"][0], 4550.0)
    annual = reference.annual_sums(ref, cfg.grid)
    close(annual["azure_spend"][:, 0], [7200.0, 20000.0])
    close(annual["azure_commitment_shortfall"][:, 0], [0.0, 12800.0])


def test_commitment_shortfall_kernel():
    check_kernel(SHORTFALL)


COMMITMENT_MET = Case(
    {}, {"investment": "1e6", "azure_commitment": "5000.0",
         "azure_commitment_from": '"2024-09"', "azure_commitment_by": '"2025-04"'})  # t 2..9


def test_commitment_met_before_by():
    _, _, ref = hand_run(COMMITMENT_MET)
    # 1200, 2400, 3600, 4800, 6000 >= 5000 at t = 6; nothing is paid at t = 9
    assert ref["commitment_met_month"][0] == 6
    close(series(ref, "azure_commitment_shortfall"), 0.0)
    close(series(ref, "azure_spend"), 1200.0)
    close(ref["commitment_counted"][0], 8 * 1200.0)


def test_commitment_met_kernel():
    check_kernel(COMMITMENT_MET)


COMMITMENT_AFTER_HORIZON = Case(
    {}, {"investment": "1e6", "azure_commitment": "1e6",
         "azure_commitment_from": '"2024-09"', "azure_commitment_by": '"2026-12"'})


def test_commitment_due_after_the_horizon_pays_nothing():
    _, _, ref = hand_run(COMMITMENT_AFTER_HORIZON)
    close(series(ref, "azure_commitment_shortfall"), 0.0)
    close(series(ref, "profit"), 3000.0)
    assert ref["commitment_met_month"][0] == T
    close(ref["commitment_counted"][0], 10 * 1200.0)


def test_commitment_after_horizon_kernel():
    check_kernel(COMMITMENT_AFTER_HORIZON)


# --- (d) the API price as a markup on cost --------------------------------------------------

MARKUP = Case(
    {"api_revenue_per_mtok_0": None, "api_price_drift": None, "gpu_price_drift": "-0.24",
     "api_markup_0": "2.0", "api_markup_drift": "0.12", "api_markup_drift_inf": "0.0",
     "api_markup_drift_halflife": "0.5"},
    {"revenue_share": "0.1"})


def test_markup_path():
    cfg, _, ref = hand_run(MARKUP)
    assert model.features(cfg).markup
    t = np.arange(T)
    # p_t = 5 e^{-0.02 t}, so I_t = 200 p_t = 1000 e^{-0.02 t}
    p = 5.0 * np.exp(-0.02 * t)
    inference = 1000.0 * np.exp(-0.02 * t)
    # log markup_t = log 2 + sum_{k < t} r(k/12)/12, r(s) = 0.12 * 2^{-s/0.5}
    r = 0.12 * 2.0 ** (-(t / 12.0) / 0.5)
    markup = 2.0 * np.exp(np.concatenate([[0.0], np.cumsum(r[:-1] / 12.0)]))
    close(series(ref, "api_markup"), markup)
    close(series(ref, "gpu_price"), p)
    close(series(ref, "inference_spend"), inference)
    # pi = markup 1e6 p / (eta u) = 2 markup p; A = share D pi / 1e6 = share markup I
    close(series(ref, "api_revenue_per_mtok"), 2.0 * markup * p)
    api = 0.5 * markup * inference
    close(series(ref, "api_revenue"), api)
    revenue = 5000.0 + api
    close(series(ref, "revenue"), revenue)
    compute = inference + 500.0
    close(series(ref, "compute_spend"), compute)
    close(series(ref, "azure_spend"), 0.8 * compute)
    close(series(ref, "profit"), revenue - compute - 1000.0 - 0.1 * revenue)
    close(reference.year_end_stocks(ref, cfg.grid)["gpu_price"][:, 0], [p[5], p[11]])


def test_markup_kernel():
    check_kernel(MARKUP)


# --- (e) spending tied to revenue ---------------------------------------------------------

def intensity_case(training_intensity_0):
    return Case(
        {"training_spend_0": None, "training_growth": None, "other_opex_0": None,
         "other_opex_growth": None, "token_growth_0": "0.12", "token_growth_inf": "0.12",
         "training_intensity_0": training_intensity_0, "training_intensity_drift": "-0.12",
         "other_opex_intensity_0": "0.2", "other_opex_intensity_drift": "0.0"},
        {"revenue_share": "0.1"})


@pytest.mark.parametrize("training_intensity_0", [0.1, 0.0])
def test_intensity_path(training_intensity_0):
    cfg, _, ref = hand_run(intensity_case(repr(training_intensity_0)))
    feats = model.features(cfg)
    assert feats.training_intensity and feats.opex_intensity
    t = np.arange(T)
    # D_t = 1e8 e^{0.01 t}: I_t = 1000 e^{0.01 t}, A_t = 500 e^{0.01 t}
    inference = 1000.0 * np.exp(0.01 * t)
    revenue = 5000.0 + 500.0 * np.exp(0.01 * t)
    close(series(ref, "revenue"), revenue)
    # R_t = intensity_t V_t with intensity_t = i_0 e^{-0.01 t} (0 stays 0); O_t = 0.2 V_t
    intensity = training_intensity_0 * np.exp(-0.01 * t)
    close(series(ref, "training_intensity"), intensity)
    training = intensity * revenue
    close(series(ref, "training_spend"), training)
    close(series(ref, "other_opex"), 0.2 * revenue)
    compute = inference + training
    close(series(ref, "compute_spend"), compute)
    close(series(ref, "azure_spend"), 0.8 * compute)
    close(series(ref, "profit"), revenue - compute - 0.2 * revenue - 0.1 * revenue)
    annual = reference.annual_sums(ref, cfg.grid)
    close(annual["training_spend"][:, 0], [training[YEAR_2024].sum(),
                                           training[YEAR_2025].sum()])
    close(annual["other_opex"][:, 0], [0.2 * revenue[YEAR_2024].sum(),
                                       0.2 * revenue[YEAR_2025].sum()])
    close(reference.year_end_stocks(ref, cfg.grid)["tokens_per_month"][:, 0],
          [1e8 * math.exp(0.05), 1e8 * math.exp(0.11)])


@pytest.mark.parametrize("training_intensity_0", [0.1, 0.0])
def test_intensity_kernel(training_intensity_0):
    check_kernel(intensity_case(repr(training_intensity_0)))


# --- (f) the reverse revenue share ---------------------------------------------------------

REVERSE = Case(
    {"microsoft_ai_revenue_0": "400.0", "microsoft_ai_revenue_growth": "0.12"},
    {"investment": "5000.0", "revenue_share": "0.2", "reverse_share": "0.25",
     **NO_PROFIT_SHARE},
    ({"from": '"2025-01"', "reverse_share": "0.0"},))   # t = 6


def test_reverse_share():
    cfg, _, ref = hand_run(REVERSE)
    assert model.features(cfg).reverse
    t = np.arange(T)
    close(series(ref, "microsoft_ai_revenue"), 400.0 * np.exp(0.01 * t))
    # 25% of Microsoft's AI revenue 400 e^{0.01 t}, until the change at t = 6
    reverse = np.where(t < 6, 100.0 * np.exp(0.01 * t), 0.0)
    close(series(ref, "reverse_revenue_share"), reverse)
    close(series(ref, "revenue_share"), 1100.0)
    close(series(ref, "net_revenue_share"), 1100.0 - reverse)
    close(series(ref, "profit"), 3000.0 - 1100.0 + reverse)
    close(series(ref, "paid_to_microsoft"), 1200.0 + 1100.0 - reverse)
    # recouping uses the gross M: 5500 >= 5000 at t = 4 (the net, 4994.97, is short)
    assert (1100.0 - reverse)[:5].sum() < 5000.0
    assert ref["repayment_month"][0] == 4
    close(ref["microsoft_receipts"][0], 12 * 1100.0)
    close(ref["cumulative_reverse_revenue_share"][0], reverse.sum())
    annual = reference.annual_sums(ref, cfg.grid)
    close(annual["net_revenue_share"][:, 0], [6600.0 - reverse.sum(), 6600.0])
    close(annual["reverse_revenue_share"][:, 0], [reverse.sum(), 0.0])


def test_reverse_share_kernel():
    check_kernel(REVERSE)


# --- (g) Microsoft's Azure margin -----------------------------------------------------------

def margin_case(recoup_from):
    return Case(
        {"azure_gross_margin": "0.25"},
        {"investment": "1000.0", "profit_share_until_recouped": "0.0",
         "profit_share_after": "0.0", "recoup_from": recoup_from,
         "azure_commitment": "5000.0", "azure_commitment_from": '"2024-07"',
         "azure_commitment_by": '"2024-09"'})   # t = 0..2: 3600, shortfall 1400 at t = 2


@pytest.mark.parametrize("recoup_from,tau", [('["azure_margin", "profit_share"]', 2),
                                             ('["profit_share"]', T)])
def test_azure_margin_counts_toward_recouping(recoup_from, tau):
    cfg, _, ref = hand_run(margin_case(recoup_from))
    assert model.features(cfg).margin
    f = np.zeros(T)
    f[2] = 1400.0
    margin = 0.25 * (1200.0 + f)             # on Z + F: 300, 300, 650, 300, ...
    close(series(ref, "microsoft_azure_margin"), margin)
    close(series(ref, "profit"), 3000.0 - f)
    # 300, 600, 1250 >= 1000 at t = 2 when the margin counts
    assert ref["repayment_month"][0] == tau
    close(ref["microsoft_receipts"][0], 0.0)
    close(ref["microsoft_net"][0], -1000.0)
    close(ref["microsoft_economic_return"][0], margin.sum())
    close(margin.sum(), 0.25 * (12 * 1200.0 + 1400.0))
    close(ref["microsoft_economic_net"][0], margin.sum() - 1000.0)
    annual = reference.annual_sums(ref, cfg.grid)
    close(annual["microsoft_azure_margin"][:, 0], [margin[YEAR_2024].sum(), 1800.0])


@pytest.mark.parametrize("recoup_from", ['["azure_margin", "profit_share"]',
                                         '["profit_share"]'])
def test_azure_margin_kernel(recoup_from):
    check_kernel(margin_case(recoup_from))


#: "azure_margin" in recoup_from without the parameter (MODEL.md B: its default is 0)
MARGIN_NOT_GIVEN = Case({}, {"investment": "1000.0",
                             "recoup_from": '["azure_margin", "profit_share"]'})


def test_azure_margin_defaults_to_zero():
    cfg, theta, ref = hand_run(MARGIN_NOT_GIVEN)
    assert "azure_gross_margin" not in theta
    close(series(ref, "microsoft_azure_margin"), 0.0)
    # only the profit share recoups: month 0 crosses 1000 (1333.33 of d at 75%)
    close(series(ref, "profit_share")[0], 1000.0 + 0.49 * (3000.0 - 1000.0 / 0.75))
    assert ref["repayment_month"][0] == 0
    close(ref["microsoft_economic_return"], ref["microsoft_receipts"])


def test_azure_margin_defaults_to_zero_kernel():
    check_kernel(MARGIN_NOT_GIVEN)


# --- every version-2 mechanism at once, in a random world ---------------------------------

EVERYTHING = Case(
    {"api_revenue_per_mtok_0": None, "api_price_drift": None, "api_markup_0": "1.5",
     "api_markup_drift": "0.05", "training_spend_0": None, "training_growth": None,
     "training_intensity_0": "0.1", "training_intensity_drift": "0.1",
     "training_intensity_drift_inf": "-0.1", "training_intensity_drift_halflife": "0.5",
     "other_opex_0": None, "other_opex_growth": None, "other_opex_intensity_0": "0.15",
     "other_opex_intensity_drift": "-0.05", "microsoft_ai_revenue_0": "300.0",
     "microsoft_ai_revenue_growth": "0.5", "azure_gross_margin": "0.3",
     "token_growth_0": "0.6", "token_growth_inf": "0.6"},
    {"investment": "2e4", "revenue_share": "0.2", "revenue_share_cap": "5000.0",
     "revenue_share_paid_before_start": "1000.0", "reverse_share": "0.2",
     "losses_before_start": "2000.0",
     "recoup_from": '["profit_share", "revenue_share", "azure_margin"]',
     "azure_credits": "12000.0", "azure_commitment": "11500.0",
     "azure_commitment_from": '"2024-08"', "azure_commitment_by": '"2025-03"'},
    ({"from": '"2024-10"', "revenue_share_cap": "4000.0", "revenue_share_cap_from":
      '"2024-10"', "profit_cap": "3000.0"},
     {"from": '"2025-01"', "revenue_share": "0.15", "revenue_share_end": '"2025-05"',
      "reverse_share": "0.0", "profit_share_until_recouped": "0.5",
      "profit_share_after": "0.3"},
     {"from": '"2025-03"', "revenue_share_cap_from": '"2024-07"',
      "revenue_share_cap": "9000.0", "profit_cap": "1e9"}))


def test_every_mechanism_kernel():
    cfg = EVERYTHING.config()
    feats = model.features(cfg)
    assert feats == model.Features(timeline=True, cap_froms=(0, 3), reverse=True,
                                   markup=True, training_intensity=True, opex_intensity=True,
                                   commitment=True, margin=True)
    ref = check_kernel(EVERYTHING)
    # the lines really fall at different months on different paths
    for name in ("repayment_month", "cap_reached_month", "commitment_met_month",
                 "credit_exhaustion_month"):
        assert len(np.unique(ref[name])) > 1, name
    assert np.any(ref["azure_commitment_shortfall"] > 0)
    assert np.all(ref["revenue_share"] >= 0)


# --- (h) version 1 unchanged --------------------------------------------------------------

V1_CASES = [
    Case({}, {}),
    Case({}, {"revenue_share": "0.2", "revenue_share_end": '"2025-03"',
              "revenue_share_cap": "4000.0", "profit_cap": "5000.0",
              "losses_before_start": "3000.0", "azure_credits": "10000.0",
              "recoup_from": '["profit_share", "revenue_share"]', "investment": "6000.0"}),
    # P = -550 a month on average, paid out without carrying the losses forward
    Case({"other_opex_0": "4000.0"}, {"revenue_share": "0.1", "loss_carryforward": "false",
                                      "investment": "3000.0",
                                      "recoup_from": '["revenue_share"]'}),
]


def test_v1_hand_case_is_version_1():
    """A version-1 deal on the hand world: M = 20% of 5500 through 2025-03 (t = 8) and at
    most 4000 (1100, 1100, 1100, the 700 left); recouping counts Q and M."""
    _, _, ref = hand_run(V1_CASES[1])
    m = np.array([1100.0] * 3 + [700.0] + [0.0] * 8)
    close(series(ref, "revenue_share"), m)
    assert ref["cap_reached_month"][0] == 3
    # P = 3000 - M; the pool starts at -3000: d = 0, 800, 1900, 2300, 3000...; q = 75%
    # of d until Q = 5000 (the profit cap, also below the investment line 6000)
    d = np.array([0.0, 800.0, 1900.0, 2300.0] + [3000.0] * 8)
    q = np.diff(np.minimum(np.concatenate([[0.0], np.cumsum(0.75 * d)]), 5000.0))
    close(series(ref, "profit_share"), q)
    # Q + M: 1100, 2800, 5325, ... >= 6000 at t = 3
    assert ref["repayment_month"][0] == 3
    for name in ("net_revenue_share", "reverse_revenue_share", "azure_commitment_shortfall",
                 "microsoft_azure_margin"):
        expected = m if name == "net_revenue_share" else 0.0
        close(series(ref, name), expected, msg=name)
    close(ref["microsoft_economic_return"], ref["microsoft_receipts"])


@pytest.mark.parametrize("case", V1_CASES)
def test_v1_config_gives_version_1_results_bit_for_bit(case):
    cfg = case.config(STOCHASTIC_WORLD)
    assert model.features(cfg) == model.V1_FEATURES
    theta = ParameterSampler(cfg).draw(0, 200)
    normals = np.random.default_rng(7).standard_normal((T, 200, 5))
    normals[0] = 0.0
    _assert_same_as_v1(cfg, theta, normals)


@pytest.mark.parametrize("name", ["v1_base.toml", "amendment_2026.toml"])
def test_shipped_v1_configs_give_version_1_results_bit_for_bit(name):
    """The shipped configs that use no version-2 key (base.toml, today's terms, does)."""
    cfg = load_config(CONFIGS_DIR / name)
    assert model.features(cfg) == model.V1_FEATURES
    theta = ParameterSampler(cfg).draw(0, 100)
    normals = shock_normals_reference(cfg.simulation.seed, 0, 100, cfg.grid.num_months)
    _assert_same_as_v1(cfg, theta, normals)


def _assert_same_as_v1(cfg, theta, normals):
    old = _v1_simulate_reference(theta, cfg.deal, cfg.grid, normals, cfg.shock_correlation)
    new = reference.simulate_reference(theta, cfg.deal, cfg.grid, normals,
                                       cfg.shock_correlation)
    for key, value in old.items():
        np.testing.assert_array_equal(new[key], value, err_msg=key)
    # version 2's outputs of a version-1 config
    assert np.all(new["azure_commitment_shortfall"] == 0)
    assert np.all(new["reverse_revenue_share"] == 0)
    np.testing.assert_array_equal(new["net_revenue_share"], new["revenue_share"])
    np.testing.assert_array_equal(new["microsoft_economic_return"], new["microsoft_receipts"])


# --- the reference's parameter draws with version 2's parameters ---------------------------


def test_reference_draws_version_2_parameters_like_the_sampler():
    """MODEL.md D: every new parameter may be a distribution and rank-correlated; the
    reference's recipe and ParameterSampler agree on the same uniforms."""
    dists = {
        "microsoft_ai_revenue_0": '{ dist = "lognormal", p5 = 100.0, p95 = 900.0 }',
        "microsoft_ai_revenue_growth": '{ dist = "normal", mean = 0.3, sd = 0.1 }',
        "microsoft_ai_revenue_growth_inf": '{ dist = "uniform", low = 0.0, high = 0.1 }',
        "microsoft_ai_revenue_growth_halflife": "2.0",
        "api_markup_0": '{ dist = "triangular", low = 1.2, mode = 2.0, high = 4.0 }',
        "api_markup_drift": "0.0",
        "api_revenue_per_mtok_0": None, "api_price_drift": None,
        "azure_gross_margin": '{ dist = "beta", alpha = 4.0, beta = 6.0 }',
    }
    text = config_text(dists, {"reverse_share": "0.2"})
    text = text.replace("[deal]", "[parameter_correlation]\npairs = [[\"api_markup_0\", "
                        "\"azure_gross_margin\", 0.5]]\n\n[deal]")
    cfg = mcsim.parse_config_text(text)
    sampler = ParameterSampler(cfg)
    params = cfg.resolved["parameters"]
    assert reference.drawn_parameters(params) == sampler.uncertain
    u = parameter_uniforms(cfg.simulation.seed, 0, 1000, sampler.indices)
    ours = reference.draw_parameters(params, cfg.resolved["parameter_correlation"]["pairs"], u)
    theirs = {k: v for k, v in sampler.draw(0, 1000).items() if not k.startswith("_")}
    assert sorted(ours) == sorted(theirs)
    for name, x in theirs.items():
        np.testing.assert_allclose(ours[name], x, rtol=1e-12, atol=1e-13 * np.abs(x).max(),
                                   err_msg=name)
    assert np.all(ours["api_markup_drift_inf"] == 0.0)   # a rate without companions
    assert np.all(ours["api_markup_drift_halflife"] == 1.0)


# --- the version-1 reference, frozen ------------------------------------------------------
# mcsim/reference.py's simulate_reference as it was before version 2, verbatim but for its
# docstring: a version-1 config must give these numbers, bit for bit.

def _v1_simulate_reference(theta, deal, grid, normals, shock_correlation):
    th = {k: np.asarray(v, dtype=np.float64) for k, v in theta.items()}
    DT = reference.DT
    T = grid.num_months
    N = th["gpu_price_0"].shape[0]
    eps = np.asarray(normals, dtype=np.float64) @ np.linalg.cholesky(
        np.asarray(shock_correlation, dtype=np.float64)).T
    sqdt = np.sqrt(DT)

    def rate(name, s):
        return reference.decaying_rate(th[name], th[f"{name}_inf"], th[f"{name}_halflife"], s)

    log_p = np.log(th["gpu_price_0"])
    y = _logit(th["utilization_0"])
    log_D = np.log(th["tokens_0"])
    log_W = np.log(th["users_0"])
    z = _logit(th["conversion_0"])
    eta = th["tokens_per_gpu_hour_0"].copy()
    R = th["training_spend_0"].copy()
    pi = th["api_revenue_per_mtok_0"].copy()
    O = th["other_opex_0"].copy()

    names = ["gpu_price", "utilization", "tokens", "users", "conversion", "throughput",
             "training_spend", "api_revenue_per_mtok", "other_opex", "azure_share",
             "inference_spend", "compute_spend", "azure_spend", "azure_inference_spend",
             "subscription_revenue", "api_revenue", "revenue", "revenue_share", "profit",
             "distributable_profit", "profit_share", "cumulative_azure_spend",
             "recouped", "openai_cash"]
    out = {k: np.zeros((T, N)) for k in names}

    end_index = T if deal.revenue_share_end is None else grid.index(deal.revenue_share_end)
    rs_cap = np.inf if deal.revenue_share_cap is None else deal.revenue_share_cap
    profit_cap = np.inf if deal.profit_cap is None else deal.profit_cap
    credits = np.inf if deal.azure_credits is None else deal.azure_credits

    cum_M = np.zeros(N)
    Q = np.zeros(N)
    pool = np.full(N, -deal.losses_before_start)
    cum_Z = np.zeros(N)
    cash = np.zeros(N)
    min_cash = np.zeros(N)
    cum_V = np.zeros(N)
    cum_P = np.zeros(N)
    tau = np.full(N, T)
    credit_month = np.full(N, T)

    for t in range(T):
        if t >= 1:
            s_prev = (t - 1) * DT
            e = eps[t]
            log_p = log_p + rate("gpu_price_drift", s_prev) * DT \
                + th["gpu_price_vol"] * sqdt * e[:, 0]
            y = y + th["utilization_speed"] * (_logit(th["utilization_mean"]) - y) * DT \
                + th["utilization_vol"] * sqdt * e[:, 1]
            g = reference.decaying_rate(th["token_growth_0"], th["token_growth_inf"],
                                        th["token_growth_halflife"], s_prev)
            log_D = log_D + g * DT + th["token_vol"] * sqdt * e[:, 2]
            W_prev = np.exp(log_W)
            log_W = log_W + th["users_growth"] * (1.0 - W_prev / th["users_cap"]) * DT \
                + th["users_vol"] * sqdt * e[:, 3]
            z = z + th["conversion_speed"] * (_logit(th["conversion_mean"]) - z) * DT \
                + th["conversion_vol"] * sqdt * e[:, 4]
            eta = eta * np.exp(rate("efficiency_growth", s_prev) * DT)
            R = R * np.exp(rate("training_growth", s_prev) * DT)
            pi = pi * np.exp(rate("api_price_drift", s_prev) * DT)
            O = O * np.exp(rate("other_opex_growth", s_prev) * DT)

        s = t * DT
        a = th["azure_share_inf"] + (th["azure_share_0"] - th["azure_share_inf"]) \
            * 2.0 ** (-s / th["azure_share_halflife"])
        p, u, D, W, c = np.exp(log_p), _expit(y), np.exp(log_D), np.exp(log_W), _expit(z)

        I = D / eta / u * p
        X = I + R
        Z = a * X
        S = W * c * th["subscription_arpu"]
        A = th["api_token_share"] * D * pi / 1e6
        V = S + A
        M = deal.revenue_share * V if t <= end_index else np.zeros(N)
        reaches_cap = M >= rs_cap - cum_M
        M = np.where(reaches_cap, rs_cap - cum_M, M)
        cum_M = np.where(reaches_cap, rs_cap, cum_M + M)
        P = V - X - O - M

        if deal.loss_carryforward:
            pool = pool + P
            d = np.where(pool > 0, pool, 0.0)
            pool = np.where(pool > 0, 0.0, pool)
        else:
            d = np.maximum(P, 0.0)
        r1, r2 = deal.profit_share_until_recouped, deal.profit_share_after
        remaining = np.maximum(deal.investment - Q, 0.0)
        crosses = r1 * d > remaining
        with np.errstate(divide="ignore", invalid="ignore"):
            d_at_r1 = np.where(crosses, remaining / r1, d)
        Q_new = np.where(crosses, np.maximum(Q, deal.investment) + r2 * (d - d_at_r1),
                         Q + r1 * d)
        Q_new = np.minimum(Q_new, profit_cap)
        q = Q_new - Q
        Q = Q_new
        recouped = np.zeros(N)
        if "profit_share" in deal.recoup_from:
            recouped = recouped + Q
        if "revenue_share" in deal.recoup_from:
            recouped = recouped + cum_M
        tau = np.where((tau == T) & (recouped >= deal.investment), t, tau)

        cum_Z = cum_Z + Z
        credit_month = np.where((credit_month == T) & (cum_Z >= credits), t, credit_month)
        cash = cash + P - q
        min_cash = np.minimum(min_cash, cash)
        cum_V = cum_V + V
        cum_P = cum_P + P

        for k, v in zip(names, [p, u, D, W, c, eta, R, pi, O, a, I, X, Z, a * I, S, A, V, M,
                                P, d, q, cum_Z, recouped, cash], strict=True):
            out[k][t] = v

    out.update(
        repayment_month=tau,
        credit_exhaustion_month=credit_month,
        deepest_cumulative_loss=-np.minimum(0.0, min_cash),
        cumulative_revenue=cum_V,
        cumulative_profit=cum_P,
        microsoft_receipts=Q + cum_M,
        microsoft_net=Q + cum_M - deal.investment,
    )
    return out
