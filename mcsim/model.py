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

from .layout import HorizonTotals, v3_mechanisms
from .months import MonthGrid
from .parameters import LOGIT_PARAMETERS

if TYPE_CHECKING:  # the model reads a deal config; it does not depend on the config module
    from .config import DealConfig

DT = 1.0 / 12.0
ACC = jnp.float64  # dtype of the reported sums


class Features(NamedTuple):
    """Which version-2 mechanisms a config uses (static: each one adds code to the kernel,
    and a config using none of them traces version 1's kernel exactly).

    ``timeline``: the deal's terms change during the run (or the cap counts from a month
    after the start): term fields are per-month arrays. ``cap_froms``: with a timeline, the
    distinct month indices from which a revenue-share cap counts (each keeps a snapshot of
    cumulative revenue share). ``reverse``: some reverse share > 0. ``markup``,
    ``training_intensity``, ``opex_intensity``: the version-2 forms of the API price,
    training spend and other opex. ``commitment``: an Azure take-or-pay commitment.
    ``margin``: Microsoft's Azure margin is given (``azure_gross_margin``).
    """

    timeline: bool = False
    cap_froms: tuple[int, ...] = ()
    reverse: bool = False
    markup: bool = False
    training_intensity: bool = False
    opex_intensity: bool = False
    commitment: bool = False
    margin: bool = False
    # version 3 (MODEL.md "Version 3 additions"): each adds state and horizon rows
    funding: bool = False    # [funding]: OpenAI's cash, the funding-gap month (E)
    discount: bool = False   # simulation.discount_rate: present values (F)
    equity: bool = False     # microsoft_equity_stake: Microsoft's equity, its position (G)

    @property
    def v3(self) -> frozenset:
        """The version-3 mechanisms in use, as :class:`mcsim.layout.StatLayout` takes them."""
        return frozenset(name for name in ("funding", "discount", "equity")
                         if getattr(self, name))


#: A config that uses no version-2 mechanism.
V1_FEATURES = Features()


def features(config, grid: MonthGrid | None = None) -> Features:
    """The version-2 mechanisms ``config`` uses (cap months as indices of ``grid``, default
    the config's)."""
    deal, params, grid = config.deal, config.parameters, grid or config.grid
    cap_froms = sorted({_cap_from_index(m, grid) for m in deal.term_values(
        "revenue_share_cap_from")})
    timeline = bool(deal.changes) or cap_froms != [0] \
        or deal.revenue_share_paid_before_start > 0
    return Features(
        timeline=timeline, cap_froms=tuple(cap_froms) if timeline else (),
        reverse=max(deal.term_values("reverse_share")) > 0,
        markup="api_markup_0" in params,
        training_intensity="training_intensity_0" in params,
        opex_intensity="other_opex_intensity_0" in params,
        commitment=deal.azure_commitment is not None,
        # without the parameter the margin is 0 (its default): nothing to add or count
        margin="azure_gross_margin" in params,
        **{m: m in v3_mechanisms(config) for m in ("funding", "discount", "equity")})


def _cap_from_index(month: str | None, grid: MonthGrid) -> int:
    """A cap's first counted month as an index, clamped to [0, T] (None or before the start:
    0, where revenue share paid before the start counts too)."""
    if month is None:
        return 0
    return max(0, min(grid.index(month), grid.num_months))


class DealTerms(NamedTuple):
    """The deal as float64 device scalars (traced, so sweeping them never recompiles).

    $ unless said. With :attr:`Features.timeline` the term fields (those a
    ``[[deal.change]]`` may set) are arrays over the months, [T]: the value in force in
    each month."""

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
    # version 2
    reverse_share: jax.Array = 0.0    # fraction of Microsoft's AI revenue paid back
    cap_from: jax.Array = 0           # [T] int32 with a timeline: which cap_froms entry counts
    paid_before_start: jax.Array = 0.0  # revenue share paid before the start, $
    recoup_azure_margin: jax.Array = False  # bool: Microsoft's Azure margin counts
    commitment: jax.Array = 0.0       # Azure take-or-pay amount, $
    commitment_from: jax.Array = 0    # int32 month index
    commitment_by: jax.Array = 0      # int32 month index (may be >= T: never due in the run)
    # version 3: not the deal's, but traced numbers of the run all the same (a sweep over
    # them never recompiles)
    funding_rounds: jax.Array = 0.0   # [T] $ raised in each month (with Features.funding)
    discount_rate: jax.Array = 0.0    # log rate per year (with Features.discount)
    horizon_discount: jax.Array = 1.0  # exp(-rate s_{T-1}): the horizon month's factor
    trailing_from: jax.Array = 0      # int32: first month of the trailing-12-month revenue


