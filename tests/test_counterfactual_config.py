"""The deal-only counterfactual (issue 23, item 3): configs/counterfactual_2019_terms.toml is
base.toml's world with only the deal replaced by the 2019-2025 terms as if never changed.

1. The loaded configs differ only in ``[deal]`` and ``microsoft_equity_stake``: the same
   simulation, parameters (every other one), correlations, shocks and funding.
2. Its deal is base.toml's own terms in force from 2024-01 (the 2019-2025 terms) with the
   $92B profit cap added, the Azure commitment removed and no later change: so the two
   configs give the same paths, month by month, until 2025-09 (checked path by path on the
   kernel's recorded flows: exactly equal), and differ after (the reverse share runs on).
3. A paired comparison (``mcsim.api.compare_paired``, common random numbers) of base (A)
   and the counterfactual (B) runs and gives differences whose signs follow from the terms:
   - revenue (the world): exactly 0 on every path, so difference and paired SE are 0;
   - Microsoft's receipts (profit share + revenue share): B >= A on every path (the same
     terms until 2025-09; after, base pays a revenue share capped at $38B and ending in
     2030 and no profit share, the counterfactual an uncapped 20% share to 2040 and its
     profit share), so the difference is > 0;
   - cumulative Azure spend: the world's Azure bill is the same, and only base pays the
     take-or-pay shortfall of the $250B commitment (on the paths that miss it by 2033-10),
     so the difference is < 0;
   - Microsoft's equity value: 0 under the counterfactual (no stake), > 0 under base;
   - OpenAI's cumulative profit is lower and the funding it still has to find is larger
     under the counterfactual: it pays 20% of revenue to Microsoft for ten more years (the
     reverse share it receives runs on too, but on Microsoft's OpenAI-model revenue, about a
     third of OpenAI's: base.toml's microsoft_ai_revenue_growth) and 49-75% of any profit,
     and saves only the commitment shortfall;
   - the repayment month can only come earlier (or the same) under the counterfactual: its
     receipts are never below base's at any month.
   "Significantly": by more than ``N_SE`` paired standard errors (``sd(diff)/sqrt(n)``).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from helpers import CONFIGS_DIR, N_SE

from mcsim import load_config
from mcsim.api import compare_paired
from mcsim.facts import Fact, fact_values

#: Paths for the paired run (full horizon: the commitment's month, 2033-10, and the
#: valuation at 2040-12 are inside) and for the path-by-path flows.
PAIRED_PATHS = 2048
FLOW_PATHS = 512


@pytest.fixture(scope="module")
def base():
    return load_config(CONFIGS_DIR / "base.toml")


@pytest.fixture(scope="module")
def counterfactual():
    return load_config(CONFIGS_DIR / "counterfactual_2019_terms.toml")


def test_only_the_deal_and_the_stake_differ(base, counterfactual):
    assert counterfactual.simulation == base.simulation
    assert counterfactual.funding == base.funding and base.funding is not None
    assert counterfactual.correlation_pairs == base.correlation_pairs
    np.testing.assert_array_equal(np.asarray(counterfactual.shock_correlation),
                                  np.asarray(base.shock_correlation))
    assert counterfactual.observations == base.observations == ()
    assert counterfactual.conditioning == base.conditioning
    assert set(counterfactual.parameters) == set(base.parameters)
    differ = {k for k in base.parameters if counterfactual.parameters[k] != base.parameters[k]}
    assert differ == {"microsoft_equity_stake"}
    assert base.parameters["microsoft_equity_stake"] == 0.2679
    assert counterfactual.parameters["microsoft_equity_stake"] == 0.0
    assert counterfactual.deal != base.deal


def test_the_deal_is_base_terms_from_2024_kept(base, counterfactual):
    """base.toml's [deal] before its changes, plus the $92B cap, less the commitment."""
    assert base.deal.changes and base.deal.azure_commitment == 250e9
    assert base.deal.profit_cap is None
    kept = dataclasses.replace(base.deal, changes=(), profit_cap=92e9, azure_commitment=None,
                               azure_commitment_from=None, azure_commitment_by=None)
    assert counterfactual.deal == kept
    d = counterfactual.deal
    assert (d.profit_share_until_recouped, d.profit_share_after) == (0.75, 0.49)
    assert (d.revenue_share, d.reverse_share) == (0.2, 0.2)
    assert d.revenue_share_end is None and d.revenue_share_cap is None


