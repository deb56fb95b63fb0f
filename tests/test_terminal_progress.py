"""What the terminal says while a command works: no stage of seconds goes by in silence.

* ``mcsim run``: after the run's bar, the tables and the report's writing are each said,
  the report with its time (the summary's time is the run's alone);
* ``--target-se``: why the run stopped where it did (the target met at a look, with the
  paths used of the budget);
* ``mcsim sweep``: each batch, each point's tables and each point's report.
"""

from __future__ import annotations

import sys

from helpers import short_config_file

from mcsim.cli import run_command


def test_run_says_where_a_precision_target_stopped_it_and_times_the_report(tmp_path, capsys):
    cfg = short_config_file(tmp_path, "2024-12")
    out = tmp_path / "out"
    assert run_command(["run", str(cfg), "--out", str(out), "--paths", "1000000",
                        "--no-plots", "--progress", "--target-se",
                        "cumulative_azure_spend=5%"]) == 0
    err = capsys.readouterr().err
    stop = [line for line in err.splitlines() if "precision target" in line]
    assert stop == ["mcsim: precision target met: stopped at 65,536 of 1,000,000 paths, "
                    "934,464 paths of the budget unused (cumulative_azure_spend SE "
                    + stop[0].split("cumulative_azure_spend SE ")[1]], err
    assert " <= $" in stop[0]
    assert "mcsim: tables: the parameters as drawn and facts vs model" in err
    assert f"mcsim: writing the report into {out}/" in err
    assert "mcsim: report written in " in err


def test_a_budget_spent_without_meeting_the_target_says_so(tmp_path, capsys):
    from mcsim.precision import stop_text

    report = {"paths_used": 131072, "targets": {
        "p_not_repaid": {"target_se": 0.001, "se": 0.0014, "estimate": 0.3, "met": False},
        "cumulative_azure_spend": {"target_se": 2e9, "se": 1e9, "estimate": 6e11,
                                   "met": True}}}
    text = stop_text(report, 131072)
    assert text == ("precision target NOT met: the budget of 131,072 paths was spent "
                    "(p_not_repaid SE 0.0014 > 0.0010); raise --paths or loosen --target-se")


def test_sweep_says_each_stage_on_a_terminal(tmp_path, capsys, monkeypatch):
    cfg = short_config_file(tmp_path, "2024-12", paths=4096)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert run_command(["sweep", str(cfg), "--out", str(tmp_path / "sw"), "--no-plots",
                        "--set", "deal.revenue_share=0.1,0.2"]) == 0
    err = capsys.readouterr().err
    assert "mcsim: sweep: points 1-2 of 2: 4,096 paths each (batched)" in err
    assert err.count("mcsim: tables: ") == 2
    assert "mcsim: sweep: writing 2 reports into" in err
    assert "mcsim: sweep: report 2 of 2 written (deal.revenue_share=0.2/)" in err
