"""The fair NumPy baseline (``benchmarks/numpy_baseline.py``) against the NumPy reference
(:func:`mcsim.reference.simulate_reference`), path by path, fed the SAME theta and the SAME
normals: cumulative Azure spend at every month, every annual flow, the year-end stocks,
every first-passage month (exactly) and every horizon total.

Both are float64 and differ only in the order of their arithmetic (the baseline carries
levels in log, the reference multiplies them), so money agrees to 1e-9 relative, with an
absolute floor of 1e-9 of the path's money scale over the run (profit and the nets are
small differences of large terms); stocks to 1e-9 relative.

Configs: every ``configs/*.toml`` of the repository, every ``/work/shared/check/*.toml``
(found by glob: a config that cannot be loaded or run fails, nothing is skipped), two
configs written here so that every version-2 mechanism is crossed at different months on
different paths (the lines the repository's configs may not cross within their horizons),
and two version-3 configs (MODEL.md "Version 3 additions"): every version-2 mechanism with
all three of version 3's (funding rounds in the first, a middle and the last month, a
discount rate, Microsoft's equity), and a run shorter than 12 months with present values
and equity but no funding. Version 3's rows are compared as the run's layout has them
(:class:`mcsim.layout.StatLayout`): the cash at each year end, the funding-gap month
(exactly), every version-3 horizon total.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import CONFIGS_DIR, MINIMAL_PARAMETERS, minimal_config_text

from mcsim import load_config, parse_config_text, reference
from mcsim.draws import ParameterSampler
from mcsim.layout import (
    ALL_HORIZON_TOTALS,
    ALL_STOCKS,
    ANNUAL_FLOWS,
    STOCKS,
    StatLayout,
)

ROOT = Path(__file__).resolve().parent.parent
CHECK_DIR = Path("/work/shared/check")


def _load_baseline():
    """benchmarks/numpy_baseline.py as a module (benchmarks/ is not a package)."""
    path = ROOT / "benchmarks" / "numpy_baseline.py"
    spec = importlib.util.spec_from_file_location("numpy_baseline", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["numpy_baseline"] = module
    spec.loader.exec_module(module)
    return module


baseline = _load_baseline()

EVENT_MONTHS = ("repayment_month", "credit_exhaustion_month", "cap_reached_month",
                "commitment_met_month")
RTOL = 1e-9

#: a stochastic world with every version-2 form: API markup, training and other-opex
#: intensities (with decaying drifts), Microsoft's AI revenue for the reverse share, the
#: Azure margin; per-path half-lives and volatilities, correlated shocks
V2_WORLD = {
    **MINIMAL_PARAMETERS,
    "api_revenue_per_mtok_0": None, "api_price_drift": None,
    "training_spend_0": None, "training_growth": None,
    "other_opex_0": None, "other_opex_growth": None,
    "api_markup_0": '{ dist = "lognormal", p5 = 2.0, p95 = 4.5 }',
    "api_markup_drift": "0.05",
    "training_intensity_0": '{ dist = "uniform", low = 0.05, high = 0.2 }',
    "training_intensity_drift": "0.3", "training_intensity_drift_inf": "-0.1",
    "training_intensity_drift_halflife": '{ dist = "uniform", low = 0.5, high = 2.0 }',
    "other_opex_intensity_0": "0.1", "other_opex_intensity_drift": "-0.05",
    "microsoft_ai_revenue_0": '{ dist = "lognormal", p5 = 2e7, p95 = 8e7 }',
    "microsoft_ai_revenue_growth": "0.5",
    "azure_gross_margin": '{ dist = "uniform", low = 0.1, high = 0.4 }',
    "token_growth_0": '{ dist = "normal", p5 = 0.4, p95 = 1.6 }',
    "gpu_price_vol": '{ dist = "uniform", low = 0.1, high = 0.3 }',
    "gpu_price_drift_inf": "-0.3",
    "gpu_price_drift_halflife": '{ dist = "uniform", low = 1.0, high = 3.0 }',
}
SHOCK_CORRELATION = ("[[1.0, 0.0, 0.3, 0.0, 0.0], [0.0, 1.0, 0.2, 0.0, 0.0], "
                     "[0.3, 0.2, 1.0, 0.4, 0.0], [0.0, 0.0, 0.4, 1.0, 0.0], "
                     "[0.0, 0.0, 0.0, 0.0, 1.0]]")
#: every deal mechanism: a timeline of changes, revenue share paid before the start, a cap
#: counting from a later month then lowered and counting from the start, a revenue-share
#: end, the reverse share switched off, profit shares split at the line and capped (the
#: cap lowered later), losses before the start, recouping from all three sums, credits, a
#: take-or-pay commitment due inside the run
EVERYTHING_DEAL = {"investment": "6e9", "revenue_share": "0.2", "revenue_share_cap": "2.5e9",
          "revenue_share_cap_from": '"2024-07"', "revenue_share_paid_before_start": "0.3e9",
          "reverse_share": "0.2", "losses_before_start": "0.5e9",
          "profit_share_until_recouped": "0.6", "profit_share_after": "0.3",
          "profit_cap": "3e9", "loss_carryforward": "true",
          "recoup_from": '["profit_share", "revenue_share", "azure_margin"]',
          "azure_credits": "10e9", "azure_commitment": "25e9",
          "azure_commitment_from": '"2024-06"', "azure_commitment_by": '"2029-06"'}
EVERYTHING_CHANGES = """
[[deal.change]]
from = "2025-06"
revenue_share_cap = 3e9
revenue_share_cap_from = "2025-06"
profit_cap = 2e9

