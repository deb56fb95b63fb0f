"""``[observations.NAME]`` (MODEL.md v2 C: a flow, a sum of flows or a stock at a month, with
a normal or Student-t error and an optional bias factor) and ``[conditioning]``: every
accepted form parses to the right value, every bad one is one ConfigError naming the key and
the value, and configs/observed.toml conditions on facts of every kind."""

from __future__ import annotations

import dataclasses
import itertools
import math
import re

import pytest
from helpers import CONFIGS_DIR, minimal_config_text

from mcsim.config import (
    BIAS_KINDS,
    CONDITIONING_METHODS,
    ConditioningConfig,
    ConfigError,
    Observation,
    load_config,
    parse_config_text,
)
from mcsim.distributions import Z95, Distribution
from mcsim.layout import ANNUAL_FLOWS, SIGNED_FLOWS, STOCKS
from mcsim.overrides import parse_override, with_overrides

BASE = CONFIGS_DIR / "base.toml"
OBSERVED = CONFIGS_DIR / "observed.toml"
GRID_TEXT = "2024-01 to 2026-12"  # the minimal config's months
FLOW = {"flow": '"azure_inference_spend"', "start": '"2024-01"', "end": '"2024-12"'}
FLOWS = {"flows": '["azure_spend", "revenue_share"]', "start": '"2025-01"',
         "end": '"2025-12"'}
STOCK = {"stock": '"weekly_active_users"', "month": '"2025-10"'}


def _obs(fields: dict[str, str | None], base: dict[str, str] | None = None) -> str:
    """A minimal config with one observation ``a``: ``base`` (default: a flow with value
    and sd) updated by ``fields`` (TOML literal text; None removes a key)."""
    spec = dict(FLOW if base is None else base)
    spec.setdefault("value", "3.77e9")
    if "rel_sd" not in spec and "sd" not in spec:
        spec["sd"] = "2e8"
    spec.update(fields)
    return minimal_config_text(**{"observations.a": {k: v for k, v in spec.items()
                                                     if v is not None}})


def _parse_one(fields: dict, base: dict | None = None) -> Observation:
    (obs,) = parse_config_text(_obs(fields, base)).observations
    return obs


def _error(text: str) -> str:
    with pytest.raises(ConfigError) as err:
        parse_config_text(text)
    return str(err.value)


def _assert_names(message: str, key: str, value=None, missing: bool = False,
                  expected: str = "") -> None:
    if missing:
        assert message.startswith(f"{key} is missing: expected "), message
    else:
        assert message.startswith(f"{key} = {value!r}: expected "), message
    assert expected in message, message
    assert "\n" not in message


# --- the dataclasses ------------------------------------------------------------------------

def test_observation_dataclass_is_exactly_the_documented_one():
    fields = [(f.name, f.default) for f in dataclasses.fields(Observation)]
    nothing = dataclasses.MISSING
    assert fields == [("name", nothing), ("series", nothing), ("start", nothing),
                      ("end", nothing), ("value", nothing), ("sd", nothing),
                      ("error", "normal"), ("dof", math.inf), ("bias", None)]
    obs = Observation("x", ("revenue", "profit"), "2024-01", "2024-12", 1.0, 0.1)
    assert obs.flow == "revenue+profit" and not obs.stock
    assert Observation("w", ("weekly_active_users",), "2025-10", "2025-10", 8e8, 4e7).stock
    with pytest.raises(dataclasses.FrozenInstanceError):
        obs.value = 2.0  # type: ignore[misc]


def test_conditioning_dataclass_defaults():
    c = ConditioningConfig()
    assert (c.method, c.particles, c.ess_fraction, c.moves, c.runs, c.seed, c.move,
            c.mixing_threshold) == ("smc", 1024, 0.5, 15, 16, None, "preconditioned", 0.2)
    assert CONDITIONING_METHODS == ("smc", "importance")
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.runs = 3  # type: ignore[misc]
    cfg = parse_config_text(minimal_config_text())
    assert cfg.conditioning == ConditioningConfig() and cfg.observations == ()


# --- accepted forms -------------------------------------------------------------------------

def test_flow_form():
    obs = _parse_one({})
    assert obs == Observation("a", ("azure_inference_spend",), "2024-01", "2024-12", 3.77e9,
                              2e8)
    assert obs.flow == "azure_inference_spend" and not obs.stock


@pytest.mark.parametrize("flow", ANNUAL_FLOWS)
def test_every_annual_flow_is_observable(flow):
    obs = _parse_one({"flow": f'"{flow}"'})
    assert obs.series == (flow,)


