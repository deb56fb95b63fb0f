"""One CPU device per core and the cache of compiled kernels: the command line's two
speed settings change how fast a run is, never its numbers."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from helpers import REPO_ROOT, short_config_file

from mcsim.cpu_devices import ENV, available_cores, use_cpu_cores


def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items()
               if k not in ("XLA_FLAGS", ENV, "MCSIM_CACHE_DIR")}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO_ROOT, env={**environ, **env}, timeout=300)


def test_devices_are_set_before_the_backend_starts():
    done = _python("from mcsim.cpu_devices import use_cpu_cores; n = use_cpu_cores(3); "
                   "import jax; print(n, jax.local_device_count())")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["3", "3"]


def test_default_is_one_device_per_available_core_or_the_environment():
    done = _python("from mcsim.cpu_devices import use_cpu_cores; n = use_cpu_cores(); "
                   "import jax; print(n, jax.local_device_count())")
    assert done.stdout.split() == [str(available_cores())] * 2, done.stderr
    done = _python("from mcsim.cpu_devices import use_cpu_cores; n = use_cpu_cores(); "
                   "import jax; print(n, jax.local_device_count())", **{ENV: "2"})
    assert done.stdout.split() == ["2", "2"], done.stderr


def test_xla_flags_choice_is_left_alone():
    done = _python("from mcsim.cpu_devices import use_cpu_cores; n = use_cpu_cores(3); "
                   "import jax; print(n, jax.local_device_count())",
                   XLA_FLAGS="--xla_force_host_platform_device_count=2")
    assert done.stdout.split() == ["None", "2"], done.stderr


def test_started_backend_is_left_alone():
    # conftest started the backend: an in-process call changes nothing
    import jax

    before = jax.local_device_count()
    assert use_cpu_cores(4) is None
    assert jax.local_device_count() == before


@pytest.mark.parametrize("count", [0, -1, 1.5, True, "2"])
def test_bad_count_names_the_argument(count):
    with pytest.raises(ValueError, match=r"count = .*positive integer"):
        use_cpu_cores(count)


@pytest.mark.parametrize("text", ["0", "two", "-3", ""])
def test_bad_environment_value_names_the_variable(text, monkeypatch):
    monkeypatch.setenv(ENV, text)
    with pytest.raises(ValueError, match=rf"{ENV} = '{text}': expected a positive integer"):
        use_cpu_cores()


def test_command_line_reports_a_bad_device_count():
    done = subprocess.run([sys.executable, "-m", "mcsim.cli", "validate",
                           str(REPO_ROOT / "configs" / "base.toml")], capture_output=True,
                          text=True, cwd=REPO_ROOT, timeout=300,
                          env={**os.environ, ENV: "zero"})
    assert done.returncode == 2
    assert f"{ENV} = 'zero': expected a positive integer" in done.stderr
    assert "Traceback" not in done.stderr


def _summary_without_provenance(folder) -> dict:
    summary = json.loads((folder / "summary.json").read_text())
    summary.pop("provenance")
    return summary


def test_compiled_kernels_are_cached_and_give_the_same_numbers(tmp_path):
    """A run that compiles into an empty cache, one that loads from it and one with the
    cache off: the same summary bit for bit; off writes nothing under XDG_CACHE_HOME."""
    config = short_config_file(tmp_path, "2025-06", "base.toml", paths=4096)
    cache = tmp_path / "xla"
    home = tmp_path / "home_cache"
    env = {k: v for k, v in os.environ.items() if k != "MCSIM_CACHE_DIR"}
    summaries = []
    for name, setting in (("cold", str(cache)), ("warm", str(cache)), ("off", "off")):
        out = tmp_path / name
        done = subprocess.run([sys.executable, "-m", "mcsim.cli", "run", str(config),
                               "--no-plots", "--out", str(out)], capture_output=True,
                              text=True, cwd=REPO_ROOT, timeout=600,
                              env={**env, "MCSIM_CACHE_DIR": setting,
                                   "XDG_CACHE_HOME": str(home)})
        assert done.returncode == 0, done.stderr
        summaries.append(_summary_without_provenance(out))
        if name == "cold":
            entries = sorted(p.name for p in cache.iterdir())
            assert any(e.startswith("jit_run_shard") for e in entries), entries
    assert summaries[0] == summaries[1] == summaries[2]
    assert not (home / "mcsim").exists()
