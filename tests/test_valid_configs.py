"""Any valid config runs: hypothesis generates configs over MODEL.md's whole vocabulary,
version 1 and (in half of them) version 2's additions (``valid_configs.py`` says what it
covers) and each goes through the CLI in-process:
``validate``, then ``run --paths 2048 --no-plots`` in float32 (the default) and float64
(in the CI share, float64 for one example in four: see Shares below).

Each must exit 0, print nothing unexplained on stderr and raise no Python warning (see
``valid_configs.ALLOWED_STDERR``: empty, mcsim prints nothing there for such a run), and write
a strict-JSON summary.json whose invariants hold (``valid_configs.check_summary``): quantiles in
order and inside their intervals, P(repaid by m) non-decreasing in [0, 1] and consistent with
P(not by the horizon) and with the month quantiles, cumulative Azure spend non-decreasing,
annual means summing to the horizon totals, no NaN, no null except a month beyond the horizon
(with its label), no path with a NaN or inf; and version 2's: net revenue share = revenue
share - reverse share and paid to Microsoft = Azure spend + net (annual means, float64
rounding), compute = inference + training and profit = V - X - O - M + reverse - F (to the
kernel dtype's rounding), the Azure margin and economic return, the commitment's shortfall
only in its last month's year and never above it, the cap and commitment months (censored
without a cap / commitment, inside the commitment's window), year-end stocks finite, >= 0,
positive means, Azure's share in [0, 1].

Version 3 (MODEL.md E-H): a config using any of [funding], ``discount_rate`` and Microsoft's
equity (each drawn on its own, ``valid_configs.configs(v3=...)``) is validated and run by the
command line in float32, the default dtype (version 3's outputs are float64 sums of the
kernel's float32 flows: the double run of version 1 and 2 configs would add nothing but
time), its summary checked as above (its funding-gap month, cash and version-3 totals
included) and against the same paths through the kernel, path by path
(``valid_configs.run_and_check_v3``): every row finite, funding_to_find >= 0 and 0 exactly
when the funding-gap month is censored, cash and the deepest cumulative loss, present values
of non-negative flows between the horizon's factor times their totals and the totals,
whole position = economic return + equity value >= 0, the summary's means the per-path ones.

Shares:

* ``test_valid_configs_ci``: a fixed (derandomized) set of version 1 and 2 examples, each run
  in float32 (the default dtype) and every ``MCSIM_VALID_CONFIGS_CI_F64_EVERY``-th (default
  4th) in float64 as well: each run compiles its own kernel, and float64's are the suite's
  largest single cost (the exhaustive share runs both dtypes on every example);
* ``test_valid_configs_v3_ci``: for each of the 7 non-empty sets of version 3's mechanisms,
  a fixed set of examples (``MCSIM_VALID_CONFIGS_V3_CI`` each, default 1: hypothesis's
  simplest, a 1-month run, with [funding] a round of $0 dated its one month; set it to 2
  or more for derandomized ones as well);
* ``test_valid_configs_exhaustive``: many more, random each time, half of them with version
  3's keys, marked ``exhaustive`` (deselect it in CI: ``-m "not exhaustive"``).

The kernel compiles once per config structure, so every example costs seconds.
"""

from __future__ import annotations

import itertools
import os

import pytest
from hypothesis import HealthCheck, Phase, given, note, settings
from valid_configs import (
    V3_MECHANISMS,
    RunFailure,
    configs,
    run_and_check,
    run_and_check_v3,
    to_toml,
    v3_mechanisms,
)

#: configs tried by each share in this session (printed at the end of the module)
TRIED = {"ci": 0, "v3_ci": 0, "exhaustive": 0}

CI_EXAMPLES = int(os.environ.get("MCSIM_VALID_CONFIGS_CI", "16"))
V3_CI_EXAMPLES = int(os.environ.get("MCSIM_VALID_CONFIGS_V3_CI", "1"))
CI_F64_EVERY = int(os.environ.get("MCSIM_VALID_CONFIGS_CI_F64_EVERY", "4"))
EXHAUSTIVE_EXAMPLES = int(os.environ.get("MCSIM_VALID_CONFIGS_EXHAUSTIVE", "300"))

COMMON = {
    "deadline": None,
    "database": None,
    "print_blob": True,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large,
                              HealthCheck.filter_too_much, HealthCheck.large_base_example],
}


@pytest.fixture(scope="module", autouse=True)
def _report_count(request):
    yield
    line = (f"test_valid_configs: {TRIED['ci']} configs tried by the CI share, "
            f"{TRIED['v3_ci']} by the version-3 CI share, {TRIED['exhaustive']} by the "
            "exhaustive share")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    tr = request.config.pluginmanager.get_plugin("terminalreporter")
    if capture is not None and tr is not None:
        with capture.global_and_fixture_disabled():  # teardown output is captured otherwise
            tr.write_line("")
            tr.write_line(line)
    else:  # pragma: no cover
        print(line)


def _check(cfg: dict, tmp_path_factory, share: str, dtypes=("float32", "float64")) -> None:
    TRIED[share] += 1
    text = to_toml(cfg)
    note(f"config:\n{text}")
    workdir = tmp_path_factory.mktemp("valid_config")
    try:
        if v3_mechanisms(cfg):
            run_and_check_v3(text, workdir)
        else:
            run_and_check(text, workdir, dtypes=dtypes)
    except RunFailure as exc:
        raise AssertionError(f"{exc}\n--- config ---\n{text}") from None


# Shrinking re-runs the CLI on ever smaller configs (seconds each): off in the CI share; the
# failure message carries the whole config text instead.
@settings(max_examples=CI_EXAMPLES, derandomize=True,
          phases=[Phase.explicit, Phase.generate], **COMMON)
@given(cfg=configs())
def test_valid_configs_ci(cfg, tmp_path_factory):
    both = TRIED["ci"] % CI_F64_EVERY == 0  # the 1st, 5th, 9th, ... example
    _check(cfg, tmp_path_factory, "ci", ("float32", "float64") if both else ("float32",))


#: every non-empty set of version 3's mechanisms (MODEL.md H: each stands alone)
V3_SETS = [frozenset(c) for k in (1, 2, 3) for c in itertools.combinations(V3_MECHANISMS, k)]


@pytest.mark.parametrize("mechanisms", V3_SETS, ids=lambda m: "+".join(sorted(m)))
def test_valid_configs_v3_ci(mechanisms, tmp_path_factory):
    @settings(max_examples=V3_CI_EXAMPLES, derandomize=True,
              phases=[Phase.explicit, Phase.generate], **COMMON)
    @given(cfg=configs(v3=mechanisms))
    def check(cfg):
        assert v3_mechanisms(cfg) == mechanisms
        _check(cfg, tmp_path_factory, "v3_ci")

    check()


@pytest.mark.exhaustive
@settings(max_examples=EXHAUSTIVE_EXAMPLES, phases=[Phase.explicit, Phase.generate], **COMMON)
@given(cfg=configs(v3=None))
def test_valid_configs_exhaustive(cfg, tmp_path_factory):
    _check(cfg, tmp_path_factory, "exhaustive")
