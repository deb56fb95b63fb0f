"""Config parsing and validation (mcsim.config): valid configs load, bad ones get one clear
one-line ConfigError that names the dotted key and what was expected."""

from __future__ import annotations

import math

import pytest
from helpers import CONFIGS_DIR, MINIMAL_PARAMETERS, minimal_config_text

from mcsim.config import Config, ConfigError, load_config, parse_config_text
from mcsim.distributions import Distribution

LOGN = '{ dist = "lognormal", median = 2.0, sigma = 0.3 }'
DIST3 = {  # three per-path parameters for correlation cases
    "gpu_price_0": LOGN,
    "tokens_0": '{ dist = "lognormal", median = 3e13, sigma = 0.5 }',
    "users_growth": '{ dist = "normal", mean = 1.0, sd = 0.2 }',
}


def _identity_rows(change=None):
    rows = [[1.0 if i == j else 0.0 for j in range(5)] for i in range(5)]
    for (i, j), v in (change or {}).items():
        rows[i][j] = v
    return "[" + ", ".join("[" + ", ".join(repr(v) for v in r) + "]" for r in rows) + "]"


def _sym(i, j, v):
    return {(i, j): v, (j, i): v}


# --- valid configs -------------------------------------------------------------------------

def test_base_config_is_the_real_timeline(configs_dir):
    """base.toml: the 2019-25 terms from the start, the Oct 2025 recapitalisation, the April
    2026 amendment, the $250B commitment, version 2's cost and price forms."""
    config = load_config(configs_dir / "base.toml")
    deal = config.deal
    assert config.simulation.start == "2024-01" and config.simulation.horizon == "2040-12"
    assert deal.investment == 13e9 and deal.revenue_share == 0.2
    assert deal.profit_share_until_recouped == 0.75 and deal.reverse_share == 0.2
    assert [c.start for c in deal.changes] == ["2025-10", "2026-04"]
    recap, amendment = (dict(c.terms) for c in deal.changes)
    assert recap["profit_share_until_recouped"] == recap["profit_share_after"] == 0.0
    assert amendment["revenue_share_end"] == "2030-12"
    assert amendment["revenue_share_cap"] == 38e9 and amendment["reverse_share"] == 0.0
    assert deal.azure_commitment == 250e9
    for name in ("api_markup_0", "training_intensity_0", "other_opex_intensity_0",
                 "microsoft_ai_revenue_0", "azure_gross_margin"):
        assert name in config.parameters


def test_base_config_loads(configs_dir):
    """Version 1's base (v1_base.toml, formerly counterfactual_2019_terms.toml): the 2019-25
    terms throughout."""
    config = load_config(configs_dir / "v1_base.toml")
    assert isinstance(config, Config)
    assert config.simulation.start == "2024-01" and config.simulation.horizon == "2040-12"
    assert config.grid.num_months == 17 * 12
    assert set(MINIMAL_PARAMETERS) <= set(config.parameters)
    assert isinstance(config.parameters["gpu_price_0"], Distribution)
    for a, b, rho in config.correlation_pairs:  # calibration may change the pairs
        assert isinstance(config.parameters[a], Distribution)
        assert isinstance(config.parameters[b], Distribution)
        assert -1 < rho < 1
    assert config.deal.investment == 13e9 and config.deal.revenue_share == 0.2
    assert config.deal.recoup_from == ("profit_share",)


def test_base_config_text_parses_like_the_file(base_config_text):
    a = parse_config_text(base_config_text)
    b = load_config(CONFIGS_DIR / "v1_base.toml")
    assert a.parameters == b.parameters and a.deal == b.deal
    assert a.simulation == b.simulation


def test_amendment_config_extends_base(configs_dir):
    base = load_config(configs_dir / "v1_base.toml")
    amend = load_config(configs_dir / "amendment_2026.toml")
    assert amend.parameters == base.parameters
    assert amend.simulation == base.simulation
    assert amend.correlation_pairs == base.correlation_pairs
    assert amend.deal.revenue_share_end == "2030-12"
    assert amend.deal.revenue_share_cap == 38e9
    assert amend.deal.profit_share_until_recouped == 0.0
    assert amend.deal.profit_share_after == 0.0
    assert amend.deal.recoup_from == ("revenue_share",)


def test_minimal_config_parses_with_defaults():
    config = parse_config_text(minimal_config_text())
    assert len(config.parameters) == 33
    assert config.uncertain_parameters() == []
    assert config.deal.revenue_share == 0.0
    assert config.deal.profit_share_until_recouped == 0.75
    assert config.deal.profit_share_after == 0.49
    assert config.deal.loss_carryforward is True
    assert config.deal.recoup_from == ("profit_share",)
    assert config.deal.revenue_share_end is None and config.deal.revenue_share_cap is None
    assert config.deal.profit_cap is None and config.deal.azure_credits is None
    assert config.deal.losses_before_start == 0.0
    assert config.shock_correlation == tuple(
        tuple(1.0 if i == j else 0.0 for j in range(5)) for i in range(5))


