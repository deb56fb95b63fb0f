"""--out is checked before the simulation by doing what the write will do (issue 26, item
4): a parent where the staging directory cannot be made (a read-only file system that
``os.access`` does not see, as root), a rename refused onto OUT, and OUT a mount point all
fail in a second, before any simulation, instead of after it with "could not write the
report ... Read-only file system / Device or resource busy".

The failures are simulated (the suite runs as root in CI, where chmod stops nothing, and
cannot mount): the OS call the write makes is made to fail for that one path only.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from helpers import CONFIGS_DIR

from mcsim import ConfigError
from mcsim.cli import main
from mcsim.report import outdir

BASE = str(CONFIGS_DIR / "amendment_2026.toml")
RUN = ["run", BASE, "--paths", "2048", "--no-plots", "--no-progress"]


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    """A finished report to reproduce and compare."""
    rep = tmp_path_factory.mktemp("report") / "rep"
    assert main([*RUN, "--out", str(rep)]) == 0
    return rep


@pytest.fixture
def work(monkeypatch) -> list[str]:
    """The entry points that simulate, each recording its call (and then running), so a
    test can say no simulation started."""
    import importlib

    api = importlib.import_module("mcsim.api")
    # the module, not the function mcsim exports under its name
    sensitivity = importlib.import_module("mcsim.sensitivity")

    calls: list[str] = []

    def spy(name, real):
        def called(*args, **kwargs):
            calls.append(name)
            return real(*args, **kwargs)
        return called

    for module, name in [(api, "simulate"), (api, "run_sweep"), (api, "reproduce"),
                         (sensitivity, "sensitivity")]:
        monkeypatch.setattr(module, name, spy(name, getattr(module, name)))
    return calls


def _argv(command: str, out: Path, report: Path) -> list[str]:
    return {"run": [*RUN, "--out", str(out)],
            "sweep": ["sweep", BASE, "--set", "deal.investment=1e10,2e10", "--paths", "2048",
                      "--no-plots", "--out", str(out)],
            "reproduce": ["reproduce", str(report / "summary.json"), "--no-plots",
                          "--out", str(out)],
            "sensitivity": ["sensitivity", BASE, "--base-rows", "64", "--bootstrap", "10",
                            "--out", str(out)],
            "compare": ["compare", str(report), str(report), "--out", str(out)]}[command]


def _one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert captured.out == ""  # nothing computed and printed first (compare's table)
    return lines[0]


@pytest.mark.parametrize("command", ["run", "sweep", "reproduce", "sensitivity", "compare"])
def test_a_read_only_parent_that_access_misses_fails_before_any_work(
        command, report, work, tmp_path, monkeypatch, capsys):
    parent = tmp_path / "ro"
    parent.mkdir()
    real = outdir.tempfile.mkdtemp

    def mkdtemp(*args, dir=None, **kwargs):  # the file system refuses; os.access says yes
        if dir is not None and Path(dir).resolve() == parent.resolve():
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(dir))
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(outdir.tempfile, "mkdtemp", mkdtemp)
    capsys.readouterr()
    assert main(_argv(command, parent / "out", report)) == 2
    line = _one_error_line(capsys)
    assert line.startswith("mcsim: error: --out = ") and "Read-only file system" in line
    assert work == []  # no simulation started
    assert os.listdir(parent) == []  # and nothing was left there


def test_an_out_that_is_a_mount_point_fails_before_the_run(work, tmp_path, monkeypatch,
                                                          capsys):
    """A mount point cannot be swapped (EBUSY): found by looking at the mount table."""
    out = tmp_path / "mnt"
    with outdir.output_directory(out) as staging:  # an earlier report there
        (staging / "old.txt").write_text("old")
    real = outdir._renameat2_exchange

    def exchange(a, b):
        if Path(b) == out:
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), str(b))
        return real(a, b)

    monkeypatch.setattr(outdir, "_renameat2_exchange", exchange)
    monkeypatch.setattr(outdir, "_mount_points", lambda: [Path("/"), out.resolve()],
                        raising=False)
    assert main([*RUN, "--out", str(out)]) == 2
    line = _one_error_line(capsys)
    assert line.startswith("mcsim: error: --out = ") and "mount point" in line
    assert f"{out}/report" in line  # what to do instead
    assert work == []
    assert sorted(p.name for p in out.iterdir()) == [outdir.MANIFEST, "old.txt"]


def test_a_real_mount_point_is_refused():
    proc = Path("/proc")
    if not (os.path.ismount(proc) and os.access(proc, os.W_OK | os.X_OK)):
        pytest.skip("needs /proc mounted and writable as seen by os.access (root)")
    with pytest.raises(ConfigError, match="mount point"):
        outdir.check_output_dir(proc, force=True)


def test_a_directory_refusing_renames_fails_before_the_run(work, tmp_path, monkeypatch,
                                                         capsys):
    """A file system that makes directories but refuses to rename them (some FUSE and
    network mounts): the write's last step, a rename beside OUT, is tried first."""
    deep = tmp_path / "a" / "b" / "c"
    outdir.check_output_dir(deep)  # the probe makes its directories and removes them all
    assert os.listdir(tmp_path) == []
    out = tmp_path / "new"
    real = os.rename

    def rename(src, dst, *args, **kwargs):
        if Path(dst).parent == tmp_path:
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), str(dst))
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(outdir.os, "rename", rename)
    assert main([*RUN, "--out", str(out)]) == 2
    line = _one_error_line(capsys)
    assert "Device or resource busy" in line and "renaming its staging directory" in line
    assert work == [] and os.listdir(tmp_path) == []
