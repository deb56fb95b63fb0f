"""The fair NumPy baseline of ``benchmarks/bench.py``: the whole model in plain NumPy float64,
written for speed by a competent researcher.

:mod:`mcsim.reference` is the test oracle, written to be read line by line against MODEL.md:
it keeps every flow of every month ([T, N] arrays for ~40 quantities) and is slow on
purpose, so an engine that beats it by 10x says little. This module is what one would write
to get numbers fast in NumPy alone:

- vectorised over paths, a Python loop over months only (no Python loop over paths);
- one preallocated [n] array per state and per flow, updated in place (``np.exp(x, out=x)``,
  ``+=``); per-path constants (logs of levels, logits, the rates' ``r_inf dt`` and
  ``(r_0 - r_inf) dt``, mean-reversion factors, volatilities times sqrt(dt)) computed once
  before the month loop; deterministic levels carried in log; a rate's half-life decay
  ``2^(-s/h)`` is a Python scalar when ``h`` is the same on every path, else a running
  product per path; volatilities that are the same on every path are folded into the rows
  of the shock correlation's Cholesky factor, applied to each month's [n, 5] normals row
  by row (a diagonal factor: one multiplication);
- first-passage months counted (``count += not_yet``), not stored with masked writes;
- the reported per-path statistics only: cumulative Azure spend at every month [T, n], each
  annual flow summed into its calendar year's row as the months go [Y, n], the stocks at
  each year end [Y, n], the first-passage months and the horizon totals [n];
- statistics at the end: ``np.sort`` for the quantiles (``np.quantile``'s default
  interpolation), ``np.mean``, the sample standard deviation, and ``np.bincount`` for the
  months' distributions.

It implements version 1 and the version 2 additions (MODEL.md): the deal's timeline from
``[[deal.change]]`` (expanded with :func:`mcsim.reference.terms_by_month`, config expansion
only), the revenue-share end and cap with ``cap_from`` snapshots and revenue share paid
before the start, the reverse share, the markup and intensity forms, the Azure commitment
with its shortfall, Microsoft's Azure margin, loss carry-forward, the profit share split at
the investment line and capped, and every ``recoup_from``; and the version 3 additions,
each only when its keys are given: OpenAI's cash with its funding rounds (a year-end stock,
the funding-gap month, the funding still to be found), present values at
``simulation.discount_rate`` (running sums of the flows times a per-month scalar factor),
and Microsoft's equity value and whole position (the revenue of the run's last 12 months
summed as the months go). It does not import
:mod:`mcsim.model`, :mod:`mcsim.engine` or JAX itself (importing any ``mcsim`` submodule runs
``mcsim/__init__``, which imports JAX; nothing here calls it).

**Random numbers.** The shocks are NumPy's own generator, ``np.random.default_rng(seed)``
(PCG64, ziggurat normals), ``standard_normal((n, 5))`` per month: a researcher's natural
choice, not the engine's counter-based Threefry normals. So: the same model, different
random numbers. It is checked path by path against :func:`mcsim.reference.simulate_reference`
fed the SAME theta and the SAME normals (``tests/test_numpy_baseline.py``); its statistics
agree with the engine's in distribution only (within Monte Carlo error). The per-path
parameters are the engine's (:class:`mcsim.draws.ParameterSampler`, keyed by the seed),
drawn once per path before the month loop.

Units: dollars per month for flows (dollars per calendar year for annual sums), tokens per
month, users, $ per GPU-hour; months as indices t = 0..T-1 of the config's grid (T when
censored).

    python benchmarks/numpy_baseline.py --config configs/base.toml --paths 200000 --seed 1
"""

from __future__ import annotations

import time

_T0_WALL = time.perf_counter()  # the whole process, imports included
_T0_CPU = time.process_time()

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

_T_NUMPY = time.perf_counter()
from mcsim.config import Config, load_config  # noqa: E402
from mcsim.draws import ParameterSampler  # noqa: E402
from mcsim.layout import ALL_HORIZON_TOTALS, ALL_STOCKS, ANNUAL_FLOWS, STOCKS  # noqa: E402
from mcsim.months import MonthGrid  # noqa: E402
from mcsim.reference import terms_by_month  # noqa: E402

_T_IMPORTS = time.perf_counter()

DT = 1.0 / 12.0
SQDT = np.sqrt(DT)
#: quantile levels reported for every per-path statistic
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
#: first-passage months reported (month index; T when censored)
EVENT_MONTHS = ("repayment_month", "credit_exhaustion_month", "cap_reached_month",
                "commitment_met_month")
#: version 3's first-passage month (with [funding]): the first month OpenAI's cash is < 0
FUNDING_GAP_MONTH = "funding_gap_month"
#: shock order of the five monthly normals
SHOCKS = ("price", "utilization", "tokens", "users", "conversion")

Shocks = Callable[[int], np.ndarray] | np.ndarray