@pytest.mark.parametrize("sections", [
    {"simulation": {"paths": None, "seed": None}},                  # both optional
    {"simulation": {"horizon": '"2024-01"'}},                       # one month
    {"simulation": {"seed": "9223372036854775807"}},                # 2^63 - 1
    {"parameters": {"training_spend_0": "0", "other_opex_0": "0.0"}},   # levels may be 0
    {"parameters": {"gpu_price_0": '{ dist = "normal", mean = 2.0, sd = 1.0, min = 0.0 }'}},
    {"parameters": {"utilization_0": '{ dist = "beta", alpha = 6, beta = 4 }'}},
    {"parameters": {"gpu_price_drift_inf": "-0.1", "gpu_price_drift_halflife": "4.0"}},
    {"parameters": {"token_growth_halflife":
                    '{ dist = "lognormal", median = 3, sigma = 0.3, max = 10 }'}},
    {"parameters": {"utilization_mean": '{ dist = "pert", low = 0.4, mode = 0.4, high = 0.9 }',
                    "users_0": '{ dist = "triangular", low = 1e8, mode = 1.4e8, high = 1.4e8 }'}},
    {"shocks": {"correlation": "[[1,0,0,0,0],[0,1,0,0,0],[0,0,1,0,0],[0,0,0,1,0],[0,0,0,0,1]]"}},
    {"shocks": {"correlation": _identity_rows(_sym(2, 3, 0.6))}},
    {"deal": {"revenue_share": "1", "profit_share_after": "0", "revenue_share_cap": "0",
              "recoup_from": '["profit_share", "revenue_share"]',
              "loss_carryforward": "false", "losses_before_start": "5e9",
              "revenue_share_end": '"2030-12"', "azure_credits": "10e9", "profit_cap": "92e9"}},
], ids=["no-paths-seed", "one-month", "max-seed", "zero-levels", "truncated-normal",
        "beta-unit", "rate-companions", "finite-halflife-dist", "mode-at-ends",
        "integer-identity-shocks", "shock-correlation", "full-deal"])
def test_valid_variants_parse(sections):
    config = parse_config_text(minimal_config_text(**sections))
    assert isinstance(config, Config)


def test_parsed_values_are_the_given_ones():
    text = minimal_config_text(
        simulation={"paths": "2500", "seed": "42"},
        parameters={"gpu_price_drift_inf": "-0.1", "gpu_price_drift_halflife": "4.0",
                    "gpu_price_0": '{ dist = "lognormal", p5 = 1.5, p95 = 4.0 }'},
        parameter_correlation={"pairs": '[["gpu_price_0", "tokens_0", 0.4]]'},
        deal={"revenue_share": "0.2", "recoup_from": '["revenue_share"]'})
    text = text.replace('tokens_0 = 3e13',
                        'tokens_0 = { dist = "uniform", low = 1e13, high = 5e13 }')
    config = parse_config_text(text)
    assert config.simulation.paths == 2500 and config.simulation.seed == 42
    assert config.parameters["gpu_price_drift_inf"] == -0.1
    assert config.parameters["utilization_0"] == 0.6
    d = config.parameters["gpu_price_0"]
    assert d.kind == "lognormal"
    assert d.params["median"] == pytest.approx(math.sqrt(6.0), rel=1e-15)
    assert config.uncertain_parameters() == ["gpu_price_0", "tokens_0"]
    assert config.correlation_pairs == (("gpu_price_0", "tokens_0", 0.4),)
    assert config.deal.revenue_share == 0.2 and config.deal.recoup_from == ("revenue_share",)


# --- bad configs ---------------------------------------------------------------------------

