"""The Python API (mcsim.simulate, overrides, DataFrames, plots on Axes), mcsim compare and
--save-paths."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from helpers import CONFIGS_DIR, short_config_file  # noqa: E402

import mcsim  # noqa: E402
from mcsim.layout import ANNUAL_FLOWS  # noqa: E402
from mcsim.report import summarize  # noqa: E402

MCSIM = str(Path(sys.executable).parent / "mcsim")
ENV = {**os.environ, "JAX_PLATFORMS": "cpu"}
SHORT = {"simulation.horizon": "2028-12"}


@pytest.fixture(scope="module")
def config():
    return mcsim.load_config(CONFIGS_DIR / "amendment_2026.toml")


@pytest.fixture(scope="module")
def results(config):
    return mcsim.simulate(config, paths=4096, seed=3, overrides=SHORT)


def test_overrides_change_the_run_and_are_validated(config, results):
    half = mcsim.simulate(config, paths=4096, seed=3,
                          overrides={**SHORT, "deal.revenue_share": 0.1})
    # half the revenue share repays later: the median repayment month moves later
    assert half.repayment.quantiles[50][0] > results.repayment.quantiles[50][0]
    assert config.deal.revenue_share == 0.2  # the loaded config is untouched
    with pytest.raises(mcsim.ConfigError, match=r"deal.revenue_share = 1.5: expected"):
        mcsim.simulate(config, paths=1024, overrides={"deal.revenue_share": 1.5})
    with pytest.raises(mcsim.ConfigError, match=r"overrides\['dael.revenue_share'\]"):
        mcsim.with_overrides(config, {"dael.revenue_share": 0.1})
    dist = mcsim.with_overrides(config, {"parameters.tokens_0": {
        "dist": "lognormal", "p5": 2e13, "p95": 4e13}})
    assert dist.parameters["tokens_0"].kind == "lognormal"


def test_the_cli_is_a_thin_layer_over_the_api(config, results, tmp_path):
    cfg = short_config_file(tmp_path, "2028-12")
    proc = subprocess.run([MCSIM, "run", cfg, "--out", tmp_path / "out", "--paths", "4096",
                           "--seed", "3", "--no-plots"], env=ENV, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    cli = json.loads((tmp_path / "out" / "summary.json").read_text())
    api = json.loads(json.dumps(summarize(results)))
    for s in (cli, api):
        s.pop("provenance")
    assert cli == api


def test_dataframes(results):
    q = results.quantile_frame("cumulative_azure_spend", (10, 50, 90))
    assert list(q.columns) == ["p10", "p10_low", "p10_high", "p50", "p50_low", "p50_high",
                               "p90", "p90_low", "p90_high", "mean", "mean_se"]
    assert q.index[0] == pd.Period("2024-01", "M") and len(q) == results.grid.num_months
    assert isinstance(q.index, pd.PeriodIndex) and q.index.name == "month"
    table = results.quantiles("cumulative_azure_spend", (10, 50, 90))
    np.testing.assert_array_equal(q["p50"].to_numpy(), table.value[:, 1])
    assert (q["p50_low"] <= q["p50"]).all() and (q["p50"] <= q["p50_high"]).all()
    annual = results.annual_frame()
    assert annual.index.names == ["flow", "year"]
    assert set(annual.index.get_level_values(0)) == set(ANNUAL_FLOWS)
    ev = results.event_frame()
    np.testing.assert_allclose(ev["survival"], 1 - ev["cdf"])
    assert ev["cdf"].is_monotonic_increasing
    h = results.quantile_frame("horizon")
    assert "microsoft_net" in h.index


def test_plots_draw_on_the_given_axes(results):
    fig, axes = plt.subplots(1, 3)
    assert results.plot_fan(axes[0], bands=[(10, 90), (25, 75), (40, 60)]) is axes[0]
    # one shaded region per band, plus the mean's 95% interval
    assert len(axes[0].collections) == 4
    results.plot_annual(axes[1], flow="revenue")
    results.plot_repayment_survival(axes[2])
    survival = axes[2].lines[0].get_ydata()
    assert survival[0] <= 1 and survival[-1] == pytest.approx(results.repayment.censored)
    plt.close(fig)


def _run(out, *extra):
    proc = subprocess.run([MCSIM, "run", CONFIGS_DIR / "base.toml", "--out", out, "--paths",
                           "4096", "--no-plots", "--no-progress", *map(str, extra)],
                          env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return out


def test_compare_prints_differences_with_errors(tmp_path):
    a = _run(tmp_path / "a")
    b = _run(tmp_path / "b", "--seed", "9")
    proc = subprocess.run([MCSIM, "compare", a, b, "--names", "one,two", "--out",
                           tmp_path / "cmp"], env=ENV, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "two - one" in proc.stdout and "(z = " in proc.stdout
    png = (tmp_path / "cmp" / "compare.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    # same config, two seeds: every difference is within a few standard errors
    z = [float(line.rsplit("z = ", 1)[1].rstrip(")")) for line in proc.stdout.splitlines()
         if "(z = " in line]
    assert z and max(abs(v) for v in z) < 4.5
    bad = subprocess.run([MCSIM, "compare", a, tmp_path / "missing"], env=ENV,
                         capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "summary.json" in bad.stderr


def test_save_paths_writes_the_runs_own_paths(tmp_path):
    out = _run(tmp_path / "r", "--save-paths", 5)
    params = pd.read_csv(out / "sample_parameters.csv")
    flows = pd.read_csv(out / "sample_paths.csv")
    assert list(params["path"]) == [0, 1, 2, 3, 4]
    assert len(flows) == 5 * 204 and {"azure_spend", "revenue", "profit_share",
                                     "cumulative_azure_spend"} <= set(flows.columns)
    from mcsim.device_draws import draw_on_device

    cfg = mcsim.load_config(CONFIGS_DIR / "base.toml")
    theta = draw_on_device(cfg, 0, 5, np.float32)
    np.testing.assert_allclose(params["tokens_0"], theta["tokens_0"], rtol=1e-6)
    # the same paths as the engine's: a 5-path run has the same mean cumulative spend
    run5 = mcsim.simulate(cfg, paths=5)
    mean_last = run5.mean("cumulative_azure_spend")[0][-1]
    last = flows[flows["month"] == "2040-12"]["cumulative_azure_spend"].mean()
    assert last == pytest.approx(mean_last, rel=1e-5)


def test_cli_set_equals_api_overrides(config, tmp_path):
    out = tmp_path / "set"
    proc = subprocess.run([MCSIM, "run", CONFIGS_DIR / "amendment_2026.toml", "--out", out,
                           "--paths", "2048", "--seed", "3", "--no-plots",
                           "--set", "simulation.horizon=\"2028-12\"",
                           "--set", "deal.revenue_share=0.1"],
                          env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    api = mcsim.simulate(config, paths=2048, seed=3,
                         overrides={**SHORT, "deal.revenue_share": 0.1})
    cli = json.loads((out / "summary.json").read_text())
    mine = json.loads(json.dumps(summarize(api)))
    assert cli["provenance"]["config_resolved"]["deal"]["revenue_share"] == 0.1
    for s in (cli, mine):
        s.pop("provenance")
    assert cli == mine
    for bad, named in (("deal.revenue_share=1.5", "deal.revenue_share = 1.5"),
                       ("deal.revenue_share=abc", "--set deal.revenue_share"),
                       ("nonsense", "--set = 'nonsense'")):
        proc = subprocess.run([MCSIM, "run", CONFIGS_DIR / "base.toml", "--out",
                               tmp_path / "bad", "--set", bad], env=ENV, capture_output=True,
                              text=True, timeout=600)
        assert proc.returncode == 2 and named in proc.stderr, (bad, proc.stderr)
        assert not (tmp_path / "bad").exists()