class _Drift:
    """The per-month log increment ``r(s) dt`` of a decaying rate
    ``r(s) = r_inf + (r_0 - r_inf) 2^(-s/h)`` (per year), as ``a + b f(s)`` with per-path
    ``a = r_inf dt``, ``b = (r_0 - r_inf) dt`` and ``f(s) = 2^(-s/h)``: a Python scalar
    when ``h`` is the same on every path, else a running product per path."""

    def __init__(self, r0: np.ndarray, r_inf: np.ndarray, halflife: np.ndarray) -> None:
        self.a = r_inf * DT
        self.a_zero = not np.any(self.a)
        self.b = (r0 - r_inf) * DT
        self.constant = not np.any(self.b)
        self.h: float | None = None
        self.f = self.g = None
        if not self.constant:
            if np.all(halflife == halflife[0]):
                self.h = float(halflife[0])
            else:
                self.f = np.ones_like(r0)               # 2^(-s/h) at s = 0
                self.g = 2.0 ** (-DT / halflife)        # one month's decay factor

    def advance(self, x: np.ndarray, t_prev: int, tmp: np.ndarray) -> None:
        """``x += r(s_{t_prev}) dt`` in place (``tmp``: scratch [n])."""
        if not self.a_zero:
            x += self.a
        if self.constant:
            return
        if self.h is not None:
            np.multiply(self.b, 2.0 ** (-(t_prev * DT) / self.h), out=tmp)
        else:
            np.multiply(self.b, self.f, out=tmp)
            self.f *= self.g
        x += tmp


def _drift(th: dict[str, np.ndarray], name: str) -> _Drift:
    inf, h = th.get(f"{name}_inf"), th.get(f"{name}_halflife")
    if inf is None:  # no companions: a constant rate
        inf, h = th[name], np.ones_like(th[name])
    return _Drift(th[name], inf, h)


def _log(x: np.ndarray) -> np.ndarray:
    """log of a level that may be 0 (it stays 0: log -inf)."""
    with np.errstate(divide="ignore"):
        return np.log(x)


def _logit(x: np.ndarray) -> np.ndarray:
    return np.log(x) - np.log1p(-x)


def _shock_source(shocks: Shocks) -> Callable[[int], np.ndarray]:
    """``shocks(t)``: the [n, 5] normals of the step from month t to t + 1."""
    if callable(shocks):
        return shocks
    arr = np.asarray(shocks, dtype=np.float64)  # [T, n, 5], row t drives the step into t
    return lambda t: arr[t + 1]


