"""Importable test helpers (pytest fixtures live in conftest.py).

``minimal_config_text`` builds a small valid config as TOML text, so that a test can change
one key and see what the parser does with it.
"""

from __future__ import annotations

import contextlib
import fcntl
import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIGS_DIR = REPO_ROOT / "configs"
DATA_DIR = REPO_ROOT / "tests" / "data"

#: Tolerance of every statistical test, in Monte Carlo standard errors: a two-sided false
#: alarm of about 6e-5 per assertion under the normal approximation.
N_SE = 4.0

#: Every one of the 33 required parameters as a valid fixed number (TOML literals).
MINIMAL_PARAMETERS: dict[str, str] = {
    "gpu_price_0": "2.0",
    "gpu_price_drift": "-0.2",
    "gpu_price_vol": "0.2",
    "utilization_0": "0.6",
    "utilization_mean": "0.65",
    "utilization_speed": "1.0",
    "utilization_vol": "0.3",
    "tokens_0": "3e13",
    "token_growth_0": "1.0",
    "token_growth_inf": "0.25",
    "token_growth_halflife": "3.0",
    "token_vol": "0.2",
    "tokens_per_gpu_hour_0": "4e5",
    "efficiency_growth": "0.2",
    "users_0": "1.2e8",
    "users_cap": "3e9",
    "users_growth": "1.0",
    "users_vol": "0.15",
    "conversion_0": "0.05",
    "conversion_mean": "0.07",
    "conversion_speed": "0.3",
    "conversion_vol": "0.15",
    "subscription_arpu": "18.0",
    "api_revenue_per_mtok_0": "5.0",
    "api_price_drift": "-0.15",
    "api_token_share": "0.4",
    "training_spend_0": "2e8",
    "training_growth": "0.8",
    "azure_share_0": "0.9",
    "azure_share_inf": "0.3",
    "azure_share_halflife": "2.5",
    "other_opex_0": "2.5e8",
    "other_opex_growth": "0.6",
}

MINIMAL_SECTIONS: dict[str, dict[str, str]] = {
    "simulation": {"start": '"2024-01"', "horizon": '"2026-12"', "paths": "1000",
                   "seed": "1"},
    "parameters": MINIMAL_PARAMETERS,
    "deal": {"investment": "13e9"},
}

#: Order in which tables are written; tables not named here follow, in the order given.
SECTION_ORDER = ("simulation", "parameters", "parameter_correlation", "shocks", "deal")


def _literal(value) -> str:
    """A TOML literal: strings are inserted verbatim, Python scalars are converted."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    raise TypeError(f"give TOML literal text, not {type(value).__name__}: {value!r}")


def minimal_config_text(top: dict | None = None, **sections) -> str:
    """TOML text of a small valid config, with entries replaced, added or removed.

    Each keyword names a table (``simulation``, ``parameters``, ``parameter_correlation``,
    ``shocks``, ``deal`` or any other name, which adds a new table) and maps keys to TOML
    literal text inserted verbatim (``'"2024-01"'``, ``'{ dist = "normal", mean = 0, sd = 1 }'``,
    ``"0.2"``); a value of ``None`` removes the key. A table given as ``None`` is left out.
    ``top`` holds bare top-level keys written before any table (e.g. ``{"extends": '"a.toml"'}``).

    Defaults: start 2024-01, horizon 2026-12, 1000 paths, seed 1, every one of the 33 required
    parameters a fixed number, and ``[deal] investment = 13e9``.

    Example:
        >>> text = minimal_config_text(deal={"revenue_share": "0.2"})
    """
    tables: dict[str, dict[str, str] | None] = {k: dict(v) for k, v in MINIMAL_SECTIONS.items()}
    for name, entries in sections.items():
        if entries is None:
            tables[name] = None
            continue
        table = tables.get(name) or {}
        for key, value in entries.items():
            if value is None:
                table.pop(key, None)
            else:
                table[key] = _literal(value)
        tables[name] = table
    names = [n for n in SECTION_ORDER if n in tables] + \
        [n for n in tables if n not in SECTION_ORDER]
    lines = [f"{k} = {_literal(v)}" for k, v in (top or {}).items()]
    for name in names:
        table = tables[name]
        if table is None:
            continue
        lines.append(f"\n[{name}]")
        lines.extend(f"{k} = {v}" for k, v in table.items())
    return "\n".join(lines) + "\n"


def short_config_file(directory: Path, horizon: str, base: str = "amendment_2026.toml",
                      **simulation: int) -> Path:
    """``directory/short.toml``: a repository config cut at ``horizon`` (quick to compile),
    with other ``[simulation]`` integers (``paths=5000``) if given."""
    from mcsim import load_config

    lines = [f'horizon = "{horizon}"'] + [f"{k} = {v}" for k, v in simulation.items()]
    text = f'extends = "{CONFIGS_DIR / base}"\n[simulation]\n' + "\n".join(lines) + "\n"
    funding = load_config(CONFIGS_DIR / base).funding
    if funding is not None:  # a round after the new horizon would be an error: keep those in
        kept = [f'["{m}", {d!r}]' for m, d in funding.rounds if m <= horizon]
        text += f"[funding]\nrounds = [{', '.join(kept)}]\n"
    path = Path(directory) / "short.toml"
    path.write_text(text)
    return path


def short_config(horizon: str, base: str = "amendment_2026.toml", **simulation):
    """A repository config cut at ``horizon`` (quick to compile), with other
    ``[simulation]`` values (``paths=5000``, ``seed=7``) if given: a loaded Config."""
    from mcsim import load_config

    return load_config(CONFIGS_DIR / base).with_simulation(horizon=horizon, **simulation)


#: The monthly flows the kernel and the NumPy reference both report, path by path.
KERNEL_FLOWS = ("azure_spend", "azure_inference_spend", "revenue", "revenue_share",
                "inference_spend", "compute_spend", "profit", "profit_share")


def kernel_flows(cfg, theta: dict, normals, dtype):
    """The JAX kernel (``mcsim.engine.flows_from_normals``) on given parameters and normals
    [T, N, 5]:
    (final state, {flow: [T, N] array}), for comparison with :mod:`mcsim.reference` on the
    same inputs. The drivers must stay in ``dtype`` through the scan (a NumPy float64 scalar
    once promoted them, and the scan then failed)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from mcsim import model
    from mcsim.engine import flows_from_normals, shock_cholesky
    from mcsim.engine.kernel import run_terms

    grid = cfg.grid
    chol = shock_cholesky(cfg)
    feats = model.features(cfg)
    th = {k: jnp.asarray(v, dtype) for k, v in theta.items()}
    deal = run_terms(cfg, grid)  # the deal and version 3's rounds and rate
    fn = jax.jit(lambda th, d, z: flows_from_normals(th, d, z, chol, grid, feats))
    final, flows = fn(th, deal, jnp.asarray(normals, dtype))
    for name in KERNEL_FLOWS[:3]:
        assert getattr(flows, name).dtype == dtype, name
    return jax.device_get(final), {k: np.asarray(getattr(flows, k)) for k in KERNEL_FLOWS}