def deal_terms(deal: DealConfig, grid: MonthGrid, feats: Features | None = None, *,
               funding=None, discount_rate: float | None = None) -> DealTerms:
    """Device form of a :class:`DealConfig` on ``grid`` (per-month term arrays when
    ``feats.timeline``), with version 3's run terms: ``funding`` (a
    :class:`mcsim.config.FundingConfig`: its rounds by month, with ``feats.funding``) and
    ``discount_rate`` (with ``feats.discount``).

    Every amount and rate is float64 whatever the kernel dtype: in float32 $13B is
    $12,999,999,488 and $38B is $38,000,001,024, which would move the recoup line and let
    a cap be exceeded.
    """
    feats = feats or Features()
    inf = float("inf")
    T = grid.num_months

    def end_index(month):
        end = T if month is None else grid.index(month)
        return max(min(end, T), -1)

    tiny = float(np.finfo(np.float64).tiny)

    # Values are made in NumPy and moved to the device once per term: a device array per
    # month and term cost 0.25 s a config on the CPU.
    def amount(x):
        # a positive subnormal amount (5e-324 is a valid investment) would be flushed to 0
        # by the device (XLA flushes subnormals), making "recouped >= investment" true with
        # nothing paid; the smallest normal number keeps every comparison with money right
        if x is not None and 0.0 < x < tiny:
            x = tiny
        return np.float64(inf if x is None else x)

    def term(name: str, convert):
        """A term's value: a scalar, or with a timeline the value in force each month."""
        if not feats.timeline:
            return jnp.asarray(convert(getattr(deal, name)))
        values = [getattr(deal, name)] * T
        for change in deal.changes:
            if name in dict(change.terms):
                first = grid.index(change.start)
                for t in range(max(first, 0), T):
                    values[t] = change.get(name)
        return jnp.asarray(np.stack([convert(v) for v in values]) if T
                           else convert(values[0]))

    def index(month):
        return np.int32(end_index(month))

    def cap_from(month):
        return np.int32(feats.cap_froms.index(_cap_from_index(month, grid)))

    commit = deal.azure_commitment is not None
    v3 = {}
    if feats.funding:
        rounds = np.zeros(T)
        for month, dollars in funding.rounds:
            # a grid cut short of the config's (the facts' and the pilot's runs stop at
            # their last month) leaves out the rounds after it: they change no month in it
            if grid.index(month) < T:
                rounds[grid.index(month)] += dollars
        v3["funding_rounds"] = jnp.asarray(rounds)
    if feats.discount:
        v3["discount_rate"] = jnp.asarray(np.float64(discount_rate))
        v3["horizon_discount"] = jnp.asarray(np.exp(-np.float64(discount_rate)
                                                    * (max(T - 1, 0) / 12.0)))
    if feats.equity:
        v3["trailing_from"] = jnp.asarray(max(T - 12, 0), jnp.int32)
    return DealTerms(
        investment=jnp.asarray(amount(deal.investment)),
        revenue_share=term("revenue_share", amount),
        revenue_share_end=term("revenue_share_end", index),
        revenue_share_cap=term("revenue_share_cap", amount),
        rate_until_recouped=term("profit_share_until_recouped", amount),
        rate_after=term("profit_share_after", amount),
        profit_cap=term("profit_cap", amount),
        loss_carryforward=jnp.asarray(deal.loss_carryforward),
        recoup_profit_share=jnp.asarray("profit_share" in deal.recoup_from),
        recoup_revenue_share=jnp.asarray("revenue_share" in deal.recoup_from),
        azure_credits=jnp.asarray(amount(deal.azure_credits)),
        losses_before_start=jnp.asarray(amount(deal.losses_before_start)),
        reverse_share=term("reverse_share", amount),
        cap_from=term("revenue_share_cap_from", cap_from) if feats.timeline
        else jnp.asarray(0, jnp.int32),
        paid_before_start=jnp.asarray(amount(deal.revenue_share_paid_before_start)),
        recoup_azure_margin=jnp.asarray("azure_margin" in deal.recoup_from),
        commitment=jnp.asarray(amount(deal.azure_commitment if commit else 0.0)),
        commitment_from=jnp.asarray(grid.index(deal.azure_commitment_from) if commit else 0,
                                    jnp.int32),
        commitment_by=jnp.asarray(min(grid.index(deal.azure_commitment_by), T) if commit
                                  else 0, jnp.int32),
        **v3,
    )


