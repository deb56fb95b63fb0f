"""Valid but unusual inputs and ordinary mistakes (issue "Correct on every valid input"):
each case here crashed, was refused, or gave a silently wrong answer before its fix."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import CONFIGS_DIR, REPO_ROOT, minimal_config_text

from mcsim.cli import _positive_int, main

QUICK = ["--no-plots", "--no-progress"]


def _config(tmp_path: Path, name: str = "c.toml", **sections) -> str:
    path = tmp_path / name
    path.write_text(minimal_config_text(**sections))
    return str(path)


def _last_error(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines, "expected an error line on stderr"
    return lines[-1]


@pytest.mark.parametrize("extra", [["--paths", "1"], ["--set", "deal.investment=1e200"]])
def test_undefined_standard_errors_still_give_a_full_report(tmp_path, extra):
    """One path has no standard error (null in summary.json): the HTML says n/a."""
    out = tmp_path / "rep"
    cfg = str(CONFIGS_DIR / "amendment_2026.toml")
    assert main(["run", cfg, "--out", str(out), "--no-progress", *extra]) == 0
    summary = json.loads((out / "summary.json").read_text())
    html = (out / "report.html").read_text()
    if extra[1] == "1":
        assert summary["cumulative_azure_spend"]["mean_se"][-1] is None
        assert "&plusmn; n/a" in html
    else:  # never repaid: every path censored
        assert summary["repayment"]["probability_not_by_horizon"] == 1.0
        # the net is receipts - 1e200: the same error (its own squares overflow float64)
        h = summary["horizon"]
        assert h["microsoft_net"]["mean_se"] == h["microsoft_receipts"]["mean_se"] > 0
        # -1e200 is beyond float32 as well as the histogram: counted below its range (it
        # was cast to -inf and fell in the NaN bin, leaving every quantile null, unlabelled)
        p5 = h["microsoft_net"]["quantiles"]["p5"]
        assert p5["beyond_range"] == "below" and p5["ci95_high"] == -1e16


def test_money_beyond_the_histogram_range_is_labelled_not_pinned(tmp_path, capsys):
    """Tokens growing 200%/yr (in log) for 14 years: Azure spend reaches $10^19 a month, far
    beyond $10^16 (yet well inside float32). The quantile is null with beyond_range
    "above" and an interval starting at the range's edge."""
    cfg = _config(tmp_path, simulation={"horizon": '"2037-12"', "paths": "2048"},
                  parameters={"token_growth_0": "2.0", "token_growth_inf": "2.0"})
    out = tmp_path / "rep"
    assert main(["run", cfg, "--out", str(out), *QUICK]) == 0
    text = capsys.readouterr().out
    q = json.loads((out / "summary.json").read_text())["cumulative_azure_spend"]["quantiles"]
    p50 = q["p50"]
    assert p50["value"][-1] is None and p50["beyond_range"][-1] == "above"
    assert p50["ci95_low"][-1] == 1e16 and p50["ci95_high"][-1] is None
    assert p50["beyond_range"][0] is None and p50["value"][0] > 0  # month 0 is in range
    assert "> $1e+04T" in text or "> $10,000T" in text or "> $1" in text
    assert "1e+16" not in text


def test_a_statistic_that_is_never_negative_has_no_negative_interval(tmp_path):
    """With no Azure at all (share 0) every path's spend is $0: interval [0, 1), not -1."""
    cfg = _config(tmp_path, parameters={"azure_share_0": "0.0", "azure_share_inf": "0.0"})
    out = tmp_path / "rep"
    assert main(["run", cfg, "--out", str(out), *QUICK]) == 0
    q = json.loads((out / "summary.json").read_text())["cumulative_azure_spend"]["quantiles"]
    assert min(q["p5"]["ci95_low"]) == 0.0 and q["p50"]["value"][-1] == 0.0
    assert q["p50"]["ci95_high"][-1] == 1.0  # the zero bin holds |x| < $1: not tightened


def test_sub_dollar_receipts_keep_an_interval_that_covers_them(tmp_path):
    """An investment of $0.01 recouped by sub-dollar receipts: the receipts' quantiles lie
    in the zero bin (|x| < $1, reported as 0) and their intervals must reach above the
    investment, not stop at 0 (a generated config caught that)."""
    from mcsim.accumulators import MoneyBins
    from mcsim.results import histogram_quantiles

    bins = MoneyBins()
    counts = np.bincount(bins.index(np.full(100, 0.02)), minlength=bins.num_bins)
    value, lo, hi = histogram_quantiles(counts, bins, (5.0, 50.0), non_negative=True)
    assert np.all(value == 0.0) and np.all(lo == 0.0) and np.all(hi == 1.0)


