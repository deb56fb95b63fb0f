"""mcsim sensitivity: the design's rows go through the engine's own per-path function, the
indices obey what they must in cases whose answer is known, and the CLI writes its files.

The estimators themselves are checked against the Ishigami function's closed form in
tests/test_sobol.py. Tolerances here are 4 bootstrap standard errors (the estimators'
sampling error), never tuned numbers.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mcsim
from mcsim import ConfigError, api, with_overrides
from mcsim.cli import main
from mcsim.device_draws import DeviceSampler
from mcsim.sensitivity import SHOCK_FACTOR, default_outputs, evaluate_rows, sensitivity
from tests.helpers import CONFIGS_DIR, short_config

# small designs on purpose: their "intervals too wide" warning is tested in
# tests/test_sensitivity_direction.py
pytestmark = pytest.mark.filterwarnings("ignore:sensitivity of .* Sobol intervals too wide")

SHOCK_VOLS = ("gpu_price_vol", "utilization_vol", "token_vol", "users_vol", "conversion_vol")


@pytest.fixture(scope="module")
def short_base():
    # the 2019 terms' world: repayment by 2030 is uncertain there (under today's terms
    # nearly every path is repaid by 2028, and "repaid by" would carry no variance)
    return short_config("2031-12", "v1_base.toml")


def test_design_rows_run_the_same_kernel_as_ordinary_runs(short_base):
    """Rows given the paths' own uniforms and shock streams reproduce an ordinary run's
    repayment months exactly: the design enters the same model, copula and inverse CDFs."""
    n = 2048
    cfg = short_base.with_simulation(paths=n)
    sampler = DeviceSampler(cfg)
    paths = jnp.arange(n, dtype=jnp.uint32)
    u = np.asarray(jax.jit(sampler.uniforms)(jax.tree.map(jnp.asarray, sampler.arguments()),
                                             paths))
    rows = evaluate_rows(cfg, u, np.arange(n, dtype=np.uint32))
    counts = np.bincount(rows["repayment_month"], minlength=cfg.grid.num_months + 1)
    results = api.run(cfg, progress=False)
    np.testing.assert_array_equal(counts, results.event_counts("repayment"))
    mean, _ = results.mean("cumulative_azure_spend")
    assert rows["cumulative_azure_spend"].mean() == pytest.approx(mean[-1], rel=1e-12)


# everything else at its median: no path is repaid by 2030-12, and repaid_by is left out
@pytest.mark.filterwarnings("ignore:repaid_by left out of the sensitivity study")
def test_without_shocks_one_parameter_explains_everything(short_base):
    """One uncertain parameter and no monthly shocks: the shocks' indices are exactly 0
    (their radial rows equal A's), and the parameter's are 1 within sampling error."""
    overrides = {f"parameters.{v}": 0.0 for v in SHOCK_VOLS}
    cfg = with_overrides(short_base, overrides)
    params = dict(cfg.parameters)
    keep = "tokens_per_gpu_hour_0"
    for name in cfg.uncertain_parameters():
        if name != keep:
            params[name] = float(params[name].ppf(np.array([0.5]))[0])
    from dataclasses import replace

    cfg = replace(cfg, parameters=params, correlation_pairs=())
    res = sensitivity(cfg, num_base=512, num_bootstrap=400)
    for output in ("repayment_month", "cumulative_azure_spend"):
        idx = res.indices[output]
        k = idx.names.index(SHOCK_FACTOR)
        assert idx.total[k] == 0.0 and idx.first[k] == pytest.approx(0.0, abs=1e-12)
        j = idx.names.index(keep)
        for value, se in ((idx.first[j], idx.first_se[j]), (idx.total[j], idx.total_se[j])):
            assert abs(value - 1.0) <= 4 * se + 1e-3, (output, value, se)


def test_indices_are_consistent_on_the_base_config(short_base):
    """With every parameter uncertain: each total index is at least its first-order index
    and the first-order indices sum to at most 1 (within 4 SE); the top factors for the
    repayment month are named."""
    res = sensitivity(short_base, num_base=512, num_bootstrap=300)
    assert res.num_rows == 512 * (len(short_base.uncertain_parameters()) + 3)
    for output, idx in res.indices.items():
        assert np.all(idx.total >= idx.first - 4 * np.hypot(idx.total_se, idx.first_se)), \
            output
        assert idx.first.sum() <= 1 + 4 * np.sqrt(np.sum(idx.first_se**2)), output
        assert np.all(idx.total >= -4 * idx.total_se - 1e-12), output
    top = res.top("repayment_month", 3)
    assert len(top) == 3 and top[0][1] >= top[1][1] >= top[2][1] > 0


def test_sensitivity_cli_writes_indices_and_tornado(tmp_path):
    cfg = tmp_path / "short.toml"
    cfg.write_text(f'extends = "{CONFIGS_DIR / "base.toml"}"\n[simulation]\n'
                   'horizon = "2030-12"\n')
    out = tmp_path / "sens"
    # 64 base rows: the design of tests/test_sensitivity_defaults.py (one compile for both)
    assert main(["sensitivity", str(cfg), "--out", str(out), "--base-rows", "64",
                 "--bootstrap", "200", "--by", "2029-06"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        ".mcsim-output.json", "drivers.csv", "drivers.png", "sensitivity.csv",
        "sensitivity.json", "tornado.png"]
    doc = json.loads((out / "sensitivity.json").read_text())
    assert doc["repaid_by_month"] == doc["by_month"] == "2029-06"
    # the base config's own questions; one with no variance on the design is left out,
    # saying why, and never written as NaN
    assert set(doc["outputs"]) | set(doc["left_out"]) == set(
        default_outputs(mcsim.load_config(cfg)))
    assert {"cumulative_azure_spend", "funding_gap_month", "pv_microsoft_whole_position",
            "repayment_month"} <= set(doc["outputs"])
    assert len(doc["top_for_repayment_month"]) == 3
    assert all(len(top) == 3 for top in doc["top"].values())
    assert (out / "tornado.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("argv, key", [
    (["--base-rows", "300"], "--base-rows"),
    (["--by", "2041-01"], "--by"),
])
def test_sensitivity_bad_input_exits_2_and_writes_nothing(tmp_path, capsys, argv, key):
    out = tmp_path / "sens"
    assert main(["sensitivity", str(CONFIGS_DIR / "base.toml"), "--out", str(out)]
                + argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("mcsim: error:") and key in err and "expected" in err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_sensitivity_needs_an_uncertain_parameter():
    from tests.helpers import minimal_config_text

    cfg = mcsim.parse_config_text(minimal_config_text())
    with pytest.raises(ConfigError, match="parameters"):
        sensitivity(cfg, num_base=8)


def test_a_closed_pipe_is_not_an_error(tmp_path):
    """``mcsim sensitivity ... | head -1``: the reader leaves early; the files are written
    and mcsim exits 0 without a BrokenPipeError traceback."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "mcsim.cli", "sensitivity",
                             str(CONFIGS_DIR / "base.toml"), "--out", str(tmp_path / "s"),
                             "--base-rows", "64", "--bootstrap", "50"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # nobody reads: every print hits a closed pipe
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=600) == 0, err
    assert "Traceback" not in err
    assert (tmp_path / "s" / "tornado.png").exists()
