"""mcsim sweep: a grid of overrides, validated before any run, sharing one compiled kernel,
with a table and a plot."""

from __future__ import annotations

import csv

import jax
import pytest
from helpers import short_config_file

from mcsim import ConfigError
from mcsim.cli import main
from mcsim.overrides import grid_points, parse_sweep, split_values


def test_values_split_at_top_level_commas():
    assert split_values('0.1, 0.2,"a,b",[1, 2],{ dist = "normal", mean = 0, sd = 1 }') == [
        "0.1", "0.2", '"a,b"', "[1, 2]", '{ dist = "normal", mean = 0, sd = 1 }']
    grid = parse_sweep(["deal.revenue_share=0.1,0.2", "simulation.seed=1,2,3"])
    assert grid == {"deal.revenue_share": [0.1, 0.2], "simulation.seed": [1, 2, 3]}
    assert len(grid_points(grid)) == 6 and grid_points(grid)[1] == {
        "deal.revenue_share": 0.1, "simulation.seed": 2}
    for bad in ("deal.revenue_share", "deal.revenue_share=", "deal.revenue_share=0.1,abc"):
        with pytest.raises(ConfigError):
            parse_sweep([bad])


@pytest.fixture()
def short_config(tmp_path):
    return short_config_file(tmp_path, "2028-12")


def _rows(out):
    with open(out / "sweep.csv") as fh:
        return list(csv.DictReader(fh))


def test_sweep_grid_is_monotone_and_compiles_once(short_config, tmp_path, capsys):
    args = ["sweep", str(short_config), "--paths", "2048", "--seed", "4", "--no-plots",
            "--set", "deal.revenue_share=0.05,0.2", "--set", "deal.investment=13e9,30e9"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    # one row per point and statistic; one folder per point, named by its values
    rows = [r for r in _rows(tmp_path / "a") if r["statistic"] == "p_repaid_by_horizon"]
    assert len(rows) == 4 and {p.name for p in (tmp_path / "a").iterdir()} == {
        "sweep.csv", ".mcsim-output.json", *(
            f"deal.revenue_share={s},deal.investment={i}" for s in ("0.05", "0.2")
            for i in ("13000000000", "30000000000"))}
    p = {(r["deal.revenue_share"], r["deal.investment"]): 1 - float(r["value"])
         for r in rows}
    # the same paths under every point: more revenue share or a smaller line repays each
    # path no later, so these hold exactly, not only in expectation
    assert p[("0.2", "13000000000.0")] <= p[("0.05", "13000000000.0")]
    assert p[("0.05", "13000000000.0")] <= p[("0.05", "30000000000.0")]
    assert p[("0.05", "30000000000.0")] > p[("0.2", "13000000000.0")]
    printed = capsys.readouterr().out
    # the terminal leads with what the deal changes: the repayment month and P(repaid)
    assert "median repayment" in printed and "P(repaid by 2028-12)" in printed

    compiles = []
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, duration, **kw: compiles.append(event)
        if event == "/jax/core/compile/backend_compile_duration" else None)
    try:
        other = [a.replace("0.05,0.2", "0.1,0.3") for a in args]
        assert main([*other, "--out", str(tmp_path / "b")]) == 0
        assert compiles == []  # new values, same shapes: the compiled kernel is reused
    finally:
        jax.monitoring.clear_event_listeners()


def test_a_bad_point_fails_before_any_run(short_config, tmp_path, capsys):
    status = main(["sweep", str(short_config), "--paths", "1024", "--out",
                   str(tmp_path / "x"), "--set", "deal.revenue_share=0.1,1.5"])
    assert status == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("mcsim: error:") and "deal.revenue_share = 1.5" in err
    assert not (tmp_path / "x").exists()


def test_sweep_plot(short_config, tmp_path):
    assert main(["sweep", str(short_config), "--paths", "1024", "--out", str(tmp_path / "p"),
                 "--set", "deal.revenue_share=0.1,0.2"]) == 0
    png = (tmp_path / "p" / "sweep.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_batched_points_agree_with_their_own_runs(short_config):
    """One batched kernel call per chunk computes every point; each point's results equal
    its own run's to float32 rounding (the fused code differs, so not bit for bit): means
    to 1e-7 relative, repayment counts within a few paths of 6,144 (months whose float64
    sums differ in the last bits can flip only at a boundary)."""
    import numpy as np

    from mcsim import api, load_config, with_overrides

    base = load_config(short_config).with_simulation(paths=6144)
    points = [{"deal.investment": 13e9}, {"deal.investment": 20e9,
                                           "parameters.gpu_price_vol": 0.2},
              {"deal.revenue_share": 0.1,
               "parameters.tokens_0": {"dist": "lognormal", "p5": 1.5e13, "p95": 4e13}}]
    configs = [with_overrides(base, p) for p in points]
    batched = api.run_batch(configs, progress=False)
    assert all(r.info.batch == 3 for r in batched)
    for cfg, b in zip(configs, batched, strict=True):
        alone = api.run(cfg, progress=False)
        for group in ("cumulative_azure_spend", "horizon"):
            np.testing.assert_allclose(b.mean(group)[0], alone.mean(group)[0], rtol=1e-7)
        moved = np.abs(b.event_counts("repayment") - alone.event_counts("repayment"))
        assert moved.sum() <= 4
    # the points really differ
    assert batched[0].mean("horizon")[0][3] != batched[1].mean("horizon")[0][3]


def test_batch_refuses_configs_of_different_shapes(short_config):
    from mcsim import api, load_config

    base = load_config(short_config).with_simulation(paths=2048)
    with pytest.raises(ValueError, match="batch_key"):
        api.run_batch([base, base.with_simulation(seed=9)], progress=False)


def test_sweep_batched_and_one_by_one_agree(short_config):
    from mcsim import load_config
    from mcsim.api import run_sweep
    from mcsim.report.sweep import sweep_table

    cfg = load_config(short_config).with_simulation(paths=4096)
    grid = {"deal.revenue_share": [0.1, 0.3], "simulation.seed": [1, 2]}
    batched = sweep_table(run_sweep(cfg, grid, progress=False))
    alone = sweep_table(run_sweep(cfg, grid, progress=False, batch=False))
    for a, b in zip(batched, alone, strict=True):
        for key, value in a.items():
            if isinstance(value, float):
                assert value == pytest.approx(b[key], rel=1e-6, abs=1e-9), key
            else:
                assert value == b[key], key
