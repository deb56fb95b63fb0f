"""The benchmark scripts run end to end at small sizes (their speed is not tested: it
lives in their output). Here they must produce their JSON, plot and verdicts."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from helpers import REPO_ROOT, short_config_file

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))

import bench  # noqa: E402
import kernel_variants  # noqa: E402
import profile_stages  # noqa: E402
import scaling  # noqa: E402
import sweep_batch  # noqa: E402
import v3_cost  # noqa: E402
import variance_reduction  # noqa: E402


@pytest.fixture(scope="module")
def short_config(tmp_path_factory) -> Path:
    return short_config_file(tmp_path_factory.mktemp("cfg"), "2024-12", "base.toml")


def test_bench_sweep_writes_every_figure(short_config, tmp_path, capsys):
    out = tmp_path / "cpu.json"
    assert bench.main(["--config", str(short_config), "--sweep", "2048,4096",
                       "--repeats", "2", "--baseline-paths", "1024", "--bare-paths", "2048",
                       "--e2e-repeats", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for text in ("device:", "first call", "cores used", "RNG floor", "bare scan",
                 "fair NumPy baseline", "end to end, whole processes", "cold cache",
                 "ratios (per path)", "target fair end to end >= 6", "target fair steady >= 8",
                 "peak memory"):
        assert text in printed
    record = json.loads(out.read_text())
    first, second = record["runs"]
    assert first["paths"] == 2048 and first["months"] == 12
    assert first["engine"]["repeats"] == 2
    assert first["engine"]["min_s"] <= first["engine"]["median_s"] <= first["engine"]["max_s"]
    assert 0 < first["engine"]["cores"] <= 64
    for ratio in first["ratios"].values():
        assert ratio > 0
    e2e = first["end_to_end"]
    assert e2e["engine"]["paths"] == 2048 and e2e["baseline"]["paths"] == 1024
    assert e2e["engine_cold"]["best_s"] > 0 and len(e2e["baseline"]["all_s"]) == 1
    assert first["fair_baseline"]["paths"] == 1024
    import jax

    expected = ({"fair end to end >= 6", "fair end to end, compiling, >= 6",
                 "fair steady >= 8", "rng_floor_ratio <= 3", "cores used >= 1.8",
                 "compile_s < 10"}
                if jax.default_backend() == "cpu" else {"path_steps_per_s >= 2e10"})
    assert set(first["targets"]) == expected
    assert "ratios" not in second  # baselines at the first size of a sweep only
    assert record["device"].startswith(jax.default_backend())


def test_profile_stages_prints_every_stage(short_config, capsys):
    assert profile_stages.main(["--config", str(short_config), "--chunk", "1024",
                                "--repeats", "1", "--paths", "2048"]) == 0
    printed = capsys.readouterr().out
    for stage in ("rng", "drivers", "flows", "waterfall", "statistics", "reductions",
                  "whole run of 2,048 paths"):
        assert stage in printed


def test_kernel_variants_picks_the_fastest(short_config, tmp_path):
    best = tmp_path / "best.json"
    assert kernel_variants.main(["--config", str(short_config), "--chunk", "1024",
                                 "--variants", "1x1,2x3", "--repeats", "2",
                                 "--best", str(best)]) == 0
    record = json.loads(best.read_text())
    times = [v["median_s"] for v in record["variants"]]
    assert record["best"]["median_s"] == min(times)
    assert {(v["unroll"], v["hist_copies"]) for v in record["variants"]} == {(1, 1), (2, 3)}


def test_scaling_writes_json_and_plot(short_config, tmp_path):
    stem = tmp_path / "scaling"
    assert scaling.main(["--config", str(short_config), "--paths", "1024,2048",
                         "--horizons", "2024-06,2024-12", "--out", str(stem)]) == 0
    points = json.loads(stem.with_suffix(".json").read_text())["points"]
    assert {(p["paths"], p["months"]) for p in points} == {(1024, 6), (2048, 6), (1024, 12),
                                                          (2048, 12)}
    png = stem.with_suffix(".png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_variance_reduction_reports_factors_with_intervals(short_config, tmp_path, capsys):
    out = tmp_path / "vr.json"
    assert variance_reduction.main(["--config", str(short_config), "--paths", "2048",
                                    "--replicates", "4", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for text in ("device:", "baseline", "factor", "efficiency", "per run (median"):
        assert text in printed
    record = json.loads(out.read_text(), parse_constant=pytest.fail)  # strict: no NaN
    assert set(record["factors"]) == {"none", "antithetic", "sobol"}
    # a statistic constant over the replicates (nothing repaid in 12 months) has no factor
    finite = {k: f for k, f in record["factors"]["antithetic"].items()
              if f["factor"] is not None and f["low"] is not None}
    assert finite
    for name, f in finite.items():
        assert 0 < f["low"] <= f["factor"] <= f["high"], name
    assert all(f["factor"] == 1.0 for k, f in record["factors"]["none"].items()
               if k in finite)


def test_sweep_batch_times_both_ways(short_config, tmp_path, capsys):
    out = tmp_path / "sb.json"
    assert sweep_batch.main(["--config", str(short_config), "--points", "2", "--paths",
                             "2048", "--repeats", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for text in ("device:", "sizes:", "one by one (baseline)", "batched", "speed-up"):
        assert text in printed
    record = json.loads(out.read_text())
    assert record["speedup"] > 0 and len(record["batched"]["all_s"]) == 2


def test_v3_cost_compares_both_configs(capsys):
    assert v3_cost.main(["--paths", "2048", "--repeats", "1", "--horizon", "2024-12"]) == 0
    printed = capsys.readouterr().out
    for text in ("device:", "paths: 2,048", "v2 (before)", "v3 (base.toml)",
                 "v3 / v2 steady time:"):
        assert text in printed, text
    lines = {line.split()[0]: line.split() for line in printed.splitlines()
             if line.startswith(("v2 (", "v3 ("))}
    # version 3 reduces more rows (the cash stock, the nine totals) and one more event
    v2 = next(v for k, v in lines.items() if k == "v2")
    v3 = next(v for k, v in lines.items() if k == "v3")
    assert int(v3[-4]) == int(v2[-4]) + 1 + 9 and int(v3[-3]) == int(v2[-3]) + 1