class State(NamedTuple):
    """Per-path state at the start of month t (every field has the batch shape)."""

    log_price: jax.Array              # log $ per GPU-hour
    logit_utilization: jax.Array
    log_tokens: jax.Array             # log tokens per month
    log_users: jax.Array              # log weekly active users
    logit_conversion: jax.Array
    growth_throughput: jax.Array      # cumulative log growth of tokens per GPU-hour
    growth_training: jax.Array        # ... of training spend (or its intensity of revenue)
    growth_api_price: jax.Array       # ... of API revenue per million tokens (or the markup)
    growth_other_opex: jax.Array      # ... of other operating cost (or its intensity)
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
    # version 2 (zeros, T or empty when its mechanism is off)
    growth_ms_ai: jax.Array = 0.0     # cumulative log growth of Microsoft's AI revenue
    cum_margin: jax.Array = 0.0       # float64 $: Microsoft's Azure margin so far
    cum_reverse: jax.Array = 0.0      # float64 $: reverse revenue share so far
    cap_sums: tuple = ()              # float64 $: M paid in the run from each cap_from month on
    cum_commit: jax.Array = 0.0       # float64 $: Azure spend counted toward the commitment
    cap_month: jax.Array = 0          # int32: first month the revenue-share cap is reached
    commit_month: jax.Array = 0       # int32: first month the commitment is met
    # version 3 (zeros or T when its mechanism is off)
    funding_cash: jax.Array = 0.0     # float64 $: K, OpenAI's cash after month t
    min_funding_cash: jax.Array = 0.0  # float64 $: min(cash_0, K so far)
    funding_gap_month: jax.Array = 0  # int32: first month with K < 0
    pv_azure_spend: jax.Array = 0.0   # float64 $: discounted Azure spend so far
    pv_profit: jax.Array = 0.0        # float64 $: discounted profit so far
    pv_economic: jax.Array = 0.0      # float64 $: discounted q + M + Azure margin so far
    trailing_revenue: jax.Array = 0.0  # float64 $: revenue of the last 12 months so far


class Flows(NamedTuple):
    """Money of month t, $ per month (kernel dtype; the waterfall's flows in float64)."""

    azure_spend: jax.Array            # Z + F: Azure spend, commitment shortfall included
    azure_inference_spend: jax.Array  # a I
    revenue: jax.Array                # V
    revenue_share: jax.Array          # M (gross)
    inference_spend: jax.Array        # I
    compute_spend: jax.Array          # X = I + R
    profit: jax.Array                 # P
    profit_share: jax.Array           # q
    training_spend: jax.Array = 0.0   # R
    other_opex: jax.Array = 0.0       # O
    net_revenue_share: jax.Array = 0.0      # M - reverse
    reverse_revenue_share: jax.Array = 0.0  # reverse_share x Microsoft's AI revenue
    azure_commitment_shortfall: jax.Array = 0.0  # F, paid in the commitment's last month
    microsoft_azure_margin: jax.Array = 0.0      # azure_gross_margin x (Z + F)
    paid_to_microsoft: jax.Array = 0.0           # Z + F + net revenue share


class Stocks(NamedTuple):
    """Levels at month t (float64: a token count may pass float32's range while the money
    it brings in does not): what the public facts measure at a date."""

    weekly_active_users: jax.Array
    paying_subscribers: jax.Array
    tokens_per_month: jax.Array
    gpu_price: jax.Array
    azure_share: jax.Array


#: Rates with a half-life: r(s) = r_inf + (r_0 - r_inf) 2^(-s/h) (version 1's; version 2's
#: join them only when their form is used, :func:`halflife_rates`).
HALFLIFE_RATES = ("gpu_price_drift", "efficiency_growth", "training_growth",
                  "api_price_drift", "other_opex_growth", "token_growth", "azure_share")
#: the version-2 form of the rate that each version-1 growth state follows instead
_V2_FORM_RATES = {"training_growth": ("training_intensity", "training_intensity_drift"),
                  "api_price_drift": ("markup", "api_markup_drift"),
                  "other_opex_growth": ("opex_intensity", "other_opex_intensity_drift")}


def halflife_rates(feats: Features | None = None) -> tuple[str, ...]:
    """The rates whose decay factor the state carries, in order: version 1's, with a
    version-2 form's rate in place of the one it replaces, then Microsoft's AI revenue
    growth with a reverse share."""
    feats = feats or Features()
    rates = tuple(_V2_FORM_RATES[r][1] if r in _V2_FORM_RATES
                  and getattr(feats, _V2_FORM_RATES[r][0]) else r for r in HALFLIFE_RATES)
    return rates + (("microsoft_ai_revenue_growth",) if feats.reverse else ())