# (id, minimal_config_text kwargs, dotted key the message must name, expectation substring)
BAD = [
    # missing or unknown keys
    ("missing-parameter", {"parameters": {"users_cap": None}},
     "parameters.users_cap", "required"),
    ("missing-deal-table", {"deal": None}, "deal", "table"),
    ("missing-investment", {"deal": {"investment": None, "revenue_share": "0.2"}},
     "deal.investment", "> 0"),
    ("missing-start", {"simulation": {"start": None}}, "simulation.start", "YYYY-MM"),
    ("unknown-top-level-table", {"simulations": {"paths": "10"}},
     "simulations", "did you mean simulation?"),
    ("unknown-top-level-key", {"top": {"seed": "1"}}, "seed", "extends"),
    ("unknown-parameter", {"parameters": {"gpu_prize_0": "2.0"}},
     "parameters.gpu_prize_0", "did you mean parameters.gpu_price_0?"),
    ("unknown-deal-key", {"deal": {"revenue_shares": "0.2"}},
     "deal.revenue_shares", "did you mean deal.revenue_share?"),
    ("unknown-simulation-key", {"simulation": {"path": "10"}},
     "simulation.path", "did you mean simulation.paths?"),
    ("unknown-correlation-key", {"parameter_correlation": {"pair": "[]"}},
     "parameter_correlation.pair", "did you mean parameter_correlation.pairs?"),
    ("unknown-shocks-key", {"shocks": {"correlations": _identity_rows()}},
     "shocks.correlations", "did you mean shocks.correlation?"),
    ("unknown-dist", {"parameters": {"gpu_price_0": '{ dist = "lognorm", median = 2, sigma = 1 }'}},
     "parameters.gpu_price_0.dist", "lognormal"),
    ("missing-dist", {"parameters": {"gpu_price_0": "{ median = 2, sigma = 1 }"}},
     "parameters.gpu_price_0.dist", "one of"),
    ("unknown-dist-field",
     {"parameters": {"gpu_price_0": '{ dist = "lognormal", medain = 2, sigma = 1 }'}},
     "parameters.gpu_price_0.medain", "did you mean parameters.gpu_price_0.median?"),
    ("mixed-field-sets",
     {"parameters": {"gpu_price_drift": '{ dist = "normal", mean = 0, p95 = 1 }'}},
     "parameters.gpu_price_drift", "{mean, sd} or {p5, p95}"),
    # wrong types
    ("string-for-number", {"parameters": {"gpu_price_0": '"2.0"'}},
     "parameters.gpu_price_0", "a number"),
    ("bool-for-number", {"parameters": {"users_0": "true"}}, "parameters.users_0", "a number"),
    ("bool-in-deal", {"deal": {"revenue_share": "true"}}, "deal.revenue_share", "[0, 1]"),
    ("string-in-deal", {"deal": {"investment": '"13e9"'}}, "deal.investment", "(0, inf)"),
    ("string-dist-field",
     {"parameters": {"gpu_price_0": '{ dist = "lognormal", median = "2", sigma = 0.3 }'}},
     "parameters.gpu_price_0.median", "a finite number"),
    ("bool-dist-field",
     {"parameters": {"gpu_price_0": '{ dist = "lognormal", median = 2, sigma = true }'}},
     "parameters.gpu_price_0.sigma", "a finite number"),
    ("nan-parameter", {"parameters": {"gpu_price_vol": "nan"}},
     "parameters.gpu_price_vol", "[0, inf)"),
    ("list-parameter", {"parameters": {"gpu_price_vol": "[0.2]"}},
     "parameters.gpu_price_vol", "a number"),
    # distribution shapes
    ("sd-zero", {"parameters": {"gpu_price_drift": '{ dist = "normal", mean = 0, sd = 0 }'}},
     "parameters.gpu_price_drift.sd", "> 0"),
    ("sd-negative",
     {"parameters": {"gpu_price_drift": '{ dist = "normal", mean = 0, sd = -0.1 }'}},
     "parameters.gpu_price_drift.sd", "> 0"),
    ("sigma-zero", {"parameters": {"gpu_price_0": '{ dist = "lognormal", median = 2, sigma = 0 }'}},
     "parameters.gpu_price_0.sigma", "> 0"),
    ("median-negative",
     {"parameters": {"gpu_price_0": '{ dist = "lognormal", median = -2, sigma = 1 }'}},
     "parameters.gpu_price_0.median", "> 0"),
    ("normal-p5-equals-p95",
     {"parameters": {"gpu_price_drift": '{ dist = "normal", p5 = 0.1, p95 = 0.1 }'}},
     "parameters.gpu_price_drift.p95", "above p5"),
    ("lognormal-p5-above-p95",
     {"parameters": {"gpu_price_0": '{ dist = "lognormal", p5 = 4.0, p95 = 1.5 }'}},
     "parameters.gpu_price_0.p95", "above p5"),
    ("lognormal-p5-zero",
     {"parameters": {"gpu_price_0": '{ dist = "lognormal", p5 = 0.0, p95 = 1.5 }'}},
     "parameters.gpu_price_0.p5", "> 0"),
    ("uniform-low-above-high",
     {"parameters": {"users_0": '{ dist = "uniform", low = 2e8, high = 1e8 }'}},
     "parameters.users_0.high", "above low"),
    ("triangular-low-above-high",
     {"parameters": {"users_0": '{ dist = "triangular", low = 2e8, mode = 1.5e8, high = 1e8 }'}},
     "parameters.users_0.high", "above low"),
    ("pert-low-equals-high",
     {"parameters": {"users_cap": '{ dist = "pert", low = 3e9, mode = 3e9, high = 3e9 }'}},
     "parameters.users_cap.high", "above low"),
    ("pert-mode-above-high",
     {"parameters": {"utilization_mean":
                     '{ dist = "pert", low = 0.4, mode = 0.9, high = 0.85 }'}},
     "parameters.utilization_mean.mode", "in [low, high]"),
    ("triangular-mode-below-low",
     {"parameters": {"users_0": '{ dist = "triangular", low = 1e8, mode = 0.5e8, high = 2e8 }'}},
     "parameters.users_0.mode", "in [low, high]"),
    ("beta-alpha-zero",
     {"parameters": {"api_token_share": '{ dist = "beta", alpha = 0, beta = 2 }'}},
     "parameters.api_token_share.alpha", "> 0"),
    ("beta-beta-negative",
     {"parameters": {"api_token_share": '{ dist = "beta", alpha = 2, beta = -1 }'}},
     "parameters.api_token_share.beta", "> 0"),
    # domains of fixed values
    ("utilization_0-one", {"parameters": {"utilization_0": "1.0"}},
     "parameters.utilization_0", "(0, 1)"),
    ("utilization_0-zero", {"parameters": {"utilization_0": "0.0"}},
     "parameters.utilization_0", "(0, 1)"),
    ("utilization_mean-above-one", {"parameters": {"utilization_mean": "1.2"}},
     "parameters.utilization_mean", "(0, 1)"),
    ("conversion_0-zero", {"parameters": {"conversion_0": "0"}},
     "parameters.conversion_0", "(0, 1)"),
    ("conversion_0-negative", {"parameters": {"conversion_0": "-0.1"}},
     "parameters.conversion_0", "(0, 1)"),
    ("conversion_mean-one", {"parameters": {"conversion_mean": "1"}},
     "parameters.conversion_mean", "(0, 1)"),
    ("azure_share-above-one", {"parameters": {"azure_share_0": "1.2"}},
     "parameters.azure_share_0", "[0, 1]"),
    ("negative-level", {"parameters": {"training_spend_0": "-1.0"}},
     "parameters.training_spend_0", "[0, inf)"),
    ("zero-gpu-price", {"parameters": {"gpu_price_0": "0.0"}},
     "parameters.gpu_price_0", "(0, inf)"),
    ("negative-vol", {"parameters": {"token_vol": "-0.2"}}, "parameters.token_vol", "[0, inf)"),
    # distribution support vs the parameter's domain
    ("normal-for-positive-parameter",
     {"parameters": {"gpu_price_0": '{ dist = "normal", mean = 2.0, sd = 0.5 }'}},
     "parameters.gpu_price_0", "domain"),
    ("normal-min-below-domain",
     {"parameters": {"gpu_price_0": '{ dist = "normal", mean = 2.0, sd = 0.5, min = -1 }'}},
     "parameters.gpu_price_0", "domain"),
    ("normal-for-probability",
     {"parameters": {"utilization_0": '{ dist = "normal", mean = 0.6, sd = 0.1 }'}},
     "parameters.utilization_0", "domain"),
    ("uniform-beyond-unit",
     {"parameters": {"api_token_share": '{ dist = "uniform", low = 0.5, high = 1.5 }'}},
     "parameters.api_token_share", "domain"),
    # truncation
    ("min-equals-max",
     {"parameters": {"gpu_price_0":
                     '{ dist = "lognormal", median = 2, sigma = 0.3, min = 3, max = 3 }'}},
     "parameters.gpu_price_0.max", "above min"),
    ("min-above-max",
     {"parameters": {"gpu_price_0":
                     '{ dist = "lognormal", median = 2, sigma = 0.3, min = 4, max = 3 }'}},
     "parameters.gpu_price_0.max", "above min"),
    ("truncation-without-mass",
     {"parameters": {"gpu_price_0":
                     '{ dist = "uniform", low = 1, high = 2, min = 3, max = 4 }'}},
     "parameters.gpu_price_0", "probability mass"),
    ("truncation-beyond-float64",  # 1e200 sd out: its mass is below float64's range
     {"parameters": {"token_growth_0": '{ dist = "normal", mean = 0, sd = 1, min = 1e200 }'}},
     "parameters.token_growth_0", "probability mass"),
    ("truncation-beta-below-resolution",
     {"parameters": {"utilization_0":
                     '{ dist = "beta", alpha = 2, beta = 50, min = 0.9 }'}},
     "parameters.utilization_0", "probability mass"),
    # rate companions and half-lives
    ("inf-without-halflife", {"parameters": {"gpu_price_drift_inf": "-0.1"}},
     "parameters.gpu_price_drift_halflife", "both"),
    ("halflife-without-inf", {"parameters": {"training_growth_halflife": "3.0"}},
     "parameters.training_growth_inf", "both"),
    ("halflife-distribution-reaching-zero",
     {"parameters": {"token_growth_halflife": '{ dist = "normal", mean = 3, sd = 1 }'}},
     "parameters.token_growth_halflife", "domain"),
    ("halflife-zero", {"parameters": {"azure_share_halflife": "0"}},
     "parameters.azure_share_halflife", "(0, inf)"),
    ("halflife-infinite", {"parameters": {"token_growth_halflife": "inf"}},
     "parameters.token_growth_halflife", "(0, inf)"),
    # parameter correlation
    ("correlation-not-positive-definite",
     {"parameters": DIST3, "parameter_correlation": {"pairs":
      '[["gpu_price_0", "tokens_0", 0.9], ["gpu_price_0", "users_growth", 0.9], '
      '["tokens_0", "users_growth", -0.9]]'}},
     "parameter_correlation.pairs", "positive definite"),
    ("rho-one", {"parameters": DIST3,
                 "parameter_correlation": {"pairs": '[["gpu_price_0", "tokens_0", 1.0]]'}},
     "parameter_correlation.pairs[0][2]", "positive definite"),
    ("rho-minus-one", {"parameters": DIST3,
                       "parameter_correlation": {"pairs": '[["gpu_price_0", "tokens_0", -1]]'}},
     "parameter_correlation.pairs[0][2]", "(-1, 1)"),
    ("rho-above-one", {"parameters": DIST3,
                       "parameter_correlation": {"pairs": '[["gpu_price_0", "tokens_0", 1.5]]'}},
     "parameter_correlation.pairs[0][2]", "(-1, 1)"),
    ("rho-string", {"parameters": DIST3,
                    "parameter_correlation": {"pairs": '[["gpu_price_0", "tokens_0", "0.5"]]'}},
     "parameter_correlation.pairs[0][2]", "(-1, 1)"),
    ("self-pair", {"parameters": DIST3,
                   "parameter_correlation": {"pairs": '[["gpu_price_0", "gpu_price_0", 0.5]]'}},
     "parameter_correlation.pairs[0]", "two different parameters"),
    ("duplicate-pair", {"parameters": DIST3, "parameter_correlation": {"pairs":
                        '[["gpu_price_0", "tokens_0", 0.3], ["gpu_price_0", "tokens_0", 0.3]]'}},
     "parameter_correlation.pairs[1]", "once"),
    ("duplicate-pair-reversed", {"parameters": DIST3, "parameter_correlation": {"pairs":
                                 '[["gpu_price_0", "tokens_0", 0.3], '
                                 '["users_growth", "tokens_0", 0.1], '
                                 '["tokens_0", "gpu_price_0", 0.2]]'}},
     "parameter_correlation.pairs[2]", "once"),
    ("pair-unknown-parameter", {"parameters": DIST3, "parameter_correlation": {"pairs":
                                '[["gpu_prize_0", "tokens_0", 0.3]]'}},
     "parameter_correlation.pairs[0]", "did you mean gpu_price_0?"),
    ("pair-fixed-parameter", {"parameters": DIST3, "parameter_correlation": {"pairs":
                              '[["gpu_price_0", "users_cap", 0.3]]'}},
     "parameter_correlation.pairs[0]", "users_cap is fixed"),
    ("pair-absent-optional-parameter", {"parameters": DIST3, "parameter_correlation": {"pairs":
                                        '[["gpu_price_drift_inf", "tokens_0", 0.3]]'}},
     "parameter_correlation.pairs[0]", "not given"),
    ("pair-not-a-triple", {"parameters": DIST3, "parameter_correlation": {"pairs":
                           '[["gpu_price_0", "tokens_0"]]'}},
     "parameter_correlation.pairs[0]", "triple"),
    ("pairs-not-a-list", {"parameter_correlation": {"pairs": '"gpu_price_0"'}},
     "parameter_correlation.pairs", "list"),
    # shock correlation
    ("shocks-not-symmetric", {"shocks": {"correlation": _identity_rows({(0, 1): 0.3,
                                                                        (1, 0): 0.2})}},
     "shocks.correlation[0][1]", "symmetric"),
    ("shocks-diagonal-not-one", {"shocks": {"correlation": _identity_rows({(2, 2): 0.9})}},
     "shocks.correlation[2][2]", "1 on the diagonal"),
    ("shocks-not-positive-definite", {"shocks": {"correlation": _identity_rows(
        {**_sym(0, 1, 0.9), **_sym(0, 2, 0.9), **_sym(1, 2, -0.9)})}},
     "shocks.correlation", "positive definite"),
    ("shocks-singular", {"shocks": {"correlation": _identity_rows(_sym(3, 4, 1.0))}},
     "shocks.correlation", "positive definite"),
    ("shocks-entry-above-one", {"shocks": {"correlation": _identity_rows(_sym(1, 4, 1.5))}},
     "shocks.correlation[1][4]", "[-1, 1]"),
    ("shocks-4x4", {"shocks": {"correlation":
                               "[[1,0,0,0],[0,1,0,0],[0,0,1,0],[0,0,0,1]]"}},
     "shocks.correlation", "5x5"),
    ("shocks-ragged", {"shocks": {"correlation":
                                  "[[1,0,0,0,0],[0,1,0,0,0],[0,0,1,0,0],[0,0,0,1,0],[0,0,0,1]]"}},
     "shocks.correlation", "5x5"),
    ("shocks-string-entry", {"shocks": {"correlation": _identity_rows().replace("0.0", '"0"', 1)}},
     "shocks.correlation[0][1]", "a finite number"),
    # months
    ("month-13", {"simulation": {"start": '"2024-13"'}}, "simulation.start", "YYYY-MM"),
    ("month-00", {"simulation": {"horizon": '"2030-00"'}}, "simulation.horizon", "YYYY-MM"),
    ("two-digit-year", {"simulation": {"start": '"24-01"'}}, "simulation.start", "YYYY-MM"),
    ("month-not-a-string", {"simulation": {"start": "2024"}}, "simulation.start", "YYYY-MM"),
    ("horizon-before-start", {"simulation": {"start": '"2024-01"', "horizon": '"2023-12"'}},
     "simulation.horizon", "not before simulation.start"),
    ("bad-revenue-share-end", {"deal": {"revenue_share_end": '"2030-13"'}},
     "deal.revenue_share_end", "YYYY-MM"),
    # paths and seed
    ("paths-zero", {"simulation": {"paths": "0"}}, "simulation.paths", "an integer in [1,"),
    ("paths-negative", {"simulation": {"paths": "-5"}}, "simulation.paths", "an integer in [1,"),
    ("paths-fraction", {"simulation": {"paths": "1.5"}}, "simulation.paths", "an integer"),
    ("paths-string", {"simulation": {"paths": '"1000"'}}, "simulation.paths", "an integer"),
    ("paths-bool", {"simulation": {"paths": "true"}}, "simulation.paths", "an integer"),
    ("seed-negative", {"simulation": {"seed": "-1"}}, "simulation.seed", "an integer in [0,"),
    ("seed-2-to-63", {"simulation": {"seed": "9223372036854775808"}},
     "simulation.seed", "an integer in [0,"),
    ("seed-fraction", {"simulation": {"seed": "0.5"}}, "simulation.seed", "an integer"),
    # deal
    ("investment-zero", {"deal": {"investment": "0"}}, "deal.investment", "(0, inf)"),
    ("investment-negative", {"deal": {"investment": "-13e9"}}, "deal.investment", "(0, inf)"),
    ("revenue-share-above-one", {"deal": {"revenue_share": "1.2"}},
     "deal.revenue_share", "[0, 1]"),
    ("revenue-share-negative", {"deal": {"revenue_share": "-0.1"}},
     "deal.revenue_share", "[0, 1]"),
    ("profit-share-above-one", {"deal": {"profit_share_after": "1.49"}},
     "deal.profit_share_after", "[0, 1]"),
    ("negative-cap", {"deal": {"revenue_share_cap": "-1"}},
     "deal.revenue_share_cap", "[0, inf)"),
    ("negative-credits", {"deal": {"azure_credits": "-10e9"}},
     "deal.azure_credits", "[0, inf)"),
    ("negative-losses-before-start", {"deal": {"losses_before_start": "-1"}},
     "deal.losses_before_start", "[0, inf)"),
    ("deal-distribution",
     {"deal": {"revenue_share": '{ dist = "uniform", low = 0.1, high = 0.2 }'}},
     "deal.revenue_share", "[0, 1]"),
    ("recoup-from-empty", {"deal": {"recoup_from": "[]"}}, "deal.recoup_from", "non-empty"),
    ("recoup-from-unknown", {"deal": {"recoup_from": '["profit_share", "equity"]'}},
     "deal.recoup_from", "revenue_share"),
    ("recoup-from-duplicate", {"deal": {"recoup_from": '["profit_share", "profit_share"]'}},
     "deal.recoup_from", "each once"),
    ("recoup-from-string", {"deal": {"recoup_from": '"profit_share"'}},
     "deal.recoup_from", "list"),
    ("loss-carryforward-int", {"deal": {"loss_carryforward": "1"}},
     "deal.loss_carryforward", "true or false"),
    ("loss-carryforward-string", {"deal": {"loss_carryforward": '"true"'}},
     "deal.loss_carryforward", "true or false"),
]


