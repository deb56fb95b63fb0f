"""mcsim sensitivity says something by default (issue 23, item 5): the default outputs are
the config's own questions and vary on it; an output with no variance (under today's terms
every path is repaid by 2030-12) is left out with one warning line naming it and why, or,
when every output asked for is such, refused in one line; no NaN rows are printed.

One small design (64 base rows, the base config to 2030-12) compiled once for the module;
the CLI run reuses it. Kept under a minute on 2 cores.
"""

from __future__ import annotations

import importlib
import json
import re
import warnings

import numpy as np
import pytest

import mcsim
from mcsim import plots_sensitivity as ps
from mcsim.cli import main
from tests.helpers import CONFIGS_DIR

# the module (mcsim.sensitivity is also the package's name for its function)
sens = importlib.import_module("mcsim.sensitivity")

N = 64  # base rows: small on purpose (its intervals are wide; their warning is tested
# in tests/test_sensitivity_direction.py)
BASE_DEFAULTS = ("cumulative_azure_spend", "funding_gap_month", "pv_microsoft_whole_position",
                 "repayment_month", "repaid_by")
REPAID_LINE = ("repaid_by left out of the sensitivity study: every path is repaid by "
               "2030-12, so it has no variance to apportion")


@pytest.fixture(scope="module")
def base_file(tmp_path_factory):
    """The base config to 2030-12 (version 3: funding, a discount rate, equity)."""
    path = tmp_path_factory.mktemp("cfg") / "base_2030.toml"
    path.write_text(f'extends = "{CONFIGS_DIR / "base.toml"}"\n[simulation]\n'
                    'horizon = "2030-12"\n')
    return path


@pytest.fixture(scope="module")
def study(base_file):
    cfg = mcsim.load_config(base_file)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = sens.sensitivity(cfg, num_base=N, num_bootstrap=200)
    return cfg, res, [str(w.message) for w in caught]


def test_default_outputs_follow_the_config(base_file):
    """Today's questions on a version-3 config, version 1's three on a version-1 one."""
    cfg = mcsim.load_config(base_file)
    assert sens.default_outputs(cfg) == BASE_DEFAULTS
    assert set(BASE_DEFAULTS) <= set(sens.available_outputs(cfg))
    v1 = mcsim.load_config(CONFIGS_DIR / "v1_base.toml")
    assert sens.default_outputs(v1) == sens.OUTPUTS
    assert "funding_gap_month" not in sens.available_outputs(v1)


def test_the_defaults_vary_on_base(study):
    """Every default output but ``repaid_by`` has finite indices with ordered intervals."""
    cfg, res, _ = study
    assert res.outputs == tuple(o for o in BASE_DEFAULTS if o != "repaid_by")
    assert res.lead == "cumulative_azure_spend"
    for name, idx in res.indices.items():
        assert idx.variance > 0, name
        for a in (idx.first, idx.total, idx.first_low, idx.first_high, idx.total_low,
                  idx.total_high):
            assert np.isfinite(a).all(), name
        assert (idx.total_low <= idx.total_high).all() and (
            idx.first_low <= idx.first_high).all(), name
        assert res.top(name, 1)[0][1] > 0
    frame = res.frame()
    assert not frame[["first", "total", "total_low", "total_high"]].isna().any().any()
    # the funding gap is censored on part of the paths only: it has both kinds of rows
    gap = res.base_outputs["funding_gap_month"]
    T = cfg.grid.num_months
    assert 0 < np.mean(gap >= T) < 1


def test_an_output_without_variance_is_one_warning_line(study):
    _, res, caught = study
    assert [m for m in caught if "left out" in m] == [REPAID_LINE]
    assert res.left_out == {"repaid_by": "every path is repaid by 2030-12"}
    with pytest.raises(ValueError, match="repaid_by was left out: every path is repaid"):
        res.top("repaid_by")


def test_the_cli_prints_no_nan(base_file, tmp_path, capsys):
    out = tmp_path / "s"
    assert main(["sensitivity", str(base_file), "--out", str(out), "--base-rows", str(N),
                 "--bootstrap", "200"]) == 0
    std = capsys.readouterr()
    assert not re.search(r"\bnan\b", std.out, re.IGNORECASE)
    assert [line for line in std.err.splitlines() if "repaid_by" in line] == [
        f"mcsim: warning: {REPAID_LINE}"]
    for name in BASE_DEFAULTS[:-1]:
        assert f"\n  {name}: " in std.out
    assert "funding-gap month (cash runs out), median " in std.out
    doc = json.loads((out / "sensitivity.json").read_text())
    assert list(doc["outputs"]) == list(BASE_DEFAULTS[:-1])
    assert doc["left_out"] == {"repaid_by": "every path is repaid by 2030-12"}
    assert doc["outputs"]["funding_gap_month"]["unit"] == "months"
    assert "NaN" not in (out / "sensitivity.json").read_text()
    assert (out / "tornado.png").stat().st_size > 10_000


def test_only_outputs_without_variance_are_refused_in_one_line(base_file, tmp_path,
                                                                capsys, monkeypatch):
    """Every output asked for constant: exit 2, one line naming it and why, nothing
    written. (The rows are made constant here; the real case is the test above.)"""
    def constant_rows(config, uniforms, shock_paths, dtype="float32", saver=None,
                      progress=None, quantities=()):
        n = len(uniforms)
        return {**{q: np.full(n, 5) for q in quantities}, "finite": np.ones(n, bool)}

    monkeypatch.setattr(sens, "evaluate_rows", constant_rows)
    out = tmp_path / "s"
    assert main(["sensitivity", str(base_file), "--out", str(out), "--base-rows", "8",
                 "--output", "repaid_by,funding_gap_month"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("mcsim: error: --output = ")
    assert "repaid_by" in err and "every path is repaid by 2030-12" in err
    assert "every path runs out of cash (the funding gap) in 2024-06" in err
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_output_lists_those_of_the_config(base_file, tmp_path, capsys):
    assert main(["sensitivity", str(base_file), "--out", str(tmp_path / "s"),
                 "--output", "repaid_byy"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--output = 'repaid_byy'" in err
    assert "funding_gap_month" in err and "pv_microsoft_whole_position" in err


def test_no_variance_reasons_name_the_output():
    cfg = mcsim.load_config(CONFIGS_DIR / "base.toml")
    grid, available = cfg.grid, sens.available_outputs(cfg)

    def why(name, value, by="2028-06"):
        return sens.no_variance_reason(available[name], value, grid, by)

    assert why("repaid_by", 0.0) == "no path is repaid by 2028-06"
    assert why("funding_gap_month", grid.num_months) == (
        "no path runs out of cash (the funding gap) by the horizon (2040-12)")
    assert why("cap_reached_month", 3) == "every path reaches the revenue-share cap in 2024-04"
    assert why("microsoft_equity_value", 0.0) == "every path has microsoft_equity_value = $0"
    assert why("funding_to_find", 2.5e10) == "every path has funding_to_find = $25B"


def test_every_output_has_readable_words():
    cfg = mcsim.load_config(CONFIGS_DIR / "base.toml")
    for name, output in sens.available_outputs(cfg).items():
        what, unit = ps.output_label(name, "2030-12")
        assert "_" not in what, name
        assert unit == {"money": "$", "month": "months", "by": "probability"}[output.kind]
    assert ps.output_label("funding_gap_by", "2028-12") == (
        "probability of being out of cash by 2028-12", "probability")
