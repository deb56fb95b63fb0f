"""Sweeps and overrides that silently did less than asked (issue 26, item 6): a key given
twice (the last one won, the other values were dropped), a value given twice, a [deal]
term that a ``[[deal.change]]`` sets again (every point the same run, without a word), and
no way to change a change's own terms: ``deal.change[i].KEY``, counting from 0 as the
config's own errors do."""

from __future__ import annotations

import warnings

import pytest
from helpers import CONFIGS_DIR, short_config

from mcsim import ConfigError, load_config, with_overrides
from mcsim.cli import main

BASE = str(CONFIGS_DIR / "base.toml")  # its [[deal.change]] [1], from 2026-04, sets the cap


def _lines(capsys) -> list[str]:
    return capsys.readouterr().err.strip().splitlines()


@pytest.mark.parametrize("sets, needle", [
    (["deal.revenue_share=0.1", "deal.revenue_share=0.2"],
     "each key once, but deal.revenue_share is also swept by 'deal.revenue_share=0.1'"),
    (["deal.revenue_share=0.1,0.2", " deal.revenue_share =0.3"], "also swept by"),
    (["deal.revenue_share=0.1,0.2,0.1"], "0.1 is given twice"),
    (["deal.investment=1e10,10e9"], "10000000000.0 is given twice"),
])
def test_a_sweep_refuses_a_key_or_value_given_twice(sets, needle, tmp_path, capsys):
    out = tmp_path / "sw"
    argv = ["sweep", BASE, "--paths", "1024", "--no-plots", "--out", str(out)]
    for s in sets:
        argv += ["--set", s]
    assert main(argv) == 2
    lines = _lines(capsys)
    assert len(lines) == 1 and lines[0].startswith("mcsim: error: --set = ")
    assert needle in lines[0]
    assert not out.exists()


def test_set_refuses_a_key_given_twice(capsys):
    assert main(["validate", BASE, "--set", "deal.revenue_share=0.1",
                 "--set", "deal.revenue_share=0.2"]) == 2
    (line,) = _lines(capsys)
    assert line == ("mcsim: error: --set = 'deal.revenue_share=0.2': expected each key set "
                    "once, but deal.revenue_share is also set by 'deal.revenue_share=0.1'")


@pytest.mark.parametrize("term, shown", [("revenue_share_cap", "3.8e+10"),
                                         ("reverse_share", "0"),
                                         ("revenue_share_end", "2030-12")])
def test_a_deal_term_a_change_sets_again_is_said_once(term, shown, capsys):
    value = '"2035-12"' if term == "revenue_share_end" else "0.1"
    assert main(["validate", BASE, "--set", f"deal.{term}={value}"]) == 0
    (line,) = _lines(capsys)
    assert line == (f"mcsim: warning: deal.{term} is the term from the start (2024-01) only "
                    f"until deal.change[1] (from 2026-04) sets it to {shown}: the value "
                    f"given does not apply from 2026-04 on; to change that term, set "
                    f"deal.change[1].{term}")
    # the change's own term: no warning, and the change holds the value
    assert main(["validate", BASE, "--set", f"deal.change[1].{term}={value}"]) == 0
    assert _lines(capsys) == []


def test_a_change_term_is_set_by_index():
    config = load_config(BASE)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning for the change's own term
        out = with_overrides(config, {"deal.change[1].revenue_share_cap": 10e9,
                                      "deal.change[0].profit_share_after": 0.3})
    assert out.deal.changes[1].get("revenue_share_cap") == 10e9
    assert out.deal.changes[0].get("profit_share_after") == 0.3
    assert out.deal.changes[1].get("revenue_share_end") == "2030-12"  # the rest kept
    assert config.deal.changes[1].get("revenue_share_cap") == 38e9  # a copy


@pytest.mark.parametrize("key, value, message", [
    ("deal.change[2].revenue_share_cap", 1e10,
     "deal.change[2].revenue_share_cap = 10000000000.0: expected an index of an existing "
     "item: deal.change has 2 items ([0] from 2025-10, [1] from 2026-04); indices count "
     "from 0"),
    ("deal.change[1].investment", 1e10, "only term fields in a change"),
    ("deal.change[1].revenue_share_capp", 1e10, "did you mean "
     "deal.change[1].revenue_share_cap?"),
    ("deal.change[x].revenue_share_cap", 1e10, "KEY[i] with i counting from 0"),
    ("deal.change.revenue_share_cap", 1e10, "deal.change is an array of tables: name an "
     "item, e.g. deal.change[0].revenue_share_cap"),
    ("deal.investment[0]", 1e10, "an index into an array of tables, but deal.investment "
     "is float"),
])
def test_a_bad_index_or_change_key_is_one_clear_error(key, value, message):
    with pytest.raises(ConfigError) as info:
        with_overrides(load_config(BASE), {key: value})
    text = str(info.value)
    assert "\n" not in text and text.startswith(key) and message in text


def test_a_sweep_over_a_change_term():
    """The cap of base.toml's 2026-04 change, swept: $10B (below the $13B investment, so
    the revenue share alone never repays it) against $80B, batched as a sweep runs them.
    Before the index syntax the only key to sweep was deal.revenue_share_cap, the term
    before 2026-04: the same run twice."""
    from mcsim import api
    from mcsim.overrides import grid_points, parse_sweep
    from mcsim.report.sweep import point_dir_names

    grid = parse_sweep(["deal.change[1].revenue_share_cap=10e9,80e9"])
    points = grid_points(grid)
    config = short_config("2027-12", base="base.toml", paths=1024)
    low, high = api.run_batch([with_overrides(config, p) for p in points], progress=False)
    assert 1 - low.repayment.censored < 0.05 and 1 - high.repayment.censored > 0.9
    assert point_dir_names(points) == ["deal.change%5B1%5D.revenue_share_cap=10000000000",
                                       "deal.change%5B1%5D.revenue_share_cap=80000000000"]