[[deal.change]]
from = "2027-01"
reverse_share = 0.0
revenue_share = 0.15
revenue_share_cap = 4.5e9
revenue_share_cap_from = "2024-01"
profit_share_until_recouped = 0.4
profit_share_after = 0.2
revenue_share_end = "2029-06"

[[deal.change]]
from = "2029-01"
profit_cap = 0.5e9
"""
EVERYTHING = minimal_config_text(
    simulation={"start": '"2024-01"', "horizon": '"2030-12"', "paths": "1000"},
    parameters=V2_WORLD, shocks={"correlation": SHOCK_CORRELATION},
    deal=EVERYTHING_DEAL) + EVERYTHING_CHANGES
#: version 3 on top of EVERYTHING: cash from $1B to $15B with rounds in the start's month,
#: a middle month and the horizon's, a discount rate, Microsoft's equity (both uncertain)
EQUITY = {"microsoft_equity_stake": '{ dist = "uniform", low = 0.2, high = 0.35 }',
          "valuation_multiple": '{ dist = "lognormal", p5 = 5.0, p95 = 25.0 }'}
EVERYTHING_V3 = minimal_config_text(
    simulation={"start": '"2024-01"', "horizon": '"2030-12"', "paths": "1000",
                "discount_rate": "0.08"},
    parameters={**V2_WORLD, **EQUITY}, shocks={"correlation": SHOCK_CORRELATION},
    deal=EVERYTHING_DEAL,
    funding={"cash_0": '{ dist = "uniform", low = 1e9, high = 15e9 }',
             "rounds": '[["2024-01", 2e9], ["2026-06", 10e9], ["2030-12", 5e9]]'},
) + EVERYTHING_CHANGES
#: version 3's present values and equity without funding, over 8 months (the trailing
#: revenue of a run shorter than 12 months: all of it), starting mid-year
SHORT_V3 = minimal_config_text(
    simulation={"start": '"2024-05"', "horizon": '"2024-12"', "paths": "1000",
                "discount_rate": "0.3"},
    parameters={**MINIMAL_PARAMETERS, **EQUITY, "azure_gross_margin": "0.2"},
    deal={"investment": "2e9", "revenue_share": "0.2"})
#: version 1's forms without carrying losses forward, a revenue-share end, recouping from
#: revenue share alone, a commitment due after the horizon (met or not by it), a change
#: after the horizon
NO_CARRY = minimal_config_text(
    simulation={"start": '"2024-05"', "horizon": '"2031-02"', "paths": "1000"},
    parameters={**MINIMAL_PARAMETERS,
                "users_growth": '{ dist = "normal", p5 = 0.6, p95 = 1.4 }',
                "other_opex_0": '{ dist = "lognormal", p5 = 5e7, p95 = 4e8 }',
                "training_growth": '{ dist = "normal", p5 = 0.2, p95 = 0.9 }',
                "training_growth_inf": "0.1", "training_growth_halflife": "2.0"},
    deal={"investment": "2e9", "revenue_share": "0.2", "revenue_share_end": '"2029-12"',
          "loss_carryforward": "false", "profit_share_until_recouped": "0.75",
          "profit_share_after": "0.49", "recoup_from": '["revenue_share"]',
          "azure_credits": "15e9", "azure_commitment": "60e9",
          "azure_commitment_from": '"2025-01"', "azure_commitment_by": '"2032-12"'},
) + """
[[deal.change]]
from = "2026-03"
profit_share_until_recouped = 0.5

