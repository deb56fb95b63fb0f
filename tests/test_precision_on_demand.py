"""--target-se: the run stops at the first look (first_check * 2^k paths) where the named
standard errors reach their targets; a stopped run equals the plain run of as many paths;
and the stopping rule keeps the 95% intervals' coverage near nominal."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import CONFIGS_DIR, short_config_file

import mcsim
from mcsim import ConfigError
from mcsim.cli import main
from mcsim.precision import parse_targets, stages

SHORT = {"simulation.horizon": "2028-12"}
K_RUNS = 100
Z = 1.959964


@pytest.fixture(scope="module")
def config():
    return mcsim.load_config(CONFIGS_DIR / "amendment_2026.toml")


def test_targets_parse_and_bad_ones_are_refused():
    assert parse_targets({"p_not_repaid": 0.01}) == {"p_not_repaid": (0.01, False)}
    assert parse_targets({"p_not_repaid": "0.01"}) == {"p_not_repaid": (0.01, False)}
    assert parse_targets({"cumulative_azure_spend": "0.5%"}) == {
        "cumulative_azure_spend": (0.005, True)}
    for bad, key in (({"nonsense": 1}, "target_se"),
                     ({"p_not_repaid": -1}, "target_se['p_not_repaid']"),
                     ({"p_not_repaid": "abc"}, "target_se['p_not_repaid']"),
                     ({"p_not_repaid": True}, "target_se['p_not_repaid']"),
                     ({"p_not_repaid": "inf%"}, "target_se['p_not_repaid']")):
        with pytest.raises(ConfigError) as info:
            parse_targets(bad)
        assert info.value.key == key  # the Python argument, not the CLI's flag
    assert stages(100_000, 8192) == [8192, 16384, 32768, 65536]


def test_a_stopped_run_is_the_run_of_that_many_paths(config):
    res = mcsim.simulate(config, paths=2**18, overrides=SHORT, first_check=4096,
                         target_se={"cumulative_azure_spend": "0.5%"})
    n = res.num_paths
    assert n in stages(2**18, 4096) and n < 2**18
    target = res.precision["targets"]["cumulative_azure_spend"]
    assert target["met"] and target["se"] <= target["target_se"]
    plain = mcsim.simulate(config, paths=n, overrides=SHORT, chunk_size=1024)
    np.testing.assert_array_equal(res.accumulator.histogram, plain.accumulator.histogram)
    np.testing.assert_array_equal(res.accumulator.moments.mean, plain.accumulator.moments.mean)
    if n > 4096:  # one look earlier the target was not met (else it would have stopped)
        mean, se = mcsim.simulate(config, paths=n // 2, overrides=SHORT).mean(
            "cumulative_azure_spend")
        assert se[-1] > 0.005 * abs(mean[-1])


def test_stopping_rule_coverage(config):
    """Over K_RUNS seeds, the 95% interval of the stopped run's mean covers the true mean
    (from 2^20 paths, whose own SE is 1/11 of the target) at least 0.95 - 3 sd of a
    binomial proportion over K_RUNS runs: 0.95 - 3 sqrt(0.95 * 0.05 / 100) = 0.885."""
    # 24 months, and the overrides applied once (their distributions' tables are cached):
    # a hundred runs stay cheap
    short = mcsim.with_overrides(config, {"simulation.horizon": "2025-12"})
    truth = mcsim.simulate(short, paths=2**20, seed=10_000)
    true_mean = truth.mean("cumulative_azure_spend")[0][-1]
    sd = truth.mean("cumulative_azure_spend")[1][-1] * 2**10  # se * sqrt(2^20)
    target = sd / np.sqrt(8192)  # $: the SE of 8,192 paths: runs stop at 8k or 16k
    covered, paths = 0, []
    for seed in range(K_RUNS):
        res = mcsim.simulate(short, paths=2**16, seed=seed, first_check=2048,
                             target_se={"cumulative_azure_spend": target})
        mean, se = res.mean("cumulative_azure_spend")
        covered += abs(mean[-1] - true_mean) <= Z * se[-1]
        paths.append(res.num_paths)
        assert res.precision["targets"]["cumulative_azure_spend"]["met"]
    from collections import Counter

    print(f"\ncoverage {covered}/{K_RUNS}; runs stopped at {sorted(Counter(paths).items())}")
    assert truth.mean("cumulative_azure_spend")[1][-1] < target / 10
    assert len(set(paths)) >= 2  # the rule does stop at different looks
    assert covered / K_RUNS >= 0.885, (covered, sorted(set(paths)))


def test_cli_target_se(tmp_path):
    cfg = short_config_file(tmp_path, "2028-12")
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out), "--paths", "300000", "--no-plots",
                 "--no-progress", "--target-se", "cumulative_azure_spend=1%",
                 "--target-se", "p_not_repaid=0.01"]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["paths"] == 65536 and s["provenance"]["paths"] == 65536
    assert all(t["met"] for t in s["precision"]["targets"].values())
    assert main(["run", str(cfg), "--out", str(tmp_path / "bad"), "--target-se",
                 "median=1"]) == 2
    assert not (tmp_path / "bad").exists()
