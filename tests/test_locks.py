"""One mcsim process at a time per output or checkpoint directory (mcsim.locks), temporary
checkpoint files unique per process, and an unreadable checkpoint refused in one line.

The lock test uses real processes: a run that holds the directories, a second identical
command (and a third sharing only the checkpoint directory) refused while it runs, then a
SIGKILL (the kernel drops a flock however a process ends) and a new run that takes over.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import CONFIGS_DIR

from mcsim import checkpoint as ckpt
from mcsim import locks
from mcsim.cli import run_command

MCSIM = str(Path(sys.executable).parent / "mcsim")
ENV = {**os.environ, "JAX_PLATFORMS": "cpu"}
BASE = CONFIGS_DIR / "base.toml"


def _mcsim(*args, timeout: float = 600):
    return subprocess.run([MCSIM, *map(str, args)], capture_output=True, text=True, env=ENV,
                          timeout=timeout)


def _one_error_line(proc) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr  # one line, no traceback
    assert lines[0].startswith("mcsim: error: "), lines[0]
    return lines[0]


def test_a_second_run_on_the_same_directories_is_refused_until_the_first_dies(tmp_path):
    out = tmp_path / "report"
    ckpt_dir = Path(f"{out}.checkpoint")
    args = ["run", BASE, "--out", out, "--paths", 10_000_000, "--no-plots", "--no-progress",
            "--chunk-size", 1024, "--checkpoint-interval", 0.2]
    first = subprocess.Popen([MCSIM, *map(str, args)], env=ENV, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 300
        while not any(ckpt_dir.glob("*.npz")) and first.poll() is None \
                and time.time() < deadline:
            time.sleep(0.02)
        assert first.poll() is None, first.stderr.read().decode()  # simulating, saving

        same = _mcsim(*args, timeout=240)  # the very same command, while the first runs
        assert same.returncode == 2
        line = _one_error_line(same)
        assert line.startswith("mcsim: error: --out = ") and f"pid {first.pid}" in line \
            and "wait for it to end, or choose another --out" in line, line

        # another report, the same checkpoint directory: refused too (it would overwrite
        # and then delete the first's checkpoint)
        other = _mcsim("run", BASE, "--out", tmp_path / "other", "--checkpoint-dir", ckpt_dir,
                       "--paths", 2048, "--no-plots", timeout=240)
        assert other.returncode == 2
        line = _one_error_line(other)
        assert line.startswith("mcsim: error: --checkpoint-dir = ") and \
            f"pid {first.pid}" in line, line
        assert not (tmp_path / "other").exists()
        assert first.poll() is None  # the first run went on, untouched
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert first.returncode == -signal.SIGKILL
    with np.load(ckpt_dir / "process-0-of-1.npz") as z:  # its checkpoint is whole
        assert 0 < int(z["scalars"][0]) < 10_000_000
    # the killed run's lock files are still there, but nobody holds them: a new run on the
    # same directories takes them at once, and gets as far as the killed run's checkpoint
    # (which it refuses, being another run: the quickest way to see it got the locks)
    assert (tmp_path / ".report.mcsim-lock").exists()
    again = _mcsim(*args[:4], "--paths", 2048, *args[6:], "--resume")
    assert again.returncode == 2
    line = _one_error_line(again)
    assert line.startswith("mcsim: error: --resume = ") and \
        "paths was 10000000, now 2048" in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.checkpoint"]
    # kept; the SIGKILL may have landed mid-save, leaving the killed writer's own
    # temporary file (the next finished run on this directory removes it)
    kept = sorted(p.name for p in ckpt_dir.iterdir()
                  if p.name != f"process-0-of-1.npz.{first.pid}.tmp")
    assert kept == ["process-0-of-1.npz"]


@pytest.fixture(scope="module")
def whole_checkpoint(tmp_path_factory) -> Path:
    """A complete checkpoint of a 2,048-path run of amendment_2026.toml."""
    from mcsim.api import run
    from mcsim.config import load_config

    directory = tmp_path_factory.mktemp("ckpt")
    cfg = load_config(CONFIGS_DIR / "amendment_2026.toml").with_simulation(paths=2048)
    run(cfg, checkpoint=directory, progress=False)
    return directory / "process-0-of-1.npz"


@pytest.mark.parametrize("damage", ["truncated", "garbage", "flipped", "empty"])
def test_an_unreadable_checkpoint_is_refused_in_one_line(tmp_path, capsys, whole_checkpoint,
                                                          damage):
    data = whole_checkpoint.read_bytes()
    ckpt_dir = tmp_path / "ck"
    ckpt_dir.mkdir()
    bad = ckpt_dir / "process-0-of-1.npz"
    if damage == "truncated":  # a copy or a disk cut short
        content = data[: len(data) // 2]
    elif damage == "garbage":
        content = b"not a checkpoint\n" * 10
    elif damage == "flipped":  # one byte changed inside a compressed member
        flipped = bytearray(data)
        flipped[len(data) // 3] ^= 0xFF
        content = bytes(flipped)
    else:
        content = b""
    bad.write_bytes(content)
    status = run_command(["run", str(CONFIGS_DIR / "amendment_2026.toml"), "--out",
                          str(tmp_path / "rep"), "--paths", "2048", "--no-plots",
                          "--no-progress", "--resume", "--checkpoint-dir", str(ckpt_dir)])
    err = capsys.readouterr().err
    assert status == 2, err
    (line,) = [x for x in err.strip().splitlines() if x.startswith("mcsim: error")]
    assert "Traceback" not in err
    assert line.startswith("mcsim: error: --resume = "), line
    assert f"but {bad} is" in line and "damaged" in line and \
        "delete it to start from the beginning" in line, line
    assert bad.read_bytes() == content  # the user decides: mcsim does not delete it
    assert sorted(p.name for p in ckpt_dir.iterdir()) == ["process-0-of-1.npz"]
    assert not (tmp_path / "rep").exists()


def test_where_locks_are_unavailable_the_run_warns_once_and_goes_on(tmp_path, capsys,
                                                                     monkeypatch):
    """Some NFS and FUSE mounts have no flock (ENOLCK, EOPNOTSUPP): one warning line, and
    the run is not refused (see mcsim.locks for why)."""
    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(locks.fcntl, "flock", no_locks)
    monkeypatch.setattr(locks, "_warned", [])
    out = tmp_path / "rep"
    status = run_command(["run", str(CONFIGS_DIR / "amendment_2026.toml"), "--out", str(out),
                          "--paths", "2048", "--no-plots", "--no-progress"])
    err = capsys.readouterr().err
    assert status == 0, err
    warnings = [x for x in err.splitlines() if "cannot lock" in x]
    assert len(warnings) == 1, err
    assert warnings[0].startswith("mcsim: warning: cannot lock ") and \
        os.strerror(errno.ENOLCK) in warnings[0] and "run one at a time" in warnings[0]
    assert (out / "summary.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep"]  # no lock file left


def test_a_held_lock_refuses_another_process_and_is_reentrant_in_one(tmp_path):
    lock = tmp_path / "d" / "process-0-of-1.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from mcsim import locks\n"
         "with locks.hold(sys.argv[1], key='k', value='v', what='directory'):\n"
         "    print('held', flush=True); time.sleep(600)", str(lock)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(locks.ConfigError) as refused:
            with locks.hold(lock, key="--out", value="rep", what="report directory"):
                pass
        assert f"pid {holder.pid}" in str(refused.value)
    finally:
        holder.kill()
        holder.wait()
    with locks.hold(lock, key="k", value="v", what="directory"):
        with locks.hold(lock, key="k", value="v", what="directory"):  # the engine's, inside
            assert locks.held(lock)
        assert locks.held(lock) and lock.exists()
    assert not locks.held(lock) and not lock.exists()


def test_temporary_checkpoint_files_are_unique_per_process_and_others_are_left(tmp_path):
    """A checkpoint is written through a temporary file named by its process; removing a
    finished run's checkpoints leaves a temporary file another live process is writing,
    and tidies one whose writer is dead."""
    path = tmp_path / "process-0-of-1.npz"
    tmp = ckpt.temporary_file(path)
    assert tmp.name == f"process-0-of-1.npz.{os.getpid()}.tmp"
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        live = tmp_path / f"process-0-of-1.npz.{sleeper.pid}.tmp"
        gone = tmp_path / f"process-0-of-1.npz.{_dead_pid()}.tmp"
        live.write_bytes(b"being written")
        gone.write_bytes(b"a killed writer's")
        assert ckpt.write_arrays(path, {"a": 1}, {"x": np.arange(3)}) is None
        assert live.read_bytes() == b"being written"  # not ours: untouched
        ckpt.remove_checkpoints(tmp_path, 1, remove_directory=False)
        assert sorted(p.name for p in tmp_path.iterdir()) == [live.name]
    finally:
        sleeper.kill()
        sleeper.wait()


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_removing_a_finished_runs_checkpoints_leaves_another_versions_smc_files(tmp_path):
    """Only this version's SMC group states are a finished run's own: an SMC file in the
    format before the runs moved in groups (``.smc-run-R.npz``) was not written by it."""
    ours = [tmp_path / "process-0-of-1.npz", tmp_path / "process-0-of-1.smc-group-0.npz",
            tmp_path / "process-0-of-1.smc-group-1.npz"]
    older = tmp_path / "process-0-of-1.smc-run-0.npz"
    for f in (*ours, older):
        f.write_bytes(b"x")
    ckpt.remove_checkpoints(tmp_path, 1, remove_directory=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == [older.name]
