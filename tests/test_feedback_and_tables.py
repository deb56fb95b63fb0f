"""Never silent, tables typed by column (issue 25, items 1, 4 and 5):

* a progress bar redraws itself while it waits (a run of one chunk, or a first call's
  compile, showed nothing: tqdm draws only on an update);
* the SMC's step lines reach the terminal by default (they needed --progress);
* a report's parts, a sweep's points (with the time left), a paired run and a
  sensitivity study are each said; ``mcsim run``'s closing line gives the whole time,
  writing included;
* quantiles and event months come back labelled, with a short repr;
* the report's parameter table has units.
"""

from __future__ import annotations

import csv
import re
import sys
import time

import pytest
from helpers import CONFIGS_DIR, short_config, short_config_file

from mcsim.engine import progress as progress_module


def test_a_bar_ticks_while_no_update_comes(capsys, monkeypatch):
    monkeypatch.setattr(progress_module, "TICK_SECONDS", 0.05)
    bar = progress_module.progress_bar(1000, True)
    time.sleep(0.6)
    bar.update(1000)
    bar.close()
    err = capsys.readouterr().err
    waiting = [s for s in err.split("\r") if "0.00/1.00k" in s]
    assert len(waiting) >= 4, err  # drawn again and again before the first update
    assert "1.00k/1.00k" in err
    assert not bar._ticker.is_alive() or bar._stop.is_set()


def test_no_bar_and_no_ticking_when_progress_is_off(capsys):
    assert progress_module.progress_bar(10, False) is None
    progress_module.say(False, "hidden")
    assert capsys.readouterr().err == ""