def test_flows_form_sums_distinct_flows():
    obs = _parse_one({}, FLOWS)
    assert obs.series == ("azure_spend", "revenue_share")
    assert (obs.start, obs.end) == ("2025-01", "2025-12")
    assert obs.flow == "azure_spend+revenue_share" and not obs.stock
    every = _parse_one({"flows": "[" + ", ".join(f'"{f}"' for f in ANNUAL_FLOWS) + "]"},
                       FLOWS)
    assert every.series == ANNUAL_FLOWS
    one = _parse_one({"flows": '["revenue"]'}, FLOWS)
    assert one.series == ("revenue",)


@pytest.mark.parametrize("stock", STOCKS)
def test_stock_form_at_a_month(stock):
    obs = _parse_one({"stock": f'"{stock}"', "value": "0.5"}, STOCK)
    assert obs.series == (stock,) and obs.stock
    assert obs.start == obs.end == "2025-10"
    assert obs.value == 0.5 and obs.flow == stock


def test_stock_at_the_grid_ends():
    assert _parse_one({"month": '"2024-01"'}, STOCK).start == "2024-01"
    assert _parse_one({"month": '"2026-12"'}, STOCK).end == "2026-12"


def test_rel_sd_is_a_fraction_of_the_value():
    obs = _parse_one({"sd": None, "rel_sd": "0.05"})
    assert obs.sd == pytest.approx(0.05 * 3.77e9)
    users = _parse_one({"value": "8e8", "sd": None, "rel_sd": "0.1"}, STOCK)
    assert users.sd == pytest.approx(8e7)


@pytest.mark.parametrize("flow", SIGNED_FLOWS)
def test_signed_flows_take_any_finite_value(flow):
    neg = _parse_one({"flow": f'"{flow}"', "value": "-7.8e9", "sd": None, "rel_sd": "0.15"})
    assert neg.value == -7.8e9 and neg.sd == pytest.approx(0.15 * 7.8e9)
    zero = _parse_one({"flow": f'"{flow}"', "value": "0.0", "sd": "1e8"})
    assert zero.value == 0.0 and zero.sd == 1e8
    # a sum including a signed flow is signed too
    mixed = _parse_one({"flows": f'["revenue", "{flow}"]', "value": "-1e9"}, FLOWS)
    assert mixed.value == -1e9


def test_student_t_error():
    obs = _parse_one({"error": '"student_t"', "dof": "4"})
    assert obs.error == "student_t" and obs.dof == 4.0
    assert _parse_one({"error": '"student_t"', "dof": "0.5"}).dof == 0.5
    normal = _parse_one({"error": '"normal"'})
    assert normal.error == "normal" and normal.dof == math.inf


def test_bias_number():
    assert _parse_one({"bias": "1.1"}).bias == 1.1
    assert _parse_one({"bias": "1"}).bias == 1.0
    assert _parse_one({}).bias is None


@pytest.mark.parametrize("text, kind, params", [
    ('{ dist = "lognormal", median = 1.0, sigma = 0.1 }', "lognormal",
     {"median": 1.0, "sigma": 0.1}),
    ('{ dist = "lognormal", p5 = 0.8, p95 = 1.25 }', "lognormal",
     {"median": math.sqrt(0.8 * 1.25), "sigma": math.log(1.25 / 0.8) / (2 * Z95)}),
    ('{ dist = "uniform", low = 0.9, high = 1.2 }', "uniform", {"low": 0.9, "high": 1.2}),
    ('{ dist = "triangular", low = 0.8, mode = 1.0, high = 1.3 }', "triangular",
     {"low": 0.8, "mode": 1.0, "high": 1.3}),
    ('{ dist = "triangular", high = 1.3, low = 0.8, mode = 0.8 }', "triangular",
     {"low": 0.8, "mode": 0.8, "high": 1.3}),
])
def test_bias_distribution_has_canonical_fields(text, kind, params):
    bias = _parse_one({"bias": text}).bias
    assert isinstance(bias, Distribution)
    assert bias.kind == kind and list(bias.params) == list(params)
    for name, value in params.items():
        assert bias.params[name] == pytest.approx(value, rel=1e-12)
    assert bias.lower == -math.inf and bias.upper == math.inf  # never truncated
    assert bias.support()[0] >= 0.0
    assert BIAS_KINDS == ("lognormal", "uniform", "triangular")


