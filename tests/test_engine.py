"""Engine and accumulators: chunk invariance bit for bit, agreement with the reference on
the same paths, exact merges, and quantile error bars that cover."""

import json

import helpers
import numpy as np
import pytest

from mcsim.accumulators import BLOCK, MoneyBins, SumTree
from mcsim.api import run
from mcsim.draws import ParameterSampler
from mcsim.engine.chunk import pairwise_sum
from mcsim.engine.plan import process_units, round_chunk
from mcsim.layout import StatLayout
from mcsim.reference import simulate_reference
from mcsim.report import format_summary, summarize
from mcsim.results import histogram_quantiles, month_distribution
from mcsim.rng import shock_normals_reference


@pytest.fixture(scope="module")
def short_config():
    """amendment_2026.toml cut to three years (fast to compile and run), 5000 paths."""
    return helpers.short_config("2026-12", paths=5000, seed=7)


def _strip(summary):
    summary = dict(summary)
    summary.pop("provenance")
    return json.dumps(summary, sort_keys=True)


def test_results_identical_whatever_the_chunk_size(short_config):
    runs = [run(short_config, chunk_size=c, progress=False) for c in (1024, 3072, 5120, 8192)]
    first = runs[0].accumulator
    for other in runs[1:]:
        acc = other.accumulator
        np.testing.assert_array_equal(acc.histogram, first.histogram)
        np.testing.assert_array_equal(acc.moments.mean, first.moments.mean)
        np.testing.assert_array_equal(acc.moments.m2, first.moments.m2)
        np.testing.assert_array_equal(acc.event_counts, first.event_counts)
        assert _strip(summarize(other)) == _strip(summarize(runs[0]))
    assert first.paths == 5000
    assert [r.info.chunk_size for r in runs] == [1024, 4096, 8192, 8192]


def test_seed_changes_the_numbers(short_config):
    a = run(short_config.with_simulation(paths=2048), progress=False)
    b = run(short_config.with_simulation(paths=2048, seed=8), progress=False)
    assert not np.array_equal(a.accumulator.moments.mean, b.accumulator.moments.mean)


def test_engine_matches_reference_on_the_same_paths(short_config):
    cfg = short_config.with_simulation(paths=2000)
    grid = cfg.grid
    res = run(cfg, dtype="float64", progress=False)
    theta = ParameterSampler(cfg).draw(0, 2000)
    normals = shock_normals_reference(cfg.simulation.seed, 0, 2000, grid.num_months)
    ref = simulate_reference(theta, cfg.deal, grid, normals, cfg.shock_correlation)

    np.testing.assert_array_equal(
        res.event_counts("repayment"),
        np.bincount(ref["repayment_month"], minlength=grid.num_months + 1))
    np.testing.assert_array_equal(
        res.event_counts("credit_exhaustion"),
        np.bincount(ref["credit_exhaustion_month"], minlength=grid.num_months + 1))

    cum_azure = np.cumsum(ref["azure_spend"], axis=0)
    mean, _ = res.mean("cumulative_azure_spend")
    np.testing.assert_allclose(mean, cum_azure.mean(axis=1), rtol=1e-10)
    year = grid.year_of_month()
    annual_rev = np.array([ref["revenue"][year == y].sum(axis=0)
                           for y in range(len(grid.years))])
    np.testing.assert_allclose(res.mean("revenue")[0], annual_rev.mean(axis=1), rtol=1e-10)
    layout = StatLayout(grid)
    h = res.mean("horizon")[0]
    np.testing.assert_allclose(h[layout.row("deepest_cumulative_loss") - layout.rows(
        "horizon").start], ref["deepest_cumulative_loss"].mean(), rtol=1e-10)

    # binned quantiles: within a bin width of the exact empirical quantile, inside the CI
    q = res.quantiles("cumulative_azure_spend", (5, 50, 95))
    width = res.bins.relative_width
    for j, p in enumerate((5, 50, 95)):
        exact = np.quantile(cum_azure[-1], p / 100, method="inverted_cdf")
        assert abs(q.value[-1, j] / exact - 1) <= 2 * width
        assert q.ci_low[-1, j] <= exact <= q.ci_high[-1, j]


