"""Output directories and checkpoints: mcsim never deletes a file it did not write, a bad
--out fails before the run, and a kill at any instant of the report swap loses nothing."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import CONFIGS_DIR

from mcsim import ConfigError
from mcsim.cli import main
from mcsim.report import outdir

BASE = str(CONFIGS_DIR / "amendment_2026.toml")
RUN = ["run", BASE, "--paths", "2048", "--no-plots", "--no-progress"]


def _write(path: Path, files: dict[str, str], **kw) -> None:
    with outdir.output_directory(path, **kw) as tmp:
        for name, text in files.items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_text(text)


def test_new_then_replaced_report_keeps_only_the_new_files(tmp_path):
    out = tmp_path / "rep"
    _write(out, {"a.txt": "1", "sub/b.txt": "2"})
    assert json.loads((out / outdir.MANIFEST).read_text())["files"] == ["a.txt", "sub/b.txt"]
    _write(out, {"c.txt": "3"})
    assert sorted(p.name for p in out.rglob("*")) == [outdir.MANIFEST, "c.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["rep"]  # no staging left beside it


def test_users_files_in_a_report_survive_and_stale_own_files_go(tmp_path):
    out = tmp_path / "rep"
    _write(out, {"a.txt": "1", "sub/b.txt": "2"})
    (out / "notes.txt").write_text("mine")
    (out / "sub" / "mine.toml").write_text("x = 1")
    _write(out, {"a.txt": "new"})
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "sub" / "mine.toml").read_text() == "x = 1"
    assert (out / "a.txt").read_text() == "new" and not (out / "sub" / "b.txt").exists()


def test_a_foreign_directory_is_refused_unless_forced(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "notes.txt").write_text("notes")
    with pytest.raises(ConfigError, match="notes.txt, which mcsim did not write"):
        _write(d, {"a.txt": "1"})
    assert sorted(p.name for p in d.iterdir()) == ["notes.txt"]
    _write(d, {"a.txt": "1"}, force=True)
    assert (d / "notes.txt").read_text() == "notes" and (d / "a.txt").exists()
    _write(d, {"b.txt": "2"})  # now an mcsim report with a user's file: no --force needed
    assert sorted(p.name for p in d.iterdir()) == [outdir.MANIFEST, "b.txt", "notes.txt"]


@pytest.mark.parametrize("bad, expected", [
    ("", "empty one"), ("f/sub", "which is a file"), ("f", "it is a file")])
def test_bad_out_paths_are_refused_up_front(tmp_path, bad, expected, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("f").write_text("a file")
    with pytest.raises(ConfigError, match=expected):
        outdir.check_output_dir(bad)


def test_read_only_out_is_refused(tmp_path, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    # the suite runs as root in CI, where chmod does not stop writes: ask os.access instead
    monkeypatch.setattr(outdir.os, "access", lambda p, mode: Path(p) != ro)
    with pytest.raises(ConfigError, match="ro is not writable"):
        outdir.check_output_dir(ro / "rep")


def test_cwd_as_out_writes_beside_nothing_else(tmp_path, monkeypatch):
    """--out . : refused in a directory holding other files; in an empty one the report is
    written there file by file (the working directory itself is never renamed)."""
    monkeypatch.chdir(tmp_path)
    Path("config.toml").write_text("x")
    assert main([*RUN, "--out", "."]) == 2
    assert sorted(os.listdir()) == ["config.toml"]
    os.mkdir("e")
    monkeypatch.chdir(tmp_path / "e")
    assert main([*RUN, "--out", "."]) == 0
    assert Path("summary.json").exists() and Path(outdir.MANIFEST).exists()
    assert main([*RUN, "--out", ".", "--seed", "3"]) == 0  # and replaced there again
    assert sorted(os.listdir(tmp_path)) == ["config.toml", "e"]


def test_checkpoint_dir_holds_other_files_they_stay(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("keep.txt").write_text("mine")
    assert main([*RUN, "--out", "rep", "--checkpoint-dir", ".",
                 "--checkpoint-interval", "0"]) == 0
    assert sorted(os.listdir()) == ["keep.txt", "rep"]
    assert main([*RUN, "--out", "rep", "--checkpoint-dir", "rep"]) == 2
    assert main([*RUN, "--out", "rep", "--checkpoint-dir", "rep/ck"]) == 2
    assert main([*RUN, "--out", "rep2", "--checkpoint-dir", "keep.txt"]) == 2
    assert Path("rep/summary.json").exists() and Path("keep.txt").read_text() == "mine"
    assert not Path("rep2").exists()


def test_a_finished_cli_run_leaves_no_checkpoint(tmp_path):
    out = tmp_path / "rep"
    assert main([*RUN, "--out", str(out), "--checkpoint-interval", "0"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep"]


_KILL_AT_RENAME = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    from mcsim.report import outdir
    mode, out = sys.argv[1], Path(sys.argv[2])
    if mode == "fallback":
        outdir._renameat2_exchange = lambda a, b: False
        real, calls = os.rename, []
        def rename(a, b):
            calls.append(a)
            if len(calls) == 2:   # between the two renames of the swap
                os._exit(9)
            real(a, b)
        outdir.os.rename = rename
    else:                          # right after the atomic exchange, before tidying
        outdir.shutil.rmtree = lambda *a, **k: os._exit(9)
    with outdir.output_directory(out) as tmp:
        (tmp / "report.txt").write_text("new")
""")