def test_results_name_the_bad_argument():
    from mcsim import simulate

    res = simulate(str(CONFIGS_DIR / "amendment_2026.toml"), paths=1024, progress=False)
    with pytest.raises(ValueError, match="which = 'repaymnet'"):
        res.event_frame("repaymnet")
    with pytest.raises(ValueError, match="cumulative_revenue is a row of \"horizon\""):
        res.quantile_frame("cumulative_revenue")
    assert len(res.event_frame("credit_exhaustion")) == res.grid.num_months


@pytest.mark.parametrize("text, value", [("1e4", 10_000), ("2.5e5", 250_000),
                                         ("100_000", 100_000), ("7", 7)])
def test_paths_may_be_written_as_a_float(text, value):
    assert _positive_int(text) == value


@pytest.mark.parametrize("text", ["1.5", "0", "-3", "1e30", "nan", "inf", "abc"])
def test_paths_that_are_not_positive_integers_are_refused(text):
    import argparse

    with pytest.raises(argparse.ArgumentTypeError, match="positive integer"):
        _positive_int(text)


@pytest.mark.parametrize("override, named", [
    ("parameters.conversion_0.mean=0.1", "parameters.conversion_0 is float"),
    ("simulation.start.x=1", "simulation.start is str")])
def test_setting_inside_a_number_or_string_is_one_line(tmp_path, capsys, override, named):
    cfg = str(CONFIGS_DIR / "amendment_2026.toml")
    assert main(["run", cfg, "--out", str(tmp_path / "o"), "--set", override]) == 2
    line = _last_error(capsys)
    assert line.startswith("mcsim: error: ") and named in line
    assert not (tmp_path / "o").exists()


def _mcsim(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "mcsim.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "JAX_PLATFORMS": "cpu"})


@pytest.mark.parametrize("args, key", [
    (["--process-id", "5", "--num-processes", "2", "--coordinator", "localhost:1"],
     "--process-id"),
    (["--distributed"], "--distributed")])
def test_distributed_mistakes_are_one_line(tmp_path, args, key):
    proc = _mcsim("run", CONFIGS_DIR / "amendment_2026.toml", "--out", tmp_path / "o",
                  "--paths", 1024, *args)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"mcsim: error: {key}"), proc.stderr


def test_reproduce_of_a_summary_with_a_bad_dtype_is_one_line(tmp_path, capsys):
    out = tmp_path / "rep"
    assert main(["run", str(CONFIGS_DIR / "amendment_2026.toml"), "--out", str(out),
                 "--paths", "1024", *QUICK]) == 0
    doc = json.loads((out / "summary.json").read_text())
    doc["provenance"]["dtype"] = "float16"
    bad = tmp_path / "summary.json"
    bad.write_text(json.dumps(doc))
    assert main(["reproduce", str(bad), "--out", str(tmp_path / "again")]) == 2
    # one line naming the file read back and the key (issue 26, item 5: the file too)
    assert _last_error(capsys).startswith(f"mcsim: error: {bad}: provenance.dtype = "
                                          "'float16'")


def _observed(tmp_path, rel_sd: str, paths: int = 4096) -> str:
    parent = CONFIGS_DIR / "v1_base.toml"
    text = (REPO_ROOT / "tests" / "data" / "observed_importance.toml").read_text().replace(
        '"../../configs/v1_base.toml"', f'"{parent}"')
    text = text.replace("rel_sd = 0.05", f"rel_sd = {rel_sd}")
    path = tmp_path / "obs.toml"
    path.write_text(text + f"\n[simulation]\npaths = {paths}\n" if "[simulation]" not in text
                    else text)
    return str(path)


def test_observations_no_path_can_explain_are_an_error_not_zeros(tmp_path, capsys):
    """sd = 1e-200: every likelihood underflows; P(not repaid) is undefined, not 0."""
    cfg = _observed(tmp_path, "1e-200")
    assert main(["run", cfg, "--out", str(tmp_path / "o"), "--paths", "2048", *QUICK]) == 2
    line = _last_error(capsys)
    assert line.startswith("mcsim: error: observations") and "likelihood" in line
    assert not (tmp_path / "o").exists()