def test_float32_run_close_to_float64(short_config):
    cfg = short_config.with_simulation(paths=2048)
    r32 = run(cfg, dtype="float32", progress=False)
    r64 = run(cfg, dtype="float64", progress=False)
    m32, m64 = r32.mean("cumulative_azure_spend")[0], r64.mean("cumulative_azure_spend")[0]
    np.testing.assert_allclose(m32, m64, rtol=1e-4)
    assert np.abs(r32.event_counts("repayment")
                  - r64.event_counts("repayment")).sum() <= 4


def test_memory_is_fixed_size(short_config):
    small = run(short_config.with_simulation(paths=1024), progress=False).accumulator
    large = run(short_config.with_simulation(paths=6000), progress=False).accumulator
    assert small.histogram.shape == large.histogram.shape
    assert small.moments.mean.shape == large.moments.mean.shape
    assert large.histogram[0].sum() == 6000


# --- accumulators -------------------------------------------------------------------


def test_sum_tree_is_the_same_whatever_the_split():
    """Nodes of any aligned decomposition (chunks of 2^k blocks, processes holding
    contiguous ranges) combine to the same bits; the sums are the sums."""
    rng = np.random.default_rng(0)
    blocks = 13
    x = rng.lognormal(20, 1, size=(3, blocks * BLOCK))

    def subtree(first_block, level):
        part = x[:, first_block * BLOCK:(first_block + (1 << level)) * BLOCK]
        part = np.pad(part, ((0, 0), (0, ((1 << level) * BLOCK) - part.shape[1])))
        return part.shape[1], np.asarray(pairwise_sum(part)), np.asarray(pairwise_sum(
            part * part))

    def tree(level, order=None):
        t = SumTree(3)
        starts = list(range(0, blocks, 1 << level))
        for b0 in order(starts) if order else starts:
            n, s1, s2 = subtree(b0, level)
            t.insert(level, b0 >> level, min(n, (blocks - b0) * BLOCK), s1, s2)
        return t

    reference = tree(0).total()
    for level in (1, 2, 3, 4):
        for order in (None, lambda s: s[::-1], lambda s: s[1::2] + s[0::2]):
            total = tree(level, order).total()
            assert total[0] == reference[0] == blocks * BLOCK
            np.testing.assert_array_equal(total[1], reference[1])
            np.testing.assert_array_equal(total[2], reference[2])
    # two "processes" with ranges [0, 5) and [5, 13) blocks
    a, b = SumTree(3), SumTree(3)
    for b0 in range(blocks):
        n, s1, s2 = subtree(b0, 0)
        (a if b0 < 5 else b).insert(0, b0, BLOCK, s1, s2)
    a.merge(b)
    np.testing.assert_array_equal(a.total()[1], reference[1])
    np.testing.assert_allclose(reference[1], x.sum(1), rtol=1e-14)
    np.testing.assert_allclose(reference[2], (x * x).sum(1), rtol=1e-14)
    m = a.moments()
    np.testing.assert_allclose(m.mean, x.mean(1), rtol=1e-14)
    np.testing.assert_allclose(m.variance(), x.var(1, ddof=1), rtol=1e-9)


def test_sum_tree_refuses_overlaps_and_gaps():
    t = SumTree(1)
    t.insert(0, 0, 1, [1.0], [1.0])
    with pytest.raises(ValueError, match="twice"):
        t.insert(0, 0, 1, [1.0], [1.0])
    gap = SumTree(1)
    gap.insert(0, 1, 1, [1.0], [1.0])
    with pytest.raises(ValueError, match="missing"):
        gap.total()


def test_pairwise_sum_is_a_sum():
    x = np.arange(2 * BLOCK, dtype=np.float64).reshape(2, BLOCK)
    np.testing.assert_allclose(np.asarray(pairwise_sum(x)), x.sum(1))


