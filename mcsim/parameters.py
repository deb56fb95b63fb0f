"""The model's parameter names, their domains and units (MODEL.md, "Config shape").

The position of a name in :data:`PARAMETER_NAMES` is its random-stream index: the uniform of
(path i, parameter j) is keyed by (seed, i, j). The order is therefore part of the
reproducibility contract; append, never reorder.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Domain:
    """An interval of allowed values; ``*_open`` says whether the end itself is excluded."""

    low: float
    high: float
    low_open: bool = False
    high_open: bool = False

    def contains(self, x: float) -> bool:
        if not math.isfinite(x):
            return False
        lo_ok = x > self.low if self.low_open else x >= self.low
        hi_ok = x < self.high if self.high_open else x <= self.high
        return lo_ok and hi_ok

    def contains_interval(self, a: float, b: float) -> bool:
        """Whether a continuous distribution with support [a, b] stays inside.

        Draws come from uniforms in the open interval (0, 1), so a support end may touch
        an open domain end: the end itself is never drawn.
        """
        return a >= self.low and b <= self.high

    def describe(self) -> str:
        lo = "(" if self.low_open else "["
        hi = ")" if self.high_open else "]"
        return f"{lo}{_fmt(self.low)}, {_fmt(self.high)}{hi}"


def _fmt(x: float) -> str:
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:g}"


INF = math.inf
REAL = Domain(-INF, INF, True, True)
POSITIVE = Domain(0.0, INF, True, True)
NON_NEGATIVE = Domain(0.0, INF, False, True)
OPEN_UNIT = Domain(0.0, 1.0, True, True)
CLOSED_UNIT = Domain(0.0, 1.0, False, False)

#: name -> (domain, unit); the 33 required parameters in MODEL.md's order.
REQUIRED: dict[str, tuple[Domain, str]] = {
    "gpu_price_0": (POSITIVE, "$ per H100-equivalent GPU-hour at start"),
    "gpu_price_drift": (REAL, "per year, in log"),
    "gpu_price_vol": (NON_NEGATIVE, "per sqrt(year)"),
    "utilization_0": (OPEN_UNIT, "fraction of paid GPU-hours doing useful work, at start"),
    "utilization_mean": (OPEN_UNIT, "long-run utilization"),
    "utilization_speed": (NON_NEGATIVE, "mean reversion per year (of logit)"),
    "utilization_vol": (NON_NEGATIVE, "per sqrt(year), of logit"),
    "tokens_0": (POSITIVE, "tokens served per month at start (ChatGPT and API)"),
    "token_growth_0": (REAL, "per year, in log, at start"),
    "token_growth_inf": (REAL, "per year, in log, long run"),
    "token_growth_halflife": (POSITIVE, "years"),
    "token_vol": (NON_NEGATIVE, "per sqrt(year)"),
    "tokens_per_gpu_hour_0": (POSITIVE, "tokens per GPU-hour at start"),
    "efficiency_growth": (REAL, "per year, in log"),
    "users_0": (POSITIVE, "weekly active users at start"),
    "users_cap": (POSITIVE, "weekly active users, logistic ceiling"),
    "users_growth": (REAL, "per year, logistic rate"),
    "users_vol": (NON_NEGATIVE, "per sqrt(year)"),
    "conversion_0": (OPEN_UNIT, "paying subscribers per weekly active user at start"),
    "conversion_mean": (OPEN_UNIT, "long-run paid conversion"),
    "conversion_speed": (NON_NEGATIVE, "mean reversion per year (of logit)"),
    "conversion_vol": (NON_NEGATIVE, "per sqrt(year), of logit"),
    "subscription_arpu": (NON_NEGATIVE, "$ per paying subscriber per month"),
    "api_revenue_per_mtok_0": (NON_NEGATIVE, "$ per million API tokens at start"),
    "api_price_drift": (REAL, "per year, in log"),
    "api_token_share": (CLOSED_UNIT, "fraction of tokens served through the API"),
    "training_spend_0": (NON_NEGATIVE, "$ per month at start"),
    "training_growth": (REAL, "per year, in log"),
    "azure_share_0": (CLOSED_UNIT, "Azure's share of compute spend at start"),
    "azure_share_inf": (CLOSED_UNIT, "Azure's long-run share of compute spend"),
    "azure_share_halflife": (POSITIVE, "years"),
    "other_opex_0": (NON_NEGATIVE, "$ per month at start"),
    "other_opex_growth": (REAL, "per year, in log"),
}

#: Version 2's parameters (MODEL.md "Version 2 additions", B), all optional: the reverse
#: revenue share's base, the two "tied to cost / revenue" alternative forms and Microsoft's
#: Azure margin. Appended after version 1's names: the stream order is a contract.
V2_PARAMETERS: dict[str, tuple[Domain, str]] = {
    "microsoft_ai_revenue_0": (NON_NEGATIVE, "$ per month at start: Microsoft's revenue "
                               "from OpenAI models (Azure OpenAI, Bing) owing the reverse "
                               "share"),
    "microsoft_ai_revenue_growth": (REAL, "per year, in log"),
    "api_markup_0": (POSITIVE, "API price over inference cost per token, at start"),
    "api_markup_drift": (REAL, "per year, in log"),
    "training_intensity_0": (NON_NEGATIVE, "training spend per $ of revenue, at start"),
    "training_intensity_drift": (REAL, "per year, in log"),
    "other_opex_intensity_0": (NON_NEGATIVE, "other operating cost per $ of revenue, at "
                               "start"),
    "other_opex_intensity_drift": (REAL, "per year, in log"),
    "azure_gross_margin": (CLOSED_UNIT, "Microsoft's gross margin on OpenAI's Azure bill"),
}

#: Rates whose bare name is r_0 and which may decay toward ``NAME_inf`` with ``NAME_halflife``.
V1_DECAYING_RATES = ("gpu_price_drift", "efficiency_growth", "training_growth",
                     "api_price_drift", "other_opex_growth")
V2_DECAYING_RATES = ("microsoft_ai_revenue_growth", "api_markup_drift",
                     "training_intensity_drift", "other_opex_intensity_drift")
DECAYING_RATES = V1_DECAYING_RATES + V2_DECAYING_RATES


def _companions(rates: tuple[str, ...]) -> dict[str, tuple[Domain, str]]:
    out = {}
    for rate in rates:
        out[f"{rate}_inf"] = (REAL, "per year, in log, long run")
        out[f"{rate}_halflife"] = (POSITIVE, "years")
    return out


#: Version 3's parameters (MODEL.md "Version 3 additions", E and G), all optional: OpenAI's
#: cash at the start (given as ``funding.cash_0``), Microsoft's equity stake and the
#: valuation multiple of OpenAI's trailing revenue. Appended: the stream order is a contract.
V3_PARAMETERS: dict[str, tuple[Domain, str]] = {
    "cash_0": (NON_NEGATIVE, "$ available to OpenAI at the start (funding.cash_0)"),
    "microsoft_equity_stake": (CLOSED_UNIT, "fraction of OpenAI that Microsoft owns"),
    "valuation_multiple": (POSITIVE, "OpenAI's value at the horizon per $ of its revenue "
                           "over the run's last 12 months"),
}
#: Parameters given in [funding], not in [parameters].
FUNDING_PARAMETERS = ("cash_0",)
#: Parameters the kernel also takes in float64 (``_f64_NAME`` of its draws): they enter
#: only float64 sums (cash, Microsoft's equity value), so a float32 kernel must not round
#: them ($13B is $12,999,999,488 in float32; $1e39 of cash is inf).
FLOAT64_PARAMETERS = tuple(V3_PARAMETERS)

OPTIONAL: dict[str, tuple[Domain, str]] = _companions(V1_DECAYING_RATES) | V2_PARAMETERS \
    | _companions(V2_DECAYING_RATES) | V3_PARAMETERS

#: Items given in one of two forms (exactly one, each form complete): version 1's level
#: and rate, or version 2's markup on cost / intensity of revenue.
ALTERNATIVE_FORMS: dict[str, tuple[tuple[str, str], tuple[str, str]]] = {
    "the API price": (("api_revenue_per_mtok_0", "api_price_drift"),
                      ("api_markup_0", "api_markup_drift")),
    "training spend": (("training_spend_0", "training_growth"),
                       ("training_intensity_0", "training_intensity_drift")),
    "other operating cost": (("other_opex_0", "other_opex_growth"),
                             ("other_opex_intensity_0", "other_opex_intensity_drift")),
}
#: Required in every config: version 1's 33 names but the alternative forms' first forms.
ALWAYS_REQUIRED = tuple(n for n in REQUIRED
                        if not any(n in form for forms in ALTERNATIVE_FORMS.values()
                                   for form in forms))
#: Required when some reverse_share > 0.
REVERSE_SHARE_PARAMETERS = ("microsoft_ai_revenue_0", "microsoft_ai_revenue_growth")

PARAMETER_NAMES: tuple[str, ...] = tuple(REQUIRED) + tuple(OPTIONAL)
PARAMETER_INDEX: dict[str, int] = {n: i for i, n in enumerate(PARAMETER_NAMES)}
DOMAINS: dict[str, Domain] = {n: d for n, (d, _) in (REQUIRED | OPTIONAL).items()}
UNITS: dict[str, str] = {n: u for n, (_, u) in (REQUIRED | OPTIONAL).items()}

#: Half-lives must be finite as well as positive.
HALFLIVES = tuple(n for n in PARAMETER_NAMES if n.endswith("_halflife"))

SHOCK_NAMES = ("price", "utilization", "tokens", "users", "conversion")

#: Parameters in (0, 1) whose logits the model uses (the logit states' starts and the
#: levels they revert to); the draws carry each as ``_logit_NAME``, computed in float64.
LOGIT_PARAMETERS = ("utilization_0", "utilization_mean", "conversion_0", "conversion_mean")