@pytest.mark.parametrize("sections, key, expected", [c[1:] for c in BAD],
                         ids=[c[0] for c in BAD])
def test_bad_config_gets_one_clear_error(sections, key, expected):
    text = minimal_config_text(**sections)
    with pytest.raises(ConfigError) as info:
        parse_config_text(text)
    message = str(info.value)
    assert "\n" not in message and "\r" not in message, message
    assert info.value.key == key, message
    # the message names the dotted key (as a whole word) and what was expected
    assert f"{key} " in message or message.endswith(key) or f"{key}:" in message, message
    assert expected in message, message
    assert "expected" in message, message


def test_error_message_names_the_value_received():
    with pytest.raises(ConfigError) as info:
        parse_config_text(minimal_config_text(deal={"revenue_share": "1.5"}))
    assert str(info.value).endswith("deal.revenue_share = 1.5: expected a number in [0, 1]")


def test_non_positive_definite_is_never_repaired():
    # nearly-but-not-PD matrices must not be fixed silently: the config is rejected whole,
    # and so is the same set of pairs listed in any order
    pairs = ['["gpu_price_0", "tokens_0", 0.9]', '["gpu_price_0", "users_growth", 0.9]',
             '["tokens_0", "users_growth", -0.9]']
    for order in ([0, 1, 2], [2, 1, 0], [1, 2, 0]):
        text = minimal_config_text(parameters=DIST3, parameter_correlation={
            "pairs": "[" + ", ".join(pairs[i] for i in order) + "]"})
        with pytest.raises(ConfigError, match="positive definite"):
            parse_config_text(text)