def test_no_weight_is_clipped_the_reference_is_the_runs_best_path():
    """The weights' reference is the best path of the whole run, not of its first 8,192:
    every path's log-likelihood relative to it is <= 0, so none is capped at e^12."""
    import jax
    import jax.numpy as jnp

    from mcsim.config import load_config
    from mcsim.engine import KernelSpec, build_kernel, kernel_inputs
    from mcsim.engine import conditioning as cond

    cfg = load_config(REPO_ROOT / "tests" / "data" / "observed_importance.toml") \
        .with_simulation(paths=20_000)
    ref = cond.reference_log_likelihood(cfg)
    windows = cond.observation_windows(cfg)
    kernel = build_kernel(KernelSpec.for_config(cfg, observed=True))
    out = jax.jit(lambda i, p: kernel(i, p, windows=windows))(
        kernel_inputs(cfg), jnp.arange(20_000, dtype=jnp.uint32))
    ll = np.asarray(cond.log_likelihood(out.observed_sums, windows))
    best_of_pilot = ll[:cond.PILOT_PATHS].max()
    assert ll.max() == pytest.approx(ref, abs=1e-6)
    assert ll.max() >= best_of_pilot  # the whole run's best, whichever path it is


def test_sweep_warnings_are_one_line_each(tmp_path, capsys):
    cfg = _observed(tmp_path, "0.01")
    out = tmp_path / "sw"
    assert main(["sweep", cfg, "--set", "deal.investment=1e10,2e10", "--paths", "2048",
                 "--out", str(out), "--no-plots"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    warnings = [line for line in err if "warning" in line.lower()]
    assert warnings and all(w.startswith("mcsim: warning: effective sample size")
                            for w in warnings)
    assert not any("UserWarning" in line or "warnings.warn" in line for line in err)


def test_quantile_intervals_are_bounded_by_data_or_open_never_by_rounding():
    """Fractional (effective) counts whose sums round differently must not push an interval
    end off the histogram (with antithetic pairs and a small ESS an upper end was null);
    where too few paths lie beyond a quantile to bound it (n p + 1.96 sd > n), the interval
    is open on that side: +inf (null in JSON), or 0 for a statistic never above 0."""
    from mcsim.accumulators import MoneyBins
    from mcsim.results import histogram_quantiles, month_distribution

    bins = MoneyBins()
    idx = bins.index(np.array([1e9, 2e9, 3e9]))
    counts = np.zeros(bins.num_bins)
    counts[idx] = [1000.1 + 0.2, 1000.3, 1000.0 / 3.0]  # sums that round differently
    _, lo, hi = histogram_quantiles(counts, bins, (5.0, 50.0, 95.0))
    assert np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))
    assert hi[2] <= 3e9 * 1.01 and lo[0] >= 1e9 / 1.01
    one = np.zeros(bins.num_bins)
    one[idx[1]] = 0.7  # under one effective path: nothing bounds the median
    value, lo, hi = histogram_quantiles(one, bins, (50.0,), non_negative=True)
    assert 1.99e9 < value[0] < 2.01e9 and lo[0] == 0.0 and hi[0] == np.inf
    _, lo, _ = histogram_quantiles(one, bins, (50.0,))  # a profit may be negative
    assert lo[0] == -np.inf
    months = np.array([1000.1 + 0.2, 1000.3, 1000.0 / 3.0, 0.0])  # nothing censored
    dist = month_distribution(months, (50.0, 95.0))
    assert all(q[1] is not None and q[2] is not None for q in dist.quantiles.values())
    assert math.isclose(dist.censored, 0.0)
    few = month_distribution(np.array([0.0, 0.7, 0.0, 0.0]), (50.0,))
    assert few.quantiles[50.0] == (1, 0, None)  # open: from the start to beyond the horizon


def test_money_beyond_float32_names_no_parameter_and_suggests_float64(tmp_path, capsys):
    """Tokens growing 3,000%/yr: money passes float32's 3.4e38 for every path. The failure
    must not blame a parameter (it named the first one, at its 50th percentile), and the
    same config runs in float64."""
    cfg = _config(tmp_path, parameters={
        "token_growth_0": "30.0", "token_growth_inf": "30.0",
        "gpu_price_0": '{ dist = "lognormal", median = 2.0, sigma = 0.2 }'})
    args = ["run", cfg, "--paths", "2048", *QUICK]
    assert main([*args, "--out", str(tmp_path / "a")]) == 2
    line = _last_error(capsys)
    assert "likely parameter: none" in line and "--dtype float64" in line
    assert "gpu_price_0" not in line
    assert main([*args, "--out", str(tmp_path / "b"), "--dtype", "float64"]) == 0


def test_a_subnormal_investment_is_not_repaid_by_nothing(tmp_path):
    """investment = 5e-324 is valid (> 0); the device flushes subnormals to 0, which made
    every path 'repaid' in month 0 with no receipts at all."""
    cfg = _config(tmp_path, deal={"investment": "5e-324"})
    out = tmp_path / "rep"
    assert main(["run", cfg, "--out", str(out), *QUICK]) == 0
    rep = json.loads((out / "summary.json").read_text())["repayment"]
    receipts = json.loads((out / "summary.json").read_text())["horizon"]["microsoft_receipts"]
    # no revenue share and only losses in the minimal world: nothing is ever paid
    assert receipts["mean"] == 0.0 and rep["probability_not_by_horizon"] == 1.0


