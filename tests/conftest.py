"""Shared fixtures. Importable helpers are in ``helpers.py`` (``from helpers import ...``)."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import uuid
from pathlib import Path

import jax
import pytest

import mcsim
from mcsim import load_config

# Strict dtype promotion for the whole suite: a float64 NumPy scalar that would silently
# promote the float32 kernel (and break its scan carry) is an error here, not a slowdown.
jax.config.update("jax_numpy_dtype_promotion", "strict")
# The tests call the model and kernel below the API's entry points, which switch it on.
mcsim.enable_x64()
# One cache of compiled kernels for the whole test session (both xdist workers and every
# command-line subprocess they start): the suite compiles the same few kernel shapes in
# dozens of processes, and a loaded executable is the same executable, so the same numbers
# (mcsim.compile_cache; tests/test_cpu_devices_and_cache.py checks the bits). The user's own
# cache (~/.cache/mcsim) is never touched; tests of the cache set their own folder. The
# folder is per test run (its id set by the first process to import this file, the
# controller, before it starts its workers: they inherit it), so a new run starts cold, and
# the controller removes it at the end (pytest_sessionfinish below).
_RUN_ID = os.environ.setdefault("MCSIM_TEST_RUN_ID", uuid.uuid4().hex[:12])
SESSION_CACHE = Path(tempfile.gettempdir()) / f"mcsim-test-xla-{_RUN_ID}"
os.environ["MCSIM_CACHE_DIR"] = str(SESSION_CACHE)
jax.config.update("jax_compilation_cache_dir", str(SESSION_CACHE))
# Start JAX's backend now, with its one CPU device: the command line asks for one device
# per core (mcsim.cpu_devices) only before the backend starts, so an in-process
# ``mcsim.cli.main`` cannot change the device count of the tests that follow it.
jax.devices()

sys.path.insert(0, str(Path(__file__).resolve().parent))  # make `import helpers` work

from helpers import (  # noqa: E402
    CONFIGS_DIR,
    DATA_DIR,
    SharedRun,
    minimal_config_text,
    shared_run,
)

#: The runs shared by the test modules of a session (helpers.shared_run: each made once, by
#: the first process to ask), per test run as SESSION_CACHE is, and removed with it.
SHARED_RUNS = Path(tempfile.gettempdir()) / f"mcsim-test-runs-{_RUN_ID}"


@pytest.fixture
def configs_dir() -> Path:
    """The repository's ``configs/`` folder."""
    return CONFIGS_DIR


@pytest.fixture
def base_config_text() -> str:
    """The text of ``configs/v1_base.toml`` (a full valid version-1
    config: version 1's base)."""
    return (CONFIGS_DIR / "v1_base.toml").read_text(encoding="utf-8")


@pytest.fixture
def make_config_text():
    """``minimal_config_text`` as a fixture: ``make_config_text(deal={"revenue_share": "0.2"})``."""
    return minimal_config_text


def _smc_small():
    return load_config(DATA_DIR / "smc_small.toml")


def _observed_importance():
    return load_config(DATA_DIR / "observed_importance.toml").with_simulation(
        horizon="2026-12", paths=4096)


#: The shared runs, by fixture name: (run name, its config).
SHARED = {"smc_run": ("smc_small", _smc_small),
          "importance_run": ("observed_importance", _observed_importance)}
#: Those some test to run asks for (pytest_collection_finish): the ones a process may make
#: while it waits for another.
_WANTED: list[str] = []


def _shared(fixture: str) -> SharedRun:
    name, config = SHARED[fixture]
    others = [SHARED[f] for f in _WANTED if f != fixture]
    return shared_run(SHARED_RUNS, name, config(), others)


@pytest.fixture(scope="session")
def smc_run() -> SharedRun:
    """``tests/data/smc_small.toml`` (configs/observed.toml made small: 2 SMC runs x 256
    particles, 2,048 prior paths to 2029-12) simulated as ``mcsim run`` does it, and its
    report: one SMC run, ~35 s of compiles, for every module that reads a posterior's
    outputs (report, HTML, ArviZ, frames), where each once made its own."""
    return _shared("smc_run")


@pytest.fixture(scope="session")
def importance_run() -> SharedRun:
    """``tests/data/observed_importance.toml`` (version 1's terms, two observations, the
    importance method) cut to 2026-12, 4,096 paths, simulated as ``mcsim run`` does it, and
    its report: the shapes of tests/test_conditioning.py's runs (the same compiled kernels),
    for the modules that read an importance-conditioned run's outputs (report, frames)."""
    return _shared("importance_run")