SERIES_FORMS = {"flow": FLOW, "flows": FLOWS, "stock": STOCK}
SD_FORMS = {"sd": {"sd": "1.5e8"}, "rel_sd": {"rel_sd": "0.1"}}
ERROR_FORMS = {"default": {}, "normal": {"error": '"normal"'},
               "student_t": {"error": '"student_t"', "dof": "5"}}
BIAS_FORMS = {"none": None, "number": "0.9",
              "lognormal": '{ dist = "lognormal", p5 = 0.8, p95 = 1.25 }',
              "uniform": '{ dist = "uniform", low = 0.8, high = 1.2 }',
              "triangular": '{ dist = "triangular", low = 0.8, mode = 1.0, high = 1.25 }'}


@pytest.mark.parametrize("series, sd, error, bias", list(itertools.product(
    SERIES_FORMS, SD_FORMS, ERROR_FORMS, BIAS_FORMS)))
def test_every_valid_combination_parses(series, sd, error, bias):
    spec = {**SERIES_FORMS[series], "value": "4e8", **SD_FORMS[sd], **ERROR_FORMS[error]}
    if BIAS_FORMS[bias] is not None:
        spec["bias"] = BIAS_FORMS[bias]
    obs = _parse_one({}, spec)
    assert obs.name == "a" and obs.value == 4e8
    assert obs.stock == (series == "stock")
    assert obs.series == {"flow": ("azure_inference_spend",),
                          "flows": ("azure_spend", "revenue_share"),
                          "stock": ("weekly_active_users",)}[series]
    assert (obs.start, obs.end) == {"flow": ("2024-01", "2024-12"),
                                    "flows": ("2025-01", "2025-12"),
                                    "stock": ("2025-10", "2025-10")}[series]
    assert obs.sd == pytest.approx(1.5e8 if sd == "sd" else 4e7)
    assert obs.error == ("student_t" if error == "student_t" else "normal")
    assert obs.dof == (5.0 if error == "student_t" else math.inf)
    if bias == "none":
        assert obs.bias is None
    elif bias == "number":
        assert obs.bias == 0.9
    else:
        assert isinstance(obs.bias, Distribution) and obs.bias.kind == bias


def test_several_observations_keep_their_order():
    text = minimal_config_text(**{
        "observations.z": {**FLOW, "value": "1e9", "sd": "1e8"},
        "observations.b": {**STOCK, "value": "8e8", "rel_sd": "0.05"},
        "observations.m": {**FLOWS, "value": "2e9", "sd": "1e8"}})
    assert [o.name for o in parse_config_text(text).observations] == ["z", "b", "m"]


# --- bad observations -----------------------------------------------------------------------

BIAS_REFUSED = "one of lognormal, uniform, triangular (a positive factor with a closed-form " \
    "quantile)"
K = "observations.a"