#: Levels whose logs :func:`prepare` precomputes (``_log_NAME``): a flow is one exp of a
#: sum of logs, so no factor overflows where the product would not.
LOG_LEVELS = ("tokens_per_gpu_hour_0", "training_spend_0", "subscription_arpu",
              "api_revenue_per_mtok_0", "api_token_share", "other_opex_0", "users_cap")
V2_LOG_LEVELS = ("api_markup_0", "training_intensity_0", "other_opex_intensity_0",
                 "microsoft_ai_revenue_0")


def prepare(theta: dict, feats: Features | None = None) -> dict:
    """theta plus per-path constants that every month would otherwise recompute (keys
    starting with ``_``): each half-life's monthly decay factor 2^(-dt/h), the logits of
    the utilization and conversion (start and mean; taken from theta where the draws
    computed them in float64, see :func:`mcsim.draws.to_dtype`), the logs of
    :data:`LOG_LEVELS`. :func:`month_flows` and :func:`advance` need them.

    A half-life of any size works: 2^(-dt/h) is 1 to rounding for a huge h (the rate stays
    at r_0) and 0 for a tiny one (it jumps to r_inf after month 0)."""
    logit = jax.scipy.special.logit
    out = dict(theta)
    for name in halflife_rates(feats):
        out[f"_decay_step_{name}"] = jnp.exp2(-DT / theta[f"{name}_halflife"])
    for name in LOGIT_PARAMETERS:
        if f"_logit_{name}" not in out:
            out[f"_logit_{name}"] = logit(theta[name])
    for name in LOG_LEVELS + V2_LOG_LEVELS:
        if name in theta:
            out[f"_log_{name}"] = jnp.log(theta[name])  # log 0 = -inf: exp(-inf + x) = 0
    if "api_revenue_per_mtok_0" in theta:
        # API revenue per token, in log: share * ($ per million tokens) / 1e6
        out["_log_api_revenue_per_token_0"] = out["_log_api_token_share"] \
            + out["_log_api_revenue_per_mtok_0"] - 6.0 * math.log(10.0)
    return out


def _rate(theta, name: str, state, feats: Features | None = None):
    """r(s) = r_inf + (r_0 - r_inf) 2^(-s/h) of a decaying rate (per year) at the state's
    month. 2^(-s/h) is carried as a running product of 2^(-dt/h) (one multiply a month
    instead of an exp2: the kernel's costliest operations are its transcendentals); in
    float32 the product drifts by at most ~t ulp, 1.2e-5 relative at t = 204 months."""
    r0 = theta[f"{name}_0" if name in ("token_growth", "azure_share") else name]
    rinf = theta[f"{name}_inf"]
    return rinf + (r0 - rinf) * state.decay[halflife_rates(feats).index(name)]


def initial_state(theta: dict, deal: DealTerms, num_months: int,
                  feats: Features | None = None) -> State:
    """Month-0 state: every driver at its ``*_0`` value, nothing paid yet (``theta`` as
    :func:`prepare` returns it: the logit states start at its ``_logit_*`` values)."""
    feats = feats or Features()
    x = theta["gpu_price_0"]
    zero = jnp.zeros_like(x)
    zero_acc = jnp.zeros(x.shape, ACC)
    never = jnp.full(x.shape, num_months, jnp.int32)
    v2 = {}
    if feats.reverse:
        v2.update(growth_ms_ai=zero, cum_reverse=zero_acc)
    if feats.margin:
        v2.update(cum_margin=zero_acc)
    if feats.timeline:
        v2.update(cap_sums=tuple(zero_acc for _ in feats.cap_froms))
    if feats.commitment:
        v2.update(cum_commit=zero_acc)
    if feats.funding:
        cash_0 = _float64(theta, "cash_0")
        v2.update(funding_cash=cash_0, min_funding_cash=cash_0, funding_gap_month=never)
    if feats.discount:
        v2.update(pv_azure_spend=zero_acc, pv_profit=zero_acc, pv_economic=zero_acc)
    if feats.equity:
        v2.update(trailing_revenue=zero_acc)
    return State(
        log_price=jnp.log(theta["gpu_price_0"]),
        logit_utilization=theta["_logit_utilization_0"],
        log_tokens=jnp.log(theta["tokens_0"]),
        log_users=jnp.log(theta["users_0"]),
        logit_conversion=theta["_logit_conversion_0"],
        growth_throughput=zero, growth_training=zero, growth_api_price=zero,
        growth_other_opex=zero,
        cum_revenue_share=zero_acc,
        cum_profit_share=zero_acc,
        loss_pool=zero_acc - deal.losses_before_start,
        repayment_month=never, credit_month=never,
        cum_azure_spend=zero_acc, cum_revenue=zero_acc, cum_profit=zero_acc,
        openai_cash=zero_acc, min_openai_cash=zero_acc,
        decay=tuple(jnp.ones_like(x) for _ in halflife_rates(feats)),
        cap_month=never, commit_month=never,
        **v2,
    )