# --- files ---------------------------------------------------------------------------------

def test_non_utf8_file(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes(minimal_config_text().replace("# ", "").encode("utf-8")
                     + b"\n# caf\xe9 \xff\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "\n" not in message
    assert "UTF-8" in message and str(path) in message


@pytest.mark.parametrize("cut", ["gpu_price_0 = {", "[deal", 'start = "2024'])
def test_truncated_toml_file(tmp_path, base_config_text, cut):
    path = tmp_path / "truncated.toml"
    path.write_text(base_config_text[:base_config_text.index(cut) + len(cut)], encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "\n" not in message
    assert "valid TOML" in message and str(path) in message


def test_invalid_toml_text():
    with pytest.raises(ConfigError) as info:
        parse_config_text(minimal_config_text() + "\nthis is = = not toml\n")
    assert "\n" not in str(info.value) and "valid TOML" in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.toml")
    assert "\n" not in str(info.value) and "nope.toml" in str(info.value)


def test_load_config_error_names_the_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(minimal_config_text(deal={"revenue_share": "2"}), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message and "deal.revenue_share" in message and "\n" not in message


def test_extends_overrides_one_parameter_and_replaces_deal(tmp_path, base_config_text):
    (tmp_path / "parent.toml").write_text(base_config_text, encoding="utf-8")
    child = tmp_path / "child.toml"
    child.write_text('extends = "parent.toml"\n\n[parameters]\ngpu_price_0 = 2.5\n\n'
                     '[deal]\ninvestment = 5e9\n', encoding="utf-8")
    parent = load_config(tmp_path / "parent.toml")
    config = load_config(child)
    # [parameters] merged key by key: one changed, the rest inherited
    assert config.parameters["gpu_price_0"] == 2.5
    assert isinstance(parent.parameters["gpu_price_0"], Distribution)
    others = {k: v for k, v in config.parameters.items() if k != "gpu_price_0"}
    assert others == {k: v for k, v in parent.parameters.items() if k != "gpu_price_0"}
    assert config.simulation == parent.simulation
    assert config.correlation_pairs == parent.correlation_pairs
    # [deal] replaced whole: the parent's revenue share and credits are gone (defaults)
    assert config.deal.investment == 5e9
    assert config.deal.revenue_share == 0.0 and parent.deal.revenue_share == 0.2
    assert config.deal.azure_credits is None and parent.deal.azure_credits == 10e9


def test_extends_chain_and_simulation_merge(tmp_path):
    (tmp_path / "a.toml").write_text(minimal_config_text(), encoding="utf-8")
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "b.toml").write_text('extends = "../a.toml"\n[simulation]\nseed = 7\n',
                                encoding="utf-8")
    (sub / "c.toml").write_text('extends = "b.toml"\n[simulation]\npaths = 64\n',
                                encoding="utf-8")
    config = load_config(sub / "c.toml")
    assert config.simulation.seed == 7 and config.simulation.paths == 64
    assert config.simulation.start == "2024-01"


def test_extends_error_in_child_is_reported(tmp_path):
    (tmp_path / "parent.toml").write_text(minimal_config_text(), encoding="utf-8")
    child = tmp_path / "child.toml"
    child.write_text('extends = "parent.toml"\n[parameters]\ngpu_prize_0 = 2.5\n',
                     encoding="utf-8")
    with pytest.raises(ConfigError, match=r"did you mean parameters\.gpu_price_0\?"):
        load_config(child)


def test_extends_missing_file_is_an_error(tmp_path):
    child = tmp_path / "child.toml"
    child.write_text('extends = "missing.toml"\n[deal]\ninvestment = 1e9\n', encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(child)
    message = str(info.value)
    assert "\n" not in message
    assert info.value.key == "extends" and "missing.toml" in message


def test_extends_cycle_is_an_error(tmp_path):
    (tmp_path / "a.toml").write_text('extends = "b.toml"\n', encoding="utf-8")
    (tmp_path / "b.toml").write_text('extends = "a.toml"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "a.toml")
    assert info.value.key == "extends" and "\n" not in str(info.value)


# --- half-lives drawn from unbounded distributions ------------------------------------------

@pytest.mark.parametrize("name, spec", [
    ("token_growth_halflife", '{ dist = "lognormal", p5 = 1.0, p95 = 5.0 }'),
    ("token_growth_halflife", '{ dist = "lognormal", median = 3, sigma = 0.3 }'),
    ("azure_share_halflife", '{ dist = "normal", mean = 3, sd = 1, min = 0.5 }'),
    ("token_growth_halflife", '{ dist = "lognormal", median = 1, sigma = 40 }'),  # 1e-140..1e140
])
def test_unbounded_halflife_distributions_parse(name, spec):
    """MODEL.md: every half-life must be finite and > 0; every draw of these is, so they are
    valid (they were refused with "a finite upper end (add max)")."""
    config = parse_config_text(minimal_config_text(parameters={name: spec}))
    assert isinstance(config.parameters[name], Distribution)
    companion = parse_config_text(minimal_config_text(parameters={
        "gpu_price_drift_inf": "-0.1", "gpu_price_drift_halflife": spec}))
    assert companion.parameters["gpu_price_drift_halflife"].support()[1] == math.inf


# --- truncation deep in a tail ---------------------------------------------------------------

@pytest.mark.parametrize("spec", [
    '{ dist = "normal", mean = 0.12, sd = 0.01, min = 0.19 }',      # +7 sd
    '{ dist = "normal", mean = 0.12, sd = 0.01, min = 0.22 }',      # +10 sd
    '{ dist = "normal", mean = 0.12, sd = 0.01, max = 0.045 }',     # -7.5 sd
    '{ dist = "normal", mean = 0.0, sd = 1.0, min = 40.0 }',        # mass 4e-350 (log space)
    '{ dist = "lognormal", median = 0.12, sigma = 0.1, max = 0.05 }',  # -8.75 sd
    '{ dist = "uniform", low = 0.0, high = 1e15, min = 0.0, max = 10.0 }',  # mass 1e-14
])
def test_deep_tail_truncations_with_positive_mass_parse(spec):
    config = parse_config_text(minimal_config_text(parameters={"token_growth_0": spec}))
    d = config.parameters["token_growth_0"]
    assert d.log_mass() > -math.inf and d.resolvable()


# --- inputs that used to raise a traceback instead of one ConfigError ----------------------

HUGE = "1" + "0" * 400  # an integer beyond float64's range


@pytest.mark.parametrize("sections, key", [
    ({"deal": {"investment": HUGE}}, "deal.investment"),
    ({"deal": {"azure_credits": HUGE}}, "deal.azure_credits"),
    ({"parameters": {"tokens_0": HUGE}}, "parameters.tokens_0"),
    ({"parameters": {"tokens_0": f'{{ dist = "uniform", low = 1, high = {HUGE} }}'}},
     "parameters.tokens_0.high"),
    ({"simulation": {"max_nonfinite_fraction": "-" + HUGE}},
     "simulation.max_nonfinite_fraction"),
])
def test_integer_too_large_for_a_float_is_a_config_error(sections, key):
    with pytest.raises(ConfigError) as info:
        parse_config_text(minimal_config_text(**sections))
    message = str(info.value)
    assert info.value.key == key and "\n" not in message and "expected" in message
    assert "401 digits" in message and len(message) < 300  # not the 400 digits themselves


def test_integer_too_large_via_overrides_is_a_config_error():
    """``mcsim run --set deal.investment=1000...`` goes through api.with_overrides."""
    from mcsim import with_overrides

    config = parse_config_text(minimal_config_text())
    with pytest.raises(ConfigError) as info:
        with_overrides(config, {"deal.investment": int(HUGE)})
    assert info.value.key == "deal.investment" and "\n" not in str(info.value)


@pytest.mark.parametrize("depth", [40, 300, 1000, 100_000])
def test_deeply_nested_arrays_are_a_config_error(depth):
    text = minimal_config_text() + "\n[observations]\nx = " + "[" * depth + "]" * depth + "\n"
    with pytest.raises(ConfigError) as info:
        parse_config_text(text)
    message = str(info.value)
    assert "\n" not in message and "nested at most" in message


def test_deeply_nested_document_is_a_config_error():
    """A dict nested 2000 deep (what a program may hand parse_config) is refused before
    anything recurses over it."""
    from mcsim.config import parse_config

    deep: dict = {}
    node = deep
    for _ in range(2000):
        node["a"] = {}
        node = node["a"]
    with pytest.raises(ConfigError) as info:
        parse_config({"simulation": deep})
    assert info.value.key.startswith("simulation.a.a") and "\n" not in str(info.value)


def test_fifo_config_is_refused_without_blocking(tmp_path):
    import os
    import threading

    fifo = tmp_path / "config.toml"
    os.mkfifo(fifo)
    result: list = []

    def load():
        try:
            load_config(fifo)
        except ConfigError as exc:
            result.append(exc)

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    worker.join(timeout=20)
    if worker.is_alive():  # blocked in open(): give it a writer so the thread can end
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("load_config blocked on a FIFO")
    assert result, "a FIFO was accepted as a config"
    message = str(result[0])
    assert "regular file" in message and str(fifo) in message and "\n" not in message


@pytest.mark.parametrize("path", ["/dev/zero", "/dev/null"])
def test_device_files_are_refused(path):
    import os

    if not os.path.exists(path):
        pytest.skip(f"no {path} here")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "regular file" in str(info.value) and path in str(info.value)


def test_directory_is_refused(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert "regular file" in str(info.value) and "\n" not in str(info.value)


def test_oversized_config_file_is_refused(tmp_path):
    from mcsim.config import MAX_CONFIG_BYTES

    big = tmp_path / "big.toml"
    with open(big, "wb") as f:  # sparse: costs no disk
        f.truncate(MAX_CONFIG_BYTES + 1)
    with pytest.raises(ConfigError) as info:
        load_config(big)
    assert "at most 10 MB" in str(info.value) and str(big) in str(info.value)


# --- version 2's keys: each bad value named ------------------------------------------------

V2_BAD = [
    # (extra TOML after a minimal config's [deal] / parameters, the key the error names)
    ('[[deal.change]]\nfrom = "2024-06"\ninvestment = 1e9\n', "deal.change[0].investment"),
    ('[[deal.change]]\nfrom = "2024-06"\nrevenue_share = 0.1\n[[deal.change]]\n'
     'from = "2024-06"\nrevenue_share = 0.2\n', "deal.change[1].from"),
    ('[[deal.change]]\nfrom = "2023-06"\nrevenue_share = 0.1\n', "deal.change[0].from"),
    ('[[deal.change]]\nrevenue_share = 0.1\n', "deal.change[0].from"),
    ('[[deal.change]]\nfrom = "2024-06"\n', "deal.change[0]"),
    ('[[deal.change]]\nfrom = "2024-06"\nreverse_share = 1.5\n', "deal.change[0].reverse_share"),
    ('[[deal.change]]\nfrom = "2024-06"\nzz = 1\n', "deal.change[0].zz"),
]
DEAL_BAD = [
    ({"azure_commitment": "250e9", "azure_commitment_from": '"2025-11"'},
     "deal.azure_commitment_by"),
    ({"azure_commitment": "250e9", "azure_commitment_from": '"2025-11"',
      "azure_commitment_by": '"2025-01"'}, "deal.azure_commitment_by"),
    ({"azure_commitment": "-1", "azure_commitment_from": '"2025-11"',
      "azure_commitment_by": '"2026-01"'}, "deal.azure_commitment"),
    ({"revenue_share_paid_before_start": "-1"}, "deal.revenue_share_paid_before_start"),
    ({"revenue_share_cap_from": '"2024-13"'}, "deal.revenue_share_cap_from"),
    ({"recoup_from": '["azure_margin", "nonsense"]'}, "deal.recoup_from"),
    ({"reverse_share": "0.2"}, "parameters.microsoft_ai_revenue_0"),
]
PARAM_BAD = [
    ({"api_markup_0": "2.0", "api_markup_drift": "0.0"}, "parameters.api_markup_0"),
    ({"api_revenue_per_mtok_0": None, "api_price_drift": None},
     "parameters.api_revenue_per_mtok_0"),
    ({"training_spend_0": None, "training_growth": None, "training_intensity_0": "0.5"},
     "parameters.training_intensity_drift"),
    ({"api_markup_drift_inf": "0.0", "api_markup_drift_halflife": "2.0"},
     "parameters.api_markup_drift_inf"),
    ({"azure_gross_margin": "1.5"}, "parameters.azure_gross_margin"),
]


@pytest.mark.parametrize("extra, key", V2_BAD)
def test_bad_deal_changes_are_named(extra, key):
    with pytest.raises(ConfigError) as info:
        parse_config_text(minimal_config_text() + "\n" + extra)
    assert info.value.key == key, str(info.value)


@pytest.mark.parametrize("deal, key", DEAL_BAD)
def test_bad_version_2_deal_fields_are_named(deal, key):
    with pytest.raises(ConfigError) as info:
        parse_config_text(minimal_config_text(deal=deal))
    assert info.value.key == key, str(info.value)


@pytest.mark.parametrize("parameters, key", PARAM_BAD)
def test_bad_version_2_parameters_are_named(parameters, key):
    with pytest.raises(ConfigError) as info:
        parse_config_text(minimal_config_text(parameters=parameters))
    assert info.value.key == key, str(info.value)


def test_version_2_keys_parse():
    cfg = parse_config_text(minimal_config_text(
        parameters={"api_revenue_per_mtok_0": None, "api_price_drift": None,
                    "api_markup_0": "2.0", "api_markup_drift": "0.1",
                    "microsoft_ai_revenue_0": "1e8", "microsoft_ai_revenue_growth": "0.5",
                    "azure_gross_margin": '{ dist = "pert", low = 0.2, mode = 0.4, high = 0.6 }'},
        deal={"reverse_share": "0.2", "recoup_from": '["revenue_share", "azure_margin"]',
              "azure_commitment": "250e9", "azure_commitment_from": '"2025-11"',
              "azure_commitment_by": '"2033-10"'})
        + '\n[[deal.change]]\nfrom = "2026-04"\nrevenue_share_cap = 38e9\nreverse_share = 0.0\n')
    assert [c.start for c in cfg.deal.changes] == ["2026-04"]
    assert cfg.deal.term_values("reverse_share") == [0.2, 0.0]