def test_process_units_partition_the_run():
    for units, procs in ((10, 3), (2, 4), (7, 1), (1000, 7)):
        parts = [process_units(units, p, procs) for p in range(procs)]
        assert [u for r in parts for u in r] == list(range(units))
        assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_round_chunk():
    assert round_chunk(3000, 10**6) == 4096  # 1024 times a power of two
    assert round_chunk(10**6, 10**6, num_devices=4) == 262144
    assert round_chunk(5000, 5000, num_devices=8) == 1024
    assert round_chunk(5000, 10**6) == 8 * BLOCK
    assert round_chunk(10**6, 1000) == BLOCK
    assert round_chunk(1, 10**6) == BLOCK


def test_money_bins_are_ordered_and_hold_their_values():
    bins = MoneyBins(bins_per_decade=50, min_exponent=0, max_exponent=6)
    rng = np.random.default_rng(1)
    x = np.concatenate([-10 ** rng.uniform(0, 7, 500), 10 ** rng.uniform(0, 7, 500),
                        rng.uniform(-0.99, 0.99, 50)])
    idx = bins.index(x)
    lo, hi = bins.edges()
    assert np.all((lo[idx] <= x) & (x <= hi[idx]))
    order = np.argsort(x)
    assert np.all(np.diff(idx[order]) >= 0)
    assert bins.index(np.array([np.nan]))[0] == bins.nan_bin
    assert np.all(lo[1:] >= lo[:-1]) and np.all(hi > lo)


def test_quantile_intervals_cover():
    """95% order-statistic intervals, widened to bin edges: coverage should be >= 95%;
    over 300 replications the count below 0.90 would be a 4-SE failure."""
    bins = MoneyBins()
    rng = np.random.default_rng(2)
    median, sigma, n = 3e9, 0.8, 4000
    true = {5: median * np.exp(sigma * -1.6448536), 50: median,
            95: median * np.exp(sigma * 1.6448536)}
    hits = {p: 0 for p in true}
    reps = 300
    for _ in range(reps):
        x = median * np.exp(sigma * rng.standard_normal(n))
        counts = np.bincount(bins.index(x), minlength=bins.num_bins)
        val, lo, hi = histogram_quantiles(counts, bins, tuple(true))
        for j, p in enumerate(true):
            hits[p] += lo[j] <= true[p] <= hi[j]
    for p in true:
        assert hits[p] / reps >= 0.90, (p, hits[p])


def test_month_distribution_beyond_horizon_is_none():
    counts = np.array([0, 10, 20, 0, 70])  # T = 4; 70% not by the horizon
    d = month_distribution(counts, (5, 25, 50))
    assert d.quantiles[5.0][0] == 1
    assert d.quantiles[25.0][0] == 2
    assert d.quantiles[50.0][0] is None
    assert d.censored == pytest.approx(0.7)
    np.testing.assert_allclose(d.cdf, [0, 0.1, 0.3, 0.3])


def test_negative_quantiles_mirror_positive_ones():
    """Quantiles of -x are minus the mirrored quantiles of x (interpolation runs the same
    way in negative bins)."""
    bins = MoneyBins()
    x = np.random.default_rng(3).uniform(1e9, 1.2e9, 50_000)
    pos = histogram_quantiles(np.bincount(bins.index(x), minlength=bins.num_bins), bins,
                              (5, 50, 95))
    neg = histogram_quantiles(np.bincount(bins.index(-x), minlength=bins.num_bins), bins,
                              (95, 50, 5))
    np.testing.assert_allclose(neg[0], -pos[0], rtol=1e-12)
    np.testing.assert_allclose(neg[1], -pos[2], rtol=1e-12)  # intervals mirror too
    exact = np.quantile(-x, [0.05, 0.5, 0.95])
    np.testing.assert_allclose(neg[0][::-1], exact, rtol=2e-4)