def _float64(theta: dict, name: str):
    """A version-3 parameter as drawn, in float64 (its float64 copy where the draws made
    one, :data:`mcsim.parameters.FLOAT64_PARAMETERS`)."""
    return theta.get(f"_f64_{name}", theta[name]).astype(ACC)


def _at(term, t, feats: Features):
    """A deal term's value in month t (a scalar, or its per-month array's entry)."""
    return term[t] if feats.timeline else term


class StockDrivers(NamedTuple):
    """What the levels of month t are computed from (kernel dtype): the state's drivers,
    which a month loop can keep for a later month at the cost of five copies, where the
    levels themselves cost four float64 exponentials (:func:`stocks_of`)."""

    log_users: jax.Array
    logit_conversion: jax.Array
    log_tokens: jax.Array
    log_price: jax.Array
    azure_share: jax.Array


def stock_drivers(state: State, theta: dict, feats: Features | None = None) -> StockDrivers:
    """The drivers of month t's levels (see :func:`stocks_of`)."""
    return StockDrivers(state.log_users, state.logit_conversion, state.log_tokens,
                        state.log_price, _rate(theta, "azure_share", state, feats))


def stocks_of(drivers: StockDrivers) -> Stocks:
    """The levels from their drivers, in float64."""
    def exp64(x):
        return jnp.exp(x.astype(ACC))

    return Stocks(exp64(drivers.log_users),
                  exp64(drivers.log_users + jax.nn.log_sigmoid(drivers.logit_conversion)),
                  exp64(drivers.log_tokens), exp64(drivers.log_price),
                  drivers.azure_share.astype(ACC))


def stocks(state: State, theta: dict, feats: Features | None = None) -> Stocks:
    """The levels of month t from the state, in float64."""
    return stocks_of(stock_drivers(state, theta, feats))


class OperatingFlows(NamedTuple):
    """A month's money before the deal: kernel dtype, $ per month (``azure_share`` a
    fraction)."""

    azure_share: jax.Array  # a
    inference: jax.Array    # I
    revenue: jax.Array      # V = S + A
    training: jax.Array     # R
    compute: jax.Array      # X = I + R
    azure: jax.Array        # Z = a X
    other: jax.Array        # O


def operating_flows(theta: dict, state: State, feats: Features | None = None) -> OperatingFlows:
    """Revenue and costs of month t from the state (MODEL.md D, before the deal)."""
    feats = feats or Features()
    # Every flow is one exp of a sum of logs (the logs of its constant factors come from
    # prepare): tokens reach e^91 in a long run, beyond float32's 3.4e38, while the money
    # they bring in does not, so no factor may be formed on its own. Only a money flow
    # above float32's range itself still overflows.
    a = _rate(theta, "azure_share", state, feats)
    u = jax.nn.sigmoid(state.logit_utilization)
    # I = D / eta / u * p with eta = eta_0 exp(G); dividing by u <= 1 last keeps the
    # exp below I itself
    log_cost = state.log_tokens - state.growth_throughput + state.log_price \
        - theta["_log_tokens_per_gpu_hour_0"]
    inference = jnp.exp(log_cost) / u
    # S = W c arpu, with log c = log sigmoid(z) (c may be tiny: W arpu alone may overflow)
    subscriptions = jnp.exp(state.log_users + jax.nn.log_sigmoid(state.logit_conversion)
                            + theta["_log_subscription_arpu"])
    if feats.markup:
        # pi = markup 1e6 p / (eta u): A = share D pi / 1e6 = share markup I
        api = jnp.exp(log_cost + theta["_log_api_token_share"] + theta["_log_api_markup_0"]
                      + state.growth_api_price) / u
    else:
        # A = share D pi_0 exp(G_pi) / 1e6
        api = jnp.exp(state.log_tokens + state.growth_api_price
                      + theta["_log_api_revenue_per_token_0"])
    revenue = subscriptions + api
    if feats.training_intensity:
        training = jnp.exp(theta["_log_training_intensity_0"] + state.growth_training) \
            * revenue
    else:
        training = jnp.exp(theta["_log_training_spend_0"] + state.growth_training)
    compute = inference + training
    azure = a * compute
    if feats.opex_intensity:
        other = jnp.exp(theta["_log_other_opex_intensity_0"] + state.growth_other_opex) \
            * revenue
    else:
        other = jnp.exp(theta["_log_other_opex_0"] + state.growth_other_opex)
    return OperatingFlows(a, inference, revenue, training, compute, azure, other)


