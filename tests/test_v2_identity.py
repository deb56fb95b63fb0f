"""Version 2 configs give bit-identical results under version 3 of the model.

``tests/data/v2/`` holds ``configs/base.toml`` and ``configs/observed.toml`` as they were
before version 3 (base.toml uses every version-2 mechanism: the deal's timeline, the reverse
share, the three "tied to revenue or cost" forms, the Azure commitment and Microsoft's Azure
margin) and, for each case below, the summary.json (without its provenance) that the code of
commit f930d38, the last before version 3, wrote: 4,096 paths, seed 11, ``mcsim.simulate``
then ``mcsim.report.summarize``, in a process set up as ``conftest.py`` sets up the tests'
(64-bit mode and strict dtype promotion on before the first run: the old code's conditioned
parameter table, unlike every other number, differs in its last bits when 64-bit mode is
switched on only by the run itself).

Version 3 adds outputs only where a config uses its keys ([funding], discount_rate,
Microsoft's stake), so a version-2 config's summary must contain the old one exactly: the
check is :func:`same_summaries.contained`, as for version 1 (quantile values to 2 ulps of
the host's pow; everything else bit for bit). The schema name is the one value that moved.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from helpers import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "tools"))
from same_summaries import contained  # noqa: E402  (the check tools/ runs on directories)

import mcsim
from mcsim.layout import V3_MECHANISMS
from mcsim.report import summarize
from mcsim.report.summary import SCHEMA

DATA = Path(__file__).resolve().parent / "data" / "v2"
CASES = {"base": (DATA / "base.toml", {}),
         "observed": (DATA / "observed.toml", {"conditioning.method": "importance"})}


def _without_new_facts(summary: dict) -> None:
    """The facts-vs-model table less the facts calibration.md section 9 added after the
    golden was written (the 2026 figures): the table compares a run with public figures,
    and those are new figures, not new numbers of the model."""
    facts = summary.get("facts")
    if facts:
        facts["rows"] = [r for r in facts["rows"] if not r["source"].startswith("§9")]


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_version_2_config_gives_its_version_2_summary(name):
    path, overrides = CASES[name]
    results = mcsim.simulate(path, paths=4096, seed=11, overrides=overrides)
    assert not results.layout.v3  # no version-3 key: no version-3 rows
    now = json.loads(json.dumps(summarize(results), allow_nan=False))
    golden = json.loads((DATA / f"{name}.summary.json").read_text(encoding="utf-8"))
    assert golden.pop("schema") == "mcsim.summary/2" and now.pop("schema") == SCHEMA
    now.pop("provenance")  # the golden was saved without it (dates, hosts)
    _without_new_facts(now)
    assert contained(golden, now, value_ulps=2) is None, contained(golden, now, value_ulps=2)
    # and nothing of version 3 was added: the same tables, totals, stocks and events, and
    # the headline (issue 23, an added block) of version-2 quantities only
    assert set(now) == set(golden) | {"headline"}
    items = [i["key"] for i in now["headline"]["items"]]
    assert "funding_gap" not in items
    rows = [r["key"] for i in now["headline"]["items"] for r in i["rows"]]
    assert "present_value" not in rows and "Microsoft's whole position" not in str(now[
        "headline"])
    for block in ("horizon", "stocks", "method"):
        assert set(now[block]) == set(golden[block]), block
    assert set(V3_MECHANISMS) == {"funding", "discount", "equity"}