[[deal.change]]
from = "2035-01"
revenue_share = 0.0
"""

CONFIG_FILES = sorted(CONFIGS_DIR.glob("*.toml")) + sorted(CHECK_DIR.glob("*.toml"))
CASES = [pytest.param(("file", p), id=f"{p.parent.name}/{p.name}") for p in CONFIG_FILES] \
    + [pytest.param(("text", EVERYTHING), id="everything_v2"),
       pytest.param(("text", NO_CARRY), id="no_carryforward_v1"),
       pytest.param(("text", EVERYTHING_V3), id="everything_v3"),
       pytest.param(("text", SHORT_V3), id="short_v3_no_funding")]


def test_the_configs_are_there():
    """The globs found the repository's configs and the must-run checks (not an empty
    parametrization that would pass by testing nothing)."""
    names = {p.name for p in CONFIG_FILES}
    assert {"base.toml", "v1_base.toml", "counterfactual_2019_terms.toml"} <= names
    assert any(p.parent == CHECK_DIR for p in CONFIG_FILES)


def _config(case):
    kind, value = case
    return load_config(value) if kind == "file" else parse_config_text(value)


def _compare(cfg, n: int, seed: int = 0):
    """(reference outputs, baseline outputs) on the same theta and normals."""
    T = cfg.grid.num_months
    theta = ParameterSampler(cfg).draw(0, n)
    normals = np.random.default_rng(seed).standard_normal((T, n, 5))
    ref = reference.simulate_reference(theta, cfg.deal, cfg.grid, normals,
                                       cfg.shock_correlation, funding=cfg.funding,
                                       discount_rate=cfg.simulation.discount_rate)
    got = baseline.simulate(theta, cfg, normals)
    return ref, got, theta, normals


def _event_months(cfg) -> tuple[str, ...]:
    """The first-passage months of ``cfg``'s run (version 3's with [funding])."""
    return EVENT_MONTHS + (("funding_gap_month",) if cfg.funding is not None else ())


def _close(got, want, atol, name):
    err = np.abs(got - want)
    bound = RTOL * np.abs(want) + atol
    bad = ~(err <= bound)
    assert not bad.any(), (f"{name}: {bad.sum()} of {bad.size} differ; worst "
                           f"{(err / bound).max():.3g} x tolerance")


@pytest.mark.parametrize("case", CASES)
def test_baseline_is_the_reference_path_by_path(case):
    cfg = _config(case)
    n = 512
    ref, got, theta, _ = _compare(cfg, n)
    grid = cfg.grid
    layout = StatLayout.of(cfg)
    T, Y = grid.num_months, len(grid.years)
    # the path's money scale over the run (profit is a small difference of large terms),
    # with version 3's cash and rounds, and its equity's stake x multiple x revenue
    run_scale = (ref["revenue"] + ref["compute_spend"] + np.abs(ref["profit"])
                 + ref["revenue_share"] + 1.0).sum(axis=0)
    if cfg.funding is not None:
        run_scale = run_scale + theta["cash_0"] + sum(d for _, d in cfg.funding.rounds)
    if "microsoft_equity_stake" in theta:
        run_scale = run_scale * (1.0 + theta["microsoft_equity_stake"]
                                 * theta["valuation_multiple"])
    atol = 1e-9 * run_scale                                   # [n], broadcasts over rows
    # the baseline reports exactly the layout's stocks, totals and months
    assert {k for k in got if k in ALL_STOCKS} == set(layout.stocks)
    assert {k for k in got if k in ALL_HORIZON_TOTALS} == set(layout.horizon_totals)
    assert {k for k in got if k.endswith("_month") and k not in ALL_STOCKS} \
        == set(_event_months(cfg))
    assert got["cumulative_azure_spend"].shape == (T, n)
    _close(got["cumulative_azure_spend"], ref["cumulative_azure_spend"], atol,
           "cumulative_azure_spend")
    annual = reference.annual_sums(ref, grid)
    for name in ANNUAL_FLOWS:
        assert got[name].shape == (Y, n), name
        _close(got[name], annual[name], atol, name)
    year_end = reference.year_end_stocks(ref, grid)
    for name in layout.stocks:
        assert got[name].shape == (Y, n), name
        # levels relative; the cash (a signed running sum) to the money scale
        _close(got[name], year_end[name], atol if name not in STOCKS else 0.0, name)
    for name in _event_months(cfg):
        np.testing.assert_array_equal(got[name], ref[name], err_msg=name)
    for name in layout.horizon_totals:
        _close(got[name], ref[name], atol, name)


@pytest.mark.parametrize("case", [c for c in CASES if c.values[0][0] == "text"])
def test_the_written_configs_cross_every_line(case):
    """The configs written here do what they are for: each line is crossed at different
    months on different paths (and not crossed on others), the shortfall is paid on some
    paths, the cap lowered below what was paid."""
    cfg = _config(case)
    ref, _, _, _ = _compare(cfg, 512, seed=1)
    T = cfg.grid.num_months
    events = ["repayment_month", "credit_exhaustion_month"]
    if case[1] in (EVERYTHING, EVERYTHING_V3):
        events += ["cap_reached_month", "commitment_met_month"]
        assert np.any(ref["azure_commitment_shortfall"] > 0)
        assert np.any(ref["profit_share"] > 0)
        assert np.any(ref["reverse_revenue_share"] > 0)
    if case[1] is EVERYTHING_V3:
        # the cash runs out at different months on different paths, never on others
        events.append("funding_gap_month")
        assert np.any(ref["funding_gap_month"] == T)
        assert np.any(ref["funding_to_find"] > 0) and np.any(ref["funding_to_find"] == 0)
    if case[1] is SHORT_V3:
        assert T < 12
        np.testing.assert_allclose(ref["trailing_revenue"], ref["cumulative_revenue"],
                                   rtol=1e-12)
        return
    for name in events:
        months = ref[name]
        assert len(np.unique(months[months < T])) > 3, name


@pytest.mark.parametrize("text", [EVERYTHING, EVERYTHING_V3], ids=["v2", "v3"])
def test_callable_shocks_are_the_array_shocks(text):
    """``shocks(t)`` for the step t -> t+1 is row t+1 of the reference-style array."""
    cfg = parse_config_text(text)
    ref, got, theta, normals = _compare(cfg, 256, seed=2)
    again = baseline.simulate(theta, cfg, lambda t: normals[t + 1].copy())
    for name, value in got.items():
        np.testing.assert_array_equal(again[name], value, err_msg=name)


def _small_config():
    return load_config(CONFIGS_DIR / "base.toml").with_simulation(horizon="2027-06")


@pytest.mark.parametrize("text", [EVERYTHING, EVERYTHING_V3], ids=["v2", "v3"])
def test_summarize_is_the_direct_statistics(text):
    cfg = parse_config_text(text)
    n = 2000
    _, out, _, _ = _compare(cfg, n, seed=3)
    s = baseline.summarize(out, cfg.grid)
    q = baseline.QUANTILES
    T = cfg.grid.num_months
    layout = StatLayout.of(cfg)
    assert tuple(s["stocks"]) == layout.stocks
    assert tuple(s["horizon"]) == layout.horizon_totals
    assert tuple(s["months"]) == _event_months(cfg)
    groups = [(s["cumulative_azure_spend"], out["cumulative_azure_spend"])]
    groups += [(s["annual"][k], out[k]) for k in ANNUAL_FLOWS]
    groups += [(s["stocks"][k], out[k]) for k in layout.stocks]
    groups += [(s["horizon"][k], out[k]) for k in layout.horizon_totals]
    for stats, x in groups:
        np.testing.assert_allclose(stats["mean"], x.mean(axis=-1), rtol=1e-12)
        np.testing.assert_allclose(stats["se"], x.std(axis=-1, ddof=1) / np.sqrt(n),
                                   rtol=1e-12)
        np.testing.assert_allclose(stats["quantiles"], np.quantile(x, q, axis=-1),
                                   rtol=1e-12)
    for name in _event_months(cfg):
        months = out[name]
        m = s["months"][name]
        cdf = (months[:, None] <= np.arange(T)).mean(axis=0)
        np.testing.assert_allclose(m["cdf"], cdf, rtol=0, atol=1e-15)
        assert m["censored_fraction"] == pytest.approx(np.mean(months == T))
        ordered = np.sort(months)
        for level, got in zip(q, m["quantiles"], strict=True):
            want = int(ordered[int(np.ceil(level * n)) - 1])   # inverse empirical CDF
            assert got == (want if want < T else None), (name, level)


def _assert_same(a, b, where="summary"):
    """Two summaries are identical, every number bit for bit."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, b, err_msg=where)
    else:
        assert a == b, where