@pytest.mark.parametrize("mode", ["exchange", "fallback"])
def test_a_kill_during_the_swap_loses_nothing_and_is_tidied(tmp_path, mode):
    out = tmp_path / "rep"
    _write(out, {"report.txt": "old"})
    proc = subprocess.run([sys.executable, "-c", _KILL_AT_RENAME, mode, str(out)])
    assert proc.returncode == 9
    if mode == "exchange":
        assert (out / "report.txt").read_text() == "new"  # the swap was atomic
    else:
        assert not out.exists()  # the window two renames leave ...
    _write(out, {"report.txt": "newer"})  # ... which the next write to OUT repairs first
    assert (out / "report.txt").read_text() == "newer"
    assert [p.name for p in tmp_path.iterdir()] == ["rep"]  # nothing stranded beside it


def test_the_exchange_is_used_here(tmp_path):
    """The atomic path is the one this machine takes (Linux renameat2)."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "x").write_text("a")
    assert outdir._renameat2_exchange(a, b)
    assert (b / "x").read_text() == "a"


def test_a_full_disk_while_writing_keeps_the_earlier_report(tmp_path, monkeypatch, capsys):
    out = tmp_path / "rep"
    assert main([*RUN, "--out", str(out)]) == 0
    before = (out / "summary.json").read_bytes()

    import mcsim.report.files as report

    def full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(report, "write_tables", full)
    assert main([*RUN, "--out", str(out), "--seed", "4"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("mcsim: error: could not write the report") and \
        "No space left on device" in err[-1]
    assert (out / "summary.json").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep"]


def test_a_checkpoint_that_cannot_be_written_does_not_stop_the_run(tmp_path, monkeypatch,
                                                                    capsys):
    import mcsim.checkpoint as ckpt

    def full(tmp, *a, **k):
        Path(tmp).write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ckpt, "_write", full)
    out = tmp_path / "rep"
    assert main([*RUN, "--out", str(out), "--checkpoint-interval", "0",
                 "--chunk-size", "1024"]) == 0
    err = capsys.readouterr().err
    assert err.count("mcsim: warning: checkpoint") == 1 and "No space left on device" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep"]  # no *.npz.tmp left


def test_checkpoints_are_compressed(tmp_path):
    """A complete checkpoint of a 2,048-path run is far smaller than its 35 MB of int64
    histograms (a few hundred kB: nearly every bin is empty)."""
    from mcsim.api import run
    from mcsim.config import load_config

    cfg = load_config(BASE).with_simulation(paths=2048)
    run(cfg, checkpoint=tmp_path, progress=False)
    (f,) = tmp_path.glob("*.npz")
    assert f.stat().st_size < 2_000_000


@pytest.mark.parametrize("cmd", ["compare", "sweep", "reproduce", "sensitivity"])
def test_other_commands_check_out_before_working(tmp_path, cmd, capsys):
    rep = tmp_path / "rep"
    assert main([*RUN, "--out", str(rep)]) == 0
    (tmp_path / "file").write_text("x")
    bad = str(tmp_path / "file")
    argv = {"compare": ["compare", str(rep), str(rep), "--out", bad],
            "sweep": ["sweep", BASE, "--set", "deal.investment=1e10,2e10", "--paths", "2048",
                      "--out", bad],
            "reproduce": ["reproduce", str(rep / "summary.json"), "--out", bad],
            "sensitivity": ["sensitivity", BASE, "--base-rows", "64", "--out", bad]}[cmd]
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("mcsim: error: --out") and "file" in err[-1]