def test_a_triangular_mode_a_subnormal_from_its_end_draws_without_warnings():
    import warnings

    from mcsim.config import parse_config_text

    text = minimal_config_text(parameters={"conversion_speed": (
        '{ dist = "triangular", low = 0.0, mode = 1e-320, high = 1.0, max = 0.5 }')})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cfg = parse_config_text(text)
    dist = cfg.parameters["conversion_speed"]
    x = dist.ppf(np.linspace(0.01, 0.99, 99))
    assert np.all((x >= 0.0) & (x <= 0.5)) and np.all(np.diff(x) > 0)


@pytest.mark.parametrize("name", ["utilization_speed", "conversion_speed", "users_growth"])
def test_a_rate_whose_monthly_step_diverges_is_refused_by_validate(tmp_path, capsys, name):
    """MODEL.md's explicit monthly step y += k (target - y) dt diverges once k dt >= 2:
    refused up front (it ran every path to NaN before), while 23.9 per year runs."""
    bad = _config(tmp_path, "bad.toml", parameters={name: "30.0"})
    assert main(["validate", bad]) == 2
    line = _last_error(capsys)
    assert f"parameters.{name} = 30.0: expected a rate below 24 per year" in line
    ok = _config(tmp_path, "ok.toml", parameters={name: "23.9"})
    assert main(["run", ok, "--paths", "1024", "--out", str(tmp_path / "o"), *QUICK]) == 0


# --- found by the version-2 valid-config generator -----------------------------------------


def test_economic_net_keeps_its_error_at_a_huge_investment():
    """At investment = 1e300 a net's own sum of squares overflows float64: like Microsoft's
    net, its economic net takes the error of the total it is that total minus a constant
    of (it was null)."""
    from helpers import minimal_config_text

    from mcsim import parse_config_text, simulate
    from mcsim.report import summarize

    cfg = parse_config_text(minimal_config_text(deal={"investment": "1e300"}))
    h = summarize(simulate(cfg, paths=2048, progress=False))["horizon"]
    assert h["microsoft_economic_net"]["mean_se"] is not None
    assert h["microsoft_economic_net"]["mean_se"] == h["microsoft_economic_return"]["mean_se"]


def test_paid_to_microsoft_may_be_negative_and_its_interval_holds_it():
    """A reverse share larger than Azure spend plus the revenue share makes the money paid
    to Microsoft negative: its intervals must not start at $0 (a value below its own
    interval)."""
    from helpers import minimal_config_text

    from mcsim import parse_config_text, simulate

    cfg = parse_config_text(minimal_config_text(
        parameters={"microsoft_ai_revenue_0": '{ dist = "uniform", low = 1e12, high = 2e12 }',
                    "microsoft_ai_revenue_growth": "0.0"},
        deal={"reverse_share": "0.2"}))
    q = simulate(cfg, paths=2048, progress=False).quantiles("paid_to_microsoft", (5, 50))
    assert (q.value < 0).all()
    assert (q.ci_low <= q.value).all() and (q.value <= q.ci_high).all()


def test_a_triangular_mode_a_subnormal_from_its_low_end_is_valid():
    """(b - a)(c - a) underflows to 0 when the mode is a subnormal distance above low; the
    truncated CDF then read 0/0 and the valid distribution was refused."""
    from helpers import minimal_config_text

    from mcsim import parse_config_text

    cfg = parse_config_text(minimal_config_text(parameters={
        "conversion_vol": '{ dist = "triangular", low = 0.0, mode = 1.37957204e-316, '
                          'high = 1e-9, min = 0.0 }'}))
    assert cfg.parameters["conversion_vol"].kind == "triangular"


# --- found by the version-3 valid-config generator -----------------------------------------


@pytest.mark.parametrize("rate", ["710.0", "1e300"])
def test_a_discount_rate_beyond_exp_range_runs_and_reports(rate):
    """A log discount rate of 710 per year or more: every month after the first discounted to
    0, still finite; the report states the rate without overflowing."""
    from helpers import minimal_config_text

    from mcsim import parse_config_text, simulate
    from mcsim.report import summarize

    cfg = parse_config_text(minimal_config_text(simulation={
        "horizon": '"2024-03"', "discount_rate": rate}))
    h = summarize(simulate(cfg, paths=256, progress=False))["horizon"]
    assert math.isfinite(h["pv_cumulative_azure_spend"]["mean"])
