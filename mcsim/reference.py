"""NumPy float64 reference of the model, written to be read line by line against MODEL.md.

Slow and simple on purpose: a loop over months, vectorized over paths, holding every flow of
every month. Tests feed it and the JAX kernel the same theta and the same shocks and compare
path by path. Units: dollars per month for flows, tokens per month, users, GPU-hours.

:func:`draw_parameters` is the reference for the per-path parameters: it reads the config's
TOML tables (not the parsed :class:`~mcsim.distributions.Distribution` objects) and follows
MODEL.md's "Distribution vocabulary" with ``scipy.stats``, so that a test can draw worlds
independently of :mod:`mcsim.draws` and :mod:`mcsim.device_draws` (from any uniforms, e.g.
NumPy's own generator), or feed it the engine's uniforms and compare path by path.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats
from scipy.special import expit, logit, ndtr, ndtri

from .config import DealConfig
from .months import MonthGrid

DT = 1.0 / 12.0
Z95 = 1.6448536  # MODEL.md's constant for the p5/p95 forms
PERT_LAMBDA = 4.0
#: MODEL.md's parameter list, in its order (the required 33, then the optional companions)
REQUIRED_PARAMETERS = (
    "gpu_price_0", "gpu_price_drift", "gpu_price_vol", "utilization_0", "utilization_mean",
    "utilization_speed", "utilization_vol", "tokens_0", "token_growth_0", "token_growth_inf",
    "token_growth_halflife", "token_vol", "tokens_per_gpu_hour_0", "efficiency_growth",
    "users_0", "users_cap", "users_growth", "users_vol", "conversion_0", "conversion_mean",
    "conversion_speed", "conversion_vol", "subscription_arpu", "api_revenue_per_mtok_0",
    "api_price_drift", "api_token_share", "training_spend_0", "training_growth",
    "azure_share_0", "azure_share_inf", "azure_share_halflife", "other_opex_0",
    "other_opex_growth")
#: rates whose bare name is r_0, with optional NAME_inf and NAME_halflife
DECAYING_RATES = ("gpu_price_drift", "efficiency_growth", "training_growth",
                  "api_price_drift", "other_opex_growth")
ALL_PARAMETERS = REQUIRED_PARAMETERS + tuple(
    f"{r}_{c}" for r in DECAYING_RATES for c in ("inf", "halflife"))


def frozen_distribution(spec: dict):
    """The untruncated scipy.stats distribution of one TOML distribution table."""
    kind = spec["dist"]
    if kind == "normal":
        if "p5" in spec:
            mean = (spec["p5"] + spec["p95"]) / 2.0
            sd = (spec["p95"] - spec["p5"]) / (2.0 * Z95)
        else:
            mean, sd = spec["mean"], spec["sd"]
        return stats.norm(loc=mean, scale=sd)
    if kind == "lognormal":
        if "p5" in spec:
            median = math.sqrt(spec["p5"] * spec["p95"])
            sigma = math.log(spec["p95"] / spec["p5"]) / (2.0 * Z95)
        else:
            median, sigma = spec["median"], spec["sigma"]
        return stats.lognorm(s=sigma, scale=median)
    if kind == "uniform":
        return stats.uniform(loc=spec["low"], scale=spec["high"] - spec["low"])
    low, high = spec.get("low"), spec.get("high")
    if kind == "triangular":
        return stats.triang(c=(spec["mode"] - low) / (high - low), loc=low, scale=high - low)
    if kind == "pert":  # Beta-PERT, lambda = 4
        alpha = 1.0 + PERT_LAMBDA * (spec["mode"] - low) / (high - low)
        beta = 1.0 + PERT_LAMBDA * (high - spec["mode"]) / (high - low)
        return stats.beta(alpha, beta, loc=low, scale=high - low)
    if kind == "beta":
        return stats.beta(spec["alpha"], spec["beta"])
    raise ValueError(f"unknown distribution {kind!r}")


def inverse_cdf(spec: dict, u: np.ndarray) -> np.ndarray:
    """Draw by inverse CDF, truncated to [min, max]: F^-1(F(min) + u (F(max) - F(min)))."""
    dist = frozen_distribution(spec)
    f_min = dist.cdf(spec["min"]) if "min" in spec else 0.0
    f_max = dist.cdf(spec["max"]) if "max" in spec else 1.0
    x = dist.ppf(f_min + np.asarray(u, dtype=np.float64) * (f_max - f_min))
    # the bounds themselves, where F^-1(F(bound)) rounds a hair past them
    return np.clip(x, spec.get("min", -np.inf), spec.get("max", np.inf))


def drawn_parameters(parameters: dict) -> list[str]:
    """Names of the parameters given as distributions, in MODEL.md's order (the order of
    the columns of :func:`draw_parameters`'s uniforms)."""
    return [n for n in ALL_PARAMETERS if isinstance(parameters.get(n), dict)]


def draw_parameters(parameters: dict, pairs, u: np.ndarray) -> dict[str, np.ndarray]:
    """Per-path parameters theta from independent uniforms.

    Args:
        parameters: the config's ``[parameters]`` table as written (``config.resolved``):
            name -> number or distribution table.
        pairs: ``[parameter_correlation].pairs``, [name, name, Spearman rho] triples.
        u: independent uniforms in (0, 1), [N, k], one column per name of
            :func:`drawn_parameters`.

    Returns:
        name -> float64 [N] for all 43 names; a rate without companions gets
        ``NAME_inf = NAME`` and ``NAME_halflife = 1`` (then r(s) = r_0 exactly).
    """
    names = drawn_parameters(parameters)
    u = np.array(u, dtype=np.float64)
    if pairs:
        # Gaussian copula on the uniforms, before any truncation: normal correlation
        # 2 sin(pi r / 6) of Spearman's r, factor L (lower Cholesky, the correlated names in
        # MODEL.md's order), z -> L z
        corr_names = [n for n in names if any(n in pair[:2] for pair in pairs)]
        m = np.eye(len(corr_names))
        for a, b, r in pairs:
            i, j = corr_names.index(a), corr_names.index(b)
            m[i, j] = m[j, i] = 2.0 * np.sin(np.pi * r / 6.0)
        cols = [names.index(n) for n in corr_names]
        z = ndtri(u[:, cols]) @ np.linalg.cholesky(m).T
        u[:, cols] = np.clip(ndtr(z), np.finfo(np.float64).tiny, np.nextafter(1.0, 0.0))
    n = u.shape[0]
    theta = {}
    for name in ALL_PARAMETERS:
        spec = parameters.get(name)
        if isinstance(spec, dict):
            theta[name] = inverse_cdf(spec, u[:, names.index(name)])
        elif spec is not None:
            theta[name] = np.full(n, float(spec))
    for rate in DECAYING_RATES:
        if f"{rate}_inf" not in theta:
            theta[f"{rate}_inf"] = theta[rate].copy()
            theta[f"{rate}_halflife"] = np.ones(n)
    return theta


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