#: (fields, base, key, value received (None: missing), text the message must hold)
BAD = [
    # what is observed
    ({"flow": '"tokens"'}, None, f"{K}.flow", "tokens", "paid_to_microsoft"),
    ({"flow": "3"}, None, f"{K}.flow", 3, "one of azure_spend"),
    ({"flow": '["revenue"]'}, None, f"{K}.flow", ["revenue"], "one of azure_spend"),
    ({"flows": "[]"}, FLOWS, f"{K}.flows", [], "non-empty list"),
    ({"flows": '"revenue"'}, FLOWS, f"{K}.flows", "revenue", "non-empty list"),
    ({"flows": '["revenue", "tokens"]'}, FLOWS, f"{K}.flows[1]", "tokens", "one of"),
    ({"flows": '["revenue", 1]'}, FLOWS, f"{K}.flows[1]", 1, "one of"),
    ({"flows": '["revenue", "revenue"]'}, FLOWS, f"{K}.flows[1]", "revenue", "once"),
    ({"flows": '["revenue"]'}, None, f"{K}.flows", ["revenue"], "only one of flow, flows"),
    ({"stock": '"weekly_active_users"'}, None, f"{K}.stock", "weekly_active_users",
     "only one of flow, flows or stock"),
    ({"flow": None}, None, f"{K}.flow", None, "flows (a list of them, summed) or stock"),
    ({"stock": '"users"'}, STOCK, f"{K}.stock", "users",
     "one of " + ", ".join(STOCKS)),
    ({"stock": "1"}, STOCK, f"{K}.stock", 1, "weekly_active_users"),
    # windows
    ({"start": '"2025-01"'}, STOCK, f"{K}.start", "2025-01", "month"),
    ({"end": '"2025-01"'}, STOCK, f"{K}.end", "2025-01", "month"),
    ({"month": None}, STOCK, f"{K}.month", None, "YYYY-MM"),
    ({"month": '"2023-12"'}, STOCK, f"{K}.month", "2023-12", GRID_TEXT),
    ({"month": '"2027-01"'}, STOCK, f"{K}.month", "2027-01", GRID_TEXT),
    ({"month": '"2025-13"'}, STOCK, f"{K}.month", "2025-13", "YYYY-MM"),
    ({"month": "202510"}, STOCK, f"{K}.month", 202510, "YYYY-MM"),
    ({"month": '"2025-10"'}, None, f"{K}.month", "2025-10", "no month with flow"),
    ({"month": '"2025-10"'}, FLOWS, f"{K}.month", "2025-10", "no month with flow"),
    ({"start": None}, None, f"{K}.start", None, "YYYY-MM"),
    ({"end": None}, FLOWS, f"{K}.end", None, "YYYY-MM"),
    ({"start": '"2023-12"'}, None, f"{K}.start", "2023-12", GRID_TEXT),
    ({"end": '"2027-01"'}, FLOWS, f"{K}.end", "2027-01", GRID_TEXT),
    ({"start": '"2024-06"', "end": '"2024-05"'}, None, f"{K}.end", "2024-05", "not before"),
    ({"start": "2024"}, None, f"{K}.start", 2024, "YYYY-MM"),
    # value
    ({"value": None}, None, f"{K}.value", None, "observed value ($)"),
    ({"value": None}, STOCK, f"{K}.value", None, "users"),
    ({"value": "-1.0"}, None, f"{K}.value", -1.0, "> 0"),
    ({"value": "0.0"}, None, f"{K}.value", 0.0, "> 0"),
    ({"value": "0.0"}, STOCK, f"{K}.value", 0.0, "> 0"),
    ({"value": "-5e8"}, FLOWS, f"{K}.value", -5e8, "> 0"),
    ({"value": '"1e9"'}, None, f"{K}.value", "1e9", "number"),
    ({"value": "true"}, None, f"{K}.value", True, "number"),
    ({"value": "nan"}, None, f"{K}.value", math.nan, "number"),
    ({"value": "inf"}, None, f"{K}.value", math.inf, "number"),
    ({"flow": '"profit"', "value": "-inf"}, None, f"{K}.value", -math.inf, "finite"),
    ({"flow": '"profit"', "value": "true"}, None, f"{K}.value", True, "finite"),
    # sd / rel_sd
    ({"rel_sd": "0.1"}, None, f"{K}.sd", 2e8, "exactly one of sd"),
    ({"sd": None}, None, f"{K}.sd", None, "exactly one of sd"),
    ({"sd": "0.0"}, None, f"{K}.sd", 0.0, "(0, inf)"),
    ({"sd": "-1e8"}, None, f"{K}.sd", -1e8, "(0, inf)"),
    ({"sd": '"big"'}, None, f"{K}.sd", "big", "(0, inf)"),
    ({"sd": "true"}, None, f"{K}.sd", True, "(0, inf)"),
    ({"sd": None, "rel_sd": "0.0"}, None, f"{K}.rel_sd", 0.0, "(0, inf)"),
    ({"sd": None, "rel_sd": "-0.1"}, None, f"{K}.rel_sd", -0.1, "(0, inf)"),
    ({"sd": None, "rel_sd": "nan"}, None, f"{K}.rel_sd", math.nan, "(0, inf)"),
    ({"flow": '"profit"', "value": "0.0", "sd": None, "rel_sd": "0.1"}, None,
     f"{K}.rel_sd", 0.1, "value is 0"),
    ({"sd": None, "rel_sd": "1e300", "value": "1e300"}, None, f"{K}.rel_sd", 1e300,
     "finite"),
    # error / dof
    ({"error": '"cauchy"'}, None, f"{K}.error", "cauchy", '"normal", "student_t"'),
    ({"error": '"t"'}, None, f"{K}.error", "t", '"student_t"'),
    ({"error": "1"}, None, f"{K}.error", 1, '"student_t"'),
    ({"dof": "4"}, None, f"{K}.dof", 4, 'no dof with error = "normal"'),
    ({"error": '"normal"', "dof": "4"}, None, f"{K}.dof", 4, 'error = "student_t"'),
    ({"error": '"student_t"'}, None, f"{K}.dof", None, "student_t"),
    ({"error": '"student_t"', "dof": "0"}, None, f"{K}.dof", 0, "(0, inf)"),
    ({"error": '"student_t"', "dof": "-3"}, None, f"{K}.dof", -3, "(0, inf)"),
    ({"error": '"student_t"', "dof": "inf"}, None, f"{K}.dof", math.inf, "(0, inf)"),
    ({"error": '"student_t"', "dof": "true"}, None, f"{K}.dof", True, "(0, inf)"),
    ({"error": '"student_t"', "dof": '"4"'}, None, f"{K}.dof", "4", "(0, inf)"),
    # bias: numbers
    ({"bias": "0"}, None, f"{K}.bias", 0, "> 0"),
    ({"bias": "-1.0"}, None, f"{K}.bias", -1.0, "> 0"),
    ({"bias": "true"}, None, f"{K}.bias", True, "> 0"),
    ({"bias": '"1.1"'}, None, f"{K}.bias", "1.1", "distribution table"),
    ({"bias": "inf"}, None, f"{K}.bias", math.inf, "> 0"),
    ({"bias": "[1.0]"}, None, f"{K}.bias", [1.0], "> 0"),
    # bias: refused kinds
    ({"bias": '{ dist = "normal", mean = 1.0, sd = 0.1 }'}, None, f"{K}.bias.dist", "normal",
     BIAS_REFUSED),
    ({"bias": '{ dist = "pert", low = 0.8, mode = 1.0, high = 1.2 }'}, None,
     f"{K}.bias.dist", "pert", BIAS_REFUSED),
    ({"bias": '{ dist = "beta", alpha = 2.0, beta = 2.0 }'}, None, f"{K}.bias.dist", "beta",
     BIAS_REFUSED),
    ({"bias": '{ dist = "gamma", shape = 2.0 }'}, None, f"{K}.bias.dist", "gamma",
     BIAS_REFUSED),
    ({"bias": '{ dist = 1 }'}, None, f"{K}.bias.dist", 1, BIAS_REFUSED),
    ({"bias": '{ median = 1.0, sigma = 0.1 }'}, None, f"{K}.bias.dist", None, BIAS_REFUSED),
    # bias: truncation, fields, shapes, support
    ({"bias": '{ dist = "lognormal", median = 1.0, sigma = 0.1, min = 0.5 }'}, None,
     f"{K}.bias.min", 0.5, "no min/max"),
    ({"bias": '{ dist = "uniform", low = 0.8, high = 1.2, max = 1.1 }'}, None,
     f"{K}.bias.max", 1.1, "no min/max"),
    ({"bias": '{ dist = "lognormal", mean = 1.0, sigma = 0.1 }'}, None, f"{K}.bias.mean",
     "<unknown key>", "median"),
    ({"bias": '{ dist = "lognormal", median = 1.0, sigma = "x" }'}, None,
     f"{K}.bias.sigma", "x", "finite number"),
    ({"bias": '{ dist = "lognormal", median = 0.0, sigma = 0.1 }'}, None,
     f"{K}.bias.median", 0.0, "> 0"),
    ({"bias": '{ dist = "lognormal", median = 1.0, sigma = 0.0 }'}, None,
     f"{K}.bias.sigma", 0.0, "> 0"),
    ({"bias": '{ dist = "lognormal", p5 = -0.5, p95 = 1.2 }'}, None, f"{K}.bias.p5", -0.5,
     "> 0"),
    ({"bias": '{ dist = "lognormal", p5 = 1.2, p95 = 0.8 }'}, None, f"{K}.bias.p95", 0.8,
     "above p5"),
    ({"bias": '{ dist = "uniform", low = 0.0, high = 1.2 }'}, None, f"{K}.bias.low", 0.0,
     "> 0"),
    ({"bias": '{ dist = "uniform", low = -0.5, high = 1.2 }'}, None, f"{K}.bias.low", -0.5,
     "> 0"),
    ({"bias": '{ dist = "uniform", low = 1.2, high = 0.8 }'}, None, f"{K}.bias.high", 0.8,
     "above low"),
    ({"bias": '{ dist = "triangular", low = 0.0, mode = 1.0, high = 1.2 }'}, None,
     f"{K}.bias.low", 0.0, "> 0"),
    ({"bias": '{ dist = "triangular", low = 0.8, mode = 1.5, high = 1.2 }'}, None,
     f"{K}.bias.mode", 1.5, "[low, high]"),
    # unknown keys, not a table
    ({"tolerance": "1"}, None, f"{K}.tolerance", "<unknown key>", "expected"),
    ({"stocks": '"weekly_active_users"'}, STOCK, f"{K}.stocks", "<unknown key>",
     "did you mean observations.a.stock"),
]