def test_smc_steps_are_said_on_a_terminal_by_default(monkeypatch, capsys):
    """The CLI's run passes progress=None: on a terminal the SMC's own step lines (step,
    temperature, ESS, mixing: mcsim.engine.smc writes them) must reach stderr."""
    from mcsim import api, load_config

    config = load_config(CONFIGS_DIR / "observed.toml")
    seen = {}

    class Stop(Exception):
        pass

    def fake_smc_posterior(config, dtype, devices, progress, **kw):
        seen["callback"] = progress
        if progress is not None:
            progress("run 1/4 step 3: temperature 0.25, ESS 8,192, acceptance 0.31")
        raise Stop

    monkeypatch.setattr(api, "smc_posterior", fake_smc_posterior)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    with pytest.raises(Stop):
        api.smc_conditioned(config, progress=None)
    err = capsys.readouterr().err
    assert seen["callback"] is not None
    c = config.conditioning
    assert f"by SMC: {c.runs} runs of {c.particles:,} particles" in err
    assert "mcsim: SMC run 1/4 step 3: temperature 0.25, ESS 8,192, acceptance 0.31" in err
    # off the terminal (a log, a pipe) nothing is said, as for the bars
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    with pytest.raises(Stop):
        api.smc_conditioned(config, progress=None)
    assert seen["callback"] is None and capsys.readouterr().err == ""


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """``mcsim run`` of a short config with plots and --progress: (stdout, stderr, out)."""
    import subprocess

    tmp = tmp_path_factory.mktemp("feedback")
    cfg = short_config_file(tmp, "2025-06", paths=2048)
    out = tmp / "out"
    done = subprocess.run([sys.executable, "-m", "mcsim.cli", "run", str(cfg), "--out",
                           str(out), "--progress"], capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr
    return done.stdout, done.stderr, out


def test_run_says_each_stage_and_its_closing_line_includes_the_writing(run_dir):
    stdout, stderr, out = run_dir
    assert re.search(r"^mcsim: simulating 2,048 paths of .*short\.toml$", stderr, re.M)
    # the report's line names the part begun (redrawn at most twice a second, so a quick
    # part may not be shown; the last one always is)
    parts = re.findall(r"part (\d+): ([\w. ]+?)\s*$", stderr.replace("\r", "\n"), re.M)
    assert parts and parts[-1][1] == "report.html", stderr
    assert int(parts[-1][0]) >= 4  # summary.json, the tables, the plots, report.html
    assert "mcsim: report written in " in stderr
    last = stdout.strip().splitlines()[-1]
    m = re.fullmatch(r"report written to (.*)/ \((\d+\.\d) s in all: simulating (\d+\.\d) s, "
                     r"writing the report (\d+\.\d) s\)", last)
    assert m, last
    total, run, write = (float(x) for x in m.groups()[1:])
    assert total >= run + write - 0.2  # the whole includes both


def test_parameter_table_has_units(run_dir):
    _, _, out = run_dir
    with open(out / "parameters.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert rows and list(rows[0])[:3] == ["weighting", "parameter", "unit"]
    units = {r["parameter"]: r["unit"] for r in rows}
    assert units["gpu_price_0"] == "$ per GPU-hour"
    assert units["gpu_price_drift"] == "log per year"
    assert units["utilization_0"] == "fraction"
    assert all(units.values())  # every parameter has one
    html = (out / "report.html").read_text()
    assert "<th>unit</th>" in html and "$ per GPU-hour" in html


def test_every_parameter_has_a_short_unit():
    from mcsim.parameters import UNITS
    from mcsim.report.summary import parameter_unit

    for name, text in UNITS.items():
        unit = parameter_unit(name)
        assert unit and len(unit) <= 30, (name, text, unit)


def test_sweep_says_points_done_and_time_left(tmp_path, capsys):
    from mcsim import api

    config = short_config("2024-06", paths=1024)
    api.run_sweep(config, {"deal.revenue_share": [0.1, 0.2]}, batch=False, progress=True)
    err = capsys.readouterr().err
    assert re.search(r"mcsim: sweep: 1 of 2 points done in \d+ s; about \d+ s left", err), err


@pytest.mark.filterwarnings("ignore:sensitivity of")  # 16 rows: intervals too wide
def test_paired_and_sensitivity_say_what_they_run(capsys):
    from mcsim.paired import paired_difference
    from mcsim.sensitivity import sensitivity

    config = short_config("2024-06", paths=1024)
    paired_difference(config, config, progress=True)
    assert "mcsim: paired: A and B on the same 1,024 paths" in capsys.readouterr().err
    sensitivity(config, num_base=16, num_bootstrap=20, outputs=["cumulative_azure_spend"],
                progress=True)
    err = capsys.readouterr().err
    assert re.search(r"mcsim: sensitivity: [\d,]+ model runs \(16 rows x \(\d+ parameters "
                     r"\+ 3\)\) for cumulative_azure_spend", err), err
    assert "mcsim: sensitivity: Sobol indices with 20 bootstrap resamples" in err


@pytest.fixture(scope="module")
def results():
    from mcsim import api

    return api.run(short_config("2024-12", paths=2048), progress=False)


def test_quantiles_and_event_months_are_labelled(results):
    q = results.quantiles("cumulative_azure_spend", (5, 50, 95))
    assert q.labels[0] == "2024-01" and q.labels[-1] == "2024-12" and q.unit == "$"
    text = repr(q)
    assert "array(" not in text and len(text.splitlines()) <= 9 and "2024-12" in text
    assert set(q.at("2024-06")) == {5.0, 50.0, 95.0}
    frame = q.to_frame()
    assert frame.index.name == "month" and list(frame.columns)[:3] == ["p5", "p5_low",
                                                                       "p5_high"]
    assert frame.loc["2024-12", "p50"] == q.value[-1, 1]
    horizon = results.quantiles("horizon", (50,))
    assert "microsoft_net" in horizon.labels and horizon.to_frame().index.name == "statistic"
    with pytest.raises(ValueError, match="microsoft_nett"):
        horizon.at("microsoft_nett")
    dist = results.event("credit_exhaustion", (5, 50, 95))
    assert dist.which == "credit_exhaustion" and dist.labels[-1] == "2024-12"
    month, low, high = dist.month(5)
    assert month is None or re.fullmatch(r"\d{4}-\d{2}", month)
    text = repr(dist)
    assert text.startswith("<MonthDistribution of credit_exhaustion: 5%: ")
    assert "P(not by 2024-12)" in text and "array(" not in text and "\n" not in text
    assert list(dist.to_frame().columns) == ["cdf", "cdf_se", "survival"]


def test_swept_values_are_numbers_in_the_configs_units_or_toml_text():
    import math

    from mcsim.report.sweep import decimal_year, month_of_decimal_year, swept_columns

    cols = swept_columns([{"parameters.gpu_price_drift_inf": "-40%/yr", "x.d": {"a": 1}},
                          {"parameters.gpu_price_drift_inf": -0.2, "x.d": {"a": 2}}])
    assert cols["parameters.gpu_price_drift_inf"] == [math.log(0.6), -0.2]
    assert cols["x.d"] == ["{a = 1}", "{a = 2}"]  # one type per column: text here
    assert swept_columns([{"x.flag": True}, {"x.flag": False}]) == {"x.flag": ["true",
                                                                              "false"]}
    for label in ("2024-01", "2027-03", "2040-12"):
        assert month_of_decimal_year(decimal_year(label)) == label
    assert decimal_year("2027-03") == pytest.approx(2027 + 2 / 12)