def simulate(theta: dict[str, np.ndarray], config: Config,
             shocks: Shocks) -> dict[str, np.ndarray]:
    """Run the model (MODEL.md, version 1 and 2) for n paths, keeping the reported per-path
    statistics only.

    Args:
        theta: parameter name -> float64 [n] (as from
            :meth:`mcsim.draws.ParameterSampler.draw`): every parameter the config gives,
            with companions of decaying rates (absent companions: a constant rate).
        config: the config (its ``deal``, ``grid`` and ``shock_correlation`` are used).
        shocks: independent standard normals, shock order price, utilization, tokens,
            users, conversion: either a callable ``shocks(t) -> [n, 5]`` for the step from
            month t to t + 1 (t = 0..T-2; the array may be reused by the next call), or an
            array [T, n, 5] laid out as :func:`mcsim.reference.simulate_reference`'s
            ``normals`` (row t drives the step into month t; row 0 unused).

    Returns:
        ``cumulative_azure_spend`` float64 [T, n] ($, running sum of Z + F through each
        month); each name of :data:`mcsim.layout.ANNUAL_FLOWS` float64 [Y, n] ($ per
        calendar year, partial first and last years as partial sums); each name of
        :data:`mcsim.layout.STOCKS` float64 [Y, n] (at each year's last month), and
        ``cash`` likewise with ``[funding]`` ($, signed); int64 [n] month indices
        ``repayment_month``, ``credit_exhaustion_month``, ``cap_reached_month``,
        ``commitment_met_month``, and ``funding_gap_month`` with ``[funding]`` (T when
        censored); float64 [n] horizon totals ($) of :data:`mcsim.layout.HORIZON_TOTALS`,
        then version 3's of the mechanisms in use (:func:`mcsim.layout.v3_totals`' names).
    """
    deal, grid = config.deal, config.grid
    T = grid.num_months
    th = {k: np.asarray(v, dtype=np.float64) for k, v in theta.items()
          if not k.startswith("_")}
    n = th["gpu_price_0"].shape[0]
    shock = _shock_source(shocks)
    year_of = grid.year_of_month()
    Y = len(grid.years)
    year_end = np.zeros(T, dtype=bool)
    year_end[[np.flatnonzero(year_of == y)[-1] for y in range(Y)]] = True
    f8 = np.float64

    # ---- the deal's timeline: each term's value in month t (Python scalars) ----------------
    terms = terms_by_month(deal, grid)
    rs_on = [rs if (e is None or t <= grid.index(e)) else 0.0
             for t, (rs, e) in enumerate(zip(terms["revenue_share"],
                                             terms["revenue_share_end"], strict=True))]
    rs_cap = [np.inf if c is None else float(c) for c in terms["revenue_share_cap"]]
    cap_from = [0 if m is None else max(grid.index(m), 0)
                for m in terms["revenue_share_cap_from"]]
    profit_cap = [np.inf if c is None else float(c) for c in terms["profit_cap"]]
    r1s = [float(r) for r in terms["profit_share_until_recouped"]]
    r2s = [float(r) for r in terms["profit_share_after"]]
    reverse_share = [float(r) for r in terms["reverse_share"]]
    # cumulative revenue share at the start of the months some cap counts from
    snap_months = {k for k in cap_from if 0 < k < T}
    snaps: dict[int, np.ndarray] = {}
    credits = None if deal.azure_credits is None else float(deal.azure_credits)
    commitment = None if deal.azure_commitment is None else float(deal.azure_commitment)
    commit_from = commit_by = -1
    if commitment is not None:
        commit_from = grid.index(deal.azure_commitment_from)
        commit_by = grid.index(deal.azure_commitment_by)
    investment = float(deal.investment)
    recoup = deal.recoup_from
    carry = deal.loss_carryforward
    # version 3 (each only with its keys): rounds by month, discount factors, the first
    # month of the trailing 12 months
    funding = getattr(config, "funding", None)
    rounds = [0.0] * T
    if funding is not None:
        for month, dollars in funding.rounds:
            rounds[grid.index(month)] += float(dollars)
    discount_rate = getattr(config.simulation, "discount_rate", None)
    factors = None if discount_rate is None else \
        np.exp(-float(discount_rate) * np.arange(T) * DT).tolist()
    equity = "microsoft_equity_stake" in th
    trailing_from = max(T - 12, 0)

    # ---- per-path constants ---------------------------------------------------------------
    markup_form = "api_markup_0" in th
    training_intensity_form = "training_intensity_0" in th
    opex_intensity_form = "other_opex_intensity_0" in th
    has_reverse = "microsoft_ai_revenue_0" in th and any(r != 0.0 for r in reverse_share)
    margin_rate = th.get("azure_gross_margin")
    if margin_rate is not None and not np.any(margin_rate):
        margin_rate = None

    drift_p = _drift(th, "gpu_price_drift")
    drift_D = _Drift(th["token_growth_0"], th["token_growth_inf"], th["token_growth_halflife"])
    drift_eta = _drift(th, "efficiency_growth")
    drift_R = _drift(th, "training_intensity_drift" if training_intensity_form
                     else "training_growth")
    drift_pi = _drift(th, "api_markup_drift" if markup_form else "api_price_drift")
    drift_O = _drift(th, "other_opex_intensity_drift" if opex_intensity_form
                     else "other_opex_growth")
    drift_ms = _drift(th, "microsoft_ai_revenue_growth") if has_reverse else None

    # mean reversion of the logit states: y <- y (1 - k dt) + k dt logit(mean)
    k_y = th["utilization_speed"] * DT
    y_keep, y_pull = 1.0 - k_y, k_y * _logit(th["utilization_mean"])
    k_z = th["conversion_speed"] * DT
    z_keep, z_pull = 1.0 - k_z, k_z * _logit(th["conversion_mean"])
    # users' logistic growth: log W += g dt - (g dt / cap) W
    w_grow = th["users_growth"] * DT
    w_damp = w_grow / th["users_cap"]
    arpu = th["subscription_arpu"]
    # shock loadings: vol sqrt(dt) of each shock, folded into the Cholesky rows where the
    # same on every path
    chol = np.linalg.cholesky(np.asarray(config.shock_correlation, dtype=f8))
    vols = [th[name] * SQDT for name in ("gpu_price_vol", "utilization_vol", "token_vol",
                                         "users_vol", "conversion_vol")]
    per_path_vol: list[np.ndarray | None] = []
    loading = chol.copy()
    for k, v in enumerate(vols):
        if np.all(v == v[0]):
            loading[k] *= v[0]
            per_path_vol.append(None)
        else:
            per_path_vol.append(v)
    diagonal_loading = np.array_equal(loading, np.diag(np.diag(loading)))
    loading_diag = np.diag(loading)[:, None].copy()
    a_inf = th["azure_share_inf"]
    a_gap = th["azure_share_0"] - a_inf
    a_decay = 2.0 ** (-DT / th["azure_share_halflife"])

    # ---- states at t = 0 ------------------------------------------------------------------
    log_p = np.log(th["gpu_price_0"])
    y = _logit(th["utilization_0"])
    log_D = np.log(th["tokens_0"])
    log_W = np.log(th["users_0"])
    z = _logit(th["conversion_0"])
    log_eta = np.log(th["tokens_per_gpu_hour_0"])
    # training: log R or log(intensity); API: log(share pi / 1e6) or log(share markup);
    # other opex: log O or log(intensity)
    log_R = _log(th["training_intensity_0"] if training_intensity_form
                 else th["training_spend_0"])
    if markup_form:
        log_pi = _log(th["api_token_share"] * th["api_markup_0"])
    else:
        log_pi = _log(th["api_token_share"] * th["api_revenue_per_mtok_0"] / 1e6)
    log_O = _log(th["other_opex_intensity_0"] if opex_intensity_form else th["other_opex_0"])
    log_ms = np.log(th["microsoft_ai_revenue_0"]) if has_reverse else None
    a_f = np.ones(n)  # 2^(-s_t/h) of the Azure share

    # ---- outputs and running sums ---------------------------------------------------------
    cum_azure = np.empty((T, n))
    annual = {name: np.zeros((Y, n)) for name in ANNUAL_FLOWS}
    stock_names = STOCKS + (("cash",) if funding is not None else ())
    stocks = {name: np.empty((Y, n)) for name in stock_names}
    event_months = EVENT_MONTHS + ((FUNDING_GAP_MONTH,) if funding is not None else ())
    # first-passage months, counted: month = the number of months before the line is first
    # reached (T when never): each month, ``not_yet &= (not reached)``, ``count += not_yet``
    # (a masked store ``month[first] = t`` costs ~20 additions on random masks)
    not_yet = {name: np.ones(n, dtype=bool) for name in event_months}
    months_before = {name: np.zeros(n, dtype=np.int32) for name in event_months}
    cum_M = np.full(n, float(deal.revenue_share_paid_before_start))
    Q = np.zeros(n)
    Q_new = np.empty(n)
    pool = np.full(n, -float(deal.losses_before_start))
    cum_commit = np.zeros(n)
    cum_margin = np.zeros(n)
    cash = np.zeros(n)
    min_cash = np.zeros(n)
    cum_V = np.zeros(n)
    cum_P = np.zeros(n)
    zero_row = np.zeros(n)
    if funding is not None:
        K = np.array(th["cash_0"], dtype=f8)          # OpenAI's cash K, from cash_0
        min_K = np.full(n, np.inf)
    if factors is not None:
        pv_Z, pv_P, pv_econ = np.zeros(n), np.zeros(n), np.zeros(n)
    if equity:
        trailing = np.zeros(n)

    # ---- scratch [n] arrays, reused every month -------------------------------------------
    eps = np.empty((5, n))
    I, W, Wc, S, A, V, R, O, X, Z, aI, M, P, d, q, F, rev, margin, recouped, tmp, tmp2 = \
        (np.empty(n) for _ in range(21))
    a = np.empty(n)
    hit = np.empty(n, dtype=bool)
    hit2 = np.empty(n, dtype=bool)

    for t in range(T):
        y_idx = year_of[t]
        if t >= 1:
            # ---- states: the step from t-1 to t ----
            e = shock(t - 1)
            if diagonal_loading:
                np.multiply(e.T, loading_diag, out=eps)
            else:
                # eps = loading @ e.T, in place from the last row up (a 5 x 5 by 5 x n
                # matmul on the transposed view is ~10x slower than these row operations)
                np.copyto(eps, e.T)
                for k in range(4, -1, -1):
                    if loading[k, k] != 1.0:
                        eps[k] *= loading[k, k]
                    for j in range(k):
                        if loading[k, j] != 0.0:
                            np.multiply(eps[j], loading[k, j], out=tmp)
                            eps[k] += tmp
            for k, v in enumerate(per_path_vol):
                if v is not None:
                    eps[k] *= v
            tp = t - 1
            drift_p.advance(log_p, tp, tmp)
            log_p += eps[0]
            y *= y_keep
            y += y_pull
            y += eps[1]
            drift_D.advance(log_D, tp, tmp)
            log_D += eps[2]
            np.multiply(W, w_damp, out=tmp)           # W of month t-1
            np.subtract(w_grow, tmp, out=tmp)
            log_W += tmp
            log_W += eps[3]
            z *= z_keep
            z += z_pull
            z += eps[4]
            drift_eta.advance(log_eta, tp, tmp)
            drift_R.advance(log_R, tp, tmp)
            drift_pi.advance(log_pi, tp, tmp)
            drift_O.advance(log_O, tp, tmp)
            if drift_ms is not None:
                drift_ms.advance(log_ms, tp, tmp)
            a_f *= a_decay
        np.multiply(a_gap, a_f, out=a)
        a += a_inf

        # ---- money in month t: revenue first, then the costs ----
        # inference I = D / eta / u * p, with 1/u = 1 + exp(-y)
        np.add(log_D, log_p, out=I)
        I -= log_eta
        np.exp(I, out=I)
        np.negative(y, out=tmp)
        np.exp(tmp, out=tmp)
        tmp += 1.0
        I *= tmp
        # subscriptions S = W c arpu, c = 1 / (1 + exp(-z))
        np.exp(log_W, out=W)
        np.negative(z, out=tmp)
        np.exp(tmp, out=tmp)
        tmp += 1.0
        np.divide(W, tmp, out=Wc)
        np.multiply(Wc, arpu, out=S)
        # API revenue: share D pi / 1e6, or share markup I (the markup form)
        if markup_form:
            np.exp(log_pi, out=A)
            A *= I
        else:
            np.add(log_D, log_pi, out=A)
            np.exp(A, out=A)
        np.add(S, A, out=V)
        np.exp(log_R, out=R)
        if training_intensity_form:
            R *= V
        np.exp(log_O, out=O)
        if opex_intensity_form:
            O *= V
        np.add(I, R, out=X)
        np.multiply(a, X, out=Z)
        np.multiply(a, I, out=aI)
        # the Azure commitment: Z of months from..by, the shortfall paid at by
        shortfall = False
        if commitment is not None and commit_from <= t <= commit_by:
            cum_commit += Z
            np.less(cum_commit, commitment, out=hit)
            np.logical_and(not_yet["commitment_met_month"], hit,
                           out=not_yet["commitment_met_month"])
            if t == commit_by:
                np.subtract(commitment, cum_commit, out=F)
                np.maximum(F, 0.0, out=F)
                shortfall = True
        ZF = Z
        if shortfall:
            ZF = np.add(Z, F, out=tmp2)
        # revenue share, capped (the cap counts from cap_from)
        if rs_on[t] != 0.0:
            np.multiply(V, rs_on[t], out=M)
        else:
            M.fill(0.0)
        if t in snap_months:
            snaps[t] = cum_M.copy()
        cap = rs_cap[t]
        if t >= cap_from[t] and cap < np.inf:
            base = snaps[cap_from[t]] if cap_from[t] > 0 else 0.0
            room = np.subtract(cum_M, base, out=d)      # d: scratch until the waterfall
            np.subtract(cap, room, out=room)            # room = cap - (cum_M - base)
            np.less(M, room, out=hit2)
            np.logical_and(not_yet["cap_reached_month"], hit2,
                           out=not_yet["cap_reached_month"])
            np.greater_equal(M, room, out=hit)          # this month reaches the cap
            np.maximum(room, 0.0, out=tmp)
            np.minimum(M, tmp, out=M)                   # pays only the remainder (M >= 0)
            np.greater_equal(room, 0.0, out=hit2)
            hit &= hit2
            cum_M += M
            np.copyto(cum_M, base + cap, where=hit)
        else:
            cum_M += M
        # the reverse share, then profit P = V - X - O - M + reverse - F
        reversed_ = has_reverse and reverse_share[t] != 0.0
        if reversed_:
            np.exp(log_ms, out=rev)
            rev *= reverse_share[t]
        np.subtract(V, X, out=P)
        P -= O
        P -= M
        if reversed_:
            P += rev
        if shortfall:
            P -= F

        # ---- waterfall: distributable d, profit share q (split at the line, capped) ----
        if carry:
            pool += P
            np.maximum(pool, 0.0, out=d)
            np.minimum(pool, 0.0, out=pool)
        else:
            np.maximum(P, 0.0, out=d)
        r1, r2, pcap = r1s[t], r2s[t], profit_cap[t]
        paying = r1 != 0.0 or r2 != 0.0
        if paying:
            np.subtract(investment, Q, out=tmp)        # profit share left at rate r1
            np.maximum(tmp, 0.0, out=tmp)
            np.multiply(d, r1, out=q)
            np.greater(q, tmp, out=hit)                 # crosses the line this month
            np.add(Q, q, out=Q_new)
            if r1 != 0.0 and hit.any():
                # split d exactly at the line: max(Q, inv) + r2 (d - remaining / r1)
                tmp /= r1
                np.subtract(d, tmp, out=tmp)
                tmp *= r2
                np.maximum(Q, investment, out=q)
                tmp += q
                np.copyto(Q_new, tmp, where=hit)
            if r1 == 0.0:
                # past the line the rate is r2 whatever r1 is (Q at the line, r1 = 0)
                np.greater_equal(Q, investment, out=hit)
                if hit.any():
                    np.multiply(d, r2, out=tmp)
                    tmp += Q
                    np.copyto(Q_new, tmp, where=hit)
            if pcap < np.inf:
                np.minimum(Q_new, pcap, out=Q_new)      # split first, then cap
                np.maximum(Q_new, Q, out=Q_new)         # a lowered cap takes nothing back
            np.subtract(Q_new, Q, out=q)
            Q, Q_new = Q_new, Q
        if margin_rate is not None:
            np.multiply(margin_rate, ZF, out=margin)
            cum_margin += margin
        # recouped: recoup_from's running sums, first month >= the investment
        if "profit_share" in recoup:
            np.copyto(recouped, Q)
        else:
            recouped.fill(0.0)
        if "revenue_share" in recoup:
            recouped += cum_M
        if "azure_margin" in recoup and margin_rate is not None:
            recouped += cum_margin
        np.less(recouped, investment, out=hit)
        np.logical_and(not_yet["repayment_month"], hit, out=not_yet["repayment_month"])

        # ---- running sums ----
        cum_row = cum_azure[t]
        np.add(cum_azure[t - 1] if t else zero_row, ZF, out=cum_row)
        if credits is not None:
            np.less(cum_row, credits, out=hit)
            np.logical_and(not_yet["credit_exhaustion_month"], hit,
                           out=not_yet["credit_exhaustion_month"])
        if funding is not None:
            # K_t = K_{t-1} + (P_t - q_t) + round_t; the gap: the first month K_t < 0
            K += P
            if paying:
                K -= q
            if rounds[t]:
                K += rounds[t]
            np.minimum(min_K, K, out=min_K)
            np.less(K, 0.0, out=hit)
            np.logical_not(hit, out=hit)
            np.logical_and(not_yet[FUNDING_GAP_MONTH], hit, out=not_yet[FUNDING_GAP_MONTH])
        for name in event_months:
            np.add(months_before[name], not_yet[name], out=months_before[name],
                   casting="unsafe")
        cash += P
        if paying:
            cash -= q
        if factors is not None:
            # present values: this month's flows times exp(-rate s_t), one scalar
            f = factors[t]
            np.multiply(ZF, f, out=tmp)
            pv_Z += tmp
            np.multiply(P, f, out=tmp)
            pv_P += tmp
            np.multiply(M, f, out=tmp)                  # profit share + revenue share
            pv_econ += tmp                              # + Azure margin, discounted
            if paying:
                np.multiply(q, f, out=tmp)
                pv_econ += tmp
            if margin_rate is not None:
                np.multiply(margin, f, out=tmp)
                pv_econ += tmp
        if equity and t >= trailing_from:
            trailing += V
        np.minimum(min_cash, cash, out=min_cash)
        cum_V += V
        cum_P += P

        # ---- calendar-year sums and year-end stocks ----
        annual["azure_spend"][y_idx] += ZF
        annual["azure_inference_spend"][y_idx] += aI
        annual["revenue"][y_idx] += V
        annual["revenue_share"][y_idx] += M
        annual["inference_spend"][y_idx] += I
        annual["training_spend"][y_idx] += R
        annual["other_opex"][y_idx] += O
        annual["compute_spend"][y_idx] += X
        annual["profit"][y_idx] += P
        paid = annual["paid_to_microsoft"][y_idx]
        paid += ZF
        if reversed_:
            np.subtract(M, rev, out=tmp)                # net revenue share
            annual["net_revenue_share"][y_idx] += tmp
            annual["reverse_revenue_share"][y_idx] += rev
            paid += tmp
        else:
            annual["net_revenue_share"][y_idx] += M
            paid += M
        if shortfall:
            annual["azure_commitment_shortfall"][y_idx] += F
        if margin_rate is not None:
            annual["microsoft_azure_margin"][y_idx] += margin
        if year_end[t]:
            np.copyto(stocks["weekly_active_users"][y_idx], W)
            np.copyto(stocks["paying_subscribers"][y_idx], Wc)
            np.exp(log_D, out=stocks["tokens_per_month"][y_idx])
            np.exp(log_p, out=stocks["gpu_price"][y_idx])
            np.copyto(stocks["azure_share"][y_idx], a)
            if funding is not None:
                np.copyto(stocks["cash"][y_idx], K)

    receipts = Q + cum_M - float(deal.revenue_share_paid_before_start)
    economic = receipts + cum_margin
    out: dict[str, np.ndarray] = {"cumulative_azure_spend": cum_azure, **annual, **stocks}
    out.update(
        **{name: months_before[name].astype(np.int64) for name in event_months},
        cumulative_revenue=cum_V,
        cumulative_profit=cum_P,
        microsoft_receipts=receipts,
        microsoft_net=receipts - investment,
        deepest_cumulative_loss=-np.minimum(0.0, min_cash),
        microsoft_economic_return=economic,
        microsoft_economic_net=economic - investment,
    )
    # version 3's horizon totals
    if funding is not None:
        out["funding_to_find"] = np.maximum(0.0, -min_K)
    if factors is not None:
        out.update(pv_cumulative_azure_spend=pv_Z, pv_cumulative_profit=pv_P,
                   pv_microsoft_economic_return=pv_econ,
                   pv_microsoft_economic_net=pv_econ - investment)
    if equity:
        value = th["microsoft_equity_stake"] * th["valuation_multiple"] * trailing
        out.update(microsoft_equity_value=value, microsoft_whole_position=economic + value)
        if factors is not None:
            pv_value = factors[-1] * value              # discounted from the horizon
            out.update(pv_microsoft_equity_value=pv_value,
                       pv_microsoft_whole_position=pv_econ + pv_value)
    return out


