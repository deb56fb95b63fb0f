"""Long work that a kill no longer loses: a sweep's finished points, the SMC phase of a
conditioned run and a sensitivity study's evaluated rows are checkpointed, and a resumed
command gives the results of one never stopped (every statistic of summary.json, byte for
byte, outside its provenance).

The kills are real: a separate process runs the command and SIGKILLs itself right after a
chosen checkpoint is written (so the moment is exact, not a race), then a fresh ``mcsim``
process resumes. The processes share the test session's compile cache (conftest.py: a
cached kernel is the same executable, the same numbers) to keep the test short.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from helpers import CONFIGS_DIR, minimal_config_text

MCSIM = str(Path(sys.executable).parent / "mcsim")

#: ``python -c`` this, WHAT ARGS...: ``mcsim ARGS`` that SIGKILLs itself right after the
#: checkpoint WHAT names is written ("sweep": point 0 saved; "smc": the second step of run 1,
#: which is the second group of runs here); "smc-whole": the same SMC grouping (one run per
#: group, so that a finished group and an unfinished one can be seen), never killed
_KILLED_AFTER = textwrap.dedent("""
    import os, signal, sys
    from mcsim import cli, saved
    from mcsim.engine import smc
    what = sys.argv[1]
    if what == "sweep":
        real = saved.PointStore.save
        def save(self, index, *args, **kw):
            real(self, index, *args, **kw)
            if index == 0:
                os.kill(os.getpid(), signal.SIGKILL)
        saved.PointStore.save = save
    else:
        smc.GROUP_PARTICLES = 256  # one run of 256 particles per group
    if what == "smc":
        real = smc.SMCCheckpoint.save
        def save(self, group, arrays):
            real(self, group, arrays)
            if group == 1 and arrays["step_counts"].max() >= 2:
                os.kill(os.getpid(), signal.SIGKILL)
        smc.SMCCheckpoint.save = save
    sys.exit(cli.main(sys.argv[2:]))
""")


@pytest.fixture
def env(tmp_path):
    return {**os.environ, "JAX_PLATFORMS": "cpu"}


def _mcsim(env, *args):
    return subprocess.run([MCSIM, *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=600)


def _killed(env, what: str, *args, killed: bool = True):
    proc = subprocess.run([sys.executable, "-c", _KILLED_AFTER, what, *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == (-signal.SIGKILL if killed else 0), proc.stderr
    return proc


def _summary(path: Path) -> tuple[str, dict]:
    """summary.json without its provenance (JSON text, sorted), and the provenance."""
    s = json.loads(path.read_text())
    prov = s.pop("provenance")
    return json.dumps(s, sort_keys=True), prov


def test_a_killed_sweep_resumes_its_unfinished_points_to_the_same_results(tmp_path, env):
    config = CONFIGS_DIR / "amendment_2026.toml"
    sweep = ["sweep", config, "--set", "deal.revenue_share=0.1,0.3", "--paths", 2048,
             "--no-plots", "--no-batch"]
    whole = tmp_path / "whole"
    done = _mcsim(env, *sweep, "--out", whole)
    assert done.returncode == 0, done.stderr

    out = tmp_path / "sweep"
    ckpt_dir = Path(f"{out}.checkpoint")
    _killed(env, "sweep", *sweep, "--out", out)
    assert not out.exists()
    saved = sorted(p.name for p in ckpt_dir.glob("*.npz"))
    assert saved == ["sweep-point-0.npz"]  # point 1 was never run
    with np.load(ckpt_dir / "sweep-point-0.npz") as z:
        seconds_0 = json.loads(str(z["prior_info"]))["seconds"]

    # a changed sweep is refused in one line, naming what changed, and keeps the points
    changed = _mcsim(env, *sweep[:3], "deal.revenue_share=0.1,0.25", *sweep[4:],
                     "--out", out, "--resume")
    assert changed.returncode == 2
    line = changed.stderr.strip().splitlines()[-1]
    assert line.startswith("mcsim: error: --resume = ") and \
        "deal.revenue_share was [0.1, 0.3], now [0.1, 0.25]" in line, line
    assert sorted(p.name for p in ckpt_dir.glob("*.npz")) == saved

    resumed = _mcsim(env, *sweep, "--out", out, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    for point in ("deal.revenue_share=0.1", "deal.revenue_share=0.3"):
        ours, prov = _summary(out / point / "summary.json")
        theirs, _ = _summary(whole / point / "summary.json")
        assert ours == theirs, point  # every statistic, byte for byte
        if point.endswith("0.1"):  # read back from the killed sweep's file, not run again
            assert prov["run_seconds"] == round(seconds_0, 3)
    assert (out / "sweep.csv").read_text() == (whole / "sweep.csv").read_text()
    assert not ckpt_dir.exists()  # removed once the sweep was written


#: a small conditioned config: two uncertain parameters observed through stocks months
#: into the grid (so the particles carry shock normals too), SMC with 2 runs
SMC_PARAMETERS = {"gpu_price_0": '{ dist = "normal", mean = 2.0, sd = 0.3, min = 0.01 }',
                  "users_0": '{ dist = "normal", mean = 5e8, sd = 1e8, min = 1e6 }'}
SMC_OBSERVATIONS = """
[observations.price]
stock = "gpu_price"
month = "2024-06"
value = 2.4
sd = 0.2

