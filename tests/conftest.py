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

from helpers import CONFIGS_DIR, minimal_config_text  # noqa: E402


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


def pytest_sessionfinish(session, exitstatus):
    """The controller (not an xdist worker) removes the session's cache of compiled kernels."""
    if not hasattr(session.config, "workerinput"):
        shutil.rmtree(SESSION_CACHE, ignore_errors=True)


_DURATIONS_LOG = os.environ.get("MCSIM_TEST_DURATIONS")


def pytest_runtest_logreport(report):
    """With MCSIM_TEST_DURATIONS=FILE, append each test phase's seconds to FILE as it ends
    (the controller gets every worker's reports): a suite cut short still says where its time
    went, which ``--durations`` prints only at the end."""
    # the controller writes (an xdist worker's report reaches it too)
    if _DURATIONS_LOG and report.duration > 0.5 and "PYTEST_XDIST_WORKER" not in os.environ:
        with open(_DURATIONS_LOG, "a", encoding="utf-8") as f:
            f.write(f"{report.duration:.2f} {report.when} {report.nodeid} {report.outcome}\n")
