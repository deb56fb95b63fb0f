"""First-passage events are one table (mcsim.events): a row added there reaches the kernel,
the chunk counts, Results, frames, CSVs, summary.json, the terminal text and the plots,
with no other file touched; checkpoints know the table they were written with; a fused
month loop that cannot run says why."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from helpers import CONFIGS_DIR

import mcsim
from mcsim import checkpoint as ckpt
from mcsim import events
from mcsim.accumulators import Accumulator, MoneyBins
from mcsim.config import ConfigError
from mcsim.engine import KernelOptions
from mcsim.layout import StatLayout
from mcsim.report import write_report
from mcsim.report.text import format_summary

PATHS = 512

#: the dummy event of the issue: cumulative Azure spend passes $100B (a condition)
SPEND_100B = events.Event(
    "azure_spend_100b", "azure_spend_passes_100b", "p_azure_spend_100b_by",
    "Cumulative Azure spend passes $100B", "not yet $100B", "Azure spend not yet $100B",
    "When cumulative Azure spend passes $100B",
    "the first month whose cumulative Azure spend reaches $100B",
    color="tab:red", reached=lambda state, flows, deal: state.cum_azure_spend >= 100e9)
#: credit exhaustion again, found by a condition instead of the model's own state field:
#: its counts must be the model's exactly
CREDITS_BY_CONDITION = dataclasses.replace(
    events.by_name("credit_exhaustion"), name="credits_by_condition",
    summary_key="credits_by_condition", probability_column="p_credits_by_condition",
    month_field=None,
    reached=lambda state, flows, deal: state.cum_azure_spend >= deal.azure_credits)


@pytest.fixture
def extra_events(monkeypatch):
    """The table with the two rows above added: the only change a new event needs."""
    monkeypatch.setattr(events, "EVENTS", events.EVENTS + (SPEND_100B, CREDITS_BY_CONDITION))


def test_an_event_row_needs_exactly_one_source():
    with pytest.raises(ValueError, match="exactly one of month_field, reached"):
        dataclasses.replace(SPEND_100B, month_field="credit_month")


def test_a_new_event_by_one_row_reaches_every_output(extra_events, tmp_path):
    results = mcsim.simulate(CONFIGS_DIR / "base.toml", paths=PATHS, seed=3)
    assert results.events[-2:] == ("azure_spend_100b", "credits_by_condition")

    # the condition's month is exact: the same counts as the model's credit month
    np.testing.assert_array_equal(results.event_counts("credits_by_condition"),
                                  results.event_counts("credit_exhaustion"))
    # $100B of cumulative spend: every path passes it between the first month and the
    # horizon's (the fan chart's 5% at the horizon is far above it), later than the
    # first $13B of credits on every path
    spend = results.event("azure_spend_100b")
    assert spend.counts.sum() == PATHS and spend.censored == 0.0
    first_100b = np.repeat(np.arange(len(spend.counts)), spend.counts)
    first_credit = np.repeat(np.arange(len(spend.counts)),
                             results.event_counts("credit_exhaustion"))
    assert np.all(np.sort(first_100b) >= np.sort(first_credit))
    # and it agrees with the fan chart: P(passed by month m) >= 95% where the 5% quantile
    # of cumulative spend is above $100B (its interval's low end, to be safe)
    q = results.quantiles("cumulative_azure_spend", (5,))
    above = np.flatnonzero(q.ci_low[:, 0] > 100e9)
    assert above.size and np.all(spend.cdf[above] >= 0.95)

    # Results' frames
    frame = results.event_frame("azure_spend_100b")
    np.testing.assert_allclose(frame["cdf"].to_numpy(), spend.cdf)
    assert "azure_spend_100b" in results.event_quantile_frame().index.get_level_values(0)
    assert "azure_spend_100b_month" in results.summary_frame().index

    write_report(results, tmp_path / "out")
    out = tmp_path / "out"
    summary = json.loads((out / "summary.json").read_text())
    block = summary["azure_spend_passes_100b"]
    assert block["probability_not_by_horizon"] == 0.0
    assert summary["method"]["azure_spend_passes_100b"] == SPEND_100B.reaches
    assert summary["credits_by_condition"] == summary["credit_exhaustion"]
    with open(out / "repayment_cdf.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    np.testing.assert_allclose([float(r["p_azure_spend_100b_by"]) for r in rows], spend.cdf)
    assert "p_azure_spend_100b_by_se" in rows[0]
    assert (out / "azure_spend_100b_cdf.png").stat().st_size > 10_000
    assert "When cumulative Azure spend passes $100B" in (out / "report.html").read_text()
    assert "Cumulative Azure spend passes $100B: median" in format_summary(results)


#: the fused loop runs in Pallas' interpret mode on the CPU: two years keep it quick
SHORT = {"simulation.horizon": "2025-12"}


def test_a_condition_event_makes_the_fused_loop_fall_back_and_say_so(extra_events, capfd):
    results = mcsim.simulate(CONFIGS_DIR / "base.toml", paths=256, seed=3, overrides=SHORT,
                             options=KernelOptions(fused=True))
    assert results.info.options.fused is False
    assert "events found by a condition" in results.info.fused_fallback
    err = capfd.readouterr().err
    assert "fused month loop" in err and "events found by a condition" in err
    assert len([line for line in err.splitlines() if "fused" in line]) == 1


def test_the_fused_loop_does_not_fall_back_when_it_can(capfd):
    # base.toml as it was before version 3: every version-2 mechanism, none of version 3's
    v2_base = Path(__file__).resolve().parent / "data" / "v2" / "base.toml"
    results = mcsim.simulate(v2_base, paths=256, seed=3, overrides=SHORT,
                             options=KernelOptions(fused=True))
    assert results.info.options.fused is True and results.info.fused_fallback is None
    assert "fused" not in capfd.readouterr().err


def test_version_3_makes_the_fused_loop_fall_back_and_say_so(capfd):
    results = mcsim.simulate(CONFIGS_DIR / "base.toml", paths=256, seed=3, overrides=SHORT,
                             options=KernelOptions(fused=True))
    assert results.info.options.fused is False
    assert "version 3's funding" in results.info.fused_fallback
    err = capfd.readouterr().err
    assert len([line for line in err.splitlines() if "fused" in line]) == 1
    # and the rounds after the shortened horizon were left out, not refused
    assert results.config.funding.rounds[-1][0] <= "2025-12"


def test_a_checkpoint_of_another_event_table_is_refused_in_one_line(monkeypatch, tmp_path):
    config = mcsim.load_config(CONFIGS_DIR / "base.toml")
    import jax

    def identity():
        return ckpt.run_identity(config, dtype="float32", shard=2048,
                                 devices=jax.local_devices(), num_processes=1,
                                 process_index=0, options=KernelOptions(),
                                 bins=MoneyBins())

    layout = StatLayout(config.grid)
    acc = Accumulator(layout.num_stats, MoneyBins().num_bins, config.grid.num_months)
    path = tmp_path / "process-0-of-1.npz"
    assert ckpt.save(path, identity(), acc, 2048) is None
    # the same table: resumed
    again = Accumulator(layout.num_stats, MoneyBins().num_bins, config.grid.num_months)
    assert ckpt.load(path, identity(), again) == 2048
    # one more event: refused, naming the layout, before any array is touched
    monkeypatch.setattr(events, "EVENTS", events.EVENTS + (SPEND_100B,))
    other = Accumulator(layout.num_stats, MoneyBins().num_bins, config.grid.num_months)
    with pytest.raises(ConfigError) as err:
        ckpt.load(path, identity(), other)
    message = str(err.value)
    assert "layout" in message and "azure_spend_100b" in message
    assert "\n" not in message


def test_counts_of_the_wrong_shape_are_an_error_not_a_silent_zero():
    acc = Accumulator(3, 5, 12, num_events=2)
    with pytest.raises(ValueError, match="event_counts of shape"):
        acc.add_counts(np.zeros((3, 5)), np.zeros((4, 13)), np.zeros(13))
    with pytest.raises(TypeError):
        acc.add_counts(np.zeros((3, 5)), np.zeros((2, 13)))  # one missing
