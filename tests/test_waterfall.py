"""The deal's waterfall on hand-computed cases.

A constant world: revenue V = 100 and compute X = 10 every month (no shocks, no growth),
other opex O, so profit before revenue share is 90 - O. Both the NumPy reference and the
JAX kernel (float64 and float32) must give the numbers worked out by hand below.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mcsim import model
from mcsim.config import DealConfig
from mcsim.engine import flows_from_normals
from mcsim.months import MonthGrid
from mcsim.parameters import V1_DECAYING_RATES
from mcsim.reference import simulate_reference

GRID = MonthGrid.from_labels("2030-01", "2030-06")  # 6 months, t = 0..5
T = GRID.num_months
IDENTITY = np.eye(5)
IDENTITY_STATIC = tuple(map(tuple, IDENTITY.tolist()))
# deal terms are traced: one compile per dtype serves every case
_simulate = jax.jit(flows_from_normals, static_argnums=(3, 4))


def constant_theta(**overrides):
    """V = users*conversion*arpu = 200*0.5*1 = 100; I = D/eta/u*p = 1/1/0.5*5 = 10."""
    th = dict(
        gpu_price_0=5.0, gpu_price_drift=0.0, gpu_price_vol=0.0,
        utilization_0=0.5, utilization_mean=0.5, utilization_speed=0.0, utilization_vol=0.0,
        tokens_0=1.0, token_growth_0=0.0, token_growth_inf=0.0, token_growth_halflife=1.0,
        token_vol=0.0, tokens_per_gpu_hour_0=1.0, efficiency_growth=0.0,
        users_0=200.0, users_cap=1e15, users_growth=0.0, users_vol=0.0,
        conversion_0=0.5, conversion_mean=0.5, conversion_speed=0.0, conversion_vol=0.0,
        subscription_arpu=1.0, api_revenue_per_mtok_0=0.0, api_price_drift=0.0,
        api_token_share=0.0, training_spend_0=0.0, training_growth=0.0,
        azure_share_0=1.0, azure_share_inf=1.0, azure_share_halflife=1.0,
        other_opex_0=0.0, other_opex_growth=0.0)
    th.update(overrides)
    for rate in V1_DECAYING_RATES:
        th.setdefault(f"{rate}_inf", th[rate])
        th.setdefault(f"{rate}_halflife", 1.0)
    return {k: np.array([v]) for k, v in th.items()}


def deal(**kw):
    base = dict(investment=200.0, revenue_share=0.0, profit_share_until_recouped=0.75,
                profit_share_after=0.49)
    base.update(kw)
    return DealConfig(**base)


def run_all(theta, d):
    """(reference dict, [(dtype, final state, flows)]) for one path."""
    normals = np.zeros((T, 1, 5))
    ref = simulate_reference(theta, d, GRID, normals, IDENTITY)
    kernels = []
    for dtype in (jnp.float64, jnp.float32):
        th = {k: jnp.asarray(v, dtype) for k, v in theta.items()}
        final, flows = _simulate(th, model.deal_terms(d, GRID),
                                 jnp.zeros((T, 1, 5), dtype), IDENTITY_STATIC, T)
        kernels.append((dtype, final, flows))
    return ref, kernels


def check(theta, d, *, q=None, m=None, tau=None, loss=None):
    ref, kernels = run_all(theta, d)
    np.testing.assert_allclose(ref["revenue"][:, 0], 100.0, rtol=1e-12)
    np.testing.assert_allclose(ref["compute_spend"][:, 0], 10.0, rtol=1e-12)
    for dtype, final, flows in [("reference", None, None)] + kernels:
        rtol = 1e-5 if dtype is jnp.float32 else 1e-10
        if dtype == "reference":
            got_q, got_m = ref["profit_share"][:, 0], ref["revenue_share"][:, 0]
            got_tau, got_loss = ref["repayment_month"][0], ref["deepest_cumulative_loss"][0]
        else:
            got_q, got_m = np.asarray(flows.profit_share)[:, 0], \
                np.asarray(flows.revenue_share)[:, 0]
            got_tau = int(final.repayment_month[0])
            got_loss = float(-final.min_openai_cash[0])
        if q is not None:
            np.testing.assert_allclose(got_q, q, rtol=rtol, atol=1e-9, err_msg=str(dtype))
        if m is not None:
            np.testing.assert_allclose(got_m, m, rtol=rtol, atol=1e-9, err_msg=str(dtype))
        if tau is not None:
            assert got_tau == tau, dtype
        if loss is not None:
            np.testing.assert_allclose(got_loss, loss, rtol=rtol, atol=1e-9)


def test_month_crossing_the_recoup_line_splits_exactly():
    # d = 90 a month; 75% until Q reaches 200: 67.5, 67.5 (Q = 135), then month 2 pays the
    # 65 left at 75% (from 86.667 of d) and 49% of the other 3.333: 65 + 1.6333
    split = 65.0 / 0.75
    q2 = 65.0 + 0.49 * (90.0 - split)
    check(constant_theta(), deal(), q=[67.5, 67.5, q2, 44.1, 44.1, 44.1], tau=2)


def test_profit_cap_limits_cumulative_profit_share():
    # cap 150: 67.5, 67.5, then only 15, then nothing
    check(constant_theta(), deal(profit_cap=150.0), q=[67.5, 67.5, 15.0, 0, 0, 0], tau=T)


def test_revenue_share_cap_pays_the_remainder():
    # 20% of V = 20 a month; cap 50: 20, 20, 10, 0...
    check(constant_theta(), deal(revenue_share=0.2, revenue_share_cap=50.0),
          m=[20, 20, 10, 0, 0, 0])


def test_revenue_share_end_month_is_inclusive():
    # end 2030-03 is month index 2: months 0, 1 and 2 pay
    check(constant_theta(), deal(revenue_share=0.2, revenue_share_end="2030-03"),
          m=[20, 20, 20, 0, 0, 0])


def test_revenue_share_reduces_profit_before_profit_share():
    # P = 100 - 10 - 20 = 70; q = 52.5 a month until Q reaches 200 at month 3:
    # 52.5*3 = 157.5, month 3: 42.5 left at 75% (d 56.667) + 49% of 13.333
    split = 42.5 / 0.75
    q3 = 42.5 + 0.49 * (70 - split)
    check(constant_theta(), deal(revenue_share=0.2),
          q=[52.5, 52.5, 52.5, q3, 34.3, 34.3], tau=3)


def test_recoup_from_revenue_share():
    # M = 20 a month counts toward investment 50: cumulative 20, 40, 60 -> month 2
    check(constant_theta(), deal(investment=50.0, revenue_share=0.2,
                                 profit_share_until_recouped=0.0, profit_share_after=0.0,
                                 recoup_from=("revenue_share",)),
          q=[0] * T, tau=2)


def test_recoup_from_both_sums_them():
    # per month Q += 0.75*70 = 52.5 and M += 20 -> 72.5, 145, 217.5 >= 200 at month 2
    check(constant_theta(), deal(revenue_share=0.2,
                                 recoup_from=("profit_share", "revenue_share")), tau=2)


def test_loss_carried_forward_is_filled_first():
    # 150 of losses before start: pool -150 + 90 = -60 (d 0), then 30, then 90 ...
    # Q: 0, 22.5, 90, 157.5, 225 -> crosses 200 in month 4: 42.5 left at 75%
    split = 42.5 / 0.75
    q4 = 42.5 + 0.49 * (90 - split)
    check(constant_theta(), deal(losses_before_start=150.0),
          q=[0, 22.5, 67.5, 67.5, q4, 44.1], tau=4)


def test_losses_ignored_without_carryforward():
    check(constant_theta(), deal(losses_before_start=150.0, loss_carryforward=False),
          q=[67.5, 67.5, 65.0 + 0.49 * (90 - 65.0 / 0.75), 44.1, 44.1, 44.1], tau=2)


def test_operating_losses_then_profits_and_deepest_loss():
    # other opex 130: P = -40 every month, nothing distributed, never repaid;
    # the deepest cumulative loss is 6 * 40 = 240
    check(constant_theta(other_opex_0=130.0), deal(), q=[0] * T, tau=T, loss=240.0)


def test_never_repaid_is_censored():
    check(constant_theta(), deal(investment=1e6), tau=T)


def test_deepest_loss_counts_from_start_not_before():
    # losses before start do not count toward the deepest loss; cash is P - q >= 0 here
    check(constant_theta(), deal(losses_before_start=1e3), loss=0.0)


def test_zero_rate_before_line_never_switches():
    # r1 = 0: Q stays 0 and never reaches the line, so r2 never applies
    check(constant_theta(), deal(profit_share_until_recouped=0.0), q=[0] * T, tau=T)


@pytest.mark.parametrize("field,value", [("profit_cap", 0.0), ("revenue_share_cap", 0.0)])
def test_zero_caps_pay_nothing(field, value):
    d = dataclasses.replace(deal(revenue_share=0.2), **{field: value})
    ref, _ = run_all(constant_theta(), d)
    series = "profit_share" if field == "profit_cap" else "revenue_share"
    assert np.all(ref[series] == 0.0)


def test_crossing_lands_exactly_on_the_line_without_a_later_rate():
    # profit_share_after = 0: Q must equal the investment exactly in the crossing month
    # (r1 * (remaining / r1) may round one ulp below it), so repayment is month 2
    check(constant_theta(), deal(profit_share_after=0.0), q=[67.5, 67.5, 65.0, 0, 0, 0],
          tau=2)
    # r1 = 0.1: q = 9, then 6.42 left: 9 + 0.1 * (6.42 / 0.1) rounds below 15.42
    check(constant_theta(), deal(investment=15.42, profit_share_after=0.0,
                                 profit_share_until_recouped=0.1), tau=1)


def test_deal_amounts_keep_float64_in_a_float32_kernel():
    # M = 20 a month; a revenue-share cap $1e-6 below the investment of 100: never repaid.
    # In float32 the cap would round to 100.0 and the path would be repaid in month 4.
    check(constant_theta(), deal(investment=100.0, revenue_share=0.2,
                                 revenue_share_cap=99.999999,
                                 profit_share_until_recouped=0.0, profit_share_after=0.0,
                                 recoup_from=("revenue_share",)), tau=T)