def _values(config, facts):
    return fact_values(config, facts, num_paths=FLOW_PATHS)


def test_same_paths_until_the_terms_changed(base, counterfactual):
    """Month by month the same until 2025-09 (the recapitalisation took effect in 2025-10):
    every flow and stock the facts can read, summed over 2024-01..2025-09, and at 2025-09,
    bit for bit. After the amendment (2026-04) base has no reverse share, the counterfactual
    does on every path; revenue (the world) stays the same."""
    flows = ("revenue", "azure_spend", "revenue_share", "reverse_revenue_share",
             "net_revenue_share", "profit", "profit_share", "paid_to_microsoft",
             "microsoft_azure_margin", "other_opex", "training_spend")
    before = [Fact(f"{f} to 2025-09", 1.0, "2024-01", "2025-09", "test", (f,)) for f in flows]
    before += [Fact(f"{f} 2025-09 only", 1.0, "2025-09", "2025-09", "test", (f,))
               for f in flows]
    before += [Fact("users 2025-09", 1.0, "2025-09", "2025-09", "test",
                    stock="weekly_active_users")]
    after = [Fact("revenue 2026-04..12", 1.0, "2026-04", "2026-12", "test", ("revenue",)),
             Fact("reverse 2026-04..12", 1.0, "2026-04", "2026-12", "test",
                  ("reverse_revenue_share",))]
    a, b = _values(base, before + after), _values(counterfactual, before + after)
    assert a.shape == b.shape and a.shape[1] > 0.99 * FLOW_PATHS
    k = len(before)
    np.testing.assert_array_equal(a[:k], b[:k])
    np.testing.assert_array_equal(a[k], b[k])           # revenue after the amendment
    assert np.all(a[k + 1] == 0.0) and np.all(b[k + 1] > 0.0)   # the reverse share


@pytest.fixture(scope="module")
def paired(base, counterfactual):
    return compare_paired(base, counterfactual, paths=PAIRED_PATHS)


def _z(row):
    return row["difference"] / row["se_paired"]


def test_paired_difference_runs_with_the_headline_totals(paired):
    for stat in ("cumulative_azure_spend", "cumulative_revenue", "microsoft_receipts",
                 "microsoft_economic_return", "funding_to_find", "microsoft_equity_value",
                 "microsoft_whole_position", "pv_microsoft_whole_position",
                 "repayment_month"):
        assert stat in paired.index, stat
    assert paired.attrs["paths"] == PAIRED_PATHS
    assert np.isfinite(paired.to_numpy()).all()


def test_the_world_is_the_same(paired):
    row = paired.loc["cumulative_revenue"]
    assert row["difference"] == 0.0 and row["se_paired"] == 0.0
    assert row["se_unpaired"] > 0


def test_microsoft_receives_more_under_the_2019_terms(paired):
    row = paired.loc["microsoft_receipts"]
    assert _z(row) > N_SE, row
    # the cap and end date bind under base: $38B less the ~$0.2B paid before 2024, at most
    assert paired.loc["microsoft_receipts", "mean_a"] <= 38e9
    assert _z(paired.loc["microsoft_economic_return"]) > N_SE


def test_only_base_pays_the_commitment_shortfall(paired):
    row = paired.loc["cumulative_azure_spend"]
    assert row["difference"] < 0 and _z(row) < -N_SE, row


def test_no_equity_under_the_2019_terms(paired):
    row = paired.loc["microsoft_equity_value"]
    assert row["mean_b"] == 0.0 and row["mean_a"] > 0
    # the whole position is the economic return plus the equity value, under both
    for col in ("mean_a", "mean_b"):
        whole = paired.loc["microsoft_whole_position", col]
        parts = (paired.loc["microsoft_economic_return", col]
                 + paired.loc["microsoft_equity_value", col])
        assert whole == pytest.approx(parts, rel=1e-9)


def test_openai_keeps_less_under_the_2019_terms(paired):
    assert _z(paired.loc["cumulative_profit"]) < -N_SE
    assert _z(paired.loc["funding_to_find"]) > N_SE


def test_repayment_is_no_later_under_the_2019_terms(paired):
    assert paired.loc["repayment_month", "difference"] <= 0.0
