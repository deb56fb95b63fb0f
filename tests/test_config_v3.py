"""Version 3's config keys (MODEL.md "Version 3 additions", E-H): ``[funding]`` (``cash_0``,
``rounds``), ``[simulation] discount_rate``, ``[parameters] microsoft_equity_stake`` and
``valuation_multiple``, and observations of ``stock = "cash"``.

Every bad value gets one ConfigError naming the dotted key, the value received and what was
expected (``test_bad_v3_config_gets_one_clear_error``); every edge MODEL.md allows parses to
the values given (``test_valid_v3_edges_parse``), ``extends`` merges [funding] key by key, and
a 1-month run with every version-3 key runs in float32 with finite outputs. The generated
configs of ``test_valid_configs.py`` run the rest of the valid space.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import minimal_config_text

import mcsim
from mcsim.config import ConfigError, load_config, parse_config_text
from mcsim.distributions import Distribution

RUN = '"2024-01"', '"2026-12"'  # the minimal config's start and horizon
EQUITY = {"microsoft_equity_stake": "0.27", "valuation_multiple": "10.0"}
CASH_OBS = {"stock": '"cash"', "month": '"2025-12"', "value": "5e9", "sd": "1e9"}


def funding(**keys) -> dict:
    """A [funding] table: cash_0 = 1e10 unless given (None leaves it out)."""
    table = {"cash_0": "1e10", **keys}
    return {k: v for k, v in table.items() if v is not None}


#: (id, sections for minimal_config_text (``top`` for top-level keys), key, the value as
#: the message shows it (None: missing), a piece of what was expected)
BAD = [
    # --- [funding]: the table and cash_0
    ("funding-not-a-table", {"top": {"funding": "5"}}, "funding", "5", "a table [funding]"),
    ("funding-empty", {"funding": {}}, "funding.cash_0", None, "$ available to OpenAI"),
    ("cash0-missing", {"funding": {"rounds": "[]"}}, "funding.cash_0", None, ">= 0"),
    ("cash0-negative", {"funding": funding(cash_0="-1.0")}, "funding.cash_0", "-1.0",
     "a number >= 0"),
    ("cash0-negative-int", {"funding": funding(cash_0="-5")}, "funding.cash_0", "-5",
     "a number >= 0"),
    ("cash0-nan", {"funding": funding(cash_0="nan")}, "funding.cash_0", "nan",
     "a number >= 0"),
    ("cash0-inf", {"funding": funding(cash_0="inf")}, "funding.cash_0", "inf",
     "a number >= 0"),
    ("cash0-bool", {"funding": funding(cash_0="true")}, "funding.cash_0", "True",
     "a number >= 0"),
    ("cash0-string", {"funding": funding(cash_0='"5e9"')}, "funding.cash_0", "'5e9'",
     "or a distribution table"),
    ("cash0-percent", {"funding": funding(cash_0='"8%/yr"')}, "funding.cash_0", "'8%/yr'",
     "a number >= 0"),
    ("cash0-list", {"funding": funding(cash_0="[5e9]")}, "funding.cash_0", "[5000000000.0]",
     "a number >= 0"),
    ("cash0-huge-int", {"funding": funding(cash_0="1" + "0" * 400)}, "funding.cash_0",
     "<an integer of 401 digits>", "a number >= 0"),
    ("cash0-normal-below-0",
     {"funding": funding(cash_0='{ dist = "normal", mean = 1e9, sd = 1e9 }')},
     "funding.cash_0", "{'dist': 'normal'", "inside cash_0's domain [0, inf)"),
    ("cash0-uniform-below-0",
     {"funding": funding(cash_0='{ dist = "uniform", low = -1.0, high = 1e9 }')},
     "funding.cash_0", "{'dist': 'uniform'", "inside cash_0's domain [0, inf)"),
    ("cash0-min-below-0",
     {"funding": funding(cash_0='{ dist = "normal", mean = 1e9, sd = 1e8, min = -1.0 }')},
     "funding.cash_0", "{'dist': 'normal'", "inside cash_0's domain [0, inf)"),
    ("cash0-unknown-dist",
     {"funding": funding(cash_0='{ dist = "gama", p5 = 1.0, p95 = 2.0 }')},
     "funding.cash_0.dist", "'gama'", "one of normal"),
    ("cash0-dist-missing",
     {"funding": funding(cash_0="{ low = 0.0, high = 1e9 }")},
     "funding.cash_0.dist", None, "one of normal"),
    ("cash0-dist-field-typo",
     {"funding": funding(cash_0='{ dist = "uniform", low = 0.0, hihg = 1e9 }')},
     "funding.cash_0.hihg", "<unknown key>", "did you mean funding.cash_0.high?"),
    ("cash0-dist-percent-field",
     {"funding": funding(cash_0='{ dist = "uniform", low = "0%/yr", high = 1e9 }')},
     "funding.cash_0.low", "'0%/yr'", "a finite number"),
    ("cash0-dist-nan-field",
     {"funding": funding(cash_0='{ dist = "uniform", low = 0.0, high = nan }')},
     "funding.cash_0.high", "nan", "a finite number"),
    ("cash0-dist-bad-shape",
     {"funding": funding(cash_0='{ dist = "uniform", low = 2e9, high = 1e9 }')},
     "funding.cash_0.high", "1000000000.0", "a number above low"),
    # --- [funding] rounds: the list, each pair, its month, its dollars, their order
    ("rounds-string", {"funding": funding(rounds='"2024-10"')}, "funding.rounds",
     "'2024-10'", '["YYYY-MM", dollars] pairs'),
    ("rounds-number", {"funding": funding(rounds="6.6e9")}, "funding.rounds",
     "6600000000.0", '["YYYY-MM", dollars] pairs'),
    ("rounds-table", {"funding": funding(rounds='{ "2024-10" = 6.6e9 }')},
     "funding.rounds", "{'2024-10': 6600000000.0}", '["YYYY-MM", dollars] pairs'),
    ("rounds-flat-pair", {"funding": funding(rounds='["2024-10", 6.6e9]')},
     "funding.rounds[0]", "'2024-10'", '["YYYY-MM", dollars]'),
    ("round-one-element", {"funding": funding(rounds='[["2024-10"]]')},
     "funding.rounds[0]", "['2024-10']", '["YYYY-MM", dollars]'),
    ("round-three-elements", {"funding": funding(rounds='[["2024-10", 6.6e9, 1]]')},
     "funding.rounds[0]", "['2024-10', 6600000000.0, 1]", '["YYYY-MM", dollars]'),
    ("round-empty-pair", {"funding": funding(rounds="[[]]")}, "funding.rounds[0]", "[]",
     '["YYYY-MM", dollars]'),
    ("round-inline-table",
     {"funding": funding(rounds='[{ month = "2024-10", dollars = 6.6e9 }]')},
     "funding.rounds[0]", "{'month': '2024-10'", '["YYYY-MM", dollars]'),
    ("round-second-bad-shape",
     {"funding": funding(rounds='[["2024-10", 6.6e9], "2025-04"]')},
     "funding.rounds[1]", "'2025-04'", '["YYYY-MM", dollars]'),
    ("round-month-short", {"funding": funding(rounds='[["2024-1", 6.6e9]]')},
     "funding.rounds[0][0]", "'2024-1'", 'a month "YYYY-MM"'),
    ("round-month-13", {"funding": funding(rounds='[["2024-13", 6.6e9]]')},
     "funding.rounds[0][0]", "'2024-13'", "month must be 01..12"),
    ("round-month-00", {"funding": funding(rounds='[["2024-00", 6.6e9]]')},
     "funding.rounds[0][0]", "'2024-00'", "month must be 01..12"),
    ("round-month-words", {"funding": funding(rounds='[["Oct 2024", 6.6e9]]')},
     "funding.rounds[0][0]", "'Oct 2024'", 'a month "YYYY-MM"'),
    ("round-month-int", {"funding": funding(rounds="[[202410, 6.6e9]]")},
     "funding.rounds[0][0]", "202410", 'a month "YYYY-MM"'),
    ("round-month-toml-date", {"funding": funding(rounds="[[2024-10-01, 6.6e9]]")},
     "funding.rounds[0][0]", "datetime.date(2024, 10, 1)", 'a month "YYYY-MM"'),
    ("round-month-with-day", {"funding": funding(rounds='[["2024-10-01", 6.6e9]]')},
     "funding.rounds[0][0]", "'2024-10-01'", 'a month "YYYY-MM"'),
    ("round-swapped", {"funding": funding(rounds='[[6.6e9, "2024-10"]]')},
     "funding.rounds[0][0]", "6600000000.0", 'a month "YYYY-MM"'),
    ("round-before-start", {"funding": funding(rounds='[["2023-12", 6.6e9]]')},
     "funding.rounds[0][0]", "'2023-12'", "before the start belongs in funding.cash_0"),
    ("round-long-before-start", {"funding": funding(rounds='[["1999-01", 6.6e9]]')},
     "funding.rounds[0][0]", "'1999-01'", "a month within the simulation, 2024-01 to "
     "2026-12"),
    ("round-after-horizon", {"funding": funding(rounds='[["2027-01", 6.6e9]]')},
     "funding.rounds[0][0]", "'2027-01'", "after the horizon is outside the run"),
    ("round-second-after-horizon",
     {"funding": funding(rounds='[["2024-10", 6.6e9], ["2030-01", 1e9]]')},
     "funding.rounds[1][0]", "'2030-01'", "a month within the simulation"),
    ("rounds-same-month",
     {"funding": funding(rounds='[["2024-10", 6.6e9], ["2024-10", 1e9]]')},
     "funding.rounds[1][0]", "'2024-10'", "strictly increasing"),
    ("rounds-decreasing",
     {"funding": funding(rounds='[["2025-04", 6.6e9], ["2024-10", 1e9]]')},
     "funding.rounds[1][0]", "'2024-10'", "after the previous round's (2025-04)"),
    ("rounds-third-out-of-order",
     {"funding": funding(rounds='[["2024-02", 1.0], ["2024-05", 2.0], ["2024-03", 3.0]]')},
     "funding.rounds[2][0]", "'2024-03'", "strictly increasing"),
    ("round-dollars-negative", {"funding": funding(rounds='[["2024-10", -1.0]]')},
     "funding.rounds[0][1]", "-1.0", "dollars >= 0"),
    ("round-dollars-negative-int", {"funding": funding(rounds='[["2024-10", -1]]')},
     "funding.rounds[0][1]", "-1", "dollars >= 0"),
    ("round-dollars-nan", {"funding": funding(rounds='[["2024-10", nan]]')},
     "funding.rounds[0][1]", "nan", "a finite number of dollars >= 0"),
    ("round-dollars-inf", {"funding": funding(rounds='[["2024-10", inf]]')},
     "funding.rounds[0][1]", "inf", "a finite number of dollars >= 0"),
    ("round-dollars-minus-inf", {"funding": funding(rounds='[["2024-10", -inf]]')},
     "funding.rounds[0][1]", "-inf", "a finite number of dollars >= 0"),
    ("round-dollars-bool", {"funding": funding(rounds='[["2024-10", true]]')},
     "funding.rounds[0][1]", "True", "a finite number of dollars >= 0"),
    ("round-dollars-string", {"funding": funding(rounds='[["2024-10", "6.6e9"]]')},
     "funding.rounds[0][1]", "'6.6e9'", "a finite number of dollars >= 0"),
    ("round-dollars-distribution",
     {"funding": funding(rounds='[["2024-10", { dist = "uniform", low = 1.0, high = 2.0 }]]')},
     "funding.rounds[0][1]", "{'dist': 'uniform'", "a finite number of dollars >= 0"),
    ("round-dollars-huge-int", {"funding": funding(rounds=f'[["2024-10", 1{"0" * 400}]]')},
     "funding.rounds[0][1]", "<an integer of 401 digits>", "dollars >= 0"),
    ("round-second-dollars-nan",
     {"funding": funding(rounds='[["2024-10", 1.0], ["2024-11", nan]]')},
     "funding.rounds[1][1]", "nan", "dollars >= 0"),
    # --- unknown keys in [funding], and [funding]'s keys elsewhere
    ("funding-key-typo", {"funding": funding(round='[["2024-10", 1.0]]')},
     "funding.round", "<unknown key>", "did you mean funding.rounds?"),
    ("funding-cash-typo", {"funding": {"cash": "1e9"}}, "funding.cash", "<unknown key>",
     "did you mean funding.cash_0?"),
    ("funding-unrelated-key", {"funding": funding(investors='["msft"]')},
     "funding.investors", "<unknown key>", "one of: cash_0, rounds"),
    ("funding-discount-rate", {"funding": funding(discount_rate="0.08")},
     "funding.discount_rate", "<unknown key>", "did you mean simulation.discount_rate?"),
    ("funding-equity-stake", {"funding": funding(microsoft_equity_stake="0.27")},
     "funding.microsoft_equity_stake", "<unknown key>",
     "did you mean parameters.microsoft_equity_stake?"),
    ("cash0-in-parameters", {"parameters": {"cash_0": "1e10"}}, "parameters.cash_0",
     "10000000000.0", "funding.cash_0 (in [funding]"),
    ("cash0-in-parameters-too", {"parameters": {"cash_0": "1e10"}, "funding": funding()},
     "parameters.cash_0", "10000000000.0", "funding.cash_0 (in [funding]"),
    ("cash0-in-deal", {"deal": {"cash_0": "1e10"}}, "deal.cash_0", "10000000000.0",
     "did you mean funding.cash_0?"),
    ("cash0-in-simulation", {"simulation": {"cash_0": "1e10"}}, "simulation.cash_0",
     "10000000000.0", "did you mean funding.cash_0?"),
    ("cash0-top-level", {"top": {"cash_0": "1e10"}}, "cash_0", "10000000000.0",
     "did you mean funding.cash_0?"),
    ("rounds-in-deal", {"deal": {"rounds": '[["2024-10", 1.0]]'}}, "deal.rounds",
     "[['2024-10', 1.0]]", "did you mean funding.rounds?"),
    ("rounds-in-parameters", {"parameters": {"rounds": '[["2024-10", 1.0]]'}},
     "parameters.rounds", "[['2024-10', 1.0]]", "did you mean funding.rounds?"),
    ("cash0-in-a-change",
     {"deal": {"change": '[{ from = "2025-01", revenue_share = 0.1, cash_0 = 1.0 }]'}},
     "deal.change[0].cash_0", "1.0", "did you mean funding.cash_0?"),
    # --- [simulation] discount_rate
    ("discount-negative", {"simulation": {"discount_rate": "-0.01"}},
     "simulation.discount_rate", "-0.01", "a finite log rate per year >= 0"),
    ("discount-negative-int", {"simulation": {"discount_rate": "-1"}},
     "simulation.discount_rate", "-1", ">= 0"),
    ("discount-negative-percent", {"simulation": {"discount_rate": '"-5%/yr"'}},
     "simulation.discount_rate", "'-5%/yr'", ">= 0"),
    ("discount-minus-100-percent", {"simulation": {"discount_rate": '"-100%/yr"'}},
     "simulation.discount_rate", "'-100%/yr'", "a fall of 100% or more"),
    ("discount-abc", {"simulation": {"discount_rate": '"abc"'}}, "simulation.discount_rate",
     "'abc'", '"8%/yr"'),
    ("discount-percent-without-per-year", {"simulation": {"discount_rate": '"8%"'}},
     "simulation.discount_rate", "'8%'", '"8%/yr"'),
    ("discount-empty-string", {"simulation": {"discount_rate": '""'}},
     "simulation.discount_rate", "''", "a finite log rate per year >= 0"),
    ("discount-nan", {"simulation": {"discount_rate": "nan"}}, "simulation.discount_rate",
     "nan", "a finite log rate per year >= 0"),
    ("discount-inf", {"simulation": {"discount_rate": "inf"}}, "simulation.discount_rate",
     "inf", "a finite log rate per year >= 0"),
    # a percentage beyond float64's range was an infinite rate (exp(-inf x 0) = NaN)
    ("discount-infinite-percent", {"simulation": {"discount_rate": '"1e400%/yr"'}},
     "simulation.discount_rate", "'1e400%/yr'", "a finite log rate per year >= 0"),
    ("discount-bool", {"simulation": {"discount_rate": "true"}}, "simulation.discount_rate",
     "True", "a finite log rate per year >= 0"),
    ("discount-list", {"simulation": {"discount_rate": "[0.08]"}},
     "simulation.discount_rate", "[0.08]", "a finite log rate per year >= 0"),
    ("discount-distribution",
     {"simulation": {"discount_rate": '{ dist = "uniform", low = 0.0, high = 0.1 }'}},
     "simulation.discount_rate", "{'dist': 'uniform'", "a finite log rate per year >= 0"),
    ("discount-huge-int", {"simulation": {"discount_rate": "1" + "0" * 400}},
     "simulation.discount_rate", "<an integer of 401 digits>", ">= 0"),
    ("discount-in-parameters", {"parameters": {"discount_rate": "0.08"}},
     "parameters.discount_rate", "<unknown key>", "did you mean simulation.discount_rate?"),
    ("discount-in-deal", {"deal": {"discount_rate": "0.08"}}, "deal.discount_rate",
     "<unknown key>", "did you mean simulation.discount_rate?"),
    ("discount-typo", {"simulation": {"discount": "0.08"}}, "simulation.discount",
     "<unknown key>", "did you mean simulation.discount_rate?"),
    # --- [parameters] microsoft_equity_stake, valuation_multiple
    ("stake-above-one", {"parameters": {**EQUITY, "microsoft_equity_stake": "1.5"}},
     "parameters.microsoft_equity_stake", "1.5", "a number in [0, 1]"),
    ("stake-negative", {"parameters": {**EQUITY, "microsoft_equity_stake": "-0.1"}},
     "parameters.microsoft_equity_stake", "-0.1", "a number in [0, 1]"),
    ("stake-just-above-one",
     {"parameters": {**EQUITY, "microsoft_equity_stake": "1.0000000000000002"}},
     "parameters.microsoft_equity_stake", "1.0000000000000002", "a number in [0, 1]"),
    ("stake-nan", {"parameters": {**EQUITY, "microsoft_equity_stake": "nan"}},
     "parameters.microsoft_equity_stake", "nan", "a number in [0, 1]"),
    ("stake-percent", {"parameters": {**EQUITY, "microsoft_equity_stake": '"27%/yr"'}},
     "parameters.microsoft_equity_stake", "'27%/yr'", "only for rates"),
    ("stake-string", {"parameters": {**EQUITY, "microsoft_equity_stake": '"27%"'}},
     "parameters.microsoft_equity_stake", "'27%'", "a number in [0, 1]"),
    ("stake-bool", {"parameters": {**EQUITY, "microsoft_equity_stake": "true"}},
     "parameters.microsoft_equity_stake", "True", "a number in [0, 1]"),
    ("stake-normal-beyond-unit",
     {"parameters": {**EQUITY,
                     "microsoft_equity_stake": '{ dist = "normal", mean = 0.27, sd = 0.5 }'}},
     "parameters.microsoft_equity_stake", "{'dist': 'normal'",
     "inside microsoft_equity_stake's domain [0, 1]"),
    ("stake-uniform-above-one",
     {"parameters": {**EQUITY,
                     "microsoft_equity_stake": '{ dist = "uniform", low = 0.2, high = 1.2 }'}},
     "parameters.microsoft_equity_stake", "{'dist': 'uniform'",
     "inside microsoft_equity_stake's domain [0, 1]"),
    ("multiple-zero", {"parameters": {**EQUITY, "valuation_multiple": "0"}},
     "parameters.valuation_multiple", "0", "a number in (0, inf)"),
    ("multiple-zero-float", {"parameters": {**EQUITY, "valuation_multiple": "0.0"}},
     "parameters.valuation_multiple", "0.0", "a number in (0, inf)"),
    ("multiple-negative", {"parameters": {**EQUITY, "valuation_multiple": "-10.0"}},
     "parameters.valuation_multiple", "-10.0", "a number in (0, inf)"),
    ("multiple-inf", {"parameters": {**EQUITY, "valuation_multiple": "inf"}},
     "parameters.valuation_multiple", "inf", "a number in (0, inf)"),
    ("multiple-nan", {"parameters": {**EQUITY, "valuation_multiple": "nan"}},
     "parameters.valuation_multiple", "nan", "a number in (0, inf)"),
    ("multiple-uniform-from-below-0",
     {"parameters": {**EQUITY,
                     "valuation_multiple": '{ dist = "uniform", low = -1.0, high = 20.0 }'}},
     "parameters.valuation_multiple", "{'dist': 'uniform'",
     "inside valuation_multiple's domain (0, inf)"),
    ("stake-without-multiple", {"parameters": {"microsoft_equity_stake": "0.27"}},
     "parameters.valuation_multiple", None, "needs both (or neither)"),
    ("multiple-without-stake", {"parameters": {"valuation_multiple": "10.0"}},
     "parameters.microsoft_equity_stake", None, "needs both (or neither)"),
    ("stake-in-deal", {"deal": {"microsoft_equity_stake": "0.27"}},
     "deal.microsoft_equity_stake", "<unknown key>",
     "did you mean parameters.microsoft_equity_stake?"),
    ("multiple-in-simulation", {"simulation": {"valuation_multiple": "10.0"}},
     "simulation.valuation_multiple", "<unknown key>",
     "did you mean parameters.valuation_multiple?"),
    ("stake-typo", {"parameters": {"microsoft_equity_stak": "0.27"}},
     "parameters.microsoft_equity_stak", "<unknown key>",
     "did you mean parameters.microsoft_equity_stake?"),
    # --- observations of cash; rank correlations naming version 3's parameters
    ("cash-observed-without-funding", {"observations.cash_2025": CASH_OBS},
     "observations.cash_2025.stock", "'cash'", "a [funding] table in the config"),
    ("cash-observed-outside-run",
     {"observations.cash_2030": {**CASH_OBS, "month": '"2030-12"'}, "funding": funding()},
     "observations.cash_2030.month", "'2030-12'", "a month within the simulation"),
    ("cash-as-a-flow", {"observations.cash": {**CASH_OBS, "stock": None, "flow": '"cash"',
                                              "month": None, "start": '"2025-01"',
                                              "end": '"2025-12"'},
                        "funding": funding()},
     "observations.cash.flow", "'cash'", "one of azure_spend"),
    ("correlate-fixed-cash0",
     {"funding": funding(),
      "parameters": {"gpu_price_0": '{ dist = "uniform", low = 1.0, high = 3.0 }'},
      "parameter_correlation": {"pairs": '[["cash_0", "gpu_price_0", 0.5]]'}},
     "parameter_correlation.pairs[0]", "['cash_0', 'gpu_price_0', 0.5]",
     "cash_0 is fixed"),
    ("correlate-cash0-without-funding",
     {"parameters": {"gpu_price_0": '{ dist = "uniform", low = 1.0, high = 3.0 }'},
      "parameter_correlation": {"pairs": '[["gpu_price_0", "cash_0", 0.5]]'}},
     "parameter_correlation.pairs[0]", "['gpu_price_0', 'cash_0', 0.5]",
     "cash_0 is not given"),
    ("correlate-cash0-typo",
     {"funding": funding(cash_0='{ dist = "uniform", low = 0.0, high = 1e10 }'),
      "parameters": {"gpu_price_0": '{ dist = "uniform", low = 1.0, high = 3.0 }'},
      "parameter_correlation": {"pairs": '[["cash0", "gpu_price_0", 0.5]]'}},
     "parameter_correlation.pairs[0]", "['cash0', 'gpu_price_0', 0.5]",
     "did you mean cash_0?"),
]


def _text(sections: dict) -> str:
    sections = dict(sections)
    top = sections.pop("top", None)
    return minimal_config_text(top, **sections)


@pytest.mark.parametrize("sections, key, shown, expected", [c[1:] for c in BAD],
                         ids=[c[0] for c in BAD])
def test_bad_v3_config_gets_one_clear_error(sections, key, shown, expected):
    with pytest.raises(ConfigError) as info:
        parse_config_text(_text(sections))
    message = str(info.value)
    assert isinstance(info.value, ValueError)  # ConfigError is a ValueError
    assert "\n" not in message and "\r" not in message, message
    assert info.value.key == key, message
    if shown is None:
        assert f"{key} is missing: expected " in message, message
    else:
        assert f"{key} = {shown}" in message, message
    assert ": expected " in message and expected in message, message


def test_ids_are_unique():
    ids = [c[0] for c in BAD]
    assert len(ids) == len(set(ids))


# --- valid edges ----------------------------------------------------------------------------

def _parse(**sections):
    return parse_config_text(_text(sections))


@pytest.mark.parametrize("rounds, expected", [
    # a round dated the start's month (added in month 0) and the horizon's month
    ('[["2024-01", 1e9]]', (("2024-01", 1e9),)),
    ('[["2026-12", 1e9]]', (("2026-12", 1e9),)),
    ('[["2024-01", 1.0], ["2026-12", 2.0]]', (("2024-01", 1.0), ("2026-12", 2.0))),
    # zero dollars (float and integer), tiny and huge amounts, integer dollars
    ('[["2024-06", 0.0]]', (("2024-06", 0.0),)),
    ('[["2024-06", 0]]', (("2024-06", 0.0),)),
    ('[["2024-06", 5e-324], ["2024-07", 1e300]]', (("2024-06", 5e-324), ("2024-07", 1e300))),
    ('[["2024-10", 6_600_000_000]]', (("2024-10", 6.6e9),)),
    ('[["2024-06", -0.0]]', (("2024-06", 0.0),)),
    # no rounds
    ("[]", ()),
    (None, ()),
    # every month of the run, one after the other
    ("[" + ", ".join(f'["{2024 + k // 12}-{k % 12 + 1:02d}", {k}.0]' for k in range(36)) + "]",
     tuple((f"{2024 + k // 12}-{k % 12 + 1:02d}", float(k)) for k in range(36))),
])
def test_valid_rounds_parse(rounds, expected):
    config = _parse(funding=funding(rounds=rounds))
    assert config.funding.rounds == expected
    assert all(isinstance(d, float) for _, d in config.funding.rounds)
    assert config.parameters["cash_0"] == 1e10


@pytest.mark.parametrize("cash_0, expected", [
    ("0", 0.0), ("0.0", 0.0), ("-0.0", 0.0), ("5e-324", 5e-324), ("1e10", 1e10),
    ("10_000_000_000", 1e10), ("1e300", 1e300),
])
def test_valid_cash_0_numbers_parse(cash_0, expected):
    config = _parse(funding=funding(cash_0=cash_0))
    assert config.parameters["cash_0"] == expected
    assert "cash_0" not in config.uncertain_parameters()


@pytest.mark.parametrize("spec", [
    '{ dist = "uniform", low = 5e9, high = 15e9 }',
    '{ dist = "uniform", low = 0.0, high = 1e9 }',              # reaching 0 itself
    '{ dist = "lognormal", median = 1e10, sigma = 0.5 }',
    '{ dist = "lognormal", p5 = 5e9, p95 = 2e10 }',
    '{ dist = "normal", mean = 1e10, sd = 1e10, min = 0.0 }',   # truncated at 0
    '{ dist = "normal", p5 = 5e9, p95 = 1.5e10, min = 0.0, max = 3e10 }',
    '{ dist = "triangular", low = 0.0, mode = 0.0, high = 1e10 }',
    '{ dist = "pert", low = 1e9, mode = 5e9, high = 2e10 }',
    '{ dist = "beta", alpha = 2.0, beta = 5.0 }',               # dollars in [0, 1]: valid
])
def test_cash_0_distributions_are_drawn_parameters(spec):
    config = _parse(funding=funding(cash_0=spec))
    dist = config.parameters["cash_0"]
    assert isinstance(dist, Distribution) and dist.support()[0] >= 0.0
    assert "cash_0" in config.uncertain_parameters()


def test_cash_0_is_rank_correlated_like_any_parameter():
    config = _parse(
        funding=funding(cash_0='{ dist = "uniform", low = 5e9, high = 15e9 }'),
        parameters={"gpu_price_0": '{ dist = "uniform", low = 1.0, high = 3.0 }',
                    "microsoft_equity_stake": '{ dist = "beta", alpha = 27.0, beta = 73.0 }',
                    "valuation_multiple": '{ dist = "lognormal", median = 10.0, sigma = 0.5 }'},
        parameter_correlation={"pairs": '[["cash_0", "gpu_price_0", -0.4], '
                               '["valuation_multiple", "cash_0", 0.6], '
                               '["microsoft_equity_stake", "valuation_multiple", 0.2]]'})
    assert config.correlation_pairs == (("cash_0", "gpu_price_0", -0.4),
                                        ("valuation_multiple", "cash_0", 0.6),
                                        ("microsoft_equity_stake", "valuation_multiple", 0.2))


def test_cash_0_correlations_must_stay_positive_definite():
    with pytest.raises(ConfigError) as info:
        _parse(funding=funding(cash_0='{ dist = "uniform", low = 5e9, high = 15e9 }'),
               parameters={"gpu_price_0": '{ dist = "uniform", low = 1.0, high = 3.0 }',
                           "tokens_0": '{ dist = "lognormal", median = 3e13, sigma = 0.3 }'},
               parameter_correlation={"pairs": '[["cash_0", "gpu_price_0", 0.9], '
                                      '["cash_0", "tokens_0", 0.9], '
                                      '["gpu_price_0", "tokens_0", -0.9]]'})
    assert info.value.key == "parameter_correlation.pairs"
    assert "positive definite" in str(info.value)


@pytest.mark.parametrize("stake, multiple", [
    ("0", "10.0"), ("0.0", "10.0"), ("1", "10.0"), ("1.0", "10.0"), ("0.27", "5e-324"),
    ("0.27", "1e300"), ("0.27", "10"),
    ('{ dist = "beta", alpha = 27.0, beta = 73.0 }',
     '{ dist = "uniform", low = 5.0, high = 20.0 }'),
    ('{ dist = "uniform", low = 0.0, high = 1.0 }',
     '{ dist = "lognormal", p5 = 5.0, p95 = 30.0 }'),
    ('{ dist = "triangular", low = 0.2, mode = 0.27, high = 0.35 }', "10.0"),
    ('{ dist = "normal", mean = 0.27, sd = 0.5, min = 0.0, max = 1.0 }',
     '{ dist = "normal", mean = 10.0, sd = 5.0, min = 1.0 }'),
])
def test_valid_equity_parameters_parse(stake, multiple):
    config = _parse(parameters={"microsoft_equity_stake": stake, "valuation_multiple": multiple})
    for name in ("microsoft_equity_stake", "valuation_multiple"):
        value = config.parameters[name]
        lo, hi = value.support() if isinstance(value, Distribution) else (value, value)
        assert lo >= 0.0
        if name == "microsoft_equity_stake":
            assert hi <= 1.0


@pytest.mark.parametrize("rate, expected", [
    ("0", 0.0), ("0.0", 0.0), ("-0.0", 0.0), ("0.08", 0.08), ('"0%/yr"', 0.0),
    ('"8%/yr"', math.log1p(0.08)), ('" 8 % / yr "', math.log1p(0.08)),
    ('"12% per year"', math.log1p(0.12)), ('"0.5%/year"', math.log1p(0.005)),
    ("5e-324", 5e-324), ("1e300", 1e300), ('"1e300%/yr"', math.log1p(1e298)), ("3", 3.0),
])
def test_valid_discount_rates_parse(rate, expected):
    config = _parse(simulation={"discount_rate": rate})
    assert config.simulation.discount_rate == pytest.approx(expected, rel=1e-15, abs=0)
    assert isinstance(config.simulation.discount_rate, float)
    # kept (and re-validated) when the run's [simulation] changes
    assert config.with_simulation(paths=64).simulation.discount_rate == \
        config.simulation.discount_rate


def test_without_v3_keys_nothing_of_version_3():
    config = _parse()
    assert config.funding is None and config.simulation.discount_rate is None
    assert not {"cash_0", "microsoft_equity_stake", "valuation_multiple"} & set(
        config.parameters)


def test_each_v3_mechanism_stands_alone():
    """MODEL.md H: [funding], the discount rate and the equity each without the others."""
    only_funding = _parse(funding=funding())
    assert only_funding.funding is not None
    assert only_funding.simulation.discount_rate is None
    assert "microsoft_equity_stake" not in only_funding.parameters
    only_discount = _parse(simulation={"discount_rate": "0.08"})
    assert only_discount.funding is None and only_discount.simulation.discount_rate == 0.08
    only_equity = _parse(parameters=EQUITY)
    assert only_equity.funding is None and only_equity.simulation.discount_rate is None
    assert only_equity.parameters["microsoft_equity_stake"] == 0.27


def test_funding_keys_in_any_order():
    a = parse_config_text(minimal_config_text(funding={"rounds": '[["2024-10", 1e9]]',
                                                       "cash_0": "1e10"}))
    b = parse_config_text(minimal_config_text(funding=funding(rounds='[["2024-10", 1e9]]')))
    assert a.funding == b.funding and a.parameters["cash_0"] == b.parameters["cash_0"]


def test_an_observation_may_be_called_rounds_or_cash_0():
    """[observations]'s keys are names: a funding key's name there is no misplaced key."""
    config = _parse(funding=funding(), **{"observations.rounds": CASH_OBS,
                                          "observations.cash_0": CASH_OBS})
    assert [o.name for o in config.observations] == ["rounds", "cash_0"]


@pytest.mark.parametrize("month", ["2024-01", "2025-06", "2026-12"])
def test_cash_may_be_observed_with_funding(month):
    config = _parse(funding=funding(), **{"observations.cash": {**CASH_OBS,
                                                                "month": f'"{month}"'}})
    (obs,) = config.observations
    assert obs.stock and obs.series == ("cash",) and obs.start == obs.end == month
    assert obs.value == 5e9 and obs.sd == 1e9


@pytest.mark.parametrize("value", ["-5e9", "0.0"])
def test_cash_is_signed_when_observed(value):
    config = _parse(funding=funding(), **{"observations.cash": {**CASH_OBS,
                                                                "value": value}})
    assert config.observations[0].value == float(value)


# --- extends: [funding] is a merged table ---------------------------------------------------

PARENT_FUNDING = {"cash_0": '{ dist = "uniform", low = 5e9, high = 15e9 }',
                  "rounds": '[["2024-10", 6.6e9], ["2025-04", 10e9]]'}


def _child(tmp_path, text: str, parent: dict | None = PARENT_FUNDING, **parent_sections):
    sections = dict(parent_sections)
    if parent is not None:
        sections["funding"] = parent
    (tmp_path / "parent.toml").write_text(minimal_config_text(**sections), encoding="utf-8")
    child = tmp_path / "child.toml"
    child.write_text('extends = "parent.toml"\n' + text, encoding="utf-8")
    return load_config(child)


def test_extends_child_rounds_keep_the_parents_cash_0(tmp_path):
    config = _child(tmp_path, '[funding]\nrounds = [["2026-01", 1e9]]\n')
    assert config.funding.rounds == (("2026-01", 1e9),)
    assert config.parameters["cash_0"] == Distribution("uniform", {"low": 5e9, "high": 15e9})


def test_extends_child_cash_0_keeps_the_parents_rounds(tmp_path):
    config = _child(tmp_path, "[funding]\ncash_0 = 0.0\n")
    assert config.parameters["cash_0"] == 0.0
    assert config.funding.rounds == (("2024-10", 6.6e9), ("2025-04", 10e9))


def test_extends_child_empty_rounds_clear_the_parents(tmp_path):
    config = _child(tmp_path, "[funding]\nrounds = []\n")
    assert config.funding.rounds == ()
    assert isinstance(config.parameters["cash_0"], Distribution)


def test_extends_child_without_funding_inherits_it(tmp_path):
    config = _child(tmp_path, "[simulation]\nseed = 3\n")
    assert config.funding.rounds == (("2024-10", 6.6e9), ("2025-04", 10e9))
    assert config.simulation.seed == 3


def test_extends_child_adds_every_v3_key(tmp_path):
    config = _child(tmp_path, '[funding]\ncash_0 = 1e9\n[simulation]\ndiscount_rate = "8%/yr"\n'
                    "[parameters]\nmicrosoft_equity_stake = 0.27\nvaluation_multiple = 12.0\n",
                    parent=None)
    assert config.parameters["cash_0"] == 1e9 and config.funding.rounds == ()
    assert config.simulation.discount_rate == pytest.approx(math.log1p(0.08), rel=1e-15)
    assert config.simulation.start == "2024-01"  # the rest of [simulation] inherited
    assert config.parameters["valuation_multiple"] == 12.0


def test_extends_child_half_of_the_equity_pair_completes_the_parents(tmp_path):
    config = _child(tmp_path, "[parameters]\nvaluation_multiple = 20.0\n",
                    parameters={"microsoft_equity_stake": "0.27", "valuation_multiple": "10.0"})
    assert config.parameters["microsoft_equity_stake"] == 0.27
    assert config.parameters["valuation_multiple"] == 20.0


def test_extends_child_round_outside_the_childs_run_is_named(tmp_path):
    """The parent's round in 2025-04 lies beyond the child's shorter horizon."""
    with pytest.raises(ConfigError) as info:
        _child(tmp_path, '[simulation]\nhorizon = "2025-01"\n')
    assert info.value.key == "funding.rounds[1][0]" and "'2025-04'" in str(info.value)
    assert "child.toml" in str(info.value)


def test_extends_child_bad_funding_key_is_named(tmp_path):
    with pytest.raises(ConfigError) as info:
        _child(tmp_path, "[funding]\ncash_o = 1e9\n")
    assert info.value.key == "funding.cash_o"
    assert "did you mean funding.cash_0?" in str(info.value)


# --- overrides: with_overrides reaches every version-3 key ------------------------------

def test_overrides_of_the_discount_rate_and_equity():
    config = _parse(funding=funding(), simulation={"discount_rate": "0.05"},
                    parameters=EQUITY)
    changed = mcsim.with_overrides(config, {"simulation.discount_rate": "8%/yr",
                                            "parameters.microsoft_equity_stake": 1.0})
    assert changed.simulation.discount_rate == pytest.approx(math.log1p(0.08), rel=1e-15)
    assert changed.parameters["microsoft_equity_stake"] == 1.0
    with pytest.raises(ConfigError) as info:
        mcsim.with_overrides(config, {"simulation.discount_rate": -0.1})
    assert "simulation.discount_rate" in str(info.value) and ">= 0" in str(info.value)


def test_overrides_reach_funding():
    config = _parse(funding=funding(rounds='[["2024-10", 1e9]]'))
    changed = mcsim.with_overrides(config, {"funding.cash_0": 2e9})
    assert changed.parameters["cash_0"] == 2e9
    assert changed.funding.rounds == (("2024-10", 1e9),)
    changed = mcsim.with_overrides(config, {"funding.rounds": [["2025-01", 3e9]]})
    assert changed.funding.rounds == (("2025-01", 3e9),)
    assert changed.parameters["cash_0"] == 1e10
    with pytest.raises(ConfigError) as info:
        mcsim.with_overrides(config, {"funding.cash_0": -1.0})
    assert info.value.key.endswith("funding.cash_0") and ">= 0" in str(info.value)


# --- a run of one month with everything ------------------------------------------------------

def test_one_month_run_with_every_v3_key():
    """1 month (2024-01), a round dated it, cash_0 = 0, a discount rate, a stake of 1 and a
    correlated cash_0 ... in float32: finite, and the horizon's identities hold."""
    text = minimal_config_text(
        simulation={"start": '"2024-01"', "horizon": '"2024-01"', "discount_rate": '"8%/yr"'},
        parameters={"microsoft_equity_stake": "1.0",
                    "valuation_multiple": '{ dist = "uniform", low = 5.0, high = 20.0 }'},
        funding={"cash_0": '{ dist = "uniform", low = 0.0, high = 1e8 }',
                 "rounds": '[["2024-01", 0.0]]'},
        parameter_correlation={"pairs": '[["cash_0", "valuation_multiple", 0.5]]'})
    results = mcsim.simulate(parse_config_text(text), paths=256, seed=3, progress=False)
    layout = results.layout
    assert layout.grid.num_months == 1 and layout.v3 == {"funding", "discount", "equity"}
    mean, _ = results.mean("horizon")
    assert np.isfinite(mean).all() and results.accumulator.nonfinite_paths == 0
    m = dict(zip(layout.horizon_totals, mean, strict=True))
    assert list(results.mean("horizon").labels) == list(layout.horizon_totals)
    assert m["funding_to_find"] >= 0.0
    # month 0 is not discounted: present values are the undiscounted sums
    assert m["pv_cumulative_azure_spend"] == pytest.approx(
        results.mean("cumulative_azure_spend").mean[-1], rel=1e-12)
    assert m["pv_microsoft_equity_value"] == pytest.approx(m["microsoft_equity_value"],
                                                           rel=1e-12)
    # the trailing revenue of a 1-month run is its one month: stake 1 x multiple x revenue
    assert 5.0 * m["cumulative_revenue"] * (1 - 1e-6) <= m["microsoft_equity_value"] \
        <= 20.0 * m["cumulative_revenue"] * (1 + 1e-6)
    assert m["microsoft_whole_position"] == pytest.approx(
        m["microsoft_economic_return"] + m["microsoft_equity_value"], rel=1e-9)
    gap = results.event("funding_gap")
    assert (gap.censored == 1.0) == (m["funding_to_find"] == 0.0)
    cash, _ = results.mean("cash")
    assert cash.shape == (1,) and np.isfinite(cash).all()