def pytest_sessionfinish(session, exitstatus):
    """The controller (not an xdist worker) removes the session's cache of compiled kernels
    and its shared runs."""
    if not hasattr(session.config, "workerinput"):
        shutil.rmtree(SESSION_CACHE, ignore_errors=True)
        shutil.rmtree(SHARED_RUNS, ignore_errors=True)


_DURATIONS_LOG = os.environ.get("MCSIM_TEST_DURATIONS")


def pytest_runtest_logreport(report):
    """With MCSIM_TEST_DURATIONS=FILE, append each test phase's seconds to FILE as it ends
    (the controller gets every worker's reports): a suite cut short still says where its time
    went, which ``--durations`` prints only at the end."""
    # the controller writes (an xdist worker's report reaches it too)
    if _DURATIONS_LOG and report.duration > 0.5 and "PYTEST_XDIST_WORKER" not in os.environ:
        with open(_DURATIONS_LOG, "a", encoding="utf-8") as f:
            f.write(f"{report.duration:.2f} {report.when} {report.nodeid} {report.outcome}\n")


#: Tests that take a minute or more on 2 cores (from an ``MCSIM_TEST_DURATIONS`` log of the
#: whole suite), longest first, run before everything else: xdist hands the first quarter of
#: the queue out to the workers in turn and the rest as they free up, so a long test queued
#: late leaves one worker running it alone at the end. None of them uses a module-scoped
#: fixture, so running it ahead of its module builds nothing twice.
LONG_TESTS_FIRST = (
    "tests/test_valid_configs.py::test_valid_configs_ci",
    "tests/test_smc.py::test_the_preconditioned_move_agrees_with_pcn_at_40_moves_on_every_fact",
    "tests/test_smc.py::test_same_seed_same_posterior_whatever_the_devices_and_chunks",
    "tests/test_notebooks.py::test_runs_top_to_bottom[03_what_drives_repayment]",
    "tests/test_path_runner.py::test_every_kind_of_run_uses_every_device_with_the_same_numbers",
    "tests/test_resume_long_work.py::test_a_run_killed_in_its_smc_phase_resumes_there_to_the_same_results",
    "tests/test_notebooks.py::test_runs_top_to_bottom[02_deal_regimes]",
    "tests/test_smc.py::test_smc_and_importance_sampling_agree_on_the_leaked_figures",
    "tests/test_cpu_devices_and_cache.py::test_compiled_kernels_are_cached_and_give_the_same_numbers",
    "tests/test_benchmarks.py::test_bench_sweep_writes_every_figure",
    "tests/test_precision_on_demand.py::test_stopping_rule_coverage",
    "tests/test_all_features.py::test_every_statistic_matches_the_reference_on_independent_samples",
)

#: Then whole modules, the heaviest first (each keeps its own order, so that its
#: module-scoped fixtures are built once per worker); the others follow in file order.
HEAVY_MODULES_FIRST = (
    "test_smc.py", "test_arviz_export.py", "test_html_report.py", "test_report_posterior.py",
    "test_frames.py", "test_conditioning.py", "test_valid_configs.py", "test_api.py",
    "test_scale.py", "test_valid_edges.py", "test_variance_reduction.py", "test_model_v2.py",
    "test_resume_long_work.py", "test_float32_edges.py", "test_reliability.py",
    "test_benchmarks.py", "test_notebooks.py", "test_path_runner.py",
)


def pytest_collection_modifyitems(session, config, items):
    """The longest tests first, then the heaviest modules (see above): the same order in
    every xdist worker, since it is a function of the collected ids alone."""
    long_rank = {nodeid: i for i, nodeid in enumerate(LONG_TESTS_FIRST)}
    module_rank = {name: i for i, name in enumerate(HEAVY_MODULES_FIRST)}

    def key(pair):
        index, item = pair
        if item.nodeid in long_rank:
            return (0, long_rank[item.nodeid], 0)
        return (1, module_rank.get(Path(item.fspath).name, len(module_rank)), index)

    items[:] = [item for _, item in sorted(enumerate(items), key=key)]


def pytest_collection_finish(session):
    """The shared runs the tests to run ask for (after any deselection)."""
    _WANTED[:] = [f for f in SHARED if any(f in item.fixturenames for item in session.items)]
