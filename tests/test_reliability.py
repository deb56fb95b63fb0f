"""Reliability: a run killed with SIGKILL resumes to bit-identical results; a checkpoint of
another run is refused; repeated runs give byte-identical summaries."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import CONFIGS_DIR

MCSIM = str(Path(sys.executable).parent / "mcsim")
ENV = {**os.environ, "JAX_PLATFORMS": "cpu"}


def _mcsim(*args, env=None, **kw):
    return subprocess.run([MCSIM, *map(str, args)], capture_output=True, text=True,
                          env={**ENV, **(env or {})}, timeout=600, **kw)


def _summary(out: Path) -> str:
    s = json.loads((out / "summary.json").read_text())
    s.pop("provenance")
    return json.dumps(s, sort_keys=True)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("whole") / "report"
    proc = _mcsim("run", CONFIGS_DIR / "base.toml", "--out", out, "--paths", 60_000,
                  "--no-plots", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    return out


def test_sigkill_then_resume_is_bit_identical(uninterrupted, tmp_path):
    out = tmp_path / "report"
    ckpt = Path(f"{out}.checkpoint")
    args = ["run", CONFIGS_DIR / "base.toml", "--out", out, "--paths", 60_000, "--no-plots",
            "--no-progress", "--chunk-size", 1024, "--checkpoint-interval", 0.3]
    proc = subprocess.Popen([MCSIM, *map(str, args)], env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while not any(ckpt.glob("*.npz")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before its first checkpoint"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists()  # no partial report
    # nor a temporary one: only the lock file (mcsim.locks), which a SIGKILL cannot remove
    # and nobody holds now
    assert [p.name for p in tmp_path.glob(".*")] == [".report.mcsim-lock"]

    import numpy as np  # the checkpoint is mid-run: some paths done, not all
    with np.load(next(ckpt.glob("*.npz"))) as z:
        done = int(z["scalars"][0])
    assert 0 < done < 60_000

    resumed = _mcsim(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert _summary(out) == _summary(uninterrupted)  # every statistic, byte for byte
    assert not ckpt.exists()  # removed once the report is written
    assert not list(tmp_path.glob(".*"))  # the lock file too


def test_checkpoint_of_another_run_is_refused(tmp_path, capsys):
    out = tmp_path / "report"
    ckpt = tmp_path / "ckpt"
    common = ["run", CONFIGS_DIR / "amendment_2026.toml", "--out", out, "--paths", 2048,
              "--no-plots", "--checkpoint-dir", ckpt]
    from mcsim.cli import main

    assert main([*map(str, common), "--no-progress"]) == 0  # leaves a complete checkpoint?
    # the CLI removes it after writing the report: make one that stays, through the API
    from mcsim.api import run
    from mcsim.config import load_config

    cfg = load_config(CONFIGS_DIR / "amendment_2026.toml").with_simulation(paths=2048)
    run(cfg, checkpoint=ckpt, progress=False)
    assert any(ckpt.glob("*.npz"))
    # in this process (a fresh one per refusal would cost JAX's start and a compile each)
    for change, named in ((["--seed", 5], "seed was"), (["--paths", 4096], "paths was"),
                          (["--dtype", "float64"], "dtype was")):
        capsys.readouterr()
        assert main([*map(str, common), "--resume", "--no-progress",
                     *map(str, change)]) == 2
        line = capsys.readouterr().err.strip().splitlines()[-1]
        assert line.startswith("mcsim: error: --resume") and named in line, line
    # the command line makes one CPU device per core; this checkpoint was written on this
    # process's devices, and says how to resume on them
    import jax

    devices = jax.local_device_count()
    with_cores = _mcsim(*common, "--resume", "--seed", cfg.simulation.seed,
                        env={"MCSIM_CPU_DEVICES": str(devices + 1)})
    assert with_cores.returncode == 2, with_cores.stderr
    assert f"MCSIM_CPU_DEVICES={devices}" in with_cores.stderr
    # the same run resumes from its complete checkpoint without simulating again (in this
    # process, on the devices that wrote it)
    assert main([*map(str, common), "--resume", "--no-progress", "--seed",
                 str(cfg.simulation.seed)]) == 0


def test_repeated_runs_give_byte_identical_summaries(uninterrupted, tmp_path):
    out = tmp_path / "again"
    proc = _mcsim("run", CONFIGS_DIR / "base.toml", "--out", out, "--paths", 60_000,
                  "--no-plots", "--no-progress", "--chunk-size", 4096)
    assert proc.returncode == 0, proc.stderr
    assert _summary(out) == _summary(uninterrupted)


def test_the_summary_alone_reproduces_the_run(uninterrupted, tmp_path):
    """provenance holds the resolved config, seed, paths, dtype and versions: `mcsim
    reproduce summary.json` runs the same run again, byte for byte."""
    prov = json.loads((uninterrupted / "summary.json").read_text())["provenance"]
    for key in ("config_text", "config_sha256", "config_resolved", "seed", "paths", "dtype",
                "mcsim_version", "jax_version", "device", "run_seconds", "kernel_options"):
        assert key in prov, key
    out = tmp_path / "again"
    proc = _mcsim("reproduce", uninterrupted / "summary.json", "--out", out, "--no-plots")
    assert proc.returncode == 0, proc.stderr
    assert _summary(out) == _summary(uninterrupted)


def test_reproduce_refuses_a_tampered_summary(uninterrupted, tmp_path):
    s = json.loads((uninterrupted / "summary.json").read_text())
    s["provenance"]["config_text"] += "\n# edited"
    bad = tmp_path / "summary.json"
    bad.write_text(json.dumps(s))
    proc = _mcsim("reproduce", bad, "--out", tmp_path / "out")
    assert proc.returncode == 2
    assert "provenance.config_text" in proc.stderr and not (tmp_path / "out").exists()
