"""Shared fixtures. Importable helpers are in ``helpers.py`` (``from helpers import ...``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import jax
import pytest

import mcsim

# Strict dtype promotion for the whole suite: a float64 NumPy scalar that would silently
# promote the float32 kernel (and break its scan carry) is an error here, not a slowdown.
jax.config.update("jax_numpy_dtype_promotion", "strict")
# The tests call the model and kernel below the API's entry points, which switch it on.
mcsim.enable_x64()
# Start JAX's backend now, with its one CPU device: the command line asks for one device
# per core (mcsim.cpu_devices) only before the backend starts, so an in-process
# ``mcsim.cli.main`` cannot change the device count of the tests that follow it.
jax.devices()
# The tests' command-line subprocesses compile afresh and leave the user's cache of compiled
# kernels (mcsim.compile_cache) alone; tests of the cache set their own folder.
os.environ["MCSIM_CACHE_DIR"] = "off"

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