def month_flows(theta: dict, deal: DealTerms, state: State, t,
                feats: Features | None = None) -> tuple[State, Flows]:
    """Money flows of month t (int32 scalar) and the waterfall's update of the state, in
    MODEL.md's order (version 2, D): revenue, then the costs (:func:`operating_flows`),
    the commitment shortfall, the revenue share with its cap, the reverse share, profit,
    the waterfall, the sums."""
    feats = feats or Features()
    a, inference, revenue, training, compute, azure, other = operating_flows(theta, state,
                                                                            feats)

    # The waterfall runs on float64 sums: the loss pool and the cumulative shares reach
    # 10^12 while a month's profit may be 10^6, which float32 (24-bit) cannot resolve.
    revenue64 = revenue.astype(ACC)
    profit_before_share = (revenue - compute - other).astype(ACC)
    v2 = {}

    # Azure take-or-pay: spend of months from..by counts; a shortfall is paid at `by`
    shortfall = None
    if feats.commitment:
        azure64 = azure.astype(ACC)
        inside = (t >= deal.commitment_from) & (t <= deal.commitment_by)
        counted = state.cum_commit + jnp.where(inside, azure64, 0.0)
        shortfall = jnp.where(t == deal.commitment_by,
                              jnp.maximum(deal.commitment - counted, 0.0), 0.0)
        met = inside & (counted >= deal.commitment)
        v2.update(cum_commit=counted,
                  commit_month=jnp.where(met, jnp.minimum(state.commit_month, t),
                                         state.commit_month))
        profit_before_share = profit_before_share - shortfall

    # revenue share: paid through revenue_share_end; the month reaching the cap pays the rest
    share, end = _at(deal.revenue_share, t, feats), _at(deal.revenue_share_end, t, feats)
    cap = _at(deal.revenue_share_cap, t, feats)
    owed = jnp.where(t <= end, share * revenue64, 0.0)
    if feats.timeline:
        # the cap counts revenue share paid from its cap_from month on, kept as a running
        # sum of its own per cap_from month: a snapshot subtracted from the whole sum would
        # cancel, and lose a month's payment against a large total (issue 26)
        which = _at(deal.cap_from, t, feats)
        paid_since, counts_from = state.cap_sums[0], feats.cap_froms[0]
        for k in range(1, len(feats.cap_froms)):
            paid_since = jnp.where(which == k, state.cap_sums[k], paid_since)
            counts_from = jnp.where(which == k, feats.cap_froms[k], counts_from)
        # a cap counted from the start also counts what was paid before it
        before = jnp.where(counts_from == 0, deal.paid_before_start, 0.0)
        # before its cap_from month a cap neither counts nor limits the revenue share
        room = jnp.where(t >= counts_from, (cap - before) - paid_since, jnp.inf)
    else:
        room = cap - state.cum_revenue_share
    hits_cap = owed >= room
    rev_share = jnp.where(hits_cap, room, owed)
    v2.update(cap_month=jnp.where(hits_cap & (cap < jnp.inf),
                                  jnp.minimum(state.cap_month, t), state.cap_month))
    if feats.timeline:
        rev_share = jnp.maximum(rev_share, 0.0)  # a cap lowered below what was paid
        cum_m = state.cum_revenue_share + rev_share
        v2.update(cap_sums=tuple(s + jnp.where(t >= c, rev_share, 0.0) if c > 0 else cum_m
                                 for c, s in zip(feats.cap_froms, state.cap_sums,
                                                 strict=True)))
    else:
        cum_m = jnp.where(hits_cap, deal.revenue_share_cap,
                          state.cum_revenue_share + owed)
    profit = profit_before_share - rev_share
    reverse = None
    if feats.reverse:
        ms_ai = jnp.exp(theta["_log_microsoft_ai_revenue_0"] + state.growth_ms_ai)
        reverse = _at(deal.reverse_share, t, feats) * ms_ai.astype(ACC)
        profit = profit + reverse
        v2.update(cum_reverse=state.cum_reverse + reverse)

    # distributable profit d: losses carried forward must be filled first
    pool = state.loss_pool + profit
    d_carry = jnp.maximum(pool, 0.0)
    d = jnp.where(deal.loss_carryforward, d_carry, jnp.maximum(profit, 0.0))
    pool = jnp.where(deal.loss_carryforward, jnp.minimum(pool, 0.0), state.loss_pool)

    # profit share: rate_until_recouped up to the investment line, split exactly at it
    investment = deal.investment
    q_prev = state.cum_profit_share
    to_line = jnp.maximum(investment - q_prev, 0.0)
    r1, r2 = _at(deal.rate_until_recouped, t, feats), _at(deal.rate_after, t, feats)
    # Past the line the rate is r2 whatever r1 is: `r1 * d > to_line` alone would leave a
    # path with r1 = 0 and Q already at the line paying nothing (MODEL.md: r2 applies once
    # Q reaches the investment).
    past_line = q_prev >= investment
    crosses = past_line | (r1 * d > to_line)
    reaches = crosses & ~past_line  # implies r1 > 0
    d_at_r1 = jnp.where(reaches, to_line / jnp.where(reaches, r1, 1.0),
                        jnp.where(past_line, 0.0, d))
    q_new = jnp.where(crosses, jnp.maximum(q_prev, investment) + r2 * (d - d_at_r1),
                      q_prev + r1 * d)
    q_new = jnp.minimum(q_new, _at(deal.profit_cap, t, feats))  # split first, then cap
    if feats.timeline:
        q_new = jnp.maximum(q_new, q_prev)  # a cap lowered below Q pays nothing, takes nothing
    profit_share = q_new - q_prev

    azure_paid = azure.astype(ACC) if shortfall is None else azure.astype(ACC) + shortfall
    margin = None
    if feats.margin:
        margin = theta["azure_gross_margin"].astype(ACC) * azure_paid
        v2.update(cum_margin=state.cum_margin + margin)
    # revenue share paid before the start counts toward the investment but is no receipt
    # of the run: added here, never into the running sum
    recouped_m = cum_m + deal.paid_before_start if feats.timeline else cum_m
    recouped = jnp.where(deal.recoup_profit_share, q_new, 0.0) \
        + jnp.where(deal.recoup_revenue_share, recouped_m, 0.0)
    if feats.margin:
        recouped = recouped + jnp.where(deal.recoup_azure_margin, v2["cum_margin"], 0.0)
    repaid_now = recouped >= investment
    repayment = jnp.where(repaid_now, jnp.minimum(state.repayment_month, t),
                          state.repayment_month)

    cum_azure = state.cum_azure_spend + azure_paid
    credit = jnp.where(cum_azure >= deal.azure_credits,
                       jnp.minimum(state.credit_month, t), state.credit_month)
    cash = state.openai_cash + (profit - profit_share)

    # version 3, after every running sum (MODEL.md H)
    if feats.funding:
        # K_t = K_{t-1} + (P_t - q_t) + round_t; the gap month is the first with K_t < 0
        funding_cash = state.funding_cash + (profit - profit_share) \
            + deal.funding_rounds[t]
        v2.update(funding_cash=funding_cash,
                  min_funding_cash=jnp.minimum(state.min_funding_cash, funding_cash),
                  funding_gap_month=jnp.where(funding_cash < 0.0,
                                              jnp.minimum(state.funding_gap_month, t),
                                              state.funding_gap_month))
    if feats.discount:
        # month t's factor exp(-rate s_t), s_t = t / 12 years since the start: one scalar
        # a month for every path (the rate is a fixed number of the run)
        factor = jnp.exp(-deal.discount_rate * (t.astype(ACC) * DT))
        to_microsoft = profit_share + rev_share
        if margin is not None:
            to_microsoft = to_microsoft + margin
        v2.update(pv_azure_spend=state.pv_azure_spend + factor * azure_paid,
                  pv_profit=state.pv_profit + factor * profit,
                  pv_economic=state.pv_economic + factor * to_microsoft)
    if feats.equity:
        v2.update(trailing_revenue=state.trailing_revenue
                  + jnp.where(t >= deal.trailing_from, revenue64, 0.0))

    new = state._replace(
        cum_revenue_share=cum_m, cum_profit_share=q_new, loss_pool=pool,
        repayment_month=repayment, credit_month=credit,
        cum_azure_spend=cum_azure,
        cum_revenue=state.cum_revenue + revenue.astype(ACC),
        cum_profit=state.cum_profit + profit,
        openai_cash=cash, min_openai_cash=jnp.minimum(state.min_openai_cash, cash),
        **v2,
    )
    zero = jnp.zeros_like(rev_share)
    net_share = rev_share if reverse is None else rev_share - reverse
    # the flow in the kernel dtype, as every other; the sums above took it in float64
    azure_out = azure if shortfall is None else azure + shortfall.astype(azure.dtype)
    flows = Flows(azure_spend=azure_out, azure_inference_spend=a * inference,
                  revenue=revenue, revenue_share=rev_share, inference_spend=inference,
                  compute_spend=compute, profit=profit, profit_share=profit_share,
                  training_spend=training, other_opex=other, net_revenue_share=net_share,
                  reverse_revenue_share=zero if reverse is None else reverse,
                  azure_commitment_shortfall=zero if shortfall is None else shortfall,
                  microsoft_azure_margin=zero if margin is None else margin,
                  paid_to_microsoft=azure_paid + net_share)
    return new, flows