def _bad_id(case) -> str:
    fields, _, key, _, _ = case
    return key.removeprefix(K + ".") + ":" + ",".join(f"{k}={v}" for k, v in fields.items())


@pytest.mark.parametrize("fields, base, key, value, expected", BAD,
                         ids=[_bad_id(c) for c in BAD])
def test_bad_observation_names_the_key_and_the_value(fields, base, key, value, expected):
    message = _error(_obs(fields, base))
    if value is None:
        _assert_names(message, key, missing=True, expected=expected)
    elif isinstance(value, str) and value.startswith("<"):
        assert message.startswith(f"{key} = {value}: expected "), message
        assert expected in message, message
    elif isinstance(value, float) and math.isnan(value):
        assert message.startswith(f"{key} = nan: expected "), message
    else:
        _assert_names(message, key, value, expected=expected)


def test_unknown_flow_error_lists_every_flow():
    message = _error(_obs({"flow": '"tokens"'}))
    for flow in ANNUAL_FLOWS:
        assert flow in message


def test_observation_that_is_not_a_table():
    message = _error(minimal_config_text(observations={"a": "3"}))
    _assert_names(message, "observations.a", 3, expected="a table with flow")


def test_observations_that_are_not_a_table():
    message = _error(minimal_config_text(top={"observations": "3"}))
    _assert_names(message, "observations", 3, expected="a table")


