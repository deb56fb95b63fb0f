"""configs/base.toml against the public facts, and its long run against plausibility bounds.

**Facts** (:data:`mcsim.facts.FACTS` and the 2026 facts of calibration.md section 9,
:data:`FACTS_2026`, each citing its calibration.md row): the model's distribution of each
fact's quantity over the config's first 8,192 paths, and the fact's percentile in it. Firm
facts (filings and well-confirmed leaks) must lie between the model's 25th and 75th
percentiles, the others between its 5th and 95th. The percentile is itself estimated: its
standard error is ``sqrt(q (1 - q) / n)`` (a binomial proportion: at n = 8,192 about 0.48
points at the 25th percentile and 0.24 at the 5th), so each band is widened by ``N_SE`` (4)
of them (1.9 and 1.0 points): a fact whose true percentile is inside its band fails with
probability below 1e-4.

**Funding** (version 3): base.toml's cash at the start is a judgement checked against
history: OpenAI did not run out of money before its March 2026 round, so the model's
funding-gap month must fall before 2026-03 on at most 15% of paths (the estimate less
``N_SE`` binomial standard errors, ``sqrt(p (1 - p) / n)``, must be at most 0.15).

**Long run** (the bounds stated in base.toml's header, a judgement): 2030 revenue median in
$100-200B and its 95th percentile at most $400B; 2040 gross margin (1 - median inference
spend / median revenue) within 20-70%; the median annual Azure spend never below half its
peak; the deepest cumulative loss's 95th percentile at most $1T. Each is checked on its 95%
interval (the histogram quantiles' order-statistic intervals): a bound fails only when the
whole interval is on the wrong side of it.
"""

import numpy as np
import pytest
from helpers import CONFIGS_DIR, N_SE

import mcsim
from mcsim import load_config
from mcsim.facts import FACTS, Fact, facts_vs_model

#: Paths for the facts and the long-run checks. Fewer than mcsim.facts' 16,384 to keep the
#: module fast in CI; every tolerance below scales with its Monte Carlo error at this n.
PATHS = 8192

#: calibration.md section 9 (added December 2026): the 2026 facts the model can express.
#: Neither is firm (both are press reports, "P"); they are rows of mcsim.facts.FACTS (the
#: report and tools/calibrate.py show them), picked out here by their section.
FACTS_2026: tuple[Fact, ...] = tuple(f for f in FACTS if f.start >= "2026-01"
                                     and f.source.startswith("§9"))


@pytest.fixture(scope="module")
def base():
    return load_config(CONFIGS_DIR / "base.toml").with_simulation(paths=PATHS)


@pytest.fixture(scope="module")
def facts(base):
    known = {f.name for f in FACTS}
    return facts_vs_model(base, FACTS + tuple(f for f in FACTS_2026 if f.name not in known),
                          num_paths=PATHS)


@pytest.fixture(scope="module")
def results(base):
    return mcsim.simulate(base, condition=False, progress=False)


def test_every_firm_fact_is_checked(facts):
    names = {r["name"] for r in facts if r["firm"]}
    for expected in ("Azure inference spend 2024", "Azure inference spend Q1-Q3 2025",
                     "Revenue 2024", "Revenue 2025", "Net revenue share paid 2024",
                     "Net revenue share paid Q1-Q3 2025", "Weekly active users Oct 2025",
                     "Weekly active users Feb 2026", "Paying subscribers Feb 2026",
                     "Paid to Microsoft 2025", "Operating loss 2025 (profit)"):
        assert expected in names


def test_the_2026_facts_are_checked(facts):
    rows = {r["name"]: r for r in facts}
    for fact in FACTS_2026:
        assert fact.name in rows, fact.name