def test_nonfinite_paths_are_counted_and_kept_out(tmp_path):
    """tokens_0 near float32's limit overflows the inference bill to inf on some paths:
    they are counted, and every statistic is over the other paths only."""
    from helpers import minimal_config_text

    from mcsim.config import parse_config_text

    cfg = parse_config_text(minimal_config_text(
        parameters={"tokens_0": '{ dist = "lognormal", median = 1e36, sigma = 3.0 }'},
        simulation={"paths": "3000", "max_nonfinite_fraction": "1.0"}))
    res = run(cfg, progress=False)
    acc = res.accumulator
    bad = acc.nonfinite_paths
    assert 0 < bad < 3000
    # located: the first month with a NaN or inf, for every bad path
    block = summarize(res)["nonfinite"]
    assert block["paths"] == bad and sum(block["by_first_month"].values()) == bad
    assert block["first_month"] == cfg.grid.label(0)  # the bill is inf from month 0
    assert "unlocated" not in block["by_first_month"]
    good = 3000 - bad
    assert (acc.event_counts.sum(axis=1) == good).all()  # every event counts the good
    assert np.all(acc.histogram[:, : res.bins.nan_bin].sum(axis=1) == good)
    assert np.all(acc.histogram[:, res.bins.nan_bin] == 0)
    assert np.all(acc.moments.count == good)
    assert np.all(np.isfinite(res.mean("horizon")[0]))
    assert "NaN or inf" in format_summary(res)


def test_too_many_nonfinite_paths_fail_naming_the_parameter(tmp_path):
    """Above simulation.max_nonfinite_fraction the run fails, naming the count, the first
    month and the parameter that tells the bad paths apart; the CLI writes nothing."""
    from helpers import minimal_config_text

    from mcsim.cli import main
    from mcsim.config import ConfigError, parse_config_text

    text = minimal_config_text(
        parameters={"tokens_0": '{ dist = "lognormal", median = 1e36, sigma = 3.0 }',
                    "users_0": '{ dist = "uniform", low = 1e8, high = 2e8 }'},
        simulation={"paths": "3000", "horizon": '"2024-12"'})
    with pytest.raises(ConfigError) as err:
        run(parse_config_text(text), progress=False)
    message = str(err.value)
    assert message.startswith("simulation.max_nonfinite_fraction = 0.001: expected")
    assert "likely parameter: tokens_0" in message and "of 3,000" in message
    path = tmp_path / "bad.toml"
    path.write_text(text)
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    assert not (tmp_path / "out").exists()


def test_nonfinite_first_month_is_located_later_in_the_run():
    """A bill that grows past float32's range in a later month is located there."""
    from helpers import minimal_config_text

    from mcsim.config import parse_config_text

    cfg = parse_config_text(minimal_config_text(
        parameters={"tokens_0": "1e30", "token_growth_0": "40.0",
                    "token_growth_inf": "40.0"},
        simulation={"paths": "1024", "horizon": '"2026-12"', "max_nonfinite_fraction": "1"}))
    res = run(cfg, progress=False)
    block = summarize(res)["nonfinite"]
    assert block["paths"] == 1024
    first = cfg.grid.index(block["first_month"])
    # the money, not the token count, must overflow (every flow is one exp of a sum of
    # logs): inference ~ 1e30 / 4e5 tokens per GPU-hour x $2 / 0.6 ~ 8e24 $ a month, times
    # exp(40 t / 12), passes float32's 3.4e38 when 40 t / 12 > ln(4e13) = 31.3: t = 10
    assert 8 <= first <= 12, block


def test_draws_touching_an_open_end_stay_inside_the_domain():
    """beta(5, 0.3) piles mass against 1, where float32 rounds to 1.0 and logit(1) = inf;
    draws are rounded to the nearest float inside (0, 1) instead, so no path breaks."""
    from helpers import minimal_config_text

    from mcsim.config import parse_config_text
    from mcsim.draws import ParameterSampler, to_dtype

    cfg = parse_config_text(minimal_config_text(
        parameters={"utilization_0": '{ dist = "beta", alpha = 5, beta = 0.3 }'},
        simulation={"paths": "4096"}))
    u32 = to_dtype(ParameterSampler(cfg).draw(0, 4096), np.float32)["utilization_0"]
    assert u32.dtype == np.float32 and np.all((u32 > 0) & (u32 < 1))
    assert np.mean(u32 == np.nextafter(np.float32(1), np.float32(0))) > 0.005  # it bites
    assert run(cfg, progress=False).accumulator.nonfinite_paths == 0