# --- [conditioning] -------------------------------------------------------------------------

def test_conditioning_table_parses():
    cfg = parse_config_text(minimal_config_text(conditioning={
        "method": '"importance"', "particles": "4096", "ess_fraction": "0.3", "moves": "25",
        "runs": "8", "seed": "12"}))
    assert cfg.conditioning == ConditioningConfig("importance", 4096, 0.3, 25, 8, 12)


def test_conditioning_keys_default_one_by_one():
    cfg = parse_config_text(minimal_config_text(conditioning={"particles": "64"}))
    assert cfg.conditioning == ConditioningConfig(particles=64)
    cfg = parse_config_text(minimal_config_text(conditioning={"particles": str(2**24),
                                                              "moves": "1000",
                                                              "runs": "2", "seed": "0"}))
    assert cfg.conditioning == ConditioningConfig(particles=2**24, moves=1000, runs=2, seed=0)
    # without observations a [conditioning] table is allowed and changes nothing else
    assert cfg.observations == ()
    assert parse_config_text(minimal_config_text(conditioning={})).conditioning == \
        ConditioningConfig()


C = "conditioning"
BAD_CONDITIONING = [
    ({"particle": "4096"}, f"{C}.particle", "<unknown key>", "did you mean conditioning."
     "particles"),
    ({"method_": '"smc"'}, f"{C}.method_", "<unknown key>", "did you mean conditioning."
     "method"),
    ({"tempering": "1"}, f"{C}.tempering", "<unknown key>", "one of: method, particles"),
    ({"method": '"mcmc"'}, f"{C}.method", "mcmc", '"smc", "importance"'),
    ({"method": "1"}, f"{C}.method", 1, '"smc", "importance"'),
    ({"particles": "63"}, f"{C}.particles", 63, "[64, 16777216]"),
    ({"particles": str(2**24 + 1)}, f"{C}.particles", 2**24 + 1, "[64, 16777216]"),
    ({"particles": "true"}, f"{C}.particles", True, "an integer"),
    ({"particles": "1000.5"}, f"{C}.particles", 1000.5, "an integer"),
    ({"particles": '"many"'}, f"{C}.particles", "many", "an integer"),
    ({"ess_fraction": "0.0"}, f"{C}.ess_fraction", 0.0, "(0, 1)"),
    ({"ess_fraction": "1.0"}, f"{C}.ess_fraction", 1.0, "(0, 1)"),
    ({"ess_fraction": "1"}, f"{C}.ess_fraction", 1, "(0, 1)"),
    ({"ess_fraction": "-0.1"}, f"{C}.ess_fraction", -0.1, "(0, 1)"),
    ({"ess_fraction": "true"}, f"{C}.ess_fraction", True, "(0, 1)"),
    ({"moves": "0"}, f"{C}.moves", 0, "[1, 1000]"),
    ({"moves": "1001"}, f"{C}.moves", 1001, "[1, 1000]"),
    ({"moves": "true"}, f"{C}.moves", True, "an integer"),
    ({"runs": "1"}, f"{C}.runs", 1, "an integer in [2,"),
    ({"runs": "0"}, f"{C}.runs", 0, "an integer in [2,"),
    ({"runs": "false"}, f"{C}.runs", False, "an integer"),
    ({"seed": "-1"}, f"{C}.seed", -1, "an integer"),
    ({"seed": "true"}, f"{C}.seed", True, "an integer"),
    ({"seed": "1.5"}, f"{C}.seed", 1.5, "an integer"),
]


