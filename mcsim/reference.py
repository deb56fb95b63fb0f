"""NumPy float64 reference of the model, written to be read line by line against MODEL.md.

Slow and simple on purpose: a loop over months, vectorized over paths, holding every flow of
every month. Tests feed it and the JAX kernel the same theta and the same shocks and compare
path by path. Units: dollars per month for flows, tokens per month, users, GPU-hours.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit, logit

from .config import DealConfig
from .months import MonthGrid

DT = 1.0 / 12.0


def decaying_rate(r_0, r_inf, halflife, s):
    """r(s) = r_inf + (r_0 - r_inf) * 2^(-s/h), per year; s in years since start."""
    return r_inf + (r_0 - r_inf) * 2.0 ** (-s / halflife)


def simulate_reference(theta: dict[str, np.ndarray], deal: DealConfig, grid: MonthGrid,
                       normals: np.ndarray, shock_correlation) -> dict[str, np.ndarray]:
    """Run the model for N paths.

    Args:
        theta: parameter name -> float64 [N] (as from :class:`mcsim.draws.ParameterSampler`).
        deal: the deal terms.
        grid: the month grid, T months.
        normals: independent standard normals [T, N, 5] (row 0 unused), shock order
            price, utilization, tokens, users, conversion.
        shock_correlation: 5x5 correlation of the monthly shocks.

    Returns:
        dict of float64 [T, N] monthly flows and states, plus per-path outcomes [N]:
        ``repayment_month`` and ``credit_exhaustion_month`` (month index, T when censored),
        ``deepest_cumulative_loss``, ``cumulative_revenue``, ``cumulative_profit``,
        ``microsoft_receipts``, ``microsoft_net``.
    """
    th = {k: np.asarray(v, dtype=np.float64) for k, v in theta.items()}
    T = grid.num_months
    N = th["gpu_price_0"].shape[0]
    eps = np.asarray(normals, dtype=np.float64) @ np.linalg.cholesky(
        np.asarray(shock_correlation, dtype=np.float64)).T
    sqdt = np.sqrt(DT)

    def rate(name, s):
        return decaying_rate(th[name], th[f"{name}_inf"], th[f"{name}_halflife"], s)

    # t = 0: every state takes its *_0 value
    log_p = np.log(th["gpu_price_0"])
    y = logit(th["utilization_0"])
    log_D = np.log(th["tokens_0"])
    log_W = np.log(th["users_0"])
    z = logit(th["conversion_0"])
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

    cum_M = np.zeros(N)                       # cumulative revenue share
    Q = np.zeros(N)                           # cumulative profit share
    pool = np.full(N, -deal.losses_before_start)
    cum_Z = np.zeros(N)
    cash = np.zeros(N)                        # running sum of P - q
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
            y = y + th["utilization_speed"] * (logit(th["utilization_mean"]) - y) * DT \
                + th["utilization_vol"] * sqdt * e[:, 1]
            g = decaying_rate(th["token_growth_0"], th["token_growth_inf"],
                              th["token_growth_halflife"], s_prev)
            log_D = log_D + g * DT + th["token_vol"] * sqdt * e[:, 2]
            W_prev = np.exp(log_W)
            log_W = log_W + th["users_growth"] * (1.0 - W_prev / th["users_cap"]) * DT \
                + th["users_vol"] * sqdt * e[:, 3]
            z = z + th["conversion_speed"] * (logit(th["conversion_mean"]) - z) * DT \
                + th["conversion_vol"] * sqdt * e[:, 4]
            # deterministic levels: log L_t = log L_{t-1} + r(s_{t-1}) dt (0 stays 0)
            eta = eta * np.exp(rate("efficiency_growth", s_prev) * DT)
            R = R * np.exp(rate("training_growth", s_prev) * DT)
            pi = pi * np.exp(rate("api_price_drift", s_prev) * DT)
            O = O * np.exp(rate("other_opex_growth", s_prev) * DT)

        s = t * DT
        a = th["azure_share_inf"] + (th["azure_share_0"] - th["azure_share_inf"]) \
            * 2.0 ** (-s / th["azure_share_halflife"])
        p, u, D, W, c = np.exp(log_p), expit(y), np.exp(log_D), np.exp(log_W), expit(z)

        # money in month t
        I = D / eta / u * p
        X = I + R
        Z = a * X
        S = W * c * th["subscription_arpu"]
        A = th["api_token_share"] * D * pi / 1e6
        V = S + A
        M = deal.revenue_share * V if t <= end_index else np.zeros(N)
        # the month that reaches the cap pays only the remainder: cumulative M = cap exactly
        reaches_cap = M >= rs_cap - cum_M
        M = np.where(reaches_cap, rs_cap - cum_M, M)
        cum_M = np.where(reaches_cap, rs_cap, cum_M + M)
        P = V - X - O - M

        # waterfall
        if deal.loss_carryforward:
            pool = pool + P
            d = np.where(pool > 0, pool, 0.0)
            pool = np.where(pool > 0, 0.0, pool)
        else:
            d = np.maximum(P, 0.0)
        r1, r2 = deal.profit_share_until_recouped, deal.profit_share_after
        remaining = np.maximum(deal.investment - Q, 0.0)   # profit share left at rate r1
        crosses = r1 * d > remaining                       # this month reaches the line:
        with np.errstate(divide="ignore", invalid="ignore"):
            d_at_r1 = np.where(crosses, remaining / r1, d)  # split d exactly at it
        Q_new = np.where(crosses, np.maximum(Q, deal.investment) + r2 * (d - d_at_r1),
                         Q + r1 * d)
        Q_new = np.minimum(Q_new, profit_cap)              # split first, then cap
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
