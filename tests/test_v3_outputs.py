"""Version 3's outputs reach every layer, and only for the configs that ask for them.

One short run of ``configs/base.toml`` (which gives [funding], a discount rate and
Microsoft's stake) cut at 2029-12, 2,048 paths: its layout, summary.json, CSVs, frames, the
HTML report's sections, precision targets and the paired difference. The numbers are the
kernel's, checked against the NumPy reference in ``tests/test_model_v3.py``; here each layer
is checked against the Results it was written from (exact) or against the invariants of the
quantities (funding to find >= 0, whole position = economic return + equity value).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import CONFIGS_DIR

import mcsim
from mcsim import api
from mcsim.config import ConfigError
from mcsim.layout import HORIZON_TOTALS, STOCKS, v3_totals
from mcsim.paired import check_pairable, paired_difference, paired_text
from mcsim.report import summarize
from mcsim.report.tables import write_tables


@pytest.fixture(scope="module")
def config():
    return mcsim.load_config(CONFIGS_DIR / "base.toml").with_simulation(
        horizon="2029-12", paths=2048, seed=5)


@pytest.fixture(scope="module")
def results(config):
    return api.run(config, progress=False)


def test_a_config_with_every_v3_key_has_every_v3_row(results):
    layout = results.layout
    assert layout.v3 == {"funding", "discount", "equity"}
    assert layout.horizon_totals == HORIZON_TOTALS + v3_totals(layout.v3)
    assert len(layout.horizon_totals) == len(HORIZON_TOTALS) + 9
    assert layout.stocks == (*STOCKS, "cash")
    assert layout.event_names[-1] == "funding_gap"
    # the cash stock is signed: its quantiles may be below 0, and the lower ones are
    q = results.quantiles("cash")
    assert not layout.non_negative()[layout.rows("cash")].any()
    assert np.all(np.diff(q.value, axis=1) >= 0)


def test_v3_totals_obey_their_definitions_in_the_means(results):
    mean, se = results.mean("horizon")
    at = dict(zip(results.layout.horizon_totals, mean, strict=True))
    err = dict(zip(results.layout.horizon_totals, se, strict=True))
    # linear identities hold path by path, so their means agree to rounding (float64 sums
    # of float64 values: relative 1e-12 is far above the rounding of 2,048 additions)
    whole = at["microsoft_economic_return"] + at["microsoft_equity_value"]
    assert at["microsoft_whole_position"] == pytest.approx(whole, rel=1e-12)
    pv_whole = at["pv_microsoft_economic_return"] + at["pv_microsoft_equity_value"]
    assert at["pv_microsoft_whole_position"] == pytest.approx(pv_whole, rel=1e-12)
    investment = results.config.deal.investment
    assert at["pv_microsoft_economic_net"] == pytest.approx(
        at["pv_microsoft_economic_return"] - investment, rel=1e-12)
    # the net's error is its total's (the investment is a constant)
    assert err["pv_microsoft_economic_net"] == err["pv_microsoft_economic_return"]
    # discounting at a positive rate shrinks a non-negative flow's sum
    assert results.config.simulation.discount_rate > 0
    assert 0 < at["pv_cumulative_azure_spend"] < results.mean("cumulative_azure_spend")[0][-1]
    assert at["pv_microsoft_equity_value"] < at["microsoft_equity_value"]
    assert at["funding_to_find"] >= 0


def test_summary_csv_frames_and_html_carry_them(results, tmp_path):
    s = json.loads(json.dumps(summarize(results), allow_nan=False))
    assert s["schema"] == "mcsim.summary/3"
    assert set(results.layout.horizon_totals) == set(s["horizon"])
    assert "cash" in s["stocks"] and s["stocks"]["units"]["cash"].startswith("$")
    gap = s["funding_gap"]
    assert gap["probability_not_by_horizon"] == pytest.approx(
        results.event("funding_gap").censored)
    assert s["funding_rounds"] == [list(r) for r in results.config.funding.rounds]
    assert s["discount_rate"] == results.config.simulation.discount_rate
    assert "keeps spending" in s["method"]["funding_gap_keeps_spending"]
    write_tables(results, tmp_path)
    stocks = (tmp_path / "stocks.csv").read_text()
    assert "\ncash," in stocks
    totals = (tmp_path / "horizon_totals.csv").read_text()
    for name in v3_totals(results.layout.v3):
        assert f"\n{name}," in totals, name
    cdf = (tmp_path / "repayment_cdf.csv").read_text().splitlines()[0]
    assert "p_funding_gap_by" in cdf
    frame = results.summary_frame()
    assert "funding_gap_month" in frame.index and "funding_to_find" in frame.index
    assert set(results.stock_frame().index.get_level_values("stock")) == set(
        results.layout.stocks)


def test_a_v2_group_name_of_v3_is_refused_clearly_on_a_v2_run():
    from mcsim.layout import StatLayout
    from mcsim.months import MonthGrid

    layout = StatLayout(MonthGrid.from_labels("2024-01", "2025-12"))
    with pytest.raises(ValueError, match=r"'cash': not a stock of this run \(it needs "
                                         r"\[funding\]"):
        layout.rows("cash")
    with pytest.raises(ValueError, match="funding_to_find"):
        layout.row("funding_to_find")
    assert "funding_gap" not in layout.event_names


def test_a_precision_target_on_a_v3_total_needs_its_key():
    with pytest.raises(ConfigError, match="target_se = 'funding_to_find'.*needs a version-3"):
        mcsim.simulate(CONFIGS_DIR / "v1_base.toml", paths=1024,
                       target_se={"funding_to_find": "1%"})
    with pytest.raises(ConfigError, match="target_se = 'funding_too'"):  # not a name at all
        mcsim.simulate(CONFIGS_DIR / "v1_base.toml", paths=1024,
                       target_se={"funding_too": "1%"})


def test_paired_difference_compares_every_v3_statistic(config):
    other = mcsim.with_overrides(config, {"parameters.microsoft_equity_stake": 0.0})
    diff = paired_difference(config, other, paths=1024)
    stats = list(diff.statistics)
    for name in (*v3_totals(frozenset({"funding", "discount", "equity"})),
                 "funding_gap_month", "funding_gap_by_horizon", "funding_gap_by_2027-12",
                 "funding_gap_by_2028-12", "repayment_month", "repaid_by_horizon"):
        assert name in stats, name
    assert "funding_gap_by_2030-12" not in stats  # after this run's horizon
    k = stats.index("microsoft_equity_value")
    # B has no stake: its equity value is 0 on every path, so the difference is -A's
    # mean exactly, and the paired error equals A's own
    assert diff.mean_b[k] == 0.0
    assert diff.difference[k] == pytest.approx(-diff.mean_a[k], rel=1e-12)
    assert diff.se_paired[k] == pytest.approx(diff.se_a[k], rel=1e-9)
    # the stake changes nothing else: every other difference is exactly 0
    for j, name in enumerate(stats):
        if "equity" not in name and "whole_position" not in name:
            assert diff.difference[j] == 0.0 and diff.se_paired[j] == 0.0, name
    text = paired_text(diff, ("today", "no stake"))
    assert "P(funding gap by 2027-12)" in text


def test_paired_difference_refuses_configs_with_different_v3_keys(config):
    without = mcsim.load_config(CONFIGS_DIR / "v1_base.toml").with_simulation(
        horizon="2029-12", paths=2048, seed=5)
    with pytest.raises(ConfigError, match=r"funding = 'absent'.*given, as in the first"):
        check_pairable(config, without)


def test_an_observation_of_cash_reads_the_paths_cash(tmp_path):
    """``stock = "cash"`` at a December is the year-end cash stock of the same path, to the
    bit (both are the state's cash after that month): what the likelihood weights read
    (the weighting itself is the same for every series, tests/test_conditioning.py)."""
    import jax
    import jax.numpy as jnp

    from mcsim import engine
    from mcsim.engine import conditioning

    text = f'''extends = "{CONFIGS_DIR / "base.toml"}"
[simulation]
horizon = "2026-12"
paths = 1024
[conditioning]
method = "importance"
[observations.cash_2025]
stock = "cash"
month = "2025-12"
value = 30e9
sd = 5e9
'''
    (tmp_path / "obs_cash.toml").write_text(text)
    cfg = mcsim.load_config(tmp_path / "obs_cash.toml")
    windows = conditioning.observation_windows(cfg)
    kernel = engine.build_kernel(engine.KernelSpec.for_config(cfg, observed=True))
    out = jax.jit(lambda inputs, paths: kernel(inputs, paths, windows=windows))(
        engine.kernel_inputs(cfg), jnp.arange(1024, dtype=jnp.uint32))
    stats, observed = np.asarray(out.stats), np.asarray(out.observed_sums)
    layout = engine.KernelSpec.for_config(cfg).layout
    row = layout.rows("cash").start + cfg.grid.years.index(2025)
    np.testing.assert_array_equal(observed[0], stats[row])


def test_overrides_and_sweeps_reach_the_v3_keys():
    base = mcsim.load_config(CONFIGS_DIR / "base.toml")
    fixed = mcsim.with_overrides(base, {"funding.cash_0": 5e9})
    assert fixed.parameters["cash_0"] == 5e9
    rounds = mcsim.with_overrides(base, {"funding.rounds": [["2025-01", 1e9]]})
    assert rounds.funding.rounds == (("2025-01", 1e9),)
    assert rounds.parameters["cash_0"] == base.parameters["cash_0"]  # merged, not replaced
    rate = mcsim.with_overrides(base, {"simulation.discount_rate": "5%/yr"})
    assert rate.simulation.discount_rate == pytest.approx(np.log(1.05), rel=1e-15)
    with pytest.raises(ConfigError, match=r"funding.cash_1 = .*did you mean funding.cash_0"):
        mcsim.with_overrides(base, {"funding.cash_1": 5e9})
    with pytest.raises(ConfigError, match=r"funding.rounds\[0\]\[0\] = '2020-01'"):
        mcsim.with_overrides(base, {"funding.rounds": [["2020-01", 1e9]]})
    # a run cut short keeps the rounds inside it (one after its horizon changes no month)
    short = base.with_simulation(horizon="2025-06")
    assert [m for m, _ in short.funding.rounds] == [m for m, _ in base.funding.rounds
                                                    if m <= "2025-06"]
