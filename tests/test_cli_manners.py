"""CLI manners (issue 15, item 5): ``--version``, a description in every ``--help``,
``validate --set``, ``--paths 1e4``, "±" labelled."""

from __future__ import annotations

import re
from importlib.metadata import version

import pytest
from helpers import CONFIGS_DIR

from mcsim import __version__
from mcsim.cli import SUBCOMMANDS, _positive_int, build_parser, main

BASE = str(CONFIGS_DIR / "base.toml")


def _exit(argv, capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(argv)
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


def test_version(capsys):
    code, out, _ = _exit(["--version"], capsys)
    assert code == 0
    assert out.strip() == f"mcsim {__version__} (jax {version('jax')})"
    assert re.fullmatch(r"mcsim \d+\.\d+\.\d+\S* \(jax \d+\.\d+\.\d+\S*\)", out.strip())


def _description(help_text: str) -> str:
    """The paragraph after the usage lines."""
    paragraphs = help_text.split("\n\n")
    return " ".join(paragraphs[1].split())


def test_program_help_has_a_description(capsys):
    code, out, _ = _exit(["--help"], capsys)
    assert code == 0
    text = _description(out)
    assert text.startswith("mcsim simulates") and text.endswith(".")
    assert "Command line:" not in out  # not the module docstring's fragment
    for name in SUBCOMMANDS:
        assert re.search(rf"^\s+{name}\b", out, re.M), name
    assert '"±" is 1.96 standard errors' in " ".join(out.split())


@pytest.mark.parametrize("command", list(SUBCOMMANDS))
def test_every_subcommand_help_has_a_description(command, capsys):
    code, out, _ = _exit([command, "--help"], capsys)
    assert code == 0
    text = _description(out)
    # a sentence of what it does: a capitalised verb phrase ending in a full stop
    assert text.replace(" ", "") == SUBCOMMANDS[command][1].replace(" ", "")  # (wrapped)
    assert text[0].isupper() and text.endswith(".") and len(text.split()) >= 8
    assert not text.startswith("``")


def test_validate_applies_set(capsys):
    assert main(["validate", BASE, "--set", "simulation.paths=1234"]) == 0
    out = capsys.readouterr().out
    assert "1,234 paths" in out and "with 1 override" in out
    # an invalid value through --set is reported naming its key, exit 2
    assert main(["validate", BASE, "--set", "deal.revenue_share=-3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mcsim: error:") and "deal.revenue_share" in err
    assert main(["validate", BASE, "--set", "nonsense"]) == 2
    assert "--set" in capsys.readouterr().err


def test_paths_in_scientific_notation(capsys):
    assert _positive_int("1e4") == 10_000
    assert _positive_int("1.5e3") == 1_500  # a whole number, however written
    args = build_parser().parse_args(["run", BASE, "--out", "x", "--paths", "1e4"])
    assert args.paths == 10_000
    args = build_parser().parse_args(["compare", "--paired", BASE, BASE, "--paths", "2.5e5"])
    assert args.paths == 250_000
    for bad in ("1.5", "1.5e-1", "12345.5"):
        code, _, err = _exit(["run", BASE, "--out", "x", "--paths", bad], capsys)
        assert code == 2
        assert f"argument --paths: '{bad}': expected a positive integer" in err
        assert "is not a whole number" in err
    code, _, err = _exit(["run", BASE, "--out", "x", "--paths", "0"], capsys)
    assert code == 2 and "expected a positive integer" in err


def test_plus_minus_is_labelled_in_cli_output():
    """Every "±" the CLI prints says what it is (the report's own text, mcsim/report/
    text.py, is checked where it is printed)."""
    import inspect

    import mcsim.cli as cli

    source = inspect.getsource(cli)
    assert "+-" not in source.replace('"+-"', "")
    for line in source.splitlines():
        if "±" in line and "f\"" in line:
            assert "1.96 × SE" in line or "1.96 standard errors" in line, line