def test_run_is_deterministic_for_a_seed():
    cfg = _small_config()
    a = baseline.run(cfg, paths=300, seed=5)
    _assert_same(a, baseline.run(cfg, paths=300, seed=5))
    _assert_same(a, baseline.run(cfg, paths=300, seed=5, chunk=1000))  # one chunk
    c = baseline.run(cfg, paths=300, seed=6)
    assert not np.array_equal(a["cumulative_azure_spend"]["quantiles"],
                              c["cumulative_azure_spend"]["quantiles"])
    chunked = baseline.run(cfg, paths=300, seed=5, chunk=128)
    _assert_same(chunked, baseline.run(cfg, paths=300, seed=5, chunk=128))
    assert chunked["paths"] == 300


def test_chunked_run_is_over_all_paths():
    """Chunks of 128: the engine's parameters of paths 0..127, 128..255, 256..299 (the
    parameters of a path depend on the seed and its index only), the generator's normals
    in turn, and the statistics of all 300 paths together."""
    cfg = _small_config().with_simulation(seed=5)
    rng = np.random.default_rng(5)
    sampler = ParameterSampler(cfg)
    parts = []
    for start, m in ((0, 128), (128, 128), (256, 44)):
        parts.append(baseline.simulate(sampler.draw(start, m), cfg,
                                       lambda t, m=m: rng.standard_normal((m, 5))))
    out = {k: np.concatenate([p[k] for p in parts], axis=-1) for k in parts[0]}
    _assert_same(baseline.run(cfg, paths=300, seed=5, chunk=128),
                 baseline.summarize(out, cfg.grid))


def test_baseline_does_not_use_the_engine():
    """The baseline itself names neither mcsim.model, mcsim.engine nor jax."""
    text = (ROOT / "benchmarks" / "numpy_baseline.py").read_text(encoding="utf-8")
    code = [line for line in text.splitlines() if line.startswith(("import ", "from "))]
    assert code and not any(m in line for line in code
                            for m in ("mcsim.model", "mcsim.engine", "jax"))


def test_command_line_reports_version_3(tmp_path, capsys):
    """The baseline's command line on a version-3 config: the funding-gap month is among
    the months it prints and writes, with the others."""
    config = tmp_path / "v3.toml"
    config.write_text(EVERYTHING_V3, encoding="utf-8")
    figures = tmp_path / "figures.json"
    assert baseline.main(["--config", str(config), "--paths", "300", "--seed", "4",
                          "--json", str(figures)]) == 0
    assert "funding gap month: median" in capsys.readouterr().out
    got = json.loads(figures.read_text(encoding="utf-8"))
    assert 0.0 < got["p_no_funding_gap_month"] < 1.0
    for name in EVENT_MONTHS:
        assert f"p_no_{name}" in got, name
