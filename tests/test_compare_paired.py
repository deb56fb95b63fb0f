"""Comparisons that answer the question (issue 15, item 3): paired differences on common
random numbers (:mod:`mcsim.paired`, ``mcsim.api.compare_paired``, ``mcsim compare
--paired``) and ``mcsim compare`` of report directories (conditioned block, month rows)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import CONFIGS_DIR

import mcsim
from mcsim.api import compare_paired
from mcsim.cli import main
from mcsim.config import ConfigError
from mcsim.layout import StatLayout
from mcsim.paired import STATISTICS, paired_difference, paired_statistics

PATHS = 4096


@pytest.fixture(scope="module")
def config_a():
    """The 2019 terms cut to 2030-12 (84 months), 4,096 paths."""
    cfg = mcsim.load_config(CONFIGS_DIR / "v1_base.toml")
    return mcsim.with_overrides(cfg, {"simulation.horizon": "2030-12",
                                      "simulation.paths": PATHS})


@pytest.fixture(scope="module")
def config_b(config_a):
    return mcsim.with_overrides(config_a, {"deal.revenue_share": 0.25})


def test_same_config_gives_exactly_zero(config_a):
    """The same world twice: every difference and its paired error exactly 0 (the unpaired
    error, for comparison, is not)."""
    frame = compare_paired(config_a, config_a)
    # the v2 statistics first, then each other event's month and "by the horizon"
    assert list(frame.index)[:len(STATISTICS)] == list(STATISTICS)
    assert set(frame.index) == set(paired_statistics(StatLayout.of(config_a))[0])
    assert list(frame.columns) == ["mean_a", "se_a", "mean_b", "se_b", "difference",
                                   "se_paired", "se_unpaired"]
    assert (frame["difference"] == 0.0).all()
    assert (frame["se_paired"] == 0.0).all()
    assert (frame["mean_a"] == frame["mean_b"]).all()
    assert frame.loc["microsoft_receipts", "se_unpaired"] > 0
    assert frame.attrs["paths"] == PATHS


def test_paired_error_smaller_than_unpaired(config_a, config_b):
    frame = compare_paired(config_a, config_b)
    row = frame.loc["microsoft_receipts"]
    assert row["difference"] > 0  # a larger revenue share pays Microsoft more
    assert row["se_paired"] < 0.5 * row["se_unpaired"]
    assert row["se_unpaired"] == pytest.approx(np.hypot(row["se_a"], row["se_b"]))
    # the revenue share does not touch Azure spend: the paired difference is exactly 0
    assert frame.loc["cumulative_azure_spend", "difference"] == 0.0
    assert frame.loc["cumulative_azure_spend", "se_paired"] == 0.0
    # the repayment month is censored at the month count, the indicator a probability
    T = config_a.grid.num_months
    assert 0 <= frame.loc["repayment_month", "mean_a"] <= T
    assert 0 <= frame.loc["repaid_by_horizon", "mean_a"] <= 1


def test_paired_difference_covers_the_reference(config_a, config_b):
    """Over 8 seeds, the 4,096-path paired difference of the mean Microsoft receipts lies
    within 3 paired SEs of a reference difference from 65,536 paths of another seed, for at
    least 7 of the 8.

    Tolerance: the reference carries its own error, about 1/4 of a 4,096-path paired SE
    (sqrt(4096/65536)), so the test's z is the paired one over sqrt(1 + 1/16): 3 SEs is
    2.91 standard deviations of (estimate - reference), a two-sided miss of 0.36% per seed
    under the normal approximation; 2 misses out of 8 then have probability ~4e-4. The
    seeds are fixed, so the test is deterministic."""
    stat = STATISTICS.index("microsoft_receipts")
    ref = paired_difference(mcsim.with_overrides(config_a, {"simulation.seed": 10_000}),
                            mcsim.with_overrides(config_b, {"simulation.seed": 10_000}),
                            paths=65_536, chunk=PATHS)  # the compiled call reused
    covered = 0
    for seed in range(8):
        a = mcsim.with_overrides(config_a, {"simulation.seed": 100 + seed})
        b = mcsim.with_overrides(config_b, {"simulation.seed": 100 + seed})
        r = paired_difference(a, b)
        z = (r.difference[stat] - ref.difference[stat]) / r.se_paired[stat]
        covered += abs(z) <= 3.0
    assert covered >= 7


def test_results_do_not_depend_on_the_chunk(config_a, config_b):
    """One pairwise tree fixed by the path indices (as the run's means): every chunk size
    gives the same bits, the last call's padding included (3,000 paths)."""
    runs = [paired_difference(config_a, config_b, paths=3000, chunk=c)
            for c in (1024, 2048, None)]
    for r in runs:
        assert r.paths == 3000
        for field in ("mean_a", "se_a", "mean_b", "se_b", "difference", "se_paired"):
            np.testing.assert_array_equal(getattr(r, field), getattr(runs[0], field), field)


def test_mismatched_seed_is_named(config_a, config_b):
    other = mcsim.with_overrides(config_b, {"simulation.seed": 2})
    with pytest.raises(ConfigError, match=r"simulation\.seed"):
        compare_paired(config_a, other)
    with pytest.raises(ConfigError, match=r"simulation\.horizon"):
        compare_paired(config_a, mcsim.with_overrides(config_b,
                                                      {"simulation.horizon": "2031-12"}))
    with pytest.raises(ConfigError, match=r"simulation\.variance_reduction"):
        anti = {"simulation.variance_reduction": "antithetic"}
        compare_paired(mcsim.with_overrides(config_a, anti),
                       mcsim.with_overrides(config_b, anti))
    with pytest.raises(ConfigError, match=r"simulation\.paths"):
        compare_paired(config_a, mcsim.with_overrides(config_b, {"simulation.paths": 100}))


def test_cli_compare_paired(tmp_path, capsys):
    a = tmp_path / "a.toml"
    text = (CONFIGS_DIR / "v1_base.toml").read_text()
    a.write_text(text.replace('horizon = "2040-12"', 'horizon = "2030-12"'))
    b = tmp_path / "b.toml"
    b.write_text(a.read_text().replace("revenue_share = 0.2\n", "revenue_share = 0.25\n"))
    assert main(["compare", "--paired", str(a), str(b), "--paths", "2048",  # one chunk
                 "--names", "A,B"]) == 0
    out = capsys.readouterr().out
    assert "± = 1.96 × SE, 95%" in out
    assert "2,048 common paths" in out
    assert "paired" in out and "unpaired" in out
    # --set applies to B
    assert main(["compare", "--paired", str(a), str(a), "--paths", "2048",
                 "--names", "A,B", "--set", "deal.revenue_share=0.25"]) == 0
    out2 = capsys.readouterr().out
    assert out2.split("\n", 1)[1] == out.split("\n", 1)[1]
    # --out keeps the table: paired.txt is what was printed, paired.csv its numbers
    assert main(["compare", "--paired", str(a), str(b), "--paths", "2048", "--names", "A,B",
                 "--out", str(tmp_path / "cmp")]) == 0
    printed = capsys.readouterr().out
    assert (tmp_path / "cmp" / "paired.txt").read_text() in printed
    import pandas as pd

    frame = pd.read_csv(tmp_path / "cmp" / "paired.csv", index_col="statistic")
    assert frame.loc["repaid_by_horizon", "unit"] == "probability"
    assert frame.loc["cumulative_azure_spend", "unit"] == "$"
    assert (frame["se_paired"] >= 0).all() and len(frame) == len(set(frame.index))
    # a seed mismatch: one line naming the key, exit 2
    assert main(["compare", "--paired", str(a), str(a), "--paths", "64",
                 "--set", "simulation.seed=7"]) == 2
    assert "simulation.seed" in capsys.readouterr().err


# --- mcsim compare of report directories ---------------------------------------------------

MONTHS = [f"{2024 + m // 12}-{m % 12 + 1:02d}" for m in range(24)]


def _month_block(median, lo, hi, p_not=0.5, se=0.01, shift=0.0):
    cdf = [min(1.0, max(0.0, (m - 6 + shift) / 24)) for m in range(24)]
    return {"probability_not_by_horizon": p_not, "probability_not_by_horizon_se": se,
            "quantiles": {"p50": {"month": median, "ci95_low": lo, "ci95_high": hi}},
            "cdf": {"months": MONTHS, "probability": cdf, "se": [0.01] * 24}}


def _summary(scale=1.0, *, seed=1, conditioned=None, shift=0.0):
    """A summary.json as compare reads it (the keys it uses), spend scaled by ``scale``."""
    def q(k):
        return {"value": [k * scale * (m + 1) * 1e9 for m in range(24)],
                "ci95_low": [0.99 * k * scale * (m + 1) * 1e9 for m in range(24)],
                "ci95_high": [1.01 * k * scale * (m + 1) * 1e9 for m in range(24)]}

    stats = {
        "cumulative_azure_spend": {"months": MONTHS, "mean": [scale * (m + 1) * 1e9
                                                              for m in range(24)],
                                   "mean_se": [1e8] * 24,
                                   "quantiles": {"p5": q(0.5), "p50": q(1.0), "p95": q(2)}},
        "repayment": _month_block("2025-03", "2025-01", "2025-05", shift=shift),
        "revenue_share_cap_reached": _month_block(None, "2025-06", None, p_not=0.9),
        "azure_commitment_met": _month_block(None, None, None, p_not=0.25),
        "horizon": {"microsoft_net": {"mean": 1e9, "mean_se": 1e7},
                    "deepest_cumulative_loss": {"mean": 5e9, "mean_se": 1e8}},
    }
    out = {"schema": 3, "grid": {"horizon": MONTHS[-1]}, "paths": 4096,
           "provenance": {"seed": seed}, **stats}
    if conditioned is not None:
        out["conditioned"] = {**conditioned, "observations": [{}, {}],
                              "conditioning_method": "importance",
                              "effective_sample_size": 321.0}
    return out


def test_compare_reads_the_conditioned_block_and_month_rows():
    from mcsim.report.compare import compare_text, headline

    prior = _summary(1.0)
    cond_stats = {k: v for k, v in _summary(2.0, shift=3).items()
                  if k in ("cumulative_azure_spend", "repayment",
                           "revenue_share_cap_reached", "azure_commitment_met", "horizon")}
    cond_stats["repayment"]["quantiles"]["p50"] = {"month": "2025-06", "ci95_low": "2025-04",
                                                   "ci95_high": "2025-08"}
    run = _summary(1.0, conditioned=cond_stats)
    h = headline(run)
    assert h["mean cumulative Azure spend by 2025-12"][0] == pytest.approx(48e9)  # x2
    assert h["median repayment month"][0] == 2025 * 12 + 5
    assert h["median repayment month"][1] == pytest.approx(4 / (2 * 1.959964))
    assert h["median revenue-share cap month"][:2] == (None, None)  # beyond the horizon
    assert h["P(Azure commitment met by 2025-12)"][0] == pytest.approx(0.75)
    text = compare_text([prior, run], ["prior", "cond"])
    lines = text.splitlines()
    assert lines[0].startswith("± = 1.96 × SE, 95%")
    assert "prior: prior (no observations)" in text
    assert "cond: conditioned on 2 observations (importance, effective sample size 321)" \
        in text
    assert "median repayment month" in lines
    i = lines.index("median repayment month")
    assert lines[i + 1].startswith("  prior: 2025-03 ± ")
    assert lines[i + 2].startswith("  cond: 2025-06 ± ")
    assert lines[i + 3].startswith("  cond - prior: +3.0 months ± ")
    assert "median revenue-share cap month" in lines
    assert "P(Azure commitment met by 2025-12)" in lines
    assert "share seed 1 and 4,096 paths" in text and "compare --paired" in text
    assert "mix a posterior with a prior" in text
    assert "+-" not in text
    # without a commitment (never met on any path) there is no commitment row
    for s in (prior, run):
        s.pop("conditioned", None)
        s["azure_commitment_met"]["probability_not_by_horizon"] = 1.0
    assert "Azure commitment" not in compare_text([prior, run], ["a", "b"])
    assert "share seed" not in compare_text([prior, _summary(seed=2)], ["a", "b"])


def test_compare_png_has_date_ticks_and_distinct_series():
    import matplotlib.dates as mdates

    from mcsim.report.compare import compare_figure

    runs = [_summary(1.0), _summary(1.0), _summary(1.1, seed=2)]  # two identical runs
    fig = compare_figure(runs, ["a", "b", "c"])
    for ax in fig.axes:
        assert isinstance(ax.xaxis.get_major_locator(), mdates.AutoDateLocator)
        assert isinstance(ax.xaxis.get_major_formatter(), mdates.ConciseDateFormatter)
        lo, hi = ax.get_xlim()  # day numbers of 2024-2025, not fractional years
        assert mdates.num2date(lo).year >= 2023 and mdates.num2date(hi).year <= 2026
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        assert [lab.split(":")[0] for lab in labels] == ["a", "b", "c"]
    named = [ln for ln in fig.axes[1].get_lines() if not ln.get_label().startswith("_")]
    styles = {(ln.get_color(), ln.get_linestyle()) for ln in named}
    assert len(styles) == 3  # every series its own colour and line style
    assert all(ln.get_alpha() is not None and ln.get_alpha() < 1 for ln in named)
