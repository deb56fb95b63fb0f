"""The model in JAX: pure ``initial_state`` / ``month_flows`` / ``advance`` functions.

One path's future is a scan over months of: money flows and the deal's waterfall at month t
(:func:`month_flows`), then the drivers' step to month t+1 (:func:`advance`). Everything is
elementwise over paths, so any batch shape works. The drivers and a month's flows run in
the kernel dtype (float32 by default); every running sum (the waterfall's loss pool and
cumulative shares, cumulative Azure spend, revenue, profit and cash) is carried in float64,
because float32 loses whole dollars past 2^24 and these sums reach 10^12 per path, while
the waterfall must resolve a month's profit against them.

Units: $ per month for flows, tokens per month, weekly active users; rates per year.
The engine knows nothing of economics beyond these three functions.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .months import MonthGrid
from .parameters import LOGIT_PARAMETERS

if TYPE_CHECKING:  # the model reads a deal config; it does not depend on the config module
    from .config import DealConfig

DT = 1.0 / 12.0
ACC = jnp.float64  # dtype of the reported sums


class DealTerms(NamedTuple):
    """The deal as float64 device scalars (traced, so sweeping them never recompiles).

    $ unless said."""

    investment: jax.Array
    revenue_share: jax.Array          # fraction of revenue
    revenue_share_end: jax.Array      # last month index paying revenue share (int32)
    revenue_share_cap: jax.Array      # inf: none
    rate_until_recouped: jax.Array    # fraction of distributable profit
    rate_after: jax.Array
    profit_cap: jax.Array             # inf: none
    loss_carryforward: jax.Array      # bool
    recoup_profit_share: jax.Array    # bool: cumulative profit share counts toward recouping
    recoup_revenue_share: jax.Array   # bool: cumulative revenue share counts
    azure_credits: jax.Array          # inf: none
    losses_before_start: jax.Array


def deal_terms(deal: DealConfig, grid: MonthGrid) -> DealTerms:
    """Device form of a :class:`DealConfig` on ``grid``.

    Every amount and rate is float64 whatever the kernel dtype: in float32 $13B is
    $12,999,999,488 and $38B is $38,000,001,024, which would move the recoup line and let
    a cap be exceeded.
    """
    inf = float("inf")
    end = grid.num_months if deal.revenue_share_end is None else grid.index(
        deal.revenue_share_end)
    end = max(min(end, grid.num_months), -1)

    tiny = float(np.finfo(np.float64).tiny)

    def amount(x):
        # a positive subnormal amount (5e-324 is a valid investment) would be flushed to 0
        # by the device (XLA flushes subnormals), making "recouped >= investment" true with
        # nothing paid; the smallest normal number keeps every comparison with money right
        if x is not None and 0.0 < x < tiny:
            x = tiny
        return jnp.asarray(inf if x is None else x, ACC)

    return DealTerms(
        investment=amount(deal.investment),
        revenue_share=amount(deal.revenue_share),
        revenue_share_end=jnp.asarray(end, jnp.int32),
        revenue_share_cap=amount(deal.revenue_share_cap),
        rate_until_recouped=amount(deal.profit_share_until_recouped),
        rate_after=amount(deal.profit_share_after),
        profit_cap=amount(deal.profit_cap),
        loss_carryforward=jnp.asarray(deal.loss_carryforward),
        recoup_profit_share=jnp.asarray("profit_share" in deal.recoup_from),
        recoup_revenue_share=jnp.asarray("revenue_share" in deal.recoup_from),
        azure_credits=amount(deal.azure_credits),
        losses_before_start=amount(deal.losses_before_start),
    )


class State(NamedTuple):
    """Per-path state at the start of month t (every field has the batch shape)."""

    log_price: jax.Array              # log $ per GPU-hour
    logit_utilization: jax.Array
    log_tokens: jax.Array             # log tokens per month
    log_users: jax.Array              # log weekly active users
    logit_conversion: jax.Array
    growth_throughput: jax.Array      # cumulative log growth of tokens per GPU-hour
    growth_training: jax.Array        # ... of training spend
    growth_api_price: jax.Array       # ... of API revenue per million tokens
    growth_other_opex: jax.Array      # ... of other operating cost
    cum_revenue_share: jax.Array      # float64 $, M so far
    cum_profit_share: jax.Array       # float64 $, Q so far
    loss_pool: jax.Array              # float64 $ (<= 0): losses later profits fill first
    repayment_month: jax.Array        # int32; T while not yet repaid
    credit_month: jax.Array           # int32; T while credits last
    cum_azure_spend: jax.Array        # float64 $
    cum_revenue: jax.Array            # float64 $
    cum_profit: jax.Array             # float64 $
    openai_cash: jax.Array            # float64 $, running sum of P - q
    min_openai_cash: jax.Array        # float64 $, running minimum of openai_cash (<= 0)
    decay: tuple = ()                 # 2^(-s/h) of each HALFLIFE_RATES rate at month t


class Flows(NamedTuple):
    """Money of month t, $ per month (kernel dtype; the waterfall's flows in float64)."""

    azure_spend: jax.Array            # Z = a X
    azure_inference_spend: jax.Array  # a I
    revenue: jax.Array                # V
    revenue_share: jax.Array          # M
    inference_spend: jax.Array        # I
    compute_spend: jax.Array          # X
    profit: jax.Array                 # P
    profit_share: jax.Array           # q


#: Rates with a half-life: r(s) = r_inf + (r_0 - r_inf) 2^(-s/h).
HALFLIFE_RATES = ("gpu_price_drift", "efficiency_growth", "training_growth",
                  "api_price_drift", "other_opex_growth", "token_growth", "azure_share")


#: Levels whose logs :func:`prepare` precomputes (``_log_NAME``): a flow is one exp of a
#: sum of logs, so no factor overflows where the product would not.
LOG_LEVELS = ("tokens_per_gpu_hour_0", "training_spend_0", "subscription_arpu",
              "api_revenue_per_mtok_0", "api_token_share", "other_opex_0", "users_cap")


def prepare(theta: dict) -> dict:
    """theta plus per-path constants that every month would otherwise recompute (keys
    starting with ``_``): each half-life's monthly decay factor 2^(-dt/h), the logits of
    the utilization and conversion (start and mean; taken from theta where the draws
    computed them in float64, see :func:`mcsim.draws.to_dtype`), the logs of
    :data:`LOG_LEVELS`. :func:`month_flows` and :func:`advance` need them.

    A half-life of any size works: 2^(-dt/h) is 1 to rounding for a huge h (the rate stays
    at r_0) and 0 for a tiny one (it jumps to r_inf after month 0)."""
    logit = jax.scipy.special.logit
    out = dict(theta)
    for name in HALFLIFE_RATES:
        out[f"_decay_step_{name}"] = jnp.exp2(-DT / theta[f"{name}_halflife"])
    for name in LOGIT_PARAMETERS:
        if f"_logit_{name}" not in out:
            out[f"_logit_{name}"] = logit(theta[name])
    for name in LOG_LEVELS:
        out[f"_log_{name}"] = jnp.log(theta[name])  # log 0 = -inf: exp(-inf + x) = 0
    # API revenue per token, in log: share * ($ per million tokens) / 1e6
    out["_log_api_revenue_per_token_0"] = out["_log_api_token_share"] \
        + out["_log_api_revenue_per_mtok_0"] - 6.0 * math.log(10.0)
    return out


def _rate(theta, name: str, state):
    """r(s) = r_inf + (r_0 - r_inf) 2^(-s/h) of a decaying rate (per year) at the state's
    month. 2^(-s/h) is carried as a running product of 2^(-dt/h) (one multiply a month
    instead of an exp2: the kernel's costliest operations are its transcendentals); in
    float32 the product drifts by at most ~t ulp, 1.2e-5 relative at t = 204 months."""
    r0 = theta[f"{name}_0" if name in ("token_growth", "azure_share") else name]
    rinf = theta[f"{name}_inf"]
    return rinf + (r0 - rinf) * state.decay[HALFLIFE_RATES.index(name)]


def initial_state(theta: dict, deal: DealTerms, num_months: int) -> State:
    """Month-0 state: every driver at its ``*_0`` value, nothing paid yet (``theta`` as
    :func:`prepare` returns it: the logit states start at its ``_logit_*`` values)."""
    x = theta["gpu_price_0"]
    zero = jnp.zeros_like(x)
    zero_acc = jnp.zeros(x.shape, ACC)
    never = jnp.full(x.shape, num_months, jnp.int32)
    return State(
        log_price=jnp.log(theta["gpu_price_0"]),
        logit_utilization=theta["_logit_utilization_0"],
        log_tokens=jnp.log(theta["tokens_0"]),
        log_users=jnp.log(theta["users_0"]),
        logit_conversion=theta["_logit_conversion_0"],
        growth_throughput=zero, growth_training=zero, growth_api_price=zero,
        growth_other_opex=zero,
        cum_revenue_share=zero_acc, cum_profit_share=zero_acc,
        loss_pool=zero_acc - deal.losses_before_start,
        repayment_month=never, credit_month=never,
        cum_azure_spend=zero_acc, cum_revenue=zero_acc, cum_profit=zero_acc,
        openai_cash=zero_acc, min_openai_cash=zero_acc,
        decay=tuple(jnp.ones_like(x) for _ in HALFLIFE_RATES),
    )


def month_flows(theta: dict, deal: DealTerms, state: State, t) -> tuple[State, Flows]:
    """Money flows of month t (int32 scalar) and the waterfall's update of the state."""
    # Every flow is one exp of a sum of logs (the logs of its constant factors come from
    # prepare): tokens reach e^91 in a long run, beyond float32's 3.4e38, while the money
    # they bring in does not, so no factor may be formed on its own. Only a money flow
    # above float32's range itself still overflows.
    a = _rate(theta, "azure_share", state)
    u = jax.nn.sigmoid(state.logit_utilization)
    # I = D / eta / u * p with eta = eta_0 exp(G); dividing by u <= 1 last keeps the
    # exp below I itself
    inference = jnp.exp(state.log_tokens - state.growth_throughput + state.log_price
                        - theta["_log_tokens_per_gpu_hour_0"]) / u
    training = jnp.exp(theta["_log_training_spend_0"] + state.growth_training)
    compute = inference + training
    azure = a * compute
    # S = W c arpu, with log c = log sigmoid(z) (c may be tiny: W arpu alone may overflow)
    subscriptions = jnp.exp(state.log_users + jax.nn.log_sigmoid(state.logit_conversion)
                            + theta["_log_subscription_arpu"])
    # A = share D pi_0 exp(G_pi) / 1e6
    api = jnp.exp(state.log_tokens + state.growth_api_price
                  + theta["_log_api_revenue_per_token_0"])
    revenue = subscriptions + api
    other = jnp.exp(theta["_log_other_opex_0"] + state.growth_other_opex)

    # The waterfall runs on float64 sums: the loss pool and the cumulative shares reach
    # 10^12 while a month's profit may be 10^6, which float32 (24-bit) cannot resolve.
    revenue64 = revenue.astype(ACC)
    profit_before_share = (revenue - compute - other).astype(ACC)

    # revenue share: paid through revenue_share_end; the month reaching the cap pays the rest
    owed = jnp.where(t <= deal.revenue_share_end, deal.revenue_share * revenue64,
                     0.0)
    room = deal.revenue_share_cap - state.cum_revenue_share
    hits_cap = owed >= room
    rev_share = jnp.where(hits_cap, room, owed)
    cum_m = jnp.where(hits_cap, deal.revenue_share_cap,
                      state.cum_revenue_share + owed)
    profit = profit_before_share - rev_share

    # distributable profit d: losses carried forward must be filled first
    pool = state.loss_pool + profit
    d_carry = jnp.maximum(pool, 0.0)
    d = jnp.where(deal.loss_carryforward, d_carry, jnp.maximum(profit, 0.0))
    pool = jnp.where(deal.loss_carryforward, jnp.minimum(pool, 0.0), state.loss_pool)

    # profit share: rate_until_recouped up to the investment line, split exactly at it
    investment = deal.investment
    q_prev = state.cum_profit_share
    to_line = jnp.maximum(investment - q_prev, 0.0)
    r1, r2 = deal.rate_until_recouped, deal.rate_after
    crosses = r1 * d > to_line  # implies r1 > 0
    d_at_r1 = jnp.where(crosses, to_line / jnp.where(crosses, r1, 1.0), d)
    q_new = jnp.where(crosses, jnp.maximum(q_prev, investment) + r2 * (d - d_at_r1),
                      q_prev + r1 * d)
    q_new = jnp.minimum(q_new, deal.profit_cap)  # split first, then cap
    profit_share = q_new - q_prev

    recouped = jnp.where(deal.recoup_profit_share, q_new, 0.0) \
        + jnp.where(deal.recoup_revenue_share, cum_m, 0.0)
    repaid_now = recouped >= investment
    repayment = jnp.where(repaid_now, jnp.minimum(state.repayment_month, t),
                          state.repayment_month)

    cum_azure = state.cum_azure_spend + azure.astype(ACC)
    credit = jnp.where(cum_azure >= deal.azure_credits,
                       jnp.minimum(state.credit_month, t), state.credit_month)
    cash = state.openai_cash + (profit - profit_share)

    new = state._replace(
        cum_revenue_share=cum_m, cum_profit_share=q_new, loss_pool=pool,
        repayment_month=repayment, credit_month=credit,
        cum_azure_spend=cum_azure,
        cum_revenue=state.cum_revenue + revenue.astype(ACC),
        cum_profit=state.cum_profit + profit,
        openai_cash=cash, min_openai_cash=jnp.minimum(state.min_openai_cash, cash),
    )
    flows = Flows(azure, a * inference, revenue, rev_share, inference, compute, profit,
                  profit_share)
    return new, flows


def advance(theta: dict, state: State, eps, t) -> State:
    """Drivers from month t to t+1 with the correlated shocks ``eps`` (tuple of 5 arrays)."""
    dt, sqdt = DT, DT ** 0.5
    e_price, e_util, e_tokens, e_users, e_conv = eps
    token_growth = _rate(theta, "token_growth", state)
    return state._replace(
        log_price=state.log_price + _rate(theta, "gpu_price_drift", state) * dt
        + theta["gpu_price_vol"] * sqdt * e_price,
        logit_utilization=state.logit_utilization + theta["utilization_speed"]
        * (theta["_logit_utilization_mean"] - state.logit_utilization) * dt
        + theta["utilization_vol"] * sqdt * e_util,
        log_tokens=state.log_tokens + token_growth * dt + theta["token_vol"] * sqdt * e_tokens,
        log_users=state.log_users + theta["users_growth"]
        * (1.0 - jnp.exp(state.log_users - theta["_log_users_cap"])) * dt
        + theta["users_vol"] * sqdt * e_users,
        logit_conversion=state.logit_conversion + theta["conversion_speed"]
        * (theta["_logit_conversion_mean"] - state.logit_conversion) * dt
        + theta["conversion_vol"] * sqdt * e_conv,
        growth_throughput=state.growth_throughput + _rate(theta, "efficiency_growth", state) * dt,
        growth_training=state.growth_training + _rate(theta, "training_growth", state) * dt,
        growth_api_price=state.growth_api_price + _rate(theta, "api_price_drift", state) * dt,
        growth_other_opex=state.growth_other_opex + _rate(theta, "other_opex_growth", state) * dt,
        decay=tuple(d * theta[f"_decay_step_{name}"]
                    for d, name in zip(state.decay, HALFLIFE_RATES, strict=True)),
    )


def correlate(z, cholesky):
    """eps = L z for a tuple of 5 independent normals; L is a 5x5 (static numpy) factor."""
    out = []
    for k in range(5):
        acc = None
        for j in range(k + 1):
            # a Python float is weakly typed: it keeps the shocks' (kernel) dtype, where a
            # NumPy float64 entry would promote a float32 state to float64
            weight = float(cholesky[k][j])
            if weight == 0.0:
                continue
            term = z[j] if weight == 1.0 else z[j] * weight
            acc = term if acc is None else acc + term
        out.append(acc if acc is not None else jnp.zeros_like(z[0]))
    return tuple(out)
