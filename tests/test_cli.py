"""The command line end to end: a run writes the whole report; bad input exits 2 with one
line and writes nothing; an earlier report survives a failed run."""

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import CONFIGS_DIR, minimal_config_text

from mcsim.layout import ANNUAL_FLOWS, HORIZON_TOTALS, STOCKS

MCSIM = shutil.which("mcsim", path=str(Path(sys.executable).parent)) or "mcsim"
REPORT_FILES = {"summary.json", "cumulative_azure_spend.csv", "annual.csv",
                "repayment_cdf.csv", "event_quantiles.csv", "horizon_totals.csv",
                "fan_chart.png", "report.html",
                "annual_azure_spend.png", "repayment_cdf.png", "credit_exhaustion_cdf.png",
                "stocks.csv", "parameters.csv", "cap_reached_cdf.png", ".mcsim-output.json"}


def mcsim(*args, cwd=None):
    return subprocess.run([MCSIM, *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=600, env={**os.environ, "JAX_PLATFORMS": "cpu"})


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "report"
    proc = mcsim("run", CONFIGS_DIR / "amendment_2026.toml", "--out", out, "--paths", 3000,
                 "--seed", 11, "--chunk-size", 2048, "--progress")
    assert proc.returncode == 0, proc.stderr
    return out, proc


def test_run_writes_every_file(report):
    out, proc = report
    assert {p.name for p in out.iterdir()} == REPORT_FILES
    manifest = json.loads((out / ".mcsim-output.json").read_text())
    assert set(manifest["files"]) == REPORT_FILES - {".mcsim-output.json"}
    assert "repaid: median" in proc.stdout
    assert "3.00k/3.00k" in proc.stderr  # --progress: the bar reached all 3000 paths
    assert "path/s" in proc.stderr  # with the rate (and time left)
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert png.stat().st_size > 10_000


def test_summary_json_schema(report):
    out, _ = report
    s = json.loads((out / "summary.json").read_text())
    assert s["schema"] == "mcsim.summary/3"
    assert s["paths"] == 3000 and s["provenance"]["seed"] == 11
    assert s["provenance"]["config_text"].count("# ===== ") == 2  # base and amendment
    T = s["grid"]["months"]
    assert T == 204 and len(s["cumulative_azure_spend"]["months"]) == T
    for p in ("p5", "p25", "p50", "p75", "p95"):
        q = s["cumulative_azure_spend"]["quantiles"][p]
        assert len(q["value"]) == T
        # a cumulative sum never decreases: its quantiles neither
        vals = [v for v in q["value"] if v is not None]
        assert all(b >= a * (1 - 1e-9) for a, b in zip(vals, vals[1:], strict=False))
        assert all(lo <= v <= hi for lo, v, hi in zip(q["ci95_low"], q["value"],
                                                      q["ci95_high"], strict=True)
                   if v is not None)
    rep = s["repayment"]
    assert 0.0 <= rep["probability_not_by_horizon"] <= 1.0
    for q in rep["quantiles"].values():
        assert (q["month"] is None) == (q["label"] == "not by the horizon")
    cdf = rep["cdf"]["probability"]
    assert all(b >= a for a, b in zip(cdf, cdf[1:], strict=False))
    assert abs(cdf[-1] + rep["probability_not_by_horizon"] - 1.0) < 1e-12
    assert set(s["horizon"]) == set(HORIZON_TOTALS)
    assert set(s["stocks"]) == set(STOCKS) | {"years", "at", "units"}
    for name in STOCKS:  # positive levels, in their own units (not binned dollars)
        vals = [v for v in s["stocks"][name]["quantiles"]["p50"]["value"] if v is not None]
        assert vals and all(v > 0 for v in vals)
    assert s["stocks"]["azure_share"]["quantiles"]["p50"]["value"][0] < 1.0
    for block in ("revenue_share_cap_reached", "azure_commitment_met"):
        assert 0.0 <= s[block]["probability_not_by_horizon"] <= 1.0
    assert set(s["parameters"]["prior"]) == set(s["parameters"]["prior"]) & set(
        s["provenance"]["config_resolved"]["parameters"])
    assert s["annual"]["years"][0] == "2024" and len(s["annual"]["years"]) == 17
    assert set(s["annual"]) >= {"azure_spend", "azure_inference_spend", "revenue",
                                "revenue_share"}


def test_csv_tables_agree_with_summary(report):
    out, _ = report
    s = json.loads((out / "summary.json").read_text())
    with open(out / "cumulative_azure_spend.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 204
    assert float(rows[-1]["p50"]) == pytest.approx(
        s["cumulative_azure_spend"]["quantiles"]["p50"]["value"][-1], rel=1e-9)
    with open(out / "repayment_cdf.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert float(rows[-1]["p_repaid_by"]) == pytest.approx(
        s["repayment"]["cdf"]["probability"][-1], rel=1e-9)
    with open(out / "annual.csv") as fh:
        flows = {r["flow"] for r in csv.DictReader(fh)}
    assert flows == set(ANNUAL_FLOWS)


def test_partial_years_are_labelled(tmp_path):
    cfg = tmp_path / "partial.toml"
    cfg.write_text(minimal_config_text(simulation={"start": '"2024-03"',
                                                   "horizon": '"2025-10"',
                                                   "paths": "1024"}))
    out = tmp_path / "out"
    proc = mcsim("run", cfg, "--out", out, "--no-plots")
    assert proc.returncode == 0, proc.stderr
    years = json.loads((out / "summary.json").read_text())["annual"]["years"]
    assert years == ["2024 (Mar-Dec, partial)", "2025 (Jan-Oct, partial)"]


@pytest.mark.parametrize("edit,key", [
    ({"deal": {"revenue_share": "1.5"}}, "deal.revenue_share"),
    ({"parameters": {"gpu_prize_0": "2.0"}}, "parameters.gpu_prize_0"),
    ({"simulation": {"horizon": '"2023-12"'}}, "simulation.horizon"),
])
def test_bad_config_exits_2_with_one_line_and_writes_nothing(tmp_path, edit, key):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(minimal_config_text(**edit))
    out = tmp_path / "out"
    proc = mcsim("run", cfg, "--out", out)
    assert proc.returncode == 2
    assert key in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [cfg]


def test_validate(tmp_path):
    proc = mcsim("validate", CONFIGS_DIR / "base.toml")
    assert proc.returncode == 0 and "valid" in proc.stdout
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b"\xff\xfe[simulation]\n")
    proc = mcsim("validate", bad)
    assert proc.returncode == 2 and "UTF-8" in proc.stderr


def test_cli_overrides_are_validated(tmp_path):
    proc = mcsim("run", CONFIGS_DIR / "base.toml", "--out", tmp_path / "o", "--paths", "0")
    assert proc.returncode == 2 and "--paths" in proc.stderr
    assert not (tmp_path / "o").exists()


def test_failed_run_leaves_the_previous_report(tmp_path, report):
    out = tmp_path / "report"
    shutil.copytree(report[0], out)
    before = (out / "summary.json").read_bytes()
    cfg = tmp_path / "bad.toml"
    cfg.write_text(minimal_config_text(deal={"investment": "-1"}))
    assert mcsim("run", cfg, "--out", out).returncode == 2
    assert (out / "summary.json").read_bytes() == before


def test_out_must_be_a_directory(tmp_path):
    f = tmp_path / "file"
    f.write_text("keep me")
    proc = mcsim("run", CONFIGS_DIR / "base.toml", "--out", f)
    assert proc.returncode == 2 and "--out" in proc.stderr
    assert f.read_text() == "keep me"