def money_scale(ref: dict):
    """Per-path, per-month money scale of reference flows: profit is a small difference of
    large terms, so its error is measured against the terms, not against itself."""
    import numpy as np

    return ref["revenue"] + ref["compute_spend"] + np.abs(ref["profit"]) + 1.0


def flow_errors(flows: dict, ref: dict) -> dict:
    """Each flow's largest error against the reference, relative to :func:`money_scale`."""
    import numpy as np

    scale = money_scale(ref)
    return {name: float((np.abs(flows[name] - ref[name]) / scale).max())
            for name in KERNEL_FLOWS}


def assert_float64_kernel_is_the_reference(final, flows: dict, ref: dict) -> None:
    """The float64 kernel equals the float64 reference on the same inputs: every flow to
    1e-11 of the money scale (rounding only), the same first-passage months, the same
    running totals."""
    import numpy as np

    for name, err in flow_errors(flows, ref).items():
        assert err < 1e-11, (name, err)
    np.testing.assert_array_equal(final.repayment_month, ref["repayment_month"])
    np.testing.assert_array_equal(final.credit_month, ref["credit_exhaustion_month"])
    np.testing.assert_allclose(-final.min_openai_cash, ref["deepest_cumulative_loss"],
                               rtol=1e-11, atol=1.0)
    np.testing.assert_allclose(final.cum_revenue, ref["cumulative_revenue"], rtol=1e-12)
    np.testing.assert_allclose(final.cum_profit, ref["cumulative_profit"], rtol=1e-11,
                               atol=1e-9 * np.abs(ref["cumulative_revenue"]).max())


@dataclass(frozen=True)
class SharedRun:
    """A config simulated as ``mcsim run`` does it, shared by the test modules of a session
    (:func:`shared_run`): the results, the directory of its report and the messages of the
    user warnings the run raised (a small effective sample size's)."""

    results: Any
    report: Path
    warnings: tuple[str, ...]


#: The shared runs this process has made or read back, by name.
_SHARED: dict[str, SharedRun] = {}


def _shared(directory: Path, name: str, config, wait: bool) -> SharedRun | None:
    """Run ``name`` read back from ``directory`` when saved there, else made and saved, under
    its lock; None, without waiting, when another process holds the lock (is making it)."""
    import mcsim
    from mcsim.report import write_report

    if name in _SHARED:
        return _SHARED[name]
    saved = directory / f"{name}.pickle"
    with open(directory / f"{name}.lock", "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None
        try:
            if saved.exists():
                run = pickle.loads(saved.read_bytes())
            else:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always", UserWarning)
                    results = mcsim.simulate(config, progress=False)
                run = SharedRun(results, write_report(results, directory / name),
                                tuple(str(w.message) for w in caught
                                      if issubclass(w.category, UserWarning)))
                partial = saved.with_suffix(".partial")
                partial.write_bytes(pickle.dumps(run, protocol=pickle.HIGHEST_PROTOCOL))
                partial.replace(saved)  # whole or absent, for a process that reads it
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    _SHARED[name] = run
    return run


def shared_run(directory: Path, name: str, config, others=()) -> SharedRun:
    """``config`` simulated as ``mcsim run`` does it (:func:`mcsim.simulate`: the prior, the
    conditioned pass and the tables) with its report written to ``directory/name``, once
    per test session: the first process to ask makes it and saves it there (a pickle of
    ~100 MB); another (the other xdist worker) waits for it and reads it back in ~1 s,
    where making it again would take ~15 s of cached compiles and runs (~35 s cold).

    ``others``: (name, a function giving its config) of the session's other shared runs.
    While another process makes this one, this process makes those that no process has
    begun (in the time it would spend waiting), and keeps them for when it is asked."""
    directory.mkdir(parents=True, exist_ok=True)
    run = _shared(directory, name, config, wait=False)
    if run is not None:
        return run
    for other, other_config in others:
        if other != name and not (directory / f"{other}.pickle").exists():
            # a failure here is not this fixture's: the test that asks for it will see it
            with contextlib.suppress(Exception):
                _shared(directory, other, other_config(), wait=False)
    return _shared(directory, name, config, wait=True)
