"""NumPy float64 reference of the model, written to be read line by line against MODEL.md.

Slow and simple on purpose: a loop over months, vectorized over paths, holding every flow of
every month. Version 2 (MODEL.md "Version 2 additions") is written here on its own: the
deal's timeline is expanded from the config's changes (:func:`terms_by_month`), nothing is
taken from :mod:`mcsim.model`. Version 3 (MODEL.md "Version 3 additions": OpenAI's cash and
funding gap, present values, Microsoft's equity and whole position) is read off the stored
monthly flows after the month loop (:func:`version_3`), again from MODEL.md's text alone.
Tests feed it and the JAX kernel the same theta and the same shocks and compare path by
path. Units: dollars per month for flows, tokens per month, users, GPU-hours.

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

from .config import DealConfig, FundingConfig
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
#: rates whose bare name is r_0, with optional NAME_inf and NAME_halflife (version 1's)
DECAYING_RATES = ("gpu_price_drift", "efficiency_growth", "training_growth",
                  "api_price_drift", "other_opex_growth")
#: MODEL.md version 2, B: the reverse share's base, the markup and intensity forms (each
#: an alternative to a version-1 level and rate), Microsoft's Azure margin; all optional
V2_PARAMETERS = (
    "microsoft_ai_revenue_0", "microsoft_ai_revenue_growth", "api_markup_0",
    "api_markup_drift", "training_intensity_0", "training_intensity_drift",
    "other_opex_intensity_0", "other_opex_intensity_drift", "azure_gross_margin")
#: version 2's rates, likewise with optional companions
V2_DECAYING_RATES = ("microsoft_ai_revenue_growth", "api_markup_drift",
                     "training_intensity_drift", "other_opex_intensity_drift")


def _companions(rates):
    return tuple(f"{r}_{c}" for r in rates for c in ("inf", "halflife"))


#: MODEL.md version 3, E and G: OpenAI's cash at the start (given as ``funding.cash_0``),
#: Microsoft's equity stake and the valuation multiple of the trailing revenue; all optional
V3_PARAMETERS = ("cash_0", "microsoft_equity_stake", "valuation_multiple")
#: every parameter name in stream order: version 1's 33 and companions, then version 2's,
#: then version 3's (``cash_0`` is drawn from ``[funding]``: a caller of
#: :func:`draw_parameters` adds it to the parameters table it passes)
ALL_PARAMETERS = REQUIRED_PARAMETERS + _companions(DECAYING_RATES) + V2_PARAMETERS \
    + _companions(V2_DECAYING_RATES) + V3_PARAMETERS


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


def parameter_table(resolved: dict) -> dict:
    """The config's parameters as :func:`draw_parameters` takes them: its
    ``[parameters]`` table (``config.resolved``), with ``funding.cash_0`` (version 3, E: a
    parameter given in ``[funding]``) added when the config has it."""
    table = dict(resolved.get("parameters", {}))
    funding = resolved.get("funding")
    if funding is not None and "cash_0" in funding:
        table["cash_0"] = funding["cash_0"]
    return table


def draw_parameters(parameters: dict, pairs, u: np.ndarray) -> dict[str, np.ndarray]:
    """Per-path parameters theta from independent uniforms.

    Args:
        parameters: the config's ``[parameters]`` table as written (``config.resolved``):
            name -> number or distribution table (with a ``[funding]`` table's
            ``cash_0``: :func:`parameter_table`).
        pairs: ``[parameter_correlation].pairs``, [name, name, Spearman rho] triples.
        u: independent uniforms in (0, 1), [N, k], one column per name of
            :func:`drawn_parameters`.

    Returns:
        name -> float64 [N] for every name the table gives (version 1's 33, and version
        2's where given); a rate given without companions gets ``NAME_inf = NAME`` and
        ``NAME_halflife = 1`` (then r(s) = r_0 exactly).
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
    for rate in DECAYING_RATES + V2_DECAYING_RATES:
        if rate in theta and f"{rate}_inf" not in theta:
            theta[f"{rate}_inf"] = theta[rate].copy()
            theta[f"{rate}_halflife"] = np.ones(n)
    return theta


def decaying_rate(r_0, r_inf, halflife, s):
    """r(s) = r_inf + (r_0 - r_inf) * 2^(-s/h), per year; s in years since start."""
    return r_inf + (r_0 - r_inf) * 2.0 ** (-s / halflife)


#: Deal terms a ``[[deal.change]]`` may set (MODEL.md version 2, A)
CHANGE_TERMS = ("revenue_share", "revenue_share_end", "revenue_share_cap",
                "revenue_share_cap_from", "profit_share_until_recouped", "profit_share_after",
                "profit_cap", "reverse_share")
#: Monthly flows summed by calendar year (version 1's four, then version 2's, C)
ANNUAL_FLOWS = ("azure_spend", "azure_inference_spend", "revenue", "revenue_share",
                "inference_spend", "training_spend", "other_opex", "compute_spend", "profit",
                "net_revenue_share", "reverse_revenue_share", "azure_commitment_shortfall",
                "microsoft_azure_margin", "paid_to_microsoft")
#: Levels reported at the last month of each calendar year (version 2, C)
STOCKS = ("weekly_active_users", "paying_subscribers", "tokens_per_month", "gpu_price",
          "azure_share")
#: Version 3's stock (E): OpenAI's cash K at each year end, signed (only with [funding])
V3_STOCKS = ("cash",)
#: Version 3's horizon totals (E, F, G), each present only when its mechanisms are in use
V3_HORIZON_TOTALS = ("funding_to_find", "pv_cumulative_azure_spend", "pv_cumulative_profit",
                     "pv_microsoft_economic_return", "pv_microsoft_economic_net",
                     "microsoft_equity_value", "microsoft_whole_position",
                     "pv_microsoft_equity_value", "pv_microsoft_whole_position")


def terms_by_month(deal: DealConfig, grid: MonthGrid) -> dict[str, list]:
    """The deal's timeline: term field -> the value in force in each month t = 0..T-1
    (the ``[deal]`` value, replaced from each change's ``from`` month on; a field a change
    does not name keeps its previous value; a change after the horizon does nothing)."""
    T = grid.num_months
    terms = {name: [getattr(deal, name)] * T for name in CHANGE_TERMS}
    for change in deal.changes:
        first = grid.index(change.start)
        for name, value in dict(change.terms).items():
            for t in range(max(first, 0), T):
                terms[name][t] = value
    return terms


def simulate_reference(theta: dict[str, np.ndarray], deal: DealConfig, grid: MonthGrid,
                       normals: np.ndarray, shock_correlation, *,
                       funding: FundingConfig | None = None,
                       discount_rate: float | None = None) -> dict[str, np.ndarray]:
    """Run the model for N paths (MODEL.md, version 1 and the version 2 and 3 additions).

    Args:
        theta: parameter name -> float64 [N] (as from :class:`mcsim.draws.ParameterSampler`):
            every parameter the config gives, and both companions of every decaying rate.
        deal: the deal terms (with their changes over time).
        grid: the month grid, T months.
        normals: independent standard normals [T, N, 5] (row 0 unused), shock order
            price, utilization, tokens, users, conversion.
        shock_correlation: 5x5 correlation of the monthly shocks.
        funding: ``config.funding`` (version 3, E; None: no cash, no funding gap): its
            rounds; OpenAI's cash at the start is ``theta["cash_0"]``.
        discount_rate: ``config.simulation.discount_rate`` (version 3, F; None: no present
            values). Microsoft's equity (G) is computed when ``theta`` has
            ``microsoft_equity_stake`` (and then ``valuation_multiple``).

    Returns:
        dict of float64 [T, N] monthly flows and states (the flows of :data:`ANNUAL_FLOWS`,
        the stocks of :data:`STOCKS`, and the drivers, levels and running sums), plus
        per-path outcomes [N]: month variables ``repayment_month``,
        ``credit_exhaustion_month``, ``cap_reached_month``, ``commitment_met_month``
        (month index, T when censored); horizon totals ``deepest_cumulative_loss``,
        ``cumulative_revenue``, ``cumulative_profit``, ``microsoft_receipts``,
        ``microsoft_net``, ``microsoft_economic_return``, ``microsoft_economic_net``; the
        running sums at the horizon ``cumulative_azure_spend_total``,
        ``cumulative_reverse_revenue_share`` and ``commitment_counted`` (Z of the
        commitment's months). Running sums month by month [T, N]:
        ``cumulative_revenue_share`` (with the revenue share paid before the start),
        ``cumulative_profit_share``, ``cumulative_azure_margin``,
        ``cumulative_azure_spend``. ``azure_spend`` is Z + F (the shortfall included);
        ``azure_spend_before_shortfall`` is Z = a X. ``api_markup``,
        ``training_intensity`` and ``other_opex_intensity`` are NaN where the config uses
        version 1's form of that item; with the markup form ``api_revenue_per_mtok`` is
        pi_t computed from the markup. Version 3's outputs as :func:`version_3` gives
        them, only for the mechanisms in use.
    """
    th = {k: np.asarray(v, dtype=np.float64) for k, v in theta.items()}
    T = grid.num_months
    N = th["gpu_price_0"].shape[0]
    eps = np.asarray(normals, dtype=np.float64) @ np.linalg.cholesky(
        np.asarray(shock_correlation, dtype=np.float64)).T
    sqdt = np.sqrt(DT)
    # version 2's forms (B): each is used when the config gives its level
    markup_form = "api_markup_0" in th
    training_intensity_form = "training_intensity_0" in th
    opex_intensity_form = "other_opex_intensity_0" in th
    has_ms_ai = "microsoft_ai_revenue_0" in th
    margin_rate = th.get("azure_gross_margin", np.zeros(N))

    def rate(name, s):
        return decaying_rate(th[name], th[f"{name}_inf"], th[f"{name}_halflife"], s)

    # t = 0: every state takes its *_0 value
    log_p = np.log(th["gpu_price_0"])
    y = logit(th["utilization_0"])
    log_D = np.log(th["tokens_0"])
    log_W = np.log(th["users_0"])
    z = logit(th["conversion_0"])
    eta = th["tokens_per_gpu_hour_0"].copy()
    # levels driven by rates: version 1's, or version 2's form in its place (nan: unused)
    unused = np.full(N, np.nan)
    R = unused if training_intensity_form else th["training_spend_0"].copy()
    pi = unused if markup_form else th["api_revenue_per_mtok_0"].copy()
    O = unused if opex_intensity_form else th["other_opex_0"].copy()
    markup = th["api_markup_0"].copy() if markup_form else unused
    training_intensity = th["training_intensity_0"].copy() if training_intensity_form \
        else unused
    opex_intensity = th["other_opex_intensity_0"].copy() if opex_intensity_form else unused
    ms_ai = th["microsoft_ai_revenue_0"].copy() if has_ms_ai else np.zeros(N)

    names = ["gpu_price", "utilization", "tokens", "users", "conversion", "throughput",
             "training_spend", "api_revenue_per_mtok", "other_opex", "azure_share",
             "inference_spend", "compute_spend", "azure_spend", "azure_inference_spend",
             "subscription_revenue", "api_revenue", "revenue", "revenue_share", "profit",
             "distributable_profit", "profit_share", "cumulative_azure_spend",
             "recouped", "openai_cash",
             # version 2
             "api_markup", "training_intensity", "other_opex_intensity",
             "microsoft_ai_revenue", "azure_spend_before_shortfall",
             "azure_commitment_shortfall", "reverse_revenue_share", "net_revenue_share",
             "microsoft_azure_margin", "paid_to_microsoft", "weekly_active_users",
             "paying_subscribers", "tokens_per_month", "cumulative_revenue_share",
             "cumulative_profit_share", "cumulative_azure_margin"]
    out = {k: np.zeros((T, N)) for k in names}

    # the deal's timeline (A): each term's value in force in month t
    terms = terms_by_month(deal, grid)
    end_index = [T if e is None else grid.index(e) for e in terms["revenue_share_end"]]
    rs_cap = [np.inf if c is None else c for c in terms["revenue_share_cap"]]
    # the first month the cap counts (None, or at or before the start: 0, where revenue
    # share paid before the start counts too)
    cap_from = [0 if m is None else max(grid.index(m), 0)
                for m in terms["revenue_share_cap_from"]]
    profit_cap = [np.inf if c is None else c for c in terms["profit_cap"]]
    credits = np.inf if deal.azure_credits is None else deal.azure_credits
    # Azure take-or-pay (B): Z of months commit_from..commit_by, shortfall paid at by
    commitment = deal.azure_commitment
    if commitment is not None:
        commit_from = grid.index(deal.azure_commitment_from)
        commit_by = grid.index(deal.azure_commitment_by)

    cum_M = np.zeros(N)                       # gross M paid in the run
    paid_before = float(deal.revenue_share_paid_before_start)
    M_of_month = []                           # M of each month so far, for caps from a month
    Q = np.zeros(N)                           # cumulative profit share
    pool = np.full(N, -deal.losses_before_start)
    cum_Z = np.zeros(N)                       # Azure spend, shortfall included
    cum_commit = np.zeros(N)                  # Z counted toward the commitment
    cum_margin = np.zeros(N)                  # Microsoft's Azure margin
    cum_reverse = np.zeros(N)
    cash = np.zeros(N)                        # running sum of P - q
    min_cash = np.zeros(N)
    cum_V = np.zeros(N)
    cum_P = np.zeros(N)
    tau = np.full(N, T)
    credit_month = np.full(N, T)
    cap_month = np.full(N, T)
    commit_month = np.full(N, T)

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
            if training_intensity_form:
                training_intensity = training_intensity \
                    * np.exp(rate("training_intensity_drift", s_prev) * DT)
            else:
                R = R * np.exp(rate("training_growth", s_prev) * DT)
            if markup_form:
                markup = markup * np.exp(rate("api_markup_drift", s_prev) * DT)
            else:
                pi = pi * np.exp(rate("api_price_drift", s_prev) * DT)
            if opex_intensity_form:
                opex_intensity = opex_intensity \
                    * np.exp(rate("other_opex_intensity_drift", s_prev) * DT)
            else:
                O = O * np.exp(rate("other_opex_growth", s_prev) * DT)
            if has_ms_ai:
                ms_ai = ms_ai * np.exp(rate("microsoft_ai_revenue_growth", s_prev) * DT)

        s = t * DT
        a = th["azure_share_inf"] + (th["azure_share_0"] - th["azure_share_inf"]) \
            * 2.0 ** (-s / th["azure_share_halflife"])
        p, u, D, W, c = np.exp(log_p), expit(y), np.exp(log_D), np.exp(log_W), expit(z)

        # money in month t, in MODEL.md's order (version 2, D): revenue first
        S = W * c * th["subscription_arpu"]
        if markup_form:
            # the inference cost of a million tokens times the markup
            pi = markup * 1e6 * p / (eta * u)
        A = th["api_token_share"] * D * pi / 1e6
        V = S + A
        # then the costs (the intensity forms use this month's revenue)
        I = D / eta / u * p
        if training_intensity_form:
            R = training_intensity * V
        if opex_intensity_form:
            O = opex_intensity * V
        X = I + R
        Z = a * X
        # the commitment's shortfall, paid in month `by`
        F = np.zeros(N)
        if commitment is not None and commit_from <= t <= commit_by:
            cum_commit = cum_commit + Z
            commit_month = np.where((commit_month == T) & (cum_commit >= commitment), t,
                                    commit_month)
            if t == commit_by:
                F = np.maximum(commitment - cum_commit, 0.0)
        # revenue share, paid while the month is not after revenue_share_end
        M = terms["revenue_share"][t] * V if t <= end_index[t] else np.zeros(N)
        # the cap in force bounds revenue share paid from its cap_from month on: the month
        # that reaches it pays only the remainder (nothing when a lowered cap is already
        # exceeded); months before cap_from are not bounded by it
        if t >= cap_from[t]:
            # what the cap has counted: M paid from cap_from on (and, from the start,
            # what was paid before it), summed afresh from the months' payments
            paid_since = np.sum(M_of_month[cap_from[t]:], axis=0) if t > cap_from[t] \
                else np.zeros(N)
            counted = paid_since + (paid_before if cap_from[t] == 0 else 0.0)
            room = rs_cap[t] - counted
            reaches_cap = M >= room
            if rs_cap[t] < np.inf:
                cap_month = np.where((cap_month == T) & reaches_cap, t, cap_month)
            M = np.where(reaches_cap, np.maximum(room, 0.0), M)
        cum_M = cum_M + M
        M_of_month.append(M)
        # the reverse share Microsoft pays OpenAI
        reverse = terms["reverse_share"][t] * ms_ai
        P = V - X - O - M + reverse - F

        # waterfall
        if deal.loss_carryforward:
            pool = pool + P
            d = np.where(pool > 0, pool, 0.0)
            pool = np.where(pool > 0, 0.0, pool)
        else:
            d = np.maximum(P, 0.0)
        r1 = terms["profit_share_until_recouped"][t]
        r2 = terms["profit_share_after"][t]
        remaining = np.maximum(deal.investment - Q, 0.0)   # profit share left at rate r1
        past = Q >= deal.investment                        # the line is behind: r2 only
        crosses = ~past & (r1 * d > remaining)             # this month reaches the line:
        with np.errstate(divide="ignore", invalid="ignore"):
            d_at_r1 = np.where(crosses, remaining / r1, d)  # split d exactly at it
        Q_new = np.where(past, Q + r2 * d,
                         np.where(crosses, deal.investment + r2 * (d - d_at_r1),
                                  Q + r1 * d))
        Q_new = np.minimum(Q_new, profit_cap[t])           # split first, then cap
        Q_new = np.maximum(Q_new, Q)                       # a lowered cap takes nothing back
        q = Q_new - Q
        Q = Q_new
        margin = margin_rate * (Z + F)                     # Microsoft's profit on the bill
        cum_margin = cum_margin + margin
        recouped = np.zeros(N)
        if "profit_share" in deal.recoup_from:
            recouped = recouped + Q
        if "revenue_share" in deal.recoup_from:
            recouped = recouped + (cum_M + paid_before)
        if "azure_margin" in deal.recoup_from:
            recouped = recouped + cum_margin
        tau = np.where((tau == T) & (recouped >= deal.investment), t, tau)

        cum_Z = cum_Z + (Z + F)
        credit_month = np.where((credit_month == T) & (cum_Z >= credits), t, credit_month)
        cash = cash + P - q
        min_cash = np.minimum(min_cash, cash)
        cum_V = cum_V + V
        cum_P = cum_P + P
        cum_reverse = cum_reverse + reverse
        net_M = M - reverse

        for k, v in zip(names, [p, u, D, W, c, eta, R, pi, O, a, I, X, Z + F, a * I, S, A,
                                V, M, P, d, q, cum_Z, recouped, cash,
                                markup, training_intensity, opex_intensity, ms_ai, Z, F,
                                reverse, net_M, margin, Z + F + net_M, W, W * c, D, cum_M,
                                Q, cum_margin], strict=True):
            out[k][t] = v

    receipts = Q + cum_M
    economic = receipts + cum_margin
    out.update(
        repayment_month=tau,
        credit_exhaustion_month=credit_month,
        cap_reached_month=cap_month,
        commitment_met_month=commit_month,
        deepest_cumulative_loss=-np.minimum(0.0, min_cash),
        cumulative_revenue=cum_V,
        cumulative_profit=cum_P,
        microsoft_receipts=receipts,
        microsoft_net=receipts - deal.investment,
        microsoft_economic_return=economic,
        microsoft_economic_net=economic - deal.investment,
        cumulative_azure_spend_total=cum_Z,
        cumulative_azure_margin=cum_margin,
        cumulative_reverse_revenue_share=cum_reverse,
        commitment_counted=cum_commit,
    )
    out.update(version_3(out, th, deal, grid, funding, discount_rate))
    return out


def version_3(out: dict[str, np.ndarray], theta: dict[str, np.ndarray], deal: DealConfig,
              grid: MonthGrid, funding: FundingConfig | None,
              discount_rate: float | None) -> dict[str, np.ndarray]:
    """MODEL.md "Version 3 additions" from the month loop's stored flows (``out``: [T, N]
    ``profit``, ``profit_share``, ``revenue_share``, ``microsoft_azure_margin``,
    ``azure_spend`` (Z + F) and ``revenue``; the horizon total
    ``microsoft_economic_return``). Each mechanism adds its outputs only when in use:

    - E, with ``funding``: ``funding_round`` [T] ($ raised in each month; a round dated
      the start's month is month 0's), ``cash`` [T, N]: K_t = K_{t-1} + (P_t - q_t) +
      round_t from K_{-1} = cash_0; ``funding_gap_month`` [N]: the first month with
      K_t < 0 (T when never); ``funding_to_find`` [N] = max(0, -min_t K_t).
    - F, with ``discount_rate``: ``discount_factor`` [T] = exp(-rate s_t), s_t = t / 12
      years since the start; ``pv_cumulative_azure_spend``, ``pv_cumulative_profit``,
      ``pv_microsoft_economic_return`` (profit share + gross revenue share + Azure margin):
      sums of the discounted monthly flows; ``pv_microsoft_economic_net`` = that - the
      investment (paid before the start: not discounted).
    - G, with ``theta["microsoft_equity_stake"]``: ``trailing_revenue`` [N], revenue
      summed over months T-12..T-1 (all months when T < 12); ``microsoft_equity_value`` =
      stake * valuation multiple * trailing revenue; ``microsoft_whole_position`` =
      economic return + equity value; with a discount rate too,
      ``pv_microsoft_equity_value`` (the equity value times the horizon month's factor
      exp(-rate s_{T-1})) and ``pv_microsoft_whole_position`` (the economic return's
      present value + that).
    """
    T = grid.num_months
    v3: dict[str, np.ndarray] = {}
    if funding is not None:
        rounds = np.zeros(T)
        for month, dollars in funding.rounds:
            t = grid.index(month)
            if not 0 <= t < T:
                raise ValueError(f"funding round {month} is outside the run "
                                 f"({grid.label(0)}..{grid.label(T - 1)})")
            rounds[t] += float(dollars)
        K = np.asarray(theta["cash_0"], dtype=np.float64).copy()
        cash = np.zeros_like(out["profit"])
        gap = np.full(K.shape, T)
        for t in range(T):
            K = K + (out["profit"][t] - out["profit_share"][t]) + rounds[t]
            cash[t] = K
            gap = np.where((gap == T) & (K < 0.0), t, gap)
        v3.update(funding_round=rounds, cash=cash, funding_gap_month=gap,
                  funding_to_find=np.maximum(0.0, -cash.min(axis=0)))
    to_microsoft = out["profit_share"] + out["revenue_share"] + out["microsoft_azure_margin"]
    if discount_rate is not None:
        s = np.arange(T) / 12.0
        factor = np.exp(-float(discount_rate) * s)
        pv_economic = factor @ to_microsoft
        v3.update(discount_factor=factor,
                  pv_cumulative_azure_spend=factor @ out["azure_spend"],
                  pv_cumulative_profit=factor @ out["profit"],
                  pv_microsoft_economic_return=pv_economic,
                  pv_microsoft_economic_net=pv_economic - float(deal.investment))
    if "microsoft_equity_stake" in theta:
        trailing = out["revenue"][max(T - 12, 0):].sum(axis=0)
        equity = theta["microsoft_equity_stake"] * theta["valuation_multiple"] * trailing
        v3.update(trailing_revenue=trailing, microsoft_equity_value=equity,
                  microsoft_whole_position=out["microsoft_economic_return"] + equity)
        if discount_rate is not None:
            pv_equity = equity * np.exp(-float(discount_rate) * (T - 1) / 12.0)
            v3.update(pv_microsoft_equity_value=pv_equity,
                      pv_microsoft_whole_position=v3["pv_microsoft_economic_return"]
                      + pv_equity)
    return v3


def annual_sums(out: dict[str, np.ndarray], grid: MonthGrid) -> dict[str, np.ndarray]:
    """Each flow of :data:`ANNUAL_FLOWS` summed by calendar year: name -> [years, N]
    (partial first and last years as partial sums)."""
    year = grid.year_of_month()
    return {name: np.array([out[name][year == y].sum(axis=0)
                            for y in range(len(grid.years))]) for name in ANNUAL_FLOWS}


def year_end_stocks(out: dict[str, np.ndarray], grid: MonthGrid) -> dict[str, np.ndarray]:
    """Each stock of :data:`STOCKS` (and of :data:`V3_STOCKS` the run has: OpenAI's cash
    with [funding]) at the last month of each calendar year (the horizon for the last
    one): name -> [years, N]."""
    year = grid.year_of_month()
    ends = [np.flatnonzero(year == y)[-1] for y in range(len(grid.years))]
    return {name: out[name][ends] for name in STOCKS + V3_STOCKS if name in out}