@pytest.mark.parametrize("fields, key, value, expected", BAD_CONDITIONING,
                         ids=[f"{k}={v}" for f, _, _, _ in BAD_CONDITIONING
                              for k, v in f.items()])
def test_bad_conditioning_names_the_key_and_the_value(fields, key, value, expected):
    message = _error(minimal_config_text(conditioning=fields))
    if isinstance(value, str) and value.startswith("<"):
        assert message.startswith(f"{key} = {value}: expected "), message
        assert expected in message, message
    else:
        _assert_names(message, key, value, expected=expected)


def test_conditioning_that_is_not_a_table():
    message = _error(minimal_config_text(top={"conditioning": '"smc"'}))
    _assert_names(message, "conditioning", "smc", expected="a table [conditioning]")


def test_conditioning_can_be_overridden_by_dotted_key():
    cfg = load_config(OBSERVED)
    key, value = parse_override("conditioning.particles=4096")
    changed = with_overrides(cfg, {key: value})
    assert changed.conditioning == ConditioningConfig(particles=4096)
    assert changed.observations == cfg.observations
    changed = with_overrides(cfg, {"conditioning.method": "importance",
                                   "conditioning.seed": 7})
    assert (changed.conditioning.method, changed.conditioning.seed) == ("importance", 7)
    with pytest.raises(ConfigError, match=r"^conditioning\.runs = 1: expected"):
        with_overrides(cfg, {"conditioning.runs": 1})
    base = with_overrides(load_config(BASE), {"conditioning.moves": 15})
    assert base.conditioning == ConditioningConfig(moves=15)


def test_a_child_config_updates_conditioning_key_by_key(tmp_path):
    parent = tmp_path / "parent.toml"
    parent.write_text(f'extends = "{BASE}"\n[conditioning]\nmethod = "importance"\n'
                      "runs = 6\n")
    child = tmp_path / "child.toml"
    child.write_text('extends = "parent.toml"\n[conditioning]\nparticles = 4096\n')
    cfg = load_config(child)
    assert cfg.conditioning == ConditioningConfig(method="importance", particles=4096, runs=6)
    assert cfg.resolved["conditioning"] == {"method": "importance", "runs": 6,
                                            "particles": 4096}


def test_a_child_of_observed_replaces_the_observations_and_keeps_conditioning(tmp_path):
    child = tmp_path / "child.toml"
    child.write_text(f'extends = "{OBSERVED}"\n[conditioning]\nruns = 2\n'
                     '[observations.wau]\nstock = "weekly_active_users"\nmonth = "2025-10"\n'
                     "value = 8e8\nrel_sd = 0.05\n")
    cfg = load_config(child)
    assert [o.name for o in cfg.observations] == ["wau"]
    assert cfg.conditioning == ConditioningConfig(runs=2)


# --- with_simulation, overrides of observations --------------------------------------------

def test_with_simulation_keeps_and_rechecks_the_observations():
    cfg = load_config(OBSERVED)
    shorter = cfg.with_simulation(horizon="2026-06", paths=1000)
    assert shorter.observations == cfg.observations
    assert shorter.conditioning == cfg.conditioning
    assert cfg.with_simulation(paths=1000).observations == cfg.observations
    with pytest.raises(ConfigError, match=r"^observations\.revenue_2026_q1\.end = '2026-03'"):
        cfg.with_simulation(horizon="2026-02")
    stock = parse_config_text(_obs({"month": '"2026-06"'}, STOCK))
    with pytest.raises(ConfigError, match=r"^observations\.a\.month = '2026-06': expected a "
                       r"month within the simulation, 2024-01 to 2026-05"):
        stock.with_simulation(horizon="2026-05")