def test_each_fact_lies_in_its_band(facts):
    outside = []
    for r in facts:
        lo, hi = (25.0, 75.0) if r["firm"] else (5.0, 95.0)
        slack = N_SE * r["percentile_se"]
        if not lo - slack <= r["percentile"] <= hi + slack:
            outside.append((r["name"], round(r["percentile"], 1), (lo, hi)))
    assert not outside, outside


def _year(results, group, year, pct):
    q = results.quantiles(group, (pct,))
    i = results.grid.year_labels().index(year)
    return q.value[i, 0], q.ci_low[i, 0], q.ci_high[i, 0]


def test_revenue_2030(results):
    median, lo, hi = _year(results, "revenue", "2030", 50)
    assert hi >= 100e9 and lo <= 200e9, median / 1e9
    p95, lo95, _ = _year(results, "revenue", "2030", 95)
    assert lo95 <= 400e9, p95 / 1e9


def test_gross_margin_2040(results):
    _, v_lo, v_hi = _year(results, "revenue", "2040", 50)
    _, i_lo, i_hi = _year(results, "inference_spend", "2040", 50)
    best, worst = 1 - i_lo / v_hi, 1 - i_hi / v_lo
    assert best >= 0.20 and worst <= 0.70, (worst, best)


def test_azure_spend_never_falls_below_half_its_peak(results):
    q = results.quantiles("azure_spend", (50,))
    full = [i for i, y in enumerate(results.grid.year_labels()) if "(" not in y]
    med = q.value[full, 0]
    peak = int(np.argmax(med))
    low = int(peak + np.argmin(med[peak:]))
    assert q.ci_high[full[low], 0] >= 0.5 * q.ci_low[full[peak], 0], med / 1e9


def test_deepest_cumulative_loss(results):
    q = results.quantiles("horizon", (95,))
    k = results.layout.row("deepest_cumulative_loss") - results.layout.rows("horizon").start
    assert q.ci_low[k, 0] <= 1e12, q.value[k, 0] / 1e9


def test_no_funding_gap_before_the_march_2026_round(results):
    """History: OpenAI did not run out of money before its $122B round of March 2026
    (calibration.md §9 "Round, Mar 2026"), so base.toml's cash at the start (a judgement:
    its comment) must leave the model's funding gap before 2026-03 rare. The bound, 15%, is
    the judgement's tolerance (the prior gives ~9%); the estimate less N_SE binomial
    standard errors must be at most it."""
    gap = results.event("funding_gap")
    i = results.grid.labels.index("2026-02")
    p, se = float(gap.cdf[i]), float(gap.cdf_se[i])
    assert p - N_SE * se <= 0.15, (p, se)


def test_version_1_world_keeps_the_leaked_azure_figures():
    """Version 1's world (configs/v1_base.toml: the 2019 terms) still puts the leaked Azure
    inference figures in its middle half. (The deal-only counterfactual,
    configs/counterfactual_2019_terms.toml, is base.toml's world: its facts are base's.)"""
    cfg = load_config(CONFIGS_DIR / "v1_base.toml").with_simulation(
        paths=PATHS, horizon="2025-12")
    rows = {r["name"]: r for r in facts_vs_model(cfg)}
    for name in ("Azure inference spend 2024", "Azure inference spend Q1-Q3 2025"):
        r = rows[name]
        assert 25 - N_SE * r["percentile_se"] <= r["percentile"] <= 75 + N_SE * r[
            "percentile_se"], (name, r["percentile"])


def test_amendment_repays_around_2027():
    """calibration.md's priors: at 20% of the revenue path, cumulative revenue share passes
    $13B around 2027 (2026-2029). The median repayment month must fall in 2026-2029."""
    from mcsim.api import run

    cfg = load_config(CONFIGS_DIR / "amendment_2026.toml").with_simulation(
        horizon="2031-12", paths=4096)
    median, lo, hi = run(cfg, progress=False).repayment.quantiles[50.0]
    assert median is not None
    assert cfg.grid.index("2026-01") <= lo <= median <= hi <= cfg.grid.index("2029-12")