def running_sums_finite(state: State) -> jax.Array:
    """bool [n]: every running sum of the path is finite. Every flow feeds one of these
    sums and a NaN or inf never leaves a sum, so the first month this is false is the
    month of the path's first bad flow (both month loops use it)."""
    total = state.cum_azure_spend + state.cum_revenue + state.cum_profit \
        + state.openai_cash + state.cum_profit_share
    return jnp.isfinite(total)


def horizon_totals(final: State, deal: DealTerms, feats: Features | None = None
                   ) -> HorizonTotals:
    """The per-path totals at the horizon from the last month's state, $ (float64)."""
    feats = feats or Features()
    # revenue share paid before the start is no receipt of the run: never in the sum
    receipts = final.cum_profit_share + final.cum_revenue_share
    # MODEL.md: profit share + (gross) revenue share + Azure margin
    economic = receipts + final.cum_margin if feats.margin else receipts
    return HorizonTotals(
        cumulative_revenue=final.cum_revenue, cumulative_profit=final.cum_profit,
        microsoft_receipts=receipts, microsoft_net=receipts - deal.investment,
        deepest_cumulative_loss=-final.min_openai_cash,
        microsoft_economic_return=economic,
        microsoft_economic_net=economic - deal.investment)


def v3_horizon_totals(final: State, deal: DealTerms, theta: dict, feats: Features,
                      economic_return) -> dict:
    """Version 3's per-path totals at the horizon, $ (float64), by name
    (:func:`mcsim.layout.v3_totals` gives the rows that take them): ``economic_return``
    is :func:`horizon_totals`' Microsoft's economic return, ``theta`` the drawn
    parameters (Microsoft's stake and the valuation multiple)."""
    out = {}
    if feats.funding:
        # min_t K_t (the minimum starts at cash_0 >= 0, which never changes the max)
        out["funding_to_find"] = jnp.maximum(0.0, -final.min_funding_cash)
    if feats.discount:
        out.update(pv_cumulative_azure_spend=final.pv_azure_spend,
                   pv_cumulative_profit=final.pv_profit,
                   pv_microsoft_economic_return=final.pv_economic,
                   # the investment was paid before the start: not discounted
                   pv_microsoft_economic_net=final.pv_economic - deal.investment)
    if feats.equity:
        equity = _float64(theta, "microsoft_equity_stake") \
            * _float64(theta, "valuation_multiple") * final.trailing_revenue
        out.update(microsoft_equity_value=equity,
                   microsoft_whole_position=economic_return + equity)
        if feats.discount:
            pv_equity = deal.horizon_discount * equity
            out.update(pv_microsoft_equity_value=pv_equity,
                       pv_microsoft_whole_position=final.pv_economic + pv_equity)
    return out


def advance(theta: dict, state: State, eps, t, feats: Features | None = None) -> State:
    """Drivers from month t to t+1 with the correlated shocks ``eps`` (tuple of 5 arrays)."""
    feats = feats or Features()
    dt, sqdt = DT, DT ** 0.5
    e_price, e_util, e_tokens, e_users, e_conv = eps
    rates = halflife_rates(feats)

    def rate(name):
        return _rate(theta, name, state, feats)

    token_growth = rate("token_growth")
    v2 = {}
    if feats.reverse:
        v2["growth_ms_ai"] = state.growth_ms_ai + rate("microsoft_ai_revenue_growth") * dt
    return state._replace(
        log_price=state.log_price + rate("gpu_price_drift") * dt
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
        growth_throughput=state.growth_throughput + rate("efficiency_growth") * dt,
        growth_training=state.growth_training + rate(rates[2]) * dt,
        growth_api_price=state.growth_api_price + rate(rates[3]) * dt,
        growth_other_opex=state.growth_other_opex + rate(rates[4]) * dt,
        decay=tuple(d * theta[f"_decay_step_{name}"]
                    for d, name in zip(state.decay, rates, strict=True)),
        **v2,
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