def _describe(x: np.ndarray) -> dict[str, np.ndarray]:
    """Mean, standard error sd/sqrt(n) and the :data:`QUANTILES` of x [..., n] over paths.

    The quantiles are ``np.quantile``'s default (linear interpolation between order
    statistics), read off a sort: NumPy's vectorised sort is ~4x faster here than
    ``np.quantile``'s repeated partitions for five levels. Row by row, in one reused [n]
    buffer: a fresh sorted copy of a [T, n] array costs more in page faults than its sort.
    """
    n = x.shape[-1]
    rows = x.reshape(-1, n)
    positions = []
    for level in QUANTILES:
        h = (n - 1) * level
        lo = int(np.floor(h))
        positions.append((lo, min(lo + 1, n - 1), h - lo))
    quantiles = np.empty((len(QUANTILES), rows.shape[0]))
    mean = rows.mean(axis=-1)
    var = np.empty(rows.shape[0])
    buf = np.empty(n)
    for i, row in enumerate(rows):
        np.copyto(buf, row)
        buf.sort()
        for j, (lo, hi, w) in enumerate(positions):
            quantiles[j, i] = buf[lo] + (buf[hi] - buf[lo]) * w
        buf -= mean[i]                                  # the sample sd, centred in place
        var[i] = np.einsum("i,i->", buf, buf) / (n - 1)
    shape = x.shape[:-1]
    return {"mean": mean.reshape(shape), "se": np.sqrt(var / n).reshape(shape),
            "quantiles": quantiles.reshape((len(QUANTILES), *shape))}


