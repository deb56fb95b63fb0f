"""The headline (mcsim.report.headline): every figure against an independent computation from
the same run's paths, its order, the items a config without their mechanism leaves out, and a
conditioned run's posterior-first layout, in the terminal, summary.json and report.html.

One base-derived run (version 3: funding, discount rate, equity; the cap, the commitment due
2033-10 and the share ending 2030-12 all inside its 2024-01..2033-12 grid), 2,000 paths, and
the same paths' per-path statistics from the kernel (the path runner's PathRows): the
histograms binned those paths, so a quantile's only error against them is its bin (relative
width 0.46%), and a probability is the same count. And one small config with none of the
mechanisms (no cap, commitment, funding, discount rate or stake), conditioned by importance
on one observation.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from dataclasses import replace

import numpy as np
import pytest
from helpers import CONFIGS_DIR, minimal_config_text

import mcsim
from mcsim import api
from mcsim.engine.kernel import KernelSpec, kernel_inputs
from mcsim.engine.runner import PathRows, run_paths
from mcsim.report import format_summary, headline, render, summarize
from mcsim.report.headline import FUNDING_GAP_DATES, KEEPS_SPENDING, ORDER

PATHS = 2000
Z = 1.959964
V3 = f'''extends = "{CONFIGS_DIR / "base.toml"}"
[simulation]
horizon = "2033-12"
paths = {PATHS}
seed = 5
'''
#: none of the headline's optional mechanisms; one observation (its revenue 2024 is
#: $2.8-3.8B, 5-95%), conditioned by importance
SMALL = minimal_config_text(
    simulation={"paths": "1000", "horizon": '"2025-12"'},
    conditioning={"method": '"importance"'},
    **{"observations.revenue_2024": {"flow": '"revenue"', "start": '"2024-01"',
                                     "end": '"2024-12"', "value": "3.0e9",
                                     "rel_sd": "0.1"}})


def _per_path(outs):
    return {"stats": outs[0].stats, "months": outs[0].event_months}


def _config(tmp_path_factory, text: str, name: str):
    path = tmp_path_factory.mktemp(name) / f"{name}.toml"
    path.write_text(text)
    return mcsim.load_config(path)


@pytest.fixture(scope="module")
def v3(tmp_path_factory):
    """(results, the same paths' stats [S, n] and event months [E, n])."""
    config = _config(tmp_path_factory, V3, "v3")
    results = api.run(config, progress=False)
    rows = run_paths([KernelSpec.for_config(config)], [kernel_inputs(config)],
                     PathRows(_per_path, PATHS), PATHS, progress=False)
    assert rows["finite"].all()
    return results, np.asarray(rows["stats"], np.float64), np.asarray(rows["months"])


@pytest.fixture(scope="module")
def prior(v3):
    return v3[0], headline(v3[0])


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """The small config's run with its conditioned pass."""
    config = _config(tmp_path_factory, SMALL, "small")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a small effective sample size
        return api.add_conditioned([api.run(config, progress=False)], progress=False)[0]


def _row(h: dict, item: str, row: str) -> dict:
    found = next(i for i in h["items"] if i["key"] == item)
    return next(r for r in found["rows"] if r["key"] == row)


# --- independent figures from the paths ---------------------------------------------------

def _order_statistic(x: np.ndarray, rank: float) -> float:
    """The path value of rank ``rank`` (1-based, rounded up; clipped to 1..n)."""
    s = np.sort(x)
    return float(s[min(max(math.ceil(rank - 1e-9), 1), len(s)) - 1])


def _same_bin(a: float, b: float, width: float) -> bool:
    return abs(a - b) <= width * max(abs(a), abs(b)) * 1.001 + 1.0


def _check_money(fig: dict, x: np.ndarray, width: float) -> None:
    """Each quantile of ``fig`` is the paths' order statistic at rank n p, to its bin; its 95%
    interval brackets the order statistics of ranks n p -+ 1.96 sqrt(n p (1 - p)) (the Monte
    Carlo error of a quantile of n paths) and ends within a bin of them."""
    n = len(x)
    for name, p in (("p5", 0.05), ("median", 0.5), ("p95", 0.95)):
        q = fig[name]
        exact = _order_statistic(x, n * p)
        assert _same_bin(q["value"], exact, width), (name, q, exact)
        half = Z * math.sqrt(n * p * (1 - p))
        lo, hi = _order_statistic(x, n * p - half), _order_statistic(x, n * p + half)
        assert q["ci95_low"] <= lo * (1 + 1e-12) + 1.0 and _same_bin(q["ci95_low"], lo,
                                                                        width), (name, q, lo)
        assert q["ci95_high"] >= hi * (1 - 1e-12) - 1.0 and _same_bin(q["ci95_high"], hi,
                                                                         width), (name, q, hi)


def _check_probability(fig: dict, hits: np.ndarray) -> None:
    p = float(np.mean(hits))
    assert fig["probability"] == pytest.approx(p, abs=1e-12)
    assert fig["se"] == pytest.approx(math.sqrt(p * (1 - p) / len(hits)), abs=1e-12)


def _check_month(fig: dict, months: np.ndarray, grid) -> None:
    """The median month: the smallest month by which half the paths have the event (T: not
    by the horizon, a label of None)."""
    T = grid.num_months
    m = int(np.sort(months)[math.ceil(0.5 * len(months)) - 1])
    assert fig["month"] == (grid.label(m) if m < T else None)


def test_each_figure_is_the_paths_own(v3, prior):
    results, h = prior
    _, stats, months = v3
    layout, grid = results.layout, results.grid
    T = grid.num_months
    width = results.bins.relative_width
    horizon = layout.rows("horizon").start
    total = {name: stats[horizon + k] for k, name in enumerate(layout.horizon_totals)}
    event = {name: months[layout.event_index(name)] for name in layout.event_names}

    # cumulative Azure spend, nominal and present value
    _check_money(_row(h, "cumulative_azure_spend", "nominal"), stats[T - 1], width)
    _check_money(_row(h, "cumulative_azure_spend", "present_value"),
                 total["pv_cumulative_azure_spend"], width)
    # the cap: its month, and P(the share ends 2030-12 before it) = P(cap month after it)
    _check_month(_row(h, "revenue_share_cap", "median_month"), event["cap_reached"], grid)
    _check_probability(_row(h, "revenue_share_cap", "share_ends_first"),
                       event["cap_reached"] > grid.index("2030-12"))
    _check_probability(_row(h, "revenue_share_cap", "by_horizon"), event["cap_reached"] < T)
    # the commitment: met by spend; the shortfall of 2033 (paid 2033-10), given it is paid
    _check_probability(_row(h, "azure_commitment", "met"), event["commitment_met"] < T)
    shortfall = stats[layout.rows("azure_commitment_shortfall").start
                      + grid.years.index(2033)]
    paid = shortfall >= 1.0  # the histogram's zero bin holds |x| < $1
    _check_probability(_row(h, "azure_commitment", "shortfall_paid"), paid)
    given = _row(h, "azure_commitment", "shortfall_given_paid")
    assert 50 < paid.sum() < PATHS - 50  # both kinds of path, enough of each
    assert given["paths"] == paid.sum()
    _check_money(given, shortfall[paid], width)
    # a path that pays a shortfall has not met the commitment, and one that has pays none
    np.testing.assert_array_equal(paid, event["commitment_met"] >= T)
    # the funding gap: P(by each date), the median month, the funding still to be found
    gap = event["funding_gap"]
    for label in FUNDING_GAP_DATES:
        _check_probability(_row(h, "funding_gap", f"by_{label}"), gap <= grid.index(label))
    _check_probability(_row(h, "funding_gap", "by_horizon"), gap < T)
    _check_month(_row(h, "funding_gap", "median_month"), gap, grid)
    _check_money(_row(h, "funding_gap", "funding_to_find"), total["funding_to_find"], width)
    # Microsoft's whole position, undiscounted and present value
    _check_money(_row(h, "microsoft_position", "undiscounted"),
                 total["microsoft_whole_position"], width)
    _check_money(_row(h, "microsoft_position", "present_value"),
                 total["pv_microsoft_whole_position"], width)
    # repayment
    _check_month(_row(h, "repayment", "median_month"), event["repayment"], grid)
    _check_probability(_row(h, "repayment", "not_by_horizon"), event["repayment"] >= T)


def test_funding_gap_is_the_event_cdf(prior):
    results, h = prior
    dist = results.event("funding_gap")
    t = results.grid.index("2027-12")
    row = _row(h, "funding_gap", "by_2027-12")
    assert (row["probability"], row["se"]) == (float(dist.cdf[t]), float(dist.cdf_se[t]))
    item = next(i for i in h["items"] if i["key"] == "funding_gap")
    assert item["note"] == KEEPS_SPENDING


def test_items_in_order_everywhere(prior):
    results, h = prior
    assert h["lead"] == "prior" and "prior" not in h["items"][0]["rows"][0]
    assert [i["key"] for i in h["items"]] == list(ORDER)
    titles = [i["title"] for i in h["items"]]
    # the terminal: the headline first, its items in order, then the detail
    text = format_summary(results)
    at = [text.index(t) for t in titles]
    assert at == sorted(at) and at[-1] < text.index("\nDetail")
    assert "keeps spending" in text and "cumulative revenue at" in text
    assert "pv cumulative profit" not in text  # the detail lists a few totals, not all
    # summary.json: the same block, strict JSON; report.html: the same rows, first
    summary = json.loads(json.dumps(summarize(results), allow_nan=False))
    assert summary["headline"] == json.loads(json.dumps(h))
    page = render(summary, {})
    table = re.search(r'<table id="headline">(.*?)</table>', page, flags=re.S).group(1)
    at = [table.index(t.replace("'", "&#x27;")) for t in titles]
    assert at == sorted(at)
    assert page.index('id="headline"') < page.index("<h2>Plots")


def test_items_without_their_mechanism_are_left_out(small):
    results = replace(small, conditioned=None)
    h = headline(results)
    assert [i["key"] for i in h["items"]] == ["cumulative_azure_spend", "microsoft_position",
                                             "repayment"]
    assert [r["key"] for r in h["items"][0]["rows"]] == ["nominal"]  # no present value
    position = h["items"][1]
    assert [r["key"] for r in position["rows"]] == ["undiscounted"]
    assert "economic return" in position["title"]
    # only version-1 and -2 quantities: nothing of funding, discounting or equity
    block = json.dumps(summarize(results)["headline"])
    for word in ("funding", "present value", "equity", "whole position", "cash", "cap",
                 "commitment"):
        assert word not in block, word
    text = format_summary(results)
    for word in ("Revenue-share cap (", "Azure commitment (", "Funding gap", "present value"):
        assert word not in text, word


def test_a_conditioned_run_leads_with_the_posterior(small):
    results, cond = small, small.conditioned
    h = headline(results)
    assert h["lead"] == "posterior" and h["observations"] == 1
    assert h["effective_sample_size"] == pytest.approx(cond.ess)
    assert cond.ess < 0.9 * results.num_paths  # the observation moves the paths' weights
    assert [i["key"] for i in h["items"]] == ["cumulative_azure_spend", "microsoft_position",
                                             "repayment"]
    # the prior beside each row is the prior headline's row, figure for figure
    alone = headline(replace(results, conditioned=None))
    for item, other_item in zip(h["items"], alone["items"], strict=True):
        for row, other in zip(item["rows"], other_item["rows"], strict=True):
            assert row["prior"] == {k: v for k, v in other.items()
                                    if k not in ("key", "label", "kind")}
    # the lead figures are the conditioned run's own
    T = results.grid.num_months
    q = cond.quantiles("cumulative_azure_spend", (5.0, 50.0, 95.0))
    spend = _row(h, "cumulative_azure_spend", "nominal")
    assert [spend[k]["value"] for k in ("p5", "median", "p95")] == list(q.value[T - 1])
    assert spend["median"]["value"] != spend["prior"]["median"]["value"]
    i = results.layout.horizon_totals.index("microsoft_economic_return")
    assert _row(h, "microsoft_position", "undiscounted")["median"]["value"] == \
        cond.quantiles("horizon", (50.0,)).value[i, 0]
    rep = cond.event("repayment")
    row = _row(h, "repayment", "not_by_horizon")
    assert (row["probability"], row["se"]) == (rep.censored, rep.censored_se)
    # the terminal puts the prior under each posterior row; report.html beside it
    text = format_summary(results)
    assert "Headline, conditioned on 1 observation (effective sample size" in text
    lines = text.splitlines()
    k = next(i for i, x in enumerate(lines) if x.strip().startswith("nominal:"))
    assert lines[k + 1].strip().startswith("prior: median")
    assert text.index("Headline, conditioned") < text.index("nominal:") < \
        text.index("\nDetail (prior):")
    page = render(json.loads(json.dumps(summarize(results), allow_nan=False)), {})
    table = re.search(r'<table id="headline">(.*?)</table>', page, flags=re.S).group(1)
    assert "<th>posterior</th><th>prior</th>" in table
