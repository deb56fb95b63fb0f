"""Messages (issue 26, items 7 and 8): every command-line misuse is one line (argparse's
usage block is not printed), values that would silently turn a feature off are refused,
a sweep says nothing before its error, and errors name what the user can change: the
table a key belongs in, the child config whose [deal] replaced its parent's, the flag
beside the config key, and ``--dtype float64`` whenever float32's range is the cause."""

from __future__ import annotations

import argparse

import pytest
from helpers import CONFIGS_DIR, minimal_config_text

from mcsim.cli import build_parser, main

BASE = str(CONFIGS_DIR / "amendment_2026.toml")

#: what each subcommand needs before a misuse can be added (dummy values: parsing fails
#: before any is read)
MINIMAL = {"run": ["c.toml", "--out", "o"], "reproduce": ["s.json", "--out", "o"],
           "sensitivity": ["c.toml", "--out", "o"], "sweep": ["c.toml", "--set", "a.b=1",
                                                             "--out", "o"],
           "compare": ["a"], "validate": ["c.toml"]}


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _misuses() -> list[list[str]]:
    """Command lines argparse refuses, generated over every subcommand and option."""
    cases = [[], ["rn", "c.toml"], ["--bogus"]]
    for name, sub in _subparsers().items():
        base = [name, *MINIMAL[name]]
        cases += [[name], [*base, "--bogus"], [*base, "bogus-extra", "--no-such-flag=1"]]
        for action in sub._actions:
            if not action.option_strings or action.nargs == 0 or \
                    isinstance(action, argparse._HelpAction):
                continue
            flag = action.option_strings[0]
            cases.append([*base, flag])  # no value
            if action.choices:
                cases.append([*base, flag, "bogus"])
            if action.type not in (None, str):
                cases.append([*base, f"{flag}=not-a-value"])
    cases += [[*["run", *MINIMAL["run"]], "--progress", "--no-progress"],
              ["run", *MINIMAL["run"], "--pats", "10"]]
    return cases


MISUSES = _misuses()  # 74 at the time of writing

@pytest.mark.parametrize("argv", MISUSES, ids=[" ".join(a) or "<none>" for a in MISUSES])
def test_every_misuse_is_one_line(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "usage:" not in captured.err, captured.err
    command = argv[0] if argv and argv[0] in MINIMAL else None
    prog = f"mcsim {command}" if command else "mcsim"
    assert lines[0].startswith(f"{prog}: error: "), lines[0]
    assert lines[0].endswith(f"(see {prog} --help)"), lines[0]


def test_a_misspelt_flag_or_command_gets_the_nearest(capsys):
    for argv, nearest in [(["run", BASE, "--out", "o", "--pats", "10"], "--paths"),
                          (["rn", BASE], "run"),
                          (["sweep", BASE, "--set", "a.b=1", "--out", "o", "--no-plts"],
                           "--no-plots")]:
        with pytest.raises(SystemExit):
            main(argv)
        assert f"did you mean {nearest}?" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["run", "sensitivity"])
@pytest.mark.parametrize("value", ["-1", "nan", "inf", "-inf", "1e400", "-0.5"])
def test_a_checkpoint_interval_that_would_turn_checkpoints_off_is_refused(command, value,
                                                                         tmp_path, capsys):
    extra = ["--paths", "1024", "--no-plots"] if command == "run" else ["--base-rows", "64"]
    with pytest.raises(SystemExit) as info:
        main([command, BASE, "--out", str(tmp_path / "o"), *extra,
              f"--checkpoint-interval={value}"])
    assert info.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"mcsim {command}: error: argument --checkpoint-interval: "
                           f"'{value}': expected a number of seconds >= 0")
    assert not (tmp_path / "o").exists()


def test_a_sweep_says_nothing_before_its_error(tmp_path, capsys):
    out = tmp_path / "sw"
    assert main(["sweep", BASE, "--set", "deal.revenue_share=0.1,1.5", "--paths", "1024",
                 "--out", str(out)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines  # no "sweep: 2 points ..." first
    assert lines[0].startswith("mcsim: error: ") and "deal.revenue_share = 1.5" in lines[0]
    assert not out.exists()


@pytest.mark.parametrize("table, key, home", [("deal", "azure_gross_margin", "parameters"),
                                              ("deal", "gpu_price_0", "parameters"),
                                              ("parameters", "revenue_share", "deal"),
                                              ("simulation", "investment", "deal")])
def test_a_key_in_the_wrong_table_says_where_it_belongs(table, key, home, tmp_path, capsys):
    sections = {table: {key: "0.5"}}
    path = tmp_path / "c.toml"
    path.write_text(minimal_config_text(**sections))
    assert main(["validate", str(path)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert f"{table}.{key} = <unknown key>" in line
    assert f"did you mean {home}.{key}? {key} belongs in [{home}]" in line


def test_a_child_whose_deal_replaced_its_parents_says_so(tmp_path, capsys):
    child = tmp_path / "child.toml"
    child.write_text(f'extends = "{CONFIGS_DIR / "base.toml"}"\n\n[[deal.change]]\n'
                     'from = "2027-01"\nrevenue_share = 0.1\n')
    assert main(["validate", str(child)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"mcsim: error: {child}: deal.investment is missing: expected ")
    assert (f"({child} gives [[deal.change]], so its [deal] replaces the whole [deal] of "
            f"{CONFIGS_DIR / 'base.toml'}, the config it extends: repeat deal.investment in "
            f"{child}, and any other [deal] key it needs)") in line


def test_a_target_with_sobol_points_names_the_flag_and_the_key(tmp_path, capsys):
    assert main(["run", BASE, "--out", str(tmp_path / "o"), "--paths", "4096",
                 "--variance-reduction", "sobol", "--target-se", "p_not_repaid=0.01"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("mcsim: error: --target-se = {'p_not_repaid': '0.01'}: ")
    assert 'simulation.variance_reduction = "sobol" (--variance-reduction' in line
    assert not (tmp_path / "o").exists()


def test_float32_overflow_suggests_float64_when_a_parameter_is_named(tmp_path):
    """Tokens growing at a drawn 100%-6,000%/yr: the fast-growing paths pass float32's
    3.4e38 (token_growth_0 is rightly named), and the same paths are finite in float64, so
    --dtype float64 is suggested too (it was only when every path failed)."""
    from mcsim import load_config
    from mcsim.engine.diagnosis import diagnose_nonfinite

    path = tmp_path / "c.toml"
    path.write_text(minimal_config_text(parameters={
        "token_growth_0": '{ dist = "uniform", low = 1.0, high = 60.0 }',
        "token_growth_halflife": "100.0"}))
    likely = diagnose_nonfinite(load_config(path), "float32")
    assert likely.startswith("token_growth_0 (the paths with a NaN or inf sit at its ")
    assert "finite in float64, so run with --dtype float64" in likely