def _month_distribution(months: np.ndarray, T: int) -> dict:
    """Distribution of a first-passage month (index, T when censored): P(by month m) for
    every m, the censored fraction, and the :data:`QUANTILES` as month indices (None: not by
    the horizon)."""
    n = months.shape[0]
    counts = np.bincount(months, minlength=T + 1)
    cdf = np.cumsum(counts[:T]) / n
    quantiles: list[int | None] = []
    for level in QUANTILES:
        m = int(np.searchsorted(cdf, level - 1e-12))    # first m with P(<= m) >= level
        quantiles.append(m if m < T else None)
    return {"cdf": cdf, "censored_fraction": counts[T] / n, "quantiles": quantiles}


def summarize(out: dict[str, np.ndarray], grid: MonthGrid) -> dict:
    """The reported statistics of :func:`simulate`'s per-path outputs (all paths).

    Returns:
        ``quantile_levels``; ``cumulative_azure_spend`` ({``mean``, ``se``: [T],
        ``quantiles``: [5, T]}, $); ``annual`` and ``stocks``: name -> the same with [Y]
        and [5, Y] (annual sums $ per calendar year; stocks in their units); ``horizon``:
        name -> the same as scalars and [5] ($); ``months``: name -> {``cdf`` [T]
        (P(month <= m)), ``censored_fraction``, ``quantiles`` (month index or None: not by
        the horizon), ``labels`` ("YYYY-MM" or None)}; ``paths``, ``months_simulated``,
        ``year_labels``.
    """
    T = grid.num_months
    n = out["repayment_month"].shape[0]
    months = {}
    for name in _event_months(out):
        dist = _month_distribution(out[name], T)
        dist["labels"] = [None if m is None else grid.label(m) for m in dist["quantiles"]]
        months[name] = dist
    return {
        "paths": n,
        "months_simulated": T,
        "quantile_levels": QUANTILES,
        "year_labels": grid.year_labels(),
        "cumulative_azure_spend": _describe(out["cumulative_azure_spend"]),
        "annual": {name: _describe(out[name]) for name in ANNUAL_FLOWS},
        "stocks": {name: _describe(out[name]) for name in ALL_STOCKS if name in out},
        "horizon": {name: _describe(out[name]) for name in ALL_HORIZON_TOTALS
                    if name in out},
        "months": months,
    }