[observations.users]
stock = "weekly_active_users"
month = "2024-09"
value = 3.5e8
sd = 5e7

[conditioning]
particles = 256
runs = 2
moves = 2
seed = 5
"""


def test_a_run_killed_in_its_smc_phase_resumes_there_to_the_same_results(tmp_path, env):
    config = tmp_path / "observed.toml"
    config.write_text(minimal_config_text(parameters=SMC_PARAMETERS) + SMC_OBSERVATIONS)
    args = ["run", config, "--paths", 1024, "--no-plots", "--no-progress"]
    whole = tmp_path / "whole"
    _killed(env, "smc-whole", *args, "--out", whole, killed=False)

    out = tmp_path / "run"
    ckpt_dir = Path(f"{out}.checkpoint")
    _killed(env, "smc", *args, "--out", out, "--checkpoint-interval", 0)
    assert not out.exists()
    assert sorted(p.name for p in ckpt_dir.glob("*.npz")) == [
        "process-0-of-1.npz",  # the prior pass, complete
        "process-0-of-1.smc-group-0.npz", "process-0-of-1.smc-group-1.npz"]
    with np.load(ckpt_dir / "process-0-of-1.smc-group-0.npz") as z:
        assert z["beta"].tolist() == [1.0]  # group 0 (run 0) finished: temperature 1
        seconds_0 = float(z["elapsed"])
    with np.load(ckpt_dir / "process-0-of-1.smc-group-1.npz") as z:
        assert 0 < z["beta"][0] < 1 and z["step_counts"].tolist() == [2]  # run 1 mid-way

    _killed(env, "smc-whole", *args, "--out", out, "--resume", killed=False)
    ours, prov = _summary(out / "summary.json")
    theirs, _ = _summary(whole / "summary.json")
    assert ours == theirs  # the posterior and its forecast, bit for bit
    # run 0 was read back (its seconds are the killed process's), not run again
    assert prov["smc_run_seconds"][0] == round(seconds_0, 3)
    assert not ckpt_dir.exists()


@pytest.mark.filterwarnings("ignore:sensitivity of")  # a small design's wide intervals
def test_a_sensitivity_study_resumes_from_its_saved_rows(tmp_path, monkeypatch):
    """Killed after its first saved block of rows (here: an exception right after the
    save), the study resumes from them and gives the same indices."""
    from mcsim.config import load_config

    sens = importlib.import_module("mcsim.sensitivity")  # the module (mcsim.sensitivity is
    # also the package's name for its function)

    monkeypatch.setattr(sens, "ROWS_PER_CALL", 1024)  # several calls of a small design
    cfg = load_config(CONFIGS_DIR / "amendment_2026.toml").with_simulation(horizon="2030-12")
    kwargs = {"num_base": 64, "num_bootstrap": 50}
    whole = sens.sensitivity(cfg, **kwargs)

    class Killed(BaseException):
        pass

    real_save = sens.RowCheckpoint.save

    def save_then_die(self, done):
        real_save(self, done)
        raise Killed

    monkeypatch.setattr(sens.RowCheckpoint, "save", save_then_die)
    with pytest.raises(Killed):
        sens.sensitivity(cfg, checkpoint=tmp_path, checkpoint_interval=0, **kwargs)
    with np.load(tmp_path / sens.ROWS_FILE) as z:
        assert len(z["finite"]) == 1024 < whole.num_rows  # one block of rows saved

    monkeypatch.setattr(sens.RowCheckpoint, "save", real_save)
    loaded = []
    real_load = sens.RowCheckpoint.load

    def load(self):
        data = real_load(self)
        loaded.append(len(data["finite"]))
        return data

    monkeypatch.setattr(sens.RowCheckpoint, "load", load)
    resumed = sens.sensitivity(cfg, checkpoint=tmp_path, resume=True, **kwargs)
    assert loaded == [1024]  # the saved rows were read back; the rest evaluated
    assert resumed.frame().equals(whole.frame())
    assert resumed.output_means == whole.output_means
