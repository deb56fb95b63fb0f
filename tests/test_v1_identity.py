"""Version 1 configs give bit-identical results under version 2 of the model.

``tests/data/v1/`` holds the shipped configs as they were before version 2 (``base.toml``,
now ``configs/v1_base.toml``, ``amendment_2026.toml`` and
``observed.toml``) and, for each case below, the summary.json (without its provenance) that
the version-1 code wrote (commit 589e055; issue 12 kept every summary byte-identical up
to 868e4aa, the last commit before version 2), 4,096 paths, seed 11,
``mcsim.simulate`` then ``mcsim.report.summarize``. The cases cover a prior run, antithetic
pairs, a revenue-share cap, the conditioned pass, and every version-1 feature together
(``../shared/check/all_features_v1.toml``).

Version 2 only adds outputs (more annual flows, year-end stocks, more months and totals,
the parameter table), so the check is containment: every value of the version-1 summary
must be in today's, identical, at the same place (``tools/same_summaries.py --subset`` is
the same check for whole directories).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
from helpers import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "tools"))
from same_summaries import contained  # noqa: E402  (the check tools/ runs on directories)

import mcsim
from mcsim.report import summarize

DATA = Path(__file__).resolve().parent / "data" / "v1"
CASES = {"base": (DATA / "base.toml", {}),
         "base_antithetic": (DATA / "base.toml", {"simulation.variance_reduction": "antithetic"}),
         "amendment_2026": (DATA / "amendment_2026.toml", {}),
         "observed": (DATA / "observed.toml", {"conditioning.method": "importance"}),
         "all_features_v1": (REPO_ROOT.parent / "shared" / "check" / "all_features_v1.toml", {})}


def test_containment_finds_a_changed_value():
    assert contained({"a": {"b": [1, 2]}}, {"a": {"b": [1, 2], "c": 3}}) is None
    assert contained({"a": {"b": [1, 2]}}, {"a": {"b": [1, 3]}}) == "/a/b"
    assert contained({"a": 1}, {"b": 1}) == "/a (missing)"
    # a quantile value may move by an ulp or two of the host's pow, nothing else may
    x = 6566893907.036907
    assert contained({"q": {"value": [x]}}, {"q": {"value": [x - math.ulp(x)]}},
                     value_ulps=2) is None
    assert contained({"q": {"value": [x]}}, {"q": {"value": [x - 4 * math.ulp(x)]}},
                     value_ulps=2) == "/q/value/0"
    assert contained({"q": {"mean": [x]}}, {"q": {"mean": [x - math.ulp(x)]}},
                     value_ulps=2) == "/q/mean"


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_version_1_config_gives_its_version_1_summary(name):
    path, overrides = CASES[name]
    if not path.exists():
        pytest.fail(f"{path} is missing: the v1 configs must be there")
    results = mcsim.simulate(path, paths=4096, seed=11, overrides=overrides)
    now = json.loads(json.dumps(summarize(results), allow_nan=False))
    golden = json.loads((DATA / f"{name}.summary.json").read_text(encoding="utf-8"))
    assert now["schema"] == "mcsim.summary/3"
    # the facts-vs-model table less the 2026 figures calibration.md section 9 added later
    # (new public figures, not new numbers of the model)
    if "facts" in now:
        now["facts"]["rows"] = [r for r in now["facts"]["rows"]
                                if not r["source"].startswith("§9")]
    # quantile values to 2 ulps (host libm's pow, see contained); all else bit for bit
    assert contained(golden, now, value_ulps=2) is None, contained(golden, now, value_ulps=2)