def _event_months(out: dict) -> tuple[str, ...]:
    """The first-passage months of :func:`simulate`'s outputs (version 3's with
    [funding])."""
    return EVENT_MONTHS + tuple(m for m in (FUNDING_GAP_MONTH,) if m in out)


def _concatenate(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Per-path outputs of chunks, joined along the path axis (the last one)."""
    if len(parts) == 1:
        return parts[0]
    return {k: np.concatenate([p[k] for p in parts], axis=-1) for k in parts[0]}


def run_timed(config: Config, paths: int, seed: int,
              chunk: int | None = None) -> tuple[dict, dict[str, float]]:
    """:func:`run`, also returning its timings: ``draw_s`` (parameters), ``simulation_s``
    (the month loops, shocks included), ``gather_s`` (joining the chunks' per-path
    outputs; 0 for one chunk), ``statistics_s`` (:func:`summarize`), wall seconds;
    ``simulation_cpu_s`` and ``statistics_cpu_s``, process CPU seconds."""
    config = config.with_simulation(seed=seed)   # the engine's parameters for this seed
    chunk = paths if chunk is None else max(1, min(int(chunk), paths))
    sampler = ParameterSampler(config)
    rng = np.random.default_rng(seed)
    timings = {"draw_s": 0.0, "simulation_s": 0.0, "simulation_cpu_s": 0.0}
    parts = []
    for start in range(0, paths, chunk):
        m = min(chunk, paths - start)
        w0 = time.perf_counter()
        theta = sampler.draw(start, m)
        w1, c1 = time.perf_counter(), time.process_time()
        buf = np.empty((m, 5))

        def shocks(t: int, buf: np.ndarray = buf) -> np.ndarray:
            return rng.standard_normal(out=buf)

        parts.append(simulate(theta, config, shocks))
        timings["draw_s"] += w1 - w0
        timings["simulation_s"] += time.perf_counter() - w1
        timings["simulation_cpu_s"] += time.process_time() - c1
    w0 = time.perf_counter()
    out = _concatenate(parts)
    del parts
    timings["gather_s"] = time.perf_counter() - w0
    w0, c0 = time.perf_counter(), time.process_time()
    summary = summarize(out, config.grid)
    timings["statistics_s"] = time.perf_counter() - w0
    timings["statistics_cpu_s"] = time.process_time() - c0
    return summary, timings


def run(config: Config, paths: int, seed: int, chunk: int | None = None) -> dict:
    """Draw parameters (:class:`mcsim.draws.ParameterSampler` with ``seed``: the engine's),
    shocks from ``np.random.default_rng(seed)``, simulate all paths in one pass (or in
    chunks of ``chunk`` paths, to bound the loop's scratch memory; the statistics are over
    all paths), and return :func:`summarize`'s statistics. Deterministic for a given seed
    and chunk."""
    return run_timed(config, paths, seed, chunk)[0]


def _headline(summary: dict) -> dict:
    """A few figures to eyeball against ``mcsim run`` (the same model and parameters, other
    shocks: they agree within Monte Carlo error)."""
    q = list(summary["quantile_levels"]).index(0.5)
    cum = summary["cumulative_azure_spend"]
    months = summary["months"]
    horizon = summary["horizon"]
    out = {"median_cumulative_azure_spend_at_horizon": float(cum["quantiles"][q, -1]),
           "mean_cumulative_azure_spend_at_horizon": float(cum["mean"][-1])}
    for name in months:
        out[f"median_{name}"] = months[name]["labels"][q]
        out[f"p_no_{name}"] = float(months[name]["censored_fraction"])
    for name in ("cumulative_revenue", "deepest_cumulative_loss", "microsoft_receipts"):
        out[f"median_{name}"] = float(horizon[name]["quantiles"][q])
    return out


def main(argv: list[str] | None = None) -> int:
    """Command line: run the baseline as a whole process and print its figures."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="configs/base.toml")
    ap.add_argument("--paths", type=int, default=200_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--chunk", type=int, default=None,
                    help="paths per pass (default: all in one)")
    ap.add_argument("--json", default=None, help="write the figures to this file")
    args = ap.parse_args(argv)

    cfg = load_config(args.config)
    T = cfg.grid.num_months
    summary, tm = run_timed(cfg, args.paths, args.seed, args.chunk)
    total = time.perf_counter() - _T0_WALL
    cpu_total = time.process_time() - _T0_CPU
    steps = args.paths * T
    figures = {
        "config": args.config, "paths": args.paths, "months": T, "seed": args.seed,
        "chunk": args.chunk or args.paths,
        "import_s": _T_IMPORTS - _T0_WALL, "mcsim_import_s": _T_IMPORTS - _T_NUMPY,
        "draw_s": tm["draw_s"], "simulation_s": tm["simulation_s"], "gather_s": tm["gather_s"],
        "statistics_s": tm["statistics_s"], "total_s": total,
        "simulation_path_steps_per_s": steps / tm["simulation_s"],
        "total_path_steps_per_s": steps / total,
        "simulation_cores": tm["simulation_cpu_s"] / tm["simulation_s"],
        "statistics_cores": tm["statistics_cpu_s"] / tm["statistics_s"],
        "process_cores": cpu_total / total,
        **_headline(summary),
    }
    print(f"numpy baseline: {args.paths:,} paths x {T} months ({args.config}, seed "
          f"{args.seed}, chunk {figures['chunk']:,})")
    print(f"  imports         {figures['import_s']:8.2f} s (mcsim and its jax import "
          f"{figures['mcsim_import_s']:.2f} s)")
    print(f"  parameter draws {tm['draw_s']:8.2f} s")
    print(f"  simulation      {tm['simulation_s']:8.2f} s  "
          f"{figures['simulation_path_steps_per_s']:.3g} path-steps/s  "
          f"cores {figures['simulation_cores']:.2f}")
    if tm["gather_s"] > 0.0005:
        print(f"  joining chunks  {tm['gather_s']:8.2f} s")
    print(f"  statistics      {tm['statistics_s']:8.2f} s  cores "
          f"{figures['statistics_cores']:.2f}")
    print(f"  total (process) {total:8.2f} s  {figures['total_path_steps_per_s']:.3g} "
          f"path-steps/s  cores {figures['process_cores']:.2f}")
    print(f"  median cumulative Azure spend at the horizon "
          f"${figures['median_cumulative_azure_spend_at_horizon'] / 1e9:,.1f}B (mean "
          f"${figures['mean_cumulative_azure_spend_at_horizon'] / 1e9:,.1f}B); median "
          f"cumulative revenue ${figures['median_cumulative_revenue'] / 1e9:,.0f}B; median "
          f"deepest cumulative loss ${figures['median_deepest_cumulative_loss'] / 1e9:,.1f}B")
    for name in summary["months"]:
        median = figures[f"median_{name}"] or "not by the horizon"
        print(f"  {name.replace('_', ' ')}: median {median}, P(not by the horizon) "
              f"{figures[f'p_no_{name}']:.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