def test_observations_of_the_new_forms_can_be_overridden():
    cfg = load_config(OBSERVED)
    changed = with_overrides(cfg, {
        "observations.wau_2025_10.value": 8.5e8,
        "observations.azure_inference_2024.bias": {"dist": "uniform", "low": 0.9,
                                                   "high": 1.1}})
    by_name = {o.name: o for o in changed.observations}
    assert by_name["wau_2025_10"].value == 8.5e8
    assert by_name["azure_inference_2024"].bias == Distribution("uniform",
                                                                {"low": 0.9, "high": 1.1})
    with pytest.raises(ConfigError, match=r"^observations\.wau_2025_10\.start = '2025-01'"):
        with_overrides(cfg, {"observations.wau_2025_10.start": "2025-01"})
    with pytest.raises(ConfigError, match=r"^observations\.azure_inference_2024\.bias\.dist "
                       r"= 'normal'"):
        with_overrides(cfg, {"observations.azure_inference_2024.bias.dist": "normal"})


# --- configs/observed.toml ------------------------------------------------------------------

def test_observed_config_conditions_on_every_kind_of_fact():
    cfg = load_config(OBSERVED)
    assert cfg.simulation.start == "2024-01" and cfg.simulation.horizon == "2040-12"
    assert cfg.deal == load_config(BASE).deal  # base.toml's real timeline
    assert cfg.parameters == load_config(BASE).parameters
    obs = cfg.observations
    assert len(obs) >= 12
    assert any(len(o.series) == 1 and not o.stock for o in obs)        # flow
    assert any(len(o.series) > 1 for o in obs)                         # flows
    assert any(o.stock for o in obs)                                   # stock
    assert any(o.error == "student_t" and 0 < o.dof < math.inf for o in obs)
    assert any(o.error == "normal" for o in obs)
    assert any(isinstance(o.bias, Distribution) for o in obs)
    assert any(o.value < 0 for o in obs)                               # a signed flow
    assert cfg.conditioning == ConditioningConfig()
    assert set(cfg.resolved["conditioning"]) == {"method", "particles", "ess_fraction",
                                                 "moves", "runs", "move", "mixing_threshold"}
    for o in obs:
        assert re.fullmatch(r"[a-z][a-z0-9_]*", o.name), o.name
        assert o.sd > 0 and math.isfinite(o.value)


def test_observed_config_values_and_units():
    by_name = {o.name: o for o in load_config(OBSERVED).observations}
    # leaked Azure inference: 2024, H1 2025 and Jul-Sep 2025 = 8.67 - 5.02, no overlap
    inference = [o for o in by_name.values() if o.series == ("azure_inference_spend",)]
    assert sorted((o.start, o.end, o.value) for o in inference) == [
        ("2024-01", "2024-12", 3.77e9), ("2025-01", "2025-06", 5.02e9),
        ("2025-07", "2025-09", pytest.approx(8.67e9 - 5.02e9))]
    for o in inference:  # Microsoft: "the numbers aren't quite right"
        assert o.bias.kind == "lognormal" and o.bias.params["median"] == pytest.approx(1.0)
    net = sorted((o.start, o.end, o.value) for o in by_name.values()
                 if o.series == ("net_revenue_share",))
    assert net == [("2024-01", "2024-12", 0.4938e9), ("2025-01", "2025-06", 0.4547e9),
                   ("2025-07", "2025-09", pytest.approx(0.8659e9 - 0.4547e9))]
    # users and subscribers are counts
    wau = {o.start: o.value for o in by_name.values() if o.series == ("weekly_active_users",)}
    assert wau == {"2025-02": 4e8, "2025-03": 5e8, "2025-08": 7e8, "2025-10": 8e8,
                   "2026-02": 9e8}
    subs = {o.start: o.value for o in by_name.values() if o.series == ("paying_subscribers",)}
    assert subs == {"2025-07": 35e6, "2026-02": 50e6}
    assert by_name["paid_to_microsoft_2025"].value == 17.2e9
    assert by_name["revenue_2025"].value == 13.07e9
    costs = by_name["costs_2025"]
    assert set(costs.series) == {"compute_spend", "other_opex", "net_revenue_share",
                                 "azure_commitment_shortfall"} and costs.value == 34.0e9
    # a flow window never overlaps another observation of the same series and source
    windows: dict[tuple, list] = {}
    for o in by_name.values():
        windows.setdefault(o.series, []).append((o.start, o.end))
    for series in (("azure_inference_spend",), ("net_revenue_share",)):
        spans = sorted(windows[series])
        assert all(a[1] < b[0] for a, b in itertools.pairwise(spans)), spans


def test_observed_config_every_observation_cites_its_row():
    text = OBSERVED.read_text()
    blocks = re.split(r"\n(?=\[observations\.)", text)[1:]
    assert len(blocks) == len(load_config(OBSERVED).observations)
    for block in blocks:
        assert "# calib: " in block, block.splitlines()[0]
